//! The SASL credentials from Secrets Manager, against moto (KEYWATCH_TEST_AWS_ENDPOINT,
//! started by `make test`). Without it this test fails and says so.

use keywatch_ingest::sasl_credentials;

#[tokio::test]
async fn credentials_come_from_the_secret_and_a_bad_secret_is_named() {
    let config = keywatch_testkit::moto().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let nanos = keywatch_testkit::unique("");
    let good = sm
        .create_secret()
        .name(format!("AmazonMSK_keywatch_{nanos}"))
        .secret_string(r#"{"username":"keywatch","password":"s3cret"}"#)
        .send()
        .await
        .expect("secret");
    let arn = good.arn().expect("arn");
    assert_eq!(
        sasl_credentials(&config, arn).await.expect("read"),
        ("keywatch".to_owned(), "s3cret".to_owned())
    );
    let bad = sm
        .create_secret()
        .name(format!("AmazonMSK_bad_{nanos}"))
        .secret_string("hunter2")
        .send()
        .await
        .expect("secret");
    let err = sasl_credentials(&config, bad.arn().expect("arn"))
        .await
        .expect_err("not JSON");
    assert!(
        err.to_string().contains("KEYWATCH_KAFKA_SECRET_ARN"),
        "{err}"
    );
}
