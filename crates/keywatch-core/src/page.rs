//! What on-call receives for an alert: a short subject, a message a person can act on at
//! 3 a.m., and the alert as JSON for machines. Values that came from a record (principal,
//! user agent…) are sanitised: control characters removed, lengths bounded.

use crate::alert::{Alert, AlertKind};
use crate::event::KmsOperation;

/// SNS allows at most 100 characters in a subject.
pub const MAX_SUBJECT: usize = 100;
/// Longest value taken from a record into a page.
pub const MAX_FIELD: usize = 256;

/// A page, ready for a notification service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// At most [`MAX_SUBJECT`] characters, no line breaks.
    pub subject: String,
    /// For people (email, chat).
    pub text: String,
    /// The alert as JSON (sanitised), for machines (SQS, Lambda, HTTPS).
    pub json: String,
    /// `severity`, `kind`, `account`, `region`: for subscription filter policies.
    pub attributes: Vec<(&'static str, String)>,
}

/// Control characters (ESC, BEL, CR, LF…) and the bidirectional overrides that can make a
/// line read other than it is.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Removes control characters and bounds the length (on a character boundary, marked "…").
pub fn sanitise(value: &str, max: usize) -> String {
    let clean: String = value
        .chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        return clean.to_owned();
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn headline(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::PendingDeletionKeyUsed => "KMS key pending deletion used",
        AlertKind::DeletionScheduled => "KMS key deletion scheduled",
        AlertKind::DeletionCancelled => "KMS key deletion cancelled",
        AlertKind::KeyDeleted => "KMS key deleted",
        AlertKind::OrphanedKeyMaterial => "KMS key material may be orphaned",
        AlertKind::DeletionImminent => "KMS key deletion imminent",
        AlertKind::DeletionOverdue => "KMS key deletion overdue",
        AlertKind::KeyStoreDisconnectedPendingDeletion => {
            "Key store disconnected during a key's deletion"
        }
    }
}

/// The alert with every free-text value sanitised.
pub fn sanitised(alert: &Alert) -> Alert {
    let s = |v: &Option<String>| v.as_deref().map(|v| sanitise(v, MAX_FIELD));
    let mut a = alert.clone();
    a.principal = s(&alert.principal);
    a.source_ip = s(&alert.source_ip);
    a.user_agent = s(&alert.user_agent);
    a.invoked_by = s(&alert.invoked_by);
    // Known operations are AWS's names; one read back from elsewhere is free text.
    a.operation = alert.operation.as_ref().map(|o| match o {
        KmsOperation::Other(text) => KmsOperation::Other(sanitise(text, MAX_FIELD)),
        known => known.clone(),
    });
    a.scheduled_by = s(&alert.scheduled_by);
    a.caller_account = s(&alert.caller_account);
    a.verdict = s(&alert.verdict);
    a.remediation = alert
        .remediation
        .as_deref()
        .map(|r| sanitise(r, 4 * MAX_FIELD));
    for p in &mut a.protects {
        for e in &mut p.examples {
            *e = sanitise(e, MAX_FIELD);
        }
    }
    a.summary = sanitise(&alert.summary, 4 * MAX_FIELD);
    a
}

/// Builds the page for an alert.
pub fn page(alert: &Alert) -> Page {
    let a = sanitised(alert);
    let key_id = match a.key_arn.key_id() {
        "" => a.key_arn.as_str(),
        id => id,
    };
    // Keep the severity, what happened and where; shorten the key ID if it does not fit.
    let prefix = format!(
        "[{}] {}: ",
        a.severity.as_str().to_uppercase(),
        headline(a.kind)
    );
    let place = sanitise(&format!("({}/{})", a.account, a.region), MAX_SUBJECT / 3);
    let room = MAX_SUBJECT.saturating_sub(prefix.chars().count() + 1 + place.chars().count());
    let subject = sanitise(
        &format!("{prefix}{} {place}", sanitise(key_id, room)),
        MAX_SUBJECT,
    );
    let mut text = format!(
        "{}\n\n{}\n\nKey:        {}\n",
        headline(a.kind),
        a.summary,
        a.key_arn
    );
    let mut line = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            text.push_str(&format!("{label:<12}{v}\n"));
        }
    };
    line("Who:", a.principal.clone());
    line(
        "Accounts:",
        a.caller_account
            .as_ref()
            .map(|c| format!("caller {c}, key owner {} (cross-account)", a.account)),
    );
    line(
        "Operation:",
        a.operation.as_ref().map(KmsOperation::to_string),
    );
    line("From:", a.source_ip.clone());
    line("Via:", a.invoked_by.clone());
    line("User agent:", a.user_agent.clone());
    line(
        "Uses:",
        a.uses_so_far.map(|n| {
            format!(
                "{n} so far ({} in this window)",
                a.uses_in_window.unwrap_or(n)
            )
        }),
    );
    line(
        "Not uses:",
        a.failed_attempts
            .map(|n| format!("{n} failed call(s) (access denied, throttling, invalid requests)")),
    );
    line(
        "Protects:",
        (!a.protects.is_empty()).then(|| crate::protects::describe(&a.protects)),
    );
    line("Verdict:", a.verdict.clone());
    line("Deleted on:", a.deletion_date.map(|d| d.to_string()));
    line("Scheduled:", a.scheduled_by.clone());
    line("When:", Some(a.event_time.to_string()));
    if let Some(r) = &a.rescue_command {
        text.push_str(&format!(
            "\nTo keep the key, cancel its deletion now:\n  {r}\n"
        ));
    }
    if let Some(r) = &a.remediation {
        text.push_str(&format!("\nWhat to do:\n  {r}\n"));
    }
    text.push_str(&format!(
        "\nThe key's history:\n  {cmd}\nand as a picture (one page, opens offline):\n  {cmd} --format html > key.html\n\nAlert {}\n",
        a.alert_id,
        cmd = a.timeline_command,
    ));
    let json = serde_json::to_string(&a).unwrap_or_else(|_| "{}".to_owned());
    Page {
        subject,
        text,
        json,
        attributes: vec![
            ("severity", a.severity.as_str().to_owned()),
            ("kind", a.kind.as_str().to_owned()),
            ("account", a.account.clone()),
            ("region", a.region.clone()),
        ],
    }
}
