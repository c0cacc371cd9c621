//! The per-key timeline: a projection folded from the key's events (and those of its custom
//! key store) in (eventTime, eventID) order.

use crate::event::{
    BackingKeyStatus, EventContext, KeyArn, KeyEvent, KeyEventKind, KeyStoreChange, KeyStoreEvent,
    KeyStoreRef, KmsEvent, Principal, UsageOutcome,
};
use crate::time::{Timestamp, DAY_MS};
use serde::{Deserialize, Serialize};

/// How many usage attempts while pending deletion are kept as individual entries.
pub const MAX_PENDING_USE_ENTRIES: usize = 200;
/// How many (principal, minute) buckets of pending-deletion use are kept for paging.
pub const MAX_PENDING_USE_BUCKETS: usize = 20_000;
/// Usage before a schedule within this many days makes `deletion_scheduled` high.
pub const RECENT_USE_DAYS: i64 = 30;
const MINUTE_MS: i64 = 60_000;

/// AWS's key states, plus Deleted and Unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingReplicaDeletion,
    PendingImport,
    Unavailable,
    Deleted,
    #[default]
    Unknown,
}

impl KeyState {
    /// Parses AWS's spelling (`PendingDeletion`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Enabled" => KeyState::Enabled,
            "Disabled" => KeyState::Disabled,
            "PendingDeletion" => KeyState::PendingDeletion,
            "PendingReplicaDeletion" => KeyState::PendingReplicaDeletion,
            "PendingImport" => KeyState::PendingImport,
            "Unavailable" => KeyState::Unavailable,
            "Deleted" => KeyState::Deleted,
            "Unknown" => KeyState::Unknown,
            _ => return None,
        })
    }

    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingReplicaDeletion => "PendingReplicaDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::Unavailable => "Unavailable",
            KeyState::Deleted => "Deleted",
            KeyState::Unknown => "Unknown",
        }
    }

    /// Pending deletion, as a primary or a replica.
    pub fn is_pending_deletion(self) -> bool {
        matches!(
            self,
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
        )
    }
}

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

/// Counts of one principal's use of one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRollup {
    /// Who.
    pub principal: Principal,
    /// Which operation.
    pub operation: String,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (any error).
    pub failures: u64,
    /// First attempt.
    pub first_seen: Timestamp,
    /// Last attempt.
    pub last_seen: Timestamp,
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
    /// When KMS deletes the key.
    pub deletion_date: Timestamp,
    /// Any use of the key in the 30 days before the schedule.
    pub used_in_prior_30_days: bool,
    /// The last use before the schedule.
    pub last_use_before: Option<Timestamp>,
    /// The usage roll-up as it stood at the schedule.
    pub usage_before: Vec<UsageRollup>,
    /// Usage attempts during the waiting period.
    pub uses_during_window: u64,
    /// How the waiting period ended, if it has.
    pub ended: Option<ScheduleEnd>,
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

/// A usage attempt while the key was pending deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUse {
    /// The operation.
    pub operation: String,
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
    /// The schedule's eventID, or "unscheduled" when only rejections proved the state.
    pub schedule: String,
    /// Who.
    pub principal: Principal,
    /// Start of the minute.
    pub minute: Timestamp,
    /// Attempts in the minute.
    pub count: u64,
    /// The first attempt in the minute.
    pub first: PendingUse,
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
        operation: String,
        /// Rejected by KMS.
        rejected: bool,
        /// `sourceIPAddress`.
        source_ip: Option<String>,
        /// `invokedBy`.
        invoked_by: Option<String>,
    },
    /// A change of the key's custom key store.
    KeyStore {
        /// `cks-…`.
        custom_key_store_id: String,
        /// Connected, disconnected…
        change: KeyStoreChange,
    },
}

/// A key's timeline, folded from its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTimeline {
    /// The key.
    pub key_arn: KeyArn,
    /// The state after the last event.
    pub state: KeyState,
    /// The state before the key store was disconnected.
    pub state_before_unavailable: Option<KeyState>,
    /// When the key is (or was) to be deleted, while pending deletion or deleted.
    pub deletion_date: Option<Timestamp>,
    /// `origin` from CreateKey.
    pub origin: Option<String>,
    /// A multi-Region key.
    pub multi_region: bool,
    /// The custom key store, if any.
    pub custom_key_store: Option<CustomKeyStore>,
    /// Lifecycle entries and pending-deletion uses, in order.
    pub entries: Vec<TimelineEntry>,
    /// Usage per principal and operation.
    pub usage: Vec<UsageRollup>,
    /// Every deletion schedule, in order.
    pub schedules: Vec<DeletionSchedule>,
    /// Pending-deletion uses, per principal per minute.
    pub pending_use_buckets: Vec<PendingUseBucket>,
    /// Pending-deletion uses in all.
    pub pending_uses: u64,
    /// Pending-deletion uses not kept as entries (beyond the bound).
    pub pending_use_entries_dropped: u64,
    /// Why key material may be orphaned in a CloudHSM cluster.
    pub orphaned_key_material: Option<OrphanReason>,
    /// The DeleteKey eventID, once deleted.
    pub deleted_by_event: Option<String>,
    /// Events folded.
    pub event_count: u64,
    /// The (eventTime, eventID) of the last event folded.
    pub last_applied: Option<(Timestamp, String)>,
}

impl KeyTimeline {
    /// An empty timeline for a key.
    pub fn new(key_arn: KeyArn) -> Self {
        KeyTimeline {
            key_arn,
            state: KeyState::Unknown,
            state_before_unavailable: None,
            deletion_date: None,
            origin: None,
            multi_region: false,
            custom_key_store: None,
            entries: Vec::new(),
            usage: Vec::new(),
            schedules: Vec::new(),
            pending_use_buckets: Vec::new(),
            pending_uses: 0,
            pending_use_entries_dropped: 0,
            orphaned_key_material: None,
            deleted_by_event: None,
            event_count: 0,
            last_applied: None,
        }
    }

    /// Folds events (in any order, with duplicates) into a fresh timeline.
    pub fn fold<'a>(key_arn: KeyArn, events: impl IntoIterator<Item = &'a KmsEvent>) -> Self {
        let mut sorted: Vec<&KmsEvent> = events.into_iter().collect();
        sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        sorted.dedup_by(|a, b| a.order_key() == b.order_key());
        let mut timeline = KeyTimeline::new(key_arn);
        for e in sorted {
            timeline.apply(e);
        }
        timeline
    }

    /// Whether `event` sorts after everything folded so far, so that applying it now gives
    /// the same timeline as a fold from scratch. Otherwise, rebuild with [`Self::fold`].
    pub fn follows(&self, event: &KmsEvent) -> bool {
        match &self.last_applied {
            None => true,
            Some((t, id)) => event.order_key() > (*t, id.as_str()),
        }
    }

    /// The schedule whose waiting period is running, if any.
    pub fn active_schedule(&self) -> Option<&DeletionSchedule> {
        self.schedules
            .last()
            .filter(|s| s.ended.is_none() && self.state.is_pending_deletion())
    }

    /// The last usage attempt of any principal.
    pub fn last_use(&self) -> Option<Timestamp> {
        self.usage.iter().map(|u| u.last_seen).max()
    }

    /// Applies one event that [follows](Self::follows) the ones folded so far. Events of
    /// other keys, and of key stores other than this key's, are ignored.
    pub fn apply(&mut self, event: &KmsEvent) {
        match event {
            KmsEvent::Key(e) if e.key == self.key_arn => self.apply_key_event(e),
            KmsEvent::KeyStore(e) if self.is_in_key_store(e) => self.apply_key_store_event(e),
            _ => return,
        }
        let c = event.context();
        self.event_count += 1;
        self.last_applied = Some((c.event_time, c.event_id.clone()));
    }

    /// The key's custom key store, identified in the key's account and Region.
    pub fn key_store_ref(&self) -> Option<KeyStoreRef> {
        self.custom_key_store.as_ref().map(|s| KeyStoreRef {
            account: self.key_arn.account().to_owned(),
            region: self.key_arn.region().to_owned(),
            custom_key_store_id: s.custom_key_store_id.clone(),
        })
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
        if let (Some(store), Some(c)) = (self.custom_key_store.as_mut(), connected) {
            store.connected = Some(c);
            if store.cloudhsm_cluster_id.is_none() {
                store.cloudhsm_cluster_id.clone_from(&e.cloudhsm_cluster_id);
            }
        }
        match connected {
            Some(false) if matches!(self.state, KeyState::Enabled | KeyState::Disabled) => {
                self.state_before_unavailable = Some(self.state);
                self.state = KeyState::Unavailable;
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

    fn set_state(&mut self, state: KeyState) {
        self.state = state;
        self.state_before_unavailable = None;
    }

    fn apply_key_event(&mut self, e: &KeyEvent) {
        let c = &e.context;
        match &e.kind {
            KeyEventKind::Used {
                operation,
                outcome,
                custom_key_store_id,
                xks_key_id,
            } => {
                self.note_key_store(custom_key_store_id.as_ref(), None, xks_key_id.as_ref());
                self.apply_use(c, operation, outcome);
                return;
            }
            KeyEventKind::Created {
                origin,
                key_state,
                custom_key_store_id,
                cloudhsm_cluster_id,
                xks_key_id,
                multi_region,
            } => {
                self.origin = Some(origin.clone());
                self.multi_region = *multi_region;
                self.note_key_store(
                    custom_key_store_id.as_ref(),
                    cloudhsm_cluster_id.as_ref(),
                    xks_key_id.as_ref(),
                );
                if origin == "EXTERNAL_KEY_STORE" {
                    if let Some(s) = self.custom_key_store.as_mut() {
                        s.key_store_type = KeyStoreType::External;
                    }
                }
                let state = key_state.as_deref().and_then(KeyState::parse).unwrap_or(
                    if origin == "EXTERNAL" {
                        KeyState::PendingImport
                    } else {
                        KeyState::Enabled
                    },
                );
                self.set_state(state);
            }
            KeyEventKind::DeletionScheduled {
                window_days,
                deletion_date,
                key_state,
                custom_key_store_id,
                cloudhsm_cluster_id,
                ..
            } => {
                self.note_key_store(
                    custom_key_store_id.as_ref(),
                    cloudhsm_cluster_id.as_ref(),
                    None,
                );
                let last_use_before = self.last_use();
                self.schedules.push(DeletionSchedule {
                    event_id: c.event_id.clone(),
                    scheduled_at: c.event_time,
                    scheduled_by: c.principal.clone(),
                    window_days: *window_days,
                    deletion_date: *deletion_date,
                    used_in_prior_30_days: last_use_before.is_some_and(|t| {
                        t.millis() >= c.event_time.millis() - RECENT_USE_DAYS * DAY_MS
                    }),
                    last_use_before,
                    usage_before: self.usage.clone(),
                    uses_during_window: 0,
                    ended: None,
                });
                self.deletion_date = Some(*deletion_date);
                self.set_state(KeyState::parse(key_state).unwrap_or(KeyState::PendingDeletion));
            }
            KeyEventKind::DeletionCancelled => {
                if let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) {
                    s.ended = Some(ScheduleEnd::Cancelled {
                        event_id: c.event_id.clone(),
                        at: c.event_time,
                        principal: c.principal.clone(),
                    });
                }
                self.deletion_date = None;
                self.set_state(KeyState::Disabled);
            }
            KeyEventKind::Deleted {
                custom_key_store_id,
                cloudhsm_cluster_id,
                backing_keys,
            } => {
                self.note_key_store(
                    custom_key_store_id.as_ref(),
                    cloudhsm_cluster_id.as_ref(),
                    None,
                );
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
                    .filter(|b| b.deletion_status != "SUCCESS")
                    .cloned()
                    .collect();
                self.orphaned_key_material = if !failed.is_empty() {
                    Some(OrphanReason::BackingKeyNotDeleted {
                        backing_keys: failed,
                    })
                } else if in_cloudhsm
                    && self.custom_key_store.as_ref().and_then(|s| s.connected) == Some(false)
                {
                    Some(OrphanReason::KeyStoreDisconnected)
                } else {
                    None
                };
                self.deletion_date.get_or_insert(c.event_time);
                self.deleted_by_event = Some(c.event_id.clone());
                self.set_state(KeyState::Deleted);
            }
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
            KeyEventKind::CallFailed { .. } => {}
        }
        self.push_entry(c, EntryDetail::Lifecycle(e.kind.clone()));
    }

    fn apply_use(&mut self, c: &EventContext, operation: &str, outcome: &UsageOutcome) {
        let succeeded = matches!(outcome, UsageOutcome::Succeeded);
        match self.usage.binary_search_by(|u| {
            (&u.principal, u.operation.as_str()).cmp(&(&c.principal, operation))
        }) {
            Ok(i) => {
                let u = &mut self.usage[i];
                if succeeded {
                    u.successes += 1;
                } else {
                    u.failures += 1;
                }
                u.last_seen = u.last_seen.max(c.event_time);
                u.first_seen = u.first_seen.min(c.event_time);
            }
            Err(i) => self.usage.insert(
                i,
                UsageRollup {
                    principal: c.principal.clone(),
                    operation: operation.to_owned(),
                    successes: u64::from(succeeded),
                    failures: u64::from(!succeeded),
                    first_seen: c.event_time,
                    last_seen: c.event_time,
                },
            ),
        }
        if let Some(s) = self.schedules.last_mut().filter(|s| s.ended.is_none()) {
            s.uses_during_window += 1;
        }

        let rejected = matches!(outcome, UsageOutcome::RejectedPendingDeletion);
        let pending = rejected || (succeeded && self.state.is_pending_deletion());
        if !pending {
            return;
        }
        if !self.state.is_pending_deletion() && self.state != KeyState::Deleted {
            // A rejection proves the state even when the schedule record was never seen.
            self.set_state(KeyState::PendingDeletion);
        }
        let kept = self.pending_uses - self.pending_use_entries_dropped;
        self.pending_uses += 1;
        let schedule = self
            .schedules
            .last()
            .filter(|s| s.ended.is_none())
            .map_or_else(|| "unscheduled".to_owned(), |s| s.event_id.clone());
        let minute =
            Timestamp::from_millis(c.event_time.millis().div_euclid(MINUTE_MS) * MINUTE_MS);
        let use_ = PendingUse {
            operation: operation.to_owned(),
            rejected,
            context: c.clone(),
        };
        let found = self.pending_use_buckets.iter().rposition(|b| {
            b.minute == minute && b.principal == c.principal && b.schedule == schedule
        });
        match found {
            Some(i) => self.pending_use_buckets[i].count += 1,
            None if self.pending_use_buckets.len() < MAX_PENDING_USE_BUCKETS => {
                self.pending_use_buckets.push(PendingUseBucket {
                    schedule,
                    principal: c.principal.clone(),
                    minute,
                    count: 1,
                    first: use_,
                });
            }
            None => {}
        }
        if kept < MAX_PENDING_USE_ENTRIES as u64 {
            self.push_entry(
                c,
                EntryDetail::UsedWhilePendingDeletion {
                    operation: operation.to_owned(),
                    rejected,
                    source_ip: c.source_ip.clone(),
                    invoked_by: c.invoked_by.clone(),
                },
            );
        } else {
            self.pending_use_entries_dropped += 1;
        }
    }
}
