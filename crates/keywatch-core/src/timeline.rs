//! The per-key timeline: a projection folded from the key's events (and those of its custom
//! key store) in (eventTime, eventID) order.

use crate::event::{
    BackingKeyStatus, EventContext, KeyArn, KeyEvent, KeyEventKind, KeyOrigin, KeyState,
    KeyStoreChange, KeyStoreEvent, KeyStoreRef, KeyUsage, KmsEvent, KmsOperation, Principal,
    UsageOutcome,
};
use crate::protects::BlastRadius;
use crate::time::{Timestamp, DAY_MS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// How many usage attempts while pending deletion are kept as individual entries.
pub const MAX_PENDING_USE_ENTRIES: usize = 200;
/// How many (principal, minute) buckets of pending-deletion use a timeline keeps at rest
/// ([`KeyTimeline::compact`]): the most recent ones. Folding never drops one, so that every
/// minute a batch brings is paged before the projector compacts the timeline.
pub const MAX_PENDING_USE_BUCKETS: usize = 2_000;
/// How many Regions of related multi-Region keys a timeline follows. AWS allows one related
/// key per Region of the key's partition (a few dozen Regions); a record naming a related
/// key in yet another Region is crafted, and a family of thousands would hold every member's
/// lifecycle in every member's timeline. Regions past this many, in fold order, are not
/// followed.
pub const MAX_RELATED_REGIONS: usize = 64;
/// How many changes of the key's custom key store (connected, disconnected, updated…) a
/// timeline keeps as entries: the most recent, in fold order. A store connected and
/// disconnected every day would otherwise put each change in every one of its keys'
/// timelines for ever (20,000 keys and 400 changes held 3.6 GB in a replay). The store's
/// state and the orphan risks it brings are kept whatever the count.
pub const MAX_KEY_STORE_ENTRIES: usize = 50;
/// How many days count as recent use: usage within them before a schedule makes
/// `deletion_scheduled` high, and preflight asks for this many days without use by default.
pub const RECENT_USE_DAYS: u32 = 30;
/// How long after CancelKeyDeletion a "… is pending deletion." rejection is read as KMS's
/// eventual consistency rather than as proof of a new, unseen schedule.
pub const EVENTUAL_CONSISTENCY_MS: i64 = 5 * MINUTE_MS;
const MINUTE_MS: i64 = 60_000;

/// The kind of custom key store that holds a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreType {
    /// `AWS_CLOUDHSM`: key material in a CloudHSM cluster.
    Cloudhsm,
    /// `EXTERNAL_KEY_STORE`: the key lives outside AWS.
    External,
}

/// The custom key store of a key, joined with that key store's connection history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomKeyStore {
    /// `cks-…`.
    pub custom_key_store_id: String,
    /// CloudHSM or external.
    pub key_store_type: KeyStoreType,
    /// The CloudHSM cluster.
    pub cloudhsm_cluster_id: Option<String>,
    /// The external key's ID (XKS).
    pub xks_key_id: Option<String>,
    /// Whether the key store is connected, as last seen (None: never seen).
    pub connected: Option<bool>,
}

impl CustomKeyStore {
    /// This key store, identified in `key`'s account and Region (a custom key store ID is
    /// unique only there).
    pub fn identified_for(&self, key: &KeyArn) -> KeyStoreRef {
        KeyStoreRef {
            account: key.account().to_owned(),
            region: key.region().to_owned(),
            custom_key_store_id: self.custom_key_store_id.clone(),
        }
    }
}

/// Counts of one principal's use of one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRollup {
    /// Who.
    pub principal: Principal,
    /// Which operation.
    pub operation: KmsOperation,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (any error, including rejections as pending deletion).
    pub failures: u64,
    /// Calls rejected because the key was pending deletion: uses, unlike other failures.
    #[serde(default)]
    pub rejected_pending_deletion: u64,
    /// The last use: a call that succeeded or was rejected as pending deletion. Calls that
    /// failed for other reasons (AccessDenied, throttling, validation) are attempts only.
    #[serde(default)]
    pub last_used: Option<Timestamp>,
    /// First attempt.
    pub first_seen: Timestamp,
    /// Last attempt.
    pub last_seen: Timestamp,
    /// Calls rejected because the key was disabled (`DisabledException`), among the
    /// failures: attempts, not uses, but proof that something still depends on the key.
    #[serde(default)]
    pub rejected_disabled: u64,
    /// The last of them.
    #[serde(default)]
    pub last_rejected_disabled: Option<Timestamp>,
}

/// One deletion schedule and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionSchedule {
    /// The ScheduleKeyDeletion record's eventID.
    pub event_id: String,
    /// When it was scheduled.
    pub scheduled_at: Timestamp,
    /// Who scheduled it.
    pub scheduled_by: Principal,
    /// The waiting period.
    pub window_days: u32,
    /// When KMS deletes the key; none while a multi-Region primary waits for its replicas
    /// to be deleted (AWS sets no date until then).
    pub deletion_date: Option<Timestamp>,
    /// When the last replica of a multi-Region primary was deleted, which began its
    /// waiting period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_period_began: Option<Timestamp>,
    /// Any use of the key in the 30 days before the schedule.
    pub used_in_prior_30_days: bool,
    /// The last use before the schedule.
    pub last_use_before: Option<Timestamp>,
    /// The usage roll-up as it stood at the schedule.
    pub usage_before: Vec<UsageRollup>,
    /// Uses during the waiting period (calls that succeeded or were rejected as pending
    /// deletion).
    pub uses_during_window: u64,
    /// Calls during the waiting period that failed for other reasons: attempts, not uses.
    #[serde(default)]
    pub failed_attempts_during_window: u64,
    /// How the waiting period ended, if it has.
    pub ended: Option<ScheduleEnd>,
}

impl DeletionSchedule {
    /// The last use before the schedule and whether it came in the 30 days before, from the
    /// usage roll-up as it stood at the schedule.
    fn settle_use_before(&mut self) {
        self.last_use_before = last_user(&self.usage_before).map(|(at, _)| at);
        self.used_in_prior_30_days = self.last_use_before.is_some_and(|t| {
            t.millis() >= self.scheduled_at.millis() - i64::from(RECENT_USE_DAYS) * DAY_MS
        });
    }
}

/// How a waiting period ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ScheduleEnd {
    /// CancelKeyDeletion.
    Cancelled {
        /// eventID.
        event_id: String,
        /// When.
        at: Timestamp,
        /// Who.
        principal: Principal,
    },
    /// DeleteKey.
    Deleted {
        /// eventID.
        event_id: String,
        /// When.
        at: Timestamp,
    },
}

impl ScheduleEnd {
    /// When the waiting period ended.
    pub fn at(&self) -> Timestamp {
        match self {
            ScheduleEnd::Cancelled { at, .. } | ScheduleEnd::Deleted { at, .. } => *at,
        }
    }
}

/// Why key material may be left behind in a CloudHSM cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum OrphanReason {
    /// DeleteKey reported a backing key deletion status other than SUCCESS.
    BackingKeyNotDeleted {
        /// The statuses reported.
        backing_keys: Vec<BackingKeyStatus>,
    },
    /// The key store was disconnected when the key was deleted.
    KeyStoreDisconnected,
}

impl std::fmt::Display for OrphanReason {
    /// Why, in words: "DeleteKey reported backing key deletion status FAILURE (key handle
    /// 01)", "the custom key store was disconnected when the key was deleted".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrphanReason::BackingKeyNotDeleted { backing_keys } => {
                f.write_str("DeleteKey reported backing key deletion status ")?;
                for (i, b) in backing_keys.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    write!(
                        f,
                        "{separator}{} (key handle {})",
                        b.deletion_status,
                        b.key_handle.as_deref().unwrap_or("?")
                    )?;
                }
                Ok(())
            }
            OrphanReason::KeyStoreDisconnected => {
                f.write_str("the custom key store was disconnected when the key was deleted")
            }
        }
    }
}

/// A custom key store disconnected while one of its keys is pending deletion: if it is
/// still disconnected when the waiting period ends, a CloudHSM key's material is orphaned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRisk {
    /// The schedule whose waiting period is running.
    pub schedule: String,
    /// The event that made the risk (DisconnectCustomKeyStore, or the ScheduleKeyDeletion of
    /// a key whose store was already disconnected).
    pub event_id: String,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub principal: Principal,
}

/// What keywatch knows of one related multi-Region key (a replica, or the primary seen
/// from a replica).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedKey {
    /// When KMS deleted it, if it did.
    pub deleted_at: Option<Timestamp>,
}

/// A usage attempt while the key was pending deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUse {
    /// The operation.
    pub operation: KmsOperation,
    /// Whether KMS rejected it (it may still succeed under eventual consistency).
    pub rejected: bool,
    /// Who, from where, via what.
    #[serde(flatten)]
    pub context: EventContext,
}

/// Pending-deletion uses of one principal within one minute: the unit from which pages are
/// built, whatever the suppression window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUseBucket {
    /// The schedule's eventID; none when only rejections proved the state (stored as
    /// `"unscheduled"`).
    #[serde(with = "schedule_event_id")]
    pub schedule: Option<String>,
    /// Who.
    pub principal: Principal,
    /// Start of the minute.
    pub minute: Timestamp,
    /// Attempts in the minute.
    pub count: u64,
    /// The first attempt in the minute (boxed: a busy key keeps thousands of buckets, and
    /// their vector, grown by doubling, then holds slack of the bucket's size, not the use's).
    pub first: Box<PendingUse>,
}

/// A bucket's schedule as stored: its eventID, or `"unscheduled"`.
mod schedule_event_id {
    use serde::{Deserialize, Deserializer, Serializer};

    const UNSCHEDULED: &str = "unscheduled";

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(UNSCHEDULED))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((s != UNSCHEDULED).then_some(s))
    }
}

/// One entry of the readable timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// eventID.
    pub event_id: String,
    /// When.
    pub event_time: Timestamp,
    /// eventName.
    pub event_name: String,
    /// Who.
    pub principal: Principal,
    /// What happened, in detail.
    pub detail: EntryDetail,
}

/// The detail of a timeline entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum EntryDetail {
    /// A lifecycle event on the key.
    Lifecycle(KeyEventKind),
    /// A use while pending deletion.
    UsedWhilePendingDeletion {
        /// The operation.
        operation: KmsOperation,
        /// Rejected by KMS.
        rejected: bool,
        /// `sourceIPAddress`.
        source_ip: Option<String>,
        /// `invokedBy`.
        invoked_by: Option<String>,
    },
    /// A rejection as pending deletion that arrived just after CancelKeyDeletion: KMS's
    /// eventual consistency. Shown, but the key stays cancelled (Disabled) and nobody is paged.
    RejectedAfterCancel {
        /// The operation.
        operation: KmsOperation,
        /// `sourceIPAddress`.
        source_ip: Option<String>,
    },
    /// A lifecycle event of a related multi-Region key (a replica, or the primary).
    RelatedKey {
        /// The related key.
        key_arn: String,
        /// What happened to it.
        change: KeyEventKind,
    },
    /// A change of the key's custom key store.
    KeyStore {
        /// `cks-…`.
        custom_key_store_id: String,
        /// Connected, disconnected…
        change: KeyStoreChange,
    },
}

/// How far back keywatch's records of a key reach ([`KeyTimeline::records_reach`]). A key
/// that keywatch saw no use of was unused only as far back as this: CloudTrail logs that
/// keywatch never read (before it was deployed, or older than the archives replayed) may
/// hold its use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordsReach {
    /// Back to the key's creation (its CreateKey record): its whole life.
    SinceCreation(Timestamp),
    /// Back to the earliest record of the key keywatch holds, not to its creation.
    Since(Timestamp),
    /// No record of the key's own calls (only of its custom key store's, say).
    Nothing,
}

/// A key's timeline, folded from its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTimeline {
    /// The form of this timeline as stored ([`TIMELINE_FORMAT`] when folded by this
    /// version; 0 when stored by a version before the field). A store that finds another
    /// form rebuilds the timeline from the event log rather than trust or fail to read it.
    #[serde(default)]
    pub format: u32,
    /// The key.
    pub key_arn: KeyArn,
    /// The state after the last event.
    pub state: KeyState,
    /// The state before the key store was disconnected.
    pub state_before_unavailable: Option<KeyState>,
    /// When the key is (or was) to be deleted, while pending deletion or deleted.
    pub deletion_date: Option<Timestamp>,
    /// `origin` from CreateKey.
    pub origin: Option<KeyOrigin>,
    /// A multi-Region key.
    pub multi_region: bool,
    /// When the key was created (CreateKey), if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// What the key is for (`keyUsage` in CreateKey), if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<KeyUsage>,
    /// The Region of the multi-Region primary key, when an UpdatePrimaryRegion named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// Related multi-Region keys by Region (for a primary: its replicas).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub related_keys: BTreeMap<String, RelatedKey>,
    /// The custom key store, if any.
    pub custom_key_store: Option<CustomKeyStore>,
    /// Lifecycle entries and pending-deletion uses, in order.
    pub entries: Vec<TimelineEntry>,
    /// Usage per principal and operation.
    pub usage: Vec<UsageRollup>,
    /// What the key protects: the resources its calls' encryption contexts named.
    #[serde(default, skip_serializing_if = "BlastRadius::is_empty")]
    pub blast_radius: BlastRadius,
    /// Every deletion schedule, in order.
    pub schedules: Vec<DeletionSchedule>,
    /// Pending-deletion uses, per principal per minute, in time order.
    pub pending_use_buckets: Vec<PendingUseBucket>,
    /// Pending-deletion uses per principal in buckets compacted away (older than those kept),
    /// so that a page's `uses_so_far` still counts from the first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_uses_compacted: BTreeMap<Principal, u64>,
    /// Pending-deletion uses in all.
    pub pending_uses: u64,
    /// Pending-deletion uses not kept as entries (beyond the bound).
    pub pending_use_entries_dropped: u64,
    /// Changes of the custom key store not kept as entries: the oldest, beyond
    /// [`MAX_KEY_STORE_ENTRIES`].
    #[serde(default, skip_serializing_if = "crate::alert::is_zero")]
    pub key_store_entries_dropped: u64,
    /// Why key material may be orphaned in a CloudHSM cluster.
    pub orphaned_key_material: Option<OrphanReason>,
    /// Disconnections of the key's custom key store during a waiting period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphan_risks: Vec<OrphanRisk>,
    /// When deletion was last cancelled (CancelKeyDeletion), whether or not the schedule's
    /// record was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Timestamp>,
    /// The DeleteKey eventID, once deleted.
    pub deleted_by_event: Option<String>,
    /// Events folded.
    pub event_count: u64,
    /// The (eventTime, call id) of the last event folded: the call id is the `sharedEventID`
    /// of a cross-account call, else the eventID.
    pub last_applied: Option<(Timestamp, String)>,
    /// The last event folded that did more than count a use: uses after it commute, so a
    /// late one among them folds in place instead of rebuilding ([`Self::absorbs`]).
    #[serde(default)]
    pub last_change: LastChange,
    /// Snapshots of this timeline as folded through a point of the key's stream, kept apart
    /// by the database, oldest first: a rebuild for a record later than one folds the rest
    /// of the stream from there instead of all of it. A fold never sets them; the projector
    /// keeps only those that every record the log holds of their time is folded into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotRef>,
}

/// What a timeline shows of the events it folded: its entries by eventID, its uses while
/// pending deletion per principal and minute, and its usage roll-ups. A database without
/// units of work (DynamoDB) can store a record and fail before saving the timeline that folds
/// it (or before recording its pages); delivered again, the record is in the log and, late,
/// does not [follow](KeyTimeline::follows) the timeline, which must then tell whether it
/// folded it.
pub struct FoldedEvidence<'t> {
    timeline: &'t KeyTimeline,
    listed: HashSet<&'t str>,
    /// The earliest use while pending deletion listed (the first are listed).
    first_pending_use: Option<Timestamp>,
}

impl FoldedEvidence<'_> {
    /// Whether the timeline shows that it folded `event`, of a record the log holds:
    /// - a lifecycle event (or a related key's) is listed among the entries by eventID;
    /// - a use that may have come while the key was pending deletion (a page) is listed
    ///   among the entries; or, where it cannot be (the entries of such uses are full, or it
    ///   is a copy of a cross-account call folded as its other copy), its principal's minute
    ///   counts a use, so its page was raised (or that minute was compacted away);
    /// - any other use only counts and is not listed: it is taken as folded where its
    ///   principal's roll-up for its operation spans its time (a use counted there at the
    ///   same time or around it cannot be told from it);
    /// - a change of the key's custom key store is listed among the entries (or older than
    ///   the changes listed, where older ones were dropped).
    ///
    /// Where this is false, the record may not be folded: rebuild the timeline from the log.
    pub fn shows_folded(&self, event: &KmsEvent) -> bool {
        let e = match event {
            KmsEvent::Key(e) => e,
            KmsEvent::KeyStore(e) => return self.shows_key_store_event(e),
        };
        let KeyEventKind::Used {
            operation, outcome, ..
        } = &e.kind
        else {
            return self.listed.contains(e.context.event_id.as_str());
        };
        let c = &e.context;
        if self.listed.contains(c.event_id.as_str()) {
            return true;
        }
        if !self.may_be_pending_use(c.event_time, outcome) {
            return self.counts(c, operation);
        }
        let t = self.timeline;
        if !t.pending_use_entries_full() && c.shared_event_id.is_none() {
            return false;
        }
        let minute = minute_of(c.event_time);
        let principal = t.paging_principal(c);
        t.minute_compacted_away(minute)
            || t.pending_use_buckets
                .iter()
                .any(|b| b.minute == minute && b.principal == principal)
    }

    /// Whether a use that only counts shows as counted: its principal's roll-up for its
    /// operation spans its time. A use by a principal or of an operation not counted, or
    /// outside the times counted, was not folded. (One copy of a cross-account call is
    /// counted under the other copy's principal: taken as folded.)
    fn counts(&self, c: &EventContext, operation: &KmsOperation) -> bool {
        if c.shared_event_id.is_some() {
            return true;
        }
        let usage = &self.timeline.usage;
        usage
            .binary_search_by(|u| (&u.principal, &u.operation).cmp(&(&c.principal, operation)))
            .is_ok_and(|i| {
                usage[i].first_seen <= c.event_time && c.event_time <= usage[i].last_seen
            })
    }

    /// Whether a change of a custom key store shows as folded: not the key's store (it
    /// changes nothing), listed among the entries, or older than every change still listed
    /// when older ones were dropped.
    fn shows_key_store_event(&self, e: &KeyStoreEvent) -> bool {
        let t = self.timeline;
        if !t.is_in_key_store(e) || self.listed.contains(e.context.event_id.as_str()) {
            return true;
        }
        t.key_store_entries_dropped > 0
            && t.entries
                .iter()
                .find(|entry| matches!(entry.detail, EntryDetail::KeyStore { .. }))
                .is_none_or(|oldest| e.context.event_time <= oldest.event_time)
    }

    /// Whether a use at `at` may have been folded as a use while pending deletion: rejected
    /// as such, or succeeding during a waiting period, or after a rejection proved the state
    /// before any schedule was seen (and before a cancellation).
    fn may_be_pending_use(&self, at: Timestamp, outcome: &UsageOutcome) -> bool {
        let t = self.timeline;
        match outcome {
            UsageOutcome::RejectedPendingDeletion => true,
            UsageOutcome::Succeeded => {
                let in_window = t.schedules.iter().any(|s| {
                    s.scheduled_at <= at && s.ended.as_ref().is_none_or(|end| at <= end.at())
                });
                let proved_before_a_schedule = self.first_pending_use.is_some_and(|first| {
                    first <= at
                        && t.schedules.first().is_none_or(|s| at < s.scheduled_at)
                        && t.cancelled_at.is_none_or(|cancelled| at <= cancelled)
                });
                in_window || proved_before_a_schedule
            }
            UsageOutcome::Failed { .. } => false,
        }
    }
}

/// A snapshot of a timeline kept in the database ([`KeyTimeline::snapshots`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Every record of the key's stream of this eventTime or earlier is folded in it, and
    /// none later.
    pub through: Timestamp,
    /// Its id in the database, new for every snapshot saved.
    pub id: String,
}

/// Where a timeline last changed in more than its usage counts: a lifecycle event, a key
/// store's, a related key's, a use while pending deletion, a use naming a new key store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastChange {
    /// Not known: a timeline stored before this was kept. Nothing late folds in place.
    #[default]
    Unknown,
    /// Every event folded only counted a use.
    Never,
    /// At this event: (eventTime, call id), as in [`KeyTimeline::last_applied`].
    At(Timestamp, String),
}

/// The form of [`KeyTimeline`] this version folds and stores. Raise it whenever what a fold
/// keeps changes in a way an older stored timeline would not show (a new field with no
/// default that fits, a new rule over old entries): stored timelines of another form are
/// then rebuilt from the event log.
/// Form 2 counts calls rejected because the key was disabled (`DisabledException`) apart,
/// and keeps the key's `keyUsage`.
pub const TIMELINE_FORMAT: u32 = 2;

impl KeyTimeline {
    /// An empty timeline for a key.
    pub fn new(key_arn: KeyArn) -> Self {
        KeyTimeline {
            format: TIMELINE_FORMAT,
            key_arn,
            state: KeyState::Unknown,
            state_before_unavailable: None,
            deletion_date: None,
            origin: None,
            multi_region: false,
            created_at: None,
            key_usage: None,
            primary_region: None,
            related_keys: BTreeMap::new(),
            custom_key_store: None,
            entries: Vec::new(),
            usage: Vec::new(),
            blast_radius: BlastRadius::default(),
            schedules: Vec::new(),
            pending_use_buckets: Vec::new(),
            pending_uses_compacted: BTreeMap::new(),
            pending_uses: 0,
            pending_use_entries_dropped: 0,
            key_store_entries_dropped: 0,
            orphaned_key_material: None,
            orphan_risks: Vec::new(),
            cancelled_at: None,
            deleted_by_event: None,
            event_count: 0,
            last_applied: None,
            last_change: LastChange::Never,
            snapshots: Vec::new(),
        }
    }

    /// Bounds the timeline at rest: keeps the most recent [`MAX_PENDING_USE_BUCKETS`] buckets
    /// of pending-deletion use (whole minutes), counting the uses of older ones per principal
    /// in [`KeyTimeline::pending_uses_compacted`]. Call it after the alerts of what was folded
    /// have been evaluated: pages for the minutes it drops have been raised by then.
    pub fn compact(&mut self) {
        let len = self.pending_use_buckets.len();
        if len <= MAX_PENDING_USE_BUCKETS {
            return;
        }
        // Whole minutes go, so that a later use in a kept minute finds its bucket.
        let cutoff = self.pending_use_buckets[len - MAX_PENDING_USE_BUCKETS].minute;
        let keep_from = self
            .pending_use_buckets
            .iter()
            .position(|b| b.minute >= cutoff)
            .unwrap_or(len);
        for b in self.pending_use_buckets.drain(..keep_from) {
            *self.pending_uses_compacted.entry(b.principal).or_default() += b.count;
        }
    }

    /// Folds events (in any order, with duplicates) into a fresh timeline. The two copies
    /// of a cross-account call (one `sharedEventID`) fold as one call: the caller's copy,
    /// which names the caller's principal, is preferred.
    pub fn fold<'a>(key_arn: KeyArn, events: impl IntoIterator<Item = &'a KmsEvent>) -> Self {
        let mut sorted: Vec<&KmsEvent> = events.into_iter().collect();
        sorted.sort_by_key(|e| e.context().event_time);
        // A key lives in one custom key store for life: knowing it from the start lets the
        // key store's events before the first record that names it count too.
        let mut named = KeyTimeline::new(key_arn.clone());
        for group in sorted.chunk_by(|a, b| same_time(a, b)) {
            for e in in_fold_order(group) {
                named.note_key_store_named_by(e);
            }
        }
        let mut fold = OrderedFold::new(key_arn, named.custom_key_store);
        for e in sorted {
            fold.push_in_order(e);
        }
        fold.finish().0
    }

    /// Whether `event` sorts after everything folded so far, so that applying it now gives
    /// the same timeline as a fold from scratch. Otherwise (including the second copy of a
    /// cross-account call), rebuild with [`Self::fold`].
    pub fn follows(&self, event: &KmsEvent) -> bool {
        match &self.last_applied {
            None => true,
            Some((t, call)) => {
                let (et, ecall, _) = event.order_key();
                (et, ecall) > (*t, call.as_str())
            }
        }
    }

    /// The schedule whose waiting period is running, if any.
    pub fn active_schedule(&self) -> Option<&DeletionSchedule> {
        self.schedules
            .last()
            .filter(|s| s.ended.is_none() && self.state.is_pending_deletion())
    }

    /// The last use (a call that succeeded or was rejected as pending deletion) of any
    /// principal.
    pub fn last_use(&self) -> Option<Timestamp> {
        last_user(&self.usage).map(|(at, _)| at)
    }

    /// How far back keywatch's records of this key reach: what "not used" can rest on.
    pub fn records_reach(&self) -> RecordsReach {
        if let Some(created) = self.created_at {
            return RecordsReach::SinceCreation(created);
        }
        // The key's own calls: not its related keys' lifecycle nor its key store's.
        let earliest_entry = self
            .entries
            .iter()
            .filter(|e| {
                !matches!(
                    e.detail,
                    EntryDetail::RelatedKey { .. } | EntryDetail::KeyStore { .. }
                )
            })
            .map(|e| e.event_time)
            .min();
        let earliest_use = self.usage.iter().map(|u| u.first_seen).min();
        match earliest_entry.into_iter().chain(earliest_use).min() {
            Some(since) => RecordsReach::Since(since),
            None => RecordsReach::Nothing,
        }
    }

    /// What shows which late events of records the log holds this timeline folded
    /// ([`FoldedEvidence::shows_folded`]).
    pub fn folded_evidence(&self) -> FoldedEvidence<'_> {
        FoldedEvidence {
            timeline: self,
            listed: self.entries.iter().map(|e| e.event_id.as_str()).collect(),
            first_pending_use: self
                .entries
                .iter()
                .filter(|e| matches!(e.detail, EntryDetail::UsedWhilePendingDeletion { .. }))
                .map(|e| e.event_time)
                .min(),
        }
    }

    /// Whether the key's custom key store is disconnected, as last seen.
    pub fn key_store_disconnected(&self) -> bool {
        self.custom_key_store
            .as_ref()
            .is_some_and(|s| s.connected == Some(false))
    }

    /// Whether `event`, though it does not [follow](Self::follows), folds now into the same
    /// timeline as a rebuild from the log would give: a use that only counts (the key not
    /// pending deletion, no new key store named, not a copy of a cross-account call), later
    /// than every event that did more, or earlier than the key's only schedule and later than
    /// everything else ([`Self::folds_before_schedule`]). Such uses commute: their roll-ups are sums,
    /// minima and maxima. A busy key's calls come a little out of order all the time
    /// (CloudTrail times are whole seconds, eventIDs random), and each rebuild would read its
    /// whole log.
    pub fn absorbs(&self, event: &KmsEvent) -> bool {
        let KmsEvent::Key(e) = event else {
            return false;
        };
        if e.context.shared_event_id.is_some() || !self.commutes(e) {
            return false;
        }
        let (at, call, _) = event.order_key();
        let after_last_change = match &self.last_change {
            LastChange::Unknown => false,
            LastChange::Never => true,
            LastChange::At(t, id) => (at, call) > (*t, id.as_str()),
        };
        if !after_last_change {
            return self.folds_before_schedule(e, at);
        }
        self.only_counts(e) || self.can_place_pending_use(at)
    }

    /// Whether a late use at `at` (not after the last change) folds in place before the key's
    /// schedule as a rebuild would fold it: the last change is the key's only
    /// schedule and nothing else happened after `at` but uses under that schedule, and the
    /// use only counts (it succeeded or failed; the key in no custom key store and not
    /// multi-Region). Such a use goes into the roll-ups and into the
    /// schedule's picture of the use before it ([`Self::apply`]). A schedule's record can come
    /// long before the uses that precede it: an archive replayed out of time order, one
    /// account's year of files after another's.
    fn folds_before_schedule(&self, e: &KeyEvent, at: Timestamp) -> bool {
        let KeyEventKind::Used { outcome, .. } = &e.kind else {
            return false;
        };
        let [schedule] = self.schedules.as_slice() else {
            return false;
        };
        let plain = matches!(
            outcome,
            UsageOutcome::Succeeded | UsageOutcome::Failed { .. }
        );
        // Every use while pending deletion came under this schedule, after it (one before it,
        // proved by a rejection alone, is in a bucket of no schedule).
        let pending_after = self.pending_uses_compacted.is_empty()
            && self
                .pending_use_buckets
                .iter()
                .all(|b| b.schedule.as_deref() == Some(schedule.event_id.as_str()));
        let quiet = pending_after
            && self.custom_key_store.is_none()
            && !self.multi_region
            && !self.key_arn.is_multi_region()
            && e.key == self.key_arn
            && e.context.shared_event_id.is_none();
        let schedule_is_last_change = matches!(&self.last_change,
            LastChange::At(t, id) if *t == schedule.scheduled_at && *id == schedule.event_id);
        // Entries are in fold order; the schedule's is the last but for uses while pending
        // deletion, and the one before it (a lifecycle, key store or related key entry: every
        // other change) came before `at`.
        let mut entries = self
            .entries
            .iter()
            .rev()
            .skip_while(|e| matches!(e.detail, EntryDetail::UsedWhilePendingDeletion { .. }));
        let schedule_entry_last = entries.next().is_some_and(|last| {
            last.event_id == schedule.event_id
                && matches!(
                    last.detail,
                    EntryDetail::Lifecycle(KeyEventKind::DeletionScheduled { .. })
                )
        });
        let earlier_before = entries.next().is_none_or(|before| before.event_time < at);
        plain
            && quiet
            && schedule_is_last_change
            && schedule_entry_last
            && earlier_before
            && at < schedule.scheduled_at
    }

    /// Whether a late use while pending deletion at `at` lands where a rebuild would put it:
    /// its entry among the kept ones by time alone (none kept in the same second, where
    /// eventIDs would decide), or none when the kept ones all came before; its minute not
    /// among those compacted away.
    fn can_place_pending_use(&self, at: Timestamp) -> bool {
        let entry_placed = if !self.pending_use_entries_full() {
            self.entries.iter().all(|e| e.event_time != at)
        } else {
            self.entries
                .iter()
                .rev()
                .find(|e| matches!(e.detail, EntryDetail::UsedWhilePendingDeletion { .. }))
                .is_none_or(|e| e.event_time < at)
        };
        entry_placed && !self.minute_compacted_away(minute_of(at))
    }

    /// Whether the entries hold as many uses while pending deletion as they keep
    /// ([`MAX_PENDING_USE_ENTRIES`]): later ones are counted, not listed.
    fn pending_use_entries_full(&self) -> bool {
        self.pending_uses - self.pending_use_entries_dropped >= MAX_PENDING_USE_ENTRIES as u64
    }

    /// Whether the buckets of pending-deletion use of `minute` were compacted away
    /// ([`Self::compact`]): it is older than every bucket kept.
    fn minute_compacted_away(&self, minute: Timestamp) -> bool {
        !self.pending_uses_compacted.is_empty()
            && self
                .pending_use_buckets
                .first()
                .is_none_or(|b| minute < b.minute)
    }

    /// Whether applying `e` now commutes with the uses around it: a use that
    /// [only counts](Self::only_counts), or a use while the key is already pending deletion
    /// (its counts, its minute's bucket and its entry go where its time says).
    fn commutes(&self, e: &KeyEvent) -> bool {
        if self.only_counts(e) {
            return true;
        }
        let KeyEventKind::Used { outcome, .. } = &e.kind else {
            return false;
        };
        let pending_use = matches!(
            outcome,
            UsageOutcome::RejectedPendingDeletion | UsageOutcome::Succeeded
        );
        pending_use && self.state.is_pending_deletion() && self.names_no_new_key_store(e)
    }

    /// Whether applying `e` now would only count a use: its roll-up, its schedule's counts
    /// and what its encryption context protects, all of which commute.
    fn only_counts(&self, e: &KeyEvent) -> bool {
        let KeyEventKind::Used { outcome, .. } = &e.kind else {
            return false;
        };
        let pending_use = match outcome {
            UsageOutcome::RejectedPendingDeletion => true,
            UsageOutcome::Succeeded => self.state.is_pending_deletion(),
            UsageOutcome::Failed { .. } => false,
        };
        !pending_use && self.names_no_new_key_store(e)
    }

    /// Whether `e` is a use of this key naming no key store the timeline does not know.
    fn names_no_new_key_store(&self, e: &KeyEvent) -> bool {
        let KeyEventKind::Used {
            custom_key_store_id,
            xks_key_id,
            ..
        } = &e.kind
        else {
            return false;
        };
        let key_store_known = match custom_key_store_id {
            None => true,
            Some(id) => self.custom_key_store.as_ref().is_some_and(|s| {
                s.custom_key_store_id == *id
                    && xks_key_id.as_ref().is_none_or(|x| {
                        s.xks_key_id.as_ref() == Some(x)
                            && s.key_store_type == KeyStoreType::External
                    })
            }),
        };
        e.key == self.key_arn && key_store_known
    }

    /// Applies one event that [follows](Self::follows) the ones folded so far, or that the
    /// timeline [absorbs](Self::absorbs). Events of other keys, and of key stores other than
    /// this key's, are ignored.
    pub fn apply(&mut self, event: &KmsEvent) {
        if !self.is_relevant(event) {
            return;
        }
        let commutes = match event {
            KmsEvent::Key(e) if e.key == self.key_arn && self.is_before_last_change(event) => {
                self.apply_use_before_schedule(e);
                true
            }
            KmsEvent::Key(e) if e.key == self.key_arn => {
                let commutes = self.commutes(e);
                self.apply_key_event(e);
                commutes
            }
            KmsEvent::Key(e) => {
                self.apply_related_key_event(e);
                false
            }
            KmsEvent::KeyStore(e) => {
                self.apply_key_store_event(e);
                false
            }
        };
        let c = event.context();
        self.event_count += 1;
        if !commutes {
            self.last_change = LastChange::At(c.event_time, c.call_id().to_owned());
        }
        match &mut self.last_applied {
            // An absorbed use, earlier than the last: the last stays.
            Some((at, call_id)) if (c.event_time, c.call_id()) < (*at, call_id.as_str()) => {}
            // The id's text is reused: a fold applies thousands of events.
            Some((at, call_id)) => {
                *at = c.event_time;
                call_id.clear();
                call_id.push_str(c.call_id());
            }
            None => self.last_applied = Some((c.event_time, c.call_id().to_owned())),
        }
    }

    /// Whether `event` sorts before the last change folded: applied only when
    /// [absorbed](Self::absorbs) before a schedule.
    fn is_before_last_change(&self, event: &KmsEvent) -> bool {
        let (at, call, _) = event.order_key();
        matches!(&self.last_change, LastChange::At(t, id) if (at, call) < (*t, id.as_str()))
    }

    /// A use that came before the key's schedule ([`Self::folds_before_schedule`]): counted in the
    /// roll-ups and in the schedule's usage before it, whose last use and use in the prior 30
    /// days follow, as a fold in time order would have had them.
    fn apply_use_before_schedule(&mut self, e: &KeyEvent) {
        let c = &e.context;
        let KeyEventKind::Used {
            operation,
            outcome,
            protects,
            ..
        } = &e.kind
        else {
            return;
        };
        self.blast_radius.note(protects, &c.principal, c.event_time);
        let succeeded = matches!(outcome, UsageOutcome::Succeeded);
        count_use(&mut self.usage, c, operation, outcome, false, succeeded);
        if let Some(s) = self.schedules.last_mut() {
            count_use(&mut s.usage_before, c, operation, outcome, false, succeeded);
            s.settle_use_before();
        }
    }

    /// Whether the timeline folds `event`: the key's own events, the lifecycle of its related
    /// multi-Region keys, and its custom key store's events.
    pub fn is_relevant(&self, event: &KmsEvent) -> bool {
        match event {
            KmsEvent::Key(e) => {
                e.key == self.key_arn
                    || (self.key_arn.is_related_multi_region_key(&e.key)
                        && is_multi_region_family_event(&e.kind))
            }
            KmsEvent::KeyStore(e) => self.is_in_key_store(e),
        }
    }

    /// The key's custom key store, identified in the key's account and Region.
    pub fn key_store_ref(&self) -> Option<KeyStoreRef> {
        self.custom_key_store
            .as_ref()
            .map(|s| s.identified_for(&self.key_arn))
    }

    fn is_in_key_store(&self, e: &KeyStoreEvent) -> bool {
        self.key_store_ref().as_ref() == Some(&e.key_store)
    }

    fn push_entry(&mut self, c: &EventContext, detail: EntryDetail) {
        self.entries.push(TimelineEntry {
            event_id: c.event_id.clone(),
            event_time: c.event_time,
            event_name: c.event_name.clone(),
            principal: c.principal.clone(),
            detail,
        });
    }

    fn apply_key_store_event(&mut self, e: &KeyStoreEvent) {
        let connected = match e.change {
            KeyStoreChange::Connected => Some(true),
            KeyStoreChange::Disconnected => Some(false),
            _ => None,
        };
        if let Some(store) = self.custom_key_store.as_mut() {
            if let Some(cluster) = &e.cloudhsm_cluster_id {
                // A store moves to another cluster only by UpdateCustomKeyStore; other
                // records name the cluster it has.
                if e.change == KeyStoreChange::Updated {
                    store.cloudhsm_cluster_id = Some(cluster.clone());
                } else {
                    store
                        .cloudhsm_cluster_id
                        .get_or_insert_with(|| cluster.clone());
                }
                store.key_store_type = KeyStoreType::Cloudhsm;
            }
            if connected.is_some() {
                store.connected = connected;
            }
        }
        match connected {
            // AWS's key states table: a key of a disconnected store is Unavailable, except
            // that a key pending deletion stays PendingDeletion (so it can still be rescued).
            Some(false)
                if matches!(
                    self.state,
                    KeyState::Enabled | KeyState::Disabled | KeyState::Unknown
                ) =>
            {
                self.state_before_unavailable = Some(self.state);
                self.state = KeyState::Unavailable;
            }
            Some(false) if self.state.is_pending_deletion() => {
                if let Some(s) = self.active_schedule() {
                    let schedule = s.event_id.clone();
                    self.note_orphan_risk(schedule, &e.context);
                }
            }
            Some(true) if self.state == KeyState::Unavailable => {
                self.state = self
                    .state_before_unavailable
                    .take()
                    .unwrap_or(KeyState::Unknown);
            }
            _ => {}
        }
        self.push_entry(
            &e.context,
            EntryDetail::KeyStore {
                custom_key_store_id: e.key_store.custom_key_store_id.clone(),
                change: e.change,
            },
        );
        let is_key_store = |t: &TimelineEntry| matches!(t.detail, EntryDetail::KeyStore { .. });
        if self.entries.iter().filter(|t| is_key_store(t)).count() > MAX_KEY_STORE_ENTRIES {
            if let Some(oldest) = self.entries.iter().position(is_key_store) {
                self.entries.remove(oldest);
                self.key_store_entries_dropped += 1;
            }
        }
    }

    fn note_orphan_risk(&mut self, schedule: String, c: &EventContext) {
        self.orphan_risks.push(OrphanRisk {
            schedule,
            event_id: c.event_id.clone(),
            at: c.event_time,
            principal: c.principal.clone(),
        });
    }

    /// Notes the custom key store an event of this key names (any other event names none).
    fn note_key_store_named_by(&mut self, e: &KmsEvent) {
        if let KmsEvent::Key(k) = e {
            if k.key == self.key_arn {
                self.note_key_store_of(&k.kind);
            }
        }
    }

    /// Notes the custom key store that an event of the key names, if any.
    fn note_key_store_of(&mut self, kind: &KeyEventKind) {
        match kind {
            KeyEventKind::Used {
                custom_key_store_id,
                xks_key_id,
                ..
            } => self.note_key_store(custom_key_store_id.as_ref(), None, xks_key_id.as_ref()),
            KeyEventKind::Created {
                origin,
                custom_key_store_id,
                cloudhsm_cluster_id,
                xks_key_id,
                ..
            } => {
                self.note_key_store(
                    custom_key_store_id.as_ref(),
                    cloudhsm_cluster_id.as_ref(),
                    xks_key_id.as_ref(),
                );
                if *origin == KeyOrigin::ExternalKeyStore {
                    if let Some(s) = self.custom_key_store.as_mut() {
                        s.key_store_type = KeyStoreType::External;
                    }
                }
            }
            KeyEventKind::DeletionScheduled {
                custom_key_store_id,
                cloudhsm_cluster_id,
                ..
            }
            | KeyEventKind::Deleted {
                custom_key_store_id,
                cloudhsm_cluster_id,
                ..
            } => self.note_key_store(
                custom_key_store_id.as_ref(),
                cloudhsm_cluster_id.as_ref(),
                None,
            ),
            _ => {}
        }
    }

    fn note_key_store(
        &mut self,
        id: Option<&String>,
        cluster: Option<&String>,
        xks: Option<&String>,
    ) {
        let Some(id) = id else { return };
        let store = self.custom_key_store.get_or_insert_with(|| CustomKeyStore {
            custom_key_store_id: id.clone(),
            key_store_type: if xks.is_some() {
                KeyStoreType::External
            } else {
                KeyStoreType::Cloudhsm
            },
            cloudhsm_cluster_id: None,
            xks_key_id: None,
            connected: None,
        });
        if let Some(cluster) = cluster {
            store.cloudhsm_cluster_id = Some(cluster.clone());
            store.key_store_type = KeyStoreType::Cloudhsm;
        }
        if let Some(xks) = xks {
            store.xks_key_id = Some(xks.clone());
            store.key_store_type = KeyStoreType::External;
        }
    }

    /// Moves the key to `state`. While its custom key store is disconnected, AWS's key states
    /// table says EnableKey and DisableKey succeed (and CancelKeyDeletion leaves the key
    /// Disabled) but the key stays Unavailable until the store is connected again.
    fn set_state(&mut self, state: KeyState) {
        if self.key_store_disconnected() && matches!(state, KeyState::Enabled | KeyState::Disabled)
        {
            self.state = KeyState::Unavailable;
            self.state_before_unavailable = Some(state);
        } else {
            self.state = state;
            self.state_before_unavailable = None;
        }
    }

    /// Whether the related keys followed have room for the Regions of `regions` not followed
    /// yet ([`MAX_RELATED_REGIONS`]).
    fn follows_or_has_room_for(&self, regions: &[&str]) -> bool {
        let mut new: Vec<&str> = regions
            .iter()
            .copied()
            .filter(|r| !self.related_keys.contains_key(*r))
            .collect();
        new.sort_unstable();
        new.dedup();
        self.related_keys.len() + new.len() <= MAX_RELATED_REGIONS
    }

    /// Applies a lifecycle event of a related multi-Region key (not one in a Region past
    /// [`MAX_RELATED_REGIONS`]).
    fn apply_related_key_event(&mut self, e: &KeyEvent) {
        let region = e.key.region().to_owned();
        let mut regions = vec![region.as_str()];
        if let KeyEventKind::ReplicaCreated { replica_region } = &e.kind {
            if *replica_region != self.key_arn.region() {
                regions.push(replica_region);
            }
        }
        if !self.follows_or_has_room_for(&regions) {
            return;
        }
        match &e.kind {
            KeyEventKind::Deleted { .. } => {
                let related = self.related_keys.entry(region).or_default();
                related.deleted_at.get_or_insert(e.context.event_time);
            }
            KeyEventKind::ReplicaCreated { replica_region } => {
                self.related_keys.entry(region).or_default();
                if *replica_region != self.key_arn.region() {
                    self.related_keys.entry(replica_region.clone()).or_default();
                }
            }
            KeyEventKind::PrimaryRegionUpdated { primary_region } => {
                self.related_keys.entry(region).or_default();
                self.primary_region = Some(primary_region.clone());
            }
            _ => {
                self.related_keys.entry(region).or_default();
            }
        }
        self.begin_waiting_period_if_replicas_deleted(e.context.event_time);
        self.push_entry(
            &e.context,
            EntryDetail::RelatedKey {
                key_arn: e.key.to_string(),
                change: e.kind.clone(),
            },
        );
    }

    /// A primary in PendingReplicaDeletion begins its waiting period when its last replica is
    /// deleted. keywatch knows the replicas it has seen records of; with none known, it sets
    /// no date (AWS's date is unknown to it).
    fn begin_waiting_period_if_replicas_deleted(&mut self, at: Timestamp) {
        if self.state != KeyState::PendingReplicaDeletion
            || self.related_keys.is_empty()
            || self.related_keys.values().any(|r| r.deleted_at.is_none())
        {
            return;
        }
        let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) else {
            return;
        };
        let date = at.plus_millis(i64::from(s.window_days) * DAY_MS);
        s.waiting_period_began = Some(at);
        s.deletion_date = Some(date);
        self.deletion_date = Some(date);
        self.set_state(KeyState::PendingDeletion);
    }

    fn apply_key_event(&mut self, e: &KeyEvent) {
        let c = &e.context;
        self.note_key_store_of(&e.kind);
        match &e.kind {
            KeyEventKind::Used {
                operation,
                outcome,
                protects,
                ..
            } => {
                self.blast_radius.note(protects, &c.principal, c.event_time);
                // A use is counted, not listed as a lifecycle entry.
                self.apply_use(c, operation, outcome);
                return;
            }
            KeyEventKind::Created {
                origin,
                key_state,
                multi_region,
                key_usage,
                ..
            } => {
                if self.key_usage.is_none() {
                    self.key_usage = key_usage.clone();
                }
                self.apply_created(c, origin, *key_state, *multi_region)
            }
            KeyEventKind::DeletionScheduled {
                window_days,
                deletion_date,
                key_state,
                ..
            } => self.apply_deletion_scheduled(c, *window_days, *deletion_date, *key_state),
            KeyEventKind::DeletionCancelled => self.apply_deletion_cancelled(c),
            KeyEventKind::Deleted { backing_keys, .. } => self.apply_deleted(c, backing_keys),
            KeyEventKind::Disabled => self.set_state(KeyState::Disabled),
            KeyEventKind::Enabled => self.set_state(KeyState::Enabled),
            KeyEventKind::KeyMaterialImported => {
                if self.state == KeyState::PendingImport {
                    self.set_state(KeyState::Enabled);
                }
            }
            KeyEventKind::KeyMaterialDeleted => {
                if !self.state.is_pending_deletion() && self.state != KeyState::Deleted {
                    self.set_state(KeyState::PendingImport);
                }
            }
            KeyEventKind::ReplicaCreated { replica_region } => {
                self.multi_region = true;
                self.primary_region
                    .get_or_insert_with(|| self.key_arn.region().to_owned());
                if self.follows_or_has_room_for(&[replica_region]) {
                    self.related_keys.entry(replica_region.clone()).or_default();
                }
            }
            KeyEventKind::PrimaryRegionUpdated { primary_region } => {
                self.multi_region = true;
                self.primary_region = Some(primary_region.clone());
            }
            KeyEventKind::CallFailed { .. } => {}
        }
        self.push_entry(c, EntryDetail::Lifecycle(e.kind.clone()));
    }

    /// CreateKey: the key's origin, and its first state (PendingImport for imported
    /// material, unless the response says otherwise).
    fn apply_created(
        &mut self,
        c: &EventContext,
        origin: &KeyOrigin,
        key_state: Option<KeyState>,
        multi_region: bool,
    ) {
        self.origin = Some(origin.clone());
        self.multi_region = multi_region;
        self.created_at.get_or_insert(c.event_time);
        let state = key_state.unwrap_or(if *origin == KeyOrigin::External {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        });
        self.set_state(state);
    }

    /// ScheduleKeyDeletion: a new schedule, with what was known of the key's use before it.
    fn apply_deletion_scheduled(
        &mut self,
        c: &EventContext,
        window_days: u32,
        deletion_date: Option<Timestamp>,
        key_state: KeyState,
    ) {
        let mut schedule = DeletionSchedule {
            event_id: c.event_id.clone(),
            scheduled_at: c.event_time,
            scheduled_by: c.principal.clone(),
            window_days,
            deletion_date,
            waiting_period_began: None,
            used_in_prior_30_days: false,
            last_use_before: None,
            usage_before: self.usage.clone(),
            uses_during_window: 0,
            failed_attempts_during_window: 0,
            ended: None,
        };
        schedule.settle_use_before();
        self.schedules.push(schedule);
        self.deletion_date = deletion_date;
        // A schedule KMS accepted leaves the key pending deletion, whatever state this
        // version could not read in the response.
        self.set_state(match key_state {
            KeyState::Unknown => KeyState::PendingDeletion,
            known => known,
        });
        let cloudhsm = self
            .custom_key_store
            .as_ref()
            .is_some_and(|s| s.key_store_type == KeyStoreType::Cloudhsm);
        if cloudhsm && self.key_store_disconnected() {
            self.note_orphan_risk(c.event_id.clone(), c);
        }
    }

    /// CancelKeyDeletion: the running schedule ends and the key is Disabled.
    fn apply_deletion_cancelled(&mut self, c: &EventContext) {
        if let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) {
            s.ended = Some(ScheduleEnd::Cancelled {
                event_id: c.event_id.clone(),
                at: c.event_time,
                principal: c.principal.clone(),
            });
        }
        self.deletion_date = None;
        self.cancelled_at = Some(c.event_time);
        self.set_state(KeyState::Disabled);
    }

    /// DeleteKey (or KMS's deletion event): the key is gone; in a CloudHSM key store its
    /// material may be left in the cluster.
    fn apply_deleted(&mut self, c: &EventContext, backing_keys: &[BackingKeyStatus]) {
        if let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) {
            s.ended = Some(ScheduleEnd::Deleted {
                event_id: c.event_id.clone(),
                at: c.event_time,
            });
        }
        let in_cloudhsm = self
            .custom_key_store
            .as_ref()
            .is_some_and(|s| s.key_store_type == KeyStoreType::Cloudhsm);
        let failed: Vec<BackingKeyStatus> = backing_keys
            .iter()
            .filter(|b| !b.deletion_status.is_deleted())
            .cloned()
            .collect();
        let reason = if !failed.is_empty() {
            Some(OrphanReason::BackingKeyNotDeleted {
                backing_keys: failed,
            })
        } else if in_cloudhsm && self.key_store_disconnected() {
            Some(OrphanReason::KeyStoreDisconnected)
        } else {
            None
        };
        // DeleteKey and KMS's own deletion event report one deletion: what either says of
        // orphaned material stands.
        self.orphaned_key_material = match (self.orphaned_key_material.take(), reason) {
            (_, Some(r @ OrphanReason::BackingKeyNotDeleted { .. })) => Some(r),
            (Some(old), _) => Some(old),
            (None, new) => new,
        };
        self.deletion_date.get_or_insert(c.event_time);
        self.deleted_by_event
            .get_or_insert_with(|| c.event_id.clone());
        self.state = KeyState::Deleted;
        self.state_before_unavailable = None;
    }

    /// The principal pages are grouped by: for a cross-account call, the calling account,
    /// which both copies of the call name (the key owner's copy may not name the role).
    pub fn paging_principal(&self, c: &EventContext) -> Principal {
        match c.caller_account.as_deref() {
            Some(caller) if caller != self.key_arn.account() => {
                Principal(format!("account:{caller}"))
            }
            _ => c.principal.clone(),
        }
    }

    /// A use of the key (or an attempt): counted per principal and operation, and, while
    /// the key is pending deletion, kept for the pages.
    fn apply_use(&mut self, c: &EventContext, operation: &KmsOperation, outcome: &UsageOutcome) {
        let succeeded = matches!(outcome, UsageOutcome::Succeeded);
        let rejected = matches!(outcome, UsageOutcome::RejectedPendingDeletion);
        let late_after_cancel = rejected
            && !self.state.is_pending_deletion()
            && self
                .cancelled_at
                .is_some_and(|at| c.event_time.millis() - at.millis() <= EVENTUAL_CONSISTENCY_MS);
        let is_use = succeeded || (rejected && !late_after_cancel);
        count_use(&mut self.usage, c, operation, outcome, rejected, is_use);
        if late_after_cancel {
            self.push_entry(
                c,
                EntryDetail::RejectedAfterCancel {
                    operation: operation.clone(),
                    source_ip: c.source_ip.clone(),
                },
            );
            return;
        }
        if let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) {
            if is_use {
                s.uses_during_window += 1;
            } else {
                s.failed_attempts_during_window += 1;
            }
        }
        if rejected || (succeeded && self.state.is_pending_deletion()) {
            self.note_pending_use(c, operation, rejected);
        }
    }

    /// A use while the key is pending deletion (or a rejection that proves it is): into the
    /// principal's bucket for the minute, and an entry while fewer than
    /// [`MAX_PENDING_USE_ENTRIES`] are kept.
    fn note_pending_use(&mut self, c: &EventContext, operation: &KmsOperation, rejected: bool) {
        if !self.state.is_pending_deletion() && self.state != KeyState::Deleted {
            // A rejection proves the state even when the schedule record was never seen.
            self.state = KeyState::PendingDeletion;
            self.state_before_unavailable = None;
        }
        let entries_full = self.pending_use_entries_full();
        self.pending_uses += 1;
        let schedule = self
            .schedules
            .last()
            .filter(|s| s.ended.is_none())
            .map(|s| s.event_id.clone());
        let minute = minute_of(c.event_time);
        let principal = self.paging_principal(c);
        let use_ = || {
            Box::new(PendingUse {
                operation: operation.clone(),
                rejected,
                context: c.clone(),
            })
        };
        // Buckets are in the order of their first use (so in time order): only this minute's,
        // at the end, need looking at. A use folded in place (an absorbed late one) may be
        // its bucket's first, or open a bucket before others of its minute.
        let buckets = &mut self.pending_use_buckets;
        let found = buckets
            .iter()
            .enumerate()
            .rev()
            .take_while(|(_, b)| b.minute >= minute)
            .find(|(_, b)| b.minute == minute && b.principal == principal && b.schedule == schedule)
            .map(|(i, _)| i);
        let mut i = match found {
            Some(i) => {
                let b = &mut buckets[i];
                b.count += 1;
                if pending_use_order(c) < pending_use_order(&b.first.context) {
                    b.first = use_();
                }
                i
            }
            None => {
                buckets.push(PendingUseBucket {
                    schedule,
                    principal,
                    minute,
                    count: 1,
                    first: use_(),
                });
                buckets.len() - 1
            }
        };
        while i > 0
            && pending_use_order(&buckets[i - 1].first.context)
                > pending_use_order(&buckets[i].first.context)
        {
            buckets.swap(i - 1, i);
            i -= 1;
        }
        if !entries_full {
            // After every entry of its time or before (the end, unless absorbed late).
            let at = self
                .entries
                .iter()
                .rposition(|e| e.event_time <= c.event_time)
                .map_or(0, |i| i + 1);
            self.entries.insert(
                at,
                TimelineEntry {
                    event_id: c.event_id.clone(),
                    event_time: c.event_time,
                    event_name: c.event_name.clone(),
                    principal: c.principal.clone(),
                    detail: EntryDetail::UsedWhilePendingDeletion {
                        operation: operation.clone(),
                        rejected,
                        source_ip: c.source_ip.clone(),
                        invoked_by: c.invoked_by.clone(),
                    },
                },
            );
        } else {
            self.pending_use_entries_dropped += 1;
        }
    }
}

/// Where a use falls in a fold: (eventTime, call id, eventID).
fn pending_use_order(c: &EventContext) -> (Timestamp, &str, &str) {
    (c.event_time, c.call_id(), &c.event_id)
}

/// Folds a key's events given in time order into the timeline [`KeyTimeline::fold`] folds
/// from them, applying the events of one eventTime as soon as a later one comes: a stream of
/// any length is folded in the memory of its timeline. The fold assumes that the key is in
/// the custom key store given (as its events name it), and says which one its events
/// named: where the two differ, fold again assuming that one.
#[derive(Debug)]
pub struct OrderedFold<E = KmsEvent> {
    timeline: KeyTimeline,
    /// The key and the key store assumed, as before any event: what decides which events
    /// the timeline folds ([`KeyTimeline::is_relevant`]).
    relevance: KeyTimeline,
    /// The key store the key's events folded so far name.
    named: KeyTimeline,
    /// The events of the latest eventTime, not yet applied.
    group: Vec<E>,
}

/// An event given to an [`OrderedFold`] earlier than one it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_id} of {event_time} came after an event of {folding}: a fold in order takes events in time order")]
pub struct OutOfTimeOrder {
    /// The event's eventID.
    pub event_id: String,
    /// Its eventTime.
    pub event_time: Timestamp,
    /// The eventTime of the events being folded.
    pub folding: Timestamp,
}

impl<E: std::borrow::Borrow<KmsEvent>> OrderedFold<E> {
    /// A fold of `key_arn`'s events, assuming it is in `key_store`.
    pub fn new(key_arn: KeyArn, key_store: Option<CustomKeyStore>) -> Self {
        let mut timeline = KeyTimeline::new(key_arn.clone());
        timeline.custom_key_store = key_store;
        OrderedFold {
            relevance: timeline.clone(),
            timeline,
            named: KeyTimeline::new(key_arn),
            group: Vec::new(),
        }
    }

    /// Takes the next event: of the eventTime of the last one or later.
    pub fn push(&mut self, event: E) -> Result<(), OutOfTimeOrder> {
        if let Some(last) = self.group.last() {
            let (at, folding) = (event.borrow().context(), last.borrow().context());
            if at.event_time < folding.event_time {
                return Err(OutOfTimeOrder {
                    event_id: at.event_id.clone(),
                    event_time: at.event_time,
                    folding: folding.event_time,
                });
            }
        }
        self.push_in_order(event);
        Ok(())
    }

    fn push_in_order(&mut self, event: E) {
        if self
            .group
            .last()
            .is_some_and(|last| !same_time(last.borrow(), event.borrow()))
        {
            self.apply_group();
        }
        self.group.push(event);
    }

    /// A fold that goes on from `timeline`, a fold of a key's events through some eventTime
    /// that named no custom key store ([`OrderedFold::applied`]): given the events after it,
    /// in time order, it gives the fold of all of them.
    pub fn resume(timeline: KeyTimeline) -> Self {
        let key_arn = timeline.key_arn.clone();
        let mut relevance = KeyTimeline::new(key_arn.clone());
        relevance.custom_key_store = timeline.custom_key_store.clone();
        OrderedFold {
            relevance,
            timeline,
            named: KeyTimeline::new(key_arn),
            group: Vec::new(),
        }
    }

    /// The timeline of every event before the latest eventTime pushed (whose events are not
    /// applied yet), and that eventTime; `None` before any event. Where no custom key store
    /// was assumed or named ([`OrderedFold::names_key_store`]), a fold may
    /// [resume](OrderedFold::resume) from it.
    pub fn applied(&self) -> Option<(&KeyTimeline, Timestamp)> {
        let pending = self.group.last()?.borrow().context().event_time;
        Some((&self.timeline, pending))
    }

    /// Whether the fold assumed a custom key store, or the events applied named one.
    pub fn names_key_store(&self) -> bool {
        self.relevance.custom_key_store.is_some() || self.named.custom_key_store.is_some()
    }

    /// The timeline, and the custom key store the key's events name (where it is not the
    /// one assumed, the timeline is not the fold of the events: fold them again assuming
    /// it).
    pub fn finish(mut self) -> (KeyTimeline, Option<CustomKeyStore>) {
        self.apply_group();
        (self.timeline, self.named.custom_key_store)
    }

    /// Applies the events of one eventTime as [`KeyTimeline::fold`] does: in fold order, a
    /// record delivered twice once, and the two copies of a cross-account call as one.
    fn apply_group(&mut self) {
        let group = std::mem::take(&mut self.group);
        let mut sorted = in_fold_order(&group);
        for e in &sorted {
            self.named.note_key_store_named_by(e);
        }
        sorted.retain(|e| self.relevance.is_relevant(e));
        for call in sorted.chunk_by(|a, b| same_call(a, b)) {
            let chosen = call
                .iter()
                .min_by_key(|e| (e.context().caller_is_account, &e.context().event_id));
            if let Some(e) = chosen {
                self.timeline.apply(e);
            }
        }
        drop(sorted);
        self.group = group;
        self.group.clear();
    }
}

/// Events of one eventTime in fold order, each record once. Two different records claiming
/// one eventID (a damaged or forged copy) sort by their content, so that which one is kept
/// does not depend on the order they came in; one record's events for several keys all stay.
fn in_fold_order<E: std::borrow::Borrow<KmsEvent>>(group: &[E]) -> Vec<&KmsEvent> {
    let mut sorted: Vec<&KmsEvent> = group.iter().map(|e| e.borrow()).collect();
    sorted.sort_by(|a, b| {
        a.fold_order()
            .cmp(&b.fold_order())
            .then_with(|| content_order(a).cmp(&content_order(b)))
    });
    sorted.dedup_by(|a, b| a.fold_order() == b.fold_order());
    sorted
}

/// The start of the minute `t` falls in: pending-deletion uses are bucketed by it.
fn minute_of(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.millis().div_euclid(MINUTE_MS) * MINUTE_MS)
}

/// Whether two events have one eventTime.
fn same_time(a: &KmsEvent, b: &KmsEvent) -> bool {
    a.context().event_time == b.context().event_time
}

/// An event's whole content: orders events that share their place in a fold.
fn content_order(e: &KmsEvent) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

/// Whether two events are copies of one call (a cross-account call recorded in the caller's
/// and the key owner's account).
fn same_call(a: &KmsEvent, b: &KmsEvent) -> bool {
    let (at, acall, _) = a.order_key();
    let (bt, bcall, _) = b.order_key();
    let same_key = matches!((a, b), (KmsEvent::Key(x), KmsEvent::Key(y)) if x.key == y.key);
    same_key && at == bt && acall == bcall && a.context().shared_event_id.is_some()
}

/// The events of one multi-Region key that its related keys fold too: their lifecycle, not
/// their usage.
pub fn is_multi_region_family_event(kind: &KeyEventKind) -> bool {
    matches!(
        kind,
        KeyEventKind::Created { .. }
            | KeyEventKind::DeletionScheduled { .. }
            | KeyEventKind::DeletionCancelled
            | KeyEventKind::Deleted { .. }
            | KeyEventKind::ReplicaCreated { .. }
            | KeyEventKind::PrimaryRegionUpdated { .. }
    )
}

/// Counts an attempt in the principal's roll-up for the operation.
fn count_use(
    usage: &mut Vec<UsageRollup>,
    c: &EventContext,
    operation: &KmsOperation,
    outcome: &UsageOutcome,
    rejected: bool,
    is_use: bool,
) {
    let succeeded = matches!(outcome, UsageOutcome::Succeeded);
    let disabled = outcome.is_rejected_as_disabled();
    match usage.binary_search_by(|u| (&u.principal, &u.operation).cmp(&(&c.principal, operation))) {
        Ok(i) => {
            let u = &mut usage[i];
            if succeeded {
                u.successes += 1;
            } else {
                u.failures += 1;
            }
            if rejected {
                u.rejected_pending_deletion += 1;
            }
            if disabled {
                u.rejected_disabled += 1;
                u.last_rejected_disabled = u.last_rejected_disabled.max(Some(c.event_time));
            }
            if is_use {
                u.last_used = u.last_used.max(Some(c.event_time));
            }
            u.last_seen = u.last_seen.max(c.event_time);
            u.first_seen = u.first_seen.min(c.event_time);
        }
        Err(i) => usage.insert(
            i,
            UsageRollup {
                principal: c.principal.clone(),
                operation: operation.clone(),
                successes: u64::from(succeeded),
                failures: u64::from(!succeeded),
                rejected_pending_deletion: u64::from(rejected),
                last_used: is_use.then_some(c.event_time),
                first_seen: c.event_time,
                last_seen: c.event_time,
                rejected_disabled: u64::from(disabled),
                last_rejected_disabled: disabled.then_some(c.event_time),
            },
        ),
    }
}

/// Orders (time, principal) pairs so that `max_by` takes the latest, and of two at the same
/// time the first principal (a stable choice whatever the order folded).
pub(crate) fn latest_then_first_principal(
    x: &(Timestamp, &Principal),
    y: &(Timestamp, &Principal),
) -> std::cmp::Ordering {
    x.0.cmp(&y.0).then_with(|| y.1.cmp(x.1))
}

/// The last call rejected because the key was disabled, and who made it.
pub fn last_rejected_as_disabled(usage: &[UsageRollup]) -> Option<(Timestamp, &Principal)> {
    usage
        .iter()
        .filter_map(|u| u.last_rejected_disabled.map(|at| (at, &u.principal)))
        .max_by(latest_then_first_principal)
}

/// The last use in a usage roll-up and who made it (the first principal by name on a tie).
pub fn last_user(usage: &[UsageRollup]) -> Option<(Timestamp, &Principal)> {
    usage
        .iter()
        .filter_map(|u| u.last_used.map(|at| (at, &u.principal)))
        .max_by(latest_then_first_principal)
}
