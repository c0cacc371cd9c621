//! Alert rules: pure functions of a key's timeline (and a clock for the time-driven ones).
//! Every alert has a deterministic `alert_id`, so whoever stores what was raised can raise
//! each alert exactly once, whatever the order and batching of the events.

use crate::event::Principal;
use crate::event::{KeyArn, KeyEventKind, KeyState, KmsOperation};
use crate::preflight::{age, verdict};
use crate::protects::{describe, ProtectedSummary};
use crate::time::{Timestamp, DAY_MS, HOUR_MS};
use crate::timeline::{last_rejected_as_disabled, last_user, RecordsReach, RECENT_USE_DAYS};
use crate::timeline::{
    DeletionSchedule, EntryDetail, KeyStoreType, KeyTimeline, OrphanReason, PendingUseBucket,
    ScheduleEnd, TimelineEntry, UsageRollup,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A key pending deletion was used (or someone tried).
    PendingDeletionKeyUsed,
    /// ScheduleKeyDeletion.
    DeletionScheduled,
    /// CancelKeyDeletion.
    DeletionCancelled,
    /// DeleteKey.
    KeyDeleted,
    /// CloudHSM key material may be left in the cluster.
    OrphanedKeyMaterial,
    /// Due within 24 hours and used during its waiting period.
    DeletionImminent,
    /// Deletion date passed by more than 24 hours with no DeleteKey seen.
    DeletionOverdue,
    /// A CloudHSM key store was disconnected while one of its keys is pending deletion: if
    /// it is still disconnected when the waiting period ends, the key material is orphaned.
    KeyStoreDisconnectedPendingDeletion,
}

impl AlertKind {
    /// The snake_case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PendingDeletionKeyUsed => "pending_deletion_key_used",
            AlertKind::DeletionScheduled => "deletion_scheduled",
            AlertKind::DeletionCancelled => "deletion_cancelled",
            AlertKind::KeyDeleted => "key_deleted",
            AlertKind::OrphanedKeyMaterial => "orphaned_key_material",
            AlertKind::DeletionImminent => "deletion_imminent",
            AlertKind::DeletionOverdue => "deletion_overdue",
            AlertKind::KeyStoreDisconnectedPendingDeletion => {
                "key_store_disconnected_pending_deletion"
            }
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Rule settings.
///
/// Pages for pending-deletion use are counted in fixed windows of `suppress_minutes`
/// (aligned to the epoch), so that the page for a window has the same id whichever of its
/// uses arrives first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertConfig {
    /// `pending_deletion_key_used` pages once per key per principal per window of this length.
    pub suppress_minutes: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            suppress_minutes: 60,
        }
    }
}

/// One principal's use of the key, for the context of an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// Who.
    pub principal: Principal,
    /// Uses, all operations: calls that succeeded or were rejected as pending deletion.
    pub uses: u64,
    /// Calls that failed for other reasons (AccessDenied, throttling, validation): attempts,
    /// not uses.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u64,
    /// Operations used.
    pub operations: Vec<KmsOperation>,
    /// Last attempt.
    pub last_seen: Timestamp,
}

/// Whether a count is 0 (serde leaves such counts out).
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The version of the alert's JSON form (`schema/alert.schema.json`). Fields are only ever
/// added within a version; a change that removes or retypes one makes a new version.
pub const ALERT_SCHEMA_VERSION: u32 = 1;

fn alert_schema_version() -> u32 {
    ALERT_SCHEMA_VERSION
}

/// An alert: what on-call needs to act.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The version of this JSON form ([`ALERT_SCHEMA_VERSION`]).
    #[serde(default = "alert_schema_version")]
    pub schema_version: u32,
    /// Deterministic identity: the same condition always gives the same id.
    pub alert_id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// The key.
    pub key_arn: KeyArn,
    /// The key's account.
    pub account: String,
    /// The key's Region.
    pub region: String,
    /// The record that raised it (None for time-driven alerts).
    pub event_id: Option<String>,
    /// When it happened (the clock for time-driven alerts).
    pub event_time: Timestamp,
    /// Who, when a person or service did it.
    pub principal: Option<String>,
    /// The calling account of a cross-account call (the key's own account is `account`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub caller_account: Option<String>,
    /// One readable line.
    pub summary: String,
    /// The operation (pending_deletion_key_used).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operation: Option<KmsOperation>,
    /// `sourceIPAddress`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_ip: Option<String>,
    /// `userAgent`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_agent: Option<String>,
    /// `invokedBy`: the AWS service that made the call for the principal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invoked_by: Option<String>,
    /// Whether KMS rejected the use.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejected: Option<bool>,
    /// Uses by this principal in this suppression window.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uses_in_window: Option<u64>,
    /// Uses by this principal while pending deletion, up to this page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uses_so_far: Option<u64>,
    /// Calls that failed for reasons other than the key's state (AccessDenied, throttling,
    /// validation): attempts, which do not count as uses.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed_attempts: Option<u64>,
    /// When KMS deletes the key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion_date: Option<Timestamp>,
    /// The waiting period.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub window_days: Option<u32>,
    /// Who scheduled the deletion.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scheduled_by: Option<String>,
    /// Usage before the schedule (deletion_scheduled) or overall.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub usage: Vec<UsageSummary>,
    /// The last use before the schedule.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_use: Option<Timestamp>,
    /// What the key protects: the resources its calls' encryption contexts named, by type.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub protects: Vec<ProtectedSummary>,
    /// Is the key safe to delete (`keywatch preflight`'s verdict at the schedule).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verdict: Option<String>,
    /// `cks-…` of the key's custom key store.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub custom_key_store_id: Option<String>,
    /// The command that rescues the key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rescue_command: Option<String>,
    /// What to do next.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remediation: Option<String>,
    /// The command that shows the key's timeline.
    pub timeline_command: String,
}

fn alert_id(kind: AlertKind, key: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str());
    h.update([0]);
    h.update(key);
    for p in parts {
        h.update([0]);
        h.update(p);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in &h.finalize()[..16] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

/// `aws kms cancel-key-deletion` for a key.
pub fn rescue_command(t: &KeyTimeline) -> String {
    format!(
        "aws kms cancel-key-deletion --key-id {} --region {}",
        t.key_arn,
        t.key_arn.region()
    )
}

/// Calls that succeeded or were rejected as pending deletion.
fn uses_of(r: &UsageRollup) -> u64 {
    r.successes + r.rejected_pending_deletion
}

/// Calls that failed for other reasons.
fn failed_attempts_of(rollups: &[UsageRollup]) -> u64 {
    rollups
        .iter()
        .map(|r| r.failures - r.rejected_pending_deletion.min(r.failures))
        .sum()
}

fn summarise_usage(rollups: &[UsageRollup]) -> Vec<UsageSummary> {
    let mut out: Vec<UsageSummary> = Vec::new();
    for r in rollups {
        match out.last_mut().filter(|s| s.principal == r.principal) {
            Some(s) => {
                s.uses += uses_of(r);
                s.failed_attempts += r.failures - r.rejected_pending_deletion.min(r.failures);
                s.operations.push(r.operation.clone());
                s.last_seen = s.last_seen.max(r.last_seen);
            }
            None => out.push(UsageSummary {
                principal: r.principal.clone(),
                uses: uses_of(r),
                failed_attempts: r.failures - r.rejected_pending_deletion.min(r.failures),
                operations: vec![r.operation.clone()],
                last_seen: r.last_seen,
            }),
        }
    }
    out.sort_by(|a, b| {
        b.uses
            .cmp(&a.uses)
            .then_with(|| a.principal.cmp(&b.principal))
    });
    out.truncate(10);
    out
}

impl Alert {
    fn base(t: &KeyTimeline, kind: AlertKind, severity: Severity, id_parts: &[&str]) -> Self {
        Alert {
            schema_version: ALERT_SCHEMA_VERSION,
            alert_id: alert_id(kind, t.key_arn.as_str(), id_parts),
            kind,
            severity,
            key_arn: t.key_arn.clone(),
            account: t.key_arn.account().to_owned(),
            region: t.key_arn.region().to_owned(),
            event_id: None,
            event_time: Timestamp::default(),
            principal: None,
            caller_account: None,
            summary: String::new(),
            operation: None,
            source_ip: None,
            user_agent: None,
            invoked_by: None,
            rejected: None,
            uses_in_window: None,
            uses_so_far: None,
            failed_attempts: None,
            deletion_date: None,
            window_days: None,
            scheduled_by: None,
            usage: Vec::new(),
            last_use: None,
            protects: Vec::new(),
            verdict: None,
            custom_key_store_id: t
                .custom_key_store
                .as_ref()
                .map(|s| s.custom_key_store_id.clone()),
            rescue_command: None,
            remediation: None,
            timeline_command: format!("keywatch timeline {}", t.key_arn),
        }
    }
}

/// "; protects 2 S3 buckets (a, b), 1 secret (c)", or nothing.
fn protects_clause(protects: &[ProtectedSummary]) -> String {
    if protects.is_empty() {
        String::new()
    } else {
        format!("; protects {}", describe(protects))
    }
}

fn label(t: &KeyTimeline) -> String {
    format!(
        "{} ({}/{})",
        t.key_arn.key_id(),
        t.key_arn.account(),
        t.key_arn.region()
    )
}

/// Every alert the timeline warrants as of `as_of`. Pure: the caller drops those already
/// raised (by `alert_id`).
pub fn evaluate(t: &KeyTimeline, as_of: Timestamp, config: &AlertConfig) -> Vec<Alert> {
    let mut alerts = evaluate_events(t, config);
    alerts.extend(evaluate_clock(t, as_of));
    alerts
}

/// The alerts raised by events alone (no clock): what a projector evaluates per batch.
/// Their ids depend only on the events, so any batching raises the same ones.
pub fn evaluate_events(t: &KeyTimeline, config: &AlertConfig) -> Vec<Alert> {
    evaluate_events_unless(t, config, &|_| false)
}

/// [`evaluate_events`] without the pending-deletion pages whose id `raised` knows: a key used
/// for days while pending deletion has thousands of pages, and a projector that has raised
/// them need not build them again on every batch.
pub fn evaluate_events_unless(
    t: &KeyTimeline,
    config: &AlertConfig,
    raised: &(dyn Fn(&str) -> bool + Sync),
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    lifecycle_alerts(t, &mut alerts);
    pending_use_alerts(t, config, raised, &mut alerts);
    alerts
}

/// The time-driven alerts (`deletion_imminent`, `deletion_overdue`) as of a clock: what a
/// sweeper evaluates.
pub fn evaluate_clock(t: &KeyTimeline, as_of: Timestamp) -> Vec<Alert> {
    let mut alerts = Vec::new();
    time_driven_alerts(t, as_of, &mut alerts);
    alerts
}

fn lifecycle_alerts(t: &KeyTimeline, out: &mut Vec<Alert>) {
    for s in &t.schedules {
        out.push(deletion_scheduled(t, s));
        if let Some(ScheduleEnd::Cancelled {
            event_id,
            at,
            principal,
        }) = &s.ended
        {
            out.push(deletion_cancelled(t, event_id, *at, principal));
        }
    }
    let deleted = t.entries.iter().find(|e| {
        matches!(
            e.detail,
            EntryDetail::Lifecycle(KeyEventKind::Deleted { .. })
        )
    });
    if let Some(e) = deleted {
        out.push(key_deleted(t, e));
        if let Some(reason) = &t.orphaned_key_material {
            out.push(orphaned_key_material(t, e, reason));
        }
    }
    key_store_disconnected_pending_deletion(t, out);
}

/// A schedule: high when the key was used in the 30 days before it, or when a call failed
/// then because the key was disabled (something still depended on it).
fn deletion_scheduled(t: &KeyTimeline, s: &DeletionSchedule) -> Alert {
    let recent_ms = i64::from(RECENT_USE_DAYS) * DAY_MS;
    let needed = last_rejected_as_disabled(&s.usage_before);
    let needed_recently =
        needed.is_some_and(|(at, _)| s.scheduled_at.millis() - at.millis() <= recent_ms);
    let severity = if s.used_in_prior_30_days || needed_recently {
        Severity::High
    } else {
        Severity::Medium
    };
    let mut a = Alert::base(t, AlertKind::DeletionScheduled, severity, &[&s.event_id]);
    a.event_id = Some(s.event_id.clone());
    a.event_time = s.scheduled_at;
    a.principal = Some(s.scheduled_by.to_string());
    a.scheduled_by = Some(s.scheduled_by.to_string());
    a.deletion_date = s.deletion_date;
    a.window_days = Some(s.window_days);
    a.usage = summarise_usage(&s.usage_before);
    a.last_use = s.last_use_before;
    a.rescue_command = Some(rescue_command(t));
    let reach = t.records_reach();
    let failed = failed_attempts_of(&s.usage_before);
    a.failed_attempts = (failed > 0).then_some(failed);
    let mut used = match s.last_use_before {
        Some(last) if s.used_in_prior_30_days => {
            format!("used in the 30 days before (last use {last})")
        }
        Some(last) => format!("last used {last}"),
        None => match reach {
            RecordsReach::Since(since) if s.scheduled_at.millis() - since.millis() < recent_ms => {
                format!("no use seen, but keywatch's records of the key begin {since}: its use before then is unknown")
            }
            _ => "no use seen".to_owned(),
        },
    };
    let disabled: u64 = s.usage_before.iter().map(|r| r.rejected_disabled).sum();
    if let Some((at, principal)) = needed {
        used.push_str(&format!(
            "; {disabled} call(s) failed because the key was disabled (DisabledException), the last at {at} by {principal}: something still depended on it"
        ));
    }
    let failed_otherwise = failed - disabled.min(failed);
    if failed_otherwise > 0 {
        used.push_str(&format!(
            "; {failed_otherwise} failed call(s) (access denied, throttling, invalid requests) are attempts, not uses, and do not count as use"
        ));
    }
    let when = match s.deletion_date {
        Some(date) => format!("in {} days, on {date}", s.window_days),
        None => format!(
            "as a multi-Region primary with replicas (PendingReplicaDeletion): its {}-day waiting period begins when its last replica is deleted",
            s.window_days
        ),
    };
    a.protects = t.blast_radius.summary(Some(s.scheduled_at));
    a.verdict = Some(
        verdict(
            &s.usage_before,
            &a.protects,
            reach,
            t.key_usage.as_ref(),
            s.scheduled_at,
            RECENT_USE_DAYS,
        )
        .1,
    );
    let protects = protects_clause(&a.protects);
    a.summary = format!(
        "{} scheduled deletion of KMS key {} {when}; {used}{protects}",
        s.scheduled_by,
        label(t),
    );
    a
}

/// CancelKeyDeletion: the key is rescued, and Disabled.
fn deletion_cancelled(
    t: &KeyTimeline,
    event_id: &str,
    at: Timestamp,
    principal: &Principal,
) -> Alert {
    let mut a = Alert::base(t, AlertKind::DeletionCancelled, Severity::Info, &[event_id]);
    a.event_id = Some(event_id.to_owned());
    a.event_time = at;
    a.principal = Some(principal.to_string());
    a.summary = format!(
        "{principal} cancelled deletion of KMS key {}; the key is now Disabled (EnableKey to use it again)",
        label(t)
    );
    if t.state == KeyState::Unavailable {
        a.summary.push_str(
            "; its custom key store is disconnected, so it shows Unavailable until the store is connected again",
        );
    }
    a
}

/// The key's deletion (`e`, its entry), once: whether DeleteKey or KMS's own deletion event
/// says so first. In a custom key store, what is left of the material.
fn key_deleted(t: &KeyTimeline, e: &TimelineEntry) -> Alert {
    let mut a = Alert::base(t, AlertKind::KeyDeleted, Severity::Info, &["deleted"]);
    a.event_id = Some(e.event_id.clone());
    a.event_time = e.event_time;
    a.principal = Some(e.principal.to_string());
    let store = t.custom_key_store.as_ref();
    a.summary = format!("KMS deleted key {}", label(t));
    if let Some(s) = store
        .filter(|s| s.key_store_type == KeyStoreType::Cloudhsm && t.orphaned_key_material.is_none())
    {
        let cluster = s
            .cloudhsm_cluster_id
            .as_deref()
            .unwrap_or("its CloudHSM cluster");
        let since = t
            .created_at
            .map(|c| format!(" (the key was created {c})"))
            .unwrap_or_default();
        a.summary.push_str(&format!(
            "; its key material was deleted from {cluster}, but cluster backups made before the deletion still hold it{since}"
        ));
        a.remediation = Some(format!(
            "Backups of {cluster} made before {} still hold the key material{since}: delete or expire them if the material must be gone for good.",
            e.event_time
        ));
    }
    if let Some(s) = store.filter(|s| s.key_store_type == KeyStoreType::External) {
        let ext = s.xks_key_id.as_deref().unwrap_or("(unknown id)");
        a.summary.push_str(&format!(
            "; it was in external key store {}: the external key {ext} is untouched and still needs its own decision",
            s.custom_key_store_id
        ));
        a.remediation = Some(format!(
            "Decide in your external key manager whether to keep or destroy external key {ext}."
        ));
    }
    a
}

/// Key material the deletion (`e`) may have left in a CloudHSM cluster.
fn orphaned_key_material(t: &KeyTimeline, e: &TimelineEntry, reason: &OrphanReason) -> Alert {
    let store = t.custom_key_store.as_ref();
    let mut a = Alert::base(
        t,
        AlertKind::OrphanedKeyMaterial,
        Severity::High,
        &["deleted"],
    );
    a.event_id = Some(e.event_id.clone());
    a.event_time = e.event_time;
    let cluster = store
        .and_then(|s| s.cloudhsm_cluster_id.as_deref())
        .unwrap_or("the CloudHSM cluster");
    a.summary = format!(
        "KMS key {} deleted but its key material may remain in {cluster}: {reason}",
        label(t)
    );
    a.remediation = Some(format!(
        "Delete the orphaned key material from {cluster} (find it by the key's label/backing key ID with the CloudHSM CLI). Cluster backups made before {} still hold it.",
        t.deletion_date.unwrap_or(e.event_time)
    ));
    a
}

/// A CloudHSM key store disconnected while one of its keys waits for deletion: if it is
/// still disconnected when the waiting period ends, the material is left in the cluster.
fn key_store_disconnected_pending_deletion(t: &KeyTimeline, out: &mut Vec<Alert>) {
    let cloudhsm = t
        .custom_key_store
        .as_ref()
        .filter(|s| s.key_store_type == KeyStoreType::Cloudhsm);
    for (risk, store) in t
        .orphan_risks
        .iter()
        .filter_map(|r| cloudhsm.map(|s| (r, s)))
    {
        let mut a = Alert::base(
            t,
            AlertKind::KeyStoreDisconnectedPendingDeletion,
            Severity::High,
            &[&risk.event_id],
        );
        let schedule = t.schedules.iter().find(|s| s.event_id == risk.schedule);
        a.event_id = Some(risk.event_id.clone());
        a.event_time = risk.at;
        a.principal = Some(risk.principal.to_string());
        a.deletion_date = schedule.and_then(|s| s.deletion_date);
        a.scheduled_by = schedule.map(|s| s.scheduled_by.to_string());
        a.rescue_command = Some(rescue_command(t));
        let cluster = store
            .cloudhsm_cluster_id
            .as_deref()
            .unwrap_or("its CloudHSM cluster");
        let when = a.deletion_date.map_or_else(
            || "before the deletion".to_owned(),
            |d| format!("before {d}"),
        );
        a.summary = format!(
            "CloudHSM key store {} is disconnected while KMS key {} is pending deletion: if it is still disconnected when the waiting period ends, KMS deletes the key but cannot delete its key material from {cluster}",
            store.custom_key_store_id,
            label(t)
        );
        a.remediation = Some(format!(
            "Connect key store {} again {when} (aws kms connect-custom-key-store --custom-key-store-id {} --region {}), or cancel the deletion; otherwise delete the orphaned key material from {cluster} yourself afterwards.",
            store.custom_key_store_id,
            store.custom_key_store_id,
            t.key_arn.region()
        ));
        out.push(a);
    }
}

fn pending_use_alerts(
    t: &KeyTimeline,
    config: &AlertConfig,
    raised: &dyn Fn(&str) -> bool,
    out: &mut Vec<Alert>,
) {
    let window_ms = i64::from(config.suppress_minutes.max(1)) * 60_000;
    // Group by (principal, window); the id leaves out the schedule, which a late record can change.
    let mut buckets: Vec<&PendingUseBucket> = t.pending_use_buckets.iter().collect();
    buckets.sort_by(|a, b| (&a.principal, a.minute).cmp(&(&b.principal, b.minute)));
    let mut so_far = 0u64;
    let mut i = 0;
    while i < buckets.len() {
        let first = buckets[i];
        let window = first.minute.millis().div_euclid(window_ms);
        let mut j = i;
        let mut in_window = 0u64;
        while j < buckets.len()
            && buckets[j].principal == first.principal
            && buckets[j].minute.millis().div_euclid(window_ms) == window
        {
            in_window += buckets[j].count;
            j += 1;
        }
        if i == 0 || buckets[i - 1].principal != first.principal {
            // Uses in buckets compacted away are older than every kept one.
            so_far = t
                .pending_uses_compacted
                .get(&first.principal)
                .copied()
                .unwrap_or(0);
        }
        so_far += in_window;
        let window_text = window.to_string();
        let window_len = window_ms.to_string();
        let id_parts = [first.principal.0.as_str(), &window_len, &window_text];
        if raised(&alert_id(
            AlertKind::PendingDeletionKeyUsed,
            t.key_arn.as_str(),
            &id_parts,
        )) {
            i = j;
            continue;
        }
        out.push(pending_deletion_key_used(
            t, first, &id_parts, in_window, so_far,
        ));
        i = j;
    }
}

/// A page for one principal's uses of the key pending deletion in one suppression window:
/// `first` is the window's first bucket, `in_window` its uses, `so_far` the principal's uses
/// since the first.
fn pending_deletion_key_used(
    t: &KeyTimeline,
    first: &PendingUseBucket,
    id_parts: &[&str],
    in_window: u64,
    so_far: u64,
) -> Alert {
    let u = &first.first;
    let mut a = Alert::base(
        t,
        AlertKind::PendingDeletionKeyUsed,
        Severity::Critical,
        id_parts,
    );
    a.event_id = Some(u.context.event_id.clone());
    a.event_time = u.context.event_time;
    // The caller's principal when its copy of a cross-account call is known; the calling
    // account otherwise.
    a.principal = Some(u.context.principal.to_string());
    let cross_account = u
        .context
        .caller_account
        .as_deref()
        .filter(|c| *c != t.key_arn.account());
    a.caller_account = cross_account.map(str::to_owned);
    a.operation = Some(u.operation.clone());
    a.source_ip = u.context.source_ip.clone();
    a.user_agent = u.context.user_agent.clone();
    a.invoked_by = u.context.invoked_by.clone();
    a.rejected = Some(u.rejected);
    a.uses_in_window = Some(in_window);
    a.uses_so_far = Some(so_far);
    let schedule = t
        .schedules
        .iter()
        .find(|s| first.schedule.as_ref() == Some(&s.event_id));
    a.deletion_date = schedule.and_then(|s| s.deletion_date);
    a.scheduled_by = schedule.map(|s| s.scheduled_by.to_string());
    a.rescue_command = Some(rescue_command(t));
    let via = u
        .context
        .invoked_by
        .as_deref()
        .map(|s| format!(" via {s}"))
        .unwrap_or_default();
    let gone = match (a.deletion_date, t.state) {
        (Some(d), _) => format!("deleted on {d}"),
        (None, KeyState::PendingReplicaDeletion) => {
            "deletion waits for its replicas to be deleted".to_owned()
        }
        (None, _) => "deletion date unknown".to_owned(),
    };
    let who = match cross_account {
        Some(caller) => format!(
            "{} (account {caller}, cross-account; the key belongs to account {})",
            u.context.principal,
            t.key_arn.account()
        ),
        None => u.context.principal.to_string(),
    };
    a.protects = t.blast_radius.summary(None);
    let protects = protects_clause(&a.protects);
    a.summary = format!(
        "{who} {} KMS key {} pending deletion ({gone}){via}: {} use(s) in this window, {} so far{protects}; to keep it: {}",
        if u.rejected { format!("tried {} on", u.operation) } else { format!("used {} on", u.operation) },
        label(t),
        in_window,
        so_far,
        rescue_command(t)
    );
    a
}

fn time_driven_alerts(t: &KeyTimeline, as_of: Timestamp, out: &mut Vec<Alert>) {
    let Some(s) = t.active_schedule() else { return };
    // No countdown on a date AWS never set (a primary still waiting for its replicas).
    let Some(deletion_date) = s.deletion_date else {
        return;
    };
    let due_in = deletion_date.millis() - as_of.millis();
    // Only uses count: calls refused for other reasons (AccessDenied…) are attempts.
    if s.uses_during_window > 0 && due_in > 0 && due_in <= 24 * HOUR_MS {
        let mut a = Alert::base(
            t,
            AlertKind::DeletionImminent,
            Severity::High,
            &[&s.event_id],
        );
        a.event_time = as_of;
        a.deletion_date = Some(deletion_date);
        a.scheduled_by = Some(s.scheduled_by.to_string());
        a.uses_so_far = Some(s.uses_during_window);
        a.failed_attempts =
            (s.failed_attempts_during_window > 0).then_some(s.failed_attempts_during_window);
        a.rescue_command = Some(rescue_command(t));
        a.usage = summarise_usage(&t.usage);
        a.protects = t.blast_radius.summary(None);
        let last = last_user(&t.usage);
        let last = last
            .map(|(at, p)| format!("; last used {} by {p}", age(at, as_of)))
            .unwrap_or_default();
        a.summary = format!(
            "KMS key {} will be deleted on {} (in {} h) and was used {} time(s) during its waiting period{last}{}; to keep it: {}",
            label(t),
            deletion_date,
            due_in / HOUR_MS,
            s.uses_during_window,
            protects_clause(&a.protects),
            rescue_command(t)
        );
        out.push(a);
    }
    if -due_in > DAY_MS && t.state != KeyState::Deleted {
        let mut a = Alert::base(
            t,
            AlertKind::DeletionOverdue,
            Severity::Medium,
            &[&s.event_id],
        );
        a.event_time = as_of;
        a.deletion_date = Some(deletion_date);
        a.scheduled_by = Some(s.scheduled_by.to_string());
        a.summary = format!(
            "KMS key {} was due for deletion on {} but neither DeleteKey nor KMS's deletion event has been seen: check CloudTrail delivery and the key's state",
            label(t),
            deletion_date
        );
        out.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An alert's id is how a page is never sent twice, across versions too: its form is
    /// fixed (the first 16 bytes of SHA-256 over kind, key and parts, in lower-case hex).
    #[test]
    fn alert_ids_keep_their_form() {
        assert_eq!(
            alert_id(
                AlertKind::DeletionScheduled,
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                &["sched-1"],
            ),
            "f2509d10c5789c46f43b01a24827686a"
        );
    }
}
