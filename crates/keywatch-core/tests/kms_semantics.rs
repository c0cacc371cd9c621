//! KMS behaviours as AWS documents them, one given/when/then each (issue 6). The records are
//! our own fixtures in the shapes of the KMS developer guide's CloudTrail examples.

mod support;

use keywatch_core::alert::Severity;
use keywatch_core::timeline::{EntryDetail, OrphanReason};
use keywatch_core::{
    evaluate, normalise, AlertConfig, AlertKind, KeyState, KmsOperation, Normalised,
};
use serde_json::json;
use support::*;

const AS_OF: &str = "2026-11-02T00:00:00Z";

fn scheduled(key: &str) -> Vec<serde_json::Value> {
    vec![
        on_key(aws_kms_key("2026-01-01T00:00:00Z", "create"), key),
        on_key(
            schedule(
                "2026-11-01T00:00:00Z",
                "sched",
                7,
                Some("Nov 8, 2026, 12:00:00 AM"),
            ),
            key,
        ),
    ]
}

fn enabled(key: &str, id: &str) -> serde_json::Value {
    on_key(aws_kms_key("2026-01-01T00:00:00Z", id), key)
}

fn evaluate_at(t: &keywatch_core::KeyTimeline, at: &str) -> Vec<keywatch_core::Alert> {
    evaluate(t, ts(at), &AlertConfig::default())
}

// 1. ReEncrypt uses two keys.

#[test]
fn a_reencrypt_rejected_for_its_destination_pages_only_the_destination() {
    let mut records = scheduled(KEY);
    records.push(enabled(OTHER_KEY, "create-other"));
    records.push(with(
        reencrypt("2026-11-01T10:00:00Z", "re-1", OTHER_KEY, KEY),
        json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    ));
    let dying = fold_key(KEY, &records);
    assert_eq!(
        kinds(&evaluate_at(&dying, AS_OF)),
        [
            AlertKind::DeletionScheduled,
            AlertKind::PendingDeletionKeyUsed
        ]
    );
    let other = fold_key(OTHER_KEY, &records);
    assert_eq!(other.state, KeyState::Enabled);
    assert!(evaluate_at(&other, AS_OF).is_empty());
    // The source's side is a failed attempt, not a use.
    assert_eq!(other.last_use(), None);
    assert_eq!(other.usage[0].failures, 1);
}

#[test]
fn a_reencrypt_rejected_for_its_source_pages_only_the_source() {
    let mut records = scheduled(KEY);
    records.push(enabled(OTHER_KEY, "create-other"));
    records.push(with(
        reencrypt("2026-11-01T10:00:00Z", "re-1", KEY, OTHER_KEY),
        json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    ));
    assert_eq!(
        kinds(&evaluate_at(&fold_key(KEY, &records), AS_OF)),
        [
            AlertKind::DeletionScheduled,
            AlertKind::PendingDeletionKeyUsed
        ]
    );
    let other = fold_key(OTHER_KEY, &records);
    assert_eq!(other.state, KeyState::Enabled);
    assert!(other.pending_use_buckets.is_empty());
}

#[test]
fn a_successful_reencrypt_uses_both_keys() {
    let records = [
        enabled(KEY, "c1"),
        enabled(OTHER_KEY, "c2"),
        reencrypt("2026-10-01T10:00:00Z", "re-1", KEY, OTHER_KEY),
    ];
    for key in [KEY, OTHER_KEY] {
        let t = fold_key(key, &records);
        assert_eq!(t.last_use(), Some(ts("2026-10-01T10:00:00Z")), "{key}");
        assert_eq!(t.usage[0].operation, KmsOperation::ReEncrypt);
    }
}

// 2. Cross-account calls are recorded twice.

#[test]
fn the_two_copies_of_a_cross_account_call_are_one_use_and_one_page_whichever_arrives() {
    let message = format!("{KEY} is pending deletion.");
    let (caller, owner) = cross_account_decrypt("2026-11-01T10:00:00Z", "shared-1", Some(&message));
    let both = when(&scheduled(KEY), caller.clone(), AS_OF);
    let mut with_both = scheduled(KEY);
    with_both.extend([owner.clone(), caller.clone()]);
    let t = timeline(&with_both);
    let pages: Vec<_> = evaluate_at(&t, AS_OF)
        .into_iter()
        .filter(|a| a.kind == AlertKind::PendingDeletionKeyUsed)
        .collect();
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(page.uses_so_far, Some(1), "one call, one use");
    assert_eq!(page.principal.as_deref(), Some(PARTNER_ROLE));
    assert_eq!(page.caller_account.as_deref(), Some(PARTNER_ACCOUNT));
    assert_eq!(page.account, ACCOUNT);
    assert!(
        page.summary.contains(PARTNER_ACCOUNT) && page.summary.contains(ACCOUNT),
        "names both accounts: {}",
        page.summary
    );
    assert_eq!(t.pending_uses, 1);
    assert_eq!(t.usage.iter().map(|u| u.failures).sum::<u64>(), 1);
    // Whichever copy arrives alone, the page has the same identity.
    let owner_only = when(&scheduled(KEY), owner.clone(), AS_OF);
    assert_eq!(kinds(&owner_only), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(owner_only[0].alert_id, page.alert_id);
    assert_eq!(
        owner_only[0].caller_account.as_deref(),
        Some(PARTNER_ACCOUNT)
    );
    assert_eq!(both[0].alert_id, page.alert_id);
    // Either order of arrival folds to the same timeline.
    let mut reversed = scheduled(KEY);
    reversed.extend([caller, owner]);
    assert_eq!(timeline(&reversed), t);
}

// 3. Multi-Region keys.

#[test]
fn a_primary_with_replicas_gets_no_deletion_date_and_no_countdown_until_its_last_replica_goes() {
    let given = multi_region_primary();
    let primary = fold_key(MRK_PRIMARY, &given);
    assert_eq!(primary.state, KeyState::PendingReplicaDeletion);
    assert_eq!(primary.deletion_date, None);
    assert!(primary.related_keys.contains_key("us-west-2"));
    // However late the clock, no countdown on a date AWS never set.
    for at in ["2026-12-01T00:00:00Z", "2027-06-01T00:00:00Z"] {
        let kinds_now = kinds(&evaluate_at(&primary, at));
        assert!(
            !kinds_now.contains(&AlertKind::DeletionImminent)
                && !kinds_now.contains(&AlertKind::DeletionOverdue),
            "{kinds_now:?}"
        );
    }
    // The replica is scheduled (7 days) and deleted: the primary's 30 days begin then.
    let mut all = given;
    all.push(on_key(
        schedule(
            "2026-11-02T00:00:00Z",
            "sched-r",
            7,
            Some("Nov 9, 2026, 12:00:00 AM"),
        ),
        MRK_REPLICA,
    ));
    all.push(on_key(
        delete_key("2026-11-09T00:00:00Z", "del-r", json!(null)),
        MRK_REPLICA,
    ));
    let primary = fold_key(MRK_PRIMARY, &all);
    assert_eq!(primary.state, KeyState::PendingDeletion);
    assert_eq!(primary.deletion_date, Some(ts("2026-12-09T00:00:00Z")));
    assert!(
        kinds(&evaluate_at(&primary, "2026-12-11T00:00:00Z")).contains(&AlertKind::DeletionOverdue)
    );
    // The replica's own timeline is its own: deleted, with its own date.
    let replica = fold_key(MRK_REPLICA, &all);
    assert_eq!(replica.state, KeyState::Deleted);
    assert_eq!(replica.deletion_date, Some(ts("2026-11-09T00:00:00Z")));
}

#[test]
fn uses_of_a_primary_pending_replica_deletion_still_page() {
    let alerts = {
        let given = multi_region_primary();
        let before: Vec<String> = evaluate_at(&fold_key(MRK_PRIMARY, &given), AS_OF)
            .into_iter()
            .map(|a| a.alert_id)
            .collect();
        let mut all = given;
        all.push(on_key(
            decrypt("2026-11-01T10:00:00Z", "use-1", APP_ROLE),
            MRK_PRIMARY,
        ));
        evaluate_at(&fold_key(MRK_PRIMARY, &all), AS_OF)
            .into_iter()
            .filter(|a| !before.contains(&a.alert_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(alerts[0].deletion_date, None);
    assert!(
        alerts[0].summary.contains("waits for its replicas"),
        "{}",
        alerts[0].summary
    );
}

#[test]
fn update_primary_region_is_tracked() {
    let mut all = multi_region_primary();
    all.push(with(
        on_key(
            call("UpdatePrimaryRegion", "2026-10-01T00:00:00Z", "upr", iam_user(ADMIN)),
            MRK_PRIMARY,
        ),
        json!({"requestParameters": {"keyId": "mrk-1234abcd12ab34cd56ef1234567890ab", "primaryRegion": "us-west-2"}}),
    ));
    assert_eq!(
        fold_key(MRK_PRIMARY, &all).primary_region.as_deref(),
        Some("us-west-2")
    );
    assert_eq!(
        fold_key(MRK_REPLICA, &all).primary_region.as_deref(),
        Some("us-west-2")
    );
}

// 4. Custom key store events count whatever the order keywatch learns things in.

#[test]
fn a_disconnect_before_the_first_record_naming_the_key_store_still_counts() {
    // Nothing before the DeleteKey says the key is in cks-hsm.
    let records = vec![
        decrypt("2026-10-01T00:00:00Z", "use", APP_ROLE),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        key_store_call(
            "DisconnectCustomKeyStore",
            "2026-11-07T00:00:00Z",
            "disconnect",
            "cks-hsm",
        ),
        delete_key(
            "2026-11-08T00:00:00Z",
            "del",
            json!({"customKeyStoreId": "cks-hsm", "clusterId": "cluster-1a23b4cdefg",
                   "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"b\",\"deletionStatus\":\"SUCCESS\"}]"}),
        ),
    ];
    let t = timeline(&records);
    assert_eq!(
        t.orphaned_key_material,
        Some(OrphanReason::KeyStoreDisconnected)
    );
    assert!(
        kinds(&evaluate_at(&t, "2026-11-08T01:00:00Z")).contains(&AlertKind::OrphanedKeyMaterial)
    );
}

// 5. A late rejection after CancelKeyDeletion.

#[test]
fn a_rejection_just_after_cancel_is_shown_but_the_key_stays_cancelled() {
    let mut given = scheduled(KEY);
    given.push(cancel("2026-11-03T00:00:00Z", "cancel"));
    let late = rejected("Decrypt", "2026-11-03T00:00:20Z", "late", APP_ROLE);
    assert!(when(&given, late.clone(), "2026-11-04T00:00:00Z").is_empty());
    let mut all = given.clone();
    all.push(late);
    let t = timeline(&all);
    assert_eq!(t.state, KeyState::Disabled);
    assert!(t
        .entries
        .iter()
        .any(|e| matches!(e.detail, EntryDetail::RejectedAfterCancel { .. })));
    // Hours later, a rejection is proof of a schedule keywatch has not seen.
    let mut later = given;
    later.push(rejected(
        "Decrypt",
        "2026-11-03T06:00:00Z",
        "later",
        APP_ROLE,
    ));
    assert_eq!(timeline(&later).state, KeyState::PendingDeletion);
}

// 6. Keys in a disconnected custom key store are Unavailable.

fn store(name: &str, time: &str, id: &str) -> serde_json::Value {
    key_store_call(name, time, id, "cks-hsm")
}

#[test]
fn enable_and_disable_of_an_unavailable_key_take_effect_when_the_store_is_connected() {
    let mut r = vec![
        hsm_key(),
        store("DisconnectCustomKeyStore", "2026-02-01T00:00:00Z", "d1"),
        call(
            "DisableKey",
            "2026-02-02T00:00:00Z",
            "disable",
            iam_user(ADMIN),
        ),
    ];
    assert_eq!(timeline(&r).state, KeyState::Unavailable);
    r.push(store("ConnectCustomKeyStore", "2026-02-03T00:00:00Z", "c1"));
    assert_eq!(timeline(&r).state, KeyState::Disabled);
}

#[test]
fn a_key_pending_deletion_stays_pending_deletion_when_its_store_disconnects_and_cancel_waits_for_the_store(
) {
    let mut r = vec![
        hsm_key(),
        store("ConnectCustomKeyStore", "2026-01-01T00:00:00Z", "c0"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        store("DisconnectCustomKeyStore", "2026-11-02T00:00:00Z", "d1"),
    ];
    assert_eq!(timeline(&r).state, KeyState::PendingDeletion);
    r.push(cancel("2026-11-03T00:00:00Z", "cancel"));
    let t = timeline(&r);
    assert_eq!(t.state, KeyState::Unavailable);
    assert_eq!(t.state_before_unavailable, Some(KeyState::Disabled));
    r.push(store("ConnectCustomKeyStore", "2026-11-04T00:00:00Z", "c1"));
    assert_eq!(timeline(&r).state, KeyState::Disabled);
}

// 7. Every operation the key states table lists as failing with "… is pending deletion."

#[test]
fn a_create_grant_rejected_as_pending_deletion_pages() {
    let grant = with(
        call(
            "CreateGrant",
            "2026-11-01T10:00:00Z",
            "grant",
            assumed_role(APP_ROLE),
        ),
        json!({"requestParameters": {"keyId": KEY, "granteePrincipal": "111122223333:aws:ec2-infrastructure:i-0abc",
                                     "constraints": {"encryptionContextSubset": {"aws:ebs:id": "vol-0abc"}}},
               "errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    );
    let alerts = when(&scheduled(KEY), grant, AS_OF);
    assert_eq!(kinds(&alerts), [AlertKind::PendingDeletionKeyUsed]);
    assert_eq!(alerts[0].operation, Some(KmsOperation::CreateGrant));
}

#[test]
fn management_calls_and_the_disabled_exception_form_count_too() {
    let enable = with(
        call(
            "EnableKey",
            "2026-11-01T10:00:00Z",
            "enable",
            iam_user(ADMIN),
        ),
        json!({"errorCode": "KMSInvalidStateException", "errorMessage": format!("{KEY} is pending deletion.")}),
    );
    assert_eq!(
        kinds(&when(&scheduled(KEY), enable, AS_OF)),
        [AlertKind::PendingDeletionKeyUsed]
    );
    let encrypt = with(
        call(
            "Encrypt",
            "2026-11-01T11:00:00Z",
            "enc",
            assumed_role(APP_ROLE),
        ),
        json!({"errorCode": "DisabledException", "errorMessage": format!("{KEY} is pending deletion.")}),
    );
    assert_eq!(
        kinds(&when(&scheduled(KEY), encrypt, AS_OF)),
        [AlertKind::PendingDeletionKeyUsed]
    );
    // A successful CreateGrant is a use of the key before the schedule.
    let t = timeline(&[call(
        "CreateGrant",
        "2026-10-31T00:00:00Z",
        "g",
        assumed_role(APP_ROLE),
    )]);
    assert_eq!(t.last_use(), Some(ts("2026-10-31T00:00:00Z")));
}

// 8. KMS's "KMS CMK Deletion" event.

#[test]
fn kms_deletion_event_is_evidence_of_deletion() {
    let event = kms_deletion_event("2026-11-08T00:00:05Z", "evb-1", KEY);
    assert!(matches!(
        normalise(&event.to_string()),
        Ok(Normalised::Kms { .. })
    ));
    let alerts = when(&scheduled(KEY), event.clone(), "2026-11-12T00:00:00Z");
    assert_eq!(kinds(&alerts), [AlertKind::KeyDeleted]);
    let mut all = scheduled(KEY);
    all.push(event);
    let t = timeline(&all);
    assert_eq!(t.state, KeyState::Deleted);
    assert!(!kinds(&evaluate_at(&t, "2026-11-20T00:00:00Z")).contains(&AlertKind::DeletionOverdue));
    // With DeleteKey too, still one key_deleted.
    all.push(delete_key("2026-11-08T00:00:00Z", "del", json!({})));
    let deleted: Vec<_> = evaluate_at(&timeline(&all), "2026-11-20T00:00:00Z")
        .into_iter()
        .filter(|a| a.kind == AlertKind::KeyDeleted)
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].alert_id, alerts[0].alert_id);
}

// 9. Failed calls for other reasons are attempts, not uses.

#[test]
fn access_denied_before_a_schedule_does_not_make_it_high() {
    let records = vec![
        enabled(KEY, "create"),
        failed(
            "Decrypt",
            "2026-10-25T00:00:00Z",
            "denied",
            "AccessDeniedException",
        ),
    ];
    let alerts = when(
        &records,
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        AS_OF,
    );
    assert_eq!(kinds(&alerts), [AlertKind::DeletionScheduled]);
    assert_eq!(alerts[0].severity, Severity::Medium);
    assert_eq!(alerts[0].failed_attempts, Some(1));
    assert!(
        alerts[0].summary.contains("attempts, not uses"),
        "{}",
        alerts[0].summary
    );
}

#[test]
fn failed_attempts_during_the_window_do_not_drive_deletion_imminent() {
    let mut records = scheduled(KEY);
    records.push(failed(
        "Decrypt",
        "2026-11-03T00:00:00Z",
        "denied",
        "ThrottlingException",
    ));
    let t = timeline(&records);
    assert!(!kinds(&evaluate_at(&t, "2026-11-07T06:00:00Z")).contains(&AlertKind::DeletionImminent));
    assert_eq!(t.schedules[0].failed_attempts_during_window, 1);
    records.push(decrypt("2026-11-03T00:00:01Z", "used", APP_ROLE));
    assert!(
        kinds(&evaluate_at(&timeline(&records), "2026-11-07T06:00:00Z"))
            .contains(&AlertKind::DeletionImminent)
    );
}

// 10. Partitions.

#[test]
fn arns_and_rescue_commands_are_right_in_china_and_govcloud() {
    for (region, partition) in [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")] {
        let mut r = rejected("Decrypt", "2026-11-01T10:00:00Z", "u", APP_ROLE);
        r["awsRegion"] = json!(region);
        r["requestParameters"] = json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"});
        r["resources"] = json!(null);
        r["errorMessage"] = json!("is pending deletion.");
        let Ok(Normalised::Kms { events, .. }) = normalise(&r.to_string()) else {
            panic!("KMS record expected");
        };
        let keywatch_core::KmsEvent::Key(e) = &events[0] else {
            panic!("key event expected");
        };
        let arn = format!(
            "arn:{partition}:kms:{region}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(e.key.as_str(), arn);
        let t = keywatch_core::KeyTimeline::fold(e.key.clone(), events.iter());
        let page = &evaluate_at(&t, AS_OF)[0];
        assert_eq!(
            page.rescue_command.as_deref(),
            Some(format!("aws kms cancel-key-deletion --key-id {arn} --region {region}").as_str())
        );
    }
}

// 11. CloudHSM advice in full.

#[test]
fn a_clean_cloudhsm_deletion_says_backups_still_hold_the_material() {
    let records = vec![
        hsm_key(),
        store("ConnectCustomKeyStore", "2026-01-01T00:00:00Z", "c0"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
    ];
    let alerts = when(
        &records,
        delete_key(
            "2026-11-08T00:00:00Z",
            "del",
            json!({"customKeyStoreId": "cks-hsm", "clusterId": "cluster-1a23b4cdefg",
                   "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"b\",\"deletionStatus\":\"SUCCESS\"}]"}),
        ),
        "2026-11-08T01:00:00Z",
    );
    assert_eq!(kinds(&alerts), [AlertKind::KeyDeleted]);
    assert!(
        alerts[0].summary.contains("backups") && alerts[0].summary.contains("2026-01-01T00:00:00Z"),
        "{}",
        alerts[0].summary
    );
}

#[test]
fn disconnecting_a_cloudhsm_store_during_the_waiting_period_warns_before_the_deletion() {
    let records = vec![
        hsm_key(),
        store("ConnectCustomKeyStore", "2026-01-01T00:00:00Z", "c0"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
    ];
    let alerts = when(
        &records,
        store("DisconnectCustomKeyStore", "2026-11-05T00:00:00Z", "d1"),
        "2026-11-05T01:00:00Z",
    );
    assert_eq!(
        kinds(&alerts),
        [AlertKind::KeyStoreDisconnectedPendingDeletion]
    );
    assert_eq!(alerts[0].severity, Severity::High);
    let remediation = alerts[0].remediation.as_deref().unwrap_or_default();
    assert!(
        remediation.contains("connect-custom-key-store") && remediation.contains("cks-hsm"),
        "{remediation}"
    );
    // Scheduling while the store is already disconnected warns too.
    let already = vec![
        hsm_key(),
        store("DisconnectCustomKeyStore", "2026-10-01T00:00:00Z", "d0"),
    ];
    assert_eq!(
        kinds(&when(
            &already,
            schedule("2026-11-01T00:00:00Z", "sched", 7, None),
            AS_OF
        )),
        [
            AlertKind::DeletionScheduled,
            AlertKind::KeyStoreDisconnectedPendingDeletion
        ]
    );
}

/// UpdateCustomKeyStore moves a disconnected CloudHSM key store to another cluster (one that
/// shares the old one's backup history, such as a cluster restored from its backup): the key
/// material is then in the new cluster, and that is the cluster to clean after an orphaning
/// deletion.
#[test]
fn a_cloudhsm_store_moved_to_another_cluster_names_the_new_cluster() {
    const NEW_CLUSTER: &str = "cluster-9z87y6xwvut";
    let moved = with(
        store("UpdateCustomKeyStore", "2026-11-03T00:00:00Z", "update"),
        json!({"requestParameters": {"customKeyStoreId": "cks-hsm", "clusterId": NEW_CLUSTER},
               "additionalEventData": {"customKeyStoreName": "ExampleKeyStore", "clusterId": NEW_CLUSTER}}),
    );
    let records = vec![
        hsm_key(),
        store("ConnectCustomKeyStore", "2026-01-01T00:00:00Z", "c0"),
        schedule("2026-11-01T00:00:00Z", "sched", 7, None),
        store("DisconnectCustomKeyStore", "2026-11-02T00:00:00Z", "d1"),
        moved,
    ];
    let t = timeline(&records);
    let cluster = |t: &keywatch_core::KeyTimeline| {
        t.custom_key_store
            .as_ref()
            .and_then(|s| s.cloudhsm_cluster_id.clone())
    };
    assert_eq!(cluster(&t).as_deref(), Some(NEW_CLUSTER));
    // The request names the new cluster even where the record's additional data does not.
    let mut request_only = records.clone();
    request_only[4]["additionalEventData"] = json!({"customKeyStoreName": "ExampleKeyStore"});
    assert_eq!(
        cluster(&timeline(&request_only)).as_deref(),
        Some(NEW_CLUSTER)
    );
    // In any order of arrival.
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(timeline(&reversed), t);
    // Still disconnected at the deletion: the material may remain in the new cluster.
    let alerts = when(
        &records,
        delete_key(
            "2026-11-08T00:00:00Z",
            "del",
            json!({"customKeyStoreId": "cks-hsm", "clusterId": NEW_CLUSTER,
                   "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"b\",\"deletionStatus\":\"SUCCESS\"}]"}),
        ),
        "2026-11-08T01:00:00Z",
    );
    let orphaned = alerts
        .iter()
        .find(|a| a.kind == AlertKind::OrphanedKeyMaterial)
        .expect("orphaned key material");
    assert!(
        orphaned.summary.contains(NEW_CLUSTER) && !orphaned.summary.contains("cluster-1a23b4cdefg"),
        "{}",
        orphaned.summary
    );
}

/// Found by the `normalise` fuzz target: two different records that claim one eventID (a
/// damaged or forged copy) must fold the same whichever arrives first.
#[test]
fn two_different_records_with_one_event_id_fold_the_same_in_either_order() {
    let genuine = decrypt("2026-11-01T10:00:00Z", "same-id", "app");
    let forged = decrypt("2026-11-01T10:00:00Z", "same-id", "intruder");
    let one = timeline(&[genuine.clone(), forged.clone()]);
    let other = timeline(&[forged, genuine]);
    assert_eq!(one, other);
    assert_eq!(one.event_count, 1, "one eventID is one event");
}

/// Imported key material that reaches its expiration is deleted by KMS itself (the
/// DeleteExpiredKeyMaterial service event): the key waits for material again (PendingImport),
/// as after DeleteImportedKeyMaterial; ImportKeyMaterial enables it again. A key pending
/// deletion stays pending deletion.
#[test]
fn expired_imported_key_material_leaves_the_key_pending_import() {
    let create = create_key("2026-01-01T00:00:00Z", "c", "EXTERNAL", None, None, None);
    let import = call(
        "ImportKeyMaterial",
        "2026-01-01T00:05:00Z",
        "import",
        iam_user(ADMIN),
    );
    let expired = expired_key_material("2026-06-01T00:00:00Z", "expired");
    assert!(matches!(
        events(std::slice::from_ref(&expired)).as_slice(),
        [keywatch_core::KmsEvent::Key(e)] if matches!(e.kind, keywatch_core::KeyEventKind::KeyMaterialDeleted)
    ));
    assert_eq!(
        timeline(&[create.clone(), import.clone()]).state,
        KeyState::Enabled
    );
    let t = timeline(&[create.clone(), import.clone(), expired.clone()]);
    assert_eq!(t.state, KeyState::PendingImport);
    let again = call(
        "ImportKeyMaterial",
        "2026-06-02T00:00:00Z",
        "import-again",
        iam_user(ADMIN),
    );
    assert_eq!(
        timeline(&[create.clone(), import.clone(), expired.clone(), again]).state,
        KeyState::Enabled
    );
    let scheduled = schedule("2026-05-30T00:00:00Z", "sched", 7, None);
    assert_eq!(
        timeline(&[create, import, scheduled, expired]).state,
        KeyState::PendingDeletion
    );
}

/// A multi-Region key has at most one related key per Region of its partition, a few dozen.
/// Records replicating it to more "Regions" than that are crafted: a timeline follows the
/// first `MAX_RELATED_REGIONS` in fold order, whatever order the records come in, so that a
/// family of thousands does not hold every member's lifecycle in every member's timeline.
#[test]
fn a_timeline_follows_related_keys_in_at_most_so_many_regions() {
    let most = keywatch_core::timeline::MAX_RELATED_REGIONS;
    let regions: Vec<String> = (0..most + 10)
        .map(|i| {
            format!(
                "xx-{}{}-1",
                (b'a' + (i / 26) as u8) as char,
                (b'a' + (i % 26) as u8) as char
            )
        })
        .collect();
    let replica_in = |region: &str| MRK_PRIMARY.replace("us-east-1", region);
    let mut records = multi_region_primary()[..2].to_vec();
    for (i, region) in regions.iter().enumerate() {
        let mut r = replicate_key(
            &format!("2026-02-01T00:{:02}:{:02}Z", i / 60, i % 60),
            &format!("rep-{i}"),
        );
        let text = r.to_string().replace(MRK_REPLICA, &replica_in(region));
        r = serde_json::from_str(&text).expect("record JSON");
        r["requestParameters"]["replicaRegion"] = json!(region);
        records.push(r);
    }
    let primary = fold_key(MRK_PRIMARY, &records);
    assert_eq!(primary.related_keys.len(), most);
    // us-west-2 (replicated first), then the crafted Regions in time order.
    assert!(primary.related_keys.contains_key("us-west-2"));
    assert!(primary.related_keys.contains_key(&regions[most - 2]));
    assert!(!primary.related_keys.contains_key(&regions[most - 1]));
    let last = fold_key(&replica_in(&regions[most + 9]), &records);
    assert_eq!(last.related_keys.len(), most);
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(fold_key(MRK_PRIMARY, &reversed), primary);
    assert_eq!(fold_key(&replica_in(&regions[most + 9]), &reversed), last);
}

/// A store connected and disconnected day after day keeps its latest changes in each of its
/// keys' timelines and counts the older ones, whatever the order the records come in; the
/// key's state follows every change.
#[test]
fn a_timeline_keeps_the_latest_changes_of_its_key_store_and_counts_the_rest() {
    let most = keywatch_core::timeline::MAX_KEY_STORE_ENTRIES;
    let mut records = vec![hsm_key()];
    for day in 0..most + 10 {
        let at = |hour: u32| {
            format!(
                "2026-{:02}-{:02}T{hour:02}:00:00Z",
                3 + day / 28,
                1 + day % 28
            )
        };
        records.push(store(
            "DisconnectCustomKeyStore",
            &at(1),
            &format!("d{day}"),
        ));
        records.push(store("ConnectCustomKeyStore", &at(2), &format!("c{day}")));
    }
    records.push(store(
        "DisconnectCustomKeyStore",
        "2026-12-01T00:00:00Z",
        "last",
    ));
    let t = timeline(&records);
    let changes: Vec<&str> = t
        .entries
        .iter()
        .filter(|e| matches!(e.detail, EntryDetail::KeyStore { .. }))
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(changes.len(), most);
    assert_eq!(changes.last(), Some(&"last"));
    assert_eq!(
        t.key_store_entries_dropped,
        2 * (most as u64 + 10) + 1 - most as u64
    );
    assert_eq!(t.state, KeyState::Unavailable);
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(timeline(&reversed), t);
}
