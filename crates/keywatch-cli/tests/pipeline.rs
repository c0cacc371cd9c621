//! The deployable path end to end on real services (`make test` starts them): EventBridge
//! envelopes invoked on the `keywatch-ingest` function under the Lambda runtime emulator
//! (`cargo lambda watch`, KEYWATCH_TEST_LAMBDA) → the Kafka event log (tansu) → the
//! `keywatch-projector` function (invoked with the KafkaEvents the event source mapping would
//! send, one per partition at once) → DynamoDB and SNS (moto) → an SQS subscriber; then the same records through the
//! standalone projector, `keywatch run`. Both must page exactly what `keywatch replay` raises.

use base64::Engine;
use keywatch_kafka::{EventLogConsumer, KafkaSettings};
use keywatch_testkit::{invoke, moto, paged_alerts, service, subscribed_queue};
use std::path::{Path, PathBuf};
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn eventbridge_to_ingest_to_kafka_to_projector_to_sns_pages_what_replay_raises() {
    let lambda = service("KEYWATCH_TEST_LAMBDA");
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = std::env::var("KEYWATCH_TEST_LAMBDA_TOPIC").expect("KEYWATCH_TEST_LAMBDA_TOPIC");
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/eventbridge.jsonl");
    let envelopes = std::fs::read_to_string(&samples).expect("samples");

    // EventBridge → ingest → Kafka.
    let mut published = 0;
    for line in envelopes.lines().filter(|l| !l.trim().is_empty()) {
        let (status, body) = invoke(&lambda, "keywatch-ingest", line.as_bytes());
        assert!(status.contains("200"), "{status}: {body}");
        let outcome: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        published += outcome["published"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        published,
        envelopes.lines().count() as u64,
        "every KMS record acknowledged"
    );
    // KMS's own deletion event is evidence that a key is deleted: on the log too.
    let cmk = r#"{"version":"0","id":"kms-deletion-n","detail-type":"KMS CMK Deletion","source":"aws.kms","account":"111122223333","time":"2026-11-09T15:00:00Z","region":"us-east-1","resources":["arn:aws:kms:us-east-1:111122223333:key/2222bbbb-22bb-22bb-22bb-222222222222"],"detail":{"key-id":"2222bbbb-22bb-22bb-22bb-222222222222"}}"#;
    let (status, body) = invoke(&lambda, "keywatch-ingest", cmk.as_bytes());
    assert!(
        status.contains("200") && body.contains(r#""published":1"#),
        "{status}: {body}"
    );
    published += 1;
    let ours: std::collections::BTreeSet<String> = envelopes
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["detail"]["eventID"].as_str().map(str::to_owned))
        .chain(["kms-deletion-n".to_owned()])
        .collect();
    let inputs = tempfile::tempdir().expect("temp dir");
    let cmk_file = inputs.path().join("kms-deletion.json");
    std::fs::write(&cmk_file, cmk).expect("write");

    let config = moto().await;
    let reference = replay_alerts(&[samples.as_path(), cmk_file.as_path()]);
    assert!(reference
        .iter()
        .any(|(k, _)| k == "pending_deletion_key_used"));

    // 1. The projector function, as the Kafka event source mapping invokes it.
    keywatch_aws::DynamoDatabase::create_table(&config, "keywatch-lambda")
        .await
        .expect("table");
    let (lambda_topic_arn, lambda_queue) = subscribed_queue(&config, "keywatch-lambda-pages").await;
    assert_eq!(
        lambda_topic_arn, "arn:aws:sns:us-east-1:123456789012:keywatch-lambda-pages",
        "as the emulator is configured"
    );
    let settings = KafkaSettings::plaintext(brokers.clone(), topic.clone());
    let consumer = EventLogConsumer::new(&settings, "keywatch-lambda-esm").expect("consumer");
    let mut consumed = Vec::new();
    // Only this test's records: other tests put theirs on the same topic.
    let is_ours = |c: &keywatch_kafka::Consumed| {
        serde_json::from_slice::<serde_json::Value>(&c.payload).is_ok_and(|v| {
            [&v["eventID"], &v["id"]]
                .iter()
                .any(|id| id.as_str().is_some_and(|id| ours.contains(id)))
        })
    };
    for _ in 0..60 {
        consumed.extend(
            consumer
                .poll_batch(
                    10_000,
                    std::time::Duration::from_millis(500),
                    std::time::Duration::MAX,
                )
                .expect("poll")
                .into_iter()
                .filter(is_ours),
        );
        if consumed.len() >= published as usize {
            break;
        }
    }
    assert_eq!(
        consumed.len(),
        published as usize,
        "what ingest put on the log"
    );
    // The event source mapping over a topic of several partitions: one invocation per
    // partition, at the same time (the emulator runs two instances of a function), on one
    // table. Keys whose custom key store connects or disconnects are folded by both.
    let partitions = into_partitions(&consumed, 2);
    assert!(
        partitions.iter().all(|p| !p.is_empty()),
        "both partitions have records"
    );
    let answers: Vec<(String, String)> = std::thread::scope(|scope| {
        let invocations: Vec<_> = partitions
            .iter()
            .map(|records| {
                let (lambda, event) = (&lambda, kafka_event(&topic, records).to_string());
                scope.spawn(move || invoke(lambda, "keywatch-projector", event.as_bytes()))
            })
            .collect();
        invocations
            .into_iter()
            .map(|i| i.join().expect("invocation"))
            .collect()
    });
    let mut new_records = 0;
    for (status, body) in &answers {
        assert!(status.contains("200"), "{status}: {body}");
        assert!(body.contains(r#""left_in_outbox":0"#), "{body}");
        let outcome: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        new_records += outcome["new_records"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        new_records,
        ours.len() as u64,
        "each eventID new to the log once (the samples repeat one): {answers:?}"
    );
    assert_eq!(
        event_driven(pages(&config, &lambda_queue).await),
        reference,
        "the projector function, invoked per partition at once, pages what replay raises, once each"
    );
    // The event source mapping retries a batch, and the log redelivers: nobody is paged again.
    let mut again = consumed.clone();
    again.reverse();
    again.extend(consumed.iter().step_by(2).cloned());
    // …with two malformed records in it: they are rejected, the valid ones still processed.
    let mut with_garbage = kafka_event(&topic, &again);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if let Some(first) = with_garbage["records"]
        .as_object_mut()
        .and_then(|m| m.values_mut().next())
        .and_then(|v| v.as_array_mut())
    {
        first.push(
            serde_json::json!({"topic": topic, "partition": 0, "offset": 999_998, "timestamp": 0,
            "timestampType": "CREATE_TIME", "value": b64(b"{not json"), "headers": []}),
        );
        first.push(
            serde_json::json!({"topic": topic, "partition": 0, "offset": 999_999, "timestamp": 0,
            "timestampType": "CREATE_TIME", "value": "%%%not base64", "headers": []}),
        );
    }
    let (status, body) = invoke(
        &lambda,
        "keywatch-projector",
        with_garbage.to_string().as_bytes(),
    );
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains(r#""rejected":2"#), "{body}");
    assert!(
        pages(&config, &lambda_queue).await.is_empty(),
        "a retried batch pages nobody"
    );
    // The metric the alarm watches.
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let listed = cw
        .list_metrics()
        .namespace("Keywatch")
        .metric_name("PendingDeletionKeyUsage")
        .send()
        .await
        .expect("metrics");
    assert!(!listed.metrics().is_empty(), "PendingDeletionKeyUsage put");
    // The sweeper, on its schedule: the time-driven alerts, and an empty outbox afterwards.
    let (status, body) = invoke(&lambda, "keywatch-sweeper", b"{}");
    assert!(
        status.contains("200") && body.contains(r#""left_in_outbox":0"#),
        "{status}: {body}"
    );

    // 2. The same records through the standalone projector, `keywatch run`.
    let (topic_arn, queue_url) = subscribed_queue(&config, "keywatch-pipeline").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args([
            "run",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            "keywatch-pipeline-test",
        ])
        .args([
            "--store",
            &format!("sqlite:{}", dir.path().join("k.db").display()),
        ])
        .args(["--sns-topic-arn", &topic_arn, "--exit-when-idle", "3"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("keywatch run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        event_driven(pages(&config, &queue_url).await),
        reference,
        "keywatch run pages what replay raises"
    );
}

/// Every page in the queue, as (kind, alert id).
async fn pages(config: &aws_config::SdkConfig, queue_url: &str) -> Vec<(String, String)> {
    paged_alerts(config, queue_url)
        .await
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_owned(),
                a["alert_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Without the clock-driven alerts (their clock is the wall clock here), sorted.
fn event_driven(mut alerts: Vec<(String, String)>) -> Vec<(String, String)> {
    alerts.retain(|(k, _)| k != "deletion_imminent" && k != "deletion_overdue");
    alerts.sort();
    alerts
}

/// The reference: what `keywatch replay` raises for the same records.
fn replay_alerts(inputs: &[&Path]) -> Vec<(String, String)> {
    let replay = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["replay", "--in-memory", "--format", "json"])
        .args(inputs)
        .output()
        .expect("keywatch replay");
    assert!(replay.status.success());
    event_driven(
        String::from_utf8_lossy(&replay.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
            .map(|a| {
                (
                    a["kind"].as_str().unwrap_or_default().to_owned(),
                    a["alert_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

/// The records as a topic of `n` partitions holds them: a key's records in one partition (the
/// producer keys them by key ARN), in their order; records without a key in the first.
fn into_partitions(
    records: &[keywatch_kafka::Consumed],
    n: usize,
) -> Vec<Vec<keywatch_kafka::Consumed>> {
    let keys: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r.key.as_deref()).collect();
    let partition_of = |key: Option<&str>| {
        key.and_then(|k| keys.iter().position(|known| *known == k))
            .map_or(0, |i| i % n)
    };
    let mut partitions = vec![Vec::new(); n];
    for r in records {
        let p = partition_of(r.key.as_deref());
        let mut r = r.clone();
        r.partition = p as i32;
        partitions[p].push(r);
    }
    partitions
}

/// The event the Kafka event source mapping sends: records by "topic-partition", base64 values.
fn kafka_event(topic: &str, records: &[keywatch_kafka::Consumed]) -> serde_json::Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut by_partition: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        Default::default();
    for r in records {
        by_partition.entry(format!("{topic}-{}", r.partition)).or_default().push(serde_json::json!({
            "topic": topic, "partition": r.partition, "offset": r.offset,
            "timestamp": 1_795_000_000_000_i64, "timestampType": "CREATE_TIME",
            "key": r.key.as_deref().map(|k| b64(k.as_bytes())), "value": b64(&r.payload), "headers": []
        }));
    }
    serde_json::json!({"eventSource": "SelfManagedKafka", "bootstrapServers": "127.0.0.1:19092", "records": by_partition})
}
