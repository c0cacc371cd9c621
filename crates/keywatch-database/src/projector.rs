//! The projector: appends records to the event log, folds the new events into the affected
//! timelines (rebuilding a timeline from its stream when an event arrives late), and raises
//! each alert once.

use crate::raised::RaisedIds;
use crate::{Database, DatabaseError, LoggedRecord, RecordToAppend, StreamId};
use keywatch_core::timeline::is_multi_region_family_event;
use keywatch_core::timeline::CustomKeyStore;
use keywatch_core::{
    evaluate_clock, evaluate_events_unless, Alert, AlertConfig, KeyArn, KeyStoreRef, KeyTimeline,
    KmsEvent, OrderedFold, OutOfTimeOrder, SnapshotRef, Timestamp, TIMELINE_FORMAT,
};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A KMS record with the events it means, ready for the projector.
#[derive(Clone, Debug)]
pub struct NormalisedRecord {
    /// `eventID`.
    pub event_id: String,
    /// Its events (at least one).
    pub events: Vec<KmsEvent>,
    /// The record's JSON, as it came: the event log keeps it, with the other new records
    /// of its streams in the batch (a segment compresses them together far better than
    /// each alone). Empty for a use the log keeps as its event ([`LoggedRecord::use_of`]):
    /// most records, whose text is then not held while a batch fills.
    json: Box<str>,
}

impl NormalisedRecord {
    /// A record (its JSON text, unmodified) and its events.
    pub fn new(event_id: String, json: impl Into<Box<str>>, events: Vec<KmsEvent>) -> Self {
        let json = match LoggedRecord::use_of(&events) {
            Some(_) => Box::default(),
            None => json.into(),
        };
        NormalisedRecord {
            event_id,
            events,
            json,
        }
    }

    /// `eventTime` (all events of a record share it).
    pub fn event_time(&self) -> Timestamp {
        self.events
            .first()
            .map(|e| e.context().event_time)
            .unwrap_or_default()
    }

    fn streams(&self) -> Vec<StreamId> {
        let mut s: Vec<StreamId> = self
            .events
            .iter()
            .map(|e| match e {
                KmsEvent::Key(k) => StreamId::Key(k.key.clone()),
                KmsEvent::KeyStore(k) => StreamId::KeyStore(k.key_store.clone()),
            })
            .collect();
        s.sort();
        s.dedup();
        s
    }
}

/// A key's part of a batch: its timeline and the events to fold into it, in fold order.
struct KeyFold<'e> {
    timeline: KeyTimeline,
    events: Vec<&'e KmsEvent>,
    /// The timeline knew the key's custom key store before the batch.
    knew_key_store: bool,
    /// A multi-Region key new to keywatch, whose related keys keywatch knows.
    first_of_family: bool,
    /// Every event followed the timeline (else it is rebuilt from the log). False from the
    /// start where the log holds a record the timeline may lack.
    in_order: bool,
    /// The earliest eventTime of the batch's records of the key, folded or not: the log may
    /// hold records of that time that a snapshot of the timeline through it lacks.
    earliest: Option<Timestamp>,
}

/// Applies events to a timeline in order; false (and the timeline half-folded) at the first
/// that does not follow it and that it cannot absorb: a late record that is not a mere use,
/// or the second copy of a cross-account call.
fn fold_in_order(timeline: &mut KeyTimeline, events: &[&KmsEvent]) -> bool {
    let mut previous: Option<&KmsEvent> = None;
    for e in events {
        // One record's events for several keys (ReplicateKey names the primary and its new
        // replica) apply together.
        let same_record = previous.is_some_and(|p| p.order_key() == e.order_key());
        if !same_record && !timeline.follows(e) && !timeline.absorbs(e) {
            return false;
        }
        timeline.apply(e);
        previous = Some(e);
    }
    true
}

/// The timelines a batch folded, ready to be evaluated and saved; the snapshots their
/// rebuilds took, to save (by id); and the snapshots they no longer refer to, to delete.
struct FinishedFolds {
    touched: Vec<KeyTimeline>,
    snapshots: Vec<(String, KeyTimeline)>,
    dropped: Vec<(KeyArn, Vec<String>)>,
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    /// Records new to the event log.
    pub new_records: usize,
    /// Records already stored (duplicates).
    pub duplicate_records: usize,
    /// Timelines rebuilt from their stream because an event arrived out of order.
    pub rebuilds: usize,
    /// Of those, the ones folded from a snapshot ([`KeyTimeline::snapshots`]): only the
    /// stream after it was read.
    pub rebuilds_from_snapshots: usize,
    /// Alerts raised for the first time, in a stable order.
    pub alerts: Vec<Alert>,
}

/// An event of the batch, and whether its record is new to the log.
type BatchEvent<'e> = (&'e KmsEvent, bool);
/// A batch's events per key.
type EventsPerKey<'e> = BTreeMap<KeyArn, Vec<BatchEvent<'e>>>;

/// The batch's events per key, and its key store events, each with whether its record is
/// new to the log. Events of records the log already had are normally folded already; but a
/// database without atomic batches (DynamoDB) can have appended a record and failed before
/// saving the timeline, and then they must be folded now.
fn events_per_key<'e>(
    unique: &[&'e NormalisedRecord],
    fresh: &[bool],
) -> (EventsPerKey<'e>, Vec<BatchEvent<'e>>) {
    // Gathered by hash, then ordered: a batch has thousands of events of a few hundred keys,
    // whose ARNs share their first forty bytes.
    let mut per_key: foldhash::HashMap<&'e KeyArn, Vec<(&'e KmsEvent, bool)>> =
        foldhash::HashMap::default();
    let mut store_events = Vec::new();
    for (r, new) in unique.iter().zip(fresh) {
        for e in &r.events {
            match e {
                KmsEvent::Key(k) => per_key.entry(&k.key).or_default().push((e, *new)),
                KmsEvent::KeyStore(_) => store_events.push((e, *new)),
            }
        }
    }
    let per_key = per_key
        .into_iter()
        .map(|(key, events)| (key.clone(), events))
        .collect();
    (per_key, store_events)
}

/// What a batch did across a key's stream and its custom key store's, to check again once
/// the batch is stored ([`Projector::process`]).
#[derive(Debug, Default)]
struct KeyStoreLinks {
    /// Key stores with new events in the batch…
    stores: BTreeSet<KeyStoreRef>,
    /// …and the keys the batch folded (those the database listed in them among them).
    folded: BTreeSet<KeyArn>,
    /// Keys the batch first placed in a custom key store, and keys in one that the batch
    /// brought records of the log already had.
    placed: BTreeSet<KeyArn>,
}

impl KeyStoreLinks {
    fn is_empty(&self) -> bool {
        self.stores.is_empty() && self.placed.is_empty()
    }
}

/// Drives the core over a database. Keeps the timelines it touched in memory (bounded).
pub struct Projector<S: Database> {
    database: S,
    config: AlertConfig,
    cache: foldhash::HashMap<KeyArn, KeyTimeline>,
    /// Ids this projector knows to be raised, so that a candidate raised before is not
    /// built, serialised and offered to the database again on every batch.
    raised: RaisedIds,
    /// For each distinct record of the batch in progress, whether an attempt found it new to
    /// the log: a database without units of work (DynamoDB) keeps it when the attempt fails
    /// (a write conflict), and the retry must still count and fold it as new. Every attempt
    /// takes the batch's records in the same order.
    appended_by_batch: Vec<bool>,
    /// Batches save timelines in summary only, whole at [`Self::save_deferred_timelines`].
    defer_saves: bool,
    /// Keys whose timeline (in the cache) is saved in summary only.
    unsaved: BTreeSet<KeyArn>,
    /// A rebuild takes a snapshot after this many events of the key's stream.
    snapshot_every: usize,
}

const CACHE_LIMIT: usize = 50_000;
/// How many events of its stream a rebuild folds between snapshots it may save.
const SNAPSHOT_EVERY: usize = 50_000;
/// How far before the end of the stream a rebuild saves its snapshot, where it took one: a
/// record that comes late is most often minutes late, and a rebuild for it reads the stream
/// from the last snapshot before it.
const SNAPSHOT_LAG_MS: i64 = 3_600_000;
/// Snapshots a timeline refers to at most ([`spread_out`]).
const MAX_SNAPSHOTS: usize = 3;
/// Alert ids the projector remembers as raised, in each of the cache's two generations.
const RAISED_CACHE_GENERATION: usize = 100_000;
/// How often a batch is redone when another writer saved the same timeline first.
const MAX_CONFLICT_RETRIES: usize = 5;

impl<S: Database> Projector<S> {
    /// A projector over `database` with rule settings `config`.
    pub fn new(database: S, config: AlertConfig) -> Self {
        Projector {
            database,
            config,
            cache: foldhash::HashMap::default(),
            raised: RaisedIds::new(RAISED_CACHE_GENERATION),
            appended_by_batch: Vec::new(),
            defer_saves: false,
            unsaved: BTreeSet::new(),
            snapshot_every: SNAPSHOT_EVERY,
        }
    }

    /// A rebuild of a stream of more than `events` events saves a snapshot of the timeline
    /// to start the next rebuild from (50,000 unless set).
    pub fn snapshot_every(mut self, events: usize) -> Self {
        self.snapshot_every = events.max(1);
        self
    }

    /// From now on, a batch saves the timelines it touched in summary only
    /// ([`Database::save_timeline_summaries`]) and keeps them whole in its cache; they are
    /// saved whole at [`Self::save_deferred_timelines`], before a sweep, and before the cache
    /// is emptied. A long replay saves each busy timeline a few times instead of after every
    /// batch. What a batch stores is still one unit of work, so a run that stops between
    /// saves loses nothing: its timelines read back as behind the log and are rebuilt.
    pub fn defer_timeline_saves(&mut self) {
        self.defer_saves = true;
    }

    /// Saves whole the timelines batches saved in summary only, as a unit of work.
    pub async fn save_deferred_timelines(&mut self) -> Result<(), DatabaseError> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        self.database.begin_batch().await?;
        let done = self.save_unsaved().await;
        self.end_batch(done).await
    }

    /// Saves whole the cached timelines saved in summary only (a key taken out of the cache
    /// for the batch in progress stays unsaved: the batch puts it back).
    async fn save_unsaved(&mut self) -> Result<(), DatabaseError> {
        let (cache, unsaved) = (&self.cache, &mut self.unsaved);
        let mut timelines: Vec<&KeyTimeline> = Vec::with_capacity(unsaved.len());
        unsaved.retain(|key| match cache.get(key) {
            Some(t) => {
                timelines.push(t);
                false
            }
            None => true,
        });
        self.database.save_timelines(&timelines).await
    }

    /// Forgets the cached timelines (they may hold what a failed unit of work discarded);
    /// those saved in summary only read back as behind the log, and are rebuilt.
    fn forget_cached_timelines(&mut self) {
        self.cache.clear();
        self.unsaved.clear();
    }

    /// The database.
    pub fn database(&self) -> &S {
        &self.database
    }

    /// Alerts raised but not yet sent (the outbox), oldest first.
    pub async fn unsent(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError> {
        self.database.unsent_alerts(limit).await
    }

    /// Records that the notification service accepted these alerts.
    pub async fn mark_sent(
        &mut self,
        alert_ids: &[&str],
        at: Timestamp,
    ) -> Result<(), DatabaseError> {
        self.database.begin_batch().await?;
        let done = self.database.mark_sent(alert_ids, at).await;
        self.end_batch(done).await
    }

    /// Claims unsent alerts for sending (see [`Database::claim_for_sending`]).
    pub async fn claim_for_sending(
        &mut self,
        alert_ids: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        self.database.claim_for_sending(alert_ids, now, until).await
    }

    /// Records sent alerts and claims the next ones in one go (see
    /// [`Database::mark_sent_and_claim`]).
    pub async fn mark_sent_and_claim(
        &mut self,
        sent: &[&str],
        sent_at: Timestamp,
        to_claim: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        self.database.begin_batch().await?;
        let done = self
            .database
            .mark_sent_and_claim(sent, sent_at, to_claim, now, until)
            .await;
        self.end_batch(done).await
    }

    /// Gives up a claim on an alert not sent.
    pub async fn release_claim(&mut self, alert_id: &str) -> Result<(), DatabaseError> {
        self.database.release_claim(alert_id).await
    }

    /// Gives the database back.
    pub fn into_database(self) -> S {
        self.database
    }

    async fn timeline(&mut self, key: &KeyArn) -> Result<KeyTimeline, DatabaseError> {
        if let Some(t) = self.cache.remove(key) {
            return Ok(t);
        }
        Ok(current_timeline(&self.database, key)
            .await?
            .unwrap_or_else(|| KeyTimeline::new(key.clone())))
    }

    /// Reads the timelines of the records' keys that the cache lacks, at once. A timeline of
    /// another form, or one that cannot be read, is left to [`current_timeline`] (which
    /// rebuilds it), as are all of them when the database cannot read them together.
    async fn load_timelines_of(
        &mut self,
        records: &[&NormalisedRecord],
    ) -> Result<(), DatabaseError> {
        let keys: BTreeSet<&KeyArn> = records
            .iter()
            .flat_map(|r| &r.events)
            .filter_map(|e| match e {
                KmsEvent::Key(k) if !self.cache.contains_key(&k.key) => Some(&k.key),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<KeyArn> = keys.into_iter().cloned().collect();
        let loaded = match self.database.load_timelines(&keys).await {
            Ok(loaded) => loaded,
            Err(DatabaseError::Corrupt { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for (key, timeline) in keys.into_iter().zip(loaded) {
            match timeline {
                Some(t) if t.format == TIMELINE_FORMAT => {
                    self.cache.insert(key, t);
                }
                Some(_) => {}
                None => {
                    let fresh = KeyTimeline::new(key.clone());
                    self.cache.insert(key, fresh);
                }
            }
        }
        Ok(())
    }

    /// Whether every event of a record follows its key's timeline as folded so far (loading
    /// the timelines into the cache, where the fold finds them): then no earlier batch folded
    /// it. A key store's event has no timeline of its own to tell.
    async fn follows_timelines(
        &mut self,
        record: &NormalisedRecord,
    ) -> Result<bool, DatabaseError> {
        for e in &record.events {
            let KmsEvent::Key(k) = e else {
                return Ok(false);
            };
            let follows = match self.cache.get(&k.key) {
                Some(t) => t.follows(e),
                None => {
                    let timeline = self.timeline(&k.key).await?;
                    let follows = timeline.follows(e);
                    self.cache.insert(k.key.clone(), timeline);
                    follows
                }
            };
            if !follows {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Rebuilds a key's timeline from the event log: its stream, its custom key store's, and
    /// those of its related multi-Region keys.
    pub async fn rebuild(&self, key: &KeyArn) -> Result<KeyTimeline, DatabaseError> {
        rebuild_whole(&self.database, key, &BTreeSet::new()).await
    }

    async fn related_keys(
        &self,
        key: &KeyArn,
        batch_keys: &BTreeSet<KeyArn>,
    ) -> Result<BTreeSet<KeyArn>, DatabaseError> {
        related_keys(&self.database, key, batch_keys).await
    }

    /// Projects a batch of records: stores the new ones, folds them into the timelines and
    /// returns the event-driven alerts raised for the first time (`as_of` is when they are
    /// recorded as raised). Time-driven alerts come from [`Self::sweep`].
    pub async fn process(
        &mut self,
        batch: &[NormalisedRecord],
        as_of: Timestamp,
    ) -> Result<BatchOutcome, DatabaseError> {
        // Each a unit of work, done again on fresh timelines while another projector saved a
        // timeline it read first (optimistic concurrency): records already appended are
        // folded as needed.
        self.appended_by_batch.clear();
        let mut attempt = 1;
        let (mut outcome, links) = loop {
            self.database.begin_batch().await?;
            let done = self.project(batch, as_of).await;
            let done = self.end_batch(done).await;
            if !self.retry_after(&done, &mut attempt) {
                break done?;
            }
        };
        self.appended_by_batch.clear();
        if !links.is_empty() {
            let mut attempt = 1;
            let (alerts, rebuilds) = loop {
                self.database.begin_batch().await?;
                let done = self.recheck_key_stores(&links, as_of).await;
                let done = self.end_batch(done).await;
                if !self.retry_after(&done, &mut attempt) {
                    break done?;
                }
            };
            outcome.alerts.extend(alerts);
            outcome.rebuilds += rebuilds;
        }
        Ok(outcome)
    }

    /// Whether a unit of work that ended in `done` is to be done again: a write conflict,
    /// before the last attempt (counted in `attempt`). Forgets the cached timelines then.
    fn retry_after<T>(&mut self, done: &Result<T, DatabaseError>, attempt: &mut usize) -> bool {
        match done {
            Err(DatabaseError::Conflict(what)) if *attempt < MAX_CONFLICT_RETRIES => {
                tracing::info!(%what, "write conflict; retrying the batch");
                self.forget_cached_timelines();
                *attempt += 1;
                true
            }
            _ => false,
        }
    }

    /// A key's events depend on another stream's only through its custom key store, and
    /// another projector (another Kafka partition's) may be storing the other side at the
    /// same moment: a key store's disconnection while a batch elsewhere first places a key in
    /// that store. Each side checks again once its batch is stored, with consistent reads:
    /// the store's keys now listed that the batch did not fold, and the keys it placed in a
    /// store, are rebuilt from the log; one differing from its timeline is evaluated and
    /// saved. Of two such batches, the one stored second sees the other's writes, so the
    /// pair folds the key with both. Returns the alerts raised and the timelines replaced.
    async fn recheck_key_stores(
        &mut self,
        links: &KeyStoreLinks,
        as_of: Timestamp,
    ) -> Result<(Vec<Alert>, usize), DatabaseError> {
        let mut keys: BTreeSet<KeyArn> = links.placed.clone();
        for store in &links.stores {
            keys.extend(
                self.database
                    .keys_in_key_store(store)
                    .await?
                    .into_iter()
                    .filter(|k| !links.folded.contains(k)),
            );
        }
        let mut changed = Vec::new();
        for key in keys {
            let rebuilt = self.rebuild(&key).await?;
            let mut compacted = rebuilt.clone();
            compacted.compact();
            let current = self.timeline(&key).await?;
            if compacted == current {
                self.cache.insert(key, current);
            } else {
                changed.push(rebuilt);
            }
        }
        if changed.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let (config, raised) = (&self.config, &self.raised);
        let mut candidates: Vec<Alert> = changed
            .iter()
            .flat_map(|t| evaluate_events_unless(t, config, &|id| raised.contains(id)))
            .collect();
        let alerts = self.raise(&mut candidates, as_of).await?;
        changed.iter_mut().for_each(KeyTimeline::compact);
        let refs: Vec<&KeyTimeline> = changed.iter().collect();
        self.database.save_timelines(&refs).await?;
        let rebuilds = changed.len();
        self.cache
            .extend(changed.into_iter().map(|t| (t.key_arn.clone(), t)));
        Ok((alerts, rebuilds))
    }

    /// Ends the unit of work begun before `done` ([`Database::begin_batch`]): commits it, or,
    /// when the work or the commit failed, discards it; all of it is stored, or none.
    async fn end_batch<T>(&mut self, done: Result<T, DatabaseError>) -> Result<T, DatabaseError> {
        let done = match done {
            Ok(t) => self.database.commit_batch().await.map(|()| t),
            Err(e) => Err(e),
        };
        match done {
            Ok(t) => Ok(t),
            Err(e) => {
                self.database.abort_batch().await;
                // Cached timelines may hold what was just discarded.
                self.forget_cached_timelines();
                self.raised.clear();
                Err(e)
            }
        }
    }

    async fn project(
        &mut self,
        batch: &[NormalisedRecord],
        as_of: Timestamp,
    ) -> Result<(BatchOutcome, KeyStoreLinks), DatabaseError> {
        let mut outcome = BatchOutcome::default();
        let mut links = KeyStoreLinks::default();
        let mut seen = foldhash::HashSet::with_capacity_and_hasher(batch.len(), Default::default());
        let unique: Vec<&NormalisedRecord> = batch
            .iter()
            .filter(|r| seen.insert(r.event_id.as_str()))
            .collect();
        outcome.duplicate_records = batch.len() - unique.len();
        self.load_timelines_of(&unique).await?;
        let fresh = self.append_to_log(&unique).await?;
        outcome.new_records = fresh.iter().filter(|f| **f).count();
        outcome.duplicate_records += unique.len() - outcome.new_records;

        let (mut per_key, store_events) = events_per_key(&unique, &fresh);
        let batch_keys: BTreeSet<KeyArn> = per_key.keys().cloned().collect();
        self.add_related_keys_events(&mut per_key, &batch_keys)
            .await?;
        let affected = self
            .affected_keys(&per_key, &store_events, &mut links)
            .await?;
        let mut folds = self
            .gather_folds(affected, per_key, &store_events, &batch_keys, &mut links)
            .await?;
        // Folded on every core, since no key's fold depends on another's.
        folds
            .par_iter_mut()
            .filter(|f| f.in_order)
            .for_each(|f| f.in_order = fold_in_order(&mut f.timeline, &f.events));
        let FinishedFolds {
            touched,
            snapshots,
            dropped,
        } = self
            .finish_folds(folds, &batch_keys, &mut links, &mut outcome)
            .await?;
        for (id, snapshot) in &snapshots {
            self.database.save_snapshot(id, snapshot).await?;
        }
        for (key, ids) in &dropped {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            self.database.delete_snapshots(key, &ids).await?;
        }
        outcome.alerts = self.raise_and_save(touched, as_of).await?;
        Ok((outcome, links))
    }

    /// Appends the batch's records to the event log. For each, whether it is new to the log:
    /// appended by this attempt, or by an attempt at this batch that failed after it.
    async fn append_to_log(
        &mut self,
        unique: &[&NormalisedRecord],
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut to_append: Vec<RecordToAppend<'_>> = Vec::with_capacity(unique.len());
        for r in unique {
            to_append.push(RecordToAppend {
                event_id: &r.event_id,
                event_time: r.event_time(),
                json: &r.json,
                kept_use: LoggedRecord::use_of(&r.events),
                streams: r.streams(),
                unseen: self.follows_timelines(r).await?,
            });
        }
        let mut fresh = self.database.append_records(&to_append).await?;
        self.appended_by_batch.resize(fresh.len(), false);
        for (new, earlier) in fresh.iter_mut().zip(&mut self.appended_by_batch) {
            *earlier |= *new;
            *new = *earlier;
        }
        Ok(fresh)
    }

    /// A multi-Region key's lifecycle is folded by its related keys too (a primary waits for
    /// its replicas' deletion).
    async fn add_related_keys_events<'e>(
        &self,
        per_key: &mut EventsPerKey<'e>,
        batch_keys: &BTreeSet<KeyArn>,
    ) -> Result<(), DatabaseError> {
        // Each key's family events, and the keys they go to (each named once, not once per
        // event: a crafted family of thousands would otherwise copy its ARNs squared).
        let mut related_events: Vec<(BTreeSet<KeyArn>, Vec<BatchEvent<'e>>)> = Vec::new();
        for (key, events) in per_key.iter() {
            let family: Vec<BatchEvent<'e>> = events
                .iter()
                .filter(
                    |(e, _)| matches!(e, KmsEvent::Key(k) if is_multi_region_family_event(&k.kind)),
                )
                .copied()
                .collect();
            if family.is_empty() {
                continue;
            }
            related_events.push((self.related_keys(key, batch_keys).await?, family));
        }
        for (keys, family) in related_events {
            for key in keys {
                per_key.entry(key).or_default().extend_from_slice(&family);
            }
        }
        Ok(())
    }

    /// The keys the batch folds: those its events name, and those the database lists in a
    /// key store the batch has events of (both noted in `links`; a key store event the log
    /// already had may be one that a failed batch stored and never folded).
    async fn affected_keys(
        &self,
        per_key: &EventsPerKey<'_>,
        store_events: &[BatchEvent<'_>],
        links: &mut KeyStoreLinks,
    ) -> Result<BTreeSet<KeyArn>, DatabaseError> {
        let mut affected: BTreeSet<KeyArn> = per_key.keys().cloned().collect();
        let stores: BTreeSet<&KeyStoreRef> = store_events
            .iter()
            .filter_map(|(e, _)| match e {
                KmsEvent::KeyStore(s) => Some(&s.key_store),
                KmsEvent::Key(_) => None,
            })
            .collect();
        for s in stores {
            affected.extend(self.database.keys_in_key_store(s).await?);
            links.stores.insert(s.clone());
        }
        if !links.stores.is_empty() {
            links.folded = affected.clone();
        }
        Ok(affected)
    }

    /// Each affected key's timeline and the events it folds, in fold order (gathered here,
    /// since the database is read one key at a time). A key with nothing to fold goes back
    /// to the cache as it was.
    async fn gather_folds<'e>(
        &mut self,
        affected: BTreeSet<KeyArn>,
        mut per_key: EventsPerKey<'e>,
        store_events: &[BatchEvent<'e>],
        batch_keys: &BTreeSet<KeyArn>,
        links: &mut KeyStoreLinks,
    ) -> Result<Vec<KeyFold<'e>>, DatabaseError> {
        let mut folds = Vec::with_capacity(affected.len());
        for key in affected {
            let timeline = self.timeline(&key).await?;
            let key_events = per_key.remove(&key).unwrap_or_default();
            let earliest = key_events.iter().map(|(e, _)| e.context().event_time).min();
            // Records of a key in a key store that the log already had: perhaps a batch
            // retried after its projector died before checking the key again.
            if timeline.key_store_ref().is_some() && key_events.iter().any(|(_, new)| !new) {
                links.placed.insert(key.clone());
            }
            // A key store event for a key whose store is not known yet cannot matter now;
            // if the batch names the store, the rebuild folds it.
            let of_its_store = store_events.iter().copied().filter(|(e, _)| match e {
                KmsEvent::KeyStore(s) => {
                    s.key_store.account == key.account()
                        && s.key_store.region == key.region()
                        && timeline.is_relevant(e)
                }
                KmsEvent::Key(_) => false,
            });
            // A late event of a record the log held before the batch is folded already,
            // unless the timeline does not show it: then the batch that stored it failed
            // before saving the timeline, and the timeline is rebuilt from the log.
            let mut evidence = None;
            let mut refold = false;
            let mut events: Vec<&KmsEvent> = key_events
                .into_iter()
                .chain(of_its_store)
                .filter(|(e, new)| {
                    if *new || timeline.follows(e) {
                        return true;
                    }
                    let evidence = evidence.get_or_insert_with(|| timeline.folded_evidence());
                    let lacks = !evidence.shows_folded(e);
                    refold |= lacks;
                    lacks
                })
                .map(|(e, _)| e)
                .collect();
            drop(evidence);
            // A snapshot that the batch's records make stale is dropped, and the timeline
            // saved without it, even where they fold nothing (folded already).
            if events.is_empty() && !outdates_snapshots(&timeline, earliest) {
                self.cache.insert(key, timeline);
                continue;
            }
            events.sort_by(|a, b| a.fold_order().cmp(&b.fold_order()));
            // A multi-Region key new to keywatch whose related keys it already knows: their
            // lifecycle so far counts too.
            let first_of_family = timeline.last_applied.is_none()
                && key.is_multi_region()
                && !self.related_keys(&key, batch_keys).await?.is_empty();
            folds.push(KeyFold {
                knew_key_store: timeline.key_store_ref().is_some(),
                timeline,
                events,
                first_of_family,
                in_order: !refold,
                earliest,
            });
        }
        Ok(folds)
    }

    /// The folded timelines, each rebuilt from the log where an event came late, where the
    /// key joins a multi-Region family keywatch knows, or where the batch first placed the
    /// key in a custom key store (the store's earlier events, a disconnect seen before,
    /// count too).
    ///
    /// A timeline keeps the snapshots through a time before the batch's records of its key;
    /// a rebuild starts from the newest of them, and may take a new one, returned with the
    /// timelines to be saved.
    async fn finish_folds(
        &self,
        folds: Vec<KeyFold<'_>>,
        batch_keys: &BTreeSet<KeyArn>,
        links: &mut KeyStoreLinks,
        outcome: &mut BatchOutcome,
    ) -> Result<FinishedFolds, DatabaseError> {
        let mut touched = Vec::with_capacity(folds.len());
        let mut snapshots = Vec::new();
        let mut dropped = Vec::new();
        for f in folds {
            let mut timeline = f.timeline;
            let (stale, mut kept): (Vec<SnapshotRef>, Vec<SnapshotRef>) =
                std::mem::take(&mut timeline.snapshots)
                    .into_iter()
                    .partition(|s| is_stale(s, f.earliest));
            let mut drop_of_key: Vec<String> = stale.into_iter().map(|s| s.id).collect();
            let placed = !f.knew_key_store && timeline.key_store_ref().is_some();
            if placed {
                links.placed.insert(timeline.key_arn.clone());
            }
            if !f.in_order || f.first_of_family || placed {
                let key = timeline.key_arn.clone();
                let rebuilt =
                    rebuild(&self.database, &key, batch_keys, &kept, self.snapshot_every).await?;
                timeline = rebuilt.timeline;
                outcome.rebuilds += 1;
                outcome.rebuilds_from_snapshots += usize::from(rebuilt.from_snapshot);
                if let Some((through, snapshot)) = rebuilt.snapshot {
                    let id = snapshot_id(through);
                    kept.push(SnapshotRef {
                        through,
                        id: id.clone(),
                    });
                    snapshots.push((id, snapshot));
                }
                let (spread, others) = spread_out(kept);
                drop_of_key.extend(others.into_iter().map(|s| s.id));
                kept = spread;
            }
            if timeline.key_store_ref().is_some() {
                // A key in a custom key store rebuilds from the whole stream and its store's.
                drop_of_key.extend(kept.drain(..).map(|s| s.id));
            }
            if !drop_of_key.is_empty() {
                dropped.push((timeline.key_arn.clone(), drop_of_key));
            }
            timeline.snapshots = kept;
            touched.push(timeline);
        }
        Ok(FinishedFolds {
            touched,
            snapshots,
            dropped,
        })
    }

    /// Raises the alerts of the touched timelines and saves them; returns the alerts new to
    /// the outbox.
    ///
    /// Alerts first, from the timelines as folded, and recorded in the outbox before any
    /// timeline is saved: a database without atomic batches (DynamoDB) that fails between the
    /// two then folds the same events again on the retry and finds the alerts recorded,
    /// whereas a timeline saved first would hold the events and never raise their alerts.
    /// Then the timelines are bounded: every minute of use this batch brought has been paged
    /// before it is compacted away.
    async fn raise_and_save(
        &mut self,
        mut touched: Vec<KeyTimeline>,
        as_of: Timestamp,
    ) -> Result<Vec<Alert>, DatabaseError> {
        let (config, raised) = (&self.config, &self.raised);
        let mut candidates: Vec<Alert> = touched
            .par_iter()
            .flat_map_iter(|t| evaluate_events_unless(t, config, &|id| raised.contains(id)))
            .collect();
        let alerts = self.raise(&mut candidates, as_of).await?;
        touched.par_iter_mut().for_each(KeyTimeline::compact);
        let refs: Vec<&KeyTimeline> = touched.iter().collect();
        if self.defer_saves {
            self.database.save_timeline_summaries(&refs).await?;
            self.unsaved
                .extend(touched.iter().map(|t| t.key_arn.clone()));
        } else {
            self.database.save_timelines(&refs).await?;
        }
        if self.cache.len() + touched.len() > CACHE_LIMIT {
            self.save_unsaved().await?;
            self.cache.clear();
        }
        self.cache
            .extend(touched.into_iter().map(|t| (t.key_arn.clone(), t)));
        Ok(alerts)
    }

    /// Evaluates the time-driven alerts of every key pending deletion as of `as_of`.
    pub async fn sweep(&mut self, as_of: Timestamp) -> Result<Vec<Alert>, DatabaseError> {
        self.database.begin_batch().await?;
        let done = self.sweep_keys(as_of).await;
        self.end_batch(done).await
    }

    async fn sweep_keys(&mut self, as_of: Timestamp) -> Result<Vec<Alert>, DatabaseError> {
        self.save_unsaved().await?;
        let keys = self.database.keys_pending_deletion().await?;
        // Read from the database, not the cache, where another process (a consumer of the
        // same group, a Lambda projector) may have folded a key since this one cached it.
        // Else the cache's timelines, all saved above, are what the database holds.
        let mut candidates = Vec::new();
        let keys = if self.database.written_by_others().await? {
            keys
        } else {
            let (cached, uncached): (Vec<KeyArn>, Vec<KeyArn>) =
                keys.into_iter().partition(|k| self.cache.contains_key(k));
            for timeline in cached.iter().filter_map(|k| self.cache.get(k)) {
                candidates.extend(evaluate_clock(timeline, as_of));
            }
            uncached
        };
        let found = read_all_or_rebuild(&self.database, &keys).await?;
        for (key, found) in keys.into_iter().zip(found) {
            let Some((mut timeline, was_rebuilt)) = found else {
                continue;
            };
            candidates.extend(evaluate_clock(&timeline, as_of));
            if was_rebuilt {
                // Saved whole, so that readers stop rebuilding it (one stored in summary by a
                // run that stopped, or by another version).
                timeline.compact();
                self.unsaved.insert(key.clone());
            }
            self.cache.insert(key, timeline);
        }
        let alerts = self.raise(&mut candidates, as_of).await?;
        self.save_unsaved().await?;
        Ok(alerts)
    }

    async fn raise(
        &mut self,
        candidates: &mut Vec<Alert>,
        as_of: Timestamp,
    ) -> Result<Vec<Alert>, DatabaseError> {
        crate::sort_oldest_first(candidates);
        candidates.dedup_by(|a, b| a.alert_id == b.alert_id);
        candidates.retain(|a| !self.raised.contains(&a.alert_id));
        let fresh = self.database.record_alerts(candidates, as_of).await?;
        self.raised
            .remember(candidates.iter().map(|a| a.alert_id.as_str()));
        Ok(candidates
            .drain(..)
            .zip(fresh)
            .filter(|(_, f)| *f)
            .map(|(a, _)| a)
            .collect())
    }
}

/// A key's timeline as stored, when it is of this version's form; else (stored by another
/// version, or unreadable) rebuilt from the event log, which every version reads. `None`
/// when the database has no timeline for the key.
pub async fn current_timeline<S: Database>(
    database: &S,
    key: &KeyArn,
) -> Result<Option<KeyTimeline>, DatabaseError> {
    Ok(read_or_rebuild(database, key).await?.map(|(t, _)| t))
}

/// [`current_timeline`], and whether it was rebuilt.
async fn read_or_rebuild<S: Database>(
    database: &S,
    key: &KeyArn,
) -> Result<Option<(KeyTimeline, bool)>, DatabaseError> {
    let why = match database.load_timeline(key).await {
        Ok(Some(t)) if t.format == TIMELINE_FORMAT => return Ok(Some((t, false))),
        Ok(None) => return Ok(None),
        Ok(Some(t)) => format!(
            "stored in form {}, this version folds {TIMELINE_FORMAT}",
            t.format
        ),
        Err(DatabaseError::Corrupt {
            what: "timeline",
            reason,
        }) => format!("unreadable: {reason}"),
        Err(e) => return Err(e),
    };
    tracing::info!(key = %key, %why, "timeline rebuilt from the event log");
    rebuild_whole(database, key, &BTreeSet::new())
        .await
        .map(|t| Some((t, true)))
}

/// [`read_or_rebuild`] for several keys, in their order: read together; one of another form
/// or that cannot be read (all of them, when the database cannot read them together) is
/// read again alone and rebuilt.
async fn read_all_or_rebuild<S: Database>(
    database: &S,
    keys: &[KeyArn],
) -> Result<Vec<Option<(KeyTimeline, bool)>>, DatabaseError> {
    let stored = match database.load_timelines(keys).await {
        Ok(stored) => stored.into_iter().map(Some).collect(),
        Err(DatabaseError::Corrupt { .. }) => vec![None; keys.len()],
        Err(e) => return Err(e),
    };
    let mut found = Vec::with_capacity(keys.len());
    for (key, stored) in keys.iter().zip(stored) {
        found.push(match stored {
            Some(Some(t)) if t.format == TIMELINE_FORMAT => Some((t, false)),
            Some(None) => None,
            _ => read_or_rebuild(database, key).await?,
        });
    }
    Ok(found)
}

/// A timeline rebuilt from the event log.
struct Rebuilt {
    timeline: KeyTimeline,
    /// A snapshot taken on the way, to save: (through, the timeline through it).
    snapshot: Option<(Timestamp, KeyTimeline)>,
    /// Folded from a snapshot, not the whole stream.
    from_snapshot: bool,
}

/// Folds a key's timeline from the event log: its stream, its custom key store's, and those
/// of its related multi-Region keys (`batch_keys`: keys of a batch in hand that the database
/// may not list yet). The key's own stream (mostly its uses, perhaps millions) is folded as
/// it is read; of the others, only the records the timeline can fold are held.
///
/// A key outside a multi-Region family and any custom key store folds its stream alone: from
/// the newest of `snapshots` the database has, reading only the stream after it, and a
/// snapshot is taken every `snapshot_every` events for the next rebuild.
async fn rebuild<S: Database>(
    database: &S,
    key: &KeyArn,
    batch_keys: &BTreeSet<KeyArn>,
    snapshots: &[SnapshotRef],
    snapshot_every: usize,
) -> Result<Rebuilt, DatabaseError> {
    let alone = !key.is_multi_region();
    if alone {
        for s in snapshots.iter().rev() {
            let Some(from) = database.load_snapshot(key, &s.id).await? else {
                continue;
            };
            if from.key_arn != *key || from.format != TIMELINE_FORMAT {
                continue;
            }
            let mut taker = SnapshotTaker::new(snapshot_every);
            let (timeline, named) = fold_stream(
                database,
                key,
                FoldFrom::Snapshot(Box::new(from), s.through),
                &[],
                Some(&mut taker),
            )
            .await?;
            if named.is_some() {
                // The key is in a custom key store after all: its store's events count
                // from before the snapshot.
                break;
            }
            return Ok(Rebuilt {
                timeline,
                snapshot: taker.chosen(),
                from_snapshot: true,
            });
        }
    }
    let mut others = Vec::new();
    for related in related_keys(database, key, batch_keys).await? {
        // A related key's stream is mostly its uses, which this key's timeline does not
        // fold: only its family events are kept.
        database
            .visit_stream(&StreamId::Key(related), &mut |record| {
                others.extend(
                    events_of(record)?
                        .into_iter()
                        .filter(|e| may_fold_into(key, e)),
                );
                Ok(())
            })
            .await?;
    }
    others.sort_by_key(|e| e.context().event_time);
    let mut taker = (alone && others.is_empty()).then(|| SnapshotTaker::new(snapshot_every));
    let (timeline, named) = fold_stream(
        database,
        key,
        FoldFrom::Start(None),
        &others,
        taker.as_mut(),
    )
    .await?;
    // A key lives in one custom key store for life: once its records name it, the store's
    // events count too, from before the first record that names it.
    let Some(key_store) = named else {
        return Ok(Rebuilt {
            timeline,
            snapshot: taker.and_then(SnapshotTaker::chosen),
            from_snapshot: false,
        });
    };
    database
        .visit_stream(
            &StreamId::KeyStore(key_store.identified_for(key)),
            &mut |record| {
                others.extend(events_of(record)?);
                Ok(())
            },
        )
        .await?;
    others.sort_by_key(|e| e.context().event_time);
    let (timeline, _) = fold_stream(
        database,
        key,
        FoldFrom::Start(Some(key_store)),
        &others,
        None,
    )
    .await?;
    Ok(Rebuilt {
        timeline,
        snapshot: None,
        from_snapshot: false,
    })
}

/// [`rebuild`] from the whole stream, taking no snapshot.
async fn rebuild_whole<S: Database>(
    database: &S,
    key: &KeyArn,
    batch_keys: &BTreeSet<KeyArn>,
) -> Result<KeyTimeline, DatabaseError> {
    Ok(rebuild(database, key, batch_keys, &[], usize::MAX)
        .await?
        .timeline)
}

/// Where a fold of a key's stream starts.
enum FoldFrom {
    /// Before its first record, assuming the key is in this custom key store.
    Start(Option<CustomKeyStore>),
    /// From a snapshot of the timeline through this time (it named no key store).
    Snapshot(Box<KeyTimeline>, Timestamp),
}

/// Folds a key's stream as it is read, with `others` (events of other streams, in time
/// order) merged in ([`OrderedFold`]); `taker` takes snapshots on the way. The timeline, and
/// the key store the key's records name (those read).
async fn fold_stream<S: Database>(
    database: &S,
    key: &KeyArn,
    from: FoldFrom,
    others: &[KmsEvent],
    mut taker: Option<&mut SnapshotTaker>,
) -> Result<(KeyTimeline, Option<CustomKeyStore>), DatabaseError> {
    let (mut fold, after): (OrderedFold<Cow<'_, KmsEvent>>, _) = match from {
        FoldFrom::Start(key_store) => (OrderedFold::new(key.clone(), key_store), None),
        FoldFrom::Snapshot(timeline, through) => (OrderedFold::resume(*timeline), Some(through)),
    };
    let mut others = others.iter().peekable();
    let out_of_order = |e: OutOfTimeOrder| DatabaseError::Corrupt {
        what: "stream",
        reason: e.to_string(),
    };
    let mut visit = |record: LoggedRecord| {
        let mut push = |e: KmsEvent| {
            let at = e.context().event_time;
            while let Some(o) = others.next_if(|o| o.context().event_time <= at) {
                fold.push(Cow::Borrowed(o)).map_err(out_of_order)?;
            }
            fold.push(Cow::Owned(e)).map_err(out_of_order)?;
            if let Some(taker) = taker.as_deref_mut() {
                taker.note(&fold, at);
            }
            Ok(())
        };
        match record {
            // Most of a stream: one event, taken as it is.
            LoggedRecord::Use(e) => push(KmsEvent::Key(*e)),
            record => events_of(record)?.into_iter().try_for_each(push),
        }
    };
    let stream = StreamId::Key(key.clone());
    match after {
        None => database.visit_stream(&stream, &mut visit).await?,
        Some(after) => {
            database
                .visit_stream_after(&stream, after, &mut visit)
                .await?
        }
    }
    for o in others {
        fold.push(Cow::Borrowed(o)).map_err(out_of_order)?;
    }
    Ok(fold.finish())
}

/// The snapshots a rebuild takes as it folds a stream: one every so many events, of the
/// timeline through the time before the event's, the last few kept.
struct SnapshotTaker {
    every: usize,
    since: usize,
    taken: VecDeque<(Timestamp, KeyTimeline)>,
    /// The eventTime of the last event folded.
    end: Option<Timestamp>,
}

/// Snapshots a rebuild holds before choosing the one to save.
const SNAPSHOTS_HELD: usize = 8;

impl SnapshotTaker {
    fn new(every: usize) -> Self {
        SnapshotTaker {
            every,
            since: 0,
            taken: VecDeque::new(),
            end: None,
        }
    }

    /// After an event of `at` is pushed into `fold`.
    fn note(&mut self, fold: &OrderedFold<Cow<'_, KmsEvent>>, at: Timestamp) {
        self.end = Some(at);
        self.since += 1;
        if self.since < self.every || fold.names_key_store() {
            return;
        }
        let Some((applied, pending)) = fold.applied() else {
            return;
        };
        if applied.last_applied.is_none() {
            return;
        }
        self.since = 0;
        if self.taken.len() == SNAPSHOTS_HELD {
            self.taken.pop_front();
        }
        let through = Timestamp::from_millis(pending.millis() - 1);
        self.taken.push_back((through, applied.clone()));
    }

    /// The snapshot to save: the newest taken an hour or more before the end of the stream,
    /// else the oldest held.
    fn chosen(mut self) -> Option<(Timestamp, KeyTimeline)> {
        let end = self.end?;
        let i = self
            .taken
            .iter()
            .rposition(|(through, _)| through.millis() <= end.millis() - SNAPSHOT_LAG_MS)
            .unwrap_or(0);
        self.taken.remove(i)
    }
}

/// Of a timeline's snapshots, those to keep (oldest first): the newest, the newest an hour
/// or more older than it, and the newest a day or more older than that, so that a record an
/// hour or a day late still finds one before it. And the others.
fn spread_out(mut snapshots: Vec<SnapshotRef>) -> (Vec<SnapshotRef>, Vec<SnapshotRef>) {
    const SPACING_MS: [i64; MAX_SNAPSHOTS - 1] = [3_600_000, 86_400_000];
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.through));
    let mut kept: Vec<SnapshotRef> = Vec::with_capacity(MAX_SNAPSHOTS);
    let mut others = Vec::new();
    for s in snapshots {
        let fits = match kept.last() {
            None => true,
            Some(newer) => SPACING_MS
                .get(kept.len() - 1)
                .is_some_and(|gap| s.through.millis() <= newer.through.millis() - gap),
        };
        if fits {
            kept.push(s);
        } else {
            others.push(s);
        }
    }
    kept.reverse();
    (kept, others)
}

/// Whether records of the batch as early as `earliest` make one of the timeline's snapshots
/// stale: the log holds records of its time that it lacks.
fn outdates_snapshots(timeline: &KeyTimeline, earliest: Option<Timestamp>) -> bool {
    timeline.snapshots.iter().any(|s| is_stale(s, earliest))
}

/// Whether a batch whose earliest record of the key is of `earliest` makes a snapshot stale:
/// it is through that time or later, and the log may hold records of it that it lacks.
fn is_stale(snapshot: &SnapshotRef, earliest: Option<Timestamp>) -> bool {
    earliest.is_some_and(|earliest| snapshot.through >= earliest)
}

/// A new snapshot id: its time, and what makes it unlike any other process's.
fn snapshot_id(through: Timestamp) -> String {
    use std::hash::BuildHasher;
    static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Random per process (std's hash keys), so that two processes never share an id.
    let random = std::collections::hash_map::RandomState::new().hash_one((n, nanos));
    format!(
        "{:015}-{random:016x}-{nanos:x}-{n:x}",
        through.millis().max(0)
    )
}

/// A logged record's events.
fn events_of(record: LoggedRecord) -> Result<Vec<KmsEvent>, DatabaseError> {
    record.into_events().map_err(|e| DatabaseError::Corrupt {
        what: "record",
        reason: e.to_string(),
    })
}

/// Whether `key`'s timeline may fold `e` ([`KeyTimeline::is_relevant`] drops the rest): its
/// own events, a multi-Region family event of any key, a key store's event.
fn may_fold_into(key: &KeyArn, e: &KmsEvent) -> bool {
    match e {
        KmsEvent::Key(k) => k.key == *key || is_multi_region_family_event(&k.kind),
        KmsEvent::KeyStore(_) => true,
    }
}

/// The related multi-Region keys (same key ID, account and partition, other Regions) that the
/// database knows, and those of the batch in hand.
async fn related_keys<S: Database>(
    database: &S,
    key: &KeyArn,
    batch_keys: &BTreeSet<KeyArn>,
) -> Result<BTreeSet<KeyArn>, DatabaseError> {
    if !key.is_multi_region() {
        return Ok(BTreeSet::new());
    }
    let mut keys: BTreeSet<KeyArn> = database
        .find_keys(key.key_id())
        .await?
        .into_iter()
        .collect();
    keys.extend(batch_keys.iter().cloned());
    keys.retain(|k| key.is_related_multi_region_key(k));
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_minute(m: i64, id: &str) -> SnapshotRef {
        SnapshotRef {
            through: Timestamp::from_millis(m * 60_000),
            id: id.to_owned(),
        }
    }

    #[test]
    fn a_timeline_keeps_its_newest_snapshot_one_an_hour_older_and_one_a_day_older_still() {
        let minutes = [0, 100, 1000, 1030, 1500, 3000, 3010, 3010];
        let snapshots = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| at_minute(*m, &format!("s{i}")))
            .collect();
        let (kept, others) = spread_out(snapshots);
        let ids = |refs: &[SnapshotRef]| refs.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        // The newest (one of the two of minute 3010), the newest an hour before it (1500) and
        // the newest a day before that (0).
        assert_eq!(ids(&kept), ["s0", "s4", "s6"]);
        let mut others = ids(&others);
        others.sort();
        assert_eq!(others, ["s1", "s2", "s3", "s5", "s7"]);
    }
}
