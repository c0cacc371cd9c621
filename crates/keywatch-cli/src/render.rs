//! Text for people: alerts, timelines, key lists.

use keywatch_core::alert::Alert;
use keywatch_core::page::{is_unsafe_char, sanitise, MAX_FIELD};
use keywatch_core::preflight::Preflight;
use keywatch_core::protects::{describe, BlastRadius};
use keywatch_core::timeline::{EntryDetail, KeyTimeline, OrphanReason, ScheduleEnd, TimelineEntry};
use keywatch_core::{KeyEventKind, Severity};
use keywatch_database::KeySummary;
use std::io::{self, Write};

/// How alerts are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertFormat {
    /// One JSON object per line.
    Json,
    /// A short block of text each, the severity coloured or not.
    Text {
        /// Whether to colour (ANSI SGR codes).
        colour: bool,
    },
}

/// The ANSI colour (SGR parameters) of a severity: critical red, high yellow, medium cyan.
fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "1;31",
        Severity::High => "1;33",
        Severity::Medium => "36",
        Severity::Info => "2",
    }
}

/// One alert: a JSON line, or a short block of text.
pub fn alert(out: &mut impl Write, a: &Alert, format: AlertFormat) -> io::Result<()> {
    let colour = match format {
        AlertFormat::Json => {
            serde_json::to_writer(&mut *out, a)?;
            return writeln!(out);
        }
        AlertFormat::Text { colour } => colour,
    };
    // Values from records, cleaned of control characters and bounded.
    let a = &keywatch_core::page::sanitised(a);
    let tag = format!("[{}]", a.severity.as_str().to_uppercase());
    let tag = if colour {
        format!("\x1b[{}m{tag}\x1b[0m", severity_colour(a.severity))
    } else {
        tag
    };
    writeln!(out, "{} {} {} {}", tag, a.event_time, a.kind, a.key_arn)?;
    writeln!(out, "    {}", a.summary)?;
    if let Some(ip) = &a.source_ip {
        writeln!(
            out,
            "    from {ip}{}",
            a.user_agent
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(r) = &a.remediation {
        writeln!(out, "    remediation: {r}")?;
    }
    if let Some(c) = &a.rescue_command {
        writeln!(out, "    rescue: {c}")?;
    }
    writeln!(out, "    id {}", a.alert_id)
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// What a timeline entry says, in a few words.
pub fn entry_text(e: &TimelineEntry) -> String {
    match &e.detail {
        EntryDetail::Lifecycle(KeyEventKind::Created { origin, .. }) => {
            format!("created, origin {origin}")
        }
        EntryDetail::Lifecycle(KeyEventKind::DeletionScheduled {
            window_days,
            deletion_date,
            key_state,
            ..
        }) => {
            match deletion_date {
                Some(d) => format!("deletion scheduled: {key_state}, {window_days}-day window, deleted on {d}"),
                None => format!("deletion scheduled: {key_state}, {window_days}-day window from its last replica's deletion"),
            }
        }
        EntryDetail::Lifecycle(KeyEventKind::DeletionCancelled) => {
            "deletion cancelled (key now Disabled)".into()
        }
        EntryDetail::Lifecycle(KeyEventKind::Deleted { backing_keys, .. })
            if !backing_keys.is_empty() =>
        {
            format!(
                "deleted; backing keys: {}",
                backing_keys
                    .iter()
                    .map(|b| b.deletion_status.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        EntryDetail::Lifecycle(KeyEventKind::Deleted { .. }) => "deleted".into(),
        EntryDetail::Lifecycle(KeyEventKind::Disabled) => "disabled".into(),
        EntryDetail::Lifecycle(KeyEventKind::Enabled) => "enabled".into(),
        EntryDetail::Lifecycle(KeyEventKind::KeyMaterialImported) => {
            "key material imported".into()
        }
        EntryDetail::Lifecycle(KeyEventKind::KeyMaterialDeleted) => {
            "imported key material deleted".into()
        }
        EntryDetail::Lifecycle(KeyEventKind::CallFailed { error_code }) => {
            format!("failed: {error_code}")
        }
        EntryDetail::Lifecycle(KeyEventKind::ReplicaCreated { replica_region }) => {
            format!("replica created in {replica_region}")
        }
        EntryDetail::Lifecycle(KeyEventKind::PrimaryRegionUpdated { primary_region }) => {
            format!("primary Region is now {primary_region}")
        }
        EntryDetail::RelatedKey { key_arn, change } => {
            let what = match change {
                KeyEventKind::Created { .. } => "created",
                KeyEventKind::DeletionScheduled { .. } => "deletion scheduled",
                KeyEventKind::DeletionCancelled => "deletion cancelled",
                KeyEventKind::Deleted { .. } => "deleted",
                KeyEventKind::ReplicaCreated { .. } => "replicated",
                KeyEventKind::PrimaryRegionUpdated { .. } => "primary Region updated",
                _ => "changed",
            };
            format!("related multi-Region key {what}: {key_arn}")
        }
        EntryDetail::RejectedAfterCancel {
            operation,
            source_ip,
        } => format!(
            "{operation} rejected as pending deletion just after the cancel (eventual consistency) from {}",
            or_dash(source_ip.as_deref())
        ),
        EntryDetail::Lifecycle(KeyEventKind::Used { operation, .. }) => {
            format!("used: {operation}")
        }
        EntryDetail::UsedWhilePendingDeletion {
            operation,
            rejected,
            source_ip,
            invoked_by,
        } => format!(
            "USED WHILE PENDING DELETION: {operation}{} from {}{}",
            if *rejected {
                " (rejected)"
            } else {
                " (succeeded)"
            },
            or_dash(source_ip.as_deref()),
            invoked_by
                .as_deref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default()
        ),
        EntryDetail::KeyStore {
            custom_key_store_id,
            change,
        } => format!("key store {custom_key_store_id} {change:?}").to_lowercase(),
    }
}

/// A key's timeline for a person.
pub fn timeline(t: &KeyTimeline) -> String {
    let mut s = String::new();
    key(&mut s, t);
    entries(&mut s, t);
    schedules(&mut s, t);
    usage(&mut s, t);
    blast_radius(&mut s, &t.blast_radius);
    s
}

/// The key: its state, deletion date, origin, key store and any warning.
fn key(s: &mut String, t: &KeyTimeline) {
    put(s, format!("KMS key   {}", t.key_arn));
    put(s, format!("state     {}", t.state.as_str()));
    if let Some(d) = t.deletion_date {
        put(s, format!("deletion  {d}"));
    }
    if let Some(o) = &t.origin {
        put(
            s,
            format!(
                "origin    {o}{}",
                if t.multi_region {
                    " (multi-Region)"
                } else {
                    ""
                }
            ),
        );
    }
    if let Some(ks) = &t.custom_key_store {
        put(
            s,
            format!(
                "key store {} ({:?}{}{}{})",
                ks.custom_key_store_id,
                ks.key_store_type,
                ks.cloudhsm_cluster_id
                    .as_deref()
                    .map(|c| format!(", cluster {c}"))
                    .unwrap_or_default(),
                ks.xks_key_id
                    .as_deref()
                    .map(|x| format!(", external key {x}"))
                    .unwrap_or_default(),
                match ks.connected {
                    Some(true) => ", connected",
                    Some(false) => ", disconnected",
                    None => "",
                }
            ),
        );
    }
    if let Some(o) = &t.orphaned_key_material {
        let why = match o {
            OrphanReason::BackingKeyNotDeleted { .. } => "backing key not deleted",
            OrphanReason::KeyStoreDisconnected => "key store disconnected at deletion",
        };
        put(
            s,
            format!("WARNING   key material may remain in the CloudHSM cluster: {why}"),
        );
    }
}

/// The timeline's entries, oldest first.
fn entries(s: &mut String, t: &KeyTimeline) {
    put(s, format!("\nTimeline ({} events)", t.event_count));
    for e in &t.entries {
        let what = entry_text(e);
        put(
            s,
            format!(
                "  {}  {:<28} {:<60} {}",
                e.event_time, e.event_name, what, e.principal
            ),
        );
    }
    if t.pending_use_entries_dropped > 0 {
        put(
            s,
            format!(
                "  … and {} more uses while pending deletion",
                t.pending_use_entries_dropped
            ),
        );
    }
    if t.key_store_entries_dropped > 0 {
        put(
            s,
            format!(
                "  … and {} earlier changes of its custom key store, not kept",
                t.key_store_entries_dropped
            ),
        );
    }
}

/// Each deletion schedule and what became of it.
fn schedules(s: &mut String, t: &KeyTimeline) {
    for sch in &t.schedules {
        let end = match &sch.ended {
            None => "running".to_owned(),
            Some(ScheduleEnd::Cancelled { at, .. }) => format!("cancelled {at}"),
            Some(ScheduleEnd::Deleted { at, .. }) => format!("deleted {at}"),
        };
        put(s, format!("\nSchedule {} by {}: {} days to {}, {end}; {} use(s) during the window; last use before: {}",
            sch.scheduled_at,
            sch.scheduled_by,
            sch.window_days,
            sch.deletion_date
                .map_or_else(|| "(waits for its replicas' deletion)".to_owned(), |d| d.to_string()),
            sch.uses_during_window,
            or_dash(sch.last_use_before)
        ));
    }
}

/// Usage per operation and principal.
fn usage(s: &mut String, t: &KeyTimeline) {
    if !t.usage.is_empty() {
        put(s, "\nUsage");
        put(
            s,
            format!(
                "  {:<22} {:>9} {:>9} {:>9}  {:<20}  {:<20}  principal",
                "operation", "ok", "failed", "disabled", "first", "last"
            ),
        );
        for u in &t.usage {
            put(
                s,
                format!(
                    "  {:<22} {:>9} {:>9} {:>9}  {:<20}  {:<20}  {}",
                    u.operation,
                    u.successes,
                    u.failures,
                    u.rejected_disabled,
                    u.first_seen,
                    u.last_seen,
                    u.principal
                ),
            );
        }
    }
}

/// What the key protects, for a person (values from records, sanitised).
fn blast_radius(s: &mut String, b: &BlastRadius) {
    if b.is_empty() {
        return;
    }
    put(s, "\nProtects (from the encryption context of its calls)");
    put(
        s,
        format!(
            "  {:<16} {:>9}  {:<20}  {:<20}  resource (principals)",
            "type", "calls", "first", "last"
        ),
    );
    for u in &b.resources {
        let principals: Vec<String> = u.principals.iter().map(|p| clean(&p.0)).collect();
        put(
            s,
            format!(
                "  {:<16} {:>9}  {:<20}  {:<20}  {} ({})",
                u.resource.resource_type.singular(),
                u.count,
                u.first_seen,
                u.last_seen,
                clean(&u.resource.id),
                principals.join(", ")
            ),
        );
    }
    if b.more_resources {
        put(s, "  … and more resources than keywatch keeps");
    }
    if !b.other_context_keys.is_empty() {
        let keys: Vec<String> = b
            .other_context_keys
            .iter()
            .map(|(k, n)| format!("{} ×{n}", clean(k)))
            .collect();
        put(
            s,
            format!("  other encryption context keys: {}", keys.join(", ")),
        );
    }
}

fn clean(v: &str) -> String {
    sanitise(v, MAX_FIELD)
}

/// `keywatch preflight` for a person.
pub fn preflight(p: &Preflight) -> String {
    let mut s = String::new();
    put(&mut s, format!("Key:        {}", p.key_arn));
    put(&mut s, format!("State:      {}", p.state.as_str()));
    put(
        &mut s,
        format!(
            "Last use:   {}{}",
            or_dash(p.last_use),
            p.last_used_by
                .as_ref()
                .map(|by| format!(" by {}", clean(&by.0)))
                .unwrap_or_default()
        ),
    );
    if !p.principals.is_empty() {
        put(&mut s, "Used by:");
        for (who, n) in p.principals.iter().take(10) {
            put(&mut s, format!("  {n:>9}  {}", clean(&who.0)));
        }
    }
    if p.protects.is_empty() {
        put(
            &mut s,
            "Protects:   nothing seen in its calls' encryption context",
        );
    } else {
        put(
            &mut s,
            format!(
                "Protects:   {}",
                sanitise(&describe(&p.protects), 4 * MAX_FIELD)
            ),
        );
        if p.protects_more {
            put(&mut s, "            … and more than keywatch keeps");
        }
    }
    for n in &p.notes {
        put(&mut s, format!("Note:       {}", clean(n)));
    }
    if let Some(since) = p.records_since {
        put(
            &mut s,
            format!("Seen since: {since} (keywatch's earliest record of the key)"),
        );
    }
    put(
        &mut s,
        format!("\n{}", sanitise(&p.verdict_line, 4 * MAX_FIELD)),
    );
    s
}

/// The key list for a person.
pub fn keys(keys: &[KeySummary]) -> String {
    let mut s = format!(
        "{:<24} {:<22} {:<22} key\n",
        "state", "deletion date", "last use"
    );
    for k in keys {
        put(
            &mut s,
            format!(
                "{:<24} {:<22} {:<22} {}{}",
                k.state,
                or_dash(k.deletion_date),
                or_dash(k.last_use),
                k.key_arn,
                k.custom_key_store_id
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        );
    }
    s
}

/// Writes one line for a person: whatever came from a record (a principal, a user agent, a
/// key store ID) cannot add lines, move the cursor, clear the screen or set a link or a window
/// title, because control characters are removed from the whole line.
fn put(s: &mut String, line: impl AsRef<str>) {
    let line = line.as_ref();
    // Leading newlines of the format are blank lines of the layout.
    let body = line.trim_start_matches('\n');
    for _ in 0..line.len() - body.len() {
        s.push('\n');
    }
    s.extend(
        body.chars()
            .take(MAX_LINE)
            .map(|c| if is_unsafe_char(c) { ' ' } else { c }),
    );
    s.push('\n');
}

/// The longest line printed.
const MAX_LINE: usize = 4096;
