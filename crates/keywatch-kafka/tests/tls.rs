//! The event log over mutual TLS, as `CLIENT_CERTIFICATE_TLS` deployments run it: a real
//! broker (a second tansu, KEYWATCH_TEST_KAFKA_TLS_BACKEND, started by `make test`) behind a
//! TLS front at KEYWATCH_TEST_KAFKA_TLS that requires a client certificate signed by the
//! test's CA. Without the services these tests fail and say so.

use keywatch_kafka::{
    ensure_topic, topic_partitions, EventLogConsumer, EventLogProducer, KafkaError, KafkaSettings,
};
use keywatch_testkit::{TestCertificates, TlsFront};
use std::time::Duration;

fn tls_settings(front: &TlsFront, topic: &str, vars: &[(&str, String)]) -> KafkaSettings {
    KafkaSettings::from_env(|k| match k {
        "KEYWATCH_KAFKA_BROKERS" => Some(front.address().to_owned()),
        "KEYWATCH_KAFKA_TOPIC" => Some(topic.to_owned()),
        "KEYWATCH_KAFKA_SECURITY_PROTOCOL" => Some("SSL".into()),
        _ => vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
    })
    .expect("valid TLS settings")
}

/// The TLS settings as files, as `keywatch run` is given them: the CA `trust` issued, and
/// the client certificate and key of `client`.
fn files(trust: &TestCertificates, client: &TestCertificates) -> Vec<(&'static str, String)> {
    let path = |p: std::path::PathBuf| p.display().to_string();
    vec![
        ("KEYWATCH_KAFKA_SSL_CA_LOCATION", path(trust.ca_file())),
        (
            "KEYWATCH_KAFKA_SSL_CERTIFICATE_LOCATION",
            path(client.client_certificate_file()),
        ),
        (
            "KEYWATCH_KAFKA_SSL_KEY_LOCATION",
            path(client.client_key_file()),
        ),
    ]
}

#[tokio::test]
async fn the_event_log_runs_over_mutual_tls_and_refuses_clients_without_a_signed_certificate() {
    let certs = TestCertificates::generate();
    let front = TlsFront::for_test_broker(&certs);
    let topic = keywatch_testkit::unique("keywatch-tls");

    // Files, as `keywatch run` is given them.
    let s = tls_settings(&front, &topic, &files(&certs, &certs));
    ensure_topic(&s, 1).await.expect("topic, over mutual TLS");
    let producer = EventLogProducer::new(&s).expect("producer");
    let key =
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_owned();
    for i in 0..5 {
        producer
            .publish(
                &format!("e{i}"),
                &format!(r#"{{"eventID":"e{i}"}}"#),
                std::slice::from_ref(&key),
                "test",
                "2026-11-01T00:00:00Z",
            )
            .await
            .expect("acknowledged over mutual TLS");
    }

    // PEM text, as the ingest function reads it from Secrets Manager.
    let s = tls_settings(
        &front,
        &topic,
        &[
            ("KEYWATCH_KAFKA_SSL_CA_PEM", certs.ca_pem().to_owned()),
            (
                "KEYWATCH_KAFKA_SSL_CERTIFICATE_PEM",
                certs.client_certificate_pem().to_owned(),
            ),
            (
                "KEYWATCH_KAFKA_SSL_KEY_PEM",
                certs.client_key_pem().to_owned(),
            ),
        ],
    );
    let consumer = EventLogConsumer::new(&s, &keywatch_testkit::unique("keywatch-tls-group"))
        .expect("consumer");
    let mut got = Vec::new();
    for _ in 0..60 {
        got.extend(
            consumer
                .poll_batch(100, Duration::from_millis(500), Duration::MAX)
                .expect("poll over mutual TLS"),
        );
        if got.len() >= 5 {
            break;
        }
    }
    let payloads: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8_lossy(&c.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..5).map(|i| format!(r#"{{"eventID":"e{i}"}}"#)).collect();
    assert_eq!(payloads, expected);
    assert!(front.accepted() > 0);
    assert_eq!(
        front.refused(),
        0,
        "every handshake so far carried the client certificate"
    );

    // No client certificate: the front refuses the handshake and the client says so.
    let without = tls_settings(&front, &topic, &files(&certs, &certs)[..1]);
    match topic_partitions(&without, Duration::from_secs(5)) {
        Err(KafkaError::Unreachable { brokers, .. }) => assert_eq!(brokers, front.address()),
        other => panic!("a client without a certificate reached the broker: {other:?}"),
    }
    assert!(front.refused() > 0, "the front refused the handshake");

    // A certificate another CA signed is refused too.
    let stranger = TestCertificates::generate();
    let refused_before = front.refused();
    let foreign = tls_settings(&front, &topic, &files(&certs, &stranger));
    assert!(
        topic_partitions(&foreign, Duration::from_secs(5)).is_err(),
        "a certificate from another CA reached the broker"
    );
    assert!(front.refused() > refused_before);

    // The client checks the broker too: a CA that did not sign the broker's certificate fails.
    let distrusting = tls_settings(&front, &topic, &files(&stranger, &certs));
    assert!(
        topic_partitions(&distrusting, Duration::from_secs(5)).is_err(),
        "the client trusted a broker its CA did not sign"
    );
}
