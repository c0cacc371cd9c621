//! Each rule: given these events, when this one, then these alerts.

mod support;

use keywatch_core::alert::Severity;
use keywatch_core::preflight::{preflight, Verdict};
use keywatch_core::timeline::OrphanReason;
use keywatch_core::{evaluate, AlertConfig, AlertKind, KeyState, KmsOperation};
use serde_json::json;
use support::*;

const AS_OF: &str = "2026-11-02T00:00:00Z";

/// The preflight verdict an alert carries ("" when none).
fn verdict_of(a: &keywatch_core::Alert) -> &str {
    a.verdict.as_deref().unwrap_or_default()
}
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/batch";

fn scheduled_key() -> Vec<serde_json::Value> {
    vec![
        create_key(
            "2026-01-01T00:00:00Z",
            "create",
            "AWS_KMS",
            None,
            None,
            None,
        ),
        decrypt("2026-10-20T00:00:00Z", "use-before", APP_ROLE),
        schedule(
            "2026-11-01T00:00:00Z",
            "sched",
            7,
            Some("Nov 8, 2026, 12:00:00 AM"),
        ),
    ]
}

#[test]
fn a_rejected_use_of_a_pending_deletion_key_pages_with_what_on_call_needs() {
    let alerts = when(
        &scheduled_key(),
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.principal.as_deref(), Some(APP_ROLE));
    assert_eq!(a.operation, Some(KmsOperation::Decrypt));
    assert_eq!(a.source_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(a.user_agent.as_deref(), Some("aws-sdk-java/2.20"));
    assert_eq!(a.rejected, Some(true));
    assert_eq!(a.uses_so_far, Some(1));
    assert_eq!(
        a.deletion_date.map(|d| d.to_string()).as_deref(),
        Some("2026-11-08T00:00:00Z")
    );
    assert_eq!(a.event_id.as_deref(), Some("use-1"));
    assert_eq!(
        a.rescue_command.as_deref(),
        Some(format!("aws kms cancel-key-deletion --key-id {KEY} --region us-east-1").as_str())
    );
    assert!(
        a.summary.contains(APP_ROLE) && a.summary.contains("cancel-key-deletion"),
        "{}",
        a.summary
    );
}

#[test]
fn a_use_that_still_succeeds_after_the_schedule_pages_too() {
    let alerts = when(
        &scheduled_key(),
        decrypt("2026-11-01T00:00:05Z", "use-1", APP_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(alerts[0].rejected, Some(false));
}

#[test]
fn a_rejection_proves_pending_deletion_without_the_schedule_record() {
    let given = [decrypt("2026-10-20T00:00:00Z", "use-before", APP_ROLE)];
    let alerts = when(
        &given,
        rejected("GenerateDataKey", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(alerts[0].deletion_date, None);
    let mut all = given.to_vec();
    all.push(rejected(
        "GenerateDataKey",
        "2026-11-01T10:00:00Z",
        "use-1",
        APP_ROLE,
    ));
    assert_eq!(timeline(&all).state, KeyState::PendingDeletion);
}

#[test]
fn other_invalid_state_errors_do_not_page() {
    let xks_rejection = with(
        decrypt("2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        json!({"errorCode": "KMSInvalidStateException",
               "errorMessage": "The external key store proxy rejected the request because the specified ciphertext or additional authenticated data is corrupted, missing, or otherwise invalid."}),
    );
    assert!(when(&[], xks_rejection.clone(), AS_OF).is_empty());
    // … and on an Enabled key, an ordinary use raises nothing either.
    assert!(when(
        &[],
        decrypt("2026-11-01T10:00:00Z", "use-2", APP_ROLE),
        AS_OF
    )
    .is_empty());
}

#[test]
fn the_other_documented_pending_deletion_message_counts() {
    let r = with(
        decrypt("2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is not usable: key state is PendingDeletion")}),
    );
    assert_eq!(
        kinds(&when(&[], r, AS_OF)),
        [AlertKind::PendingDeletionKeyUsed]
    );
}

#[test]
fn uses_inside_the_suppression_window_are_counted_into_one_page() {
    let mut given = scheduled_key();
    given.push(rejected(
        "Decrypt",
        "2026-11-01T10:01:00Z",
        "use-1",
        APP_ROLE,
    ));
    given.push(rejected(
        "Decrypt",
        "2026-11-01T10:20:00Z",
        "use-2",
        APP_ROLE,
    ));
    let alerts = when(
        &given,
        rejected("Decrypt", "2026-11-01T10:40:00Z", "use-3", APP_ROLE),
        AS_OF,
    );
    assert!(
        alerts.is_empty(),
        "same principal, same window: no new page"
    );
    given.push(rejected(
        "Decrypt",
        "2026-11-01T10:40:00Z",
        "use-3",
        APP_ROLE,
    ));
    let all = evaluate(&timeline(&given), ts(AS_OF), &AlertConfig::default());
    let page = all
        .iter()
        .find(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .expect("one page");
    assert_eq!(page.uses_in_window, Some(3));

    // The next window pages again and reports the uses so far.
    let later = when(
        &given,
        rejected("Decrypt", "2026-11-01T12:30:00Z", "use-4", APP_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&later), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(later[0].uses_so_far, Some(4));
    assert_eq!(later[0].uses_in_window, Some(1));

    // A new principal pages at once, inside the same window.
    let other = when(
        &given,
        rejected("Decrypt", "2026-11-01T10:41:00Z", "use-5", OTHER_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&other), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(other[0].principal.as_deref(), Some(OTHER_ROLE));
}

#[test]
fn the_suppression_window_is_configurable() {
    let mut given = scheduled_key();
    given.push(rejected(
        "Decrypt",
        "2026-11-01T10:01:00Z",
        "use-1",
        APP_ROLE,
    ));
    given.push(rejected(
        "Decrypt",
        "2026-11-01T10:20:00Z",
        "use-2",
        APP_ROLE,
    ));
    let t = timeline(&given);
    let pages = |minutes| {
        evaluate(
            &t,
            ts(AS_OF),
            &AlertConfig {
                suppress_minutes: minutes,
            },
        )
        .into_iter()
        .filter(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .count()
    };
    assert_eq!(pages(60), 1);
    assert_eq!(pages(5), 2);
}

#[test]
fn scheduling_a_recently_used_key_is_high_with_the_usage_summary() {
    let given = &scheduled_key()[..2];
    let alerts = when(given, scheduled_key()[2].clone(), AS_OF);
    assert_eq!(kinds(&alerts), [AlertKind::DeletionScheduled]);
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.scheduled_by.as_deref(), Some(ADMIN));
    assert_eq!(a.window_days, Some(7));
    assert_eq!(a.usage.len(), 1);
    assert_eq!(a.usage[0].principal.0, APP_ROLE);
    assert_eq!(
        a.last_use.map(|t| t.to_string()).as_deref(),
        Some("2026-10-20T00:00:00Z")
    );
}

#[test]
fn scheduling_an_unused_key_is_medium_and_the_window_defaults_to_30_days() {
    let old_use = decrypt("2026-08-01T00:00:00Z", "old-use", APP_ROLE);
    let mut sched = schedule("2026-11-01T00:00:00Z", "sched", 30, None);
    sched["requestParameters"] = json!({"keyId": KEY});
    sched["responseElements"] = json!({"keyId": KEY, "keyState": "PendingDeletion"});
    let alerts = when(&[old_use], sched, AS_OF);
    assert_eq!(alerts[0].severity, Severity::Medium);
    assert_eq!(alerts[0].window_days, Some(30));
    assert_eq!(
        alerts[0].deletion_date.map(|d| d.to_string()).as_deref(),
        Some("2026-12-01T00:00:00Z")
    );
}

/// "Recently used" is the 30 days before the schedule, to the millisecond: a use exactly 30
/// days before counts, one a day earlier does not (AWS's advice is to look at a key's usage
/// before deleting it; a use a month and a day ago is history, not a dependency in use).
#[test]
fn a_use_counts_as_recent_up_to_exactly_30_days_before_the_schedule() {
    let scheduled_at = "2026-11-01T00:00:00Z";
    for (used_at, recent) in [
        ("2026-10-02T00:00:00Z", true),
        ("2026-10-01T23:59:59Z", false),
        ("2026-09-01T00:00:00Z", false),
    ] {
        let mut sched = schedule(scheduled_at, "sched", 30, None);
        sched["requestParameters"] = json!({"keyId": KEY});
        sched["responseElements"] = json!({"keyId": KEY, "keyState": "PendingDeletion"});
        let alerts = when(&[decrypt(used_at, "use", APP_ROLE)], sched, AS_OF);
        assert_eq!(
            kinds(&alerts),
            [AlertKind::DeletionScheduled],
            "use at {used_at}"
        );
        let expected = if recent {
            Severity::High
        } else {
            Severity::Medium
        };
        assert_eq!(alerts[0].severity, expected, "use at {used_at}");
        // The last use is reported either way.
        assert_eq!(
            alerts[0].last_use.map(|t| t.to_string()).as_deref(),
            Some(used_at),
            "use at {used_at}"
        );
    }
}

#[test]
fn cancelling_leaves_the_key_disabled_and_enable_key_enables_it() {
    let mut given = scheduled_key();
    let alerts = when(&given, cancel("2026-11-02T00:00:00Z", "cancel"), AS_OF);
    assert_eq!(kinds(&alerts), [AlertKind::DeletionCancelled]);
    assert_eq!(alerts[0].severity, Severity::Info);
    given.push(cancel("2026-11-02T00:00:00Z", "cancel"));
    let t = timeline(&given);
    assert_eq!(t.state, KeyState::Disabled);
    assert_eq!(t.deletion_date, None);
    given.push(call(
        "EnableKey",
        "2026-11-02T01:00:00Z",
        "enable",
        iam_user(ADMIN),
    ));
    assert_eq!(timeline(&given).state, KeyState::Enabled);
    // A use after the cancellation is not a pending-deletion use.
    assert!(when(
        &given,
        decrypt("2026-11-03T00:00:00Z", "use-after", APP_ROLE),
        "2026-11-03T00:00:00Z"
    )
    .is_empty());
}

#[test]
fn deletion_is_reported_and_an_xks_key_says_its_external_key_is_untouched() {
    let given = vec![
        create_key(
            "2026-01-01T00:00:00Z",
            "create",
            "EXTERNAL_KEY_STORE",
            Some("cks-xks"),
            None,
            Some("bb8562717f809024"),
        ),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
    ];
    let alerts = when(
        &given,
        delete_key(
            "2026-11-08T00:00:00Z",
            "del",
            json!({"customKeyStoreId": "cks-xks"}),
        ),
        "2026-11-08T01:00:00Z",
    );
    assert_eq!(kinds(&alerts), [AlertKind::KeyDeleted]);
    assert!(
        alerts[0]
            .summary
            .contains("external key bb8562717f809024 is untouched"),
        "{}",
        alerts[0].summary
    );
    let mut all = given;
    all.push(delete_key("2026-11-08T00:00:00Z", "del", json!({})));
    assert_eq!(timeline(&all).state, KeyState::Deleted);
    // And preflight says what the deletion left, not what to keep in mind before it.
    let notes = preflight(&timeline(&all), ts("2026-11-09T00:00:00Z"), 30).notes;
    assert!(
        notes.iter().any(|n| n.contains(
            "the deletion left the external key bb8562717f809024 in your external key manager"
        )),
        "{notes:?}"
    );
}

fn cloudhsm_key() -> Vec<serde_json::Value> {
    vec![
        hsm_key(),
        key_store_call(
            "ConnectCustomKeyStore",
            "2026-01-01T00:00:00Z",
            "connect",
            "cks-hsm",
        ),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
    ]
}

fn hsm_delete(status: &str) -> serde_json::Value {
    delete_key(
        "2026-11-08T00:00:00Z",
        "del",
        json!({"customKeyStoreId": "cks-hsm", "clusterId": "cluster-1a23b4cdefg",
               "backingKeys": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"backing-key-id\"}]",
               "backingKeysDeletionStatus": format!("[{{\"keyHandle\":\"01\",\"backingKeyId\":\"backing-key-id\",\"deletionStatus\":\"{status}\"}}]")}),
    )
}

#[test]
fn a_failed_backing_key_deletion_leaves_orphaned_key_material() {
    let alerts = when(
        &cloudhsm_key(),
        hsm_delete("FAILURE"),
        "2026-11-08T01:00:00Z",
    );
    assert_eq!(
        kinds(&alerts),
        [AlertKind::KeyDeleted, AlertKind::OrphanedKeyMaterial]
    );
    let a = &alerts[1];
    assert_eq!(a.severity, Severity::High);
    let remediation = a.remediation.as_deref().unwrap_or_default();
    assert!(
        remediation.contains("cluster-1a23b4cdefg") && remediation.contains("backups"),
        "{remediation}"
    );
}

#[test]
fn a_disconnected_key_store_at_deletion_leaves_orphaned_key_material() {
    let mut given = cloudhsm_key();
    given.push(key_store_call(
        "DisconnectCustomKeyStore",
        "2026-11-07T00:00:00Z",
        "disconnect",
        "cks-hsm",
    ));
    let alerts = when(&given, hsm_delete("SUCCESS"), "2026-11-08T01:00:00Z");
    assert_eq!(
        kinds(&alerts),
        [AlertKind::KeyDeleted, AlertKind::OrphanedKeyMaterial]
    );
    given.push(hsm_delete("SUCCESS"));
    assert_eq!(
        timeline(&given).orphaned_key_material,
        Some(OrphanReason::KeyStoreDisconnected)
    );
}

#[test]
fn a_clean_cloudhsm_deletion_orphans_nothing() {
    let alerts = when(
        &cloudhsm_key(),
        hsm_delete("SUCCESS"),
        "2026-11-08T01:00:00Z",
    );
    assert_eq!(kinds(&alerts), [AlertKind::KeyDeleted]);
}

#[test]
fn a_key_store_disconnect_makes_its_keys_unavailable_until_reconnected() {
    let mut given = vec![
        hsm_key(),
        key_store_call(
            "DisconnectCustomKeyStore",
            "2026-02-01T00:00:00Z",
            "disconnect",
            "cks-hsm",
        ),
    ];
    assert_eq!(timeline(&given).state, KeyState::Unavailable);
    given.push(key_store_call(
        "ConnectCustomKeyStore",
        "2026-02-02T00:00:00Z",
        "connect",
        "cks-hsm",
    ));
    assert_eq!(timeline(&given).state, KeyState::Enabled);
}

#[test]
fn deletion_imminent_when_used_during_the_window_and_due_within_a_day() {
    let mut given = scheduled_key();
    given.push(decrypt("2026-11-03T00:00:00Z", "use-during", APP_ROLE));
    let t = timeline(&given);
    let at = |s| kinds(&evaluate(&t, ts(s), &AlertConfig::default()));
    assert!(!at("2026-11-06T00:00:00Z").contains(&AlertKind::DeletionImminent));
    assert!(at("2026-11-07T06:00:00Z").contains(&AlertKind::DeletionImminent));
    // Once per schedule: the id does not depend on the clock.
    let id = |s| {
        evaluate(&t, ts(s), &AlertConfig::default())
            .into_iter()
            .find(|a| a.kind == AlertKind::DeletionImminent)
            .map(|a| a.alert_id)
    };
    assert_eq!(id("2026-11-07T06:00:00Z"), id("2026-11-07T20:00:00Z"));
    // Unused during the window: nothing imminent to warn about.
    let quiet = timeline(&scheduled_key());
    assert!(!kinds(&evaluate(
        &quiet,
        ts("2026-11-07T06:00:00Z"),
        &AlertConfig::default()
    ))
    .contains(&AlertKind::DeletionImminent));
}

#[test]
fn deletion_overdue_when_no_delete_key_a_day_after_the_date() {
    let t = timeline(&scheduled_key());
    let at = |s| kinds(&evaluate(&t, ts(s), &AlertConfig::default()));
    assert!(!at("2026-11-08T12:00:00Z").contains(&AlertKind::DeletionOverdue));
    assert!(at("2026-11-09T00:00:01Z").contains(&AlertKind::DeletionOverdue));
    let mut deleted = scheduled_key();
    deleted.push(delete_key("2026-11-08T00:00:00Z", "del", json!({})));
    let t = timeline(&deleted);
    assert!(!kinds(&evaluate(
        &t,
        ts("2026-11-20T00:00:00Z"),
        &AlertConfig::default()
    ))
    .contains(&AlertKind::DeletionOverdue));
}

#[test]
fn a_multi_region_primary_with_replicas_is_pending_replica_deletion() {
    let mut s = schedule("2026-11-01T00:00:00Z", "sched", 30, None);
    s["responseElements"]["keyState"] = json!("PendingReplicaDeletion");
    let t = timeline(&[s]);
    assert_eq!(t.state, KeyState::PendingReplicaDeletion);
    let alerts = when(
        &[schedule("2026-11-01T00:00:00Z", "sched", 30, None)],
        rejected("Decrypt", "2026-11-01T01:00:00Z", "u", APP_ROLE),
        AS_OF,
    );
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
}

#[test]
fn the_page_for_a_pending_deletion_use_is_short_to_read_and_safe() {
    let mut evil = rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE);
    evil["userAgent"] = json!(format!("curl\u{7}\r\n[FAKE] all clear{}", "x".repeat(1000)));
    let alerts = when(&scheduled_key(), evil, AS_OF);
    let p = keywatch_core::page::page(&alerts[0]);
    assert!(p.subject.chars().count() <= 100, "{}", p.subject);
    assert_eq!(
        p.subject,
        "[CRITICAL] KMS key pending deletion used: 1234abcd-12ab-34cd-56ef-12345678… (111122223333/us-east-1)"
    );
    assert!(
        !p.text.contains('\u{7}') && !p.text.contains("\r\n[FAKE]"),
        "control characters removed"
    );
    assert!(p.text.contains("aws kms cancel-key-deletion --key-id"));
    assert!(p.text.contains(&format!("keywatch timeline {KEY}")));
    assert!(
        p.text
            .contains(&format!("keywatch timeline {KEY} --format html > key.html")),
        "the page points at the picture too"
    );
    let json: serde_json::Value = serde_json::from_str(&p.json).expect("page JSON");
    assert!(json["user_agent"]
        .as_str()
        .is_some_and(|u| u.chars().count() <= 256));
    assert_eq!(json["kind"], "pending_deletion_key_used");
    assert!(p.attributes.contains(&("severity", "critical".to_owned())));
    assert!(p.attributes.contains(&("account", ACCOUNT.to_owned())));
}

/// A job that retries Decrypt every minute through a 30-day waiting period (43,200 uses)
/// keeps paging once an hour to the end, with the uses so far counted from the first: the
/// timeline keeps only its most recent minutes of detail, not the whole period, so there is
/// no point after which the key goes quiet.
#[test]
fn a_key_used_every_minute_of_a_30_day_window_pages_every_hour_to_the_end() {
    let mut given = vec![schedule(
        "2026-11-01T00:00:00Z",
        "sched",
        30,
        Some("Dec 1, 2026, 12:00:00 AM"),
    )];
    let start = ts("2026-11-01T00:00:30Z");
    let minutes = 30 * 24 * 60;
    for m in 0..minutes {
        let at = start.plus_millis(m * 60_000).to_string();
        given.push(rejected("Decrypt", &at, &format!("use-{m}"), APP_ROLE));
    }
    let t = timeline(&given);
    assert_eq!(t.pending_uses, minutes as u64);
    let pages: Vec<_> = evaluate(&t, ts("2026-12-01T00:00:00Z"), &AlertConfig::default())
        .into_iter()
        .filter(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .collect();
    assert_eq!(pages.len(), 30 * 24, "one page an hour, every hour");
    let last = pages
        .iter()
        .max_by_key(|a| a.event_time)
        .expect("a last page");
    assert_eq!(last.event_time.to_string(), "2026-11-30T23:00:30Z");
    assert_eq!(last.uses_in_window, Some(60));
    assert_eq!(
        last.uses_so_far,
        Some(minutes as u64),
        "counted from the first use"
    );

    // At rest the timeline keeps only its most recent minutes (as the projector stores it):
    // bounded, nothing paged again, and the next page still counts from the first use.
    let mut at_rest = t.clone();
    at_rest.compact();
    assert!(at_rest.pending_use_buckets.len() <= keywatch_core::timeline::MAX_PENDING_USE_BUCKETS);
    let raised: Vec<String> = pages.iter().map(|a| a.alert_id.clone()).collect();
    let again: Vec<_> =
        keywatch_core::alert::evaluate_events_unless(&at_rest, &AlertConfig::default(), &|id| {
            raised.iter().any(|r| r == id)
        })
        .into_iter()
        .filter(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .collect();
    assert!(again.is_empty(), "nothing pages twice: {again:?}");
    let next = events(&[rejected(
        "Decrypt",
        "2026-11-30T23:59:59Z",
        "use-next",
        APP_ROLE,
    )]);
    // Minute 23:59 already has a bucket: this use joins it; the hour's page is the same.
    for e in &next {
        at_rest.apply(e);
    }
    assert_eq!(at_rest.pending_uses, minutes as u64 + 1);
    let page = keywatch_core::alert::evaluate_events(&at_rest, &AlertConfig::default())
        .into_iter()
        .filter(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .max_by_key(|a| a.event_time)
        .expect("the last hour's page");
    assert_eq!(page.uses_so_far, Some(minutes as u64 + 1));
    assert_eq!(page.uses_in_window, Some(61));
}

/// `keywatch preflight` of a CloudHSM key says what its key store means for the deletion
/// before it, and what the deletion left behind after it: the material in cluster backups
/// always, in the cluster itself when KMS could not delete it there.
#[test]
fn preflight_of_a_cloudhsm_key_says_what_its_deletion_leaves_in_the_cluster() {
    let notes = |records: &[serde_json::Value], as_of: &str| {
        preflight(&timeline(records), ts(as_of), 30)
            .notes
            .join("\n")
    };
    let pending = cloudhsm_key();
    let before = notes(&pending, "2026-11-02T00:00:00Z");
    assert!(
        before.contains("in CloudHSM key store cks-hsm: keep it connected until the deletion")
            && before.contains("to be deleted on 2026-11-08T00:00:00Z"),
        "{before}"
    );
    // Past its deletion date with no deletion seen: overdue, as the deletion_overdue alert says.
    let overdue = notes(&pending, "2026-11-20T00:00:00Z");
    assert!(
        overdue.contains(
            "pending deletion, due on 2026-11-08T00:00:00Z (12 days ago), but its deletion has not been seen"
        ) && !overdue.contains("to be deleted on"),
        "{overdue}"
    );
    let after = "2026-11-09T00:00:00Z";
    let mut deleted = pending.clone();
    deleted.push(hsm_delete("SUCCESS"));
    let clean = notes(&deleted, after);
    assert_eq!(
        clean,
        "was in CloudHSM key store cks-hsm: KMS deleted its key material from cluster-1a23b4cdefg; \
         cluster backups made before 2026-11-08T00:00:00Z still hold it"
    );
    let mut failed = pending.clone();
    failed.push(hsm_delete("FAILURE"));
    let failed = notes(&failed, after);
    assert!(
        failed.contains(
            "its key material may remain in cluster-1a23b4cdefg (DeleteKey reported backing key deletion status FAILURE (key handle 01)): delete it there"
        ),
        "{failed}"
    );
    let mut disconnected = pending;
    disconnected.push(key_store_call(
        "DisconnectCustomKeyStore",
        "2026-11-07T00:00:00Z",
        "disconnect",
        "cks-hsm",
    ));
    disconnected.push(hsm_delete("SUCCESS"));
    let disconnected = notes(&disconnected, after);
    assert!(
        disconnected.contains(
            "may remain in cluster-1a23b4cdefg (the custom key store was disconnected when the key was deleted)"
        ) && disconnected.contains("cluster backups made before 2026-11-08T00:00:00Z still hold it"),
        "{disconnected}"
    );
}

/// "Unused" only as far back as keywatch's records of the key reach. A key keywatch saw no
/// use of, whose earliest record (here a DisableKey, not its creation) is more recent than
/// the days asked, may have been used before it: CloudTrail logs keywatch never read (from
/// before it was deployed, or older than the archives replayed) may hold the use. Neither
/// safe nor in use, then: cannot tell.
#[test]
fn preflight_says_unused_only_as_far_back_as_its_records_reach() {
    let as_of = ts("2026-11-02T00:00:00Z");
    let disabled_at = |at: &str| call("DisableKey", at, "disable", iam_user(ADMIN));
    // Records from 3 days back: not 30.
    let recent = timeline(&[disabled_at("2026-10-30T00:00:00Z")]);
    let report = preflight(&recent, as_of, 30);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(
        report.verdict_line.starts_with("CANNOT TELL: no use seen")
            && report.verdict_line.contains("2026-10-30T00:00:00Z"),
        "{}",
        report.verdict_line
    );
    assert_eq!(report.records_since, Some(ts("2026-10-30T00:00:00Z")));
    // Asked for 3 days, they are enough.
    let report = preflight(&recent, as_of, 3);
    assert_eq!(report.verdict, Verdict::Safe, "{}", report.verdict_line);
    // To the millisecond: records from exactly 30 days back are enough, a second less not.
    for (since, verdict) in [
        ("2026-10-03T00:00:00Z", Verdict::Safe),
        ("2026-10-03T00:00:01Z", Verdict::Unknown),
        ("2026-09-01T00:00:00Z", Verdict::Safe),
    ] {
        let report = preflight(&timeline(&[disabled_at(since)]), as_of, 30);
        assert_eq!(report.verdict, verdict, "records since {since}");
    }
    let old = preflight(&timeline(&[disabled_at("2026-09-01T00:00:00Z")]), as_of, 30);
    assert_eq!(
        old.verdict_line,
        "unused for 62 days, protects nothing seen (no use seen at all in keywatch's records of it, which begin 2026-09-01T00:00:00Z)"
    );
    // A key whose creation keywatch saw: its whole life is in the records, however short.
    let young = timeline(&[
        create_key(
            "2026-10-28T00:00:00Z",
            "create",
            "AWS_KMS",
            None,
            None,
            None,
        ),
        disabled_at("2026-10-30T00:00:00Z"),
    ]);
    let report = preflight(&young, as_of, 30);
    assert_eq!(report.verdict, Verdict::Safe);
    assert_eq!(
        report.verdict_line,
        "unused since its creation 5 days ago (2026-10-28T00:00:00Z), protects nothing seen (no use seen at all)"
    );
    // The key's store's records are not the key's: a connection long before the key's first
    // record of its own does not make "unused" reach back to it.
    let mut in_store = schedule("2026-10-30T00:00:00Z", "sched", 30, None);
    in_store["additionalEventData"] = json!({"customKeyStoreId": "cks-hsm"});
    let connect = key_store_call(
        "ConnectCustomKeyStore",
        "2026-01-01T00:00:00Z",
        "connect",
        "cks-hsm",
    );
    let t = timeline(&[connect, in_store]);
    assert!(
        t.entries
            .iter()
            .any(|e| e.event_time == ts("2026-01-01T00:00:00Z")),
        "the store's connection is in the key's story"
    );
    assert_eq!(
        t.records_reach(),
        keywatch_core::RecordsReach::Since(ts("2026-10-30T00:00:00Z"))
    );
    // A use seen long enough ago says how long, whatever the records' reach.
    let used = timeline(&[decrypt("2026-09-20T00:00:00Z", "use", APP_ROLE)]);
    let report = preflight(&used, as_of, 30);
    assert_eq!(report.verdict, Verdict::Safe);
    assert_eq!(
        report.verdict_line,
        "unused for 43 days, protects nothing seen"
    );
}

/// The same for the page of a schedule: when the ScheduleKeyDeletion is keywatch's first
/// record of the key (keywatch deployed yesterday, say), "no use seen" says that its use
/// before is unknown, and so does the verdict it carries.
#[test]
fn a_schedule_keywatch_has_no_earlier_record_of_says_its_use_before_is_unknown() {
    let mut sched = schedule("2026-11-01T00:00:00Z", "sched", 30, None);
    sched["requestParameters"] = json!({"keyId": KEY});
    let alerts = when(&[], sched.clone(), AS_OF);
    assert_eq!(kinds(&alerts), [AlertKind::DeletionScheduled]);
    let a = &alerts[0];
    assert!(
        a.summary.contains(
            "no use seen, but keywatch's records of the key begin 2026-11-01T00:00:00Z: its use before then is unknown"
        ),
        "{}",
        a.summary
    );
    assert!(
        verdict_of(a).starts_with("CANNOT TELL"),
        "{}",
        verdict_of(a)
    );
    // Records reaching 30 days before the schedule: no use seen, and unused.
    let enabled = call(
        "EnableKey",
        "2026-10-02T00:00:00Z",
        "enable",
        iam_user(ADMIN),
    );
    let alerts = when(&[enabled], sched, AS_OF);
    let a = &alerts[0];
    assert!(
        a.summary.ends_with("; no use seen") && !a.summary.contains("unknown"),
        "{}",
        a.summary
    );
    assert!(
        verdict_of(a).starts_with("unused for 30 days"),
        "{}",
        verdict_of(a)
    );
}

/// AWS's advice before deleting a key is to disable it first and watch CloudTrail for calls
/// that fail with DisabledException: each is a workload that still depends on the key, and
/// would lose its data with it. Such a call is an attempt, not a use, but preflight says the
/// key is in use, and a schedule made after one pages high.
#[test]
fn a_call_rejected_because_the_key_is_disabled_means_something_still_depends_on_it() {
    let as_of = ts("2026-11-02T00:00:00Z");
    let disabled_a_month_ago = vec![
        create_key(
            "2026-01-01T00:00:00Z",
            "create",
            "AWS_KMS",
            None,
            None,
            None,
        ),
        decrypt("2026-06-01T00:00:00Z", "old-use", APP_ROLE),
        call(
            "DisableKey",
            "2026-10-01T00:00:00Z",
            "disable",
            iam_user(ADMIN),
        ),
    ];
    let with_call = |call: serde_json::Value| {
        let mut records = disabled_a_month_ago.clone();
        records.push(call);
        records
    };
    assert_eq!(
        preflight(&timeline(&disabled_a_month_ago), as_of, 30).verdict,
        Verdict::Safe
    );
    // A nightly job's Decrypt refused two days ago because the key is disabled.
    let needed = with_call(rejected_as_disabled(
        "Decrypt",
        "2026-10-31T00:00:00Z",
        "refused",
        OTHER_ROLE,
    ));
    let t = timeline(&needed);
    let report = preflight(&t, as_of, 30);
    assert_eq!(report.verdict, Verdict::InUse);
    assert!(
        report.verdict_line.starts_with("IN USE: a call failed because the key is disabled (DisabledException) 2 days ago by arn:aws:iam::111122223333:role/batch"),
        "{}",
        report.verdict_line
    );
    // Counted apart among the failures, and not as a use.
    let row = t
        .usage
        .iter()
        .find(|u| u.principal.0 == OTHER_ROLE)
        .expect("the refused call's row");
    assert_eq!(
        (row.failures, row.rejected_disabled, row.last_used),
        (1, 1, None)
    );
    // Refused exactly 30 days before: in use; asked later, history, not a dependency.
    let long_ago = with_call(rejected_as_disabled(
        "Decrypt",
        "2026-10-03T00:00:00Z",
        "refused",
        OTHER_ROLE,
    ));
    assert_eq!(
        preflight(&timeline(&long_ago), as_of, 30).verdict,
        Verdict::InUse
    );
    assert_eq!(
        preflight(&timeline(&long_ago), ts("2026-11-15T00:00:00Z"), 30).verdict,
        Verdict::Safe
    );
    // Any other failure is an attempt only.
    let denied = with_call(failed(
        "Decrypt",
        "2026-10-31T00:00:00Z",
        "denied",
        "AccessDeniedException",
    ));
    assert_eq!(
        preflight(&timeline(&denied), as_of, 30).verdict,
        Verdict::Safe
    );
    // A schedule after the refused call pages high, and says why.
    let alerts = when(
        &needed,
        schedule("2026-11-01T00:00:00Z", "sched", 30, None),
        AS_OF,
    );
    let a = alerts
        .iter()
        .find(|a| a.kind == AlertKind::DeletionScheduled)
        .expect("deletion_scheduled");
    assert_eq!(a.severity, Severity::High);
    assert!(
        a.summary.contains("1 call(s) failed because the key was disabled (DisabledException), the last at 2026-10-31T00:00:00Z by arn:aws:iam::111122223333:role/batch: something still depended on it")
            && !a.summary.contains("access denied"),
        "{}",
        a.summary
    );
    assert!(verdict_of(a).starts_with("IN USE"), "{}", verdict_of(a));
    let alerts = when(
        &denied,
        schedule("2026-11-01T00:00:00Z", "sched", 30, None),
        AS_OF,
    );
    assert_eq!(alerts[0].severity, Severity::Medium);
}

/// AWS calls this the significant risk of deleting an asymmetric key: its public key, once
/// downloaded, keeps encrypting data outside AWS KMS without a record, and that data cannot be
/// decrypted after the key is deleted. A key whose public key was downloaded is therefore not
/// "unused" however long ago its last recorded call; unless it is a signing key, whose
/// downloaded public key only verifies (and keeps doing so).
#[test]
fn a_key_whose_public_key_was_downloaded_cannot_be_called_unused() {
    let as_of = ts("2026-11-02T00:00:00Z");
    let asymmetric = |key_usage: &str| {
        let mut create = create_key(
            "2026-01-01T00:00:00Z",
            "create",
            "AWS_KMS",
            None,
            None,
            None,
        );
        create["requestParameters"]["keyUsage"] = json!(key_usage);
        create["requestParameters"]["keySpec"] = json!("RSA_2048");
        create["responseElements"]["keyMetadata"]["keyUsage"] = json!(key_usage);
        create
    };
    let downloaded = call(
        "GetPublicKey",
        "2026-07-01T00:00:00Z",
        "get-public-key",
        assumed_role(APP_ROLE),
    );
    let encryption = timeline(&[asymmetric("ENCRYPT_DECRYPT"), downloaded.clone()]);
    assert_eq!(
        encryption.key_usage.as_ref().map(|u| u.as_str()),
        Some("ENCRYPT_DECRYPT")
    );
    let report = preflight(&encryption, as_of, 30);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(
        report.verdict_line.starts_with(
            "CANNOT TELL: its public key was downloaded (GetPublicKey, last 124 days ago by arn:aws:iam::111122223333:role/app)"
        ),
        "{}",
        report.verdict_line
    );
    assert!(
        report.notes.iter().any(|n| n.starts_with(
            "its public key was downloaded (GetPublicKey, last on 2026-07-01T00:00:00Z"
        )),
        "{:?}",
        report.notes
    );
    // What the key is for unknown (its CreateKey not seen): the same caution.
    let unknown_usage = timeline(std::slice::from_ref(&downloaded));
    assert_eq!(
        preflight(&unknown_usage, as_of, 30).verdict,
        Verdict::Unknown
    );
    // A signing key's downloaded public key only verifies signatures: unused, safe.
    let signing = timeline(&[asymmetric("SIGN_VERIFY"), downloaded.clone()]);
    let report = preflight(&signing, as_of, 30);
    assert_eq!(report.verdict, Verdict::Safe, "{}", report.verdict_line);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    // A GetPublicKey refused (a symmetric key has no public key) downloaded nothing.
    let refused = with(
        downloaded.clone(),
        json!({"errorCode": "UnsupportedOperationException", "errorMessage": "GetPublicKey is not supported for symmetric keys"}),
    );
    let symmetric = timeline(&[asymmetric("ENCRYPT_DECRYPT"), refused]);
    assert_eq!(preflight(&symmetric, as_of, 30).verdict, Verdict::Safe);
    // A key in use is in use; the note still says the public key is out.
    let used = timeline(&[
        asymmetric("ENCRYPT_DECRYPT"),
        downloaded,
        decrypt("2026-11-01T00:00:00Z", "use", APP_ROLE),
    ]);
    let report = preflight(&used, as_of, 30);
    assert_eq!(report.verdict, Verdict::InUse);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
}

/// A key with imported key material has a way to halt its use that can be undone: deleting
/// its key material (reimporting the same material restores it), where deleting the key
/// cannot be. Preflight says so for such a key, and for no other.
#[test]
fn preflight_of_an_imported_key_offers_deleting_its_key_material_instead() {
    let as_of = ts("2026-11-02T00:00:00Z");
    let created =
        |origin: &str| create_key("2026-01-01T00:00:00Z", "create", origin, None, None, None);
    let note = |records: &[serde_json::Value]| {
        preflight(&timeline(records), as_of, 30)
            .notes
            .into_iter()
            .find(|n| n.contains("delete-imported-key-material"))
    };
    let imported = note(&[created("EXTERNAL")]).expect("a note for an imported key");
    assert!(
        imported.starts_with("imported key material (origin EXTERNAL)")
            && imported.contains(&format!("--key-id {KEY} --region us-east-1")),
        "{imported}"
    );
    assert_eq!(note(&[created("AWS_KMS")]), None);
    let deleted = [
        created("EXTERNAL"),
        delete_key("2026-10-01T00:00:00Z", "delete", json!(null)),
    ];
    assert_eq!(note(&deleted), None, "nothing left to halt once deleted");
}

/// Deleting a multi-Region replica is less risky while a related key lives: they share key
/// material, so its ciphertext stays decryptable with them (AWS, "Deleting multi-Region
/// keys"); the last of a family goes like a single-Region key. Preflight says which.
#[test]
fn preflight_of_a_multi_region_key_says_whether_related_keys_can_still_decrypt() {
    let as_of = ts("2026-11-02T00:00:00Z");
    let family = &multi_region_primary()[..2];
    let replica = preflight(&fold_key(MRK_REPLICA, family), as_of, 30);
    assert!(
        replica.notes.iter().any(|n| n.starts_with(
            "multi-Region key with related keys in us-east-1: they share its key material, so its ciphertext stays decryptable with them"
        )),
        "{:?}",
        replica.notes
    );
    // The primary's CreateKey alone: no related key.
    let last = preflight(
        &fold_key(MRK_PRIMARY, &multi_region_primary()[..1]),
        as_of,
        30,
    );
    assert!(
        last.notes
            .iter()
            .any(|n| n.contains("as final as deleting a single-Region key")),
        "{:?}",
        last.notes
    );
}
