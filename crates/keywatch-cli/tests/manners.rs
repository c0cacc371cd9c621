//! The CLI's manners, as ripgrep, fd and the AWS CLI behave: colour only where it belongs,
//! `--quiet`, clocks as people write them, completions and a man page from the same
//! definitions, and a `run` that names the broker it cannot reach. No service needed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

fn keywatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keywatch"));
    c.env_remove("NO_COLOR").env_remove("KEYWATCH_LOG");
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `keywatch replay --in-memory --as-of … samples`, text alerts, with `extra` before the path.
fn replay_samples(extra: &[&str], no_color: Option<&str>) -> Output {
    let mut c = keywatch();
    c.args(["replay", "--in-memory", "--as-of", "2026-11-23T12:00:00Z"])
        .args(extra)
        .arg(samples());
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    c.output().expect("run keywatch")
}

const ESC: char = '\u{1b}';

#[test]
fn colour_only_on_a_terminal_or_when_asked() {
    // A pipe (as here): plain text, whatever the severity.
    let plain = replay_samples(&[], None);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let out = text(&plain.stdout);
    assert!(out.contains("[CRITICAL]"), "{out}");
    assert!(!out.contains(ESC), "no escape codes in a pipe");

    // Asked for (any case): the severity tags are coloured, the rest is the same text.
    let always = replay_samples(&["--color", "ALWAYS"], None);
    let coloured = text(&always.stdout);
    assert!(
        coloured.contains("\u{1b}[1;31m[CRITICAL]\u{1b}[0m"),
        "{coloured}"
    );
    let stripped = coloured
        .replace("\u{1b}[0m", "")
        .replace("\u{1b}[1;31m", "")
        .replace("\u{1b}[1;33m", "")
        .replace("\u{1b}[36m", "")
        .replace("\u{1b}[2m", "");
    assert_eq!(
        stripped, out,
        "colour adds codes around the tags and nothing else"
    );
    // An explicit --color always is a choice NO_COLOR does not overrule.
    let always_no_color = replay_samples(&["--color", "always"], Some("1"));
    assert!(text(&always_no_color.stdout).contains(ESC));
    let never = replay_samples(&["--color", "never"], None);
    assert!(!text(&never.stdout).contains(ESC));
    // JSON is never coloured.
    let json = replay_samples(&["--color", "always", "--format", "json"], None);
    assert!(!text(&json.stdout).contains(ESC));
}

/// Runs `keywatch ARGS` on a pseudo-terminal (util-linux `script`), returning what it printed.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut c = Command::new("script");
    c.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_keywatch")),
        "/dev/null",
    ])
    .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let out = c
        .output()
        .expect("util-linux `script` runs a command on a terminal");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn on_a_terminal_colour_is_on_unless_no_color_is_set() {
    let args = format!(
        "replay --quiet --in-memory --as-of 2026-11-23T12:00:00Z {}",
        samples().display()
    );
    let tty = on_a_terminal(&args, None);
    assert!(tty.contains("\u{1b}[1;31m[CRITICAL]"), "{tty}");
    let tty_no_color = on_a_terminal(&args, Some("1"));
    assert!(tty_no_color.contains("[CRITICAL]"), "{tty_no_color}");
    assert!(!tty_no_color.contains(ESC), "{tty_no_color}");
    // NO_COLOR set but empty does not count (no-color.org).
    let tty_empty = on_a_terminal(&args, Some(""));
    assert!(tty_empty.contains(ESC), "{tty_empty}");
}

#[test]
fn quiet_prints_the_alerts_and_nothing_else() {
    let loud = replay_samples(&[], None);
    assert!(text(&loud.stderr).contains("records read"));
    let quiet = replay_samples(&["--quiet"], None);
    assert!(quiet.status.success());
    assert_eq!(text(&quiet.stderr), "", "no summary, no progress");
    assert_eq!(quiet.stdout, loud.stdout, "the same alerts");
    let short = replay_samples(&["-q"], None);
    assert_eq!(short.stdout, loud.stdout);
}

#[test]
fn as_of_takes_dates_instants_and_times_relative_to_now() {
    let db = tempfile::tempdir().expect("temp dir");
    let store = db.path().join("k.db");
    let store = store.to_str().expect("utf-8");
    let replayed = keywatch()
        .args(["replay", "--quiet", "--db", store, "--as-of", "2026-11-23"])
        .arg(samples())
        .output()
        .expect("run");
    assert!(replayed.status.success(), "{}", text(&replayed.stderr));
    let preflight = |as_of: &str| {
        keywatch()
            .args([
                "preflight",
                "1111aaaa-11aa-11aa-11aa-111111111111",
                "--db",
                store,
            ])
            .args(["--format", "json", "--as-of", as_of])
            .output()
            .expect("run")
    };
    let date = preflight("2026-11-23");
    let instant = preflight("2026-11-23T00:00:00Z");
    assert!(date.status.code().is_some());
    assert_eq!(date.stdout, instant.stdout, "a date is its midnight, UTC");
    let relative = preflight("now-7d");
    let report: serde_json::Value =
        serde_json::from_slice(&relative.stdout).expect("a JSON report");
    let as_of = report["as_of"].as_str().expect("as_of in the report");
    let expected = chrono::Utc::now() - chrono::Duration::days(7);
    let got = chrono::DateTime::parse_from_rfc3339(as_of).expect("an instant");
    assert!(
        (got.with_timezone(&chrono::Utc) - expected)
            .num_seconds()
            .abs()
            < 120,
        "now-7d is {as_of}, expected about {expected}"
    );
    let bad = preflight("last tuesday");
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("--as-of") && err.contains("last tuesday"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "said once: {err}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = keywatch()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["preflight", "timeline", "fail-on", "as-of", "color"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = keywatch()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("bash"), "the choices are listed");

    let man = keywatch().arg("man").output().expect("run");
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH keywatch 1"),
        "roff"
    );
    assert!(page.contains(".TH keywatch 1"));
    for sub in [
        "replay",
        "timeline",
        "run",
        "preflight",
        "keys",
        "completions",
    ] {
        assert!(page.contains(sub), "the man page names {sub}");
    }
    assert!(
        page.contains("\\-\\-color"),
        "global options are documented"
    );
}

/// An empty static member id would make the run a dynamic member without a word: refused.
#[test]
fn run_refuses_an_empty_group_instance_id() {
    let out = keywatch()
        .args(["run", "--brokers", "127.0.0.1:1", "--group-instance-id", ""])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(err.contains("--group-instance-id"), "{err}");
}

#[test]
fn run_names_the_broker_it_cannot_reach_within_seconds() {
    let db = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there.
    let out = keywatch()
        .args(["run", "--brokers", "127.0.0.1:1", "--exit-when-idle", "1"])
        .arg("--store")
        .arg(format!("sqlite:{}", db.path().join("k.db").display()))
        // Nothing of AWS is touched without DynamoDB or SNS: not even the metadata service.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the Kafka broker(s) at 127.0.0.1:1"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(30),
        "said within seconds: {took:?}"
    );

    // With --log-format json, the failure is a JSON log line too.
    let out = keywatch()
        .args(["--log-format", "json", "run", "--brokers", "127.0.0.1:1"])
        .arg("--store")
        .arg(format!("sqlite:{}", db.path().join("k.db").display()))
        .output()
        .expect("run");
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("127.0.0.1:1"))),
        "{lines:?}"
    );
}
