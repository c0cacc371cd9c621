//! The in-memory store answers as SQLite does: the same records, in any batching, give the
//! same timelines, key lists, alerts and outbox in both; and an aborted batch leaves either
//! as it was. (Here, not in keywatch-store, because it needs both.)

#[path = "../../keywatch-core/tests/support/mod.rs"]
mod support;

use keywatch_core::{normalise, AlertConfig, Normalised, Timestamp};
use keywatch_sqlite::SqliteStore;
use keywatch_store::{MemoryStore, NormalisedRecord, Projector, Store, StoreError, StreamId};
use proptest::prelude::*;
use serde_json::Value;
use support::*;

fn normalised(records: &[Value]) -> Vec<NormalisedRecord> {
    records
        .iter()
        .filter_map(|r| {
            let json = r.to_string();
            match normalise(&json) {
                Ok(Normalised::Kms { event_id, events }) => {
                    Some(NormalisedRecord::new(event_id, &json, events))
                }
                _ => None,
            }
        })
        .collect()
}

fn as_of() -> Timestamp {
    ts("2026-12-01T00:00:00Z")
}

/// Everything a reader of the store can see, as JSON.
fn contents(p: &Projector<impl Store>) -> Value {
    let store = p.store();
    let keys = store.list_keys(None).expect("keys");
    let timelines: Vec<Value> = keys
        .iter()
        .map(|k| {
            let arn = keywatch_core::KeyArn::parse(&k.key_arn).expect("arn");
            let stream = store
                .stream_records(&StreamId::Key(arn.clone()))
                .expect("stream");
            serde_json::json!({
                "timeline": store.load_timeline(&arn).expect("load"),
                "pending": store.keys_pending_deletion().expect("pending").contains(&arn),
                "found_by_id": store.find_keys(arn.key_id()).expect("find"),
                "stream": stream,
            })
        })
        .collect();
    let outbox: Vec<String> = store
        .unsent_alerts(usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    serde_json::json!({
        "keys": keys,
        "count": store.key_count().expect("count"),
        "timelines": timelines,
        "outbox": outbox,
    })
}

/// Projects the batches, sweeps, marks the first unsent alert sent, and returns what the
/// store holds and the alerts raised.
fn run(store: impl Store, batches: &[Vec<Value>]) -> (Value, Vec<String>) {
    let mut p = Projector::new(store, AlertConfig::default());
    let mut raised = Vec::new();
    for b in batches {
        let out = p.process(&normalised(b), as_of()).expect("batch");
        raised.extend(out.alerts.into_iter().map(|a| a.alert_id));
    }
    raised.extend(
        p.sweep(as_of())
            .expect("sweep")
            .into_iter()
            .map(|a| a.alert_id),
    );
    if let Some(first) = p.unsent(1).expect("outbox").first() {
        p.mark_sent(&[first.alert_id.as_str()], as_of())
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
        let sqlite = run(SqliteStore::in_memory().expect("sqlite"), &batches);
        let memory = run(MemoryStore::new(), &batches);
        prop_assert_eq!(sqlite, memory);
    }
}

/// Fails the timeline save of every batch while `fail` is set.
struct FailingSaves<S> {
    inner: S,
    fail: bool,
}

impl<S: Store> Store for FailingSaves<S> {
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.inner.begin_batch()
    }
    fn commit_batch(&mut self) -> Result<(), StoreError> {
        self.inner.commit_batch()
    }
    fn abort_batch(&mut self) {
        self.inner.abort_batch()
    }
    fn append_records(
        &mut self,
        r: &[keywatch_store::RecordToAppend<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.append_records(r)
    }
    fn stream_records(&self, s: &StreamId) -> Result<Vec<String>, StoreError> {
        self.inner.stream_records(s)
    }
    fn load_timeline(
        &self,
        k: &keywatch_core::KeyArn,
    ) -> Result<Option<keywatch_core::KeyTimeline>, StoreError> {
        self.inner.load_timeline(k)
    }
    fn save_timelines(&mut self, t: &[&keywatch_core::KeyTimeline]) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::Database("disk full (test)".into()));
        }
        self.inner.save_timelines(t)
    }
    fn keys_in_key_store(
        &self,
        s: &keywatch_core::KeyStoreRef,
    ) -> Result<Vec<keywatch_core::KeyArn>, StoreError> {
        self.inner.keys_in_key_store(s)
    }
    fn find_keys(&self, k: &str) -> Result<Vec<keywatch_core::KeyArn>, StoreError> {
        self.inner.find_keys(k)
    }
    fn keys_pending_deletion(&self) -> Result<Vec<keywatch_core::KeyArn>, StoreError> {
        self.inner.keys_pending_deletion()
    }
    fn key_count(&self) -> Result<u64, StoreError> {
        self.inner.key_count()
    }
    fn list_keys(&self, s: Option<&str>) -> Result<Vec<keywatch_store::KeySummary>, StoreError> {
        self.inner.list_keys(s)
    }
    fn unsent_alerts(&self, n: usize) -> Result<Vec<keywatch_core::Alert>, StoreError> {
        self.inner.unsent_alerts(n)
    }
    fn mark_sent(&mut self, ids: &[&str], at: Timestamp) -> Result<(), StoreError> {
        self.inner.mark_sent(ids, at)
    }
    fn record_alerts(
        &mut self,
        a: &[keywatch_core::Alert],
        t: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.record_alerts(a, t)
    }
}

/// A first batch, then a second that fails at its last write: the store must hold what the
/// first left, in both implementations.
fn after_an_aborted_batch(inner: impl Store) -> Value {
    let mut p = Projector::new(FailingSaves { inner, fail: false }, AlertConfig::default());
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
    .expect("first batch");
    let before = contents(&p);
    let mut store = p.into_store();
    store.fail = true;
    let mut p = Projector::new(store, AlertConfig::default());
    let second = normalised(&[
        rejected("Decrypt", "2026-11-01T10:00:00Z", "use-1", APP_ROLE),
        cancel("2026-11-02T00:00:00Z", "cancel"),
    ]);
    assert!(p.process(&second, as_of()).is_err());
    assert_eq!(contents(&p), before, "the aborted batch left writes behind");
    // Nothing of it was kept: its retry finds every record new.
    let mut store = p.into_store();
    store.fail = false;
    let mut p = Projector::new(store, AlertConfig::default());
    let retry = p.process(&second, as_of()).expect("retry");
    assert_eq!(retry.new_records, second.len());
    before
}

#[test]
fn an_aborted_batch_leaves_the_memory_store_as_it_was() {
    let sqlite = after_an_aborted_batch(SqliteStore::in_memory().expect("sqlite"));
    let memory = after_an_aborted_batch(MemoryStore::new());
    assert_eq!(sqlite, memory);
}
