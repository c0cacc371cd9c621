//! The projector over the SQLite store: any order, duplication and batching of the same
//! records gives the identical timeline and raises the identical alerts, each once.

mod common;
#[path = "../../keywatch-core/tests/support/mod.rs"]
mod support;

use common::{as_of, normalised, Flaky, Wait};
use keywatch_core::{AlertConfig, KeyArn, KeyTimeline};
use keywatch_database::{current_timeline, Database, NormalisedRecord, Projector};
use keywatch_sqlite::SqliteDatabase;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

/// `records` cut into batches at the positions `cuts` (any order; past the end is the end).
fn cut_into_batches(records: &[Value], cuts: Vec<usize>) -> Vec<Vec<Value>> {
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(records.len())).collect();
    cuts.sort_unstable();
    let mut batches = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([records.len()]) {
        batches.push(records[start..c].to_vec());
        start = c;
    }
    batches
}

/// KEY created (`AWS_KMS` origin, no custom key store) at `at`, eventID `create`.
fn created(at: &str) -> Value {
    create_key(at, "create", "AWS_KMS", None, None, None)
}

/// KEY's timeline as stored.
fn key_timeline(database: &impl Database) -> KeyTimeline {
    let key = KeyArn::parse(KEY).expect("key");
    database
        .load_timeline(&key)
        .wait()
        .expect("load")
        .expect("timeline stored")
}

/// Runs batches through a fresh in-memory projector (and a sweep when `sweep`); returns
/// `key`'s final timeline and every alert id raised, sorted.
fn project_key(batches: &[Vec<Value>], key: &str, sweep: bool) -> (KeyTimeline, Vec<String>) {
    let store = SqliteDatabase::in_memory().expect("in-memory store");
    let mut p = Projector::new(store, AlertConfig::default());
    let mut raised = Vec::new();
    for b in batches {
        let outcome = p
            .process(&normalised(b), as_of())
            .wait()
            .expect("projection");
        raised.extend(outcome.alerts.into_iter().map(|a| a.alert_id));
    }
    if sweep {
        raised.extend(
            p.sweep(as_of())
                .wait()
                .expect("sweep")
                .into_iter()
                .map(|a| a.alert_id),
        );
    }
    let key = KeyArn::parse(key).expect("key");
    let t = p
        .database()
        .load_timeline(&key)
        .wait()
        .expect("load")
        .expect("timeline stored");
    (t, raised)
}

/// KEY's timeline (as JSON) and every alert id raised, failing if any id is raised twice.
fn project(batches: &[Vec<Value>]) -> (Value, Vec<String>) {
    let (t, raised) = project_key(batches, KEY, true);
    (serde_json::to_value(t).expect("timeline JSON"), raised)
}

/// Whether a CancelKeyDeletion, a key store record or a DeleteKey arrives in a later batch
/// than a record it precedes.
fn has_late_context(batches: &[Vec<Value>]) -> bool {
    // CloudTrail records say `eventTime`; KMS's own EventBridge events ("KMS CMK Deletion")
    // say `time`.
    let time = |r: &Value| {
        r["eventTime"]
            .as_str()
            .or_else(|| r["time"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    batches.iter().enumerate().any(|(i, b)| {
        b.iter()
            .filter(|r| {
                matches!(
                    r["eventName"].as_str(),
                    Some(
                        "CancelKeyDeletion"
                            | "ConnectCustomKeyStore"
                            | "DisconnectCustomKeyStore"
                            | "DeleteKey"
                    )
                )
            })
            .any(|late| {
                batches[..i]
                    .iter()
                    .flatten()
                    .any(|earlier| time(earlier) >= time(late))
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn any_batching_gives_the_same_timeline_and_alerts(
        (records, shuffled, dups, cuts) in history().prop_flat_map(|h| {
            let n = h.len();
            (Just(h.clone()), Just(h).prop_shuffle(), prop::collection::vec(0..n, 0..6), prop::collection::vec(0..n + 6, 0..4))
        })
    ) {
        let (reference, mut reference_alerts) = project(std::slice::from_ref(&records));
        let mut delivered = shuffled;
        for i in dups {
            delivered.push(records[i].clone());
        }
        let batches = cut_into_batches(&delivered, cuts);
        let (timeline, mut alerts) = project(&batches);
        prop_assert_eq!(reference, timeline);
        let unique: BTreeSet<&String> = alerts.iter().collect();
        prop_assert_eq!(unique.len(), alerts.len(), "an alert was raised twice");
        reference_alerts.sort();
        alerts.sort();
        // Every alert of the reference is raised, once. Delivered in one batch, in any order
        // and with duplicates, exactly those are raised.
        prop_assert!(reference_alerts.iter().all(|a| alerts.contains(a)));
        let (_, mut one_batch) = project(std::slice::from_ref(&delivered));
        one_batch.sort();
        prop_assert_eq!(&reference_alerts, &one_batch);
        // Split across batches, an alert raised on what was known when its record arrived
        // stands when a later batch brings a record that precedes it and changes the picture
        // (a reconnect before a schedule, a cancel before a rejection): a page cannot be
        // unsent. Only alerts of those kinds may be extra.
        let extra: Vec<&String> = alerts.iter().filter(|a| !reference_alerts.contains(a)).collect();
        prop_assert!(
            extra.is_empty() || has_late_context(&batches),
            "extra alerts without a late record: {:?}", extra
        );
    }
}

#[test]
fn replaying_the_same_records_into_the_same_store_raises_nothing_new() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("keywatch.db");
    let records = vec![
        created("2026-01-01T00:00:00Z"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
    ];
    let run = || {
        let mut p = Projector::new(
            SqliteDatabase::open(&db).expect("open"),
            AlertConfig::default(),
        );
        let out = p
            .process(&normalised(&records), as_of())
            .wait()
            .expect("projection");
        (out.alerts.len(), out.new_records, out.duplicate_records)
    };
    assert_eq!(run(), (2, 3, 0));
    assert_eq!(run(), (0, 0, 3));
}

#[test]
fn a_late_record_rebuilds_the_timeline_from_the_event_log() {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let late = schedule("2026-11-01T00:00:00Z", "sched", 7, None);
    let first = vec![
        created("2026-01-01T00:00:00Z"),
        decrypt("2026-11-01T00:00:30Z", "use-1", APP_ROLE),
    ];
    let out = p
        .process(&normalised(&first), as_of())
        .wait()
        .expect("first batch");
    assert!(out.alerts.is_empty());
    let out = p
        .process(&normalised(&[late]), as_of())
        .wait()
        .expect("late batch");
    assert_eq!(out.rebuilds, 1);
    let mut kinds: Vec<_> = out.alerts.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["deletion_scheduled", "pending_deletion_key_used"]);
}

/// Projects `batches` in turn; the key's timeline and the rebuilds of each batch.
fn rebuilds_of(batches: &[Vec<Value>]) -> (KeyTimeline, Vec<usize>) {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let rebuilds = batches
        .iter()
        .map(|b| {
            p.process(&normalised(b), as_of())
                .wait()
                .expect("projection")
                .rebuilds
        })
        .collect();
    let t = key_timeline(p.database());
    (t, rebuilds)
}

#[test]
fn late_uses_of_a_key_in_use_fold_in_place_and_equal_the_rebuilt_timeline() {
    let create = created("2026-11-01T00:00:00Z");
    // A busy key's calls within one second, delivered out of eventID order, some denied,
    // some naming what they protect.
    let mut uses: Vec<Value> = (0..12)
        .map(|i| {
            let id = format!("use-{:02}", 11 - i);
            if i % 4 == 3 {
                failed(
                    "Decrypt",
                    "2026-11-20T10:00:00Z",
                    &id,
                    "AccessDeniedException",
                )
            } else {
                let mut u = decrypt("2026-11-20T10:00:00Z", &id, APP_ROLE);
                u["requestParameters"]["encryptionContext"] =
                    serde_json::json!({"aws:s3:arn": format!("arn:aws:s3:::orders/{i}")});
                u
            }
        })
        .collect();
    uses.push(decrypt("2026-11-19T09:00:00Z", "use-earlier", APP_ROLE));
    let batches: Vec<Vec<Value>> = std::iter::once(vec![create.clone()])
        .chain(uses.chunks(3).map(<[Value]>::to_vec))
        .collect();
    let (folded, rebuilds) = rebuilds_of(&batches);
    assert_eq!(
        rebuilds,
        vec![0; batches.len()],
        "no batch read the log again"
    );
    let mut all = vec![create];
    all.extend(uses);
    let (reference, _) = rebuilds_of(&[all]);
    assert_eq!(folded, reference);
    assert_eq!(folded.event_count, 14);
}

/// Minute `m` of 1 November 2026, as CloudTrail writes times.
fn minute(m: u32) -> String {
    format!("2026-11-01T{:02}:{:02}:00Z", m / 60, m % 60)
}

/// Uses of KEY, one a minute in `minutes`, ids `use-<minute>`.
fn uses_at(minutes: std::ops::Range<u32>) -> Vec<Value> {
    minutes
        .map(|m| decrypt(&minute(m), &format!("use-{m}"), APP_ROLE))
        .collect()
}

/// KEY's timeline as stored after projecting `batches` over `database` (snapshots every ten
/// events), without its snapshots, and for each batch: its rebuilds, those from a snapshot,
/// and the records the log passed to them. Also every alert id raised, sorted.
fn with_snapshots<S: Database>(
    database: S,
    batches: &[Vec<Value>],
) -> (KeyTimeline, Vec<(usize, usize, usize)>, Vec<String>) {
    use std::sync::atomic::Ordering;
    let mut p = Projector::new(Flaky::over(database), AlertConfig::default()).snapshot_every(10);
    let mut per_batch = Vec::new();
    let mut raised = Vec::new();
    let mut referred = BTreeSet::new();
    for b in batches {
        let before = p.database().records_read.load(Ordering::Relaxed);
        let out = p
            .process(&normalised(b), as_of())
            .wait()
            .expect("projection");
        let read = p.database().records_read.load(Ordering::Relaxed) - before;
        per_batch.push((out.rebuilds, out.rebuilds_from_snapshots, read));
        raised.extend(out.alerts.into_iter().map(|a| a.alert_id));
        referred.extend(
            key_timeline(p.database())
                .snapshots
                .into_iter()
                .map(|s| s.id),
        );
    }
    let mut t = key_timeline(p.database());
    // The snapshots the timeline no longer refers to are deleted; those it does are kept.
    let key = KeyArn::parse(KEY).expect("key");
    for id in &referred {
        let kept = p.database().load_snapshot(&key, id).wait().expect("read");
        let current = t.snapshots.iter().any(|s| &s.id == id);
        assert_eq!(kept.is_some(), current, "snapshot {id}");
    }
    t.snapshots.clear();
    raised.sort();
    (t, per_batch, raised)
}

/// A key used every minute for hours, and lifecycle records that come late: a rebuild takes
/// snapshots as it folds the stream, and the next one starts from the newest snapshot
/// before the late record, reading only the records after it. A late use folded in place,
/// and any record of the batch as early as a snapshot, drop it: it lacks them.
fn a_rebuild_from_a_snapshot_folds_what_the_whole_stream_folds(database: impl Database) {
    let disable = call("DisableKey", &minute(150), "disable", iam_user(ADMIN));
    let enable = call("EnableKey", &minute(270), "enable", iam_user(ADMIN));
    let disable_again = call("DisableKey", &minute(360), "disable-again", iam_user(ADMIN));
    let mut first = vec![created(&minute(0))];
    first.extend(uses_at(1..301));
    let batches = vec![
        first,
        // Late: the whole stream is read, snapshots taken.
        vec![disable],
        uses_at(301..401),
        // Late, after the newest snapshot (through an hour before the stream's end).
        vec![enable],
        // A late use after the last lifecycle change: folded in place, and older than the
        // newest snapshot, which it drops.
        vec![decrypt(&minute(300), "use-late", APP_ROLE)],
        // Late, after that snapshot's time: had it been kept, the rebuild would lack the use.
        vec![disable_again],
    ];
    let (timeline, per_batch, raised) = with_snapshots(database, &batches);
    let all: Vec<Value> = batches.concat();
    let (reference, _, reference_raised) =
        with_snapshots(SqliteDatabase::in_memory().expect("store"), &[all]);
    assert_eq!(timeline, reference);
    assert_eq!(raised, reference_raised);
    let rebuilds: Vec<(usize, usize)> = per_batch.iter().map(|(r, s, _)| (*r, *s)).collect();
    assert_eq!(
        rebuilds,
        [(0, 0), (1, 0), (0, 0), (1, 1), (0, 0), (1, 1)],
        "rebuilds, and of them from a snapshot"
    );
    let read: Vec<usize> = per_batch.iter().map(|(_, _, read)| *read).collect();
    // The first rebuild reads all 302 records; the one from a snapshot reads those of the
    // hour before the stream's end and after.
    assert_eq!(read[1], 302, "{read:?}");
    assert!((1..200).contains(&read[3]), "{read:?}");
    assert!((1..200).contains(&read[5]), "{read:?}");
}

/// Without units of work (DynamoDB), a batch can append a late record and fail before saving
/// the timeline; its retry finds the record in the log and folds it no more. The snapshot
/// through its time, which lacks it, must then go, so that the next rebuild reads the stream
/// from before it.
#[test]
fn a_late_record_a_failed_batch_left_in_the_log_makes_the_snapshots_after_it_go() {
    let mut first = vec![created(&minute(0))];
    first.extend(uses_at(1..301));
    let late_disable = vec![call("DisableKey", &minute(150), "disable", iam_user(ADMIN))];
    let late_enable = vec![call("EnableKey", &minute(200), "enable", iam_user(ADMIN))];
    let later_disable = vec![call(
        "DisableKey",
        &minute(280),
        "disable-2",
        iam_user(ADMIN),
    )];
    let mut database = Flaky::over(SqliteDatabase::in_memory().expect("store"));
    database.atomic = false;
    let mut p = Projector::new(database, AlertConfig::default()).snapshot_every(10);
    for batch in [&first, &late_disable] {
        p.process(&normalised(batch), as_of())
            .wait()
            .expect("projection");
    }
    let through = key_timeline(p.database()).snapshots[0].through;
    assert!(
        through >= ts(&minute(200)),
        "a snapshot after the enable: {through}"
    );
    let mut database = p.into_database();
    database.fail_saves = true;
    let mut p = Projector::new(database, AlertConfig::default()).snapshot_every(10);
    p.process(&normalised(&late_enable), as_of())
        .wait()
        .expect_err("the save fails after the append");
    // Another projector (the batch delivered again after a restart).
    let mut database = p.into_database();
    database.fail_saves = false;
    let mut p = Projector::new(database, AlertConfig::default()).snapshot_every(10);
    for batch in [&late_enable, &later_disable] {
        p.process(&normalised(batch), as_of())
            .wait()
            .expect("projection");
    }
    let mut timeline = key_timeline(p.database());
    timeline.snapshots.clear();
    let all = [first, late_disable, late_enable, later_disable].concat();
    let (reference, _, _) = project_taking_snapshots(&[all], usize::MAX);
    assert_eq!(timeline, reference);
}

/// KEY's timeline (without its snapshots) and the alert ids raised, sorted, projecting
/// `batches` with a snapshot taken every `snapshot_every` events of a rebuild.
fn project_taking_snapshots(
    batches: &[Vec<Value>],
    snapshot_every: usize,
) -> (KeyTimeline, Vec<String>, usize) {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    )
    .snapshot_every(snapshot_every);
    let mut raised = Vec::new();
    let mut from_snapshots = 0;
    for b in batches {
        let out = p
            .process(&normalised(b), as_of())
            .wait()
            .expect("projection");
        from_snapshots += out.rebuilds_from_snapshots;
        raised.extend(out.alerts.into_iter().map(|a| a.alert_id));
    }
    let mut t = key_timeline(p.database());
    t.snapshots.clear();
    raised.sort();
    (t, raised, from_snapshots)
}

/// A key used for hours by two roles, disabled, enabled, scheduled for deletion and
/// cancelled on the way, delivered mostly in time order: each record comes as late as its
/// delay (in minutes; most have none).
fn delivered_mostly_in_order() -> impl Strategy<Value = Vec<Value>> {
    let uses = prop::collection::vec(
        (
            1u32..600,
            any::<bool>(),
            prop_oneof![9 => Just(0u32), 1 => 1u32..60],
        ),
        20..80,
    );
    let lifecycle = prop::collection::vec((1u32..600, 0u8..4, 5u32..90), 4..12);
    (uses, lifecycle).prop_map(|(uses, lifecycle)| {
        let mut records: Vec<(u32, Value)> = vec![(0, created(&minute(0)))];
        for (i, (m, admin_role, delay)) in uses.into_iter().enumerate() {
            let role = if admin_role { ADMIN_ROLE } else { APP_ROLE };
            records.push((m + delay, decrypt(&minute(m), &format!("use-{i}"), role)));
        }
        for (i, (m, kind, delay)) in lifecycle.into_iter().enumerate() {
            let (at, id) = (minute(m), format!("life-{i}"));
            let record = match kind {
                0 => call("DisableKey", &at, &id, iam_user(ADMIN)),
                1 => call("EnableKey", &at, &id, iam_user(ADMIN)),
                2 => schedule(&at, &id, 7, None),
                _ => cancel(&at, &id),
            };
            records.push((m + delay, record));
        }
        records.sort_by_key(|(delivered, _)| *delivered);
        records.into_iter().map(|(_, r)| r).collect()
    })
}

/// `t` without what counts uses that only count. A late one of those stored by a failed
/// batch, within the times its principal's roll-up for its operation already spans, cannot
/// be told from those counted: on retry it is taken as folded, and its count is missing
/// until a rebuild (a documented limit). Lifecycle, uses while pending deletion and what
/// pages on them are exact.
fn without_use_counts(mut t: KeyTimeline) -> KeyTimeline {
    t.event_count = 0;
    for s in &mut t.schedules {
        s.failed_attempts_during_window = 0;
        s.last_use_before = None;
        s.used_in_prior_30_days = false;
    }
    let before = t
        .schedules
        .iter_mut()
        .flat_map(|s| s.usage_before.iter_mut());
    for u in t.usage.iter_mut().chain(before) {
        (u.successes, u.failures, u.last_used) = (0, 0, None);
    }
    t
}

/// `delivered` cut into batches of `sizes`, taken in turn (again from the first as needed).
fn cut_by_sizes(delivered: &[Value], sizes: &[usize]) -> Vec<Vec<Value>> {
    let mut batches = Vec::new();
    let mut rest = delivered;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, after) = rest.split_at((*size).min(rest.len()));
        batches.push(batch.to_vec());
        rest = after;
    }
    batches
}

/// A role other than [`APP_ROLE`].
const ADMIN_ROLE: &str = "arn:aws:iam::111122223333:role/admin";

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Rebuilds that start from snapshots (taken every three events) give the timelines and
    /// the alerts of rebuilds that read the whole stream, whatever the batching.
    #[test]
    fn rebuilds_from_snapshots_fold_and_page_as_rebuilds_of_the_whole_stream(
        (delivered, sizes) in (delivered_mostly_in_order(), prop::collection::vec(1usize..15, 1..20))
    ) {
        let batches = cut_by_sizes(&delivered, &sizes);
        let (whole, whole_alerts, none) = project_taking_snapshots(&batches, usize::MAX);
        prop_assert_eq!(none, 0);
        let (snapshots, alerts, _) = project_taking_snapshots(&batches, 3);
        prop_assert_eq!(whole, snapshots);
        prop_assert_eq!(whole_alerts, alerts);
    }

    /// Without units of work (DynamoDB's case), any one batch failing after its append (its
    /// pages not recorded, or its timeline not saved) and delivered again to a new projector
    /// leaves the pages and the timeline of a run where nothing failed, but for the counts of
    /// uses ([`without_use_counts`]).
    #[test]
    fn a_batch_failing_past_its_append_and_delivered_again_loses_nothing(
        (delivered, sizes) in (delivered_mostly_in_order(), prop::collection::vec(1usize..15, 1..20)),
        failing in any::<prop::sample::Index>(),
        saves_fail in any::<bool>(),
    ) {
        let batches = cut_by_sizes(&delivered, &sizes);
        let (reference, _, _) = project_taking_snapshots(&batches, usize::MAX);
        let outbox = |p: &Projector<Flaky<SqliteDatabase>>| -> Vec<String> {
            let mut ids: Vec<String> = p
                .unsent(usize::MAX)
                .wait()
                .expect("outbox")
                .into_iter()
                .map(|a| a.alert_id)
                .collect();
            ids.sort();
            ids
        };
        let failing = failing.index(batches.len());
        let mut store = Flaky::over(SqliteDatabase::in_memory().expect("store"));
        store.atomic = false;
        let mut plain = Projector::new(
            Flaky { atomic: false, ..Flaky::over(SqliteDatabase::in_memory().expect("store")) },
            AlertConfig::default(),
        );
        let mut p = Projector::new(store, AlertConfig::default());
        for (i, b) in batches.iter().enumerate() {
            plain.process(&normalised(b), as_of()).wait().expect("projection");
            if i == failing {
                let mut store = p.into_database();
                if saves_fail {
                    store.fail_saves = true;
                } else {
                    store.failed_alert_writes = 1;
                }
                let mut failed = Projector::new(store, AlertConfig::default());
                // Nothing fails where the batch records no page.
                let _ = failed.process(&normalised(b), as_of()).wait();
                let mut store = failed.into_database();
                (store.fail_saves, store.failed_alert_writes) = (false, 0);
                p = Projector::new(store, AlertConfig::default());
            }
            p.process(&normalised(b), as_of()).wait().expect("projection");
        }
        let mut timeline = key_timeline(p.database());
        timeline.snapshots.clear();
        prop_assert_eq!(without_use_counts(timeline), without_use_counts(reference));
        prop_assert_eq!(outbox(&p), outbox(&plain));
    }
}

#[test]
fn a_rebuild_from_a_snapshot_folds_what_the_whole_stream_folds_on_sqlite() {
    a_rebuild_from_a_snapshot_folds_what_the_whole_stream_folds(
        SqliteDatabase::in_memory().expect("store"),
    );
}

#[test]
fn a_rebuild_from_a_snapshot_folds_what_the_whole_stream_folds_in_memory() {
    a_rebuild_from_a_snapshot_folds_what_the_whole_stream_folds(
        keywatch_database::MemoryDatabase::new(),
    );
}

/// Like [`rebuilds_of`], with the ids of the alerts raised, sorted.
fn rebuilds_and_alerts_of(batches: &[Vec<Value>]) -> (KeyTimeline, Vec<usize>, Vec<String>) {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let mut alerts = Vec::new();
    let rebuilds = batches
        .iter()
        .map(|b| {
            let out = p
                .process(&normalised(b), as_of())
                .wait()
                .expect("projection");
            alerts.extend(out.alerts.into_iter().map(|a| a.alert_id));
            out.rebuilds
        })
        .collect();
    alerts.sort();
    let t = key_timeline(p.database());
    (t, rebuilds, alerts)
}

#[test]
fn late_uses_of_a_key_pending_deletion_fold_in_place_and_page_as_the_rebuilt_timeline() {
    let create = created("2026-11-01T00:00:00Z");
    let sched = schedule("2026-11-20T10:00:00Z", "sched", 7, None);
    let roles = [APP_ROLE, "arn:aws:iam::111122223333:role/batch"];
    // Uses over three minutes and two hours, each second its own, delivered out of order:
    // rejected, some still succeeding (eventual consistency), one denied.
    let uses: Vec<Value> = (0..18u32)
        .map(|i| {
            let second = (i * 7919) % 180;
            let hour = if i % 5 == 0 { 11 } else { 10 };
            let time = format!(
                "2026-11-20T{hour}:{:02}:{:02}Z",
                1 + second / 60,
                second % 60
            );
            let id = format!("use-{:02}", 17 - i);
            match i % 6 {
                0 => decrypt(&time, &id, roles[1]),
                5 => failed("Decrypt", &time, &id, "AccessDeniedException"),
                _ => rejected("Decrypt", &time, &id, roles[(i % 2) as usize]),
            }
        })
        .collect();
    // The first rejection (the earliest use) proves nothing new: the schedule is known.
    let batches: Vec<Vec<Value>> = std::iter::once(vec![create.clone(), sched.clone()])
        .chain(uses.chunks(4).map(<[Value]>::to_vec))
        .collect();
    let (folded, rebuilds, alerts) = rebuilds_and_alerts_of(&batches);
    assert_eq!(
        rebuilds,
        vec![0; batches.len()],
        "no batch read the log again"
    );
    let mut all = vec![create, sched];
    all.extend(uses);
    let (reference, _, reference_alerts) = rebuilds_and_alerts_of(&[all]);
    assert_eq!(folded, reference);
    assert_eq!(alerts, reference_alerts);
    assert!(folded.pending_use_buckets.len() > 3);
}

#[test]
fn a_late_schedule_pages_on_uses_the_log_kept_as_events_with_their_details() {
    // Uses of a key in use (the log keeps each as its event, not its record), then the
    // ScheduleKeyDeletion that preceded them, late: the rebuilt timeline pages on the
    // successful uses with who, from where and with what, as if all came in order.
    let create = created("2026-11-01T00:00:00Z");
    let uses: Vec<Value> = (0..6u32)
        .map(|i| {
            let time = format!("2026-11-20T10:{:02}:{:02}Z", i * 3, i * 7);
            let id = format!("use-{i}");
            let mut u = if i == 5 {
                failed("Decrypt", &time, &id, "AccessDeniedException")
            } else {
                decrypt(&time, &id, APP_ROLE)
            };
            u["sourceIPAddress"] = serde_json::json!(format!("198.51.100.{i}"));
            u["userAgent"] = serde_json::json!(format!("aws-cli/2.15.{i}"));
            u["requestParameters"]["encryptionContext"] =
                serde_json::json!({"aws:s3:arn": format!("arn:aws:s3:::orders/{i}")});
            if i == 2 {
                u["userIdentity"]["invokedBy"] = serde_json::json!("s3.amazonaws.com");
            }
            u
        })
        .collect();
    let sched = schedule("2026-11-20T09:00:00Z", "sched", 7, None);
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let mut first = vec![create.clone()];
    first.extend(uses.iter().cloned());
    let before = p
        .process(&normalised(&first), as_of())
        .wait()
        .expect("uses");
    assert!(before.alerts.is_empty(), "no page while the key is in use");
    let late = p
        .process(&normalised(std::slice::from_ref(&sched)), as_of())
        .wait();
    let late = late.expect("the late schedule");
    assert_eq!(
        late.rebuilds, 1,
        "the schedule precedes uses: a rebuild from the log"
    );
    let folded = key_timeline(p.database());

    let mut reference = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let mut all = vec![create, sched];
    all.extend(uses);
    let expected = reference
        .process(&normalised(&all), as_of())
        .wait()
        .expect("in order");
    let whole = |alerts: Vec<keywatch_core::Alert>| -> Vec<Value> {
        let mut v: Vec<Value> = alerts
            .iter()
            .filter(|a| a.kind == keywatch_core::AlertKind::PendingDeletionKeyUsed)
            .map(|a| serde_json::to_value(a).expect("alert JSON"))
            .collect();
        v.sort_by_key(|a| a["alert_id"].to_string());
        v
    };
    let pages = whole(late.alerts);
    assert!(!pages.is_empty());
    assert_eq!(pages, whole(expected.alerts));
    assert!(pages.iter().all(|a| a["source_ip"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("198.51.100."))));
    let in_order = key_timeline(reference.database());
    assert_eq!(folded, in_order);
}

#[test]
fn a_late_use_pending_deletion_in_a_second_already_listed_rebuilds() {
    // Within one second eventIDs order the entries: time alone cannot place it.
    let first = vec![
        created("2026-11-01T00:00:00Z"),
        schedule("2026-11-20T10:00:00Z", "sched", 7, None),
        rejected("Decrypt", "2026-11-20T10:05:00Z", "use-b", APP_ROLE),
    ];
    let late = rejected("Decrypt", "2026-11-20T10:05:00Z", "use-a", APP_ROLE);
    let (folded, rebuilds, _) = rebuilds_and_alerts_of(&[first.clone(), vec![late.clone()]]);
    assert_eq!(rebuilds, [0, 1]);
    let mut all = first;
    all.push(late);
    let (reference, _, _) = rebuilds_and_alerts_of(&[all]);
    assert_eq!(folded, reference);
}

/// A use that comes after the schedule it preceded (a schedule's record met long before the
/// uses dated before it: an archive replayed out of time order) folds in place, into the
/// roll-ups and the schedule's picture of the use before it, and gives the rebuilt timeline.
#[test]
fn a_late_use_from_before_a_schedule_folds_in_place_as_the_rebuilt_timeline() {
    let create = created("2026-09-01T00:00:00Z");
    let sched = schedule("2026-11-20T10:00:00Z", "sched", 7, None);
    let cases = [
        // Denied before the schedule: not an attempt during the waiting period.
        failed(
            "Decrypt",
            "2026-11-20T09:59:59Z",
            "denied",
            "AccessDeniedException",
        ),
        // A use before the schedule: not a use while pending deletion; the schedule's last
        // use before it, and a use in the prior 30 days.
        decrypt("2026-11-20T09:00:00Z", "before", APP_ROLE),
        // Over 30 days before: the schedule's last use, not a recent one.
        decrypt("2026-10-01T09:00:00Z", "long-before", APP_ROLE),
    ];
    for late in cases {
        let batches = vec![vec![create.clone(), sched.clone()], vec![late.clone()]];
        let (folded, rebuilds) = rebuilds_of(&batches);
        assert_eq!(rebuilds, [0, 0], "{}", late["eventID"]);
        let (reference, _) = rebuilds_of(&[vec![create.clone(), sched.clone(), late.clone()]]);
        assert_eq!(folded, reference, "{}", late["eventID"]);
        assert!(folded
            .schedules
            .iter()
            .all(|s| s.uses_during_window == 0 && s.failed_attempts_during_window == 0));
        assert_eq!(folded.schedules[0].usage_before, folded.usage);
    }
    // Several, late and out of order among themselves, over several batches.
    let uses: Vec<Value> = (0..6)
        .map(|i| {
            decrypt(
                &format!("2026-11-1{i}T08:00:00Z"),
                &format!("u{i}"),
                APP_ROLE,
            )
        })
        .collect();
    let batches = vec![
        vec![create.clone(), sched.clone()],
        vec![uses[4].clone(), uses[1].clone()],
        vec![
            uses[5].clone(),
            uses[0].clone(),
            uses[3].clone(),
            uses[2].clone(),
        ],
    ];
    let (folded, rebuilds) = rebuilds_of(&batches);
    assert_eq!(rebuilds, [0, 0, 0]);
    let mut in_order = vec![create.clone(), sched.clone()];
    in_order.extend(uses.iter().cloned());
    assert_eq!(folded, rebuilds_of(&[in_order]).0);
    // Once the key has been used while pending deletion, under this schedule: those uses
    // keep their pages' counts, and the late ones still go before the schedule.
    let after = [
        rejected("Decrypt", "2026-11-21T00:00:00Z", "after-1", APP_ROLE),
        decrypt("2026-11-22T00:00:00Z", "after-2", ADMIN),
    ];
    let batches = vec![
        vec![create.clone(), sched.clone(), after[0].clone()],
        vec![uses[3].clone(), after[1].clone(), uses[0].clone()],
    ];
    let (folded, rebuilds) = rebuilds_of(&batches);
    assert_eq!(rebuilds, [0, 0]);
    assert_eq!(folded, rebuilds_of(&[batches.concat()]).0);
    assert_eq!(folded.pending_uses, 2);
    assert_eq!(folded.schedules[0].uses_during_window, 2);
}

/// A late use from before a lifecycle change other than the key's only schedule, or once the
/// key has been used while pending deletion, still rebuilds the timeline from the log.
#[test]
fn a_late_use_from_before_another_lifecycle_change_still_rebuilds() {
    let create = created("2026-11-01T00:00:00Z");
    let sched = schedule("2026-11-20T10:00:00Z", "sched", 7, None);
    let late = decrypt("2026-11-20T09:00:00Z", "before", APP_ROLE);
    let cases = [
        // Before the key's creation.
        vec![
            vec![sched.clone(), created("2026-11-20T09:30:00Z")],
            vec![late.clone()],
        ],
        // After a rejection that proved the key pending deletion before its schedule's
        // record: a use while pending deletion.
        vec![
            vec![
                create.clone(),
                rejected("Decrypt", "2026-11-19T00:00:00Z", "proof", APP_ROLE),
                sched.clone(),
            ],
            vec![late.clone()],
        ],
        // Before a second schedule.
        vec![
            vec![
                create.clone(),
                schedule("2026-11-02T10:00:00Z", "first-sched", 7, None),
                cancel("2026-11-03T10:00:00Z", "cancel"),
                sched.clone(),
            ],
            vec![late.clone()],
        ],
    ];
    for batches in cases {
        let (folded, rebuilds) = rebuilds_of(&batches);
        assert_eq!(rebuilds, [0, 1]);
        let (reference, _) = rebuilds_of(&[batches.concat()]);
        assert_eq!(folded, reference);
    }
}

#[test]
fn a_batch_that_fails_half_way_stores_nothing_and_its_retry_loses_nothing() {
    let store = Flaky {
        fail_saves: true,
        ..Flaky::over(SqliteDatabase::in_memory().expect("store"))
    };
    let mut p = Projector::new(store, AlertConfig::default());
    let records = normalised(&[
        created("2026-01-01T00:00:00Z"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
    ]);
    assert!(p.process(&records, as_of()).wait().is_err());
    assert_eq!(p.database().key_count().wait().expect("count"), 0);
    // The records were not kept either: the retry sees them as new and folds them.
    let mut p = Projector::new(Flaky::over(p.into_database().inner), AlertConfig::default());
    let out = p.process(&records, as_of()).wait().expect("retry");
    assert_eq!(out.new_records, 3);
    assert_eq!(out.alerts.len(), 2);
}

#[test]
fn raised_alerts_wait_in_the_outbox_until_marked_sent() {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let out = p
        .process(
            &normalised(&[
                schedule("2026-11-01T00:00:00Z", "sched", 7, None),
                rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
            ]),
            as_of(),
        )
        .wait()
        .expect("batch");
    assert_eq!(out.alerts.len(), 2);
    let unsent: Vec<String> = p
        .unsent(10)
        .wait()
        .expect("outbox")
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(unsent.len(), 2);
    p.mark_sent(&[unsent[0].as_str()], as_of())
        .wait()
        .expect("mark");
    let left: Vec<String> = p
        .unsent(10)
        .wait()
        .expect("outbox")
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(left, [unsent[1].clone()]);
}

/// The alerts table as versions before 4 December 2026 created it.
const ALERTS_BEFORE_KEYED_ROWS: &str = "
CREATE TABLE alerts (
    alert_id  TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    key_arn   TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    sent_at   INTEGER,
    json      NOT NULL
);";

/// A database holding a schedule's alert and a use's (in that order), made by this version,
/// then put back into the layout of alerts before 4 December 2026: the alerts as rows of
/// that table (their JSON as plain TEXT, as the earliest versions wrote it); with an outbox
/// table holding `unsent` (TEXT ids), or, without one, the others marked `sent_at`.
fn database_with_old_alerts(path: &std::path::Path, outbox: bool) -> Vec<keywatch_core::Alert> {
    let mut p = Projector::new(
        SqliteDatabase::open(path).expect("store"),
        AlertConfig::default(),
    );
    let out = p
        .process(
            &normalised(&[
                schedule("2026-11-01T00:00:00Z", "sched", 7, None),
                rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
            ]),
            as_of(),
        )
        .wait()
        .expect("batch");
    assert_eq!(out.alerts.len(), 2);
    drop(p);
    let old = rusqlite::Connection::open(path).expect("open");
    old.execute_batch(&format!(
        "DROP TABLE alerts; DELETE FROM outbox; {ALERTS_BEFORE_KEYED_ROWS}"
    ))
    .expect("old layout");
    for (i, a) in out.alerts.iter().enumerate() {
        let sent = (i == 0).then_some(1);
        old.execute(
            "INSERT INTO alerts VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            rusqlite::params![
                a.alert_id,
                a.kind.as_str(),
                a.severity.as_str(),
                a.key_arn.as_str(),
                if outbox { None } else { sent },
                serde_json::to_string(a).expect("json")
            ],
        )
        .expect("old alert");
        if outbox && sent.is_none() {
            old.execute("INSERT INTO outbox VALUES (?1)", [&a.alert_id])
                .expect("old outbox");
        }
    }
    if !outbox {
        old.execute_batch(
            "DROP TABLE outbox;
             CREATE INDEX alerts_unsent ON alerts (raised_at) WHERE sent_at IS NULL;",
        )
        .expect("no outbox");
    }
    out.alerts
}

fn alert_ids(alerts: &[keywatch_core::Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.alert_id.clone()).collect()
}

/// A store written before the outbox had a table of its own (unsent alerts were those with
/// no `sent_at`) keeps its unsent alerts when opened by this version.
#[test]
fn a_store_from_before_the_outbox_table_keeps_its_unsent_alerts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let raised = database_with_old_alerts(&path, false);
    let p = Projector::new(
        SqliteDatabase::open(&path).expect("reopen"),
        AlertConfig::default(),
    );
    assert_eq!(
        alert_ids(&p.unsent(10).wait().expect("outbox")),
        alert_ids(&raised[1..])
    );
}

/// A database whose alerts were kept with their id as text and their kind, severity and key
/// in columns of their own (before 4 December 2026) reads them as before once opened: by
/// key, the unsent ones, a delivery marking one sent, and a redelivery raising none again.
#[test]
fn alerts_kept_before_keyed_rows_read_and_deliver_as_before() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let raised = database_with_old_alerts(&path, true);
    let db = SqliteDatabase::open(&path).expect("reopen");
    let key = KeyArn::parse(KEY).expect("key");
    let for_key = db.alerts_for_key(&key).expect("by key");
    assert_eq!(
        serde_json::to_value(&for_key).expect("json"),
        serde_json::to_value(&raised).expect("json")
    );
    let mut p = Projector::new(db, AlertConfig::default());
    assert_eq!(
        alert_ids(&p.unsent(10).wait().expect("outbox")),
        alert_ids(&raised[1..])
    );
    let again = p
        .process(
            &normalised(&[
                schedule("2026-11-01T00:00:00Z", "sched", 7, None),
                rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
                rejected("Decrypt", "2026-11-01T11:00:00Z", "use-2", APP_ROLE),
            ]),
            as_of(),
        )
        .wait()
        .expect("redelivery and a new use");
    assert_eq!(again.alerts.len(), 1, "only the new use pages");
    p.mark_sent(&[raised[1].alert_id.as_str()], as_of())
        .wait()
        .expect("mark");
    assert_eq!(
        alert_ids(&p.unsent(10).wait().expect("outbox")),
        alert_ids(&again.alerts)
    );
    let tables: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row(
            "SELECT count(*) FROM pragma_table_info('alerts') WHERE name = 'severity'",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    assert_eq!(tables, 0, "moved to the keyed rows");
}

fn three_records() -> Vec<NormalisedRecord> {
    normalised(&[
        created("2026-01-01T00:00:00Z"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
    ])
}

#[test]
fn without_atomic_batches_records_kept_by_a_failed_batch_are_still_folded_on_retry() {
    let store = Flaky {
        fail_saves: true,
        atomic: false,
        ..Flaky::over(SqliteDatabase::in_memory().expect("store"))
    };
    let mut p = Projector::new(store, AlertConfig::default());
    assert!(p.process(&three_records(), as_of()).wait().is_err());
    let mut store = p.into_database();
    store.fail_saves = false;
    let mut p = Projector::new(store, AlertConfig::default());
    let out = p.process(&three_records(), as_of()).wait().expect("retry");
    // They follow the timeline the failed batch did not save, so they are not looked up in
    // the log (DynamoDB's case): kept again, as copies that the log reads once.
    assert_eq!((out.new_records, out.duplicate_records), (3, 0));
    let stream = keywatch_database::StreamId::Key(KeyArn::parse(KEY).expect("key"));
    assert_eq!(
        p.database()
            .stream_records(&stream)
            .wait()
            .expect("stream")
            .len(),
        3,
        "the log reads each record once"
    );
    // The failed batch had recorded its alerts before its timeline save failed: they wait
    // in the outbox for delivery, and the retry does not raise them twice.
    assert!(out.alerts.is_empty());
    let mut kinds: Vec<_> = p
        .unsent(10)
        .wait()
        .expect("outbox")
        .iter()
        .map(|a| a.kind.as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["deletion_scheduled", "pending_deletion_key_used"]);
    let t = key_timeline(p.database());
    assert_eq!(t.event_count, 3, "and the events were folded");
    // A plain redelivery afterwards changes nothing.
    let again = p
        .process(&three_records(), as_of())
        .wait()
        .expect("redelivery");
    assert!(again.alerts.is_empty());
    assert_eq!(key_timeline(p.database()).event_count, 3);
}

/// Without atomic batches, recording a batch's alerts fails (throttled) after its records
/// are stored: the retry still raises every alert. (When the timeline was saved before the
/// alerts were recorded, the retry found its events folded already and raised nothing: the
/// pages were lost.)
#[test]
fn without_atomic_batches_alerts_that_failed_to_record_are_raised_on_retry() {
    let store = Flaky {
        atomic: false,
        failed_alert_writes: 1,
        ..Flaky::over(SqliteDatabase::in_memory().expect("store"))
    };
    let mut p = Projector::new(store, AlertConfig::default());
    assert!(p.process(&three_records(), as_of()).wait().is_err());
    let out = p.process(&three_records(), as_of()).wait().expect("retry");
    let mut kinds: Vec<_> = out.alerts.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["deletion_scheduled", "pending_deletion_key_used"]);
    let t = key_timeline(p.database());
    assert_eq!(t.event_count, 3, "folded once");
}

/// A late ScheduleKeyDeletion that a batch stored and then failed to fold (no unit of work,
/// the timeline's save failed), delivered again to another projector: the log holds it, it
/// does not follow the timeline, and the timeline does not list it, so it is folded (the key
/// is pending deletion, and the uses after it are pages), not taken as folded already.
#[test]
fn without_atomic_batches_a_late_record_kept_by_a_failed_batch_is_folded_on_retry() {
    let mut store = Flaky::over(SqliteDatabase::in_memory().expect("store"));
    store.atomic = false;
    let mut p = Projector::new(store, AlertConfig::default());
    let mut first = vec![created("2026-11-01T00:00:00Z")];
    first.extend(uses_at(1..30));
    p.process(&normalised(&first), as_of())
        .wait()
        .expect("first batch");
    let late = vec![schedule(&minute(10), "sched", 7, None)];
    let mut store = p.into_database();
    store.fail_saves = true;
    let mut p = Projector::new(store, AlertConfig::default());
    p.process(&normalised(&late), as_of())
        .wait()
        .expect_err("the save fails after the append");
    let mut store = p.into_database();
    store.fail_saves = false;
    let mut p = Projector::new(store, AlertConfig::default());
    let out = p
        .process(&normalised(&late), as_of())
        .wait()
        .expect("retry");
    assert_eq!((out.new_records, out.rebuilds), (0, 1));
    let timeline = key_timeline(p.database());
    assert_eq!(timeline.state, keywatch_core::KeyState::PendingDeletion);
    let all = [first, late].concat();
    let (reference, _, _) = project_taking_snapshots(&[all], usize::MAX);
    let mut timeline = timeline;
    timeline.snapshots.clear();
    assert_eq!(timeline, reference);
    // Delivered once more, it is listed as folded: nothing is rebuilt.
    let again = p
        .process(
            &normalised(&[schedule(&minute(10), "sched", 7, None)]),
            as_of(),
        )
        .wait()
        .expect("again");
    assert_eq!(again.rebuilds, 0);
}

/// `first` projected over a database without units of work (DynamoDB's case), then `late` in
/// a batch that stores its records and fails to record its alerts (throttled), then `late`
/// again to a new projector (a retried invocation). Returns the retry's kinds of alerts,
/// after checking that the retry folded `late` once: its timeline is the one of all the
/// records, and one more delivery rebuilds and pages nothing.
fn alerts_of_a_retry_after_a_failed_page(
    first: &[Value],
    late: &[Value],
) -> Vec<keywatch_core::AlertKind> {
    alerts_of_a_retry(first, late, |store| store.failed_alert_writes = 1)
}

/// As [`alerts_of_a_retry_after_a_failed_page`], with the batch failing as `fail` sets it
/// to: after its append, before its timelines are saved.
fn alerts_of_a_retry(
    first: &[Value],
    late: &[Value],
    fail: impl FnOnce(&mut Flaky<SqliteDatabase>),
) -> Vec<keywatch_core::AlertKind> {
    let mut store = Flaky::over(SqliteDatabase::in_memory().expect("store"));
    store.atomic = false;
    let mut p = Projector::new(store, AlertConfig::default());
    p.process(&normalised(first), as_of())
        .wait()
        .expect("first batch");
    let mut store = p.into_database();
    fail(&mut store);
    let mut p = Projector::new(store, AlertConfig::default());
    p.process(&normalised(late), as_of())
        .wait()
        .expect_err("the batch fails after the append");
    let mut store = p.into_database();
    (store.fail_saves, store.failed_alert_writes) = (false, 0);
    let mut p = Projector::new(store, AlertConfig::default());
    let out = p.process(&normalised(late), as_of()).wait().expect("retry");
    assert_eq!(out.new_records, 0, "the failed batch stored them");
    let all = [first, late].concat();
    let (reference, _, _) = project_taking_snapshots(&[all], usize::MAX);
    let mut timeline = key_timeline(p.database());
    timeline.snapshots.clear();
    assert_eq!(timeline, reference, "folded once");
    let again = p.process(&normalised(late), as_of()).wait().expect("again");
    assert_eq!(again.rebuilds, 0, "listed as folded");
    assert!(again.alerts.is_empty());
    out.alerts.iter().map(|a| a.kind).collect()
}

/// A late use of a key pending deletion by a principal not yet paged, which a batch stored
/// and then failed to page, delivered again: the log holds it and it does not follow the
/// timeline, but the timeline does not list it among its pending-deletion uses, so it is
/// folded and paged, once, not taken as folded already.
#[test]
fn without_atomic_batches_a_late_use_pending_deletion_kept_by_a_failed_batch_is_paged_on_retry() {
    let mut first = vec![
        created("2026-11-01T00:00:00Z"),
        schedule(&minute(0), "sched", 7, None),
    ];
    first.extend((1..30).map(|m| rejected("Decrypt", &minute(m), &format!("use-{m}"), APP_ROLE)));
    let late = [rejected(
        "Decrypt",
        &minute(10),
        "late-use",
        "arn:aws:iam::111122223333:role/batch",
    )];
    let kinds = alerts_of_a_retry_after_a_failed_page(&first, &late);
    assert_eq!(
        kinds,
        [keywatch_core::AlertKind::PendingDeletionKeyUsed],
        "one page, for the new principal"
    );
}

/// As above, by a principal already paged in that minute: no new page, but the use is
/// counted (the timeline lists every use while pending deletion, up to 200, and not this one).
#[test]
fn without_atomic_batches_a_late_use_in_a_paged_minute_kept_by_a_failed_batch_is_counted_on_retry()
{
    let mut first = vec![
        created("2026-11-01T00:00:00Z"),
        schedule(&minute(0), "sched", 7, None),
    ];
    first.extend((1..30).map(|m| rejected("Decrypt", &minute(m), &format!("use-{m}"), APP_ROLE)));
    let late = [rejected("Decrypt", &minute(10), "late-use", APP_ROLE)];
    assert_eq!(alerts_of_a_retry_after_a_failed_page(&first, &late), []);
}

/// A late use of a key in use by a principal not counted before, which a batch stored and
/// failed to fold (its timeline's save failed): no page, but on retry it is counted, since
/// the key's roll-ups count no use of that principal.
#[test]
fn without_atomic_batches_a_late_use_by_a_new_principal_kept_by_a_failed_batch_is_counted_on_retry()
{
    let mut first = vec![created("2026-11-01T00:00:00Z")];
    first.extend(uses_at(1..30));
    let late = [decrypt(
        &minute(10),
        "late-use",
        "arn:aws:iam::111122223333:role/batch",
    )];
    assert_eq!(
        alerts_of_a_retry(&first, &late, |s| s.fail_saves = true),
        []
    );
}

/// A key store's disconnection while one of its keys is pending deletion, stored by a batch
/// that failed to record its page, delivered again: the log holds it, and the key's timeline
/// does not list it, so the retry folds and pages it.
#[test]
fn without_atomic_batches_a_key_store_disconnect_kept_by_a_failed_batch_is_paged_on_retry() {
    // A rejected use after it reached the key's stream first: the disconnection is late.
    let first = [
        hsm_key(),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        rejected("Decrypt", "2026-11-07T12:00:00Z", "use", APP_ROLE),
    ];
    let kinds = alerts_of_a_retry_after_a_failed_page(&first, &[disconnect_hsm_key_store()]);
    assert!(
        kinds.contains(&keywatch_core::AlertKind::KeyStoreDisconnectedPendingDeletion),
        "{kinds:?}"
    );
}

#[test]
fn a_write_conflict_is_retried_and_loses_nothing() {
    let store = Flaky {
        conflicts: 2,
        ..Flaky::over(SqliteDatabase::in_memory().expect("store"))
    };
    let mut p = Projector::new(store, AlertConfig::default());
    let out = p
        .process(&three_records(), as_of())
        .wait()
        .expect("retried past two conflicts");
    assert_eq!(out.alerts.len(), 2);
    assert_eq!(p.database().conflicts, 0);
}

/// Without units of work (DynamoDB), a batch retried after a write conflict finds its own
/// records in the log: they still count as new, and a key store's change among them is still
/// folded into the keys of its store.
#[test]
fn a_write_conflict_without_units_of_work_still_folds_and_counts_the_batch_as_new() {
    let mut batch = vec![disconnect_hsm_key_store()];
    batch.extend(hsm_key_used_scheduled_and_deleted());
    let store = Flaky {
        atomic: false,
        conflicts: 1,
        ..Flaky::over(SqliteDatabase::in_memory().expect("store"))
    };
    let mut p = Projector::new(store, AlertConfig::default());
    let out = p
        .process(&normalised(&batch), as_of())
        .wait()
        .expect("retried past the conflict");
    assert_eq!(p.database().conflicts, 0, "the conflict happened");
    assert_eq!(out.new_records, 4);
    assert_eq!(out.duplicate_records, 0);
    // The failed attempt recorded the alerts (before saving timelines): the outbox has them.
    let unsent: Vec<_> = p
        .unsent(100)
        .wait()
        .expect("outbox")
        .iter()
        .map(|a| a.kind)
        .collect();
    assert!(
        unsent.contains(&keywatch_core::AlertKind::OrphanedKeyMaterial),
        "{unsent:?}"
    );
    let t = key_timeline(p.database());
    assert!(t.key_store_disconnected(), "the disconnection is folded");
    assert!(t.orphaned_key_material.is_some());
    // The same records again are duplicates.
    let again = p
        .process(&normalised(&batch), as_of())
        .wait()
        .expect("the batch again");
    assert_eq!((again.new_records, again.duplicate_records), (0, 4));
}

/// The primary's history, then its replica scheduled, used around, and deleted.
fn multi_region_family() -> Vec<Value> {
    let mut records = multi_region_primary();
    records.extend([
        on_key(
            rejected("Decrypt", "2026-11-01T10:00:00Z", "use-p", APP_ROLE),
            MRK_PRIMARY,
        ),
        on_key(
            schedule(
                "2026-11-02T00:00:00Z",
                "sched-r",
                7,
                Some("Nov 9, 2026, 12:00:00 AM"),
            ),
            MRK_REPLICA,
        ),
        on_key(
            delete_key("2026-11-09T00:00:00Z", "del-r", serde_json::json!(null)),
            MRK_REPLICA,
        ),
    ]);
    records
}

/// Projects batches and returns the primary's timeline and the alerts raised, sorted.
fn project_primary(batches: &[Vec<Value>]) -> (KeyTimeline, Vec<String>) {
    let (t, mut raised) = project_key(batches, MRK_PRIMARY, false);
    raised.sort();
    (t, raised)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn a_primary_learns_its_replicas_deletion_whatever_the_batching(
        (shuffled, cuts) in (Just(multi_region_family()).prop_shuffle(), prop::collection::vec(0usize..7, 0..4))
    ) {
        let (reference, reference_alerts) = project_primary(&[multi_region_family()]);
        prop_assert_eq!(reference.state, keywatch_core::KeyState::PendingDeletion);
        prop_assert_eq!(reference.deletion_date, Some(ts("2026-12-09T00:00:00Z")));
        let batches = cut_into_batches(&shuffled, cuts);
        let (timeline, alerts) = project_primary(&batches);
        prop_assert_eq!(reference, timeline);
        prop_assert_eq!(reference_alerts, alerts);
    }
}

/// The CloudHSM key store `cks-hsm` disconnected on 7 November.
fn disconnect_hsm_key_store() -> Value {
    key_store_call(
        "DisconnectCustomKeyStore",
        "2026-11-07T00:00:00Z",
        "disconnect",
        "cks-hsm",
    )
}

/// A key used, scheduled for deletion, and deleted on 8 November by KMS, whose DeleteKey
/// names its CloudHSM key store `cks-hsm` (the first record to place it there).
fn hsm_key_used_scheduled_and_deleted() -> Vec<Value> {
    vec![
        decrypt("2026-10-01T00:00:00Z", "use", APP_ROLE),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        delete_key(
            "2026-11-08T00:00:00Z",
            "del",
            serde_json::json!({"customKeyStoreId": "cks-hsm", "clusterId": "cluster-1a23b4cdefg",
                   "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"b\",\"deletionStatus\":\"SUCCESS\"}]"}),
        ),
    ]
}

#[test]
fn a_key_store_disconnect_delivered_before_the_record_naming_the_store_still_orphans() {
    let disconnect = disconnect_hsm_key_store();
    let rest = hsm_key_used_scheduled_and_deleted();
    let store = SqliteDatabase::in_memory().expect("in-memory store");
    let mut p = Projector::new(store, AlertConfig::default());
    let mut kinds = Vec::new();
    for batch in [vec![disconnect], rest] {
        let outcome = p
            .process(&normalised(&batch), as_of())
            .wait()
            .expect("projection");
        kinds.extend(outcome.alerts.into_iter().map(|a| a.kind));
    }
    assert!(
        kinds.contains(&keywatch_core::AlertKind::OrphanedKeyMaterial),
        "{kinds:?}"
    );
}

/// Two projectors on one database (two Kafka partitions' consumers, without units of work as
/// on DynamoDB), racing: one places a key in a CloudHSM key store (its DeleteKey names the
/// store) while the other stores the store's disconnection. The disconnection is appended and
/// the store's keys listed after the first rebuilt the key but before it saved it, so neither
/// fold sees both. The first checks again once saved and pages the orphaned key material;
/// if it dies before that check, the retried batch makes it.
#[test]
fn a_key_store_disconnect_racing_the_batch_placing_a_key_still_orphans() {
    for dies_before_checking in [false, true] {
        let alerts = race_a_disconnect_with_the_batch_placing_a_key(dies_before_checking);
        assert!(
            alerts.contains(&keywatch_core::AlertKind::OrphanedKeyMaterial),
            "dies before checking: {dies_before_checking}, {alerts:?}"
        );
    }
}

/// The race above; the alert kinds the placing projector raised (on its retry, when it dies
/// before checking again).
fn race_a_disconnect_with_the_batch_placing_a_key(
    dies_before_checking: bool,
) -> Vec<keywatch_core::AlertKind> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("k.db");
    let flaky = |inner| Flaky {
        atomic: false,
        ..Flaky::over(inner)
    };
    let disconnect = normalised(&[disconnect_hsm_key_store()]);
    let key_records = normalised(&hsm_key_used_scheduled_and_deleted());
    let mut storing = Projector::new(
        flaky(SqliteDatabase::open(&path).expect("store")),
        AlertConfig::default(),
    );
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let other_ran = ran.clone();
    let mut placing_db = flaky(SqliteDatabase::open(&path).expect("store"));
    placing_db.before_save = Some(Box::new(move || {
        let outcome = storing
            .process(&disconnect, as_of())
            .wait()
            .expect("the other batch");
        assert!(
            outcome.alerts.is_empty(),
            "it found no key in the store yet"
        );
        other_ran.set(true);
    }));
    // The batch's own alerts are the first recording, the check's the second.
    placing_db.fail_alert_write = dies_before_checking.then_some(2);
    let mut placing = Projector::new(placing_db, AlertConfig::default());
    let mut kinds = Vec::new();
    match placing.process(&key_records, as_of()).wait() {
        Ok(outcome) => kinds.extend(outcome.alerts.iter().map(|a| a.kind)),
        Err(e) => {
            assert!(dies_before_checking, "{e}");
            // A new process, as after a crash, takes the batch again.
            let mut placing = Projector::new(placing.into_database(), AlertConfig::default());
            let outcome = placing
                .process(&key_records, as_of())
                .wait()
                .expect("the retry");
            kinds.extend(outcome.alerts.iter().map(|a| a.kind));
        }
    }
    assert!(
        ran.get(),
        "the other batch ran between the rebuild and the save"
    );
    // The timeline saved is the one rebuilt from the whole log.
    let reader = Projector::new(
        SqliteDatabase::open(&path).expect("store"),
        AlertConfig::default(),
    );
    let key = KeyArn::parse(KEY).expect("arn");
    let mut rebuilt = reader.rebuild(&key).wait().expect("rebuilt");
    rebuilt.compact();
    assert_eq!(
        current_timeline(reader.database(), &key)
            .wait()
            .expect("read")
            .expect("saved"),
        rebuilt
    );
    kinds
}

/// One batch bringing more minutes of pending-deletion use than a timeline keeps at rest
/// (3,000 minutes, one use each): every hour still pages, the stored timeline is bounded,
/// and the next batch's pages count the uses from the first.
#[test]
fn a_batch_with_more_minutes_of_use_than_a_timeline_keeps_pages_every_hour() {
    let uses = |from: i64, n: i64| -> Vec<Value> {
        let start = ts("2026-11-01T01:00:30Z");
        (from..from + n)
            .map(|m| {
                let at = start.plus_millis(m * 60_000).to_string();
                rejected("Decrypt", &at, &format!("use-{m}"), APP_ROLE)
            })
            .collect()
    };
    let mut first = vec![schedule(
        "2026-11-01T00:00:00Z",
        "sched",
        30,
        Some("Dec 1, 2026, 12:00:00 AM"),
    )];
    first.extend(uses(0, 3_000));
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    let pages = |alerts: &[keywatch_core::Alert]| {
        alerts
            .iter()
            .filter(|a| a.kind == keywatch_core::AlertKind::PendingDeletionKeyUsed)
            .cloned()
            .collect::<Vec<_>>()
    };
    let raised = pages(
        &p.process(&normalised(&first), as_of())
            .wait()
            .expect("batch")
            .alerts,
    );
    assert_eq!(raised.len(), 50, "3,000 minutes are 50 hours: a page each");
    let stored = key_timeline(p.database());
    assert!(
        stored.pending_use_buckets.len() <= keywatch_core::timeline::MAX_PENDING_USE_BUCKETS,
        "{} buckets at rest",
        stored.pending_use_buckets.len()
    );
    let next = pages(
        &p.process(&normalised(&uses(3_000, 120)), as_of())
            .wait()
            .expect("batch")
            .alerts,
    );
    assert_eq!(next.len(), 2, "the next two hours page");
    let last = next.iter().max_by_key(|a| a.event_time).expect("a page");
    assert_eq!(last.uses_so_far, Some(3_120), "counted from the first use");
}

/// A timeline stored by another version (another form, or one this version cannot read) is
/// rebuilt from the event log, which every version reads, instead of trusted or failing: for
/// the projector's next batch, for the sweep and for `keywatch timeline`.
#[test]
fn a_timeline_stored_by_another_version_is_rebuilt_from_the_event_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("k.db");
    let mut p = Projector::new(
        SqliteDatabase::open(&path).expect("store"),
        AlertConfig::default(),
    );
    p.process(
        &normalised(&[
            created("2026-01-01T00:00:00Z"),
            schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        ]),
        as_of(),
    )
    .wait()
    .expect("batch");
    let key = KeyArn::parse(KEY).expect("key");
    let folded = key_timeline(p.database());
    assert_eq!(folded.format, keywatch_core::TIMELINE_FORMAT);
    drop(p);
    let tamper = |json: &str| {
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute("UPDATE timelines SET json = ?1", [json])
            .expect("tamper");
    };
    // An older form: no `format`, and a state this version would have folded otherwise.
    let mut old = serde_json::to_value(&folded).expect("json");
    old.as_object_mut().expect("object").remove("format");
    old["state"] = "Enabled".into();
    for stored in [old.to_string(), "{\"key_arn\": 42}".to_owned()] {
        tamper(&stored);
        let store = SqliteDatabase::open(&path).expect("reopen");
        let current = keywatch_database::current_timeline(&store, &key)
            .wait()
            .expect("read")
            .expect("a timeline");
        assert_eq!(
            serde_json::to_value(&current).expect("json"),
            serde_json::to_value(&folded).expect("json"),
            "rebuilt as folded, from {stored}"
        );
        // The projector folds the next record onto the rebuilt timeline and stores it in
        // this version's form.
        let mut p = Projector::new(store, AlertConfig::default());
        let out = p
            .process(
                &normalised(&[rejected(
                    "Decrypt",
                    "2026-11-01T10:00:00Z",
                    "use-1",
                    APP_ROLE,
                )]),
                as_of(),
            )
            .wait()
            .expect("batch");
        assert_eq!(
            out.alerts.len(),
            1,
            "the use of a key pending deletion pages"
        );
        let saved = key_timeline(p.database());
        assert_eq!(saved.format, keywatch_core::TIMELINE_FORMAT);
        assert!(saved.state.is_pending_deletion());
        drop(p);
        // Back to the batch before the use, for the next form tried.
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute_batch(&format!(
            "DELETE FROM segments WHERE segment_id = (SELECT max(segment_id) FROM segments);
             DELETE FROM alerts WHERE alert_id = unhex('{}');
             DELETE FROM outbox;",
            out.alerts[0].alert_id
        ))
        .expect("undo the use");
    }
}

/// Projects `batches` as a long replay does, saving whole timelines only after the batches
/// in `saves` (in summary otherwise); after batch `stop` the projector is dropped without
/// saving (a run that stopped) and a new one goes on over the same database. Returns KEY's
/// timeline as read before the sweep (rebuilt from the log where it was saved in summary
/// only), the same after the sweep (which saves it whole), and every alert id raised.
fn project_deferred(
    batches: &[Vec<Value>],
    saves: &BTreeSet<usize>,
    stop: Option<usize>,
) -> (KeyTimeline, KeyTimeline, Vec<String>) {
    let deferring = |database| {
        let mut p = Projector::new(database, AlertConfig::default());
        p.defer_timeline_saves();
        p
    };
    let mut p = deferring(SqliteDatabase::in_memory().expect("in-memory store"));
    let mut raised = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        let outcome = p
            .process(&normalised(b), as_of())
            .wait()
            .expect("projection");
        raised.extend(outcome.alerts.into_iter().map(|a| a.alert_id));
        if saves.contains(&i) {
            p.save_deferred_timelines()
                .wait()
                .expect("saving timelines");
        }
        if stop == Some(i) {
            p = deferring(p.into_database());
        }
    }
    let key = KeyArn::parse(KEY).expect("key");
    let mut before_sweep = current_timeline(p.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    before_sweep.compact();
    raised.extend(
        p.sweep(as_of())
            .wait()
            .expect("sweep")
            .into_iter()
            .map(|a| a.alert_id),
    );
    let mut saved = current_timeline(p.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    saved.compact();
    raised.sort();
    (before_sweep, saved, raised)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Timelines saved whole only now and then, and a run stopped between two saves, give
    /// the timeline and the alerts of saving after every batch.
    #[test]
    fn timelines_saved_now_and_then_fold_and_page_as_saved_every_batch(
        (delivered, cuts, saves, stop) in history().prop_flat_map(|h| {
            let n = h.len();
            (
                Just(h).prop_shuffle(),
                prop::collection::vec(0..n + 1, 0..5),
                prop::collection::btree_set(0usize..6, 0..3),
                prop::option::of(0usize..6),
            )
        })
    ) {
        let batches = cut_into_batches(&delivered, cuts);
        let (reference, mut reference_alerts) = project_key(&batches, KEY, true);
        reference_alerts.sort();
        let (before_sweep, saved, alerts) = project_deferred(&batches, &saves, stop);
        prop_assert_eq!(&reference, &before_sweep);
        prop_assert_eq!(&reference, &saved);
        prop_assert_eq!(reference_alerts, alerts);
    }
}

/// Between two whole saves a timeline is stored in summary: the keys are listed and found
/// by it, and the timeline itself reads back as behind the log, which `keywatch timeline`
/// and the next run's projector rebuild from instead of trusting an older whole form.
#[test]
fn a_timeline_saved_in_summary_lists_its_key_and_reads_back_as_behind_the_log() {
    let mut p = Projector::new(
        SqliteDatabase::in_memory().expect("store"),
        AlertConfig::default(),
    );
    p.defer_timeline_saves();
    let key = KeyArn::parse(KEY).expect("key");
    p.process(&normalised(&[created("2026-01-01T00:00:00Z")]), as_of())
        .wait()
        .expect("batch");
    p.save_deferred_timelines().wait().expect("saved whole");
    assert!(p
        .database()
        .load_timeline(&key)
        .wait()
        .expect("whole")
        .is_some());
    p.process(
        &normalised(&[schedule("2026-11-01T00:00:00Z", "sched", 7, None)]),
        as_of(),
    )
    .wait()
    .expect("batch");
    let listed = p.database().list_keys(None).wait().expect("keys");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, keywatch_core::KeyState::PendingDeletion);
    assert_eq!(
        p.database().keys_pending_deletion().wait().expect("keys"),
        std::slice::from_ref(&key)
    );
    match p.database().load_timeline(&key).wait() {
        Err(keywatch_database::DatabaseError::Corrupt { what, reason }) => {
            assert_eq!(
                (what, reason.as_str()),
                ("timeline", keywatch_database::TIMELINE_BEHIND)
            );
        }
        other => panic!("expected a timeline behind the log, got {other:?}"),
    }
    let rebuilt = current_timeline(p.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    assert!(rebuilt.state.is_pending_deletion());
    // A run that stops here leaves it so; the next run's sweep saves it whole again.
    let mut next = Projector::new(p.into_database(), AlertConfig::default());
    next.sweep(as_of()).wait().expect("sweep");
    let saved = next
        .database()
        .load_timeline(&key)
        .wait()
        .expect("saved whole by the sweep")
        .expect("a timeline");
    assert_eq!(saved, rebuilt);
}

/// The time-driven alerts a sweep raises, as ids.
fn swept(p: &mut Projector<impl Database>) -> BTreeSet<String> {
    p.sweep(as_of())
        .wait()
        .expect("sweep")
        .into_iter()
        .map(|a| a.alert_id)
        .collect()
}

#[test]
fn a_sweep_by_the_only_writer_evaluates_its_cached_timelines_without_reading_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDatabase::open(&dir.path().join("keywatch.db")).expect("open");
    let mut p = Projector::new(Flaky::over(db), AlertConfig::default());
    let records = [
        created("2026-01-01T00:00:00Z"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
    ];
    p.process(&normalised(&records), as_of())
        .wait()
        .expect("projection");
    assert!(!p.database().written_by_others().wait().expect("version"));
    let before = p.database().timelines_read.get();
    let alerts = swept(&mut p);
    assert_eq!(
        p.database().timelines_read.get(),
        before,
        "a timeline was read back"
    );
    // What a sweep that reads the database raises: the deletion date (8 November) is past.
    let key = KeyArn::parse(KEY).expect("key");
    let stored = current_timeline(p.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    let expected: BTreeSet<String> = keywatch_core::evaluate_clock(&stored, as_of())
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(alerts, expected);
}

#[test]
fn a_sweep_reads_the_timelines_another_writer_may_have_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let mut first = Projector::new(
        SqliteDatabase::open(&path).expect("open"),
        AlertConfig::default(),
    );
    first
        .process(
            &normalised(&[
                created("2026-01-01T00:00:00Z"),
                schedule("2026-11-01T00:00:00Z", "sched-1", 7, None),
            ]),
            as_of(),
        )
        .wait()
        .expect("projection");
    let key = KeyArn::parse(KEY).expect("key");
    let cached = current_timeline(first.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    // Another process (a second consumer, say) cancels and schedules again, on the same file.
    let mut second = Projector::new(
        SqliteDatabase::open(&path).expect("open"),
        AlertConfig::default(),
    );
    second
        .process(
            &normalised(&[
                cancel("2026-11-02T00:00:00Z", "cancel-1"),
                schedule("2026-11-03T00:00:00Z", "sched-2", 30, None),
            ]),
            as_of(),
        )
        .wait()
        .expect("projection");
    assert!(first
        .database()
        .written_by_others()
        .wait()
        .expect("version"));
    let stored = current_timeline(first.database(), &key)
        .wait()
        .expect("read")
        .expect("a timeline");
    let ids = |t: &KeyTimeline| -> BTreeSet<String> {
        keywatch_core::evaluate_clock(t, as_of())
            .into_iter()
            .map(|a| a.alert_id)
            .collect()
    };
    // The first projector's cache still has the first schedule, overdue since 8 November.
    assert_ne!(ids(&cached), ids(&stored));
    assert_eq!(swept(&mut first), ids(&stored));
}
