//! keywatch's embedded default database: the event log, timelines and alerts in one SQLite
//! file (or in memory), behind [`keywatch_database::Database`]. The Lambda functions do not link it.

use keywatch_core::{Alert, KeyArn, KeyStoreRef, KeyTimeline, Timestamp};
use keywatch_database::{Database, DatabaseError, KeySummary, RecordToAppend, StreamId};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS records (
    event_id   TEXT PRIMARY KEY,
    event_time INTEGER NOT NULL,
    record     BLOB NOT NULL -- the CloudTrail record, see codec.rs
);
CREATE TABLE IF NOT EXISTS streams (
    stream_id INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE -- StreamId::as_text
);
CREATE TABLE IF NOT EXISTS stream_events (
    stream_id  INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (stream_id, event_time, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timelines (
    key_arn          TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL,
    state            TEXT NOT NULL,
    custom_key_store TEXT,
    deletion_date    INTEGER,
    last_use         INTEGER,
    json             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timelines_by_key_id ON timelines (key_id);
CREATE INDEX IF NOT EXISTS timelines_by_key_store ON timelines (custom_key_store);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id  TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    key_arn   TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    sent_at   INTEGER, -- no longer written: the outbox table says what is unsent
    json      TEXT NOT NULL
);
-- The alerts not yet delivered: narrow, so that marking a thousand alerts delivered writes a
-- few pages (not every page of the alerts, which a full disk may not have room for).
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT PRIMARY KEY
) WITHOUT ROWID;
"#;

/// keywatch's database in SQLite.
pub struct SqliteDatabase {
    conn: Connection,
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
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        // A bigger page cache and rarer checkpoints: replays append hundreds of MB.
        conn.pragma_update(None, "cache_size", "-65536")
            .map_err(db)?;
        conn.pragma_update(None, "wal_autocheckpoint", "20000")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        Self::init(conn)
    }

    /// Calls `visit` with each record of a stream, decoded, in (eventTime, eventID) order,
    /// one at a time: for reading a stream of any length in bounded memory.
    pub fn visit_stream_records(
        &self,
        stream: &StreamId,
        mut visit: impl FnMut(&str),
    ) -> Result<(), DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT r.record FROM streams n
                 JOIN stream_events s ON s.stream_id = n.stream_id
                 JOIN records r ON r.event_id = s.event_id
                 WHERE n.name = ?1 ORDER BY s.event_time, s.event_id",
            )
            .map_err(db)?;
        let mut rows = q.query([stream.as_text()]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let bytes: Vec<u8> = row.get(0).map_err(db)?;
            visit(&keywatch_database::decode_record(&bytes)?);
        }
        Ok(())
    }

    /// The alerts raised for a key, in the order they happened.
    pub fn alerts_for_key(&self, key: &KeyArn) -> Result<Vec<Alert>, DatabaseError> {
        self.alerts_oldest_first("SELECT json FROM alerts WHERE key_arn = ?1", [key.as_str()])
    }

    /// The alerts a query's rows of alert JSON name, oldest first.
    fn alerts_oldest_first(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Alert>, DatabaseError> {
        let mut q = self.conn.prepare_cached(sql).map_err(db)?;
        let rows = q.query_map(args, |r| r.get::<_, String>(0)).map_err(db)?;
        let mut alerts = rows
            .map(|r| {
                r.map_err(db).and_then(|j| {
                    serde_json::from_str::<Alert>(&j).map_err(|e| DatabaseError::Corrupt {
                        what: "alert",
                        reason: e.to_string(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        keywatch_database::sort_oldest_first(&mut alerts);
        Ok(alerts)
    }

    /// A throwaway database in memory.
    pub fn in_memory() -> Result<Self, DatabaseError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, DatabaseError> {
        let exists = |name: &str| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db)
        };
        let (had_alerts, had_outbox) = (exists("alerts")?, exists("outbox")?);
        conn.execute_batch(SCHEMA).map_err(db)?;
        if had_alerts && !had_outbox {
            // A database from before the outbox table: its unsent alerts move there.
            conn.execute_batch(
                "BEGIN;
                 INSERT OR IGNORE INTO outbox (alert_id) SELECT alert_id FROM alerts WHERE sent_at IS NULL;
                 DROP INDEX IF EXISTS alerts_unsent;
                 COMMIT;",
            )
            .map_err(db)?;
        }
        Ok(SqliteDatabase {
            conn,
            stream_ids: HashMap::new(),
        })
    }
}

impl Database for SqliteDatabase {
    fn begin_batch(&mut self) -> Result<(), DatabaseError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db)
    }

    fn commit_batch(&mut self) -> Result<(), DatabaseError> {
        self.conn.execute_batch("COMMIT").map_err(db)
    }

    fn abort_batch(&mut self) {
        // Nothing to undo when BEGIN itself failed; the error that brought us here is what counts.
        let _ = self.conn.execute_batch("ROLLBACK");
        // Streams created in the batch are gone with it.
        self.stream_ids.clear();
    }

    fn append_records(
        &mut self,
        records: &[RecordToAppend<'_>],
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut fresh = Vec::with_capacity(records.len());
        let mut ids: Vec<Vec<i64>> = Vec::with_capacity(records.len());
        for r in records {
            let mut row = Vec::with_capacity(r.streams.len());
            for s in &r.streams {
                row.push(self.stream_id(s)?);
            }
            ids.push(row);
        }
        {
            let mut insert = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO records (event_id, event_time, record) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            let mut index = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO stream_events (stream_id, event_time, event_id) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            for (r, stream_ids) in records.iter().zip(&ids) {
                let new = insert
                    .execute(params![r.event_id, r.event_time.millis(), r.stored])
                    .map_err(db)?
                    == 1;
                if new {
                    for s in stream_ids {
                        index
                            .execute(params![s, r.event_time.millis(), r.event_id])
                            .map_err(db)?;
                    }
                }
                fresh.push(new);
            }
        }
        Ok(fresh)
    }

    fn stream_records(&self, stream: &StreamId) -> Result<Vec<String>, DatabaseError> {
        let mut out = Vec::new();
        self.visit_stream_records(stream, |json| out.push(json.to_owned()))?;
        Ok(out)
    }

    fn load_timeline(&self, key: &KeyArn) -> Result<Option<KeyTimeline>, DatabaseError> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT json FROM timelines WHERE key_arn = ?1")
            .map_err(db)?
            .query_row([key.as_str()], |r| r.get(0))
            .optional()
            .map_err(db)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| DatabaseError::Corrupt {
                what: "timeline",
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    fn save_timelines(&mut self, timelines: &[&KeyTimeline]) -> Result<(), DatabaseError> {
        {
            let mut upsert = self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO timelines
                     (key_arn, key_id, state, custom_key_store, deletion_date, last_use, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db)?;
            for t in timelines {
                let json = serde_json::to_string(t).map_err(|e| DatabaseError::Corrupt {
                    what: "timeline",
                    reason: e.to_string(),
                })?;
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
        }
        Ok(())
    }

    fn keys_in_key_store(&self, key_store: &KeyStoreRef) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE custom_key_store = ?1 ORDER BY key_arn",
            [key_store.to_string()],
        )
    }

    fn find_keys(&self, key: &str) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE key_arn = ?1 OR key_id = ?1 ORDER BY key_arn",
            [key],
        )
    }

    fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(
            "SELECT key_arn FROM timelines WHERE state IN ('PendingDeletion', 'PendingReplicaDeletion') ORDER BY key_arn",
            [],
        )
    }

    fn key_count(&self) -> Result<u64, DatabaseError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM timelines", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(db)
    }

    fn list_keys(&self, state: Option<&str>) -> Result<Vec<KeySummary>, DatabaseError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT key_arn, state, deletion_date, last_use, custom_key_store FROM timelines
                 WHERE ?1 IS NULL OR state = ?1 ORDER BY key_arn",
            )
            .map_err(db)?;
        let rows = q
            .query_map([state], |r| {
                Ok(KeySummary {
                    key_arn: r.get(0)?,
                    state: r.get(1)?,
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

    fn unsent_alerts(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError> {
        // Oldest first means by the alert's eventTime (then id), as in every database: the
        // outbox is read whole (it holds what one delivery could not send) and sorted here.
        let mut alerts = self.alerts_oldest_first(
            "SELECT a.json FROM outbox o JOIN alerts a ON a.alert_id = o.alert_id",
            [],
        )?;
        alerts.truncate(limit);
        Ok(alerts)
    }

    fn mark_sent(&mut self, alert_ids: &[&str], _at: Timestamp) -> Result<(), DatabaseError> {
        // One transaction for them all (inside a batch, the batch's).
        let own = self.conn.is_autocommit();
        if own {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
        }
        let deleted = (|| {
            let mut q = self
                .conn
                .prepare_cached("DELETE FROM outbox WHERE alert_id = ?1")
                .map_err(db)?;
            for id in alert_ids {
                q.execute([id]).map_err(db)?;
            }
            Ok(())
        })();
        if own {
            match &deleted {
                Ok(()) => self.conn.execute_batch("COMMIT").map_err(db)?,
                Err(_) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
            }
        }
        deleted
    }

    fn record_alerts(
        &mut self,
        alerts: &[Alert],
        raised_at: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        let mut fresh = Vec::with_capacity(alerts.len());
        {
            let mut insert = self
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts (alert_id, kind, severity, key_arn, raised_at, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            let mut outbox = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO outbox (alert_id) VALUES (?1)")
                .map_err(db)?;
            for a in alerts {
                let json = serde_json::to_string(a).map_err(|e| DatabaseError::Corrupt {
                    what: "alert",
                    reason: e.to_string(),
                })?;
                let n = insert
                    .execute(params![
                        a.alert_id,
                        a.kind.as_str(),
                        a.severity.as_str(),
                        a.key_arn.as_str(),
                        raised_at.millis(),
                        json
                    ])
                    .map_err(db)?;
                if n == 1 {
                    outbox.execute([&a.alert_id]).map_err(db)?;
                }
                fresh.push(n == 1);
            }
        }
        Ok(fresh)
    }
}

impl SqliteDatabase {
    /// The `streams` row of a stream, created if new.
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
