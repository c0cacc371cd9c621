//! The in-memory store answers as SQLite does: the same records, in any batching, give the
//! same timelines, key lists, alerts and outbox in both; and an aborted batch leaves either
//! as it was. (Here, not in keywatch-database, because it needs both.)

mod common;
#[path = "../../keywatch-core/tests/support/mod.rs"]
mod support;

use common::{as_of, normalised, Flaky, Wait};
use keywatch_core::AlertConfig;
use keywatch_database::{Database, MemoryDatabase, Projector, StreamId};
use keywatch_sqlite::SqliteDatabase;
use proptest::prelude::*;
use serde_json::Value;
use support::*;

/// Everything a reader of the store can see, as JSON.
fn contents(p: &Projector<impl Database>) -> Value {
    let store = p.database();
    let keys = store.list_keys(None).wait().expect("keys");
    let timelines: Vec<Value> = keys
        .iter()
        .map(|k| {
            let arn = keywatch_core::KeyArn::parse(&k.key_arn).expect("arn");
            let stream = store
                .stream_records(&StreamId::Key(arn.clone()))
                .wait()
                .expect("stream");
            serde_json::json!({
                "timeline": store.load_timeline(&arn).wait().expect("load"),
                "pending": store.keys_pending_deletion().wait().expect("pending").contains(&arn),
                "found_by_id": store.find_keys(arn.key_id()).wait().expect("find"),
                "stream": format!("{stream:?}"),
            })
        })
        .collect();
    let outbox: Vec<String> = store
        .unsent_alerts(usize::MAX)
        .wait()
        .expect("outbox")
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    serde_json::json!({
        "keys": keys,
        "count": store.key_count().wait().expect("count"),
        "timelines": timelines,
        "outbox": outbox,
    })
}

/// Projects the batches, sweeps, marks the first unsent alert sent, and returns what the
/// store holds and the alerts raised.
fn run(store: impl Database, batches: &[Vec<Value>]) -> (Value, Vec<String>) {
    let mut p = Projector::new(store, AlertConfig::default());
    let mut raised = Vec::new();
    for b in batches {
        let out = p.process(&normalised(b), as_of()).wait().expect("batch");
        raised.extend(out.alerts.into_iter().map(|a| a.alert_id));
    }
    raised.extend(
        p.sweep(as_of())
            .wait()
            .expect("sweep")
            .into_iter()
            .map(|a| a.alert_id),
    );
    if let Some(first) = p.unsent(1).wait().expect("outbox").first() {
        p.mark_sent(&[first.alert_id.as_str()], as_of())
            .wait()
            .expect("mark sent");
    }
    (contents(&p), raised)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_memory_store_holds_what_sqlite_holds(
        (records, cuts) in history().prop_flat_map(|h| {
            let n = h.len();
            (Just(h).prop_shuffle(), prop::collection::vec(0..n + 1, 0..4))
        })
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(records.len())).collect();
        cuts.sort_unstable();
        let mut batches = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([records.len()]) {
            batches.push(records[start..c.max(start)].to_vec());
            start = c.max(start);
        }
        let sqlite = run(SqliteDatabase::in_memory().expect("sqlite"), &batches);
        let memory = run(MemoryDatabase::new(), &batches);
        prop_assert_eq!(sqlite, memory);
    }
}

/// A first batch, then a second that fails at its last write: the store must hold what the
/// first left, in both implementations.
fn after_an_aborted_batch(inner: impl Database) -> Value {
    let store = Flaky::over(inner);
    let mut p = Projector::new(store, AlertConfig::default());
    p.process(
        &normalised(&[
            create_key(
                "2026-01-01T00:00:00Z",
                "create",
                "AWS_KMS",
                None,
                None,
                None,
            ),
            schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        ]),
        as_of(),
    )
    .wait()
    .expect("first batch");
    let before = contents(&p);
    let mut store = p.into_database();
    store.fail_saves = true;
    let mut p = Projector::new(store, AlertConfig::default());
    let second = normalised(&[
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        cancel("2026-11-02T00:00:00Z", "cancel"),
    ]);
    assert!(p.process(&second, as_of()).wait().is_err());
    assert_eq!(contents(&p), before, "the aborted batch left writes behind");
    // Nothing of it was kept: its retry finds every record new.
    let mut store = p.into_database();
    store.fail_saves = false;
    let mut p = Projector::new(store, AlertConfig::default());
    let retry = p.process(&second, as_of()).wait().expect("retry");
    assert_eq!(retry.new_records, second.len());
    before
}

#[test]
fn an_aborted_batch_leaves_the_memory_store_as_it_was() {
    let sqlite = after_an_aborted_batch(SqliteDatabase::in_memory().expect("sqlite"));
    let memory = after_an_aborted_batch(MemoryDatabase::new());
    assert_eq!(sqlite, memory);
}
