//! KMS's names as types: AWS's spelling in and out, unknown spellings kept, and the JSON that
//! stored timelines and alerts hold unchanged by the types.

use keywatch_core::timeline::PendingUseBucket;
use keywatch_core::{
    BackingKeyDeletionStatus, KeyArn, KeyOrigin, KeyState, KeyTimeline, KmsOperation,
};

#[test]
fn operations_read_and_write_aws_spelling() {
    for name in [
        "Decrypt",
        "GenerateDataKeyPairWithoutPlaintext",
        "ScheduleKeyDeletion",
    ] {
        let op = KmsOperation::parse(name).expect(name);
        assert_eq!(op.as_str(), name);
        assert_eq!(serde_json::to_value(&op).expect("serialises"), name);
    }
    assert_eq!(
        KmsOperation::parse("ListKeys"),
        None,
        "acts on no existing key"
    );
    assert_eq!(
        KmsOperation::parse("decrypt"),
        None,
        "AWS's names are case-sensitive"
    );
}

#[test]
fn only_operations_on_key_material_are_uses() {
    assert!(KmsOperation::Decrypt.uses_key_material());
    assert!(KmsOperation::Sign.uses_key_material());
    assert!(KmsOperation::CreateGrant.uses_key_material());
    assert!(!KmsOperation::EnableKey.uses_key_material());
    assert!(!KmsOperation::TagResource.uses_key_material());
}

#[test]
fn an_operation_this_version_does_not_know_is_kept_as_it_came() {
    let op: KmsOperation = serde_json::from_str("\"DecryptV2\"").expect("reads");
    assert_eq!(op, KmsOperation::Other("DecryptV2".into()));
    assert_eq!(
        serde_json::to_string(&op).expect("serialises"),
        "\"DecryptV2\""
    );
}

#[test]
fn backing_key_deletion_status_reads_aws_spelling() {
    assert!(BackingKeyDeletionStatus::parse("SUCCESS").is_deleted());
    for s in ["FAILURE", "UNKNOWN", "PENDING"] {
        let status = BackingKeyDeletionStatus::parse(s);
        assert!(!status.is_deleted(), "{s}");
        assert_eq!(serde_json::to_value(&status).expect("serialises"), s);
    }
}

/// `value` is read from, written as and displayed as `text`, AWS's spelling.
fn goes_through_json_as<T>(text: &str, value: T)
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug
        + std::fmt::Display,
{
    let json = format!("\"{text}\"");
    let read: T = serde_json::from_str(&json).expect(text);
    assert_eq!(read, value);
    assert_eq!(serde_json::to_string(&read).expect("serialises"), json);
    assert_eq!(format!("{read:<24}|"), format!("{text:<24}|"));
}

#[test]
fn key_origins_and_backing_key_statuses_go_through_json_in_aws_spelling() {
    goes_through_json_as("AWS_KMS", KeyOrigin::AwsKms);
    goes_through_json_as("EXTERNAL", KeyOrigin::External);
    goes_through_json_as("AWS_CLOUDHSM", KeyOrigin::AwsCloudHsm);
    goes_through_json_as("EXTERNAL_KEY_STORE", KeyOrigin::ExternalKeyStore);
    goes_through_json_as("AWS_KMS_V2", KeyOrigin::Other("AWS_KMS_V2".into()));
    goes_through_json_as("SUCCESS", BackingKeyDeletionStatus::Success);
    goes_through_json_as("FAILURE", BackingKeyDeletionStatus::Failure);
    goes_through_json_as("UNKNOWN", BackingKeyDeletionStatus::Unknown);
    goes_through_json_as("PENDING", BackingKeyDeletionStatus::Other("PENDING".into()));
}

#[test]
fn a_bucket_proved_only_by_rejections_is_stored_as_unscheduled() {
    let stored = serde_json::json!({
        "schedule": "unscheduled",
        "principal": "arn:aws:iam::111122223333:role/app",
        "minute": "2026-11-01T10:00:00Z",
        "count": 2,
        "first": {
            "operation": "Decrypt",
            "rejected": true,
            "event_id": "e1",
            "event_time": "2026-11-01T10:00:05Z",
            "event_name": "Decrypt",
            "principal": "arn:aws:iam::111122223333:role/app"
        }
    });
    let bucket: PendingUseBucket = match serde_json::from_value(stored.clone()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(bucket.schedule, None);
    assert_eq!(bucket.first.operation, KmsOperation::Decrypt);
    let again = serde_json::to_value(&bucket).expect("serialises");
    assert_eq!(again["schedule"], "unscheduled");
    assert_eq!(again["first"]["operation"], "Decrypt");

    let mut scheduled = bucket;
    scheduled.schedule = Some("5f5b2a8c-0000-4000-8000-000000000001".into());
    let json = serde_json::to_value(&scheduled).expect("serialises");
    assert_eq!(json["schedule"], "5f5b2a8c-0000-4000-8000-000000000001");
    let back: PendingUseBucket = serde_json::from_value(json).expect("reads");
    assert_eq!(back, scheduled);
}

/// KMS's names shown in columns (`keywatch timeline`'s usage table) take the width asked for.
#[test]
fn kms_names_fill_the_width_of_their_column() {
    use keywatch_core::{AlertKind, KmsOperation, Severity};
    assert_eq!(format!("{:<10}|", KmsOperation::Decrypt), "Decrypt   |");
    assert_eq!(
        format!("{:>8}|", Severity::Critical.to_string()),
        format!("{:>8}|", Severity::Critical)
    );
    assert_eq!(
        format!("{:<30}|", AlertKind::DeletionScheduled),
        format!("{:<30}|", AlertKind::DeletionScheduled.as_str())
    );
}

#[test]
fn key_states_read_and_write_aws_spelling() {
    // KMS's KeyState values (KeyMetadata), Creating and Updating among them (multi-Region
    // keys only), and keywatch's two of its own.
    for name in [
        "Creating",
        "Enabled",
        "Disabled",
        "PendingDeletion",
        "PendingImport",
        "PendingReplicaDeletion",
        "Unavailable",
        "Updating",
        "Deleted",
        "Unknown",
    ] {
        let state = KeyState::parse(name).expect(name);
        assert_eq!(state.as_str(), name);
        assert_eq!(state.to_string(), name);
        assert_eq!(serde_json::to_value(state).expect("serialises"), name);
        assert_eq!(
            serde_json::from_value::<KeyState>(serde_json::json!(name)).expect("reads"),
            state
        );
    }
    assert_eq!(
        KeyState::parse("enabled"),
        None,
        "AWS's names are case-sensitive"
    );
}

#[test]
fn a_key_state_this_version_does_not_know_reads_as_unknown_and_the_timeline_still_decodes() {
    assert_eq!(KeyState::parse("Archived"), None);
    assert_eq!(
        serde_json::from_value::<KeyState>(serde_json::json!("Archived")).expect("reads"),
        KeyState::Unknown
    );
    let key = KeyArn::parse(
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    .expect("key ARN");
    let mut stored = serde_json::to_value(KeyTimeline::new(key)).expect("serialises");
    stored["state"] = serde_json::json!("Archived");
    stored["state_before_unavailable"] = serde_json::json!("Enabled");
    let read: KeyTimeline = serde_json::from_value(stored).expect("a timeline of a newer KMS");
    assert_eq!(read.state, KeyState::Unknown);
    assert_eq!(read.state_before_unavailable, Some(KeyState::Enabled));
}
