//! A database in process memory: for tests, benchmarks and `keywatch replay --in-memory`.
//! It keeps what the deployed database (DynamoDB) keeps, in the same encodings (a batch's
//! records of a stream compressed together as a segment, timelines and alerts as compressed
//! JSON), so that a batch costs the CPU it costs there, minus the I/O; a record that may be
//! stored already is looked up in its streams' segments, as there.

use crate::{Database, DatabaseError, KeySummary, RecordToAppend, StreamId};
use keywatch_core::{Alert, KeyArn, KeyState, KeyStoreRef, KeyTimeline, Timestamp};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A stored timeline: its JSON compressed ([`crate::encode_json`]), and the columns the
/// queries read.
#[derive(Clone, Debug)]
struct TimelineRow {
    state: keywatch_core::KeyState,
    key_store: Option<String>,
    deletion_date: Option<Timestamp>,
    last_use: Option<Timestamp>,
    body: Vec<u8>,
}

/// A segment of a stream's event log and the eventTimes it spans.
#[derive(Debug)]
struct Segment {
    first_time: Timestamp,
    last_time: Timestamp,
    /// [`crate::encode_segment`]'s bytes.
    body: Vec<u8>,
}

/// An outbox entry, ordered as [`crate::sort_oldest_first`] orders alerts; the id last.
type OutboxEntry = (Timestamp, KeyArn, keywatch_core::AlertKind, String);

fn outbox_entry(a: &Alert) -> OutboxEntry {
    (a.event_time, a.key_arn.clone(), a.kind, a.alert_id.clone())
}

/// How to take back one write of a batch being aborted.
#[derive(Debug)]
enum Undo {
    Segment(StreamId),
    Timeline(KeyArn, Option<TimelineRow>),
    Alert(String),
    Outbox(String, bool),
    Snapshot(KeyArn, String),
    SnapshotDeleted(KeyArn, String, Vec<u8>),
}

/// keywatch's database in memory, gone with the process.
#[derive(Debug, Default)]
pub struct MemoryDatabase {
    /// The event log: each stream's segments, in the order stored.
    segments: HashMap<StreamId, Vec<Segment>>,
    timelines: BTreeMap<KeyArn, TimelineRow>,
    /// Alerts by id, as [`crate::encode_json`] encodes them.
    alerts: HashMap<String, Vec<u8>>,
    /// Unsent alerts, oldest first ([`crate::sort_oldest_first`]).
    outbox: BTreeSet<OutboxEntry>,
    /// Snapshots of timelines by key and id, as [`crate::encode_json`] encodes them.
    snapshots: HashMap<(KeyArn, String), Vec<u8>>,
    /// The undo log of the batch in progress, if one is.
    batch: Option<Vec<Undo>>,
}

impl MemoryDatabase {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    fn undo(&mut self, u: Undo) {
        if let Some(log) = &mut self.batch {
            log.push(u);
        }
    }

    fn set_outbox(&mut self, entry: OutboxEntry, present: bool) {
        let was = if present {
            !self.outbox.insert(entry.clone())
        } else {
            self.outbox.remove(&entry)
        };
        if was != present {
            self.undo(Undo::Outbox(entry.3.clone(), was));
        }
    }

    fn outbox_entry(&self, alert_id: &str) -> Result<Option<OutboxEntry>, DatabaseError> {
        self.alerts
            .get(alert_id)
            .map(|body| {
                let a: Alert = crate::decode_json(body, "alert")?;
                Ok(outbox_entry(&a))
            })
            .transpose()
    }

    /// A stream's segments in order of their first eventTime, merged ([`crate::SegmentMerge`]);
    /// with `after`, only the records later than it, of the segments that end after it.
    fn visit_segments(
        &self,
        stream: &StreamId,
        after: Option<Timestamp>,
        visit: &mut crate::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        let mut segments: Vec<&Segment> = self
            .segments
            .get(stream)
            .into_iter()
            .flatten()
            .filter(|s| after.is_none_or(|after| s.last_time > after))
            .collect();
        segments.sort_by_key(|s| s.first_time);
        let mut merge = after.map_or_else(crate::SegmentMerge::new, crate::SegmentMerge::after);
        for s in segments {
            merge.add_segment(s.first_time, crate::decode_segment(&s.body)?, visit)?;
        }
        merge.finish(visit)
    }

    fn arns(&self, keep: impl Fn(&KeyArn, &TimelineRow) -> bool) -> Vec<KeyArn> {
        self.timelines
            .iter()
            .filter(|(k, row)| keep(k, row))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Database for MemoryDatabase {
    async fn begin_batch(&mut self) -> Result<(), DatabaseError> {
        self.batch = Some(Vec::new());
        Ok(())
    }

    async fn commit_batch(&mut self) -> Result<(), DatabaseError> {
        self.batch = None;
        Ok(())
    }

    async fn abort_batch(&mut self) {
        let Some(log) = self.batch.take() else {
            return;
        };
        for u in log.into_iter().rev() {
            match u {
                Undo::Segment(stream) => {
                    if let Some(s) = self.segments.get_mut(&stream) {
                        s.pop();
                    }
                }
                Undo::Timeline(key, Some(row)) => {
                    self.timelines.insert(key, row);
                }
                Undo::Timeline(key, None) => {
                    self.timelines.remove(&key);
                }
                Undo::Alert(id) => {
                    self.alerts.remove(&id);
                }
                Undo::Snapshot(key, id) => {
                    self.snapshots.remove(&(key, id));
                }
                Undo::SnapshotDeleted(key, id, body) => {
                    self.snapshots.insert((key, id), body);
                }
                Undo::Outbox(id, was) => {
                    if let Ok(Some(entry)) = self.outbox_entry(&id) {
                        if was {
                            self.outbox.insert(entry);
                        } else {
                            self.outbox.remove(&entry);
                        }
                    }
                }
            }
        }
    }

    async fn append_records(
        &mut self,
        records: &[RecordToAppend<'_>],
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut found = crate::FoundRecords::of(records);
        for (stream, (from, to)) in crate::windows_to_look_up(records) {
            let spanning = self.segments.get(stream).into_iter().flatten();
            for s in spanning.filter(|s| s.last_time >= from && s.first_time <= to) {
                found.search(&s.body)?;
            }
        }
        let fresh = found.fresh();
        for (stream, entries) in crate::new_records_by_stream(records, &fresh) {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let segment = Segment {
                first_time: first.event_time,
                last_time: last.event_time,
                body: crate::encode_records_segment(&entries)?,
            };
            self.segments
                .entry(stream.clone())
                .or_default()
                .push(segment);
            self.undo(Undo::Segment(stream.clone()));
        }
        Ok(fresh)
    }

    async fn visit_stream(
        &self,
        stream: &StreamId,
        visit: &mut crate::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        self.visit_segments(stream, None, visit)
    }

    async fn visit_stream_after(
        &self,
        stream: &StreamId,
        after: Timestamp,
        visit: &mut crate::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        self.visit_segments(stream, Some(after), visit)
    }

    async fn save_snapshot(
        &mut self,
        id: &str,
        timeline: &KeyTimeline,
    ) -> Result<(), DatabaseError> {
        let key = (timeline.key_arn.clone(), id.to_owned());
        let body = crate::encode_json(timeline, "snapshot")?;
        self.snapshots.insert(key.clone(), body);
        self.undo(Undo::Snapshot(key.0, key.1));
        Ok(())
    }

    async fn delete_snapshots(&mut self, key: &KeyArn, ids: &[&str]) -> Result<(), DatabaseError> {
        for id in ids {
            let at = (key.clone(), (*id).to_owned());
            if let Some(body) = self.snapshots.remove(&at) {
                self.undo(Undo::SnapshotDeleted(at.0, at.1, body));
            }
        }
        Ok(())
    }

    async fn load_snapshot(
        &self,
        key: &KeyArn,
        id: &str,
    ) -> Result<Option<KeyTimeline>, DatabaseError> {
        self.snapshots
            .get(&(key.clone(), id.to_owned()))
            .map(|body| crate::decode_json(body, "snapshot"))
            .transpose()
    }

    async fn load_timeline(&self, key: &KeyArn) -> Result<Option<KeyTimeline>, DatabaseError> {
        self.timelines
            .get(key)
            .map(|row| crate::decode_json(&row.body, "timeline"))
            .transpose()
    }

    async fn save_timelines(&mut self, timelines: &[&KeyTimeline]) -> Result<(), DatabaseError> {
        // Encoded on every core, as the SQLite database does.
        let bodies: Vec<Vec<u8>> = timelines
            .par_iter()
            .map(|t| crate::encode_json(*t, "timeline"))
            .collect::<Result<_, _>>()?;
        for (t, body) in timelines.iter().zip(bodies) {
            let row = TimelineRow {
                state: t.state,
                key_store: t.key_store_ref().map(|s| s.to_string()),
                deletion_date: t.deletion_date,
                last_use: t.last_use(),
                body,
            };
            let old = self.timelines.insert(t.key_arn.clone(), row);
            self.undo(Undo::Timeline(t.key_arn.clone(), old));
        }
        Ok(())
    }

    async fn keys_in_key_store(
        &self,
        key_store: &KeyStoreRef,
    ) -> Result<Vec<KeyArn>, DatabaseError> {
        let wanted = key_store.to_string();
        Ok(self.arns(|_, row| row.key_store.as_deref() == Some(wanted.as_str())))
    }

    async fn find_keys(&self, key: &str) -> Result<Vec<KeyArn>, DatabaseError> {
        Ok(self.arns(|k, _| k.as_str() == key || k.key_id() == key))
    }

    async fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, DatabaseError> {
        Ok(self.arns(|_, row| row.state.is_pending_deletion()))
    }

    /// Nothing but its owner writes a database in memory.
    async fn written_by_others(&self) -> Result<bool, DatabaseError> {
        Ok(false)
    }

    async fn key_count(&self) -> Result<u64, DatabaseError> {
        Ok(self.timelines.len() as u64)
    }

    async fn list_keys(&self, state: Option<KeyState>) -> Result<Vec<KeySummary>, DatabaseError> {
        Ok(self
            .timelines
            .iter()
            .filter(|(_, row)| state.is_none_or(|s| row.state == s))
            .map(|(k, row)| KeySummary {
                key_arn: k.as_str().to_owned(),
                state: row.state,
                deletion_date: row.deletion_date,
                last_use: row.last_use,
                custom_key_store_id: row
                    .key_store
                    .as_deref()
                    .and_then(|s| s.rsplit('/').next().map(str::to_owned)),
            })
            .collect())
    }

    async fn unsent_alerts(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError> {
        self.outbox
            .iter()
            .take(limit)
            .map(|(_, _, _, id)| {
                let body = self.alerts.get(id).ok_or_else(|| DatabaseError::Corrupt {
                    what: "outbox",
                    reason: format!("{id} is not a stored alert"),
                })?;
                crate::decode_json(body, "alert")
            })
            .collect()
    }

    async fn mark_sent(&mut self, alert_ids: &[&str], _at: Timestamp) -> Result<(), DatabaseError> {
        for id in alert_ids {
            if let Some(entry) = self.outbox_entry(id)? {
                self.set_outbox(entry, false);
            }
        }
        Ok(())
    }

    async fn record_alerts(
        &mut self,
        alerts: &[Alert],
        _raised_at: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut fresh = Vec::with_capacity(alerts.len());
        for a in alerts {
            let new = !self.alerts.contains_key(&a.alert_id);
            if new {
                self.alerts
                    .insert(a.alert_id.clone(), crate::encode_json(a, "alert")?);
                self.undo(Undo::Alert(a.alert_id.clone()));
                self.set_outbox(outbox_entry(a), true);
            }
            fresh.push(new);
        }
        Ok(fresh)
    }
}
