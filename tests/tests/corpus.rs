//! The public CloudTrail corpus handed to us in `../shared/cloudtrail-corpus` (see its
//! SOURCES.md for provenance). Read in place, never copied. Without it these tests fail and
//! say so: they are not counted as passed.

use keywatch_core::{
    normalise, KeyEventKind, KeyOrigin, KeyState, KmsEvent, Normalised, Timestamp,
};
use keywatch_reader::{expand_paths, read_path, Item};
use serde_json::Value;
use std::path::PathBuf;

fn corpus(sub: &str) -> PathBuf {
    let root = std::env::var_os("KEYWATCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cloudtrail-corpus")
        });
    let p = root.join(sub);
    assert!(
        p.exists(),
        "the public CloudTrail corpus is not at {} (set KEYWATCH_CORPUS): this test needs it and is NOT passed",
        p.display()
    );
    p
}

/// The KMS developer guide's examples: (source page, record).
fn devguide_examples() -> Vec<(String, Value)> {
    let path = corpus("aws-kms-developer-guide/kms_devguide_examples.jsonl");
    let text = std::fs::read_to_string(&path).expect("read the examples");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each line is JSON");
            (
                v["_source_file"].as_str().unwrap_or_default().to_owned(),
                v["record"].clone(),
            )
        })
        .collect()
}

fn key_events(record: &Value) -> Vec<keywatch_core::KeyEvent> {
    match normalise(&record.to_string()) {
        Ok(Normalised::Kms { events, .. }) => events
            .into_iter()
            .filter_map(|e| match e {
                KmsEvent::Key(k) => Some(k),
                KmsEvent::KeyStore(_) => None,
            })
            .collect(),
        other => panic!("{record} normalised to {other:?}"),
    }
}

#[test]
fn every_kms_developer_guide_example_parses_into_the_right_event() {
    let examples = devguide_examples();
    assert!(
        examples.len() >= 60,
        "expected the 68 documented examples, found {}",
        examples.len()
    );
    for (page, record) in &examples {
        let name = record["eventName"].as_str().unwrap_or_default();
        let result = normalise(&record.to_string());
        let result = result.unwrap_or_else(|e| panic!("{page} {name}: rejected: {e}"));
        match name {
            "ConnectCustomKeyStore"
            | "DisconnectCustomKeyStore"
            | "CreateCustomKeyStore"
            | "DeleteCustomKeyStore"
            | "UpdateCustomKeyStore" => {
                assert!(
                    matches!(&result, Normalised::Kms { events, .. } if matches!(events[..], [KmsEvent::KeyStore(_)])),
                    "{page} {name}: {result:?}"
                )
            }
            "CreateKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "DeleteKey"
            | "DisableKey"
            | "EnableKey"
            | "ImportKeyMaterial"
            | "DeleteImportedKeyMaterial"
            | "DeleteExpiredKeyMaterial"
            | "Decrypt"
            | "Encrypt"
            | "ReEncrypt"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateDataKeyPair"
            | "GenerateDataKeyPairWithoutPlaintext"
            | "Sign"
            | "Verify"
            | "GenerateMac"
            | "VerifyMac"
            | "CreateGrant"
            | "ReplicateKey"
            | "UpdatePrimaryRegion" => {
                let events = key_events(record);
                assert!(!events.is_empty(), "{page} {name}: no key event");
                for e in &events {
                    assert_eq!(e.context.event_name, name);
                    let ok = match (&e.kind, name) {
                        (KeyEventKind::CallFailed { .. }, _) => record.get("errorCode").is_some(),
                        (KeyEventKind::Used { operation, .. }, _) => operation.as_str() == name,
                        (KeyEventKind::Created { .. }, "CreateKey")
                        | (KeyEventKind::DeletionScheduled { .. }, "ScheduleKeyDeletion")
                        | (KeyEventKind::DeletionCancelled, "CancelKeyDeletion")
                        | (KeyEventKind::Deleted { .. }, "DeleteKey")
                        | (KeyEventKind::Disabled, "DisableKey")
                        | (KeyEventKind::Enabled, "EnableKey")
                        | (KeyEventKind::KeyMaterialImported, "ImportKeyMaterial")
                        | (KeyEventKind::KeyMaterialDeleted, "DeleteImportedKeyMaterial")
                        | (KeyEventKind::KeyMaterialDeleted, "DeleteExpiredKeyMaterial")
                        | (KeyEventKind::ReplicaCreated { .. }, "ReplicateKey")
                        | (KeyEventKind::Created { .. }, "ReplicateKey")
                        | (KeyEventKind::PrimaryRegionUpdated { .. }, "UpdatePrimaryRegion") => {
                            true
                        }
                        _ => false,
                    };
                    assert!(ok, "{page} {name}: {:?}", e.kind);
                }
            }
            _ if record["eventSource"] != "kms.amazonaws.com" => {
                assert_eq!(result, Normalised::NotKms, "{page} {name}")
            }
            _ => assert!(
                matches!(result, Normalised::KmsUntracked { .. }),
                "{page} {name}: expected an untracked KMS record, got {result:?}"
            ),
        }
    }
}

fn find<'a>(
    examples: &'a [(String, Value)],
    page: &str,
    pred: impl Fn(&Value) -> bool,
) -> &'a Value {
    &examples
        .iter()
        .find(|(p, r)| p == page && pred(r))
        .unwrap_or_else(|| panic!("no such example in {page}"))
        .1
}

#[test]
fn documented_schedule_key_deletion_shapes() {
    let ex = devguide_examples();
    let schedules: Vec<_> = ex
        .iter()
        .filter(|(p, _)| p == "ct-schedule-key-deletion.md")
        .collect();
    assert_eq!(schedules.len(), 3);
    let kinds: Vec<(u32, String, KeyState, bool)> = schedules
        .iter()
        .map(|(_, r)| match &key_events(r)[0].kind {
            KeyEventKind::DeletionScheduled {
                window_days,
                deletion_date,
                key_state,
                deletion_date_reported,
                ..
            } => (
                *window_days,
                deletion_date.map_or_else(|| "none".to_owned(), |d| d.to_string()),
                *key_state,
                *deletion_date_reported,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    // "Apr 12, 2021 18:58:30 PM": a 24-hour clock with a PM marker.
    assert_eq!(
        kinds[0],
        (
            20,
            "2021-04-12T18:58:30Z".into(),
            KeyState::PendingDeletion,
            true
        )
    );
    // Multi-Region primary with replicas: no deletionDate, and none computed: its waiting
    // period begins only when its last replica is deleted.
    assert_eq!(
        kinds[1],
        (30, "none".into(), KeyState::PendingReplicaDeletion, false)
    );
    // CloudHSM: "Nov 2, 2021, 11:25:25 PM".
    assert_eq!(
        kinds[2],
        (
            30,
            "2021-11-02T23:25:25Z".into(),
            KeyState::PendingDeletion,
            true
        )
    );
    assert!(key_events(&schedules[1].1)[0]
        .key
        .key_id()
        .starts_with("mrk-"));
}

#[test]
fn documented_delete_key_with_backing_key_status() {
    let ex = devguide_examples();
    let failure = find(&ex, "fix-keystore.md", |r| {
        r.to_string().contains("FAILURE")
    });
    match &key_events(failure)[0].kind {
        KeyEventKind::Deleted {
            backing_keys,
            cloudhsm_cluster_id,
            ..
        } => {
            assert_eq!(
                backing_keys[0].deletion_status,
                keywatch_core::event::BackingKeyDeletionStatus::Failure
            );
            assert_eq!(cloudhsm_cluster_id.as_deref(), Some("cluster-1a23b4cdefg"));
        }
        other => panic!("{other:?}"),
    }
    let plain = find(&ex, "ct-delete-key.md", |r| {
        r["additionalEventData"].is_null()
    });
    let e = &key_events(plain)[0];
    // The region comes from the key ARN in resources[], not the record's awsRegion.
    assert_eq!(e.key.region(), "us-west-2");
    assert_eq!(e.context.principal.0, "AWS Internal");
}

#[test]
fn documented_create_key_origins() {
    let ex = devguide_examples();
    let origins: Vec<(KeyOrigin, Option<String>, Option<String>)> = ex
        .iter()
        .filter(|(p, _)| p == "ct-createkey.md")
        .map(|(_, r)| match &key_events(r)[0].kind {
            KeyEventKind::Created {
                origin,
                custom_key_store_id,
                xks_key_id,
                ..
            } => (
                origin.clone(),
                custom_key_store_id.clone(),
                xks_key_id.clone(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(origins.contains(&(KeyOrigin::External, None, None)));
    assert!(origins.contains(&(
        KeyOrigin::AwsCloudHsm,
        Some("cks-1234567890abcdef0".into()),
        None
    )));
    assert!(origins.contains(&(
        KeyOrigin::ExternalKeyStore,
        Some("cks-1234567890abcdef0".into()),
        Some("bb8562717f809024".into())
    )));
}

#[test]
fn the_xks_proxy_rejection_is_not_a_pending_deletion_use() {
    let ex = devguide_examples();
    let r = find(&ex, "ct-decrypt.md", |r| {
        r["errorCode"] == "KMSInvalidStateException"
    });
    match &key_events(r)[0].kind {
        KeyEventKind::Used { outcome, .. } => assert!(
            matches!(outcome, keywatch_core::event::UsageOutcome::Failed { .. }),
            "{outcome:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// Reads inputs as `keywatch replay` does; returns (records, KMS records, rejections).
fn replay_counts(paths: &[PathBuf]) -> (usize, usize, Vec<String>) {
    let (mut records, mut kms, mut rejected) = (0, 0, Vec::new());
    for file in expand_paths(paths).expect("corpus paths") {
        read_path(&file, &mut |item| match item {
            Item::Record { json, origin, .. } => {
                records += 1;
                match normalise(&json) {
                    Ok(Normalised::Kms { .. }) | Ok(Normalised::KmsUntracked { .. }) => kms += 1,
                    Ok(Normalised::NotKms) => {}
                    Err(e) => rejected.push(format!("{origin}: {e}")),
                }
            }
            Item::Rejected { reason, origin, .. } => rejected.push(format!("{origin}: {reason}")),
            Item::Skipped { .. } => {}
        })
        .expect("readable");
    }
    (records, kms, rejected)
}

#[test]
fn real_delivered_files_replay_with_no_rejected_record() {
    let (records, kms, rejected) = replay_counts(&[
        corpus("invictus-aws_dataset"),
        corpus("coralogix-aws-shipper"),
        corpus("trailscraper"),
        corpus("stratus-red-team"),
    ]);
    assert!(rejected.is_empty(), "rejected: {rejected:#?}");
    // invictus: 2,900 records of which 240 KMS; coralogix: 20 of which 13 KMS (SOURCES.md).
    assert!(records >= 2_920, "{records} records");
    assert!(kms >= 253, "{kms} KMS records");
}

#[test]
fn lambda_event_fixtures_carrying_cloudtrail_records_are_read() {
    let dir = corpus("aws-lambda-rust-runtime-fixtures");
    let (records, _, rejected) = replay_counts(&[
        dir.join("example-cloudwatch-cloudtrail-assumed-role.json"),
        dir.join("example-cloudwatch-cloudtrail-unknown-federate.json"),
        dir.join("example-cloudwatch-cloudtrail-unknown-user-auth.json"),
    ]);
    assert_eq!(records, 3);
    assert!(rejected.is_empty(), "rejected: {rejected:#?}");
}

#[test]
fn a_real_delivered_file_yields_attributed_kms_usage() {
    let (_, kms, _) = replay_counts(&[corpus("coralogix-aws-shipper")]);
    assert_eq!(kms, 13);
    let t = Timestamp::parse_rfc3339("2023-07-10T12:07:55Z");
    assert!(t.is_some());
}

/// AWS's ReEncrypt example names its source and destination keys in `resources`: both are
/// used. AWS's ReplicateKey example creates the replica in another Region.
#[test]
fn documented_reencrypt_uses_both_keys_and_replicate_key_names_the_replica() {
    let ex = devguide_examples();
    let (_, reencrypt) = ex
        .iter()
        .find(|(p, r)| p == "ct-reencrypt.md" && r["eventName"] == "ReEncrypt")
        .expect("the ReEncrypt example");
    let keys: Vec<String> = key_events(reencrypt)
        .iter()
        .map(|e| {
            assert!(matches!(e.kind, KeyEventKind::Used { .. }), "{:?}", e.kind);
            e.key.key_id().to_owned()
        })
        .collect();
    assert_eq!(
        keys,
        [
            "0987dcba-09fe-87dc-65ba-ab0987654321",
            "1234abcd-12ab-34cd-56ef-1234567890ab"
        ]
    );
    let (_, replicate) = ex
        .iter()
        .find(|(p, r)| p == "ct-replicate-key.md" && r["eventName"] == "ReplicateKey")
        .expect("the ReplicateKey example");
    let events = key_events(replicate);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        KeyEventKind::ReplicaCreated { replica_region } if replica_region == "us-west-2"
    )));
    assert!(events.iter().any(|e| e.key.region() == "us-west-2"
        && matches!(
            e.kind,
            KeyEventKind::Created {
                multi_region: true,
                ..
            }
        )));
}

/// The resource types the encryption contexts of a corpus file's KMS calls name, over all
/// its keys.
fn protected_types(files: &[PathBuf]) -> std::collections::BTreeSet<String> {
    let mut events = Vec::new();
    for file in files {
        read_path(file, &mut |item| {
            if let Item::Record { json, .. } = item {
                if let Ok(Normalised::Kms { events: e, .. }) = normalise(&json) {
                    events.extend(e);
                }
            }
        })
        .expect("readable");
    }
    let keys: std::collections::BTreeSet<keywatch_core::KeyArn> = events
        .iter()
        .filter_map(|e| match e {
            KmsEvent::Key(k) => Some(k.key.clone()),
            KmsEvent::KeyStore(_) => None,
        })
        .collect();
    keys.into_iter()
        .flat_map(|k| {
            keywatch_core::KeyTimeline::fold(k, events.iter())
                .blast_radius
                .resources
                .into_iter()
                .map(|u| serde_json::to_value(u.resource.resource_type).expect("type"))
                .filter_map(|v| v.as_str().map(str::to_owned))
        })
        .collect()
}

/// Real calls from Secrets Manager and Parameter Store (the Invictus files, a real account's
/// delivered logs) and AWS's documented S3 and EBS examples name what their keys
/// protect.
#[test]
fn real_and_documented_encryption_contexts_name_what_keys_protect() {
    let real = protected_types(&expand_paths(&[corpus("invictus-aws_dataset")]).expect("files"));
    assert!(
        real.contains("secret") && real.contains("ssm_parameter"),
        "{real:?}"
    );
    let dir = tempfile_dir();
    let lines: Vec<String> = devguide_examples()
        .into_iter()
        .map(|(_, r)| r.to_string())
        .collect();
    let file = dir.join("devguide.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    let documented = protected_types(&[file]);
    for t in ["s3_bucket", "ebs_volume"] {
        assert!(documented.contains(t), "{t} missing from {documented:?}");
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keywatch-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
