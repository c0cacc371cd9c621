//! `keywatch-ingest-s3` end to end on real services (`make test` starts them): a real gzipped
//! CloudTrail log file from the public corpus is put into an S3 bucket on the moto server, the
//! function is invoked with the S3 notification under the Lambda runtime emulator, and its KMS
//! records are read back from the Kafka topic (tansu).

use keywatch_core::{normalise, Normalised};
use keywatch_kafka::{EventLogConsumer, KafkaSettings};
use keywatch_reader::{read_path, Item};
use keywatch_testkit::{corpus, invoke, moto, service, unique};
use std::collections::BTreeSet;

/// The eventIDs of the KMS records keywatch tracks in a log file.
fn tracked_event_ids(path: &std::path::Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    read_path(path, &mut |item| {
        if let Item::Record { json, .. } = item {
            if let Ok(Normalised::Kms { event_id, .. }) = normalise(&json) {
                ids.insert(event_id);
            }
        }
    })
    .expect("corpus file");
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzipped_cloudtrail_log_file_in_s3_reaches_the_event_log() {
    let lambda = service("KEYWATCH_TEST_LAMBDA");
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let topic = std::env::var("KEYWATCH_TEST_LAMBDA_TOPIC").expect("KEYWATCH_TEST_LAMBDA_TOPIC");
    let file = corpus("coralogix-aws-shipper/cloudtrail.log.gz");
    let bytes = std::fs::read(&file).expect("corpus file");
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "a gzip object, as CloudTrail writes them"
    );
    let expected = tracked_event_ids(&file);
    assert!(!expected.is_empty(), "the file holds KMS records");

    let config = moto().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("trail-logs").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/28/111122223333_CloudTrail_us-east-1_20261128T1200Z_abc+def.json.gz";
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(bytes.clone().into())
        .send()
        .await
        .expect("put object");

    // The notification S3 sends (keys URL-encoded: '+' for a space, %2B for '+').
    let notification = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-28T12:05:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:CLOUDTRAIL"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "R", "x-amz-id-2": "I"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "keywatch",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key.replace('+', "%2B"), "size": bytes.len(), "eTag": "e", "sequencer": "1"}}
    }]});
    let (status, body) = invoke(
        &lambda,
        "keywatch-ingest-s3",
        notification.to_string().as_bytes(),
    );
    assert!(status.contains("200"), "{status}: {body}");
    let outcome: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(outcome["published"], expected.len(), "{body}");
    assert_eq!(outcome["rejected"], 0, "{body}");

    // Read the topic back: every tracked KMS record of the file is there.
    let settings = KafkaSettings::plaintext(brokers, topic);
    let consumer = EventLogConsumer::new(&settings, &unique("keywatch-s3-e2e")).expect("consumer");
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        for c in consumer
            .poll_batch(
                10_000,
                std::time::Duration::from_millis(500),
                std::time::Duration::MAX,
            )
            .expect("poll")
        {
            let v: serde_json::Value = serde_json::from_slice(&c.payload).expect("record JSON");
            if let Some(id) = v["eventID"].as_str().filter(|id| expected.contains(*id)) {
                seen.insert(id.to_owned());
            }
        }
        if seen == expected {
            break;
        }
    }
    assert_eq!(
        seen, expected,
        "every KMS record of the log file is on the event log"
    );

    // A damaged object is reported, not silently dropped.
    let damaged = "AWSLogs/damaged.json.gz";
    s3.put_object()
        .bucket(&bucket)
        .key(damaged)
        .body(bytes[..bytes.len() / 2].to_vec().into())
        .send()
        .await
        .expect("put object");
    let mut damaged_note = notification.clone();
    damaged_note["Records"][0]["s3"]["object"]["key"] = serde_json::json!(damaged);
    let (status, body) = invoke(
        &lambda,
        "keywatch-ingest-s3",
        damaged_note.to_string().as_bytes(),
    );
    assert!(status.contains("200"), "{status}: {body}");
    let outcome: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(outcome["rejected"], 1, "{body}");
}
