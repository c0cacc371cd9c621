//! The deployable path end to end on real services (`make test` starts them): EventBridge
//! envelopes invoked on the `keywatch-ingest` function under the Lambda runtime emulator
//! (`cargo lambda watch`, KEYWATCH_TEST_LAMBDA) → the Kafka event log (tansu) → the projector
//! (`keywatch run`) → SNS (moto) → an SQS subscriber. The pages must be the alerts `keywatch
//! replay` raises for the same records.

use aws_sdk_sns::config::Credentials;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

fn service(var: &str) -> String {
    let v = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs the services `make test` starts")
    });
    let addr = v.trim_start_matches("http://").to_owned();
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "nothing listens at {v} ({var}): run scripts/services.sh start"
    );
    v
}

/// POSTs to the Lambda runtime emulator; returns (status line, body).
fn invoke(addr: &str, function: &str, body: &[u8]) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("emulator");
    s.set_read_timeout(Some(std::time::Duration::from_secs(300)))
        .expect("timeout");
    let head = format!(
        "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    // The emulator may answer chunked; the JSON object is what lies between the braces.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_owned(),
        _ => body.to_owned(),
    };
    (status, body)
}

#[tokio::test]
async fn eventbridge_to_ingest_to_kafka_to_projector_to_sns_pages_what_replay_raises() {
    let lambda = service("KEYWATCH_TEST_LAMBDA");
    let brokers = service("KEYWATCH_TEST_KAFKA");
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let topic = std::env::var("KEYWATCH_TEST_LAMBDA_TOPIC").expect("KEYWATCH_TEST_LAMBDA_TOPIC");
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/eventbridge.jsonl");
    let envelopes = std::fs::read_to_string(&samples).expect("samples");

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
    // KMS's own deletion notification carries no CloudTrail record: accepted, skipped.
    let cmk = r#"{"version":"0","id":"n","detail-type":"KMS CMK Deletion","source":"aws.kms","account":"111122223333","time":"2026-11-09T15:00:00Z","region":"us-east-1","resources":["arn:aws:kms:us-east-1:111122223333:key/2222bbbb-22bb-22bb-22bb-222222222222"],"detail":{"key-id":"2222bbbb-22bb-22bb-22bb-222222222222"}}"#;
    let (status, body) = invoke(&lambda, "keywatch-ingest", cmk.as_bytes());
    assert!(
        status.contains("200") && body.contains(r#""skipped":1"#),
        "{status}: {body}"
    );

    // The projector consumes the log and pages through SNS into an SQS queue.
    let config = aws_config::from_env()
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keywatch-tests",
        ))
        .load()
        .await;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let topic_arn = sns
        .create_topic()
        .name("keywatch-pipeline")
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned();
    let queue_url = sqs
        .create_queue()
        .queue_name("keywatch-pipeline")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn_attr = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(arn_attr.clone())
        .send()
        .await
        .expect("attrs");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&arn_attr))
        .expect("queue arn")
        .clone();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe");

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
    let mut paged = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if r.messages().is_empty() {
            break;
        }
        for m in r.messages() {
            let envelope: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("SNS envelope");
            let alert: serde_json::Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap_or_default())
                    .expect("alert");
            paged.push((
                alert["kind"].as_str().unwrap_or_default().to_owned(),
                alert["alert_id"].as_str().unwrap_or_default().to_owned(),
            ));
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }

    // The reference: what `keywatch replay` raises for the same records.
    let replay = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["replay", "--in-memory", "--format", "json"])
        .arg(&samples)
        .output()
        .expect("keywatch replay");
    assert!(replay.status.success());
    let clock = |k: &str| k == "deletion_imminent" || k == "deletion_overdue";
    let mut expected: Vec<(String, String)> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_owned(),
                a["alert_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(k, _)| !clock(k))
        .collect();
    let mut got: Vec<(String, String)> = paged.into_iter().filter(|(k, _)| !clock(k)).collect();
    expected.sort();
    got.sort();
    assert!(expected
        .iter()
        .any(|(k, _)| k == "pending_deletion_key_used"));
    assert_eq!(
        got, expected,
        "the deployed path pages exactly what replay raises, once each"
    );
}
