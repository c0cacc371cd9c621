//! The Kafka credentials from Secrets Manager, in the shapes the event source mapping reads,
//! against moto (KEYWATCH_TEST_AWS_ENDPOINT); and a record produced with a client certificate
//! read from a secret, through the mutual TLS front of the second tansu
//! (KEYWATCH_TEST_KAFKA_TLS_BACKEND, KEYWATCH_TEST_KAFKA_TLS), all started by `make test`.
//! Without them these tests fail and say so.

use keywatch_ingest::kafka_settings;
use keywatch_kafka::{ensure_topic, EventLogProducer, Pem};

async fn secret(config: &aws_config::SdkConfig, name: &str, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(keywatch_testkit::unique(name))
        .secret_string(value)
        .send()
        .await
        .expect("secret")
        .arn()
        .expect("arn")
        .to_owned()
}

fn env(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn sasl_credentials_come_from_the_secret_and_a_bad_secret_is_named() {
    let config = keywatch_testkit::moto().await;
    let good = secret(
        &config,
        "AmazonMSK_keywatch",
        r#"{"username":"keywatch","password":"s3cret"}"#,
    )
    .await;
    let settings = kafka_settings(
        Some(&config),
        env(vec![
            ("KEYWATCH_KAFKA_BROKERS", "b:9096".into()),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL".into()),
            ("KEYWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("KEYWATCH_KAFKA_SECRET_ARN", good),
        ]),
    )
    .await
    .expect("settings");
    assert_eq!(settings.sasl_username.as_deref(), Some("keywatch"));
    assert_eq!(settings.sasl_password.as_deref(), Some("s3cret"));

    let bad = secret(&config, "AmazonMSK_bad", "hunter2").await;
    let err = kafka_settings(
        Some(&config),
        env(vec![
            ("KEYWATCH_KAFKA_BROKERS", "b:9096".into()),
            ("KEYWATCH_KAFKA_SECRET_ARN", bad),
        ]),
    )
    .await
    .expect_err("not JSON");
    assert!(
        err.to_string().contains("KEYWATCH_KAFKA_SECRET_ARN"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let half = secret(
        &config,
        "keywatch_client_half",
        r#"{"certificate":"-----BEGIN CERTIFICATE-----"}"#,
    )
    .await;
    let err = kafka_settings(
        Some(&config),
        env(vec![
            ("KEYWATCH_KAFKA_BROKERS", "b:9094".into()),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SSL".into()),
            ("KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN", half),
        ]),
    )
    .await
    .expect_err("no private key");
    assert!(
        err.to_string()
            .contains("KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN")
            && err.to_string().contains("privateKey"),
        "{err}"
    );
}

#[tokio::test]
async fn the_ingest_function_produces_over_mutual_tls_with_the_certificate_from_its_secret() {
    let config = keywatch_testkit::moto().await;
    let certs = keywatch_testkit::TestCertificates::generate();
    let front = keywatch_testkit::TlsFront::for_test_broker(&certs);
    let front_address = front.address().to_owned();
    let client = secret(
        &config,
        "keywatch_client_certificate",
        &serde_json::json!({
            "certificate": certs.client_certificate_pem(),
            "privateKey": certs.client_key_pem(),
        })
        .to_string(),
    )
    .await;
    let root_ca = secret(
        &config,
        "keywatch_root_ca",
        &serde_json::json!({ "certificate": certs.ca_pem() }).to_string(),
    )
    .await;
    let topic = keywatch_testkit::unique("keywatch-ingest-tls");
    let settings = kafka_settings(
        Some(&config),
        env(vec![
            ("KEYWATCH_KAFKA_BROKERS", front_address.clone()),
            ("KEYWATCH_KAFKA_TOPIC", topic),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SSL".into()),
            ("KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN", client),
            ("KEYWATCH_KAFKA_ROOT_CA_SECRET_ARN", root_ca),
        ]),
    )
    .await
    .expect("settings from the secrets");
    assert_eq!(settings.tls.ca, Some(Pem::Text(certs.ca_pem().to_owned())));
    ensure_topic(&settings, 1)
        .await
        .expect("topic over mutual TLS");
    let producer = EventLogProducer::new(&settings).expect("producer");
    producer
        .publish(
            "e1",
            r#"{"eventID":"e1"}"#,
            &[
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                    .into(),
            ],
            "test",
            "2026-11-01T00:00:00Z",
        )
        .await
        .expect("acknowledged over mutual TLS");
    assert!(front.accepted() > 0);
    assert_eq!(front.refused(), 0);
}
