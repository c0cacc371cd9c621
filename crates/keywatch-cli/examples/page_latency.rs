//! `make bench`: how long from a record produced to Kafka to its page in an SQS queue
//! subscribed to the SNS topic, through `keywatch run` (a real broker, moto for SNS and
//! SQS, loopback). The peer, measured in the same run: the broker alone, a record produced to
//! a consumer of this process.
//!
//! Usage: `page_latency BROKERS AWS_ENDPOINT KEYWATCH_BINARY [PAGES] [NOISE_PER_PAGE]
//! [RUN_ARGS...]` (the rest is passed to `keywatch run`, e.g. `--batch-window-ms 1000`).
//! Each measured record is a ScheduleKeyDeletion of a key of its own (one page each),
//! produced every 20 ms after NOISE_PER_PAGE Decrypt records of an enabled key (produced
//! together, not one acknowledgement at a time), so that the run folds batches, not one
//! record at a time. With LATENCY_BUSY_PENDING set, the busy key is pending deletion first
//! (the alarm case: its uses are pending-deletion uses).

use keywatch_kafka::{ensure_topic, EventLogConsumer, EventLogProducer, KafkaSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "111122223333";

fn key(i: usize) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{i:08x}-0000-4000-8000-000000000000")
}

/// A CloudTrail record of a KMS call, in the shape AWS writes it.
fn record(name: &str, key: &str, id: &str, extra: serde_json::Value) -> String {
    let mut r = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": ACCOUNT,
                         "arn": format!("arn:aws:iam::{ACCOUNT}:user/Alice"), "userName": "Alice"},
        "eventTime": "2026-11-20T10:00:00Z", "eventSource": "kms.amazonaws.com", "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.10", "userAgent": "aws-cli/2.15",
        "requestParameters": {"keyId": key}, "responseElements": null,
        "requestID": format!("req-{id}"), "eventID": id, "readOnly": false,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key}],
        "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(extra.clone());
    }
    r.to_string()
}

fn schedule(i: usize) -> (String, String) {
    let id = format!("sched-{i}-{}", std::process::id());
    let json = record(
        "ScheduleKeyDeletion",
        &key(i),
        &id,
        serde_json::json!({
            "requestParameters": {"keyId": key(i), "pendingWindowInDays": 30},
            "responseElements": {"keyId": key(i), "keyState": "PendingDeletion", "pendingWindowInDays": 30,
                                 "deletionDate": "2026-12-20T10:00:00Z"}
        }),
    );
    (id, json)
}

/// Milliseconds at the given quantile (0..=1) of sorted latencies.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (quantile(&ms, 0.5), quantile(&ms, 0.99));
    println!(
        "  {name:<44} {:>6} {p50:>8.0} {p99:>8.0} {:>8.0}",
        ms.len(),
        quantile(&ms, 1.0)
    );
    (p50, p99)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: page_latency BROKERS AWS_ENDPOINT KEYWATCH_BINARY [PAGES] [NOISE_PER_PAGE] [RUN_ARGS...]";
    let brokers = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let endpoint = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let binary = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let pages: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let noise: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let run_args: Vec<String> = args.collect();
    let tag = std::process::id();

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let (topic_arn, queue_url) =
        keywatch_testkit::subscribed_queue(&sdk, &format!("keywatch-latency-{tag}")).await;

    // The peer: the broker alone, produce to a consumer of this process.
    let peer = KafkaSettings::plaintext(&brokers, format!("keywatch-latency-peer-{tag}"));
    ensure_topic(&peer, 3).await?;
    let consumer = EventLogConsumer::new(&peer, &format!("keywatch-latency-peer-{tag}"))?;
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let joined = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (received, stop, joined) = (received.clone(), stop.clone(), joined.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(batch) =
                    consumer.poll_batch(500, Duration::from_millis(100), Duration::MAX)
                {
                    let now = Instant::now();
                    let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                    for c in batch {
                        r.insert(String::from_utf8_lossy(&c.payload).into_owned(), now);
                    }
                }
                if !consumer.assigned_partitions().is_empty() {
                    joined.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    let producer = EventLogProducer::new(&peer)?;
    let waiting = Instant::now();
    while !joined.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(60),
            "the peer consumer joined no group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut peer_sent = HashMap::new();
    for i in 0..pages {
        let (id, json) = schedule(1_000_000 + i);
        peer_sent.insert(json.clone(), Instant::now());
        producer
            .publish(&id, &json, &[key(i)], "bench", "2026-11-20T10:00:00Z")
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = reader.join();
    let peer_ms: Vec<f64> = {
        let r = received.lock().unwrap_or_else(|e| e.into_inner());
        peer_sent
            .iter()
            .filter_map(|(json, sent)| Some(r.get(json)?.duration_since(*sent).as_secs_f64() * 1e3))
            .collect()
    };

    // keywatch run, paging through SNS to the queue.
    let settings = KafkaSettings::plaintext(&brokers, format!("keywatch-latency-{tag}"));
    ensure_topic(&settings, 3).await?;
    let dir = tempfile::tempdir()?;
    let mut run = std::process::Command::new(&binary)
        .args(["run", "--brokers", &brokers, "--topic", &settings.topic])
        .args(["--group", &format!("keywatch-latency-{tag}")])
        .arg("--store")
        .arg(format!("sqlite:{}", dir.path().join("k.db").display()))
        .args(["--sns-topic-arn", &topic_arn])
        .args(&run_args)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env(
            "KEYWATCH_LOG",
            std::env::var("LATENCY_RUN_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let producer = Arc::new(EventLogProducer::new(&settings)?);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // Until the run has joined its group: a first page, not measured.
    let (id, json) = schedule(0);
    producer
        .publish(&id, &json, &[key(0)], "bench", "2026-11-20T10:00:00Z")
        .await?;
    let waiting = Instant::now();
    loop {
        let got = keywatch_testkit::paged_alerts(&sdk, &queue_url).await;
        if !got.is_empty() {
            break;
        }
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(90),
            "keywatch run paged nothing in 90 s"
        );
    }
    let paged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let poller = {
        let (paged, sqs, queue_url) = (paged.clone(), sqs.clone(), queue_url.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            while paged.lock().unwrap_or_else(|e| e.into_inner()).len() < pages
                && started.elapsed() < Duration::from_secs(120)
            {
                let Ok(r) = sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                else {
                    continue;
                };
                let now = Instant::now();
                for m in r.messages() {
                    let envelope: serde_json::Value =
                        serde_json::from_str(m.body().unwrap_or_default()).unwrap_or_default();
                    let alert: serde_json::Value =
                        serde_json::from_str(envelope["Message"].as_str().unwrap_or_default())
                            .unwrap_or_default();
                    // The measured pages: the other keys' schedules (not the busy key's own
                    // pages, when it is pending deletion).
                    if let Some(id) = alert["event_id"]
                        .as_str()
                        .filter(|id| id.starts_with("sched-") && !id.starts_with("sched-999999-"))
                    {
                        paged
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(id.to_owned())
                            .or_insert(now);
                    }
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await;
                }
            }
        })
    };
    let mut sent = HashMap::new();
    let busy = key(999_999);
    let busy_pending = std::env::var_os("LATENCY_BUSY_PENDING").is_some();
    if busy_pending {
        // The alarm case: the busy key is pending deletion and still called.
        let (id, json) = schedule(999_999);
        producer
            .publish(
                &id,
                &json,
                std::slice::from_ref(&busy),
                "bench",
                "2026-11-20T10:00:00Z",
            )
            .await?;
    }
    let started = Instant::now();
    for i in 1..=pages {
        // The noise in flight together, as a busy account's ingest produces it; the page's
        // record after it.
        let mut in_flight = tokio::task::JoinSet::new();
        for n in 0..noise {
            let id = format!("use-{i}-{n}-{tag}");
            // Pending deletion, each burst in a second of its own, as a trail's time
            // advances: a late use folds in place once its second is past the kept entries.
            let extra = if busy_pending {
                let t = keywatch_core::Timestamp::from_millis(1_795_168_800_000 + i as i64 * 1000);
                serde_json::json!({"eventTime": t.to_string()})
            } else {
                serde_json::json!({})
            };
            let json = record("Decrypt", &busy, &id, extra);
            let (producer, busy) = (producer.clone(), busy.clone());
            in_flight.spawn(async move {
                producer
                    .publish(
                        &id,
                        &json,
                        std::slice::from_ref(&busy),
                        "bench",
                        "2026-11-20T10:00:00Z",
                    )
                    .await
            });
        }
        while let Some(done) = in_flight.join_next().await {
            done??;
        }
        let (id, json) = schedule(i);
        sent.insert(id.clone(), Instant::now());
        producer
            .publish(&id, &json, &[key(i)], "bench", "2026-11-20T10:00:00Z")
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let producing = started.elapsed();
    let _ = poller.await;
    let _ = run.kill();
    let _ = run.wait();
    let ms: Vec<f64> = {
        let p = paged.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter()
            .filter_map(|(id, at)| Some(p.get(id)?.duration_since(*at).as_secs_f64() * 1e3))
            .collect()
    };
    let records = pages * (noise + 1);
    println!(
        "produce-to-page latency, loopback ({records} records in {:.1} s, {:.0}/s; a page every 20 ms among them):",
        producing.as_secs_f64(),
        records as f64 / producing.as_secs_f64()
    );
    println!(
        "  {:<44} {:>6} {:>8} {:>8} {:>8}",
        "", "count", "p50 ms", "p99 ms", "max ms"
    );
    let missing = pages - ms.len();
    let (_, p99) = summary("keywatch run: produced -> page in SQS", ms);
    let (_, peer_p99) = summary("peer: produced -> consumed (the broker alone)", peer_ms);
    println!(
        "p99 {p99:.0} ms: {:.2}x the aim of 1,000 ms; {:.1}x the broker alone; {missing} page(s) not received",
        p99 / 1000.0,
        p99 / peer_p99
    );
    Ok(())
}
