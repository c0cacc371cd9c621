//! The CLI contract users script against, on the bundled samples and our own bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AS_OF: &str = "2026-11-23T12:00:00Z";
const ORDERS: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-11aa-11aa-11aa-111111111111";

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

fn keywatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(args)
        .output()
        .expect("run keywatch")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A Decrypt of the orders key on 2026-11-20, as CloudTrail writes it, with `extra` fields.
fn orders_decrypt(id: &str, extra: Value) -> Value {
    let mut r = serde_json::json!({"eventVersion": "1.08", "eventTime": "2026-11-20T10:00:00Z",
        "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1",
        "eventID": id, "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/u", "accountId": "111122223333"},
        "resources": [{"type": "AWS::KMS::Key", "ARN": ORDERS}]});
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(extra.clone());
    }
    r
}

/// `keywatch replay --db DB --as-of AS_OF --format json`, inputs and options to add.
fn replay_command(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keywatch"));
    c.args(["replay", "--db", db.to_str().expect("utf-8 path")])
        .args(["--as-of", AS_OF, "--format", "json"]);
    c
}

fn replay(db: &Path, extra: &[&str], inputs: &[&Path]) -> Output {
    replay_command(db)
        .args(extra)
        .args(inputs)
        .output()
        .expect("run keywatch")
}

#[test]
fn replay_prints_each_alert_once_as_json_lines_and_never_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    let first = replay(&db, &[], &[&samples()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let alerts = json_lines(&first);
    for field in [
        "alert_id",
        "kind",
        "severity",
        "key_arn",
        "account",
        "region",
        "event_id",
        "event_time",
        "principal",
        "summary",
    ] {
        assert!(
            alerts.iter().all(|a| a.get(field).is_some()),
            "every alert has {field}"
        );
    }
    let count = |kind: &str| alerts.iter().filter(|a| a["kind"] == kind).count();
    assert_eq!(count("pending_deletion_key_used"), 4);
    assert_eq!(count("deletion_scheduled"), 6);
    assert_eq!(count("key_deleted"), 3);
    assert_eq!(count("orphaned_key_material"), 1);
    assert_eq!(count("deletion_cancelled"), 1);
    assert_eq!(count("deletion_imminent"), 1);
    assert_eq!(count("deletion_overdue"), 1);
    let imminent = alerts
        .iter()
        .find(|a| a["kind"] == "deletion_imminent")
        .expect("imminent");
    assert!(imminent["event_id"].is_null());
    assert_eq!(imminent["key_arn"], ORDERS);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("0 rejected"), "{stderr}");

    let again = replay(&db, &[], &[&samples()]);
    assert!(again.status.success());
    assert!(
        json_lines(&again).is_empty(),
        "a second replay raises nothing: {}",
        stdout(&again)
    );
}

#[test]
fn bad_records_go_to_quarantine_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("mixed.jsonl");
    let good = r#"{"eventVersion":"1.08","eventID":"g1","eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"ScheduleKeyDeletion","awsRegion":"us-east-1","recipientAccountId":"111122223333","userIdentity":{"type":"Root","accountId":"111122223333"},"requestParameters":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","pendingWindowInDays":7},"responseElements":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","keyState":"PendingDeletion"}}"#;
    let no_id = r#"{"eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt"}"#;
    std::fs::write(&input, format!("{good}\n{{broken\n{no_id}\n")).expect("write input");
    let quarantine = dir.path().join("rejected.jsonl");
    let out = replay(
        &dir.path().join("k.db"),
        &["--quarantine", quarantine.to_str().expect("utf-8")],
        &[&input],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = json_lines(&out);
    let kinds: Vec<&str> = alerts.iter().filter_map(|a| a["kind"].as_str()).collect();
    // Scheduled on 1 November for 7 days: by the 23rd, overdue with no DeleteKey seen.
    assert_eq!(kinds, ["deletion_scheduled", "deletion_overdue"]);
    let rejected: Vec<Value> = std::fs::read_to_string(&quarantine)
        .expect("quarantine written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["line"], 2);
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .starts_with("not JSON"));
    assert_eq!(rejected[1]["line"], 3);
    assert_eq!(rejected[1]["reason"], "record has no eventID");
    assert_eq!(
        rejected[1]["record"]["eventName"], "Decrypt",
        "the record itself is kept"
    );
}

#[test]
fn an_input_that_cannot_be_opened_fails_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = replay(
        &dir.path().join("k.db"),
        &[],
        &[&dir.path().join("missing.json.gz")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json.gz"));
}

#[test]
fn timeline_by_key_id_and_keys_by_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    assert!(replay(&db, &[], &[&samples()]).status.success());
    let db = db.to_str().expect("utf-8");
    let t = keywatch(&[
        "timeline",
        "1111aaaa-11aa-11aa-11aa-111111111111",
        "--db",
        db,
        "--format",
        "json",
    ]);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let t: Value = serde_json::from_slice(&t.stdout).expect("timeline JSON");
    assert_eq!(t["key_arn"], ORDERS);
    assert_eq!(t["state"], "PendingDeletion");
    assert_eq!(t["deletion_date"], "2026-11-24T09:00:00Z");
    assert!(t["custom_key_store"].is_null());
    assert!(t["entries"].as_array().is_some_and(|e| e.len() >= 6));
    assert!(t["usage"].as_array().is_some_and(|u| !u.is_empty()));

    // The text form's usage table: every row's columns under the header's.
    let text = stdout(&keywatch(&[
        "timeline",
        "1111aaaa-11aa-11aa-11aa-111111111111",
        "--db",
        db,
        "--color",
        "never",
    ]));
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Usage")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(table.len() >= 3, "{text}");
    let header = table[0];
    let first_column = header.find("first").expect("a first column");
    let ok_end = header.find(" ok").expect("an ok column") + 3;
    for row in &table[1..] {
        assert!(
            row.get(first_column..first_column + 4) == Some("2026")
                && row
                    .as_bytes()
                    .get(ok_end - 1)
                    .is_some_and(u8::is_ascii_digit),
            "usage row out of its columns:\n{header}\n{row}"
        );
    }

    let hsm = keywatch(&[
        "timeline",
        "arn:aws:kms:us-east-1:111122223333:key/3333cccc-33cc-33cc-33cc-333333333333",
        "--db",
        db,
    ]);
    let text = stdout(&hsm);
    assert!(
        text.contains("state     Deleted") && text.contains("key material may remain"),
        "{text}"
    );

    let pending = keywatch(&[
        "keys",
        "--db",
        db,
        "--state",
        "PendingDeletion",
        "--format",
        "json",
    ]);
    let keys = json_lines(&pending);
    assert_eq!(keys.len(), 2, "orders and archive are pending deletion");
    assert!(keys
        .iter()
        .any(|k| k["key_arn"] == ORDERS && k["last_use"].is_string()));

    let unknown = keywatch(&["timeline", "no-such-key", "--db", db]);
    assert!(!unknown.status.success());
}

/// `keywatch preflight` on the demo data: a verdict for every key, and the exit status
/// scripts rely on (0 safe or already deleted, 3 in use).
#[test]
fn preflight_answers_for_every_demo_key_with_its_exit_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    assert!(replay(&db, &[], &[&samples()]).status.success());
    let db = db.to_str().expect("utf-8 path");
    let expected = [
        ("1111aaaa-11aa-11aa-11aa-111111111111", 3, "in_use"),
        ("2222bbbb-22bb-22bb-22bb-222222222222", 0, "deleted"),
        ("3333cccc-33cc-33cc-33cc-333333333333", 0, "deleted"),
        ("4444dddd-44dd-44dd-44dd-444444444444", 0, "deleted"),
        ("5555eeee-55ee-55ee-55ee-555555555555", 0, "safe"),
        ("6666ffff-66ff-66ff-66ff-666666666666", 0, "safe"),
        // Disabled, and the nightly batch's Decrypt refused as disabled 3 days ago.
        ("7777abcd-77ab-77cd-77ef-777777777777", 3, "in_use"),
    ];
    for (key, code, verdict) in expected {
        let out = keywatch(&[
            "preflight",
            key,
            "--db",
            db,
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(code), "{key}: {}", stdout(&out));
        let report: Value = serde_json::from_str(&stdout(&out)).expect("preflight JSON");
        assert_eq!(report["verdict"], verdict, "{key}");
    }
    // The key that pages protects two S3 buckets, a table, a secret and an EBS volume.
    let text = keywatch(&["preflight", ORDERS, "--db", db, "--as-of", AS_OF]);
    let text = stdout(&text);
    assert!(
        text.contains("2 S3 buckets (orders-archive, orders-prod)")
            && text.contains("1 EBS volume (vol-0a1b2c3d4e5f60718)")
            && text
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("IN USE:")),
        "{text}"
    );
    let safe = keywatch(&[
        "preflight",
        "5555eeee-55ee-55ee-55ee-555555555555",
        "--db",
        db,
        "--as-of",
        AS_OF,
    ]);
    assert!(
        stdout(&safe).contains("protects nothing seen"),
        "{}",
        stdout(&safe)
    );
    // The disabled key's timeline counts the refused call among the failed ones, apart.
    let story = stdout(&keywatch(&[
        "timeline",
        "7777abcd-77ab-77cd-77ef-777777777777",
        "--db",
        db,
    ]));
    let row = story
        .lines()
        .find(|l| l.trim_start().starts_with("Decrypt"))
        .unwrap_or_default();
    assert_eq!(
        row.split_whitespace().take(4).collect::<Vec<_>>(),
        ["Decrypt", "1", "1", "1"],
        "{story}"
    );
    // A key whose only record is a DisableKey two days ago, its creation not seen: no use
    // seen, but nor are the 30 days before. Cannot tell (exit 4); for 2 days, safe.
    let disabled = "arn:aws:kms:us-east-1:111122223333:key/8888aaaa-88aa-88aa-88aa-888888888888";
    let record = serde_json::json!({
        "eventVersion": "1.08", "eventTime": "2026-11-21T12:00:00Z", "eventSource": "kms.amazonaws.com",
        "eventName": "DisableKey", "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.15", "eventID": "disable-8888", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/Alice", "accountId": "111122223333"},
        "requestParameters": {"keyId": disabled}, "responseElements": null,
        "resources": [{"type": "AWS::KMS::Key", "ARN": disabled}]
    });
    let file = dir.path().join("disable.json");
    std::fs::write(&file, record.to_string()).expect("write");
    assert!(replay(Path::new(db), &[], &[&file]).status.success());
    let preflight = |extra: &[&str]| {
        let mut args = vec!["preflight", disabled, "--db", db, "--as-of", AS_OF];
        args.extend_from_slice(extra);
        keywatch(&args)
    };
    let unknown = preflight(&[]);
    assert_eq!(unknown.status.code(), Some(4), "{}", stdout(&unknown));
    assert!(
        stdout(&unknown)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("CANNOT TELL: no use seen")),
        "{}",
        stdout(&unknown)
    );
    let report: Value =
        serde_json::from_str(&stdout(&preflight(&["--format", "json"]))).expect("preflight JSON");
    assert_eq!(report["verdict"], "unknown");
    assert_eq!(report["records_since"], "2026-11-21T12:00:00Z");
    let two_days = preflight(&["--days", "2"]);
    assert_eq!(two_days.status.code(), Some(0), "{}", stdout(&two_days));
    // A key keywatch never read a record of is not "safe": an error that says why, and an
    // alias is named as one.
    for (key, expected) in [
        (
            "77777777-7777-7777-7777-777777777777",
            "keywatch has read no CloudTrail record of it",
        ),
        ("alias/orders", "alias/orders is an alias"),
    ] {
        let out = keywatch(&["preflight", key, "--db", db, "--as-of", AS_OF]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {stderr}");
        assert!(stderr.contains(expected), "{key}: {stderr}");
        assert!(stdout(&out).is_empty(), "{key}: {}", stdout(&out));
    }
}

/// Values from records reach the terminal cleaned: no escape sequences, bells or carriage
/// returns, and a newline in a user agent or principal cannot print a fake alert line.
#[test]
fn text_output_carries_no_control_characters_from_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    let evil_agent = "curl\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n[CRITICAL] all clear\u{202e}";
    let key = ORDERS;
    let record = serde_json::json!({
        "eventVersion": "1.08", "eventTime": "2026-11-20T10:00:00Z", "eventSource": "kms.amazonaws.com",
        "eventName": "Decrypt", "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.1\n[CRITICAL] fake",
        "userAgent": evil_agent, "eventID": "evil-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/x\n[CRITICAL] spoofed"}}},
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{key} is pending deletion."),
        "resources": [{"type": "AWS::KMS::Key", "ARN": key}]
    });
    let file = dir.path().join("evil.json");
    std::fs::write(&file, record.to_string()).expect("write");
    let db_text = db.to_str().expect("utf-8 path");
    let outputs = [
        keywatch(&[
            "replay",
            "--db",
            db_text,
            "--as-of",
            AS_OF,
            samples().to_str().expect("path"),
            file.to_str().expect("path"),
        ]),
        keywatch(&["timeline", key, "--db", db_text]),
        keywatch(&["keys", "--db", db_text]),
        keywatch(&["preflight", key, "--db", db_text, "--as-of", AS_OF]),
    ];
    for out in &outputs {
        let text = stdout(out);
        assert!(!text.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        for c in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(!text.contains(c), "{c:?} in {text}");
        }
        for line in text.lines() {
            assert!(
                !line.starts_with("[CRITICAL] all clear")
                    && !line.starts_with("[CRITICAL] fake")
                    && !line.starts_with("[CRITICAL] spoofed"),
                "a fake line: {line}"
            );
        }
    }
    assert!(
        stdout(&outputs[0]).contains("all clear"),
        "the value is shown, cleaned"
    );
}

/// One bad input never stops the run: a truncated gzip, a gzip with trailing junk, a link to
/// a directory, a loop of links, a dangling link and a FIFO are each reported with their path
/// and reason, what was decoded is kept, the other inputs are processed, and the exit status
/// says at the end that something was unreadable.
#[cfg(unix)]
#[test]
fn each_unreadable_input_is_reported_and_the_rest_is_processed() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).expect("mkdir");
    // Three whole records in a delivered log file, gzipped; then cut in the third record.
    let record = |id: &str| orders_decrypt(id, serde_json::json!({}));
    let file =
        serde_json::json!({"Records": [record("t-1"), record("t-2"), record("t-3")]}).to_string();
    let cut = file.find("t-3").expect("third record");
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    // A truncated gzip stream: whole up to the cut, then stops mid-member.
    let mut truncated = gz(&file.as_bytes()[..cut]);
    truncated.truncate(truncated.len() - 8); // no CRC/length trailer: an unexpected end
    std::fs::write(inputs.join("a-truncated.json.gz"), truncated).expect("write");
    let mut junk = gz(serde_json::json!({"Records": [record("j-1")]})
        .to_string()
        .as_bytes());
    junk.extend_from_slice(b"this is not gzip");
    std::fs::write(inputs.join("b-junk.json.gz"), junk).expect("write");
    std::fs::write(
        inputs.join("c-good.json"),
        serde_json::json!({"Records": [record("g-1")]}).to_string(),
    )
    .expect("write");
    let sub = dir.path().join("elsewhere");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(
        sub.join("d-linked.json"),
        serde_json::json!({"Records": [record("l-1")]}).to_string(),
    )
    .expect("write");
    std::os::unix::fs::symlink(&sub, inputs.join("d-link-to-dir")).expect("symlink");
    std::os::unix::fs::symlink(&inputs, inputs.join("e-loop")).expect("symlink");
    std::os::unix::fs::symlink(dir.path().join("nothing"), inputs.join("f-dangling"))
        .expect("symlink");
    let fifo = inputs.join("g-fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());

    let quarantine = dir.path().join("q.jsonl");
    let db = dir.path().join("k.db");
    let started = std::time::Instant::now();
    let out = replay(
        &db,
        &["--quarantine", quarantine.to_str().expect("path")],
        &[&inputs],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "no hang"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not be read"), "{stderr}");
    let q = std::fs::read_to_string(&quarantine).expect("quarantine");
    for (name, why) in [
        ("a-truncated.json.gz", ""),
        ("b-junk.json.gz", ""),
        ("e-loop", "loop"),
        ("f-dangling", "dangling"),
        ("g-fifo", "not a regular file"),
    ] {
        assert!(
            q.lines().any(|l| l.contains(name) && l.contains(why)),
            "{name} ({why}) not reported in:\n{q}"
        );
    }
    // Every whole record was kept: two of the truncated file, the junk file's, the good
    // file's and the one behind the link to a directory.
    let t = keywatch(&[
        "timeline",
        ORDERS,
        "--db",
        db.to_str().expect("path"),
        "--format",
        "json",
    ]);
    let t: Value = serde_json::from_str(&stdout(&t)).expect("timeline JSON");
    assert_eq!(t["usage"][0]["successes"], 5, "{}", t["usage"]);
}

/// The alert ids of a JSON replay output.
fn alert_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
        .collect()
}

/// Standard output is a sink of the outbox: alerts a run raised but could not write (a full
/// disk, a pipe closed by `head`) are delivered by the next run, so none is lost.
#[cfg(unix)]
#[test]
fn alerts_a_run_could_not_write_are_delivered_by_the_next() {
    use std::io::Read as _;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let clean = replay(&dir.path().join("clean.db"), &[], &[&samples()]);
    let mut expected = alert_ids(&stdout(&clean));
    expected.sort();
    assert!(expected.len() > 5);

    // 1. A full disk: nothing is written, nothing is lost.
    let db = dir.path().join("full.db");
    let full = replay_command(&db)
        .arg(samples())
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("run keywatch");
    assert!(!full.status.success(), "writing to a full disk fails");
    let next = replay(&db, &[], &[&samples()]);
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let mut got = alert_ids(&stdout(&next));
    got.sort();
    assert_eq!(
        got, expected,
        "the next run delivers what the first could not"
    );
    assert!(String::from_utf8_lossy(&next.stderr).contains("never delivered"));

    // 2. A pipe closed after the first line (`| head -1`), with more output than a pipe
    // holds: the run fails on the broken pipe, and the next run delivers every alert.
    let many = dir.path().join("many.jsonl");
    let lines: Vec<String> = (0..400)
        .map(|i| {
            serde_json::json!({"eventVersion": "1.08", "eventTime": "2026-11-19T10:00:00Z",
                "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1",
                "eventID": format!("many-{i}"), "recipientAccountId": "111122223333",
                "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/u{i}"), "accountId": "111122223333"},
                "errorCode": "KMSInvalidStateException", "errorMessage": format!("{ORDERS} is pending deletion."),
                "resources": [{"type": "AWS::KMS::Key", "ARN": ORDERS}]})
            .to_string()
        })
        .collect();
    std::fs::write(&many, lines.join("\n")).expect("write");
    let clean = replay(&dir.path().join("clean2.db"), &[], &[&samples(), &many]);
    let mut expected = alert_ids(&stdout(&clean));
    expected.sort();
    assert!(expected.len() > 400, "{}", expected.len());
    let db = dir.path().join("pipe.db");
    let mut child = replay_command(&db)
        .arg(samples())
        .arg(&many)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    // The reader is gone: later writes fail with a broken pipe.
    // A closed pipe ends the run quietly (as `| head` expects); what was not written stays
    // in the outbox.
    assert!(
        child.wait().expect("exit").success(),
        "a broken pipe ends quietly"
    );
    let again = replay(&db, &[], &[&samples(), &many]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let mut got = alert_ids(&stdout(&again));
    got.sort();
    assert_eq!(got, expected, "every alert is delivered by the next run");
}

/// Records over --max-record-bytes are quarantined with the reason, the rest processed; the
/// defaults are in --help.
#[test]
fn oversized_records_are_quarantined_and_the_limits_are_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = |id: &str, pad: usize| {
        orders_decrypt(id, serde_json::json!({"pad": "p".repeat(pad)})).to_string()
    };
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        [
            record("small", 10),
            record("huge", 100_000),
            record("small-2", 10),
        ]
        .join("\n"),
    )
    .expect("write");
    let quarantine = dir.path().join("q.jsonl");
    let out = replay(
        &dir.path().join("k.db"),
        &[
            "--max-record-bytes",
            "10000",
            "--quarantine",
            quarantine.to_str().expect("path"),
        ],
        &[&file],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = std::fs::read_to_string(&quarantine).expect("quarantine");
    assert_eq!(q.lines().count(), 1, "{q}");
    assert!(
        q.contains("larger than 10000 bytes") && q.len() < 5_000,
        "{q}"
    );
    // The oversized one is rejected by the reader, not read.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 records read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = stdout(&keywatch(&["replay", "--help"]));
    assert!(
        help.contains("--max-record-bytes") && help.contains("[default: 4194304]"),
        "{help}"
    );
    assert!(
        help.contains("--max-input-bytes") && help.contains("[default: 17179869184]"),
        "{help}"
    );
}

/// kill -9 at moments spread over a replay, again and again, then a run to the end: every
/// alert of a clean run is delivered (at least once, across the runs' outputs), and the
/// store ends as a clean run's does.
#[cfg(unix)]
/// 200 keys, each scheduled for deletion and then used by a few principals (over 1,000
/// pages), in files of 100 lines, so that replay commits in many steps.
fn many_pages(dir: &Path) -> Vec<PathBuf> {
    // 200 keys, each scheduled for deletion and then used by a few principals: many pages.
    let mut lines = Vec::new();
    for k in 0..200 {
        let key =
            format!("arn:aws:kms:us-east-1:111122223333:key/{k:08x}-0000-4000-8000-000000000000");
        let base = serde_json::json!({"eventVersion": "1.08", "eventSource": "kms.amazonaws.com",
            "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
            "resources": [{"type": "AWS::KMS::Key", "ARN": key}]});
        let mut schedule = base.clone();
        schedule["eventName"] = "ScheduleKeyDeletion".into();
        schedule["eventTime"] = "2026-11-01T00:00:00Z".into();
        schedule["eventID"] = format!("s-{k}").into();
        schedule["userIdentity"] = serde_json::json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/admin", "accountId": "111122223333"});
        schedule["requestParameters"] = serde_json::json!({"keyId": key, "pendingWindowInDays": 7});
        lines.push(schedule.to_string());
        for u in 0..5 {
            let mut r = base.clone();
            r["eventName"] = "Decrypt".into();
            r["eventTime"] = format!("2026-11-02T0{u}:00:00Z").into();
            r["eventID"] = format!("u-{k}-{u}").into();
            r["userIdentity"] = serde_json::json!({"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/app{u}"), "accountId": "111122223333"});
            r["errorCode"] = "KMSInvalidStateException".into();
            r["errorMessage"] = format!("{key} is pending deletion.").into();
            lines.push(r.to_string());
        }
    }
    // One file per 100 lines: replay commits in many steps.
    for (i, chunk) in lines.chunks(100).enumerate() {
        std::fs::write(dir.join(format!("part-{i:03}.jsonl")), chunk.join("\n")).expect("write");
    }
    (0..lines.len().div_ceil(100))
        .map(|i| dir.join(format!("part-{i:03}.jsonl")))
        .collect()
}

/// The store's disk fills during a replay (a real ENOSPC: a small tmpfs, mounted in a user
/// and mount namespace of the test's own, with `unshare` from util-linux), at several sizes.
/// The run fails naming the full disk; once there is room, the next run delivers the rest:
/// together they print what a clean run prints, none lost, none twice (but in the instant
/// the README's "Reliability" names: printed, and no room left to record it).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_the_store_loses_no_alert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parts = many_pages(dir.path());
    let part_refs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    let clean = replay(
        &dir.path().join("clean.db"),
        &["--suppress-minutes", "60"],
        &part_refs,
    );
    let mut expected = alert_ids(&stdout(&clean));
    expected.sort();
    let (mut filled, mut repeated) = (0, Vec::new());
    // Recording a thousand alerts delivered must take a few pages, not a disk's worth: then
    // the instant in which a repeat is possible is narrower than the steps between sizes.
    // Disks of an eighth to seven eighths of the clean run's store, and one with room.
    let clean_store: u64 = std::fs::read_dir(dir.path())
        .expect("temp dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("clean.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let sizes: Vec<String> = (1..8)
        .map(|eighths| format!("{}k", (clean_store * eighths / 8 / 1024).max(64)))
        .chain(["16m".to_owned()])
        .collect();
    for size in &sizes {
        let mount = dir.path().join(format!("disk-{size}"));
        std::fs::create_dir(&mount).expect("mount point");
        let db = mount.join("k.db");
        let file = |n: &str| dir.path().join(format!("{size}-{n}"));
        let replay_to = |n: &str| {
            let mut c = replay_command(&db);
            c.args(["--suppress-minutes", "60"]).args(&parts);
            let mut line: Vec<String> = std::iter::once(c.get_program())
                .chain(c.get_args())
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect();
            line.push(format!(
                "> {} 2> {}; echo \"exit $?\"",
                shell_quote(&file(&format!("{n}.out")).to_string_lossy()),
                shell_quote(&file(&format!("{n}.err")).to_string_lossy())
            ));
            line.join(" ")
        };
        let m = shell_quote(&mount.to_string_lossy());
        let script = [
            format!("mount -t tmpfs -o size={size} keywatch-test {m} || exit 97"),
            replay_to("full"),
            format!("mount -o remount,size=64m {m} || exit 98"),
            replay_to("room"),
            replay_to("again"),
            format!(
                "{} keys --db {} > /dev/null || echo 'store unreadable'",
                shell_quote(env!("CARGO_BIN_EXE_keywatch")),
                shell_quote(&db.to_string_lossy())
            ),
        ]
        .join("\n");
        let run = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux) to mount a small tmpfs");
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "a user and mount namespace with a tmpfs is needed here: {said} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let read = |n: &str| std::fs::read_to_string(file(n)).unwrap_or_default();
        let statuses: Vec<&str> = said.lines().filter(|l| l.starts_with("exit ")).collect();
        assert_eq!(statuses[1..], ["exit 0", "exit 0"], "{size}: {said}");
        if statuses[0] != "exit 0" {
            filled += 1;
            assert!(
                read("full.err").contains("database or disk is full"),
                "{size}: the full disk is named: {}",
                read("full.err")
            );
        }
        let first = alert_ids(&read("full.out"));
        let mut delivered = first.clone();
        delivered.extend(alert_ids(&read("room.out")));
        let n = delivered.len();
        delivered.sort();
        delivered.dedup();
        assert_eq!(
            delivered, expected,
            "{size}: every alert delivered once there was room"
        );
        if n != delivered.len() {
            assert_eq!(
                first.len(),
                expected.len(),
                "{size}: repeats only of a whole run"
            );
            repeated.push(size);
        }
        assert!(
            alert_ids(&read("again.out")).is_empty(),
            "{size}: and nothing again"
        );
        assert!(!said.contains("store unreadable"), "{size}: {said}");
    }
    assert!(filled >= 3, "the disk filled in {filled} runs");
    assert!(
        repeated.len() <= 1,
        "alerts printed twice at sizes {repeated:?}"
    );
}

/// Quotes for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn kill_9_mid_replay_loses_no_alert_and_leaves_the_store_consistent() {
    use std::io::Read as _;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let parts = many_pages(dir.path());
    let part_refs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    let clean_db = dir.path().join("clean.db");
    let clean = replay(&clean_db, &["--suppress-minutes", "60"], &part_refs);
    let mut expected = alert_ids(&stdout(&clean));
    expected.sort();
    assert!(expected.len() >= 1000, "{}", expected.len());

    let db = dir.path().join("killed.db");
    let mut delivered: Vec<String> = Vec::new();
    for round in 0..8u64 {
        let mut child = replay_command(&db)
            .args(&parts)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut out = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        std::thread::sleep(std::time::Duration::from_millis(15 + round * 37 % 200));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        delivered.extend(alert_ids(&reader.join().expect("reader")));
    }
    let last = replay(&db, &[], &part_refs);
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    delivered.extend(alert_ids(&stdout(&last)));
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !delivered.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} alerts lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    // The store ends as a clean run's: the same keys, states and timelines.
    let keys = |db: &Path| {
        stdout(&keywatch(&[
            "keys",
            "--db",
            db.to_str().expect("path"),
            "--format",
            "json",
        ]))
    };
    assert_eq!(keys(&db), keys(&clean_db));
    let one = "arn:aws:kms:us-east-1:111122223333:key/00000063-0000-4000-8000-000000000000";
    let timeline = |db: &Path| {
        stdout(&keywatch(&[
            "timeline",
            one,
            "--db",
            db.to_str().expect("path"),
            "--format",
            "json",
        ]))
    };
    assert_eq!(timeline(&db), timeline(&clean_db));
}

/// Choices are validated and case-insensitive, `jsonl` is accepted, and `| head -1` ends quietly.
#[cfg(unix)]
#[test]
fn choices_are_validated_case_insensitively_and_a_closed_pipe_is_quiet() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    assert!(replay(&db, &[], &[&samples()]).status.success());
    let db = db.to_str().expect("path");
    let pending = keywatch(&[
        "keys",
        "--db",
        db,
        "--state",
        "pendingdeletion",
        "--format",
        "jsonl",
    ]);
    assert!(pending.status.success());
    let keys = json_lines(&pending);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["state"] == "PendingDeletion"));
    let bogus = keywatch(&["keys", "--db", db, "--state", "bogus"]);
    assert_eq!(bogus.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("possible values"));
    // `keywatch keys | head -1` with a reader that reads nothing and leaves.
    let mut child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["timeline", ORDERS, "--db", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// `--fail-on SEVERITY` for CI and cron: exit 3 when this run raised an alert at or above it.
#[test]
fn fail_on_exits_3_when_an_alert_at_or_above_the_threshold_is_raised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let critical = replay(
        &dir.path().join("a.db"),
        &["--fail-on", "CRITICAL"],
        &[&samples()],
    );
    assert_eq!(
        critical.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&critical.stderr)
    );
    // Nothing new on the second run: nothing to fail on.
    let again = replay(
        &dir.path().join("a.db"),
        &["--fail-on", "info"],
        &[&samples()],
    );
    assert_eq!(again.status.code(), Some(0));
    // Only the legacy key's deletion (info) and its schedule (medium): below high.
    let legacy: Vec<String> = std::fs::read_to_string(samples().join("eventbridge.jsonl"))
        .expect("samples")
        .lines()
        .filter(|l| l.contains("2222bbbb-22bb-22bb-22bb-222222222222"))
        .map(str::to_owned)
        .collect();
    let file = dir.path().join("legacy.jsonl");
    std::fs::write(&file, legacy.join("\n")).expect("write");
    let below = replay(&dir.path().join("b.db"), &["--fail-on", "high"], &[&file]);
    assert_eq!(below.status.code(), Some(0), "{}", stdout(&below));
    let at = replay(&dir.path().join("c.db"), &["--fail-on", "medium"], &[&file]);
    assert_eq!(at.status.code(), Some(3), "{}", stdout(&at));
}

/// A key store connected and disconnected again and again: its keys' timelines keep its
/// latest changes and say, in every form, how many earlier ones they do not keep.
#[test]
fn a_timeline_says_how_many_key_store_changes_it_does_not_keep() {
    const STORE: &str = "cks-1234567890abcdef0";
    let identity = serde_json::json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/admin", "accountId": "111122223333"});
    let call = |name: &str, time: String, id: String| {
        serde_json::json!({"eventVersion": "1.08", "eventTime": time, "eventSource": "kms.amazonaws.com",
            "eventName": name, "awsRegion": "us-east-1", "eventID": id, "recipientAccountId": "111122223333",
            "userIdentity": identity, "requestParameters": {"customKeyStoreId": STORE},
            "additionalEventData": {"customKeyStoreName": "hsm", "clusterId": "cluster-1a23b4cdefg"}})
    };
    let mut records = vec![
        serde_json::json!({"eventVersion": "1.08", "eventTime": "2026-01-01T00:00:00Z",
        "eventSource": "kms.amazonaws.com", "eventName": "CreateKey", "awsRegion": "us-east-1",
        "eventID": "create", "recipientAccountId": "111122223333", "userIdentity": identity,
        "requestParameters": {"origin": "AWS_CLOUDHSM", "customKeyStoreId": STORE},
        "responseElements": {"keyMetadata": {"AWSAccountId": "111122223333", "keyId": "1111aaaa-11aa-11aa-11aa-111111111111",
            "arn": ORDERS, "keyState": "Enabled", "origin": "AWS_CLOUDHSM", "customKeyStoreId": STORE,
            "cloudHsmClusterId": "cluster-1a23b4cdefg", "multiRegion": false}},
        "resources": [{"type": "AWS::KMS::Key", "ARN": ORDERS}]}),
    ];
    let changes = 60;
    for day in 0..changes / 2 {
        let at = |hour: u32| format!("2026-03-{:02}T{hour:02}:00:00Z", day + 1);
        records.push(call("DisconnectCustomKeyStore", at(1), format!("d{day}")));
        records.push(call("ConnectCustomKeyStore", at(2), format!("c{day}")));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("store.json");
    std::fs::write(&input, serde_json::json!({"Records": records}).to_string()).expect("write");
    let db = dir.path().join("k.db");
    let run = replay(&db, &[], &[&input]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let db = db.to_str().expect("utf-8");
    let dropped = changes - keywatch_core::timeline::MAX_KEY_STORE_ENTRIES;
    let json: Value = serde_json::from_slice(
        &keywatch(&["timeline", ORDERS, "--db", db, "--format", "json"]).stdout,
    )
    .expect("timeline JSON");
    assert_eq!(json["key_store_entries_dropped"], dropped);
    let text = stdout(&keywatch(&[
        "timeline", ORDERS, "--db", db, "--color", "never",
    ]));
    assert!(
        text.contains(&format!(
            "… and {dropped} earlier changes of its custom key store, not kept"
        )),
        "{text}"
    );
    let html = stdout(&keywatch(&[
        "timeline", ORDERS, "--db", db, "--format", "html", "--as-of", AS_OF,
    ]));
    assert!(
        html.contains(&format!(
            "… {dropped} earlier changes of its custom key store, not kept."
        )),
        "{html}"
    );
}
