//! keywatch's embedded default database: the event log, timelines and alerts in one SQLite
//! file (or in memory), behind [`keywatch_database::Database`]. The Lambda functions do not link it.

use keywatch_core::{Alert, KeyArn, KeyState, KeyStoreRef, KeyTimeline, Timestamp};
use keywatch_database::{
    Database, DatabaseError, KeySummary, LoggedRecord, RecordToAppend, SegmentEntry, SegmentMerge,
    StreamId,
};
use rayon::prelude::*;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod checkpoint;
use checkpoint::Checkpointer;

const SCHEMA: &str = r#"
-- Before 4 December 2026 every eventID was kept a second time, in a table of its own, to
-- keep a record once; a record is now looked up in its streams' segments (append_records).
DROP TABLE IF EXISTS event_ids;
CREATE TABLE IF NOT EXISTS streams (
    stream_id INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE -- StreamId::as_text
);
-- The event log: the new records of one stream in one batch, compressed together (a segment,
-- see codec.rs), in (eventTime, eventID) order from first_time to last_time.
CREATE TABLE IF NOT EXISTS segments (
    segment_id INTEGER PRIMARY KEY,
    stream_id  INTEGER NOT NULL,
    first_time INTEGER NOT NULL,
    last_time  INTEGER NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_stream ON segments (stream_id, first_time);
-- Where a record that may be stored already is looked up: the segments ending at or after it.
CREATE INDEX IF NOT EXISTS segments_by_stream_end ON segments (stream_id, last_time);
CREATE TABLE IF NOT EXISTS timelines (
    key_arn          TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL,
    state            TEXT NOT NULL,
    custom_key_store TEXT,
    deletion_date    INTEGER,
    last_use         INTEGER,
    json             NOT NULL -- compressed (a BLOB, see stored_jsons); TEXT before
);
CREATE INDEX IF NOT EXISTS timelines_by_key_id ON timelines (key_id);
CREATE INDEX IF NOT EXISTS timelines_by_key_store ON timelines (custom_key_store);
-- The alerts not yet delivered, by id (as `alerts` keeps it; TEXT before 4 December 2026):
-- narrow, so that marking a thousand alerts delivered writes a few pages (not every page of
-- the alerts, which a full disk may not have room for).
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT PRIMARY KEY
) WITHOUT ROWID;
-- Snapshots of timelines, which a rebuild starts from (KeyTimeline::snapshots): compressed
-- JSON, never changed. Since 5 December 2026.
CREATE TABLE IF NOT EXISTS snapshots (
    key_arn TEXT NOT NULL,
    id      TEXT NOT NULL,
    json    BLOB NOT NULL,
    PRIMARY KEY (key_arn, id)
) WITHOUT ROWID;
"#;

/// The raised alerts: an alert's id (keywatch's, 32 lower-case hex digits, as its 16 bytes, a
/// BLOB; any other as TEXT: [`AlertIdKey`]), its key's stream and its JSON compressed (see
/// [`stored_jsons`]). Everything else an alert says is in its JSON. Rows in the order raised
/// (a rowid table, its pages filled as appended) and an index of the ids, which are random.
const ALERTS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    alert_id  PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    json      NOT NULL
);";

/// An alert's id as `alerts` and `outbox` key it: the SQL of [`AlertIdKey::of`].
const ALERT_ID_KEY_SQL: &str = "CASE WHEN length(alert_id) = 32 AND alert_id NOT GLOB '*[^0-9a-f]*'
    THEN unhex(alert_id) ELSE alert_id END";

/// keywatch's database in SQLite.
pub struct SqliteDatabase {
    /// Checkpoints the log of a database file off the writing thread, from the first commit
    /// on. Declared before `conn`: dropped first, so that `conn` closes last.
    checkpointer: Option<Checkpointer>,
    /// The database file (`None` in memory), where the checkpointer connects.
    path: Option<PathBuf>,
    conn: Connection,
    /// `PRAGMA data_version` as opened: see [`Database::written_by_others`].
    data_version: i64,
    /// `streams` rows already known, by name.
    stream_ids: HashMap<String, i64>,
}

fn db(e: rusqlite::Error) -> DatabaseError {
    DatabaseError::Database(Box::new(e))
}

impl SqliteDatabase {
    /// Opens (creating if needed) a database file.
    pub fn open(path: &Path) -> Result<Self, DatabaseError> {
        let conn = Connection::open(path).map_err(db)?;
        use_wal(&conn)?;
        // A bigger page cache and rarer checkpoints: replays append hundreds of MB.
        conn.pragma_update(None, "cache_size", "-16384")
            .map_err(db)?;
        conn.pragma_update(None, "wal_autocheckpoint", "20000")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        let mut database = Self::init(conn)?;
        database.path = Some(path.to_owned());
        Ok(database)
    }

    /// Calls `visit` with each record of a stream, as logged, in (eventTime, eventID) order,
    /// once each: for reading a stream of any length in bounded memory
    /// ([`Database::visit_stream`]).
    pub fn visit_stream_records(
        &self,
        stream: &StreamId,
        mut visit: impl FnMut(LoggedRecord),
    ) -> Result<(), DatabaseError> {
        self.visit_segments(stream, None, &mut |record| {
            visit(record);
            Ok(())
        })
    }

    /// Reads a stream's segments in order of their first eventTime and merges them
    /// ([`SegmentMerge`]); with `after`, only the records later than it, of the segments
    /// that end after it.
    fn visit_segments(
        &self,
        stream: &StreamId,
        after: Option<Timestamp>,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        // The whole stream in the order of its index by first time; what ends after a time
        // by the index of last times (a stream's end), then ordered.
        let sql = match after {
            None => {
                "SELECT s.first_time, s.body FROM streams n
                 JOIN segments s ON s.stream_id = n.stream_id
                 WHERE n.name = ?1 ORDER BY s.first_time, s.segment_id"
            }
            Some(_) => {
                "SELECT s.first_time, s.body FROM streams n
                 JOIN segments s INDEXED BY segments_by_stream_end ON s.stream_id = n.stream_id
                 WHERE n.name = ?1 AND s.last_time > ?2 ORDER BY s.first_time, s.segment_id"
            }
        };
        let mut q = self.conn.prepare_cached(sql).map_err(db)?;
        let mut rows = match after {
            None => q.query([stream.as_text()]),
            Some(after) => q.query(params![stream.as_text(), after.millis()]),
        }
        .map_err(db)?;
        let mut merge = after.map_or_else(SegmentMerge::new, SegmentMerge::after);
        while let Some(row) = rows.next().map_err(db)? {
            let first_time = Timestamp::from_millis(row.get(0).map_err(db)?);
            let ValueRef::Blob(body) = row.get_ref(1).map_err(db)? else {
                return Err(DatabaseError::Corrupt {
                    what: "segment",
                    reason: format!("of {}: not a BLOB", stream.as_text()),
                });
            };
            merge.add_segment(first_time, keywatch_database::decode_segment(body)?, visit)?;
        }
        merge.finish(visit)
    }

    /// The alerts raised for a key, in the order they happened.
    pub fn alerts_for_key(&self, key: &KeyArn) -> Result<Vec<Alert>, DatabaseError> {
        self.alerts_oldest_first(
            "SELECT a.json FROM streams n JOIN alerts a ON a.stream_id = n.stream_id
             WHERE n.name = ?1",
            [StreamId::Key(key.clone()).as_text()],
        )
    }

    /// The alerts a query's rows of alert JSON name, oldest first.
    fn alerts_oldest_first(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Alert>, DatabaseError> {
        let mut q = self.conn.prepare_cached(sql).map_err(db)?;
        let mut rows = q.query(args).map_err(db)?;
        let mut alerts = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            alerts.push(read_json::<Alert>(row.get_ref(0).map_err(db)?, "alert")?);
        }
        keywatch_database::sort_oldest_first(&mut alerts);
        Ok(alerts)
    }

    /// A throwaway database in memory.
    pub fn in_memory() -> Result<Self, DatabaseError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> Result<Self, DatabaseError> {
        if Layout::of(&conn)?.is_current() {
            // What a later version adds (IF NOT EXISTS: nothing, most days).
            conn.execute_batch(SCHEMA).map_err(db)?;
            conn.execute_batch(ALERTS_TABLE).map_err(db)?;
        } else {
            // Read again under the write lock: another process opening the database at the
            // same moment may have moved it meanwhile (it then has nothing left to do here).
            // Rolled back if anything fails (the transaction is dropped uncommitted).
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            Layout::of(&tx)?.bring_up_to_date(&tx)?;
            tx.commit().map_err(db)?;
        }
        Ok(SqliteDatabase {
            checkpointer: None,
            path: None,
            data_version: data_version(&conn)?,
            conn,
            stream_ids: HashMap::new(),
        })
    }
}

/// How long opening a database waits for another process switching the same file to WAL.
const WAL_SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Switches the database to write-ahead logging. While another process switches the same
/// file (two processes opening a new or earlier database at once), SQLite answers "database
/// is locked" at once, whatever the busy timeout: tried again until [`WAL_SWITCH_WAIT`].
fn use_wal(conn: &Connection) -> Result<(), DatabaseError> {
    let deadline = std::time::Instant::now() + WAL_SWITCH_WAIT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done => return done.map_err(db),
        }
    }
}

/// `PRAGMA data_version`: the same number until another connection commits.
fn data_version(conn: &Connection) -> Result<i64, DatabaseError> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
        .map_err(db)
}

/// The tables a database file has, as far as telling its version goes.
struct Layout {
    /// `alerts`.
    alerts: bool,
    /// `alerts` with columns beside the JSON (before 4 December 2026).
    alert_columns: bool,
    /// `outbox`.
    outbox: bool,
    /// `segments`.
    segments: bool,
    /// `records` (the event log before segments).
    records: bool,
    /// `event_ids` (kept before 4 December 2026).
    event_ids: bool,
}

impl Layout {
    fn of(conn: &Connection) -> Result<Self, DatabaseError> {
        let exists = |name: &str| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db)
        };
        let alerts = exists("alerts")?;
        let alert_columns = alerts
            && conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('alerts') WHERE name = 'severity'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(db)?
                > 0;
        Ok(Layout {
            alerts,
            alert_columns,
            outbox: exists("outbox")?,
            segments: exists("segments")?,
            records: exists("records")?,
            event_ids: exists("event_ids")?,
        })
    }

    /// This version's tables, and nothing of an earlier version's.
    fn is_current(&self) -> bool {
        self.alerts
            && !self.alert_columns
            && self.outbox
            && self.segments
            && !self.records
            && !self.event_ids
    }

    /// Creates what is missing and moves what an earlier version kept, inside the caller's
    /// transaction.
    fn bring_up_to_date(&self, conn: &Connection) -> Result<(), DatabaseError> {
        conn.execute_batch(SCHEMA).map_err(db)?;
        if self.records {
            migrate_records_to_segments(conn)?;
        }
        if self.alerts && !self.outbox {
            // A database from before the outbox table: its unsent alerts move there.
            conn.execute_batch(
                "INSERT OR IGNORE INTO outbox (alert_id) SELECT alert_id FROM alerts WHERE sent_at IS NULL;
                 DROP INDEX IF EXISTS alerts_unsent;",
            )
            .map_err(db)?;
        }
        if self.alert_columns {
            migrate_alerts_to_keyed_rows(conn)
        } else {
            conn.execute_batch(ALERTS_TABLE).map_err(db)
        }
    }
}

impl Database for SqliteDatabase {
    async fn begin_batch(&mut self) -> Result<(), DatabaseError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db)
    }

    async fn commit_batch(&mut self) -> Result<(), DatabaseError> {
        self.conn.execute_batch("COMMIT").map_err(db)?;
        if let Some(path) = &self.path {
            self.checkpointer
                .get_or_insert_with(|| Checkpointer::start(path.clone()))
                .committed();
        }
        Ok(())
    }

    async fn abort_batch(&mut self) {
        // Nothing to undo when BEGIN itself failed; the error that brought us here is what counts.
        let _ = self.conn.execute_batch("ROLLBACK");
        // Streams created in the batch are gone with it.
        self.stream_ids.clear();
    }

    async fn append_records(
        &mut self,
        records: &[RecordToAppend<'_>],
    ) -> Result<Vec<bool>, DatabaseError> {
        // A record not known to be unseen is looked up in the segments of its streams that
        // span its eventTime; the others are new (batches are transactions: a record
        // stored is folded into its timelines, which it then no longer follows).
        let mut found = keywatch_database::FoundRecords::of(records);
        for (stream, (from, to)) in keywatch_database::windows_to_look_up(records) {
            let Some(stream_id) = self.known_stream_id(stream)? else {
                continue;
            };
            let mut q = self
                .conn
                .prepare_cached(
                    "SELECT body FROM segments INDEXED BY segments_by_stream_end
                     WHERE stream_id = ?1 AND last_time >= ?2 AND first_time <= ?3",
                )
                .map_err(db)?;
            let mut rows = q
                .query(params![stream_id, from.millis(), to.millis()])
                .map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                let ValueRef::Blob(body) = row.get_ref(0).map_err(db)? else {
                    return Err(DatabaseError::Corrupt {
                        what: "segment",
                        reason: format!("of {}: not a BLOB", stream.as_text()),
                    });
                };
                found.search(body)?;
            }
        }
        let fresh = found.fresh();
        // The new records, a segment per stream (more where one would pass SEGMENT_BYTES).
        let per_stream = keywatch_database::new_records_by_stream(records, &fresh);
        let mut segments: Vec<(i64, &[&RecordToAppend<'_>])> = Vec::new();
        for (stream, entries) in &per_stream {
            let stream_id = self.stream_id(stream)?;
            segments.extend(
                keywatch_database::split_by_size(entries, SEGMENT_BYTES)
                    .into_iter()
                    .map(|c| (stream_id, c)),
            );
        }
        let bodies = encode_segments(&segments)?;
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO segments (stream_id, first_time, last_time, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(db)?;
        for ((stream_id, entries), body) in segments.iter().zip(bodies) {
            let time = |r: Option<&&RecordToAppend<'_>>| r.map(|r| r.event_time.millis());
            insert
                .execute(params![
                    stream_id,
                    time(entries.first()),
                    time(entries.last()),
                    body
                ])
                .map_err(db)?;
        }
        Ok(fresh)
    }

    async fn visit_stream(
        &self,
        stream: &StreamId,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        self.visit_segments(stream, None, visit)
    }

    async fn visit_stream_after(
        &self,
        stream: &StreamId,
        after: Timestamp,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        self.visit_segments(stream, Some(after), visit)
    }

    async fn save_snapshot(
        &mut self,
        id: &str,
        timeline: &KeyTimeline,
    ) -> Result<(), DatabaseError> {
        let body = keywatch_database::encode_json(timeline, "snapshot")?;
        self.conn
            .prepare_cached("INSERT INTO snapshots (key_arn, id, json) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(params![timeline.key_arn.as_str(), id, body])
            .map_err(db)?;
        Ok(())
    }

    async fn delete_snapshots(&mut self, key: &KeyArn, ids: &[&str]) -> Result<(), DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached("DELETE FROM snapshots WHERE key_arn = ?1 AND id = ?2")
            .map_err(db)?;
        for id in ids {
            q.execute(params![key.as_str(), id]).map_err(db)?;
        }
        Ok(())
    }

    async fn load_snapshot(
        &self,
        key: &KeyArn,
        id: &str,
    ) -> Result<Option<KeyTimeline>, DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT json FROM snapshots WHERE key_arn = ?1 AND id = ?2")
            .map_err(db)?;
        let mut rows = q.query(params![key.as_str(), id]).map_err(db)?;
        match rows.next().map_err(db)? {
            Some(row) => read_json(row.get_ref(0).map_err(db)?, "snapshot").map(Some),
            None => Ok(None),
        }
    }

    async fn load_timeline(&self, key: &KeyArn) -> Result<Option<KeyTimeline>, DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT json FROM timelines WHERE key_arn = ?1")
            .map_err(db)?;
        let mut rows = q.query([key.as_str()]).map_err(db)?;
        match rows.next().map_err(db)? {
            Some(row) => match row.get_ref(0).map_err(db)? {
                ValueRef::Blob([]) => Err(DatabaseError::Corrupt {
                    what: "timeline",
                    reason: keywatch_database::TIMELINE_BEHIND.to_owned(),
                }),
                json => read_json(json, "timeline").map(Some),
            },
            None => Ok(None),
        }
    }

    async fn save_timelines(&mut self, timelines: &[&KeyTimeline]) -> Result<(), DatabaseError> {
        let bodies = stored_jsons(timelines, "timeline")?;
        self.upsert_timelines(timelines, bodies)
    }

    /// The summary columns, and an empty BLOB where the timeline's JSON belongs: what no
    /// version writes otherwise, and what every version fails to decode (and rebuilds).
    async fn save_timeline_summaries(
        &mut self,
        timelines: &[&KeyTimeline],
    ) -> Result<(), DatabaseError> {
        self.upsert_timelines(timelines, timelines.iter().map(|_| Vec::new()))
    }

    async fn keys_in_key_store(
        &self,
        key_store: &KeyStoreRef,
    ) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE custom_key_store = ?1 ORDER BY key_arn",
            [key_store.to_string()],
        )
    }

    async fn find_keys(&self, key: &str) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE key_arn = ?1 OR key_id = ?1 ORDER BY key_arn",
            [key],
        )
    }

    async fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE state IN ('PendingDeletion', 'PendingReplicaDeletion') ORDER BY key_arn",
            [],
        )
    }

    /// SQLite's `data_version` moves when another connection (another process, or another
    /// handle in this one) commits, and only then.
    async fn written_by_others(&self) -> Result<bool, DatabaseError> {
        Ok(data_version(&self.conn)? != self.data_version)
    }

    async fn key_count(&self) -> Result<u64, DatabaseError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM timelines", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(db)
    }

    async fn list_keys(&self, state: Option<KeyState>) -> Result<Vec<KeySummary>, DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT key_arn, state, deletion_date, last_use, custom_key_store FROM timelines
                 WHERE ?1 IS NULL OR state = ?1 ORDER BY key_arn",
            )
            .map_err(db)?;
        let rows = q
            .query_map([state.map(KeyState::as_str)], |r| {
                Ok(KeySummary {
                    key_arn: r.get(0)?,
                    state: KeyState::parse(&r.get::<_, String>(1)?).unwrap_or_default(),
                    deletion_date: r.get::<_, Option<i64>>(2)?.map(Timestamp::from_millis),
                    last_use: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
                    custom_key_store_id: r
                        .get::<_, Option<String>>(4)?
                        .and_then(|s| s.rsplit('/').next().map(str::to_owned)),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    async fn unsent_alerts(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError> {
        // Oldest first means by the alert's eventTime (then id), as in every database: the
        // outbox is read whole (it holds what one delivery could not send) and sorted here.
        let mut alerts = self.alerts_oldest_first(
            "SELECT a.json FROM outbox o JOIN alerts a ON a.alert_id = o.alert_id",
            [],
        )?;
        alerts.truncate(limit);
        Ok(alerts)
    }

    async fn mark_sent(&mut self, alert_ids: &[&str], _at: Timestamp) -> Result<(), DatabaseError> {
        // One transaction for them all (inside a batch, the batch's).
        let delete = |conn: &Connection| -> Result<(), DatabaseError> {
            let mut q = conn
                .prepare_cached("DELETE FROM outbox WHERE alert_id = ?1")
                .map_err(db)?;
            for id in alert_ids {
                q.execute([AlertIdKey::of(id)]).map_err(db)?;
            }
            Ok(())
        };
        if !self.conn.is_autocommit() {
            return delete(&self.conn);
        }
        // Rolled back on drop if a delete fails.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        delete(&tx)?;
        tx.commit().map_err(db)
    }

    async fn record_alerts(
        &mut self,
        alerts: &[Alert],
        _raised_at: Timestamp, // the JSON's eventTime orders alerts
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut fresh = Vec::with_capacity(alerts.len());
        let bodies = stored_jsons(alerts, "alert")?;
        let streams = alerts
            .iter()
            .map(|a| self.stream_id(&StreamId::Key(a.key_arn.clone())))
            .collect::<Result<Vec<i64>, _>>()?;
        {
            let mut insert = self
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts (alert_id, stream_id, json) VALUES (?1, ?2, ?3)",
                )
                .map_err(db)?;
            let mut outbox = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO outbox (alert_id) VALUES (?1)")
                .map_err(db)?;
            for ((a, json), stream_id) in alerts.iter().zip(bodies).zip(streams) {
                let id = AlertIdKey::of(&a.alert_id);
                let n = insert.execute(params![id, stream_id, json]).map_err(db)?;
                if n == 1 {
                    outbox.execute([id]).map_err(db)?;
                }
                fresh.push(n == 1);
            }
        }
        Ok(fresh)
    }
}

/// Timelines' or alerts' JSON as the `json` columns keep it, in their order, encoded on every
/// core ([`keywatch_database::encode_json`]): a BLOB. A timeline is mostly repeated names and
/// times, and is rewritten by every batch that touches its key: compressed, it is a fraction
/// of the bytes to write.
fn stored_jsons<T: serde::Serialize + Sync>(
    values: &[T],
    what: &'static str,
) -> Result<Vec<Vec<u8>>, DatabaseError> {
    values
        .par_iter()
        .map(|v| keywatch_database::encode_json(v, what))
        .collect()
}

/// Reads what [`stored_jsons`] wrote, or the plain TEXT that versions before it wrote.
fn read_json<T: serde::de::DeserializeOwned>(
    value: ValueRef<'_>,
    what: &'static str,
) -> Result<T, DatabaseError> {
    let corrupt = |reason: String| DatabaseError::Corrupt { what, reason };
    match value {
        ValueRef::Text(text) => serde_json::from_slice(text).map_err(|e| corrupt(e.to_string())),
        ValueRef::Blob(packed) => keywatch_database::decode_json(packed, what),
        other => Err(corrupt(format!(
            "a {:?} where JSON belongs",
            other.data_type()
        ))),
    }
}

/// The most record text a segment holds (before compression): a stream is read a segment
/// at a time, and a segment this size compresses about as well as a longer one (zstd at
/// its level 1 looks back 512 KiB).
const SEGMENT_BYTES: usize = 1 << 20;

/// The segments' bodies, in their order, compressed on every core (replay's projecting thread
/// would otherwise compress every record itself).
fn encode_segments(
    segments: &[(i64, &[&RecordToAppend<'_>])],
) -> Result<Vec<Vec<u8>>, DatabaseError> {
    segments
        .par_iter()
        .map(|(_, records)| keywatch_database::encode_records_segment(records))
        .collect()
}

/// An alert's id as `alerts` and `outbox` key it: keywatch's ids (32 lower-case hex digits)
/// as their 16 bytes, any other as its text (the two never compare equal).
#[derive(Clone, Copy)]
enum AlertIdKey<'a> {
    Bytes([u8; 16]),
    Text(&'a str),
}

impl<'a> AlertIdKey<'a> {
    fn of(alert_id: &'a str) -> Self {
        match keywatch_database::alert_id_bytes(alert_id) {
            Some(bytes) => AlertIdKey::Bytes(bytes),
            None => AlertIdKey::Text(alert_id),
        }
    }
}

impl rusqlite::ToSql for AlertIdKey<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            AlertIdKey::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            AlertIdKey::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

/// Moves the alerts of a database from before 4 December 2026 (a rowid table, the id as
/// TEXT, kind, severity, key ARN and times in columns of their own beside the JSON) into
/// [`ALERTS_TABLE`], and the outbox's ids to the same keys, in the caller's transaction. A
/// key's stream is named `key:<ARN>`, as [`StreamId::as_text`] names it.
fn migrate_alerts_to_keyed_rows(conn: &Connection) -> Result<(), DatabaseError> {
    conn.execute_batch(&format!(
        "ALTER TABLE alerts RENAME TO alerts_before_keyed_rows;
         {ALERTS_TABLE}
         INSERT OR IGNORE INTO streams (name)
             SELECT DISTINCT 'key:' || key_arn FROM alerts_before_keyed_rows;
         INSERT OR IGNORE INTO alerts (alert_id, stream_id, json)
             SELECT {ALERT_ID_KEY_SQL}, n.stream_id, a.json
             FROM alerts_before_keyed_rows a JOIN streams n ON n.name = 'key:' || a.key_arn;
         UPDATE OR IGNORE outbox SET alert_id = {ALERT_ID_KEY_SQL} WHERE typeof(alert_id) = 'text';
         DROP TABLE alerts_before_keyed_rows;"
    ))
    .map_err(db)
}

/// Moves a database's event log from the form before segments (a `records` row per record,
/// deflated alone, and a `stream_events` index row per record and stream) into segments,
/// in the caller's transaction, then drops the old tables.
fn migrate_records_to_segments(conn: &Connection) -> Result<(), DatabaseError> {
    let streams: Vec<i64> = conn
        .prepare("SELECT stream_id FROM streams")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    let mut read = conn
        .prepare(
            "SELECT s.event_time, s.event_id, r.record FROM stream_events s
             JOIN records r ON r.event_id = s.event_id
             WHERE s.stream_id = ?1 ORDER BY s.event_time, s.event_id",
        )
        .map_err(db)?;
    let mut insert = conn
        .prepare(
            "INSERT INTO segments (stream_id, first_time, last_time, body) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db)?;
    for stream_id in streams {
        let mut entries: Vec<SegmentEntry> = Vec::new();
        let mut size = 0;
        let mut flush = |entries: &mut Vec<SegmentEntry>| -> Result<(), DatabaseError> {
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                insert
                    .execute(params![
                        stream_id,
                        first.event_time.millis(),
                        last.event_time.millis(),
                        keywatch_database::encode_segment(entries)?
                    ])
                    .map_err(db)?;
            }
            entries.clear();
            Ok(())
        };
        let mut rows = read.query([stream_id]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let stored: Vec<u8> = row.get(2).map_err(db)?;
            let json = keywatch_database::decode_record(&stored)?;
            if size + json.len() > SEGMENT_BYTES {
                flush(&mut entries)?;
                size = 0;
            }
            size += json.len();
            entries.push(SegmentEntry {
                event_time: Timestamp::from_millis(row.get(0).map_err(db)?),
                event_id: row.get(1).map_err(db)?,
                record: LoggedRecord::CloudTrail(json),
            });
        }
        flush(&mut entries)?;
    }
    conn.execute_batch("DROP TABLE stream_events; DROP TABLE records;")
        .map_err(db)
}

impl SqliteDatabase {
    /// Writes each timeline's row: its summary columns and `bodies` (compressed JSON, or
    /// empty for a timeline saved in summary only).
    fn upsert_timelines(
        &mut self,
        timelines: &[&KeyTimeline],
        bodies: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<(), DatabaseError> {
        let mut upsert = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO timelines
                 (key_arn, key_id, state, custom_key_store, deletion_date, last_use, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db)?;
        for (t, json) in timelines.iter().zip(bodies) {
            upsert
                .execute(params![
                    t.key_arn.as_str(),
                    t.key_arn.key_id(),
                    t.state.as_str(),
                    t.key_store_ref().map(|s| s.to_string()),
                    t.deletion_date.map(Timestamp::millis),
                    t.last_use().map(Timestamp::millis),
                    json
                ])
                .map_err(db)?;
        }
        Ok(())
    }

    /// The `streams` row of a stream, created if new.
    /// A stream's `streams` row, if it has one.
    fn known_stream_id(&mut self, stream: &StreamId) -> Result<Option<i64>, DatabaseError> {
        let name = stream.as_text();
        if let Some(id) = self.stream_ids.get(&name) {
            return Ok(Some(*id));
        }
        let id: Option<i64> = self
            .conn
            .prepare_cached("SELECT stream_id FROM streams WHERE name = ?1")
            .and_then(|mut q| q.query_row([&name], |r| r.get(0)).optional())
            .map_err(db)?;
        if let Some(id) = id {
            self.stream_ids.insert(name, id);
        }
        Ok(id)
    }

    fn stream_id(&mut self, stream: &StreamId) -> Result<i64, DatabaseError> {
        let name = stream.as_text();
        if let Some(id) = self.stream_ids.get(&name) {
            return Ok(*id);
        }
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO streams (name) VALUES (?1)")
            .and_then(|mut q| q.execute([&name]))
            .map_err(db)?;
        let id = self
            .conn
            .prepare_cached("SELECT stream_id FROM streams WHERE name = ?1")
            .and_then(|mut q| q.query_row([&name], |r| r.get(0)))
            .map_err(db)?;
        self.stream_ids.insert(name, id);
        Ok(id)
    }

    fn arns(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<KeyArn>, DatabaseError> {
        let mut q = self.conn.prepare_cached(sql).map_err(db)?;
        let rows = q.query_map(args, |r| r.get::<_, String>(0)).map_err(db)?;
        let mut out = Vec::new();
        for text in rows {
            let text = text.map_err(db)?;
            out.push(KeyArn::parse(&text).ok_or(DatabaseError::Corrupt {
                what: "key ARN",
                reason: text,
            })?);
        }
        Ok(out)
    }
}
