//! What a timeline shows of the events it folded: a record the log holds, delivered again
//! late, is taken as folded only where the timeline shows it (or where it only counts);
//! otherwise a database without units of work could lose its page.

mod support;

use keywatch_core::timeline::MAX_PENDING_USE_ENTRIES;
use keywatch_core::{KeyArn, KeyTimeline, KmsEvent};
use proptest::prelude::*;
use serde_json::Value;
use support::*;

const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/batch";

fn fold(records: &[Value]) -> KeyTimeline {
    let key = KeyArn::parse(KEY).expect("test key ARN");
    KeyTimeline::fold(key, events(records).iter())
}

fn event(record: Value) -> KmsEvent {
    events(&[record]).remove(0)
}

/// Minute `m` after the schedule of [`scheduled_with_rejections`].
fn at(m: u32) -> String {
    format!("2026-11-01T{:02}:{:02}:00Z", m / 60, m % 60)
}

/// KEY created, scheduled at minute 0, rejected once a minute at `minutes` for APP_ROLE.
fn scheduled_with_rejections(minutes: std::ops::Range<u32>) -> Vec<Value> {
    let mut records = vec![
        aws_kms_key("2026-10-01T00:00:00Z", "create"),
        schedule(&at(0), "sched", 7, None),
    ];
    records.extend(minutes.map(|m| rejected("Decrypt", &at(m), &format!("use-{m}"), APP_ROLE)));
    records
}

proptest! {
    /// Every event of a history shows as folded in the timeline of the whole history: a
    /// plain redelivery rebuilds nothing.
    #[test]
    fn a_timeline_shows_every_event_it_folded(records in history()) {
        let timeline = fold(&records);
        let evidence = timeline.folded_evidence();
        for e in events(&records) {
            prop_assert!(evidence.shows_folded(&e), "{e:?}");
        }
    }

    /// Likewise where keywatch never saw the schedule, and rejections alone prove the key
    /// pending deletion.
    #[test]
    fn a_timeline_without_its_schedule_shows_every_event_it_folded(records in history()) {
        let records: Vec<Value> = records
            .into_iter()
            .filter(|r| r["eventName"] != "ScheduleKeyDeletion")
            .collect();
        let timeline = fold(&records);
        let evidence = timeline.folded_evidence();
        for e in events(&records) {
            prop_assert!(evidence.shows_folded(&e), "{e:?}");
        }
    }
}

#[test]
fn a_use_while_pending_deletion_not_listed_is_not_shown_as_folded() {
    let timeline = fold(&scheduled_with_rejections(1..30));
    let evidence = timeline.folded_evidence();
    assert!(evidence.shows_folded(&event(rejected("Decrypt", &at(10), "use-10", APP_ROLE))));
    // Another use of the same principal and minute: its page may be raised, but the entries
    // list every use while pending deletion, and this one is not among them.
    assert!(!evidence.shows_folded(&event(rejected("Decrypt", &at(10), "late", APP_ROLE))));
    assert!(!evidence.shows_folded(&event(rejected("Decrypt", &at(10), "late", OTHER_ROLE))));
    // A call that still succeeded during the waiting period is a page too.
    assert!(!evidence.shows_folded(&event(decrypt(&at(10), "late", OTHER_ROLE))));
    // A lifecycle record not listed.
    assert!(!evidence.shows_folded(&event(cancel(&at(20), "cancel"))));
    assert!(evidence.shows_folded(&event(schedule(&at(0), "sched", 7, None))));
}

#[test]
fn a_use_that_only_counts_shows_as_folded_where_its_roll_up_spans_its_time() {
    let mut records = vec![
        aws_kms_key("2026-10-01T00:00:00Z", "create"),
        decrypt("2026-10-10T00:00:00Z", "early", APP_ROLE),
        decrypt("2026-10-30T00:00:00Z", "late", APP_ROLE),
    ];
    records.extend(scheduled_with_rejections(1..3).into_iter().skip(1));
    let timeline = fold(&records);
    let evidence = timeline.folded_evidence();
    // Uses are counted, not listed: one within its principal's counted times for its
    // operation cannot be told from those counted, and is taken as folded.
    let on_the_20th = "2026-10-20T00:00:00Z";
    assert!(evidence.shows_folded(&event(decrypt(on_the_20th, "x", APP_ROLE))));
    // Refused by policy during the waiting period: not a page, and within the span.
    assert!(evidence.shows_folded(&event(failed(
        "Decrypt",
        &at(2),
        "denied",
        "AccessDeniedException"
    ))));
    // A principal, or an operation, never counted; a time before the first counted.
    assert!(!evidence.shows_folded(&event(decrypt(on_the_20th, "x", OTHER_ROLE))));
    let mut encrypt = decrypt(on_the_20th, "x", APP_ROLE);
    encrypt["eventName"] = "Encrypt".into();
    assert!(!evidence.shows_folded(&event(encrypt)));
    assert!(!evidence.shows_folded(&event(decrypt("2026-10-05T00:00:00Z", "x", APP_ROLE))));
    // After a cancellation the key is in use again: a use then only counts.
    records.push(cancel(&at(5), "cancel"));
    records.push(decrypt(&at(40), "after", APP_ROLE));
    let timeline = fold(&records);
    let evidence = timeline.folded_evidence();
    assert!(evidence.shows_folded(&event(decrypt(&at(30), "x", APP_ROLE))));
    assert!(!evidence.shows_folded(&event(decrypt(&at(4), "during", APP_ROLE))));
}

#[test]
fn once_the_entries_are_full_a_use_shows_as_folded_by_its_principals_minute() {
    let minutes = MAX_PENDING_USE_ENTRIES as u32 + 20;
    let timeline = fold(&scheduled_with_rejections(1..minutes + 1));
    assert!(timeline.pending_use_entries_dropped > 0);
    let evidence = timeline.folded_evidence();
    let last = minutes;
    // Its principal's minute counts a use: its page was raised.
    assert!(evidence.shows_folded(&event(rejected("Decrypt", &at(last), "use-x", APP_ROLE))));
    // No use of this principal in that minute: its page may be missing.
    assert!(!evidence.shows_folded(&event(rejected("Decrypt", &at(last), "use-y", OTHER_ROLE))));
    assert!(!evidence.shows_folded(&event(rejected(
        "Decrypt",
        &at(minutes + 5),
        "use-z",
        APP_ROLE
    ))));
}

#[test]
fn a_cross_account_copy_shows_as_folded_by_its_other_copy() {
    let mut records = scheduled_with_rejections(1..3);
    let (caller, owner) = cross_account_decrypt(
        &at(10),
        "shared-1",
        Some(&format!("{KEY} is pending deletion.")),
    );
    records.push(caller);
    let timeline = fold(&records);
    let evidence = timeline.folded_evidence();
    assert!(evidence.shows_folded(&event(owner)));
    let (_, elsewhere) = cross_account_decrypt(
        &at(11),
        "shared-2",
        Some(&format!("{KEY} is pending deletion.")),
    );
    assert!(!evidence.shows_folded(&event(elsewhere)));
}

#[test]
fn a_change_of_the_keys_key_store_shows_as_folded_when_listed() {
    let mut records = vec![hsm_key(), schedule(&at(0), "sched", 7, None)];
    records.push(key_store_call(
        "DisconnectCustomKeyStore",
        &at(10),
        "disconnect",
        "cks-hsm",
    ));
    let timeline = fold(&records);
    let evidence = timeline.folded_evidence();
    assert!(evidence.shows_folded(&event(records[2].clone())));
    let reconnect = key_store_call("ConnectCustomKeyStore", &at(5), "connect", "cks-hsm");
    assert!(!evidence.shows_folded(&event(reconnect)));
    // Another store's change does not concern the key.
    let other = key_store_call("DisconnectCustomKeyStore", &at(5), "other", "cks-other");
    assert!(evidence.shows_folded(&event(other)));
}

#[test]
fn a_change_of_the_key_store_older_than_those_listed_shows_as_folded() {
    use keywatch_core::timeline::MAX_KEY_STORE_ENTRIES;
    let mut records = vec![hsm_key()];
    let changes = MAX_KEY_STORE_ENTRIES as u32 + 5;
    records.extend((0..changes).map(|m| {
        let name = if m % 2 == 0 {
            "DisconnectCustomKeyStore"
        } else {
            "ConnectCustomKeyStore"
        };
        key_store_call(name, &at(10 * m + 10), &format!("change-{m}"), "cks-hsm")
    }));
    let timeline = fold(&records);
    assert!(timeline.key_store_entries_dropped > 0);
    let evidence = timeline.folded_evidence();
    // Dropped from the entries, and older than every change listed: taken as folded.
    assert!(evidence.shows_folded(&event(records[1].clone())));
    // A change among those listed, by time, that is not listed: not folded.
    let unlisted = key_store_call(
        "DisconnectCustomKeyStore",
        &at(10 * changes),
        "unlisted",
        "cks-hsm",
    );
    assert!(!evidence.shows_folded(&event(unlisted)));
}

/// A key whose schedule keywatch never saw, proved pending deletion by rejections: a use
/// that succeeded before the first rejection was not one while pending deletion.
#[test]
fn a_use_before_a_rejection_proved_the_key_pending_deletion_only_counts() {
    let records = [
        decrypt(&at(1), "before", APP_ROLE),
        rejected("Decrypt", &at(10), "rejected", APP_ROLE),
        decrypt(&at(11), "after", APP_ROLE),
    ];
    let timeline = fold(&records);
    let evidence = timeline.folded_evidence();
    assert!(evidence.shows_folded(&event(decrypt(&at(2), "unlisted-before", APP_ROLE))));
    assert!(!evidence.shows_folded(&event(decrypt(&at(10), "unlisted-after", APP_ROLE))));
}
