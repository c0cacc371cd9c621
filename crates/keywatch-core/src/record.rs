//! A CloudTrail record as AWS writes it, read lazily: only the fields keywatch needs are
//! decoded, nested objects stay raw until a KMS record needs them.

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The top level of one CloudTrail record, borrowed from its JSON text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudTrailRecord<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub event_name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "optional_text",
        rename = "eventID"
    )]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub aws_region: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub recipient_account_id: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "optional_text",
        rename = "sourceIPAddress"
    )]
    pub source_ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub error_message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_identity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub request_parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_elements: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub additional_event_data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub resources: Option<&'a RawValue>,
    /// `sharedEventID`: the same call, delivered to the caller's and the owner's account.
    #[serde(
        borrow,
        default,
        deserialize_with = "optional_text",
        rename = "sharedEventID"
    )]
    pub shared_event_id: Option<Cow<'a, str>>,
    /// EventBridge envelope fields, for KMS's own events (`KMS CMK Deletion`).
    #[serde(
        borrow,
        default,
        deserialize_with = "optional_text",
        rename = "detail-type"
    )]
    pub detail_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub account: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub region: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub detail: Option<&'a RawValue>,
}

/// `detail` of KMS's `KMS CMK Deletion` EventBridge event.
#[derive(Debug, Default, Deserialize)]
pub struct KmsDeletionDetail {
    #[serde(default, rename = "key-id")]
    pub key_id: Option<String>,
}

/// `userIdentity`, borrowed from the record where its strings have no escapes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text", rename = "type")]
    pub identity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub arn: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub principal_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub user_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub invoked_by: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub session_context: Option<SessionContext<'a>>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext<'a> {
    #[serde(borrow, default)]
    pub session_issuer: Option<SessionIssuer<'a>>,
}

/// `userIdentity.sessionContext.sessionIssuer` (may be `{}`).
#[derive(Debug, Default, Deserialize)]
pub struct SessionIssuer<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub arn: Option<Cow<'a, str>>,
}

/// One entry of `resources[]`.
#[derive(Debug, Deserialize)]
pub struct Resource<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text", rename = "ARN")]
    pub arn: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text", rename = "type")]
    pub resource_type: Option<Cow<'a, str>>,
}

/// The union of the `requestParameters` fields keywatch reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestParameters<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub key_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub pending_window_in_days: Option<serde_json::Value>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    /// UpdateCustomKeyStore's new CloudHSM cluster.
    #[serde(default, alias = "cloudHsmClusterId")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub xks_key_id: Option<String>,
    #[serde(default)]
    pub multi_region: Option<bool>,
    /// CreateKey's `keyUsage`.
    #[serde(default)]
    pub key_usage: Option<String>,
    /// ReEncrypt's source key.
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub source_key_id: Option<Cow<'a, str>>,
    /// ReEncrypt's destination key.
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub destination_key_id: Option<Cow<'a, str>>,
    /// ReplicateKey's Region.
    #[serde(default)]
    pub replica_region: Option<String>,
    /// UpdatePrimaryRegion's new primary Region.
    #[serde(default)]
    pub primary_region: Option<String>,
    /// The encryption context of Encrypt, Decrypt, GenerateDataKey*….
    #[serde(borrow, default)]
    pub encryption_context: Option<EncryptionContext<'a>>,
    /// ReEncrypt's source encryption context.
    #[serde(borrow, default)]
    pub source_encryption_context: Option<EncryptionContext<'a>>,
    /// ReEncrypt's destination encryption context.
    #[serde(borrow, default)]
    pub destination_encryption_context: Option<EncryptionContext<'a>>,
    /// CreateGrant's constraints (`encryptionContextSubset`, `encryptionContextEquals`).
    #[serde(default)]
    pub constraints: Option<serde_json::Value>,
}

/// The union of the `responseElements` fields keywatch reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseElements {
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    #[serde(default)]
    pub key_state: Option<String>,
    #[serde(default)]
    pub deletion_date: Option<serde_json::Value>,
    #[serde(default)]
    pub pending_window_in_days: Option<serde_json::Value>,
    #[serde(default)]
    pub key_metadata: Option<KeyMetadata>,
    /// ReEncrypt's source key ARN.
    #[serde(default)]
    pub source_key_id: Option<String>,
    /// ReplicateKey's new replica.
    #[serde(default)]
    pub replica_key_metadata: Option<KeyMetadata>,
}

/// `responseElements.keyMetadata` of CreateKey.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    #[serde(default)]
    pub arn: Option<String>,
    #[serde(default)]
    pub key_state: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    #[serde(default)]
    pub cloud_hsm_cluster_id: Option<String>,
    #[serde(default)]
    pub multi_region: Option<bool>,
    #[serde(default)]
    pub xks_key_configuration: Option<XksKeyConfiguration>,
    #[serde(default)]
    pub key_usage: Option<String>,
}

/// `keyMetadata.xksKeyConfiguration`.
#[derive(Debug, Default, Deserialize)]
pub struct XksKeyConfiguration {
    #[serde(default)]
    pub id: Option<String>,
}

/// The union of the `additionalEventData` fields keywatch reads. `backingKeys` and
/// `backingKeysDeletionStatus` are JSON documents inside strings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalEventData {
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub xks_key_id: Option<String>,
    #[serde(default)]
    pub custom_key_store_name: Option<String>,
    #[serde(default)]
    pub backing_keys_deletion_status: Option<serde_json::Value>,
}

/// One element of the decoded `backingKeysDeletionStatus`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackingKeyDeletion {
    #[serde(default)]
    pub key_handle: Option<String>,
    #[serde(default)]
    pub backing_key_id: Option<String>,
    #[serde(default)]
    pub deletion_status: Option<String>,
}

/// An encryption context as a call gives it: its pairs with a string value, borrowed from
/// the record where they have no escapes. A name given twice keeps its last value, as JSON
/// readers do; a value that is not a string counts as absent, and a context that is not an
/// object as empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncryptionContext<'a>(pub BTreeMap<Cow<'a, str>, Cow<'a, str>>);

impl<'a> EncryptionContext<'a> {
    /// The string pairs of a JSON object.
    pub fn from_json(object: &'a serde_json::Map<String, serde_json::Value>) -> Self {
        EncryptionContext(
            object
                .iter()
                .filter_map(|(k, v)| Some((Cow::from(k.as_str()), Cow::from(v.as_str()?))))
                .collect(),
        )
    }
}

/// An optional string, borrowed from the JSON text when it has no escapes (serde's own
/// `Option<Cow<str>>` always copies).
fn optional_text<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

/// A string borrowed from the JSON text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// Any JSON value: a string kept, anything else read through and dropped.
struct StringOrOther<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrOtherVisitor)
    }
}

struct StringOrOtherVisitor;

impl<'de> Visitor<'de> for StringOrOtherVisitor {
    type Value = StringOrOther<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StringOrOther(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StringOrOther(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(StringOrOther(Some(Cow::Owned(v))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StringOrOther(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StringOrOther(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EncryptionContext<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContextVisitor(std::marker::PhantomData))
    }
}

/// An object's string pairs; any other value, read through, names nothing.
struct ContextVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ContextVisitor<'a> {
    type Value = EncryptionContext<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an encryption context")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = BTreeMap::new();
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            match map.next_value::<StringOrOther<'de>>()?.0 {
                Some(value) => pairs.insert(name, value),
                None => pairs.remove(&name),
            };
        }
        Ok(EncryptionContext(pairs))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StringOrOtherVisitor
            .visit_seq(seq)
            .map(|_| EncryptionContext::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(EncryptionContext::default())
    }
}

/// Decodes an optional raw nested object into `T`, treating `null` and absence alike.
pub(crate) fn nested<'a, T: Deserialize<'a> + Default>(
    raw: Option<&'a RawValue>,
) -> Result<T, serde_json::Error> {
    match raw {
        None => Ok(T::default()),
        Some(r) if r.get() == "null" => Ok(T::default()),
        Some(r) => serde_json::from_str(r.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the record's reading of an encryption context gives, beside what reading the same
    /// text as a JSON value and keeping its string pairs gives.
    fn both(text: &str) -> (EncryptionContext<'_>, EncryptionContext<'static>) {
        let direct: EncryptionContext<'_> = serde_json::from_str(text).expect("direct");
        let value: serde_json::Value = serde_json::from_str(text).expect("value");
        let via_value = value
            .as_object()
            .map(|o| {
                EncryptionContext(
                    EncryptionContext::from_json(o)
                        .0
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                        .collect(),
                )
            })
            .unwrap_or_default();
        (direct, via_value)
    }

    #[test]
    fn an_encryption_context_reads_as_its_json_value_does() {
        for text in [
            r#"{"aws:s3:arn": "arn:aws:s3:::bucket/key", "Department": "Engineering"}"#,
            r#"{"a": "first", "a": "last"}"#,
            r#"{"a": "text", "a": 5}"#,
            r#"{"a": 5, "a": "text"}"#,
            r#"{"n": 1, "b": true, "z": null, "o": {"x": "y"}, "l": ["x"], "s": "kept"}"#,
            r#"{"esc\"aped": "va\\lue\u00e9"}"#,
            r#"{}"#,
            r#""a string""#,
            r#"["x", {"a": "b"}]"#,
            r#"42"#,
            r#"null"#,
        ] {
            let (direct, via_value) = both(text);
            assert_eq!(direct, via_value, "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_from_the_record_unless_escaped() {
        let text = r#"{"eventSource": "kms.amazonaws.com", "eventName": "Decr\u0079pt",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user\/alice"}}"#;
        let record: CloudTrailRecord<'_> = serde_json::from_str(text).expect("record");
        assert!(matches!(
            record.event_source,
            Some(Cow::Borrowed("kms.amazonaws.com"))
        ));
        assert_eq!(record.event_name.as_deref(), Some("Decrypt"));
        let identity: UserIdentity<'_> = nested(record.user_identity).expect("identity");
        assert!(matches!(
            identity.identity_type,
            Some(Cow::Borrowed("IAMUser"))
        ));
        assert_eq!(
            identity.arn.as_deref(),
            Some("arn:aws:iam::111122223333:user/alice")
        );
        let absent: UserIdentity<'_> =
            serde_json::from_str(r#"{"arn": null}"#).expect("identity with a null");
        assert_eq!(absent.arn, None);
    }

    #[test]
    fn a_request_whose_encryption_context_is_not_an_object_still_reads() {
        let request: RequestParameters<'_> =
            serde_json::from_str(r#"{"keyId": "k", "encryptionContext": "not an object"}"#)
                .expect("request");
        assert_eq!(
            request.encryption_context,
            Some(EncryptionContext::default())
        );
        assert_eq!(request.key_id.as_deref(), Some("k"));
    }
}
