//! What the tests of this crate share: records normalised for the projector, the instant
//! they are projected at, and a database that fails on demand.
#![allow(dead_code)]

use keywatch_core::{normalise, KeyArn, Normalised, Timestamp};
use keywatch_database::{Database, NormalisedRecord};
use serde_json::Value;

pub fn normalised(records: &[Value]) -> Vec<NormalisedRecord> {
    records
        .iter()
        .map(|r| {
            let json = r.to_string();
            match normalise(&json) {
                Ok(Normalised::Kms { event_id, events }) => {
                    NormalisedRecord::new(event_id, json.as_str(), events)
                }
                other => panic!("expected a KMS record, got {other:?}"),
            }
        })
        .collect()
}

/// The output of a future that never waits, as a local database's (SQLite's, the memory
/// one's) do their work when first polled: the database port is asynchronous, these tests
/// are not, and a callback run inside one such future may wait on another.
pub trait Wait: std::future::Future + Sized {
    fn wait(self) -> Self::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(self).poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a local database's future waited"),
        }
    }
}

impl<F: std::future::Future> Wait for F {}

pub fn as_of() -> Timestamp {
    Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").expect("instant")
}

/// A database failing on demand: `save_timelines` (a batch that fails half-way), as a
/// write conflict, or `record_alerts`; with or without units of work.
pub struct Flaky<S> {
    pub inner: S,
    pub fail_saves: bool,
    /// Like DynamoDB: no unit of work, every write stands on its own.
    pub atomic: bool,
    /// Saves that fail as if another writer got there first.
    pub conflicts: usize,
    /// Recordings of alerts that fail (throttled, say).
    pub failed_alert_writes: usize,
    /// Run once just before the first save of timelines: another projector's work,
    /// interleaved where a race would put it.
    pub before_save: Option<Box<dyn FnOnce()>>,
    /// The recording of alerts that fails, counting from 1 (the projector dying there).
    pub fail_alert_write: Option<usize>,
    /// Timelines read so far.
    pub timelines_read: std::cell::Cell<usize>,
    /// Records the event log passed to visitors (streams read).
    pub records_read: std::sync::atomic::AtomicUsize,
}

impl<S> Flaky<S> {
    /// Over `inner`, failing nothing, with units of work.
    pub fn over(inner: S) -> Self {
        Flaky {
            inner,
            fail_saves: false,
            atomic: true,
            conflicts: 0,
            failed_alert_writes: 0,
            before_save: None,
            fail_alert_write: None,
            timelines_read: std::cell::Cell::new(0),
            records_read: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl<S: Database> Database for Flaky<S> {
    async fn begin_batch(&mut self) -> Result<(), keywatch_database::DatabaseError> {
        if self.atomic {
            self.inner.begin_batch().await?;
        }
        Ok(())
    }
    async fn commit_batch(&mut self) -> Result<(), keywatch_database::DatabaseError> {
        if self.atomic {
            self.inner.commit_batch().await?;
        }
        Ok(())
    }
    async fn abort_batch(&mut self) {
        if self.atomic {
            self.inner.abort_batch().await
        }
    }
    async fn append_records(
        &mut self,
        r: &[keywatch_database::RecordToAppend<'_>],
    ) -> Result<Vec<bool>, keywatch_database::DatabaseError> {
        self.inner.append_records(r).await
    }
    async fn visit_stream(
        &self,
        s: &keywatch_database::StreamId,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), keywatch_database::DatabaseError> {
        let read = &self.records_read;
        self.inner
            .visit_stream(s, &mut |r| {
                read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                visit(r)
            })
            .await
    }
    async fn visit_stream_after(
        &self,
        s: &keywatch_database::StreamId,
        after: keywatch_core::Timestamp,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), keywatch_database::DatabaseError> {
        let read = &self.records_read;
        self.inner
            .visit_stream_after(s, after, &mut |r| {
                read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                visit(r)
            })
            .await
    }
    async fn save_snapshot(
        &mut self,
        id: &str,
        t: &keywatch_core::KeyTimeline,
    ) -> Result<(), keywatch_database::DatabaseError> {
        self.inner.save_snapshot(id, t).await
    }
    async fn delete_snapshots(
        &mut self,
        k: &KeyArn,
        ids: &[&str],
    ) -> Result<(), keywatch_database::DatabaseError> {
        self.inner.delete_snapshots(k, ids).await
    }
    async fn load_snapshot(
        &self,
        k: &KeyArn,
        id: &str,
    ) -> Result<Option<keywatch_core::KeyTimeline>, keywatch_database::DatabaseError> {
        self.inner.load_snapshot(k, id).await
    }
    async fn load_timeline(
        &self,
        k: &KeyArn,
    ) -> Result<Option<keywatch_core::KeyTimeline>, keywatch_database::DatabaseError> {
        self.timelines_read.set(self.timelines_read.get() + 1);
        self.inner.load_timeline(k).await
    }
    async fn written_by_others(&self) -> Result<bool, keywatch_database::DatabaseError> {
        self.inner.written_by_others().await
    }
    async fn save_timelines(
        &mut self,
        t: &[&keywatch_core::KeyTimeline],
    ) -> Result<(), keywatch_database::DatabaseError> {
        if self.fail_saves {
            return Err(keywatch_database::DatabaseError::Database(
                "disk full (test)".into(),
            ));
        }
        if let Some(other) = self.before_save.take() {
            other();
        }
        if self.conflicts > 0 {
            self.conflicts -= 1;
            return Err(keywatch_database::DatabaseError::Conflict(
                "a timeline (test)".into(),
            ));
        }
        self.inner.save_timelines(t).await
    }
    async fn keys_in_key_store(
        &self,
        s: &keywatch_core::KeyStoreRef,
    ) -> Result<Vec<KeyArn>, keywatch_database::DatabaseError> {
        self.inner.keys_in_key_store(s).await
    }
    async fn find_keys(&self, k: &str) -> Result<Vec<KeyArn>, keywatch_database::DatabaseError> {
        self.inner.find_keys(k).await
    }
    async fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, keywatch_database::DatabaseError> {
        self.inner.keys_pending_deletion().await
    }
    async fn key_count(&self) -> Result<u64, keywatch_database::DatabaseError> {
        self.inner.key_count().await
    }
    async fn list_keys(
        &self,
        s: Option<keywatch_core::KeyState>,
    ) -> Result<Vec<keywatch_database::KeySummary>, keywatch_database::DatabaseError> {
        self.inner.list_keys(s).await
    }
    async fn unsent_alerts(
        &self,
        limit: usize,
    ) -> Result<Vec<keywatch_core::Alert>, keywatch_database::DatabaseError> {
        self.inner.unsent_alerts(limit).await
    }
    async fn mark_sent(
        &mut self,
        ids: &[&str],
        at: Timestamp,
    ) -> Result<(), keywatch_database::DatabaseError> {
        self.inner.mark_sent(ids, at).await
    }
    async fn record_alerts(
        &mut self,
        a: &[keywatch_core::Alert],
        t: Timestamp,
    ) -> Result<Vec<bool>, keywatch_database::DatabaseError> {
        if let Some(n) = self.fail_alert_write.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.fail_alert_write = None;
                return Err(keywatch_database::DatabaseError::Database(
                    "the projector died (test)".into(),
                ));
            }
        }
        if self.failed_alert_writes > 0 {
            self.failed_alert_writes -= 1;
            return Err(keywatch_database::DatabaseError::Database(
                "throttled (test)".into(),
            ));
        }
        self.inner.record_alerts(a, t).await
    }
}
