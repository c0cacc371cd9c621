//! Normalisation: identities, key identity fallbacks, rejections.

mod support;

use keywatch_core::{
    normalise, normalise_object, KeyEventKind, KeyState, KmsEvent, Normalised, NormalisedOnRead,
    RecordError,
};
use serde_json::json;
use support::*;

fn only_event(r: &serde_json::Value) -> keywatch_core::KeyEvent {
    match events(std::slice::from_ref(r)).pop() {
        Some(KmsEvent::Key(k)) => k,
        other => panic!("expected one key event, got {other:?}"),
    }
}

#[test]
fn the_principal_is_the_iam_identity_not_the_session() {
    assert_eq!(
        only_event(&decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE))
            .context
            .principal
            .0,
        APP_ROLE
    );
    let svc = with(
        decrypt("2026-11-01T00:00:00Z", "b", APP_ROLE),
        json!({"userIdentity": {"type": "AWSService", "invokedBy": "s3.amazonaws.com"}}),
    );
    assert_eq!(only_event(&svc).context.principal.0, "s3.amazonaws.com");
    let root = with(
        decrypt("2026-11-01T00:00:00Z", "c", APP_ROLE),
        json!({"userIdentity": {"type": "Root", "principalId": ACCOUNT, "accountId": ACCOUNT}}),
    );
    assert_eq!(
        only_event(&root).context.principal.0,
        "arn:aws:iam::111122223333:root"
    );
    let via = with(
        decrypt("2026-11-01T00:00:00Z", "d", APP_ROLE),
        json!({"userIdentity": {"type": "IAMUser", "arn": ADMIN, "accountId": ACCOUNT, "invokedBy": "secretsmanager.amazonaws.com"}}),
    );
    let e = only_event(&via);
    assert_eq!(e.context.principal.0, ADMIN);
    assert_eq!(
        e.context.invoked_by.as_deref(),
        Some("secretsmanager.amazonaws.com")
    );
}

#[test]
fn key_identity_falls_back_from_resources_to_response_to_request_to_key_id() {
    let no_resources = |r: serde_json::Value| with(r, json!({"resources": null}));
    let by_response = no_resources(with(
        decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE),
        json!({"requestParameters": {"keyId": "alias/app"}, "responseElements": {"keyId": KEY}}),
    ));
    assert_eq!(only_event(&by_response).key.as_str(), KEY);
    let by_request_arn = no_resources(decrypt("2026-11-01T00:00:00Z", "b", APP_ROLE));
    assert_eq!(only_event(&by_request_arn).key.as_str(), KEY);
    let by_key_id = no_resources(with(
        decrypt("2026-11-01T00:00:00Z", "c", APP_ROLE),
        json!({"requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}}),
    ));
    assert_eq!(only_event(&by_key_id).key.as_str(), KEY);
    let mrk = no_resources(with(
        decrypt("2026-11-01T00:00:00Z", "d", APP_ROLE),
        json!({"requestParameters": {"keyId": "mrk-1234abcd12ab34cd56ef1234567890ab"}, "awsRegion": "eu-west-1"}),
    ));
    assert_eq!(
        only_event(&mrk).key.as_str(),
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
    );
    // A use whose key cannot be told (an alias, nothing else) would vanish unseen: it is
    // rejected, with the reason, and goes to quarantine.
    let alias_only = no_resources(with(
        decrypt("2026-11-01T00:00:00Z", "e", APP_ROLE),
        json!({"requestParameters": {"keyId": "alias/app"}}),
    ));
    assert!(matches!(
        normalise(&alias_only.to_string()),
        Err(keywatch_core::RecordError::Missing(what)) if what.contains("resources")
    ));
    // A call denied for another reason names no key to keep: untracked, not an error.
    let denied = with(
        alias_only,
        json!({"errorCode": "AccessDeniedException", "errorMessage": "not authorized"}),
    );
    assert_eq!(
        normalise(&denied.to_string()),
        Ok(Normalised::KmsUntracked {
            event_id: "e".into()
        })
    );
}

#[test]
fn re_encrypt_touches_both_keys() {
    let other = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
    let r = with(
        call(
            "ReEncrypt",
            "2026-11-01T00:00:00Z",
            "a",
            assumed_role(APP_ROLE),
        ),
        json!({"resources": [{"type": "AWS::KMS::Key", "ARN": KEY}, {"type": "AWS::KMS::Key", "ARN": other}]}),
    );
    let keys: Vec<String> = events(&[r])
        .into_iter()
        .filter_map(|e| match e {
            KmsEvent::Key(k) => Some(k.key.to_string()),
            KmsEvent::KeyStore(_) => None,
        })
        .collect();
    assert_eq!(keys, [other, KEY]);
}

#[test]
fn bad_records_are_rejected_with_the_reason() {
    assert!(matches!(
        normalise("{not json"),
        Err(RecordError::NotJson(_))
    ));
    let mut r = decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE);
    r.as_object_mut().map(|o| o.remove("eventID"));
    assert_eq!(
        normalise(&r.to_string()),
        Err(RecordError::Missing("eventID"))
    );
    let r = with(
        decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE),
        json!({"eventTime": "yesterday"}),
    );
    assert_eq!(
        normalise(&r.to_string()),
        Err(RecordError::BadEventTime("yesterday".into()))
    );
    let r = with(
        schedule("2026-11-01T00:00:00Z", "s", 7, Some("someday")),
        json!({}),
    );
    assert!(matches!(
        normalise(&r.to_string()),
        Err(RecordError::Malformed {
            field: "responseElements.deletionDate",
            ..
        })
    ));
}

#[test]
fn other_services_are_skipped_not_rejected() {
    let r = with(
        decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE),
        json!({"eventSource": "s3.amazonaws.com"}),
    );
    assert_eq!(normalise(&r.to_string()), Ok(Normalised::NotKms));
}

#[test]
fn a_failed_lifecycle_call_changes_nothing() {
    let failed = with(
        schedule("2026-11-01T00:00:00Z", "s", 7, None),
        json!({"errorCode": "AccessDeniedException", "responseElements": null}),
    );
    let e = only_event(&failed);
    assert!(matches!(e.kind, KeyEventKind::CallFailed { .. }));
    assert_eq!(timeline(&[failed]).state, keywatch_core::KeyState::Unknown);
}

/// A record naming more keys than any KMS call names is rejected whole, naming the count:
/// each key named would put another copy of it in the event log. The most a record may name
/// still reads, one event per key.
#[test]
fn a_record_naming_more_keys_than_a_kms_call_names_is_rejected() {
    let keys_named = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| {
                let arn =
                    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-{i:012}");
                json!({"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": arn})
            })
            .collect()
    };
    let most = keywatch_core::event::MAX_KEYS_PER_RECORD;
    let crafted = with(
        decrypt("2026-11-01T10:00:00Z", "many", APP_ROLE),
        json!({"resources": keys_named(20_000)}),
    );
    match normalise(&crafted.to_string()) {
        Err(RecordError::Malformed { field, reason, .. }) => {
            assert_eq!(field, "resources");
            assert_eq!(
                reason,
                format!("names 20000 KMS keys; a KMS call names at most {most}")
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let over = with(
        decrypt("2026-11-01T10:00:00Z", "over", APP_ROLE),
        json!({"resources": keys_named(most + 1)}),
    );
    assert!(matches!(
        normalise(&over.to_string()),
        Err(RecordError::Malformed { .. })
    ));
    // The same key named again and again is one key.
    let repeated = with(
        decrypt("2026-11-01T10:00:00Z", "repeated", APP_ROLE),
        json!({"resources": vec![keys_named(1)[0].clone(); 20_000]}),
    );
    assert_eq!(events(&[repeated]).len(), 1);
    let at_most = with(
        decrypt("2026-11-01T10:00:00Z", "most", APP_ROLE),
        json!({"resources": keys_named(most)}),
    );
    assert_eq!(events(&[at_most]).len(), most);
}

/// A crafted key ARN never reaches the rescue command: the record is rejected, naming why.
#[test]
fn key_arns_are_validated_strictly_where_they_are_first_read() {
    let crafted = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab ; touch /tmp/pwned";
    let r = with(
        rejected("Decrypt", "2026-11-01T10:00:00Z", "evil", APP_ROLE),
        json!({"resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": crafted}]}),
    );
    match normalise(&r.to_string()) {
        Err(keywatch_core::RecordError::Malformed { field, reason, .. }) => {
            assert_eq!(field, "resources");
            assert!(reason.contains("not a valid KMS key ARN"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    for bad in [
        "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:evil:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:US EAST:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:key/not-a-key-id",
        "arn:aws:kms:us-east-1:111122223333:alias/app",
    ] {
        assert_eq!(keywatch_core::KeyArn::parse(bad), None, "{bad}");
    }
    // A bad awsRegion does not make an ARN out of a bare key ID either.
    let mut r = decrypt("2026-11-01T00:00:00Z", "r", APP_ROLE);
    r["resources"] = json!(null);
    r["requestParameters"] = json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"});
    r["awsRegion"] = json!("us-east-1$(reboot)");
    assert!(normalise(&r.to_string()).is_err());
}

/// Implausible values are rejected with the reason, not believed.
#[test]
fn implausible_times_and_waiting_periods_are_rejected() {
    let mut future = decrypt("2026-11-01T00:00:00Z", "f", APP_ROLE);
    future["eventTime"] = json!("9999-12-31T23:59:59Z");
    assert!(matches!(
        normalise(&future.to_string()),
        Err(keywatch_core::RecordError::BadEventTime(t)) if t.contains("implausible")
    ));
    for days in [0, 6, 31, 3650] {
        let s = schedule("2026-11-01T00:00:00Z", "s", days, None);
        match normalise(&s.to_string()) {
            Err(keywatch_core::RecordError::Malformed { field, reason, .. }) => {
                assert_eq!(field, "pendingWindowInDays");
                assert!(reason.contains("7 to 30"), "{reason}");
            }
            other => panic!("{days} days: {other:?}"),
        }
    }
    assert!(normalise(&schedule("2026-11-01T00:00:00Z", "s", 7, None).to_string()).is_ok());
}

/// One crafted record cannot make a megabyte alert: free-text values are bounded, and an
/// eventID that is no eventID is rejected.
#[test]
fn oversized_values_are_bounded_or_rejected() {
    let mut r = rejected("Decrypt", "2026-11-01T10:00:00Z", "big", APP_ROLE);
    r["userAgent"] = json!("a".repeat(300_000));
    let Ok(Normalised::Kms { events, .. }) = normalise(&r.to_string()) else {
        panic!("a KMS record");
    };
    let ua = events[0].context().user_agent.clone().unwrap_or_default();
    assert!(
        ua.chars().count() <= keywatch_core::event::MAX_VALUE_CHARS + 1,
        "{}",
        ua.len()
    );
    let mut r = decrypt("2026-11-01T10:00:00Z", "x", APP_ROLE);
    r["eventID"] = json!("e".repeat(1_000_000));
    assert!(matches!(
        normalise(&r.to_string()),
        Err(keywatch_core::RecordError::Malformed {
            field: "eventID",
            ..
        })
    ));
}

/// `normalise_object` counts a record whose text names KMS nowhere as another service's
/// without parsing it, so a malformed record of another service is counted, not rejected.
#[test]
fn records_that_name_kms_nowhere_are_counted_without_being_parsed() {
    let s3 = with(
        decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE),
        json!({"eventSource": "s3.amazonaws.com", "eventName": 5, "eventID": null,
               "resources": null, "requestParameters": null, "responseElements": null,
               "userIdentity": {"type": "AssumedRole", "arn": APP_ROLE}}),
    )
    .to_string();
    assert!(!s3.contains("kms.amazonaws.com"), "{s3}");
    assert!(matches!(normalise(&s3), Err(RecordError::NotJson(_))));
    assert_eq!(normalise_object(&s3), Ok(Normalised::NotKms));
}

/// Whatever spells KMS's event source or deletion event, even through an escape, is read
/// in full: `normalise_object` never takes a KMS record for another service's.
#[test]
fn normalise_object_reads_every_kms_record_in_full() {
    let escaped = decrypt("2026-11-01T00:00:00Z", "a", APP_ROLE)
        .to_string()
        .replace("\"kms.amazonaws.com\"", "\"\\u006bms.amazonaws.com\"");
    assert!(!escaped.contains("kms.amazonaws.com"), "{escaped}");
    let cases = [
        decrypt("2026-11-01T00:00:00Z", "b", APP_ROLE).to_string(),
        escaped,
        kms_deletion_event("2026-11-09T00:00:00Z", "c", KEY).to_string(),
        kms_deletion_event("2026-11-09T00:00:00Z", "d", KEY)
            .to_string()
            .replace("KMS CMK Deletion", "KMS CMK\\u0020Deletion"),
        with(
            decrypt("2026-11-01T00:00:00Z", "e", APP_ROLE),
            json!({"eventID": null}),
        )
        .to_string(),
    ];
    for text in cases {
        let full = normalise(&text);
        assert!(
            !matches!(full, Ok(Normalised::NotKms)),
            "{text} is KMS's: {full:?}"
        );
        assert_eq!(normalise_object(&text), full, "{text}");
        assert_eq!(on_read(&text), full, "{text}");
    }
}

/// A record normalised in the pass that deserializes it (as the reader does with the
/// records of a delivered log file).
fn on_read(text: &str) -> Result<Normalised, RecordError> {
    serde_json::from_str::<NormalisedOnRead>(text)
        .map_err(|e| RecordError::NotJson(e.to_string()))
        .and_then(|NormalisedOnRead(n)| n)
}

proptest::proptest! {
    /// Any record KMS's normalisation takes (tracked or not) comes out of `normalise_object`
    /// and of normalising as it is read the same; any other comes out the same or as another
    /// service's.
    #[test]
    fn normalise_object_agrees_with_normalise_on_every_kms_record(
        source in proptest::prop_oneof![
            proptest::strategy::Just("kms.amazonaws.com".to_owned()),
            "[a-z]{1,8}\\.amazonaws\\.com",
        ],
        name in proptest::prop_oneof![
            proptest::strategy::Just("Decrypt".to_owned()),
            proptest::strategy::Just("ListAliases".to_owned()),
            "[A-Za-z]{1,12}",
        ],
        escape in proptest::bool::ANY,
        agent in "\\PC{0,24}",
    ) {
        let mut text = with(
            decrypt("2026-11-01T00:00:00Z", "p", APP_ROLE),
            json!({"eventSource": source, "eventName": name, "userAgent": agent}),
        )
        .to_string();
        if escape {
            text = text.replacen("kms.amazonaws.com", "\\u006bms.amazonaws.com", 1);
        }
        let full = normalise(&text);
        let fast = normalise_object(&text);
        let read = on_read(&text);
        if matches!(full, Ok(Normalised::Kms { .. } | Normalised::KmsUntracked { .. })) {
            proptest::prop_assert_eq!(&fast, &full);
            proptest::prop_assert_eq!(read, full);
        } else {
            proptest::prop_assert!(fast == full || fast == Ok(Normalised::NotKms));
            proptest::prop_assert!(read == full || read == Ok(Normalised::NotKms));
        }
    }
}

#[test]
fn key_states_in_responses_are_read_as_kms_states() {
    let scheduled = |record: &serde_json::Value| match only_event(record).kind {
        KeyEventKind::DeletionScheduled { key_state, .. } => key_state,
        other => panic!("expected a schedule, got {other:?}"),
    };
    let plain = schedule("2026-11-01T00:00:00Z", "s1", 7, None);
    assert_eq!(scheduled(&plain), KeyState::PendingDeletion);
    // No keyState in the response: KMS's answer to a schedule is PendingDeletion.
    let mut silent = plain.clone();
    silent["responseElements"]
        .as_object_mut()
        .expect("response")
        .remove("keyState");
    assert_eq!(scheduled(&silent), KeyState::PendingDeletion);
    assert_eq!(timeline(&[silent]).state, KeyState::PendingDeletion);
    // A state this version does not know: the event says Unknown, and the schedule KMS
    // accepted still leaves the key pending deletion, with its deletion date computed.
    let newer = with(
        plain,
        json!({"responseElements": {"keyState": "PendingSomethingNew"}}),
    );
    assert_eq!(scheduled(&newer), KeyState::Unknown);
    let t = timeline(&[newer]);
    assert_eq!(t.state, KeyState::PendingDeletion);
    assert_eq!(t.deletion_date, Some(ts("2026-11-08T00:00:00Z")));
    // CreateKey: the response's state when known, else the origin's first state.
    let created = |origin: &str, state: &str| {
        let mut r = create_key("2026-11-01T00:00:00Z", "c1", origin, None, None, None);
        r["responseElements"]["keyMetadata"]["keyState"] = json!(state);
        match only_event(&r).kind {
            KeyEventKind::Created { key_state, .. } => (key_state, timeline(&[r]).state),
            other => panic!("expected a creation, got {other:?}"),
        }
    };
    assert_eq!(
        created("AWS_KMS", "Disabled"),
        (Some(KeyState::Disabled), KeyState::Disabled)
    );
    assert_eq!(
        created("EXTERNAL", "Brand-new"),
        (None, KeyState::PendingImport)
    );
    assert_eq!(created("AWS_KMS", "Brand-new"), (None, KeyState::Enabled));
}
