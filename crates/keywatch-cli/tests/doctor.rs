//! `keywatch doctor` against the moto server (KEYWATCH_TEST_AWS_ENDPOINT): an account set up
//! wrong in each way keywatch cares about is told what is wrong, in plain words, with exit
//! status 3; set right, it is told all is well. Without moto this test fails and says so.

use keywatch_testkit::{moto_in, service, unique};
use std::process::Command;

/// A Region of this test's own on the shared moto server, so that no other test's trails or
/// rules are seen.
const REGION: &str = "eu-south-2";

fn doctor(endpoint: &str, topic: &str) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args([
            "doctor",
            "--format",
            "json",
            "--endpoint-url",
            endpoint,
            "--topic-arn",
            topic,
        ])
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run keywatch doctor");
    let findings = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON finding"))
        .collect();
    (
        out.status.code(),
        findings,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn finding<'a>(findings: &'a [serde_json::Value], check: &str) -> &'a serde_json::Value {
    findings
        .iter()
        .find(|f| f["check"].as_str().is_some_and(|c| c.contains(check)))
        .unwrap_or_else(|| panic!("no finding on {check}: {findings:?}"))
}

/// Removes the trails and rules an earlier run of this test left in its Region (a moto
/// server lives across runs), which would otherwise already set the account right.
async fn forget_earlier_runs(config: &aws_config::SdkConfig) {
    let ct = aws_sdk_cloudtrail::Client::new(config);
    let trails = ct.describe_trails().send().await.expect("trails");
    for t in trails.trail_list() {
        if let Some(name) = t.name() {
            ct.delete_trail()
                .name(name)
                .send()
                .await
                .expect("delete trail");
        }
    }
    let ev = aws_sdk_eventbridge::Client::new(config);
    let rules = ev.list_rules().send().await.expect("rules");
    for r in rules.rules() {
        if let Some(name) = r.name() {
            let targets = ev
                .list_targets_by_rule()
                .rule(name)
                .send()
                .await
                .expect("targets");
            let ids: Vec<String> = targets
                .targets()
                .iter()
                .map(|t| t.id().to_owned())
                .collect();
            if !ids.is_empty() {
                ev.remove_targets()
                    .rule(name)
                    .set_ids(Some(ids))
                    .send()
                    .await
                    .expect("remove targets");
            }
            ev.delete_rule()
                .name(name)
                .send()
                .await
                .expect("delete rule");
        }
    }
}

#[tokio::test]
async fn doctor_says_what_is_wrong_and_then_that_all_is_well() {
    let endpoint = service("KEYWATCH_TEST_AWS_ENDPOINT");
    let config = moto_in(REGION).await;
    forget_earlier_runs(&config).await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let trail_bucket = unique("doctor-trail");
    s3.create_bucket()
        .bucket(&trail_bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await
        .expect("bucket");
    let ct = aws_sdk_cloudtrail::Client::new(&config);
    let trail = unique("doctor-trail");
    ct.create_trail()
        .name(&trail)
        .s3_bucket_name(&trail_bucket)
        .send()
        .await
        .expect("trail");
    // Wrong in three ways: write events only, KMS excluded, and not logging.
    ct.put_event_selectors()
        .trail_name(&trail)
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::WriteOnly)
                .include_management_events(true)
                .exclude_management_event_sources("kms.amazonaws.com")
                .build(),
        )
        .send()
        .await
        .expect("selectors");
    let ev = aws_sdk_eventbridge::Client::new(&config);
    let rule = unique("doctor-usage");
    let usage_pattern = r#"{"source":["aws.kms"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventName":["Decrypt","Encrypt"]}}"#;
    ev.put_rule()
        .name(&rule)
        .event_pattern(usage_pattern)
        .state(aws_sdk_eventbridge::types::RuleState::Enabled)
        .send()
        .await
        .expect("rule");
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name(unique("doctor-pages"))
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned();

    let (status, findings, err) = doctor(&endpoint, &topic);
    assert_eq!(status, Some(3), "problems found: {findings:?} {err}");
    let trails = finding(&findings, "CloudTrail");
    assert_eq!(trails["ok"], false);
    let detail = trails["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&trail) && detail.contains("is not logging"),
        "{detail}"
    );
    assert!(detail.contains("excludes KMS events"), "{detail}");
    let rules = finding(&findings, "EventBridge");
    assert_eq!(rules["ok"], false);
    assert!(
        rules["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&rule)
                && d.contains("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")),
        "{rules}"
    );
    let pages = finding(&findings, "paging topic");
    assert_eq!(pages["ok"], false);
    assert!(pages["detail"]
        .as_str()
        .is_some_and(|d| d.contains("nobody")));

    // Put right: all management events, KMS included, logging; the rule's state; a subscriber.
    ct.put_event_selectors()
        .trail_name(&trail)
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .expect("selectors");
    ct.start_logging()
        .name(&trail)
        .send()
        .await
        .expect("logging");
    ev.put_rule()
        .name(&rule)
        .event_pattern(usage_pattern)
        .state(aws_sdk_eventbridge::types::RuleState::EnabledWithAllCloudtrailManagementEvents)
        .send()
        .await
        .expect("rule");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs
        .create_queue()
        .queue_name(unique("doctor-oncall"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue ARN");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe");

    let (status, findings, err) = doctor(&endpoint, &topic);
    assert_eq!(status, Some(0), "all well: {findings:?} {err}");
    assert!(findings.iter().all(|f| f["ok"] == true), "{findings:?}");
    assert_eq!(findings.len(), 3);
}
