//! A CloudTrail record as AWS writes it, read lazily: only the fields keywatch needs are
//! decoded, nested objects stay raw until a KMS record needs them.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The top level of one CloudTrail record, borrowed from its JSON text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudTrailRecord<'a> {
    #[serde(borrow, default)]
    pub event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "eventID")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub aws_region: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub recipient_account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "sourceIPAddress")]
    pub source_ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
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
    #[serde(borrow, default, rename = "sharedEventID")]
    pub shared_event_id: Option<Cow<'a, str>>,
    /// EventBridge envelope fields, for KMS's own events (`KMS CMK Deletion`).
    #[serde(borrow, default, rename = "detail-type")]
    pub detail_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
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

/// `userIdentity`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(default, rename = "type")]
    pub identity_type: Option<String>,
    #[serde(default)]
    pub arn: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub invoked_by: Option<String>,
    #[serde(default)]
    pub session_context: Option<SessionContext>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    #[serde(default)]
    pub session_issuer: Option<SessionIssuer>,
}

/// `userIdentity.sessionContext.sessionIssuer` (may be `{}`).
#[derive(Debug, Default, Deserialize)]
pub struct SessionIssuer {
    #[serde(default)]
    pub arn: Option<String>,
}

/// One entry of `resources[]`.
#[derive(Debug, Deserialize)]
pub struct Resource {
    #[serde(default, rename = "ARN")]
    pub arn: Option<String>,
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
}

/// The union of the `requestParameters` fields keywatch reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestParameters {
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub pending_window_in_days: Option<serde_json::Value>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    #[serde(default)]
    pub xks_key_id: Option<String>,
    #[serde(default)]
    pub multi_region: Option<bool>,
    /// ReEncrypt's source key.
    #[serde(default)]
    pub source_key_id: Option<String>,
    /// ReEncrypt's destination key.
    #[serde(default)]
    pub destination_key_id: Option<String>,
    /// ReplicateKey's Region.
    #[serde(default)]
    pub replica_region: Option<String>,
    /// UpdatePrimaryRegion's new primary Region.
    #[serde(default)]
    pub primary_region: Option<String>,
    /// The encryption context of Encrypt, Decrypt, GenerateDataKey*… (read only when an
    /// object).
    #[serde(default)]
    pub encryption_context: Option<serde_json::Value>,
    /// ReEncrypt's source encryption context.
    #[serde(default)]
    pub source_encryption_context: Option<serde_json::Value>,
    /// ReEncrypt's destination encryption context.
    #[serde(default)]
    pub destination_encryption_context: Option<serde_json::Value>,
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
