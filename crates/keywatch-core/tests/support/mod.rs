//! Builders for CloudTrail records in the shape AWS writes them (our own fixtures).
#![allow(dead_code)]

use keywatch_core::{
    evaluate, normalise, Alert, AlertConfig, AlertKind, KeyArn, KeyTimeline, KmsEvent, Normalised,
    Timestamp,
};
use proptest::prelude::*;
use serde_json::{json, Value};

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "us-east-1";
pub const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
pub const APP_ROLE: &str = "arn:aws:iam::111122223333:role/app";
pub const ADMIN: &str = "arn:aws:iam::111122223333:user/Alice";

pub fn assumed_role(role: &str) -> Value {
    json!({
        "type": "AssumedRole", "principalId": "AROAEXAMPLE:session-1",
        "arn": format!("{}/session-1", role.replace(":role/", ":assumed-role/")),
        "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE",
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": role, "accountId": ACCOUNT, "userName": "app"},
                            "attributes": {"creationDate": "2026-11-01T00:00:00Z", "mfaAuthenticated": "false"}}
    })
}

pub fn iam_user(arn: &str) -> Value {
    json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": arn, "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLE", "userName": "Alice"})
}

/// A KMS API call on KEY at `time` by `identity`.
pub fn call(name: &str, time: &str, id: &str, identity: Value) -> Value {
    json!({
        "eventVersion": "1.08", "userIdentity": identity, "eventTime": time,
        "eventSource": "kms.amazonaws.com", "eventName": name, "awsRegion": REGION,
        "sourceIPAddress": "192.0.2.10", "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": KEY}, "responseElements": null,
        "requestID": format!("req-{id}"), "eventID": id, "readOnly": false,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY}],
        "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
}

pub fn with(mut record: Value, patch: Value) -> Value {
    if let (Some(r), Some(p)) = (record.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            r.insert(k.clone(), v.clone());
        }
    }
    record
}

pub fn decrypt(time: &str, id: &str, role: &str) -> Value {
    call("Decrypt", time, id, assumed_role(role))
}

pub fn rejected(name: &str, time: &str, id: &str, role: &str) -> Value {
    with(
        call(name, time, id, assumed_role(role)),
        json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    )
}

/// A call KMS refused because the key is disabled, as CloudTrail records it.
pub fn rejected_as_disabled(name: &str, time: &str, id: &str, role: &str) -> Value {
    with(
        call(name, time, id, assumed_role(role)),
        json!({"errorCode": "DisabledException", "errorMessage": format!("{KEY} is disabled.")}),
    )
}

pub fn schedule(time: &str, id: &str, days: u32, deletion_date: Option<&str>) -> Value {
    let mut response =
        json!({"keyId": KEY, "keyState": "PendingDeletion", "pendingWindowInDays": days});
    if let Some(d) = deletion_date {
        response["deletionDate"] = json!(d);
    }
    with(
        call("ScheduleKeyDeletion", time, id, iam_user(ADMIN)),
        json!({"requestParameters": {"keyId": KEY, "pendingWindowInDays": days}, "responseElements": response}),
    )
}

pub fn cancel(time: &str, id: &str) -> Value {
    with(
        call("CancelKeyDeletion", time, id, iam_user(ADMIN)),
        json!({"responseElements": {"keyId": KEY}}),
    )
}

pub fn delete_key(time: &str, id: &str, additional: Value) -> Value {
    json!({
        "eventVersion": "1.08", "userIdentity": {"accountId": ACCOUNT, "invokedBy": "AWS Internal"},
        "eventTime": time, "eventSource": "kms.amazonaws.com", "eventName": "DeleteKey",
        "awsRegion": REGION, "sourceIPAddress": "AWS Internal", "userAgent": "AWS Internal",
        "requestParameters": null, "responseElements": null, "additionalEventData": additional,
        "eventID": id, "readOnly": false,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY}],
        "eventType": "AwsServiceEvent", "recipientAccountId": ACCOUNT, "managementEvent": true
    })
}

/// KMS's service event when KEY's imported key material reaches its expiration (the shape of
/// AWS's documented DeleteExpiredKeyMaterial record).
pub fn expired_key_material(time: &str, id: &str) -> Value {
    // The same service event shape as DeleteKey's, without additional data.
    let mut record = with(
        delete_key(time, id, Value::Null),
        json!({"eventName": "DeleteExpiredKeyMaterial",
               "serviceEventDetails": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}}),
    );
    if let Some(r) = record.as_object_mut() {
        r.remove("additionalEventData");
    }
    record
}

pub fn create_key(
    time: &str,
    id: &str,
    origin: &str,
    store: Option<&str>,
    cluster: Option<&str>,
    xks: Option<&str>,
) -> Value {
    let mut meta = json!({"AWSAccountId": ACCOUNT, "keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "arn": KEY,
        "keyState": if origin == "EXTERNAL" { "PendingImport" } else { "Enabled" }, "origin": origin, "multiRegion": false});
    if let Some(s) = store {
        meta["customKeyStoreId"] = json!(s);
    }
    if let Some(c) = cluster {
        meta["cloudHsmClusterId"] = json!(c);
    }
    if let Some(x) = xks {
        meta["xksKeyConfiguration"] = json!({"id": x});
    }
    with(
        call("CreateKey", time, id, iam_user(ADMIN)),
        json!({"requestParameters": {"origin": origin, "customKeyStoreId": store}, "responseElements": {"keyMetadata": meta}}),
    )
}

pub fn key_store_call(name: &str, time: &str, id: &str, store: &str) -> Value {
    json!({
        "eventVersion": "1.08", "userIdentity": iam_user(ADMIN), "eventTime": time,
        "eventSource": "kms.amazonaws.com", "eventName": name, "awsRegion": REGION,
        "sourceIPAddress": "192.0.2.0", "userAgent": "AWS Internal",
        "requestParameters": {"customKeyStoreId": store}, "responseElements": null,
        "additionalEventData": {"customKeyStoreName": "ExampleKeyStore", "clusterId": "cluster-1a23b4cdefg"},
        "requestID": format!("req-{id}"), "eventID": id, "readOnly": false, "eventType": "AwsApiCall",
        "managementEvent": true, "recipientAccountId": ACCOUNT
    })
}

pub fn events(records: &[Value]) -> Vec<KmsEvent> {
    records
        .iter()
        .flat_map(|r| match normalise(&r.to_string()) {
            Ok(Normalised::Kms { events, .. }) => events,
            other => panic!("expected KMS events from {r}, got {other:?}"),
        })
        .collect()
}

pub fn timeline(records: &[Value]) -> KeyTimeline {
    let key = KeyArn::parse(KEY).expect("test key ARN");
    KeyTimeline::fold(key, events(records).iter())
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("test timestamp")
}

/// Given these records, when this one arrives, the alerts it adds.
pub fn when(given: &[Value], record: Value, as_of: &str) -> Vec<Alert> {
    let before: Vec<String> = evaluate(&timeline(given), ts(as_of), &AlertConfig::default())
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    let mut all = given.to_vec();
    all.push(record);
    evaluate(&timeline(&all), ts(as_of), &AlertConfig::default())
        .into_iter()
        .filter(|a| !before.contains(&a.alert_id))
        .collect()
}

pub fn kinds(alerts: &[Alert]) -> Vec<AlertKind> {
    alerts.iter().map(|a| a.kind).collect()
}

/// What else a history may hold beyond creation, uses, schedule and its end: a CloudHSM key
/// store (0 none, 1 named from creation, 2 named only by DeleteKey) with a disconnect and maybe
/// a reconnect, cross-account copies, calls denied for other reasons, ReEncrypt with another
/// key, KMS's deletion event, and a rejection just after a cancel.
#[derive(Clone, Debug)]
pub struct Extras {
    pub key_store: u8,
    pub disconnect_at: u32,
    pub reconnect: bool,
    pub cross_account: Vec<(u32, u8)>,
    pub denied: Vec<u32>,
    pub reencrypt: bool,
    pub kms_deletion_event: bool,
    pub late_rejection: bool,
}

fn extras() -> impl Strategy<Value = Extras> {
    (
        0u8..3,
        0u32..5000,
        any::<bool>(),
        prop::collection::vec((0u32..3000, 0u8..3), 0..3),
        prop::collection::vec(0u32..5000, 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(key_store, disconnect_at, reconnect, cross_account, denied, reencrypt, kms, late)| {
                Extras {
                    key_store,
                    disconnect_at,
                    reconnect,
                    cross_account,
                    denied,
                    reencrypt,
                    kms_deletion_event: kms,
                    late_rejection: late,
                }
            },
        )
}

/// A consistent key history: creation, uses, maybe a schedule with rejected uses (and a
/// few that still succeed), then maybe a cancellation or the deletion; with [`Extras`].
pub fn history() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec((0u32..3, 0u32..600), 0..8),
        prop::option::of((
            1u32..4,
            prop::collection::vec((0u32..3, 0u32..3000, any::<bool>()), 0..12),
        )),
        0u8..3,
        extras(),
    )
        .prop_map(|(before, during, end, x)| {
            let roles = [
                "arn:aws:iam::111122223333:role/a",
                "arn:aws:iam::111122223333:role/b",
                "arn:aws:iam::111122223333:role/c",
            ];
            let t = |minutes: u32| {
                keywatch_core::Timestamp::from_millis(
                    1_793_000_000_000 + i64::from(minutes) * 60_000,
                )
                .to_string()
            };
            let store = (x.key_store == 1).then_some("cks-hsm");
            let cluster = (x.key_store == 1).then_some("cluster-1a23b4cdefg");
            let origin = if x.key_store == 1 { "AWS_CLOUDHSM" } else { "AWS_KMS" };
            let mut out = vec![create_key(&t(0), "create", origin, store, cluster, None)];
            if x.key_store > 0 {
                out.push(key_store_call("ConnectCustomKeyStore", &t(0), "connect", "cks-hsm"));
                out.push(key_store_call(
                    "DisconnectCustomKeyStore",
                    &t(x.disconnect_at),
                    "disconnect",
                    "cks-hsm",
                ));
                if x.reconnect {
                    out.push(key_store_call(
                        "ConnectCustomKeyStore",
                        &t(x.disconnect_at + 7),
                        "reconnect",
                        "cks-hsm",
                    ));
                }
            }
            let buckets = ["orders-prod", "orders-archive", "reports"];
            for (i, (who, m)) in before.iter().enumerate() {
                let mut use_ = decrypt(&t(1 + m), &format!("before-{i}"), roles[*who as usize]);
                // Some calls name what they protect (S3 objects of a bucket).
                if i % 2 == 0 {
                    use_["requestParameters"]["encryptionContext"] = serde_json::json!({
                        "aws:s3:arn": format!("arn:aws:s3:::{}/object-{i}", buckets[*who as usize])
                    });
                }
                out.push(use_);
            }
            for (i, m) in x.denied.iter().enumerate() {
                // Refused by policy, or because the key was disabled (counted apart).
                out.push(if i % 2 == 0 {
                    failed("Decrypt", &t(1 + m), &format!("denied-{i}"), "AccessDeniedException")
                } else {
                    rejected_as_disabled("Decrypt", &t(1 + m), &format!("denied-{i}"), roles[0])
                });
            }
            if x.reencrypt {
                out.push(reencrypt(&t(300), "re-before", OTHER_KEY, KEY));
            }
            if let Some((days, uses)) = during {
                out.push(schedule(&t(1000), "sched", 7 * days, None));
                for (i, (who, m, succeeded)) in uses.iter().enumerate() {
                    let (time, id) = (t(1001 + m), format!("during-{i}"));
                    out.push(if *succeeded && *m < 2 {
                        decrypt(&time, &id, roles[*who as usize])
                    } else {
                        rejected("Decrypt", &time, &id, roles[*who as usize])
                    });
                }
                let message = format!("{KEY} is pending deletion.");
                for (i, (m, copies)) in x.cross_account.iter().enumerate() {
                    let (caller, owner) =
                        cross_account_decrypt(&t(1001 + m), &format!("shared-{i}"), Some(&message));
                    match copies {
                        0 => out.push(caller),
                        1 => out.push(owner),
                        _ => out.extend([caller, owner]),
                    }
                }
                if x.reencrypt {
                    out.push(with(
                        reencrypt(&t(1500), "re-during", OTHER_KEY, KEY),
                        serde_json::json!({"errorCode": "KMSInvalidStateException", "errorMessage": message}),
                    ));
                }
                let end_at = 1000 + 7 * days * 1440;
                match end {
                    1 => {
                        out.push(cancel(&t(5000), "cancel"));
                        if x.late_rejection {
                            out.push(rejected("Decrypt", &t(5000) .replace(":00Z", ":30Z"), "late", roles[0]));
                        }
                    }
                    2 => {
                        let additional = if x.key_store == 2 {
                            serde_json::json!({"customKeyStoreId": "cks-hsm", "clusterId": "cluster-1a23b4cdefg",
                                "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"b\",\"deletionStatus\":\"SUCCESS\"}]"})
                        } else {
                            serde_json::json!({})
                        };
                        out.push(delete_key(&t(end_at), "delete", additional));
                        if x.kms_deletion_event {
                            out.push(kms_deletion_event(&t(end_at), "kms-deletion", KEY));
                        }
                    }
                    _ if x.kms_deletion_event => {
                        out.push(kms_deletion_event(&t(end_at), "kms-deletion", KEY));
                    }
                    _ => {}
                }
            }
            out
        })
}

/// Another key in the same account and Region.
pub const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
/// A partner account that calls KEY across accounts.
pub const PARTNER_ACCOUNT: &str = "444455556666";
pub const PARTNER_ROLE: &str = "arn:aws:iam::444455556666:role/partner-app";

/// ReEncrypt from `source` to `destination`, as the KMS guide shows it (both keys in
/// `resources`).
pub fn reencrypt(time: &str, id: &str, source: &str, destination: &str) -> Value {
    with(
        call("ReEncrypt", time, id, assumed_role(APP_ROLE)),
        json!({
            "requestParameters": {"sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT", "destinationKeyId": destination,
                                  "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
            "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": source},
                          {"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": destination}],
            "readOnly": true
        }),
    )
}

/// The two copies of one cross-account Decrypt of KEY by PARTNER_ROLE: the caller's (in the
/// partner account) and the key owner's (which names the calling account only).
pub fn cross_account_decrypt(time: &str, shared: &str, error: Option<&str>) -> (Value, Value) {
    let partner_identity = json!({
        "type": "AssumedRole", "principalId": "AROAPARTNER:session-9",
        "arn": "arn:aws:sts::444455556666:assumed-role/partner-app/session-9",
        "accountId": PARTNER_ACCOUNT, "accessKeyId": "ASIAPARTNER",
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAPARTNER",
            "arn": PARTNER_ROLE, "accountId": PARTNER_ACCOUNT, "userName": "partner-app"}}
    });
    let mut caller = with(
        call(
            "Decrypt",
            time,
            &format!("{shared}-caller"),
            partner_identity,
        ),
        json!({"recipientAccountId": PARTNER_ACCOUNT, "sharedEventID": shared,
               "sourceIPAddress": "198.51.100.7"}),
    );
    let mut owner = with(
        call(
            "Decrypt",
            time,
            &format!("{shared}-owner"),
            json!({"type": "AWSAccount", "principalId": "AROAPARTNER:session-9", "accountId": PARTNER_ACCOUNT}),
        ),
        json!({"recipientAccountId": ACCOUNT, "sharedEventID": shared, "sourceIPAddress": "198.51.100.7"}),
    );
    if let Some(message) = error {
        for r in [&mut caller, &mut owner] {
            r["errorCode"] = json!("KMSInvalidStateException");
            r["errorMessage"] = json!(message);
        }
    }
    (caller, owner)
}

/// A call that failed for a reason other than the key's state.
pub fn failed(name: &str, time: &str, id: &str, code: &str) -> Value {
    with(
        call(name, time, id, assumed_role(APP_ROLE)),
        json!({"errorCode": code, "errorMessage": format!("User is not authorized to perform kms:{name}")}),
    )
}

/// KMS's own EventBridge event when it deletes a key at the end of its waiting period.
pub fn kms_deletion_event(time: &str, id: &str, key: &str) -> Value {
    let key_id = key.rsplit_once("key/").map(|(_, k)| k).unwrap_or(key);
    json!({
        "version": "0", "id": id, "detail-type": "KMS CMK Deletion", "source": "aws.kms",
        "account": ACCOUNT, "time": time, "region": REGION, "resources": [key],
        "detail": {"key-id": key_id}
    })
}

/// A multi-Region key: the primary in us-east-1, a replica in us-west-2.
pub const MRK_PRIMARY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
pub const MRK_REPLICA: &str =
    "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

/// Re-targets a KEY record at another key (ARN in `resources`, request and response, Region).
pub fn on_key(mut record: Value, key: &str) -> Value {
    let region = key.split(':').nth(3).unwrap_or(REGION).to_owned();
    let text = record.to_string().replace(KEY, key);
    record = serde_json::from_str(&text).expect("record JSON");
    record["awsRegion"] = json!(region);
    record
}

pub fn replicate_key(time: &str, id: &str) -> Value {
    with(
        on_key(call("ReplicateKey", time, id, iam_user(ADMIN)), MRK_PRIMARY),
        json!({
            "requestParameters": {"keyId": "mrk-1234abcd12ab34cd56ef1234567890ab", "replicaRegion": "us-west-2"},
            "responseElements": {"replicaKeyMetadata": {"aWSAccountId": ACCOUNT, "keyId": "mrk-1234abcd12ab34cd56ef1234567890ab",
                "arn": MRK_REPLICA, "keyState": "Creating", "origin": "AWS_KMS", "multiRegion": true,
                "multiRegionConfiguration": {"multiRegionKeyType": "REPLICA",
                    "primaryKey": {"arn": MRK_PRIMARY, "region": "us-east-1"}}}}
        }),
    )
}

/// ScheduleKeyDeletion of a multi-Region primary that still has replicas, as the KMS guide
/// shows it: PendingReplicaDeletion and no deletionDate.
pub fn schedule_primary_with_replicas(time: &str, id: &str, days: u32) -> Value {
    with(
        on_key(
            call("ScheduleKeyDeletion", time, id, iam_user(ADMIN)),
            MRK_PRIMARY,
        ),
        json!({"requestParameters": {"pendingWindowInDays": days, "keyId": "mrk-1234abcd12ab34cd56ef1234567890ab"},
               "responseElements": {"keyId": MRK_PRIMARY, "keyState": "PendingReplicaDeletion", "pendingWindowInDays": days}}),
    )
}

pub fn fold_key(key: &str, records: &[Value]) -> KeyTimeline {
    KeyTimeline::fold(KeyArn::parse(key).expect("key ARN"), events(records).iter())
}

/// A multi-Region primary created, replicated to us-west-2, and scheduled for deletion while
/// it has that replica (PendingReplicaDeletion).
pub fn multi_region_primary() -> Vec<Value> {
    let mut create = on_key(
        create_key(
            "2026-01-01T00:00:00Z",
            "create-p",
            "AWS_KMS",
            None,
            None,
            None,
        ),
        MRK_PRIMARY,
    );
    create["responseElements"]["keyMetadata"]["multiRegion"] = json!(true);
    vec![
        create,
        replicate_key("2026-01-02T00:00:00Z", "replicate"),
        schedule_primary_with_replicas("2026-11-01T00:00:00Z", "sched-p", 30),
    ]
}

/// CreateKey of KEY, an AWS_KMS key outside any custom key store.
pub fn aws_kms_key(time: &str, id: &str) -> Value {
    create_key(time, id, "AWS_KMS", None, None, None)
}

/// CreateKey of KEY in the CloudHSM key store cks-hsm (cluster-1a23b4cdefg).
pub fn hsm_key() -> Value {
    create_key(
        "2026-01-01T00:00:00Z",
        "create",
        "AWS_CLOUDHSM",
        Some("cks-hsm"),
        Some("cluster-1a23b4cdefg"),
        None,
    )
}
