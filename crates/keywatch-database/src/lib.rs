//! Storage for keywatch behind the [`Database`] trait: the event log (CloudTrail records,
//! a plain use of a key kept as its event ([`LoggedRecord`]), stored once by eventID and
//! indexed by stream), the timelines projected from it (and snapshots of them that
//! rebuilds start from), and the alerts already raised. [`Projector`] drives the core over any implementation of it:
//! `keywatch-sqlite` (the embedded default), DynamoDB (`keywatch-aws`, the Lambda pipeline)
//! and [`MemoryDatabase`] (tests and benchmarks).

mod codec;
mod memory;
mod merge;
mod projector;
mod raised;

pub use codec::{
    alert_id_bytes, decode_json, decode_record, decode_segment, encode_json, encode_record,
    encode_segment, encode_segment_of, event_id_uuid, parse_json, segment_event_ids, EntryToLog,
    LoggedRecord, SegmentEntry,
};
pub use memory::MemoryDatabase;
pub use merge::SegmentMerge;
pub use projector::{current_timeline, BatchOutcome, NormalisedRecord, Projector};

use keywatch_core::{Alert, KeyArn, KeyEvent, KeyState, KeyStoreRef, KeyTimeline, Timestamp};
use std::collections::{BTreeMap, HashSet};

/// The cause of a database failure, as the adapter reported it (rusqlite's error for SQLite,
/// the SDK's error context for DynamoDB).
pub type DatabaseFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The database failed (unreachable, throttled, full, locked…): trying again may succeed.
    #[error("database error: {0}")]
    Database(#[source] DatabaseFailure),
    /// Another writer changed what this batch read (optimistic concurrency); redo the batch.
    #[error("write conflict on {0}")]
    Conflict(String),
    /// Stored data could not be read back.
    #[error("corrupt stored {what}: {reason}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

impl DatabaseError {
    /// Whether the same work may succeed when tried again: a database failure or a write
    /// conflict may pass; stored data that cannot be read will not (retrying it only delays
    /// the error).
    pub fn is_retryable(&self) -> bool {
        match self {
            DatabaseError::Database(_) | DatabaseError::Conflict(_) => true,
            DatabaseError::Corrupt { .. } => false,
        }
    }
}

/// Why a timeline saved only in summary ([`Database::save_timeline_summaries`]) reads back
/// as [`DatabaseError::Corrupt`]: its key's events are in the log, its whole form is not
/// (the run that folded them stopped before saving it), and a reader rebuilds it.
pub const TIMELINE_BEHIND: &str =
    "behind the event log (saved in summary only by a run that stopped before saving it whole)";

/// An event stream: one key's events, or one custom key store's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    /// A key.
    Key(KeyArn),
    /// A custom key store.
    KeyStore(KeyStoreRef),
}

impl StreamId {
    /// A stable text form: `key:<arn>` or `cks:<account>/<region>/<id>`.
    pub fn as_text(&self) -> String {
        match self {
            StreamId::Key(k) => format!("key:{k}"),
            StreamId::KeyStore(s) => format!("cks:{s}"),
        }
    }
}

/// A CloudTrail record to append to the event log.
#[derive(Clone, Debug)]
pub struct RecordToAppend<'a> {
    /// `eventID`.
    pub event_id: &'a str,
    /// `eventTime`.
    pub event_time: Timestamp,
    /// The record's JSON, as it came (empty where the log keeps `kept_use` instead).
    pub json: &'a str,
    /// Its one event, when the event log keeps that instead of the JSON: a use of one key
    /// ([`LoggedRecord::use_of`]).
    pub kept_use: Option<&'a KeyEvent>,
    /// The streams it belongs to.
    pub streams: Vec<StreamId>,
    /// Known not to be in the event log already: each of its events follows its key's
    /// timeline (so no batch folded it before), and none is a key store's. A database may
    /// store such a record without looking it up. Only a batch that stored it and failed
    /// before saving the timeline can have left a copy, and folds drop copies by eventID.
    pub unseen: bool,
}

impl RecordToAppend<'_> {
    /// About how many bytes the event log's segment takes for it before compression: its
    /// JSON, or for a use kept as its event, what such an event takes.
    pub fn logged_len(&self) -> usize {
        match self.kept_use {
            Some(_) => USE_LOGGED_BYTES,
            None => self.json.len(),
        }
    }
}

/// An estimate of what a use kept as its event takes in a segment before compression (its
/// key, principal, source IP, user agent and what its encryption context names), made when
/// uses were kept as JSON; in binary, without field names, a use takes less.
const USE_LOGGED_BYTES: usize = 400;

/// The records of a batch found new (`fresh`, one flag per record), grouped by stream, each
/// group in (eventTime, eventID) order: what the batch's segments hold. A stream's
/// [unseen](RecordToAppend::unseen) records make one group and its others (records that
/// came late, key store records) another, so that a late record does not stretch the
/// segment of the batch's other records back to its time: a stream is read in order a few
/// segments at a time, and one holding a late record is held until the merge reaches the
/// end of the segment ([`SegmentMerge`]).
pub fn new_records_by_stream<'r, 'a>(
    records: &'r [RecordToAppend<'a>],
    fresh: &[bool],
) -> Vec<(&'r StreamId, Vec<&'r RecordToAppend<'a>>)> {
    let mut per_stream: BTreeMap<(&StreamId, bool), Vec<&RecordToAppend<'a>>> = BTreeMap::new();
    for (r, _) in records.iter().zip(fresh).filter(|(_, new)| **new) {
        for s in &r.streams {
            per_stream.entry((s, r.unseen)).or_default().push(r);
        }
    }
    per_stream
        .into_iter()
        .map(|((stream, _), mut entries)| {
            entries.sort_by(|a, b| (a.event_time, a.event_id).cmp(&(b.event_time, b.event_id)));
            (stream, entries)
        })
        .collect()
}

/// Where a batch's records not known to be [unseen](RecordToAppend::unseen) may already be
/// in the event log: for each of their streams, the earliest and latest of their eventTimes.
/// A segment of the stream that holds one of them spans part of that window.
pub fn windows_to_look_up<'r>(
    records: &'r [RecordToAppend<'_>],
) -> BTreeMap<&'r StreamId, (Timestamp, Timestamp)> {
    let mut windows: BTreeMap<&StreamId, (Timestamp, Timestamp)> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.unseen) {
        for stream in &r.streams {
            let (from, to) = windows
                .entry(stream)
                .or_insert((r.event_time, r.event_time));
            *from = (*from).min(r.event_time);
            *to = (*to).max(r.event_time);
        }
    }
    windows
}

/// What a database found of a batch's records in its event log: the segments it searched
/// (those [`windows_to_look_up`] names) give the eventIDs they hold that the batch has,
/// and then which of the batch's records are new. An unseen record found too is a copy left
/// by a batch that failed, and is not kept again.
pub struct FoundRecords<'r, 'a> {
    records: &'r [RecordToAppend<'a>],
    /// The batch's eventIDs, once a segment is searched.
    batch: Option<HashSet<&'r str>>,
    found: HashSet<String>,
}

impl<'r, 'a> FoundRecords<'r, 'a> {
    /// Nothing found yet of `records`.
    pub fn of(records: &'r [RecordToAppend<'a>]) -> Self {
        FoundRecords {
            records,
            batch: None,
            found: HashSet::new(),
        }
    }

    /// Notes the batch's records a segment ([`encode_segment`]'s bytes) holds.
    pub fn search(&mut self, segment: &[u8]) -> Result<(), DatabaseError> {
        let records = self.records;
        let batch = self
            .batch
            .get_or_insert_with(|| records.iter().map(|r| r.event_id).collect());
        self.found.extend(
            segment_event_ids(segment)?
                .into_iter()
                .filter(|id| batch.contains(id.as_str())),
        );
        Ok(())
    }

    /// Notes eventIDs found otherwise (kept as items of their own, say).
    pub fn note(&mut self, event_ids: impl IntoIterator<Item = String>) {
        self.found.extend(event_ids);
    }

    /// Which records are new: not found, and the first of their eventID in the batch.
    pub fn fresh(self) -> Vec<bool> {
        let mut seen = HashSet::with_capacity(self.records.len());
        self.records
            .iter()
            .map(|r| !self.found.contains(r.event_id) && seen.insert(r.event_id))
            .collect()
    }
}

/// Consecutive runs of records of at most `limit` bytes ([`RecordToAppend::logged_len`])
/// each (at least one record):
/// the segments a stream's new records make where a segment has a size limit.
pub fn split_by_size<'r, 'a>(
    records: &'r [&'r RecordToAppend<'a>],
    limit: usize,
) -> Vec<&'r [&'r RecordToAppend<'a>]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let len = r.logged_len();
        if i > start && size + len > limit {
            chunks.push(&records[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// Encodes records (in their order) as one segment of the event log ([`encode_segment`]).
pub fn encode_records_segment(records: &[&RecordToAppend<'_>]) -> Result<Vec<u8>, DatabaseError> {
    encode_segment_of(
        records
            .iter()
            .map(|r| (r.event_time, r.event_id, r.json, r.kept_use)),
    )
}

/// A key as listed by `keywatch keys`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeySummary {
    /// The key.
    pub key_arn: String,
    /// Its state.
    pub state: KeyState,
    /// When it is (or was) to be deleted.
    pub deletion_date: Option<Timestamp>,
    /// Its last usage attempt.
    pub last_use: Option<Timestamp>,
    /// Its custom key store.
    pub custom_key_store_id: Option<String>,
}

/// What [`Database::visit_stream`] passes a stream's records to. `Send`, so that a
/// database whose futures are `Send` (DynamoDB's) may hold it across its requests.
pub type RecordVisitor<'v> = dyn FnMut(LoggedRecord) -> Result<(), DatabaseError> + Send + 'v;

/// What keywatch keeps: the database port. Implementations: SQLite, DynamoDB, [`MemoryDatabase`].
///
/// Asynchronous, since DynamoDB's requests are: a process waits on them without holding a
/// thread. A local database (SQLite, memory) does its work when called and is never pending.
/// The futures carry no `Send` bound of their own, since SQLite's connection is not `Sync`;
/// over a database whose futures are `Send` (DynamoDB's), the projector's and the
/// pipeline's are too (`keywatch_aws`'s tests check it when they compile).
#[allow(async_fn_in_trait)]
pub trait Database {
    /// Starts a unit of work: what a batch writes (records, timelines, alerts) becomes
    /// visible together at [`Database::commit_batch`], or not at all.
    async fn begin_batch(&mut self) -> Result<(), DatabaseError>;
    /// Makes the batch's writes durable.
    async fn commit_batch(&mut self) -> Result<(), DatabaseError>;
    /// Discards the batch's writes.
    async fn abort_batch(&mut self);
    /// Appends records not seen before and returns, for each, whether it was new.
    async fn append_records(
        &mut self,
        records: &[RecordToAppend<'_>],
    ) -> Result<Vec<bool>, DatabaseError>;
    /// Passes each record of a stream to `visit`, decoded, in (eventTime, eventID) order,
    /// once each, reading the log a few segments at a time ([`SegmentMerge`]): for
    /// rebuilding a timeline from a stream of any length. An error of `visit` stops the
    /// reading and is returned.
    async fn visit_stream(
        &self,
        stream: &StreamId,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), DatabaseError>;
    /// [`Database::visit_stream`] for the records later than `after` only, reading only the
    /// segments that hold such records: for a rebuild that starts from a snapshot of the
    /// timeline through `after` ([`KeyTimeline::snapshots`]).
    async fn visit_stream_after(
        &self,
        stream: &StreamId,
        after: Timestamp,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), DatabaseError>;
    /// Saves a snapshot of a timeline under `id`, new ([`KeyTimeline::snapshots`]). A
    /// snapshot is never changed: a rebuild reads it back with [`Database::load_snapshot`].
    async fn save_snapshot(
        &mut self,
        id: &str,
        timeline: &KeyTimeline,
    ) -> Result<(), DatabaseError>;
    /// Deletes snapshots of a key's timeline that it no longer refers to (stale, or beyond
    /// the newest few). A rebuild that reads one as it goes finds none and reads the whole
    /// stream.
    async fn delete_snapshots(&mut self, key: &KeyArn, ids: &[&str]) -> Result<(), DatabaseError>;
    /// The snapshot of a key's timeline saved as `id`; `None` if there is none.
    async fn load_snapshot(
        &self,
        key: &KeyArn,
        id: &str,
    ) -> Result<Option<KeyTimeline>, DatabaseError>;
    /// The records of a stream, all at once ([`Database::visit_stream`]'s).
    async fn stream_records(&self, stream: &StreamId) -> Result<Vec<LoggedRecord>, DatabaseError> {
        let mut records = Vec::new();
        self.visit_stream(stream, &mut |r| {
            records.push(r);
            Ok(())
        })
        .await?;
        Ok(records)
    }
    /// A key's timeline.
    async fn load_timeline(&self, key: &KeyArn) -> Result<Option<KeyTimeline>, DatabaseError>;
    /// The timelines of several keys, in their order (a database that can read many at once
    /// does so).
    async fn load_timelines(
        &self,
        keys: &[KeyArn],
    ) -> Result<Vec<Option<KeyTimeline>>, DatabaseError> {
        let mut timelines = Vec::with_capacity(keys.len());
        for key in keys {
            timelines.push(self.load_timeline(key).await?);
        }
        Ok(timelines)
    }
    /// Saves timelines, replacing older versions.
    async fn save_timelines(&mut self, timelines: &[&KeyTimeline]) -> Result<(), DatabaseError>;
    /// Saves of each timeline only what the database finds and lists keys by (state, custom
    /// key store, deletion date, last use: [`KeySummary`]'s), and marks the stored timeline
    /// as behind the event log, so that it reads back as [`TIMELINE_BEHIND`] (and is rebuilt
    /// from the log) until [`Database::save_timelines`] saves it whole. Encoding every
    /// touched timeline after every batch was a sixth of a long replay's CPU: a replay saves
    /// whole timelines now and then ([`Projector::defer_timeline_saves`]). A database with no
    /// cheaper form saves them whole.
    async fn save_timeline_summaries(
        &mut self,
        timelines: &[&KeyTimeline],
    ) -> Result<(), DatabaseError> {
        self.save_timelines(timelines).await
    }
    /// The keys whose timelines place them in a custom key store.
    async fn keys_in_key_store(
        &self,
        key_store: &KeyStoreRef,
    ) -> Result<Vec<KeyArn>, DatabaseError>;
    /// Keys whose ARN or key ID is `key`.
    async fn find_keys(&self, key: &str) -> Result<Vec<KeyArn>, DatabaseError>;
    /// Keys pending deletion (for the time-driven alerts).
    async fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, DatabaseError>;
    /// Whether anyone but this handle may have written the database since it was opened.
    /// When not, what this handle saved is what the database holds, and a projector's
    /// cached timelines (saved) need not be read back. A shared database (DynamoDB, read
    /// and written by every Lambda function) always may.
    async fn written_by_others(&self) -> Result<bool, DatabaseError> {
        Ok(true)
    }
    /// How many keys have a timeline.
    async fn key_count(&self) -> Result<u64, DatabaseError>;
    /// Every key, optionally only those in a state.
    async fn list_keys(&self, state: Option<KeyState>) -> Result<Vec<KeySummary>, DatabaseError>;
    /// Alerts recorded but not yet sent (the outbox), oldest first ([`sort_oldest_first`]).
    async fn unsent_alerts(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError>;
    /// Marks alerts as sent: the notification service accepted them.
    async fn mark_sent(&mut self, alert_ids: &[&str], at: Timestamp) -> Result<(), DatabaseError>;
    /// Claims unsent alerts for sending until `until`, so that of several processes
    /// draining one outbox (consumers of one group, Lambda invocations) only one pages each;
    /// returns, for each, whether it is claimed. Not when the alert was sent already (its
    /// stale outbox entry is dropped) or another process holds a claim that has not expired
    /// at `now`. A database one process at a time delivers from needs no claim: the default
    /// grants them all.
    async fn claim_for_sending(
        &mut self,
        alert_ids: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        let _ = (now, until);
        Ok(vec![true; alert_ids.len()])
    }
    /// Marks `sent` as sent at `sent_at` ([`Database::mark_sent`]) and claims `to_claim`
    /// ([`Database::claim_for_sending`]), in one request where the database can: a delivery
    /// records one send's pages together with the next send's claims. Returns, for each of
    /// `to_claim`, whether it is claimed. The marks stand even where a claim is refused.
    async fn mark_sent_and_claim(
        &mut self,
        sent: &[&str],
        sent_at: Timestamp,
        to_claim: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        if !sent.is_empty() {
            self.mark_sent(sent, sent_at).await?;
        }
        if to_claim.is_empty() {
            return Ok(Vec::new());
        }
        self.claim_for_sending(to_claim, now, until).await
    }
    /// Gives up a claim (the notification service refused the page), so that the next
    /// delivery tries again without waiting for the claim to expire.
    async fn release_claim(&mut self, alert_id: &str) -> Result<(), DatabaseError> {
        let _ = alert_id;
        Ok(())
    }
    /// Records alerts as raised, unsent (into the outbox); returns, for each, whether it was
    /// new (not raised before).
    async fn record_alerts(
        &mut self,
        alerts: &[Alert],
        raised_at: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError>;
}

/// Orders alerts oldest first, as a batch raises them, every outbox is read and every list
/// of alerts is shown: by the `eventTime` of what raised them, then key, kind and id.
pub fn sort_oldest_first(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        (a.event_time, &a.key_arn, a.kind, &a.alert_id).cmp(&(
            b.event_time,
            &b.key_arn,
            b.kind,
            &b.alert_id,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywatch_core::{KmsEvent, Normalised};

    #[test]
    fn segments_are_cut_by_what_the_log_keeps_of_each_record() {
        let json = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"},"eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","requestParameters":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/0e5d0ab6-097e-49d8-99ef-747ce3e5f8f4"},"eventID":"b7341259-e4be-49d7-b2fb-1d9253becfa8"}"#;
        let Ok(Normalised::Kms { events, .. }) = keywatch_core::normalise(json) else {
            panic!("a use");
        };
        let KmsEvent::Key(used) = &events[0] else {
            panic!("of a key");
        };
        let record = |kept_use| RecordToAppend {
            event_id: "b7341259-e4be-49d7-b2fb-1d9253becfa8",
            event_time: Timestamp::from_millis(0),
            json: if kept_use { "" } else { json },
            kept_use: kept_use.then_some(used),
            streams: Vec::new(),
            unseen: true,
        };
        // A use kept as its event counts what such an event takes, not its empty JSON.
        let uses: Vec<RecordToAppend<'_>> = (0..10).map(|_| record(true)).collect();
        let uses: Vec<&RecordToAppend<'_>> = uses.iter().collect();
        let cuts = split_by_size(&uses, 3 * USE_LOGGED_BYTES);
        assert_eq!(
            cuts.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        let whole: Vec<RecordToAppend<'_>> = (0..4).map(|_| record(false)).collect();
        let whole: Vec<&RecordToAppend<'_>> = whole.iter().collect();
        let cuts = split_by_size(&whole, 2 * json.len());
        assert_eq!(cuts.iter().map(|c| c.len()).collect::<Vec<_>>(), [2, 2]);
        // One record over the limit still makes a segment of its own.
        assert_eq!(split_by_size(&whole[..1], 1).len(), 1);
    }
}
