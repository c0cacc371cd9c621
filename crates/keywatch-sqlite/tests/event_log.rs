//! The SQLite event log: records kept once each, in segments per stream and batch, read back
//! in (eventTime, eventID) order; and a database from before segments moved into them.

mod common;

use common::Wait;
use keywatch_core::{KeyArn, KeyStoreRef, Timestamp};
use keywatch_database::{encode_record, Database, LoggedRecord, RecordToAppend, StreamId};
use keywatch_sqlite::SqliteDatabase;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn key_stream() -> StreamId {
    StreamId::Key(KeyArn::parse(KEY).expect("key ARN"))
}

fn key_store_stream() -> StreamId {
    StreamId::KeyStore(KeyStoreRef {
        account: "111122223333".into(),
        region: "us-east-1".into(),
        custom_key_store_id: "cks-1234567890abcdef0".into(),
    })
}

/// A record as the database sees it: eventID, eventTime (seconds after a base) and text.
struct Record {
    id: String,
    time: Timestamp,
    json: String,
}

fn record(id: &str, second: i64) -> Record {
    Record {
        id: id.to_owned(),
        time: Timestamp::from_millis(1_790_000_000_000 + second * 1000),
        // Long enough that a few thousand pass a segment's size and the threshold for
        // encoding on several threads.
        json: format!(
            r#"{{"eventID":"{id}","eventName":"Decrypt","padding":"{}"}}"#,
            "x".repeat(600 + (second as usize % 7) * 50)
        ),
    }
}

fn append(db: &mut SqliteDatabase, records: &[Record], streams: &[StreamId]) -> Vec<bool> {
    let records: Vec<(&Record, bool)> = records.iter().map(|r| (r, false)).collect();
    append_as(db, &records, streams)
}

/// Appends records each known to be unseen (following its key's timeline) or not.
fn append_as(
    db: &mut SqliteDatabase,
    records: &[(&Record, bool)],
    streams: &[StreamId],
) -> Vec<bool> {
    let to_append: Vec<RecordToAppend<'_>> = records
        .iter()
        .map(|(r, unseen)| RecordToAppend {
            event_id: &r.id,
            event_time: r.time,
            json: &r.json,
            kept_use: None,
            streams: streams.to_vec(),
            unseen: *unseen,
        })
        .collect();
    db.begin_batch().wait().expect("begin");
    let fresh = db.append_records(&to_append).wait().expect("append");
    db.commit_batch().wait().expect("commit");
    fresh
}

/// The records as logged in (eventTime, eventID) order, once each.
fn in_order<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<LoggedRecord> {
    let mut all: Vec<&Record> = records.into_iter().collect();
    all.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    all.dedup_by(|a, b| a.id == b.id);
    all.into_iter()
        .map(|r| LoggedRecord::CloudTrail(r.json.clone()))
        .collect()
}

/// The one number a query of the database file answers (a count).
fn count(path: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row(sql, [], |r| r.get(0))
        .expect(sql)
}

fn segments(path: &std::path::Path) -> i64 {
    count(path, "SELECT count(*) FROM segments")
}

#[test]
fn stream_reads_merge_segments_in_time_order_once_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let mut db = SqliteDatabase::open(&path).expect("open");
    // A batch of 3,000 records two seconds apart: several segments, encoded on every core.
    let first: Vec<Record> = (0..3000)
        .map(|i| record(&format!("a-{i:05}"), 2 * i))
        .collect();
    assert!(append(&mut db, &first, &[key_stream()])
        .iter()
        .all(|new| *new));
    let after_first = segments(&path);
    assert!(
        after_first >= 3,
        "3,000 records of 600+ bytes in segments of 1 MiB: {after_first}"
    );
    // Late records between them, some also in a key store's stream, and the first batch
    // again (nothing new, nothing stored).
    let late: Vec<Record> = (0..500)
        .map(|i| record(&format!("b-{i:05}"), 12 * i + 1))
        .collect();
    assert!(
        append(&mut db, &late[..250], &[key_stream(), key_store_stream()])
            .iter()
            .all(|new| *new)
    );
    assert!(append(&mut db, &late[250..], &[key_stream()])
        .iter()
        .all(|new| *new));
    let after_late = segments(&path);
    assert!(append(&mut db, &first, &[key_stream()])
        .iter()
        .all(|new| !*new));
    assert_eq!(
        segments(&path),
        after_late,
        "a batch of copies stores nothing"
    );
    // A segment stored twice (as a crash between two writers could leave) reads once.
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute(
            "INSERT INTO segments (stream_id, first_time, last_time, body)
             SELECT stream_id, first_time, last_time, body FROM segments
             WHERE segment_id = (SELECT max(segment_id) FROM segments)",
            [],
        )
        .expect("copy a segment");

    let db = SqliteDatabase::open(&path).expect("reopen");
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("key stream"),
        in_order(first.iter().chain(&late))
    );
    assert_eq!(
        db.stream_records(&key_store_stream())
            .wait()
            .expect("key store stream"),
        in_order(&late[..250])
    );
    let mut visited = Vec::new();
    db.visit_stream_records(&key_stream(), |record| visited.push(record))
        .expect("visit");
    assert_eq!(visited.len(), 3500);
}

#[test]
fn a_batch_keeps_its_late_records_in_segments_of_their_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let mut db = SqliteDatabase::open(&path).expect("open");
    // Ten batches of uses in order, each but the first with a record that came late: of a
    // time within the first batch's.
    let batches: Vec<Vec<Record>> = (0..10)
        .map(|b| {
            (0..100)
                .map(|i| record(&format!("{b}-{i:03}"), 1000 * b + i))
                .collect()
        })
        .collect();
    let late: Vec<Record> = (1..10)
        .map(|b| record(&format!("late-{b}"), 10 * b + 5))
        .collect();
    for (b, batch) in batches.iter().enumerate() {
        let mut records: Vec<(&Record, bool)> = batch.iter().map(|r| (r, true)).collect();
        if b > 0 {
            records.push((&late[b - 1], false));
        }
        assert!(append_as(&mut db, &records, &[key_stream()])
            .iter()
            .all(|new| *new));
    }
    // Each late record is a segment of its own, so the batches' segments do not overlap:
    // a stream is read a segment at a time (and its late records), however long it is.
    let late_segments = count(
        &path,
        "SELECT count(*) FROM segments WHERE first_time = last_time",
    );
    assert_eq!(late_segments, 9);
    let overlapping = count(
        &path,
        "SELECT count(*) FROM segments a JOIN segments b ON a.segment_id < b.segment_id
         WHERE a.first_time <= b.last_time AND b.first_time <= a.last_time
         AND a.first_time < a.last_time AND b.first_time < b.last_time",
    );
    assert_eq!(overlapping, 0, "batches' segments overlap");
    let db = SqliteDatabase::open(&path).expect("reopen");
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("key stream"),
        in_order(batches.iter().flatten().chain(&late))
    );
}

#[test]
fn event_ids_in_uuid_and_other_forms_are_told_apart() {
    let mut db = SqliteDatabase::in_memory().expect("database");
    // A UUID is kept as its 16 bytes: the first one's are the text ID beside it; the last
    // is the third in capitals. All four are different records.
    let ids = [
        "30313233-3435-3637-3839-616263646566",
        "0123456789abcdef",
        "2f0c1d4e-8a5b-4c3d-9e2f-0123456789ab",
        "2F0C1D4E-8A5B-4C3D-9E2F-0123456789AB",
    ];
    let records: Vec<Record> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| record(id, i as i64))
        .collect();
    assert_eq!(append(&mut db, &records, &[key_stream()]), [true; 4]);
    assert_eq!(append(&mut db, &records, &[key_stream()]), [false; 4]);
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("read").len(),
        4
    );
}

/// The event log's tables before segments, as that version created them.
const SCHEMA_BEFORE_SEGMENTS: &str = "
CREATE TABLE records (
    event_id   TEXT PRIMARY KEY,
    event_time INTEGER NOT NULL,
    record     BLOB NOT NULL
);
CREATE TABLE streams (
    stream_id INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE
);
CREATE TABLE stream_events (
    stream_id  INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (stream_id, event_time, event_id)
) WITHOUT ROWID;
";

/// A database file at `path` as the version before segments left it: 40 records, every one
/// in the key's stream and every fourth in the key store's too. Returns the records.
fn database_from_before_segments(path: &std::path::Path) -> Vec<Record> {
    let old: Vec<Record> = (0..40)
        .map(|i| record(&format!("2f0c1d4e-8a5b-4c3d-9e2f-{i:012}"), 40 - i))
        .collect();
    let conn = rusqlite::Connection::open(path).expect("create");
    conn.execute_batch(SCHEMA_BEFORE_SEGMENTS).expect("schema");
    for (n, stream) in [key_stream(), key_store_stream()].iter().enumerate() {
        conn.execute(
            "INSERT INTO streams (stream_id, name) VALUES (?1, ?2)",
            rusqlite::params![n as i64 + 1, stream.as_text()],
        )
        .expect("stream");
    }
    for (i, r) in old.iter().enumerate() {
        conn.execute(
            "INSERT INTO records VALUES (?1, ?2, ?3)",
            rusqlite::params![r.id, r.time.millis(), encode_record(&r.json)],
        )
        .expect("record");
        for stream in if i % 4 == 0 { &[1, 2][..] } else { &[1][..] } {
            conn.execute(
                "INSERT INTO stream_events VALUES (?1, ?2, ?3)",
                rusqlite::params![stream, r.time.millis(), r.id],
            )
            .expect("index");
        }
    }
    old
}

#[test]
fn a_database_from_before_segments_is_moved_into_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let old = database_from_before_segments(&path);

    let mut db = SqliteDatabase::open(&path).expect("open and move");
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("key stream"),
        in_order(&old)
    );
    assert_eq!(
        db.stream_records(&key_store_stream())
            .wait()
            .expect("key store stream"),
        in_order(old.iter().step_by(4))
    );
    let tables = count(
        &path,
        "SELECT count(*) FROM sqlite_master WHERE name IN ('records', 'stream_events')",
    );
    assert_eq!(tables, 0, "the old tables are gone");
    // The moved records are known; a new one joins them in order.
    assert!(append(&mut db, &old, &[key_stream()])
        .iter()
        .all(|new| !*new));
    let new = [record("new-1", 20)];
    assert_eq!(append(&mut db, &new, &[key_stream()]), [true]);
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("key stream"),
        in_order(old.iter().chain(&new))
    );
}

/// Processes that open a database from an earlier version at the same moment (a `keywatch
/// run` and a `keywatch timeline` after an upgrade) move it once: each opens it, and finds
/// every record once.
#[test]
fn processes_opening_an_earlier_database_at_once_move_it_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let old = database_from_before_segments(&path);
    let openers = 4;
    let together = std::sync::Barrier::new(openers);
    let opened: Vec<Result<Vec<LoggedRecord>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..openers)
            .map(|_| {
                scope.spawn(|| {
                    together.wait();
                    let db = SqliteDatabase::open(&path).map_err(|e| e.to_string())?;
                    db.stream_records(&key_stream())
                        .wait()
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("opener"))
            .collect()
    });
    for records in opened {
        assert_eq!(records.expect("opened and read"), in_order(&old));
    }
    let tables = count(
        &path,
        "SELECT count(*) FROM sqlite_master WHERE name IN ('records', 'stream_events')",
    );
    assert_eq!(tables, 0, "the old tables are gone");
}

#[test]
fn a_database_that_kept_event_ids_apart_drops_them_and_keeps_each_record_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let kept: Vec<Record> = (0..30)
        .map(|i| record(&format!("2f0c1d4e-8a5b-4c3d-9e2f-{i:012}"), 3 * i))
        .collect();
    {
        let mut db = SqliteDatabase::open(&path).expect("create");
        assert!(append(&mut db, &kept, &[key_stream()]).iter().all(|n| *n));
    }
    // The table the versions before 4 December 2026 kept every eventID in.
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute_batch(
            "CREATE TABLE event_ids (event_id PRIMARY KEY) WITHOUT ROWID;
             INSERT INTO event_ids VALUES ('2f0c1d4e-8a5b-4c3d-9e2f-000000000000');",
        )
        .expect("old table");

    let mut db = SqliteDatabase::open(&path).expect("reopen");
    let tables = count(
        &path,
        "SELECT count(*) FROM sqlite_master WHERE name = 'event_ids'",
    );
    assert_eq!(tables, 0, "the eventIDs' table is gone");
    // Found in the segments, wherever their eventTimes fall; the records between them are
    // new, once.
    let between: Vec<Record> = (0..10)
        .map(|i| record(&format!("between-{i}"), 9 * i + 1))
        .collect();
    let mixed: Vec<Record> = kept
        .iter()
        .rev()
        .chain(&between)
        .map(|r| Record {
            id: r.id.clone(),
            time: r.time,
            json: r.json.clone(),
        })
        .collect();
    let fresh = append(&mut db, &mixed, &[key_stream()]);
    assert_eq!(fresh[..30], [false; 30]);
    assert_eq!(fresh[30..], [true; 10]);
    assert_eq!(append(&mut db, &mixed, &[key_stream()]), [false; 40]);
    // One from the middle of a segment, alone.
    assert_eq!(append(&mut db, &kept[15..16], &[key_stream()]), [false]);
    assert_eq!(
        db.stream_records(&key_stream()).wait().expect("key stream"),
        in_order(kept.iter().chain(&between))
    );
}

#[test]
fn the_log_is_copied_into_the_database_file_while_the_writer_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keywatch.db");
    let wal = dir.path().join("keywatch.db-wal");
    let mut db = SqliteDatabase::open(&path).expect("open");
    let file_size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    // A new database in WAL mode: its first page in the file, everything since in the log
    // (SQLite checkpoints on its own only at 20,000 pages, and on close).
    let opened = file_size();
    let records: Vec<Record> = (0..2000).map(|i| record(&format!("id-{i}"), i)).collect();
    append(&mut db, &records, &[key_stream()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file_size() <= opened && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        file_size() > opened,
        "the database file stayed at {opened} bytes: no checkpoint while the writer was open"
    );
    // The writer goes on while checkpoints come.
    for round in 0..5 {
        let more: Vec<Record> = (0..200)
            .map(|i| record(&format!("more-{round}-{i}"), 3000 + round * 200 + i))
            .collect();
        assert!(append(&mut db, &more, &[key_stream()]).iter().all(|f| *f));
    }
    assert!(wal.exists());
    drop(db);
    // The writer closed last: it copied what was left and removed the log.
    assert!(
        !wal.exists(),
        "the log outlived the database's last connection"
    );
    let reopened = SqliteDatabase::open(&path).expect("open");
    let logged = reopened.stream_records(&key_stream()).wait().expect("read");
    assert_eq!(logged.len(), 3000);
}
