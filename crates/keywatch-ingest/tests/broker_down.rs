//! With the broker unreachable, ingest fails (so EventBridge retries and then the dead-letter
//! queue keeps the event) instead of dropping the record.

use keywatch_ingest::ingest;
use keywatch_kafka::{EventLogProducer, KafkaSettings};

#[tokio::test]
async fn an_unreachable_broker_fails_the_invocation() {
    let settings = KafkaSettings::plaintext("127.0.0.1:9", "keywatch-events");
    let producer = EventLogProducer::new(&settings).expect("producer");
    let record = r#"{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.kms","account":"111122223333","time":"2026-11-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{"eventVersion":"1.08","eventID":"e1","eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"DisableKey","awsRegion":"us-east-1","recipientAccountId":"111122223333","requestParameters":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}}}"#;
    let err = ingest(record.as_bytes(), "test", &producer)
        .await
        .expect_err("not acknowledged");
    assert!(err.to_string().contains("e1"), "{err}");
}
