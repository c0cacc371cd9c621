//! What a key protects, from the encryption contexts AWS services document (issue 10): given
//! these calls, then this blast radius, these alerts, this preflight verdict. Our own fixtures
//! in the shapes CloudTrail writes.

mod support;

use keywatch_core::preflight::{preflight, Verdict};
use keywatch_core::protects::{read_encryption_context, ResourceType};
use keywatch_core::record::EncryptionContext;
use keywatch_core::AlertKind;
use serde_json::{json, Value};
use support::*;

fn with_context(name: &str, time: &str, id: &str, context: Value) -> Value {
    with(
        call(name, time, id, assumed_role(APP_ROLE)),
        json!({"requestParameters": {"keyId": KEY, "encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": context}}),
    )
}

fn s3_decrypt(time: &str, id: &str, object: &str) -> Value {
    let mut r = with_context(
        "Decrypt",
        time,
        id,
        json!({"aws:s3:arn": format!("arn:aws:s3:::{object}")}),
    );
    r["userIdentity"]["invokedBy"] = json!("s3.amazonaws.com");
    r
}

fn ebs_grant(time: &str, id: &str, volume: &str) -> Value {
    with(
        call("CreateGrant", time, id, assumed_role(APP_ROLE)),
        json!({"requestParameters": {"keyId": KEY, "granteePrincipal": "111122223333:aws:ec2-infrastructure:i-0abc",
               "constraints": {"encryptionContextSubset": {"aws:ebs:id": volume}}, "operations": ["Decrypt"]}}),
    )
}

fn secret_generate(time: &str, id: &str) -> Value {
    with_context(
        "GenerateDataKey",
        time,
        id,
        json!({"SecretARN": "arn:aws:secretsmanager:us-east-1:111122223333:secret:orders/db-AbCdEf",
               "SecretVersionId": "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"}),
    )
}

fn dynamodb_decrypt(time: &str, id: &str) -> Value {
    with_context(
        "Decrypt",
        time,
        id,
        json!({"aws:dynamodb:tableName": "Orders", "aws:dynamodb:subscriberId": ACCOUNT}),
    )
}

fn used_key() -> Vec<Value> {
    vec![
        aws_kms_key("2026-01-01T00:00:00Z", "create"),
        s3_decrypt(
            "2026-10-01T00:00:00Z",
            "s3-1",
            "orders-prod/2026/10/01/a.json",
        ),
        s3_decrypt(
            "2026-10-02T00:00:00Z",
            "s3-2",
            "orders-prod/2026/10/02/b.json",
        ),
        s3_decrypt("2026-10-03T00:00:00Z", "s3-3", "orders-archive/old.json.gz"),
        ebs_grant("2026-10-04T00:00:00Z", "grant", "vol-0123456789abcdef0"),
        secret_generate("2026-10-05T00:00:00Z", "secret"),
        dynamodb_decrypt("2026-10-06T00:00:00Z", "ddb"),
    ]
}

#[test]
fn s3_object_arns_roll_up_to_their_bucket() {
    let t = timeline(&used_key());
    let buckets: Vec<(&str, u64)> = t
        .blast_radius
        .resources
        .iter()
        .filter(|u| u.resource.resource_type == ResourceType::S3Bucket)
        .map(|u| (u.resource.id.as_str(), u.count))
        .collect();
    assert_eq!(buckets, [("orders-archive", 1), ("orders-prod", 2)]);
    let prod = &t.blast_radius.resources[1];
    assert_eq!(prod.first_seen, ts("2026-10-01T00:00:00Z"));
    assert_eq!(prod.last_seen, ts("2026-10-02T00:00:00Z"));
    assert!(prod.principals.iter().any(|p| p.0 == APP_ROLE));
}

#[test]
fn ebs_secrets_manager_and_dynamodb_contexts_name_their_resources() {
    let t = timeline(&used_key());
    let kinds: Vec<(ResourceType, &str)> = t
        .blast_radius
        .resources
        .iter()
        .map(|u| (u.resource.resource_type, u.resource.id.as_str()))
        .collect();
    assert!(kinds.contains(&(ResourceType::EbsVolume, "vol-0123456789abcdef0")));
    assert!(kinds.contains(&(
        ResourceType::Secret,
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:orders/db-AbCdEf"
    )));
    assert!(kinds.contains(&(ResourceType::DynamodbTable, "111122223333/Orders")));
    // The secret's version is part of the secret, not a resource of its own.
    assert_eq!(kinds.len(), 5);
}

#[test]
fn unknown_context_keys_are_kept_by_name_never_by_value() {
    let context = json!({"Department": "Engineering", "customer-ssn": "078-05-1120"});
    let seen = read_encryption_context(&EncryptionContext::from_json(
        context.as_object().expect("object"),
    ));
    assert!(seen.resources.is_empty());
    assert_eq!(seen.other_keys, ["Department", "customer-ssn"]);
    let t = timeline(&[with_context(
        "Decrypt",
        "2026-10-01T00:00:00Z",
        "u",
        json!({"customer-ssn": "078-05-1120"}),
    )]);
    let text = serde_json::to_string(&t).expect("timeline JSON");
    assert!(text.contains("customer-ssn") && !text.contains("078-05-1120"));
}

#[test]
fn the_blast_radius_is_the_same_in_any_order_and_duplication() {
    let records = used_key();
    let mut shuffled: Vec<Value> = records.iter().rev().cloned().collect();
    shuffled.extend(records.iter().step_by(2).cloned());
    assert_eq!(
        timeline(&records).blast_radius,
        timeline(&shuffled).blast_radius
    );
}

#[test]
fn deletion_scheduled_says_what_the_key_protects_and_its_verdict() {
    let alerts = when(
        &used_key(),
        schedule("2026-10-10T00:00:00Z", "sched", 7, None),
        "2026-10-10T01:00:00Z",
    );
    assert_eq!(kinds(&alerts), [AlertKind::DeletionScheduled]);
    let a = &alerts[0];
    assert!(
        a.summary
            .contains("protects 2 S3 buckets (orders-archive, orders-prod)"),
        "{}",
        a.summary
    );
    let json = serde_json::to_value(a).expect("alert JSON");
    let types: Vec<&str> = json["protects"]
        .as_array()
        .expect("protects")
        .iter()
        .filter_map(|p| p["resource_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["s3_bucket", "ebs_volume", "secret", "dynamodb_table"]
    );
    assert!(
        a.verdict
            .as_deref()
            .is_some_and(|v| v.starts_with("IN USE")),
        "{:?}",
        a.verdict
    );
}

#[test]
fn a_page_for_a_pending_deletion_use_carries_the_blast_radius_in_text_and_json() {
    let mut given = used_key();
    given.push(schedule("2026-10-10T00:00:00Z", "sched", 7, None));
    let mut use_ = s3_decrypt("2026-10-11T00:00:00Z", "late", "orders-prod/x.json");
    use_["errorCode"] = json!("KMSInvalidStateException");
    use_["errorMessage"] = json!(format!("{KEY} is pending deletion."));
    let alerts = when(&given, use_, "2026-10-11T01:00:00Z");
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    let page = keywatch_core::page::page(&alerts[0]);
    assert!(
        page.text.contains("Protects:   2 S3 buckets"),
        "{}",
        page.text
    );
    let json: Value = serde_json::from_str(&page.json).expect("page JSON");
    assert_eq!(json["protects"][0]["resource_type"], "s3_bucket");
    assert_eq!(json["protects"][0]["count"], 2);
}

#[test]
fn preflight_says_in_use_for_a_key_used_recently_and_safe_for_an_unused_one() {
    let t = timeline(&used_key());
    let report = preflight(&t, ts("2026-10-20T00:00:00Z"), 30);
    assert_eq!(report.verdict, Verdict::InUse);
    assert!(report
        .verdict_line
        .starts_with("IN USE: last used 14 days ago by"));
    // Unused for longer than asked, but it protects data: still not safe.
    let report = preflight(&t, ts("2027-06-01T00:00:00Z"), 30);
    assert_eq!(report.verdict, Verdict::InUse);
    assert!(
        report.verdict_line.contains("protects"),
        "{}",
        report.verdict_line
    );
    // A key used without naming any resource, long ago: safe.
    let quiet = timeline(&[
        aws_kms_key("2026-01-01T00:00:00Z", "create"),
        decrypt("2026-02-01T00:00:00Z", "u", APP_ROLE),
    ]);
    let report = preflight(&quiet, ts("2026-11-01T00:00:00Z"), 30);
    assert_eq!(report.verdict, Verdict::Safe);
    assert_eq!(
        report.verdict_line,
        "unused for 273 days, protects nothing seen"
    );
    // A failed attempt is not a use.
    let denied = timeline(&[
        aws_kms_key("2026-01-01T00:00:00Z", "create"),
        failed(
            "Decrypt",
            "2026-10-30T00:00:00Z",
            "d",
            "AccessDeniedException",
        ),
    ]);
    assert_eq!(
        preflight(&denied, ts("2026-11-01T00:00:00Z"), 30).verdict,
        Verdict::Safe
    );
}
