//! The event log against a real Kafka-protocol broker (tansu, started by `make test`;
//! KEYWATCH_TEST_KAFKA names it). Without it these tests fail and say so.

use keywatch_kafka::{ensure_topic, Consumed, EventLogConsumer, EventLogProducer, KafkaSettings};
use std::time::Duration;

/// Polls until `got` holds 20 records (or 50 polls have passed).
fn poll_until_twenty(consumer: &EventLogConsumer, got: &mut Vec<Consumed>) {
    for _ in 0..50 {
        got.extend(
            consumer
                .poll_batch(100, Duration::from_millis(500), Duration::MAX)
                .expect("poll"),
        );
        if got.len() >= 20 {
            break;
        }
    }
}

/// The records' values, as text.
fn payload_texts(got: &[Consumed]) -> Vec<String> {
    got.iter()
        .map(|c| String::from_utf8_lossy(&c.payload).into_owned())
        .collect()
}

/// Publishes [`twenty_records`] for `key`, each acknowledged.
async fn publish_twenty(producer: &EventLogProducer, key: &str) {
    for (i, json) in twenty_records().iter().enumerate() {
        producer
            .publish(
                &format!("e{i}"),
                json,
                &[key.to_owned()],
                "test",
                "2026-11-01T00:00:00Z",
            )
            .await
            .expect("acknowledged");
    }
}

/// The 20 records the tests produce, in order.
fn twenty_records() -> Vec<String> {
    (0..20)
        .map(|i| format!(r#"{{"eventID":"e{i}"}}"#))
        .collect()
}

fn settings(topic: &str) -> KafkaSettings {
    KafkaSettings::plaintext(keywatch_testkit::service("KEYWATCH_TEST_KAFKA"), topic)
}

#[tokio::test]
async fn records_keyed_by_key_arn_come_back_in_order_and_commits_resume_after_them() {
    let s = settings(&keywatch_testkit::unique("keywatch-log"));
    ensure_topic(&s, 3).await.expect("topic");
    ensure_topic(&s, 3)
        .await
        .expect("creating it again is fine");
    let producer = EventLogProducer::new(&s).expect("producer");
    let key =
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_owned();
    publish_twenty(&producer, &key).await;
    let group = keywatch_testkit::unique("keywatch-group");
    let consumer = EventLogConsumer::new(&s, &group).expect("consumer");
    let mut got = Vec::new();
    poll_until_twenty(&consumer, &mut got);
    let ids = payload_texts(&got);
    let expected = twenty_records();
    assert_eq!(ids, expected, "one key, one partition, in order");
    assert!(got.iter().all(|c| c.key.as_deref() == Some(key.as_str())));
    consumer
        .commit(&s.topic, &got[..10])
        .expect("commit the first ten");
    drop(consumer);

    // The same group resumes after the committed offset.
    let consumer = EventLogConsumer::new(&s, &group).expect("consumer again");
    let mut again = Vec::new();
    for _ in 0..50 {
        again.extend(
            consumer
                .poll_batch(100, Duration::from_millis(500), Duration::MAX)
                .expect("poll"),
        );
        if again.len() >= 10 {
            break;
        }
    }
    let first = String::from_utf8_lossy(&again[0].payload).into_owned();
    assert_eq!(first, r#"{"eventID":"e10"}"#);
    assert_eq!(again.len(), 10);
}

#[tokio::test]
async fn an_unreachable_broker_fails_the_publish() {
    let mut s = settings("unused");
    s.brokers = "127.0.0.1:9".into();
    let producer = EventLogProducer::new(&s).expect("producer");
    let started = std::time::Instant::now();
    let err = producer
        .publish(
            "e1",
            "{}",
            &["k".to_owned()],
            "test",
            "2026-11-01T00:00:00Z",
        )
        .await
        .expect_err("nothing listens on port 9");
    assert!(err.to_string().contains("e1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_batch_is_cut_at_its_window_while_records_are_waiting() {
    let s = settings(&keywatch_testkit::unique("keywatch-window"));
    ensure_topic(&s, 1).await.expect("topic");
    let producer = EventLogProducer::new(&s).expect("producer");
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    publish_twenty(&producer, key).await;
    let consumer =
        EventLogConsumer::new(&s, &keywatch_testkit::unique("keywatch-group")).expect("consumer");
    // A window of nothing: the batch ends with its first record, whatever else is waiting.
    let mut first = Vec::new();
    for _ in 0..50 {
        first = consumer
            .poll_batch(100, Duration::from_millis(500), Duration::ZERO)
            .expect("poll");
        if !first.is_empty() {
            break;
        }
    }
    assert_eq!(first.len(), 1, "cut at the window");
    // The rest come after it, none lost, none repeated.
    let mut got = first;
    poll_until_twenty(&consumer, &mut got);
    let ids = payload_texts(&got);
    let expected = twenty_records();
    assert_eq!(ids, expected);
}
