//! "Is this key safe to delete?" from what keywatch has seen of it: AWS's advice is to
//! examine a key's past usage before scheduling its deletion, because every ciphertext under
//! it dies with it.

use crate::event::{KeyOrigin, KeyState, KeyUsage, KmsOperation, Principal};
use crate::protects::{describe, ProtectedSummary};
use crate::time::{Timestamp, DAY_MS, HOUR_MS};
use crate::timeline::{last_rejected_as_disabled, last_user, latest_then_first_principal};
use crate::timeline::{CustomKeyStore, KeyStoreType, KeyTimeline, RecordsReach, UsageRollup};
use serde::{Deserialize, Serialize};

/// How many days without use keywatch asks for by default: those that count as recent use
/// when a deletion is scheduled.
pub const DEFAULT_PREFLIGHT_DAYS: u32 = crate::timeline::RECENT_USE_DAYS;

/// The answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Unused for the period asked and protects nothing seen.
    Safe,
    /// Used within the period, or protects resources whose data would be lost.
    InUse,
    /// Already deleted: nothing left to decide.
    Deleted,
    /// No use seen and protects nothing seen, but keywatch's records of the key do not
    /// reach back the period asked (nor to its creation): its use before them is unknown.
    Unknown,
}

/// What `keywatch preflight` reports for a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    /// The key.
    pub key_arn: String,
    /// The clock the answer is for.
    #[serde(default)]
    pub as_of: Timestamp,
    /// Its state.
    pub state: KeyState,
    /// The answer.
    pub verdict: Verdict,
    /// The answer in one line.
    pub verdict_line: String,
    /// The last use (a call that succeeded or was rejected as pending deletion).
    pub last_use: Option<Timestamp>,
    /// Who used it last.
    pub last_used_by: Option<Principal>,
    /// Who used it, most first: (principal, uses).
    pub principals: Vec<(Principal, u64)>,
    /// What its calls' encryption contexts named.
    pub protects: Vec<ProtectedSummary>,
    /// More resources were seen than keywatch keeps.
    pub protects_more: bool,
    /// Facts about its custom key store, its multi-Region replicas and its deletion.
    pub notes: Vec<String>,
    /// The earliest record of the key keywatch holds (its CreateKey when seen): how far back
    /// "no use seen" reaches.
    #[serde(default)]
    pub records_since: Option<Timestamp>,
}

/// "3 h ago", "12 days ago".
pub fn age(from: Timestamp, to: Timestamp) -> String {
    let ms = (to.millis() - from.millis()).max(0);
    if ms < 2 * DAY_MS {
        format!("{} h ago", ms / HOUR_MS)
    } else {
        format!("{} days ago", ms / DAY_MS)
    }
}

/// The verdict from a key's usage roll-up, what it protects, how far back keywatch's records
/// of the key reach and what the key is for, as of a time: in use when used within the days
/// asked, when a call failed because the key was disabled within them (something still
/// depends on it), or when it protects anything seen; unknown when its public key was ever
/// downloaded (its use outside AWS KMS leaves no record); "unused" only as far back as the
/// records show it.
pub fn verdict(
    usage: &[UsageRollup],
    protects: &[ProtectedSummary],
    reach: RecordsReach,
    key_usage: Option<&KeyUsage>,
    as_of: Timestamp,
    days: u32,
) -> (Verdict, String) {
    let window_ms = i64::from(days) * DAY_MS;
    let within = |(t, _): &(Timestamp, &Principal)| as_of.millis() - t.millis() <= window_ms;
    let last_use = last_user(usage);
    let recent = last_use.filter(within);
    let needed = last_rejected_as_disabled(usage).filter(within);
    let used = last_use.map_or_else(
        || "no use seen".to_owned(),
        |(t, p)| format!("last used {} by {p}", age(t, as_of)),
    );
    let protected = if protects.is_empty() {
        String::new()
    } else {
        format!("; protects {}", describe(protects))
    };
    match (recent, needed, protects.is_empty()) {
        (Some(_), _, _) => (Verdict::InUse, format!("IN USE: {used}{protected}")),
        (None, Some((t, p)), _) => (
            Verdict::InUse,
            format!(
                "IN USE: a call failed because the key is disabled (DisabledException) {} by {p}: something still depends on it ({used}){protected}",
                age(t, as_of)
            ),
        ),
        (None, None, false) => (
            Verdict::InUse,
            format!(
                "IN USE: protects {} ({used}): their ciphertext dies with the key",
                describe(protects)
            ),
        ),
        (None, None, true) => {
            if let Some((t, p)) = public_key_out(usage, key_usage) {
                let line = format!(
                    "CANNOT TELL: its public key was downloaded (GetPublicKey, last {} by {p}): data encrypted with it outside AWS KMS leaves no record, and cannot be decrypted once the key is deleted ({used})",
                    age(t, as_of)
                );
                return (Verdict::Unknown, line);
            }
            match last_use {
                Some((t, _)) => (
                    Verdict::Safe,
                    format!(
                        "unused for {} days, protects nothing seen",
                        (as_of.millis() - t.millis()) / DAY_MS
                    ),
                ),
                None => never_used(reach, as_of, window_ms, days),
            }
        }
    }
}

/// The last download of the key's public key (a GetPublicKey that succeeded) and who made
/// it, unless the key is known to be for signing or MACs: a public key out of AWS KMS can
/// encrypt data (or agree a secret) that only this key can decrypt, and leaves no record
/// doing so. AWS names it the significant risk of deleting an asymmetric key.
pub fn public_key_out<'u>(
    usage: &'u [UsageRollup],
    key_usage: Option<&KeyUsage>,
) -> Option<(Timestamp, &'u Principal)> {
    if matches!(
        key_usage,
        Some(KeyUsage::SignVerify | KeyUsage::GenerateVerifyMac)
    ) {
        return None;
    }
    usage
        .iter()
        .filter(|u| u.operation == KmsOperation::GetPublicKey && u.successes > 0)
        .filter_map(|u| u.last_used.map(|at| (at, &u.principal)))
        .max_by(latest_then_first_principal)
}

/// The verdict on a key keywatch saw no use of and nothing protected by: safe when its
/// records reach back the period asked or to the key's creation, else unknown.
fn never_used(
    reach: RecordsReach,
    as_of: Timestamp,
    window_ms: i64,
    days: u32,
) -> (Verdict, String) {
    match reach {
        RecordsReach::SinceCreation(created) => (
            Verdict::Safe,
            format!(
                "unused since its creation {} ({created}), protects nothing seen (no use seen at all)",
                age(created, as_of)
            ),
        ),
        RecordsReach::Since(since) if as_of.millis() - since.millis() >= window_ms => (
            Verdict::Safe,
            format!(
                "unused for {} days, protects nothing seen (no use seen at all in keywatch's records of it, which begin {since})",
                (as_of.millis() - since.millis()) / DAY_MS
            ),
        ),
        RecordsReach::Since(since) => (
            Verdict::Unknown,
            format!(
                "CANNOT TELL: no use seen, but keywatch's records of this key begin {} ({since}), not {days} days back, and not at its creation: replay the older CloudTrail log files of its account and Region first",
                age(since, as_of)
            ),
        ),
        RecordsReach::Nothing => (
            Verdict::Unknown,
            "CANNOT TELL: keywatch holds no record of this key's own calls: replay the CloudTrail log files of its account and Region first".to_owned(),
        ),
    }
}

/// The preflight of a key as of `as_of`, asking for `days` without use.
pub fn preflight(t: &KeyTimeline, as_of: Timestamp, days: u32) -> Preflight {
    let mut principals: Vec<(Principal, u64)> = Vec::new();
    for u in &t.usage {
        let uses = u.successes + u.rejected_pending_deletion;
        match principals.iter_mut().find(|(p, _)| *p == u.principal) {
            Some((_, n)) => *n += uses,
            None => principals.push((u.principal.clone(), uses)),
        }
    }
    principals.retain(|(_, n)| *n > 0);
    principals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let last = last_user(&t.usage);
    let protects = t.blast_radius.summary(None);
    let reach = t.records_reach();
    let (mut verdict, mut line) = verdict(
        &t.usage,
        &protects,
        reach,
        t.key_usage.as_ref(),
        as_of,
        days,
    );
    if t.state == KeyState::Deleted {
        verdict = Verdict::Deleted;
        line = "ALREADY DELETED: nothing left to decide".to_owned();
    }
    let mut notes = Vec::new();
    if let Some(s) = &t.custom_key_store {
        notes.push(key_store_note(t, s));
    }
    if t.multi_region || !t.related_keys.is_empty() {
        let regions: Vec<&str> = t
            .related_keys
            .iter()
            .filter(|(_, r)| r.deleted_at.is_none())
            .map(|(region, _)| region.as_str())
            .collect();
        notes.push(if regions.is_empty() {
            "multi-Region key; no live related key seen: deleting the last of a multi-Region key's family is as final as deleting a single-Region key".to_owned()
        } else {
            format!(
                "multi-Region key with related keys in {}: they share its key material, so its ciphertext stays decryptable with them while one lives (a deleted replica can be replicated again from the primary); a primary with replicas waits for their deletion (PendingReplicaDeletion)",
                regions.join(", ")
            )
        });
    }
    if t.origin == Some(KeyOrigin::External) && t.state != KeyState::Deleted {
        notes.push(format!(
            "imported key material (origin EXTERNAL): to halt its use without losing it, delete the key material instead (aws kms delete-imported-key-material --key-id {} --region {}), which reimporting the same material undoes; a deleted key cannot be brought back",
            t.key_arn,
            t.key_arn.region()
        ));
    }
    if let Some((at, by)) = public_key_out(&t.usage, t.key_usage.as_ref()) {
        notes.push(format!(
            "its public key was downloaded (GetPublicKey, last on {at} by {by}): data encrypted with it outside AWS KMS leaves no CloudTrail record, and cannot be decrypted once the key is deleted"
        ));
    }
    if t.state.is_pending_deletion() {
        notes.push(match t.deletion_date {
            // As the deletion_overdue alert says: a deletion AWS has not been seen to make.
            Some(d) if d < as_of => format!(
                "pending deletion, due on {d} ({}), but its deletion has not been seen: check CloudTrail delivery and the key's state (aws kms describe-key)",
                age(d, as_of)
            ),
            Some(d) => format!("already pending deletion, to be deleted on {d}"),
            None => "already pending deletion, waiting for its replicas".to_owned(),
        });
    }
    Preflight {
        as_of,
        key_arn: t.key_arn.to_string(),
        state: t.state,
        verdict,
        verdict_line: line,
        last_use: last.map(|(at, _)| at),
        last_used_by: last.map(|(_, p)| p.clone()),
        principals,
        protects,
        protects_more: t.blast_radius.more_resources,
        notes,
        records_since: match reach {
            RecordsReach::SinceCreation(at) | RecordsReach::Since(at) => Some(at),
            RecordsReach::Nothing => None,
        },
    }
}

/// What a key's custom key store means for its deletion: before it, what to keep in mind;
/// once deleted, what the deletion left behind (an XKS key's external key always; a CloudHSM
/// key's material in cluster backups always, and in the cluster itself when KMS could not
/// delete it there).
fn key_store_note(t: &KeyTimeline, s: &CustomKeyStore) -> String {
    let store = &s.custom_key_store_id;
    let deleted = t.state == KeyState::Deleted;
    match s.key_store_type {
        KeyStoreType::External => {
            let external = s.xks_key_id.as_deref().unwrap_or("(id unknown)");
            if deleted {
                format!("was in external key store {store}: the deletion left the external key {external} in your external key manager, where it still needs its own decision")
            } else {
                format!("in external key store {store}: deleting the KMS key leaves the external key {external} in your external key manager")
            }
        }
        KeyStoreType::Cloudhsm => {
            let cluster = s.cloudhsm_cluster_id.as_deref().unwrap_or("its cluster");
            let backups = t.deletion_date.map_or_else(
                || "cluster backups made before the deletion still hold it".to_owned(),
                |d| format!("cluster backups made before {d} still hold it"),
            );
            match (&t.orphaned_key_material, deleted) {
                (Some(why), true) => format!("was in CloudHSM key store {store}: its key material may remain in {cluster} ({why}): delete it there; {backups}"),
                (None, true) => format!("was in CloudHSM key store {store}: KMS deleted its key material from {cluster}; {backups}"),
                (_, false) => format!("in CloudHSM key store {store}: keep it connected until the deletion, or the key material is orphaned in {cluster}; cluster backups keep the material"),
            }
        }
    }
}
