//! SNS paging and CloudWatch metrics against a real moto server (started by `make test`;
//! KEYWATCH_TEST_AWS_ENDPOINT names it). Without it these tests fail and say so.

use aws_sdk_sns::config::Credentials;
use keywatch_aws::{Metrics, SnsPager, NAMESPACE};
use keywatch_core::alert::{Alert, AlertKind, Severity};
use keywatch_core::Timestamp;
use keywatch_pipeline::{BatchMetrics, MetricsSink, Pager};
use keywatch_testkit::{envelopes, moto, subscribed_queue};

fn alert(id: &str) -> Alert {
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    Alert {
        schema_version: keywatch_core::alert::ALERT_SCHEMA_VERSION,
        alert_id: id.into(),
        kind: AlertKind::PendingDeletionKeyUsed,
        severity: Severity::Critical,
        key_arn: keywatch_core::KeyArn::parse(key).expect("key ARN"),
        account: "111122223333".into(),
        region: "us-east-1".into(),
        event_id: Some("use-1".into()),
        event_time: Timestamp::parse_rfc3339("2026-11-01T10:00:00Z").expect("time"),
        principal: Some("arn:aws:iam::111122223333:role/app".into()),
        caller_account: None,
        summary: "arn:aws:iam::111122223333:role/app tried Decrypt".into(),
        operation: Some(keywatch_core::KmsOperation::Decrypt),
        source_ip: Some("10.0.0.1".into()),
        user_agent: Some("agent\u{1b}[31m".into()),
        invoked_by: None,
        rejected: Some(true),
        uses_in_window: Some(3),
        uses_so_far: Some(3),
        failed_attempts: None,
        deletion_date: Timestamp::parse_rfc3339("2026-11-08T00:00:00Z"),
        window_days: None,
        scheduled_by: None,
        usage: Vec::new(),
        last_use: None,
        protects: Vec::new(),
        verdict: None,
        custom_key_store_id: None,
        rescue_command: Some(format!(
            "aws kms cancel-key-deletion --key-id {key} --region us-east-1"
        )),
        remediation: None,
        timeline_command: format!("keywatch timeline {key}"),
    }
}

#[tokio::test]
async fn a_page_reaches_an_sqs_subscriber_with_subject_attributes_and_alert_json() {
    let config = moto().await;
    let (topic_arn, queue_url) = subscribed_queue(&config, "keywatch-pages-test").await;

    let results = SnsPager::new(&config, &topic_arn)
        .send(&[alert("a1")])
        .await;
    assert!(matches!(results.as_slice(), [Ok(())]), "{results:?}");

    let received = envelopes(&config, &queue_url).await;
    assert_eq!(received.len(), 1, "exactly one page");
    let envelope = &received[0];
    let subject = keywatch_core::page::page(&alert("a1")).subject;
    assert!(subject.starts_with("[CRITICAL] KMS key pending deletion used: 1234abcd"));
    assert_eq!(envelope["Subject"], subject.as_str());
    assert_eq!(
        envelope["MessageAttributes"]["severity"]["Value"],
        "critical"
    );
    assert_eq!(
        envelope["MessageAttributes"]["kind"]["Value"],
        "pending_deletion_key_used"
    );
    assert_eq!(
        envelope["MessageAttributes"]["region"]["Value"],
        "us-east-1"
    );
    let alert: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().expect("message"))
            .expect("SQS subscribers get the alert JSON");
    assert_eq!(alert["alert_id"], "a1");
    assert_eq!(alert["uses_so_far"], 3);
    assert!(
        !alert["user_agent"]
            .as_str()
            .unwrap_or_default()
            .contains('\u{1b}'),
        "sanitised"
    );
}

#[tokio::test]
async fn an_unreachable_sns_is_an_error_naming_the_alert() {
    let config = aws_config::from_env()
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keywatch-tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let results = SnsPager::new(&config, "arn:aws:sns:us-east-1:123456789012:nowhere")
        .send(&[alert("a2"), alert("a3")])
        .await;
    let ids: Vec<&str> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .expect_err("nothing listens on port 9")
                .alert_id
                .as_str()
        })
        .collect();
    assert_eq!(ids, ["a2", "a3"]);
}

/// Pages go out in PublishBatch requests of ten at most: every one of three requests' worth
/// arrives once, with its subject, attributes and alert JSON.
#[tokio::test]
async fn many_pages_are_published_in_batches_and_each_arrives_once() {
    let config = moto().await;
    let (topic_arn, queue_url) = subscribed_queue(&config, "keywatch-pages-batch").await;
    let alerts: Vec<Alert> = (0..23).map(|i| alert(&format!("b{i:02}"))).collect();
    let results = SnsPager::new(&config, &topic_arn).send(&alerts).await;
    assert_eq!(results.len(), 23);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut got: Vec<String> = Vec::new();
    for _ in 0..20 {
        for envelope in envelopes(&config, &queue_url).await {
            let alert: serde_json::Value =
                serde_json::from_str(envelope["Message"].as_str().expect("message"))
                    .expect("alert JSON");
            let id = alert["alert_id"].as_str().expect("id").to_owned();
            let sent = alerts
                .iter()
                .find(|a| a.alert_id == id)
                .expect("one of ours");
            assert_eq!(
                envelope["Subject"],
                keywatch_core::page::page(sent).subject.as_str(),
                "every page keeps its subject"
            );
            assert_eq!(
                envelope["MessageAttributes"]["kind"]["Value"],
                "pending_deletion_key_used"
            );
            got.push(id);
        }
        if got.len() >= 23 {
            break;
        }
    }
    got.sort();
    let want: Vec<String> = (0..23).map(|i| format!("b{i:02}")).collect();
    assert_eq!(got, want, "each page once");
}

#[tokio::test]
async fn metrics_land_in_cloudwatch() {
    let config = moto().await;
    let mut m = BatchMetrics::default();
    m.count_alerts(&[alert("m1"), alert("m2")]);
    m.records_rejected = 2;
    Metrics::new(&config).put(&m).await.expect("put");
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let listed = cw
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await
        .expect("list");
    let names: std::collections::BTreeSet<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    for n in ["PendingDeletionKeyUsage", "AlertsRaised", "RecordsRejected"] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
    let stats = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("PendingDeletionKeyUsage")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("KeyId")
                .value("1234abcd-12ab-34cd-56ef-1234567890ab")
                .build(),
        )
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() - 600,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() + 600,
        ))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("statistics");
    let sum: f64 = stats.datapoints().iter().filter_map(|d| d.sum()).sum();
    assert!(sum >= 6.0, "two alerts of three uses each: {sum}");
    // The alarm's metric has no dimensions.
    let alarm_metric = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("PendingDeletionKeyUsage")
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() - 600,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() + 600,
        ))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("statistics");
    let total: f64 = alarm_metric
        .datapoints()
        .iter()
        .filter_map(|d| d.sum())
        .sum();
    assert!(total >= 6.0, "undimensioned total: {total}");
    assert!(
        listed.metrics().iter().any(
            |m| m.metric_name() == Some("PendingDeletionKeyUsage") && m.dimensions().is_empty()
        ),
        "an undimensioned PendingDeletionKeyUsage for the alarm"
    );
}
