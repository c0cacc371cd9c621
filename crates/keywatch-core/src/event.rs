//! Normalisation: one CloudTrail record in, the KMS events it means out.

use crate::protects::{read_encryption_context, ContextResources};
use crate::record::{
    nested, AdditionalEventData, BackingKeyDeletion, CloudTrailRecord, EncryptionContext,
    RequestParameters, Resource, ResponseElements, UserIdentity,
};
use crate::time::{Timestamp, DAY_MS};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The `eventSource` of every KMS record.
pub const KMS_EVENT_SOURCE: &str = "kms.amazonaws.com";
/// The longest value keywatch keeps of a free-text field of a record (a principal, a user
/// agent, an error message): longer is cut, so that one crafted record cannot make a
/// megabyte alert.
pub const MAX_VALUE_CHARS: usize = 1024;

/// The longest eventID accepted (CloudTrail's are UUIDs).
const MAX_EVENT_ID_LEN: usize = 128;

/// The most KMS keys one record may name. A KMS call names one key, or two (ReEncrypt's
/// source and destination, a multi-Region key and its replica); every key named puts the
/// record in that key's stream of the event log, so a crafted record naming thousands would
/// cost thousands of copies of itself (twenty thousand took a minute and 9 GB).
pub const MAX_KEYS_PER_RECORD: usize = 8;

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_VALUE_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// The waiting periods ScheduleKeyDeletion accepts.
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The earliest plausible eventTime (CloudTrail began in 2013, KMS in 2014).
const EARLIEST_EVENT_TIME_MS: i64 = 1_356_998_400_000; // 2013-01-01
/// The latest plausible eventTime: later is a crafted or broken record, not a use to believe.
const LATEST_EVENT_TIME_MS: i64 = 4_102_444_800_000; // 2100-01-01

fn check_plausible(t: Timestamp, text: &str) -> Result<(), RecordError> {
    if (EARLIEST_EVENT_TIME_MS..LATEST_EVENT_TIME_MS).contains(&t.millis()) {
        Ok(())
    } else {
        Err(RecordError::BadEventTime(format!(
            "{text} (implausible: before 2013 or after 2099)"
        )))
    }
}

/// AWS's default waiting period for ScheduleKeyDeletion.
pub const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The text is not a JSON object of the CloudTrail record shape.
    #[error("not a JSON CloudTrail record: {0}")]
    NotJson(String),
    /// A required field is absent.
    #[error("record has no {0}")]
    Missing(&'static str),
    /// `eventTime` is not an RFC 3339 instant.
    #[error("eventTime {0:?} is not an RFC 3339 instant")]
    BadEventTime(String),
    /// A KMS field has an unexpected shape.
    #[error("{field} of {event_name} is malformed: {reason}")]
    Malformed {
        /// The record's `eventName`.
        event_name: String,
        /// The field at fault.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The canonical identity of a KMS key: its ARN, with the parts alerts need.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyArn(String);

impl KeyArn {
    /// Parses `arn:<partition>:kms:<region>:<account>:key/<key-id>`, strictly: a known
    /// partition, a Region of lower-case letters, digits and dashes, a 12-digit account and a
    /// key ID (a UUID or an `mrk-` ID). Anything else (an alias ARN, a crafted value) is not a
    /// key ARN, so that what keywatch prints from one (the rescue command) is always plain.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let key_id = resource.strip_prefix("key/")?;
        (arn == "arn"
            && PARTITIONS.contains(&partition)
            && service == "kms"
            && is_region(region)
            && is_account(account)
            && is_key_id(key_id))
        .then(|| KeyArn(s.to_owned()))
    }

    /// Builds the ARN of a key ID in an account and Region, in the Region's partition; none
    /// when a part is not valid.
    pub fn from_parts(region: &str, account: &str, key_id: &str) -> Option<Self> {
        let partition = partition_of_region(region);
        KeyArn::parse(&format!(
            "arn:{partition}:kms:{region}:{account}:key/{key_id}"
        ))
    }

    /// The partition (`aws`, `aws-cn`, `aws-us-gov`, …).
    pub fn partition(&self) -> &str {
        self.part(1)
    }

    /// A multi-Region key (`mrk-` key ID).
    pub fn is_multi_region(&self) -> bool {
        self.key_id().starts_with("mrk-")
    }

    /// Whether `other` is a related multi-Region key of this one: the same key ID in the same
    /// partition and account, in another Region.
    pub fn is_related_multi_region_key(&self, other: &KeyArn) -> bool {
        self.is_multi_region()
            && self.key_id() == other.key_id()
            && self.partition() == other.partition()
            && self.account() == other.account()
            && self.region() != other.region()
    }

    fn part(&self, i: usize) -> &str {
        self.0.split(':').nth(i).unwrap_or("")
    }

    /// The AWS Region of the key.
    pub fn region(&self) -> &str {
        self.part(3)
    }

    /// The account that owns the key.
    pub fn account(&self) -> &str {
        self.part(4)
    }

    /// The key ID (`1234abcd-…` or `mrk-…`).
    pub fn key_id(&self) -> &str {
        self.0.rsplit_once("key/").map(|(_, id)| id).unwrap_or("")
    }

    /// The ARN text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The AWS partitions.
pub const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// An AWS Region's shape: `us-east-1`, `cn-north-1`, `us-gov-west-1`…
pub fn is_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A 12-digit AWS account ID.
pub fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The partition of an AWS Region: `aws-cn` for China, `aws-us-gov` for GovCloud (US),
/// the ISO partitions, and `aws` for every other Region.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// Whether a string looks like a bare key ID (a UUID or a multi-Region `mrk-` ID).
pub fn is_key_id(s: &str) -> bool {
    let uuid = |s: &str| s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let mrk = |s: &str| {
        s.strip_prefix("mrk-")
            .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
    };
    uuid(s) || mrk(s)
}

/// A custom key store, identified within its account and Region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyStoreRef {
    /// The owning account.
    pub account: String,
    /// The Region.
    pub region: String,
    /// `cks-…`.
    pub custom_key_store_id: String,
}

impl fmt::Display for KeyStoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.account, self.region, self.custom_key_store_id
        )
    }
}

/// Who made a call: the IAM identity, not the session.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Principal(pub String);

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl Principal {
    /// The role ARN for AssumedRole, the user ARN for IAMUser, the service for AWSService,
    /// the account root for Root.
    fn from_identity(id: &UserIdentity, partition: &str) -> Self {
        let non_empty =
            |s: &Option<Cow<'_, str>>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let issuer = id
            .session_context
            .as_ref()
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|i| non_empty(&i.arn));
        let account = non_empty(&id.account_id);
        let name = match id.identity_type.as_deref() {
            Some("AssumedRole") | Some("FederatedUser") => issuer.or_else(|| non_empty(&id.arn)),
            Some("IAMUser") => non_empty(&id.arn),
            Some("Root") => non_empty(&id.arn).or_else(|| {
                account
                    .as_ref()
                    .map(|a| format!("arn:{partition}:iam::{a}:root"))
            }),
            Some("AWSService") => non_empty(&id.invoked_by),
            Some("AWSAccount") => account.as_ref().map(|a| format!("account:{a}")),
            _ => None,
        };
        Principal(
            name.or_else(|| non_empty(&id.arn))
                .or_else(|| non_empty(&id.invoked_by))
                .or_else(|| non_empty(&id.principal_id))
                .or_else(|| account.map(|a| format!("account:{a}")))
                .unwrap_or_else(|| "unknown".to_owned()),
        )
    }
}

/// Display, `Serialize` and `Deserialize` in AWS's spelling for a type with `as_str`: `read`
/// turns the text read (a `Cow<str>`) into the value, whatever this version knows of it.
macro_rules! aws_spelling {
    ($ty:ty, |$s:ident| $read:expr) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let $s = std::borrow::Cow::<str>::deserialize(d)?;
                Ok($read)
            }
        }
    };
}

/// Declares [`KmsOperation`] from one list: each operation's name (AWS's spelling) and whether
/// it uses the key's material.
macro_rules! kms_operations {
    ($($op:ident: $uses:literal),* $(,)?) => {
        /// A KMS API operation that acts on an existing key, as listed in AWS's key states
        /// table: any of them rejected with "… is pending deletion." is an attempt to use a
        /// key pending deletion. Serialised in AWS's spelling (`Decrypt`, `Sign`, …).
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KmsOperation {
            $(
                #[doc = concat!("`", stringify!($op), "`.")]
                $op,
            )*
            /// An operation this version does not know (read back from a stored timeline),
            /// kept as it came.
            Other(String),
        }

        impl KmsOperation {
            /// The operation an `eventName` names, if it acts on an existing key.
            pub fn parse(event_name: &str) -> Option<Self> {
                match event_name {
                    $(stringify!($op) => Some(KmsOperation::$op),)*
                    _ => None,
                }
            }

            /// AWS's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(KmsOperation::$op => stringify!($op),)*
                    KmsOperation::Other(s) => s,
                }
            }

            /// Whether the operation uses the key's material (a use of the key, as opposed
            /// to managing it).
            pub fn uses_key_material(&self) -> bool {
                match self {
                    $(KmsOperation::$op => $uses,)*
                    KmsOperation::Other(_) => false,
                }
            }
        }
    };
}

kms_operations! {
    CancelKeyDeletion: false,
    CreateAlias: false,
    CreateGrant: true,
    Decrypt: true,
    DeleteImportedKeyMaterial: false,
    DeriveSharedSecret: true,
    DisableKey: false,
    DisableKeyRotation: false,
    EnableKey: false,
    EnableKeyRotation: false,
    Encrypt: true,
    GenerateDataKey: true,
    GenerateDataKeyPair: true,
    GenerateDataKeyPairWithoutPlaintext: true,
    GenerateDataKeyWithoutPlaintext: true,
    GenerateMac: true,
    GetKeyRotationStatus: false,
    GetParametersForImport: false,
    GetPublicKey: true,
    ImportKeyMaterial: false,
    ReEncrypt: true,
    ReplicateKey: false,
    RotateKeyOnDemand: false,
    ScheduleKeyDeletion: false,
    Sign: true,
    TagResource: false,
    UntagResource: false,
    UpdateAlias: false,
    UpdateKeyDescription: false,
    UpdatePrimaryRegion: false,
    Verify: true,
    VerifyMac: true,
}

aws_spelling!(KmsOperation, |s| KmsOperation::parse(&s)
    .unwrap_or_else(|| KmsOperation::Other(s.into_owned())));

/// How a usage attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UsageOutcome {
    /// The call succeeded.
    Succeeded,
    /// Rejected because the key is pending deletion.
    RejectedPendingDeletion,
    /// Failed for another reason.
    Failed {
        /// `errorCode`.
        error_code: String,
    },
}

impl UsageOutcome {
    /// Rejected because the key was disabled (`DisabledException`): a failure, but proof that
    /// something still depends on the key. AWS's advice before deleting a key is to disable it
    /// and watch CloudTrail for these.
    pub fn is_rejected_as_disabled(&self) -> bool {
        matches!(self, UsageOutcome::Failed { error_code } if error_code == "DisabledException")
    }
}

/// A backing key's deletion status reported by DeleteKey in a CloudHSM key store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingKeyStatus {
    /// `keyHandle` in the cluster.
    pub key_handle: Option<String>,
    /// `backingKeyId`.
    pub backing_key_id: Option<String>,
    /// Whether the cluster deleted it.
    pub deletion_status: BackingKeyDeletionStatus,
}

/// `deletionStatus` of a backing key in DeleteKey's `backingKeysDeletionStatus`, in AWS's
/// spelling when serialised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackingKeyDeletionStatus {
    /// `SUCCESS`: the key material is gone from the cluster (backups may still hold it).
    Success,
    /// `FAILURE`: the key material is still in the cluster (orphaned).
    Failure,
    /// No status reported (`UNKNOWN`): not known to be deleted.
    Unknown,
    /// A spelling this version does not know, kept as it came.
    Other(String),
}

impl BackingKeyDeletionStatus {
    /// Reads AWS's spelling.
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => BackingKeyDeletionStatus::Success,
            "FAILURE" => BackingKeyDeletionStatus::Failure,
            "UNKNOWN" => BackingKeyDeletionStatus::Unknown,
            other => BackingKeyDeletionStatus::Other(other.to_owned()),
        }
    }

    /// AWS's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            BackingKeyDeletionStatus::Success => "SUCCESS",
            BackingKeyDeletionStatus::Failure => "FAILURE",
            BackingKeyDeletionStatus::Unknown => "UNKNOWN",
            BackingKeyDeletionStatus::Other(s) => s,
        }
    }

    /// Whether the cluster reported the backing key deleted.
    pub fn is_deleted(&self) -> bool {
        *self == BackingKeyDeletionStatus::Success
    }
}

aws_spelling!(BackingKeyDeletionStatus, |s| {
    BackingKeyDeletionStatus::parse(&s)
});

/// AWS's key states (`KeyState` in KMS's KeyMetadata), plus Deleted and Unknown. Read and
/// written in AWS's spelling; a spelling this version does not know reads as Unknown, so a
/// stored timeline or a record naming a state KMS adds later still decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyState {
    /// A multi-Region replica key being created (ReplicateKey).
    Creating,
    Enabled,
    Disabled,
    PendingDeletion,
    PendingReplicaDeletion,
    PendingImport,
    Unavailable,
    /// A multi-Region key whose primary Region is being changed (UpdatePrimaryRegion).
    Updating,
    Deleted,
    #[default]
    Unknown,
}

impl KeyState {
    /// Every state, KMS's first, in the order KMS's documentation lists them.
    pub const ALL: [KeyState; 10] = [
        KeyState::Creating,
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDeletion,
        KeyState::PendingReplicaDeletion,
        KeyState::PendingImport,
        KeyState::Unavailable,
        KeyState::Updating,
        KeyState::Deleted,
        KeyState::Unknown,
    ];

    /// Parses AWS's spelling (`PendingDeletion`, …); none for a spelling not known here.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Creating => "Creating",
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingReplicaDeletion => "PendingReplicaDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::Unavailable => "Unavailable",
            KeyState::Updating => "Updating",
            KeyState::Deleted => "Deleted",
            KeyState::Unknown => "Unknown",
        }
    }

    /// Pending deletion, as a primary or a replica.
    pub fn is_pending_deletion(self) -> bool {
        matches!(
            self,
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
        )
    }
}

aws_spelling!(KeyState, |s| KeyState::parse(&s).unwrap_or_default());

/// Where a KMS key's material comes from (`Origin` in KeyMetadata), in AWS's spelling when
/// serialised.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyOrigin {
    /// `AWS_KMS`: KMS made the material (the default).
    #[default]
    AwsKms,
    /// `EXTERNAL`: imported material; the key waits in PendingImport until it arrives.
    External,
    /// `AWS_CLOUDHSM`: a CloudHSM key store's cluster holds the material.
    AwsCloudHsm,
    /// `EXTERNAL_KEY_STORE`: an external key manager holds the material (XKS).
    ExternalKeyStore,
    /// A spelling this version does not know, kept as it came.
    Other(String),
}

impl KeyOrigin {
    /// Reads AWS's spelling.
    pub fn parse(s: &str) -> Self {
        match s {
            "AWS_KMS" => KeyOrigin::AwsKms,
            "EXTERNAL" => KeyOrigin::External,
            "AWS_CLOUDHSM" => KeyOrigin::AwsCloudHsm,
            "EXTERNAL_KEY_STORE" => KeyOrigin::ExternalKeyStore,
            other => KeyOrigin::Other(other.to_owned()),
        }
    }

    /// AWS's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            KeyOrigin::AwsKms => "AWS_KMS",
            KeyOrigin::External => "EXTERNAL",
            KeyOrigin::AwsCloudHsm => "AWS_CLOUDHSM",
            KeyOrigin::ExternalKeyStore => "EXTERNAL_KEY_STORE",
            KeyOrigin::Other(s) => s,
        }
    }
}

aws_spelling!(KeyOrigin, |s| KeyOrigin::parse(&s));

/// What a KMS key is for (`KeyUsage` in KeyMetadata), in AWS's spelling when serialised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// `ENCRYPT_DECRYPT`: symmetric or asymmetric encryption.
    EncryptDecrypt,
    /// `SIGN_VERIFY`: asymmetric signing.
    SignVerify,
    /// `GENERATE_VERIFY_MAC`: HMAC.
    GenerateVerifyMac,
    /// `KEY_AGREEMENT`: deriving shared secrets (ECDH).
    KeyAgreement,
    /// A spelling this version does not know, kept as it came.
    Other(String),
}

impl KeyUsage {
    /// Reads AWS's spelling.
    pub fn parse(s: &str) -> Self {
        match s {
            "ENCRYPT_DECRYPT" => KeyUsage::EncryptDecrypt,
            "SIGN_VERIFY" => KeyUsage::SignVerify,
            "GENERATE_VERIFY_MAC" => KeyUsage::GenerateVerifyMac,
            "KEY_AGREEMENT" => KeyUsage::KeyAgreement,
            other => KeyUsage::Other(other.to_owned()),
        }
    }

    /// AWS's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
            KeyUsage::SignVerify => "SIGN_VERIFY",
            KeyUsage::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
            KeyUsage::KeyAgreement => "KEY_AGREEMENT",
            KeyUsage::Other(s) => s,
        }
    }
}

aws_spelling!(KeyUsage, |s| KeyUsage::parse(&s));

/// What a KMS record means for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyEventKind {
    /// CreateKey.
    Created {
        /// Where the key's material comes from.
        origin: KeyOrigin,
        /// The key state in the response (`Enabled`, `PendingImport`…), when it names one
        /// known here.
        key_state: Option<KeyState>,
        /// The custom key store, if any.
        custom_key_store_id: Option<String>,
        /// The CloudHSM cluster of that key store.
        cloudhsm_cluster_id: Option<String>,
        /// The external key's ID in an XKS key store.
        xks_key_id: Option<String>,
        /// A multi-Region key.
        multi_region: bool,
        /// What the key is for (`keyUsage`), when the record says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_usage: Option<KeyUsage>,
    },
    /// ScheduleKeyDeletion.
    DeletionScheduled {
        /// `pendingWindowInDays` (default 30).
        window_days: u32,
        /// When KMS will delete the key; none for a multi-Region primary key that still has
        /// replicas (`PendingReplicaDeletion`): its waiting period begins when the last
        /// replica is deleted.
        deletion_date: Option<Timestamp>,
        /// Whether `deletion_date` was read from the record rather than computed.
        deletion_date_reported: bool,
        /// `PendingDeletion`, or `PendingReplicaDeletion` for a multi-Region primary (Unknown
        /// when the response names a state not known here).
        key_state: KeyState,
        /// The custom key store, when the record names one.
        custom_key_store_id: Option<String>,
        /// The CloudHSM cluster, when the record names one.
        cloudhsm_cluster_id: Option<String>,
    },
    /// CancelKeyDeletion.
    DeletionCancelled,
    /// DeleteKey (an AWS service event at the end of the waiting period).
    Deleted {
        /// The custom key store, if any.
        custom_key_store_id: Option<String>,
        /// The CloudHSM cluster, if any.
        cloudhsm_cluster_id: Option<String>,
        /// `backingKeysDeletionStatus`, decoded.
        backing_keys: Vec<BackingKeyStatus>,
    },
    /// DisableKey.
    Disabled,
    /// EnableKey.
    Enabled,
    /// ImportKeyMaterial.
    KeyMaterialImported,
    /// DeleteImportedKeyMaterial, or KMS's DeleteExpiredKeyMaterial when imported material
    /// expires.
    KeyMaterialDeleted,
    /// A use of the key's material.
    Used {
        /// The operation (`Decrypt`, `Sign`, …).
        operation: KmsOperation,
        /// How it ended.
        #[serde(flatten)]
        outcome: UsageOutcome,
        /// The custom key store the call reports, if any.
        custom_key_store_id: Option<String>,
        /// The external key the call reports (XKS), if any.
        #[serde(default)]
        xks_key_id: Option<String>,
        /// What the call's encryption context names (the resource the key protects).
        #[serde(default, skip_serializing_if = "ContextResources::is_empty")]
        protects: ContextResources,
    },
    /// ReplicateKey: a replica of this multi-Region primary key was created in a Region.
    ReplicaCreated {
        /// `replicaRegion`.
        replica_region: String,
    },
    /// UpdatePrimaryRegion: the primary of this multi-Region key moved to a Region.
    PrimaryRegionUpdated {
        /// `primaryRegion`.
        primary_region: String,
    },
    /// A lifecycle call that failed: kept for the record, changes nothing.
    CallFailed {
        /// `errorCode`.
        error_code: String,
    },
}

/// The context every event carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContext {
    /// `eventID`.
    pub event_id: String,
    /// `eventTime`.
    pub event_time: Timestamp,
    /// `eventName`.
    pub event_name: String,
    /// Who made the call.
    pub principal: Principal,
    /// `sourceIPAddress`.
    pub source_ip: Option<String>,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// `userIdentity.invokedBy`: the service that called on the principal's behalf.
    pub invoked_by: Option<String>,
    /// `errorMessage`.
    pub error_message: Option<String>,
    /// `userIdentity.accountId`: the caller's account (another account's for a
    /// cross-account call, in both copies of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_account: Option<String>,
    /// `sharedEventID`: one call recorded in two accounts (caller's and key owner's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_event_id: Option<String>,
    /// `userIdentity.type` was `AWSAccount`: the key owner's copy of a cross-account call,
    /// which names the calling account but not its principal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller_is_account: bool,
}

impl EventContext {
    /// The call this record is one copy of: `sharedEventID` when the call was recorded in
    /// two accounts, else `eventID`.
    pub fn call_id(&self) -> &str {
        self.shared_event_id.as_deref().unwrap_or(&self.event_id)
    }
}

/// One event in a key's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    /// The key.
    pub key: KeyArn,
    /// Common context.
    #[serde(flatten)]
    pub context: EventContext,
    /// What happened.
    #[serde(flatten)]
    pub kind: KeyEventKind,
}

/// What happened to a custom key store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreChange {
    /// CreateCustomKeyStore.
    Created,
    /// ConnectCustomKeyStore.
    Connected,
    /// DisconnectCustomKeyStore.
    Disconnected,
    /// DeleteCustomKeyStore.
    Deleted,
    /// UpdateCustomKeyStore: its name, its credentials, or (for a CloudHSM key store, while
    /// disconnected) its cluster, which must share the old one's backup history.
    Updated,
}

/// One event in a custom key store's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStoreEvent {
    /// The key store.
    pub key_store: KeyStoreRef,
    /// Common context.
    #[serde(flatten)]
    pub context: EventContext,
    /// What happened.
    pub change: KeyStoreChange,
    /// The CloudHSM cluster, when the record names it.
    pub cloudhsm_cluster_id: Option<String>,
}

/// An event of either stream, as the fold consumes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stream", rename_all = "snake_case")]
pub enum KmsEvent {
    /// About one key.
    Key(KeyEvent),
    /// About one custom key store.
    KeyStore(KeyStoreEvent),
}

/// (eventTime, call id, eventID): the order of events in a fold.
pub type OrderKey<'a> = (Timestamp, &'a str, &'a str);
/// A stream in sortable form: (0, key ARN, "", "") or (1, account, Region, key store ID).
pub type StreamOrder<'a> = (u8, &'a str, &'a str, &'a str);

impl KmsEvent {
    /// The context of either kind.
    pub fn context(&self) -> &EventContext {
        match self {
            KmsEvent::Key(e) => &e.context,
            KmsEvent::KeyStore(e) => &e.context,
        }
    }

    /// The stream the event belongs to: a key's, or a custom key store's.
    pub fn stream(&self) -> StreamOrder<'_> {
        match self {
            KmsEvent::Key(k) => (0, k.key.as_str(), "", ""),
            KmsEvent::KeyStore(s) => (
                1,
                &s.key_store.account,
                &s.key_store.region,
                &s.key_store.custom_key_store_id,
            ),
        }
    }

    /// The total order a fold applies events in: [`Self::order_key`], then the stream (one
    /// record's events for several keys).
    pub fn fold_order(&self) -> (OrderKey<'_>, StreamOrder<'_>) {
        (self.order_key(), self.stream())
    }

    /// The fold order: (eventTime, call, eventID). The two copies of a cross-account call
    /// share a call id (`sharedEventID`), so they sort together.
    pub fn order_key(&self) -> OrderKey<'_> {
        let c = self.context();
        (c.event_time, c.call_id(), &c.event_id)
    }
}

/// What a record turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalised {
    /// Not from `kms.amazonaws.com`: counted and skipped.
    NotKms,
    /// A KMS record that keywatch does not track (DescribeKey, ListAliases, a call whose
    /// key cannot be identified, …).
    KmsUntracked {
        /// `eventID`.
        event_id: String,
    },
    /// A KMS record with the events it means (ReEncrypt touches two keys).
    Kms {
        /// `eventID`.
        event_id: String,
        /// The events, one per key or key store.
        events: Vec<KmsEvent>,
    },
}

/// The message KMS gives when a key is pending deletion, in either documented form.
/// A multi-Region primary waiting for its replicas' deletion is refused likewise.
pub fn is_pending_deletion_message(message: &str) -> bool {
    message.contains("is pending deletion")
        || message.contains("is pending replica deletion")
        || message.contains("key state is PendingDeletion")
        || message.contains("key state is PendingReplicaDeletion")
}

fn as_u32(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn malformed(event_name: &str, field: &'static str, e: impl fmt::Display) -> RecordError {
    RecordError::Malformed {
        event_name: event_name.to_owned(),
        field,
        reason: e.to_string(),
    }
}

/// Reads one CloudTrail record's JSON text and returns what it means to keywatch.
pub fn normalise(json: &str) -> Result<Normalised, RecordError> {
    let record: CloudTrailRecord<'_> =
        serde_json::from_str(json).map_err(|e| RecordError::NotJson(e.to_string()))?;
    normalise_record(&record)
}

/// [`normalise`] for the text of one JSON object, already read as such (the reader's
/// records): a record whose text names KMS nowhere is another service's, counted as
/// [`Normalised::NotKms`] without being parsed.
///
/// "Names KMS" means that the text holds `kms.amazonaws.com` or `KMS CMK Deletion`, or a
/// `\u` escape (which could spell either): a KMS record always does, so none is missed.
/// The records of other services, half or more of an organisation's trail, then cost a
/// search instead of a parse; what is given up is checking them, so that a malformed record
/// of another service is counted with the others instead of rejected. Text not known to be
/// a JSON object (a Kafka message's value, say) goes to [`normalise`], which says why it is
/// not a record.
pub fn normalise_object(json: &str) -> Result<Normalised, RecordError> {
    if !may_name_kms(json) {
        return Ok(Normalised::NotKms);
    }
    normalise(json)
}

/// Whether a record's text could be KMS's: it names KMS's event source or its deletion
/// event, or holds an escape that could spell them.
fn may_name_kms(json: &str) -> bool {
    json.contains(KMS_EVENT_SOURCE) || json.contains(KMS_KEY_DELETION_EVENT) || json.contains("\\u")
}

/// The detail-type of the EventBridge event KMS sends when it deletes a key at the end of
/// its waiting period.
pub const KMS_KEY_DELETION_EVENT: &str = "KMS CMK Deletion";

/// A record normalised in the pass that deserializes it, for a reader that finds records by
/// reading them (`keywatch_reader::read_path_limited_as`): what [`normalise_object`] gives
/// for the record's text, without its text being gone through again. Another service's
/// record is [`Normalised::NotKms`] without more checks, as there.
#[derive(Debug)]
pub struct NormalisedOnRead(pub Result<Normalised, RecordError>);

impl<'de> Deserialize<'de> for NormalisedOnRead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let record = CloudTrailRecord::deserialize(d)?;
        Ok(NormalisedOnRead(if is_kms_record(&record) {
            normalise_record(&record)
        } else {
            Ok(Normalised::NotKms)
        }))
    }
}

/// What a record the reader found is: as normalised in the pass that read it where the
/// reader read it so (`read`), else from its text by [`normalise_object`].
pub fn normalise_found(
    read: Option<NormalisedOnRead>,
    json: &str,
) -> Result<Normalised, RecordError> {
    match read {
        Some(NormalisedOnRead(normalised)) => normalised,
        None => normalise_object(json),
    }
}

/// Whether a record is KMS's: a call to `kms.amazonaws.com`, or KMS's own event when it
/// deletes a key (what [`normalise_record`] reads as KMS's).
fn is_kms_record(r: &CloudTrailRecord<'_>) -> bool {
    match r.event_source.as_deref() {
        Some(source) => source == KMS_EVENT_SOURCE,
        None => r.detail_type.as_deref() == Some(KMS_KEY_DELETION_EVENT),
    }
}

/// [`normalise`] on an already-decoded record.
pub fn normalise_record(r: &CloudTrailRecord<'_>) -> Result<Normalised, RecordError> {
    if r.event_source.is_none() && r.detail_type.as_deref() == Some(KMS_KEY_DELETION_EVENT) {
        return normalise_kms_deletion_event(r);
    }
    let event_id = event_id_of(r)?;
    let event_time_text = r
        .event_time
        .as_deref()
        .ok_or(RecordError::Missing("eventTime"))?;
    let event_time = Timestamp::parse_rfc3339(event_time_text)
        .ok_or_else(|| RecordError::BadEventTime(event_time_text.to_owned()))?;
    if r.event_source.as_deref() != Some(KMS_EVENT_SOURCE) {
        return Ok(Normalised::NotKms);
    }
    check_plausible(event_time, event_time_text)?;
    let event_name = r
        .event_name
        .as_deref()
        .ok_or(RecordError::Missing("eventName"))?;
    let outcome = CallOutcome::of(r, event_name);
    let events = match CallKind::of(event_name, &outcome) {
        CallKind::Untracked => Vec::new(),
        CallKind::KeyStore => {
            key_store_events(Call::read(r, event_id, event_time, event_name)?, &outcome)
        }
        kind => key_events(
            r,
            Call::read(r, event_id, event_time, event_name)?,
            kind,
            &outcome,
        )?,
    };
    Ok(if events.is_empty() {
        Normalised::KmsUntracked {
            event_id: event_id.to_owned(),
        }
    } else {
        Normalised::Kms {
            event_id: event_id.to_owned(),
            events,
        }
    })
}

/// How a KMS call ended: its operation (when keywatch knows it), its error code, and whether
/// KMS refused it because the key is pending deletion.
struct CallOutcome<'r> {
    operation: Option<KmsOperation>,
    error_code: Option<&'r str>,
    rejected_pending_deletion: bool,
}

impl<'r> CallOutcome<'r> {
    fn of(r: &'r CloudTrailRecord<'_>, event_name: &str) -> Self {
        let error_code = r.error_code.as_deref().filter(|s| !s.is_empty());
        let operation = KmsOperation::parse(event_name);
        let rejected_pending_deletion = error_code.is_some()
            && r.error_message
                .as_deref()
                .is_some_and(is_pending_deletion_message)
            && operation.is_some();
        CallOutcome {
            operation,
            error_code,
            rejected_pending_deletion,
        }
    }
}

/// What a KMS call is to keywatch.
enum CallKind {
    /// A change to a custom key store.
    KeyStore,
    /// A use of a key's material, or any call the key's state refused as pending deletion.
    Use(KmsOperation),
    /// A change to a key's lifecycle.
    Lifecycle,
    /// Anything else (DescribeKey, ListAliases, …): counted, not tracked.
    Untracked,
}

impl CallKind {
    fn of(event_name: &str, outcome: &CallOutcome<'_>) -> Self {
        if matches!(
            event_name,
            "ConnectCustomKeyStore"
                | "DisconnectCustomKeyStore"
                | "CreateCustomKeyStore"
                | "DeleteCustomKeyStore"
                | "UpdateCustomKeyStore"
        ) {
            return CallKind::KeyStore;
        }
        if let Some(operation) = outcome
            .operation
            .clone()
            .filter(|o| o.uses_key_material() || outcome.rejected_pending_deletion)
        {
            return CallKind::Use(operation);
        }
        match event_name {
            "CreateKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "DeleteKey"
            | "DisableKey"
            | "EnableKey"
            | "ImportKeyMaterial"
            | "DeleteImportedKeyMaterial"
            | "DeleteExpiredKeyMaterial"
            | "ReplicateKey"
            | "UpdatePrimaryRegion" => CallKind::Lifecycle,
            _ => CallKind::Untracked,
        }
    }
}

/// The parts of a tracked call's record that its events are made of.
struct Call<'r> {
    request: RequestParameters<'r>,
    response: ResponseElements,
    additional: AdditionalEventData,
    context: EventContext,
    /// The account the record was delivered to (else the caller's).
    account: Cow<'r, str>,
    region: &'r str,
}

impl<'r> Call<'r> {
    fn read(
        r: &'r CloudTrailRecord<'_>,
        event_id: &str,
        event_time: Timestamp,
        event_name: &str,
    ) -> Result<Self, RecordError> {
        let mut identity: UserIdentity =
            nested(r.user_identity).map_err(|e| malformed(event_name, "userIdentity", e))?;
        let request = nested(r.request_parameters)
            .map_err(|e| malformed(event_name, "requestParameters", e))?;
        let response = nested(r.response_elements)
            .map_err(|e| malformed(event_name, "responseElements", e))?;
        let additional = nested(r.additional_event_data)
            .map_err(|e| malformed(event_name, "additionalEventData", e))?;
        let context = event_context(r, &identity, event_id, event_time, event_name);
        let account = match r.recipient_account_id.as_deref() {
            Some(account) => Cow::Borrowed(account),
            None => identity.account_id.take().unwrap_or_default(),
        };
        Ok(Call {
            request,
            response,
            additional,
            context,
            account,
            region: r.aws_region.as_deref().unwrap_or_default(),
        })
    }
}

/// A custom key store call's event: only a successful one that names its store.
fn key_store_events(call: Call<'_>, outcome: &CallOutcome<'_>) -> Vec<KmsEvent> {
    let store_id = call
        .request
        .custom_key_store_id
        .or(call.additional.custom_key_store_id)
        .or(call.response.custom_key_store_id);
    match (store_id, outcome.error_code) {
        (Some(custom_key_store_id), None) => vec![key_store_event(
            KeyStoreRef {
                account: call.account.into_owned(),
                region: call.region.to_owned(),
                custom_key_store_id,
            },
            call.context,
            // The cluster the store is (now) associated with: UpdateCustomKeyStore's request
            // names the new one.
            call.request.cluster_id.or(call.additional.cluster_id),
        )],
        _ => Vec::new(),
    }
}

/// A use's or a lifecycle call's events, one per key it names.
fn key_events(
    r: &CloudTrailRecord<'_>,
    call: Call<'_>,
    kind: CallKind,
    outcome: &CallOutcome<'_>,
) -> Result<Vec<KmsEvent>, RecordError> {
    let event_name = call.context.event_name.as_str();
    let keys = key_arns(r, &call.request, &call.response, &call.account, call.region)
        .map_err(|e| malformed(event_name, "resources", e))?;
    if keys.is_empty() {
        // A use, a rejection as pending deletion or a lifecycle change whose key cannot be
        // told (no key ARN, only an alias) would vanish: reject it, with the reason. A call
        // that failed for another reason names no key to keep.
        if outcome.error_code.is_none() || outcome.rejected_pending_deletion {
            return Err(RecordError::Missing(
                "key ARN or key ID (in resources[].ARN or requestParameters.keyId)",
            ));
        }
        return Ok(Vec::new());
    }
    match kind {
        CallKind::Use(operation) => Ok(use_events(
            keys,
            call.context,
            &operation,
            outcome.error_code,
            outcome.rejected_pending_deletion,
            &call.request,
            &call.additional,
        )),
        _ => lifecycle_events(
            keys,
            &call.context,
            outcome.error_code,
            &call.request,
            call.response,
            call.additional,
        ),
    }
}

/// The record's `eventID`: present, and of a plausible length.
fn event_id_of<'r>(r: &'r CloudTrailRecord<'_>) -> Result<&'r str, RecordError> {
    let event_id = r
        .event_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(RecordError::Missing("eventID"))?;
    if event_id.len() > MAX_EVENT_ID_LEN {
        return Err(RecordError::Malformed {
            event_name: r
                .event_name
                .as_deref()
                .unwrap_or("?")
                .chars()
                .take(64)
                .collect(),
            field: "eventID",
            reason: format!(
                "{} bytes long: not a CloudTrail eventID (at most {MAX_EVENT_ID_LEN})",
                event_id.len()
            ),
        });
    }
    Ok(event_id)
}

/// Who called, from where and via what, with free text bounded.
fn event_context(
    r: &CloudTrailRecord<'_>,
    identity: &UserIdentity,
    event_id: &str,
    event_time: Timestamp,
    event_name: &str,
) -> EventContext {
    let region = r.aws_region.as_deref().unwrap_or_default();
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    EventContext {
        event_id: event_id.to_owned(),
        event_time,
        event_name: event_name.to_owned(),
        principal: Principal(bounded(
            &Principal::from_identity(identity, partition_of_region(region)).0,
        )),
        source_ip: r.source_ip_address.as_deref().map(bounded),
        user_agent: r.user_agent.as_deref().map(bounded),
        invoked_by: identity.invoked_by.as_deref().map(bounded),
        error_message: r.error_message.as_deref().map(bounded),
        caller_account: non_empty(identity.account_id.as_deref()),
        shared_event_id: non_empty(r.shared_event_id.as_deref()),
        caller_is_account: identity.identity_type.as_deref() == Some("AWSAccount"),
    }
}

/// A key store's change (ConnectCustomKeyStore, DisconnectCustomKeyStore, …).
fn key_store_event(
    key_store: KeyStoreRef,
    context: EventContext,
    cloudhsm_cluster_id: Option<String>,
) -> KmsEvent {
    let change = match context.event_name.as_str() {
        "ConnectCustomKeyStore" => KeyStoreChange::Connected,
        "DisconnectCustomKeyStore" => KeyStoreChange::Disconnected,
        "CreateCustomKeyStore" => KeyStoreChange::Created,
        "UpdateCustomKeyStore" => KeyStoreChange::Updated,
        _ => KeyStoreChange::Deleted,
    };
    KmsEvent::KeyStore(KeyStoreEvent {
        key_store,
        context,
        change,
        cloudhsm_cluster_id,
    })
}

/// A use of each key a call names (or an attempt), with how it ended for that key and
/// what its encryption context says the key protects.
fn use_events(
    keys: Vec<KeyArn>,
    context: EventContext,
    operation: &KmsOperation,
    error_code: Option<&str>,
    rejected_pending_deletion: bool,
    request: &RequestParameters,
    additional: &AdditionalEventData,
) -> Vec<KmsEvent> {
    let event_name = context.event_name.as_str();
    // A call on several keys (ReEncrypt, UpdateAlias) rejected because one key is pending
    // deletion names that key in its message: only that key was refused for its state.
    let message = context.error_message.as_deref().unwrap_or_default();
    let named: Vec<bool> = keys
        .iter()
        .map(|k| message.contains(k.as_str()) || message.contains(k.key_id()))
        .collect();
    let any_named = named.iter().any(|n| *n);
    let destination = request.destination_key_id.as_deref();
    let uses: Vec<(KeyArn, UsageOutcome, ContextResources)> = keys
        .into_iter()
        .zip(named)
        .map(|(key, named)| {
            let is_destination =
                destination.is_some_and(|d| d == key.as_str() || d == key.key_id());
            let protects = encryption_context_of(request, event_name, is_destination);
            let outcome = match error_code {
                None => UsageOutcome::Succeeded,
                Some(_) if rejected_pending_deletion && (named || !any_named) => {
                    UsageOutcome::RejectedPendingDeletion
                }
                Some(code) => UsageOutcome::Failed {
                    error_code: code.to_owned(),
                },
            };
            (key, outcome, protects)
        })
        .collect();
    // Each key's event has the call's context: copies for all but the last, which takes it.
    let contexts = std::iter::repeat_n(context, uses.len());
    uses.into_iter()
        .zip(contexts)
        .map(|((key, outcome, protects), context)| {
            KmsEvent::Key(KeyEvent {
                key,
                context,
                kind: KeyEventKind::Used {
                    operation: operation.clone(),
                    outcome,
                    custom_key_store_id: additional.custom_key_store_id.clone(),
                    xks_key_id: additional.xks_key_id.clone(),
                    protects,
                },
            })
        })
        .collect()
}

/// A lifecycle call's events: one per key it names (a failed call changes nothing but is
/// kept), and for ReplicateKey the replica's creation.
fn lifecycle_events(
    keys: Vec<KeyArn>,
    context: &EventContext,
    error_code: Option<&str>,
    request: &RequestParameters,
    response: ResponseElements,
    additional: AdditionalEventData,
) -> Result<Vec<KmsEvent>, RecordError> {
    let event_name = context.event_name.as_str();
    let event_time = context.event_time;
    let mut events = Vec::with_capacity(keys.len() + 1);
    let replica = (event_name == "ReplicateKey" && error_code.is_none())
        .then(|| {
            response
                .replica_key_metadata
                .as_ref()
                .and_then(|m| m.arn.as_deref())
                .and_then(KeyArn::parse)
        })
        .flatten();
    let kind = if let Some(code) = error_code {
        KeyEventKind::CallFailed {
            error_code: code.to_owned(),
        }
    } else {
        lifecycle_kind(event_name, event_time, request, &response, additional)
            .map_err(|(field, reason)| malformed(event_name, field, reason))?
    };
    for key in keys.into_iter().filter(|k| Some(k) != replica.as_ref()) {
        events.push(KmsEvent::Key(KeyEvent {
            key,
            context: context.clone(),
            kind: kind.clone(),
        }));
    }
    if let Some(replica) = replica {
        // The replica begins here: a multi-Region key of the primary's origin.
        let meta = response.replica_key_metadata.unwrap_or_default();
        events.push(KmsEvent::Key(KeyEvent {
            key: replica,
            context: context.clone(),
            kind: KeyEventKind::Created {
                origin: meta
                    .origin
                    .as_deref()
                    .map(KeyOrigin::parse)
                    .unwrap_or_default(),
                key_state: Some(KeyState::Enabled),
                custom_key_store_id: None,
                cloudhsm_cluster_id: None,
                xks_key_id: None,
                multi_region: true,
                key_usage: None,
            },
        }));
    }
    Ok(events)
}

/// The encryption context that names what a call protects: ReEncrypt's source context for
/// its source key and destination context for its destination key, CreateGrant's
/// constraints, else `encryptionContext`.
fn encryption_context_of(
    request: &RequestParameters,
    event_name: &str,
    is_destination: bool,
) -> ContextResources {
    let context = match event_name {
        "ReEncrypt" if is_destination => request.destination_encryption_context.as_ref(),
        "ReEncrypt" => request.source_encryption_context.as_ref(),
        "CreateGrant" => {
            return request
                .constraints
                .as_ref()
                .and_then(|c| {
                    c.get("encryptionContextSubset")
                        .or_else(|| c.get("encryptionContextEquals"))
                })
                .and_then(|c| c.as_object())
                .map(|c| read_encryption_context(&EncryptionContext::from_json(c)))
                .unwrap_or_default()
        }
        _ => request.encryption_context.as_ref(),
    };
    context.map(read_encryption_context).unwrap_or_default()
}

/// KMS's own EventBridge event at the end of a waiting period: evidence that the key is
/// deleted, with the event's `id` as its event ID.
fn normalise_kms_deletion_event(r: &CloudTrailRecord<'_>) -> Result<Normalised, RecordError> {
    let event_id =
        r.id.as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(RecordError::Missing("id"))?;
    let time_text = r.time.as_deref().ok_or(RecordError::Missing("time"))?;
    let event_time = Timestamp::parse_rfc3339(time_text)
        .ok_or_else(|| RecordError::BadEventTime(time_text.to_owned()))?;
    check_plausible(event_time, time_text)?;
    let bad = |field, e: &dyn fmt::Display| malformed(KMS_KEY_DELETION_EVENT, field, e);
    let resources: Vec<String> = match r.resources {
        Some(raw) if raw.get() != "null" => {
            serde_json::from_str(raw.get()).map_err(|e| bad("resources", &e))?
        }
        _ => Vec::new(),
    };
    let detail: crate::record::KmsDeletionDetail =
        nested(r.detail).map_err(|e| bad("detail", &e))?;
    let account = r.account.as_deref().unwrap_or_default();
    let region = r.region.as_deref().unwrap_or_default();
    let key = resources
        .iter()
        .find_map(|a| KeyArn::parse(a))
        .or_else(|| {
            detail
                .key_id
                .as_deref()
                .filter(|id| is_key_id(id) && !account.is_empty() && !region.is_empty())
                .and_then(|id| KeyArn::from_parts(region, account, id))
        })
        .ok_or(RecordError::Missing("resources (the deleted key's ARN)"))?;
    let context = EventContext {
        event_id: event_id.to_owned(),
        event_time,
        event_name: KMS_KEY_DELETION_EVENT.to_owned(),
        principal: Principal(KMS_EVENT_SOURCE.to_owned()),
        source_ip: None,
        user_agent: None,
        invoked_by: None,
        error_message: None,
        caller_account: None,
        shared_event_id: None,
        caller_is_account: false,
    };
    Ok(Normalised::Kms {
        event_id: event_id.to_owned(),
        events: vec![KmsEvent::Key(KeyEvent {
            key,
            context,
            kind: KeyEventKind::Deleted {
                custom_key_store_id: None,
                cloudhsm_cluster_id: None,
                backing_keys: Vec::new(),
            },
        })],
    })
}

fn lifecycle_kind(
    event_name: &str,
    event_time: Timestamp,
    request: &RequestParameters,
    response: &ResponseElements,
    additional: AdditionalEventData,
) -> Result<KeyEventKind, (&'static str, String)> {
    Ok(match event_name {
        "CreateKey" => created(request, response, additional),
        "ScheduleKeyDeletion" => deletion_scheduled(event_time, request, response, additional)?,
        "CancelKeyDeletion" => KeyEventKind::DeletionCancelled,
        "DeleteKey" => KeyEventKind::Deleted {
            backing_keys: decode_backing_keys(&additional.backing_keys_deletion_status)
                .map_err(|e| ("additionalEventData.backingKeysDeletionStatus", e))?,
            custom_key_store_id: additional.custom_key_store_id,
            cloudhsm_cluster_id: additional.cluster_id,
        },
        "DisableKey" => KeyEventKind::Disabled,
        "EnableKey" => KeyEventKind::Enabled,
        "ImportKeyMaterial" => KeyEventKind::KeyMaterialImported,
        "ReplicateKey" => KeyEventKind::ReplicaCreated {
            replica_region: request
                .replica_region
                .clone()
                .ok_or(("requestParameters.replicaRegion", "absent".to_owned()))?,
        },
        "UpdatePrimaryRegion" => KeyEventKind::PrimaryRegionUpdated {
            primary_region: request
                .primary_region
                .clone()
                .ok_or(("requestParameters.primaryRegion", "absent".to_owned()))?,
        },
        // KMS's own service event when imported material reaches its expiration (ValidTo):
        // the key is left as DeleteImportedKeyMaterial leaves it, waiting for material.
        "DeleteImportedKeyMaterial" | "DeleteExpiredKeyMaterial" => {
            KeyEventKind::KeyMaterialDeleted
        }
        other => return Err(("eventName", format!("{other} is not a key lifecycle call"))),
    })
}

/// CreateKey: the new key's origin, state, custom key store and multi-Region flag, from its
/// `keyMetadata` (else the request).
fn created(
    request: &RequestParameters,
    response: &ResponseElements,
    additional: AdditionalEventData,
) -> KeyEventKind {
    let meta = response.key_metadata.as_ref();
    let meta_str =
        |f: fn(&crate::record::KeyMetadata) -> &Option<String>| meta.and_then(|m| f(m).clone());
    KeyEventKind::Created {
        origin: meta_str(|m| &m.origin)
            .or_else(|| request.origin.clone())
            .as_deref()
            .map(KeyOrigin::parse)
            .unwrap_or_default(),
        key_state: meta
            .and_then(|m| m.key_state.as_deref())
            .and_then(KeyState::parse),
        custom_key_store_id: meta_str(|m| &m.custom_key_store_id)
            .or_else(|| request.custom_key_store_id.clone()),
        cloudhsm_cluster_id: meta_str(|m| &m.cloud_hsm_cluster_id).or(additional.cluster_id),
        xks_key_id: meta
            .and_then(|m| m.xks_key_configuration.as_ref())
            .and_then(|x| x.id.clone())
            .or_else(|| request.xks_key_id.clone()),
        multi_region: meta
            .and_then(|m| m.multi_region)
            .or(request.multi_region)
            .unwrap_or(false),
        key_usage: meta_str(|m| &m.key_usage)
            .or_else(|| request.key_usage.clone())
            .as_deref()
            .map(KeyUsage::parse),
    }
}

/// ScheduleKeyDeletion: the waiting period (7–30 days) and the deletion date, as reported or
/// computed; none for a multi-Region primary that waits for its replicas.
fn deletion_scheduled(
    event_time: Timestamp,
    request: &RequestParameters,
    response: &ResponseElements,
    additional: AdditionalEventData,
) -> Result<KeyEventKind, (&'static str, String)> {
    let window_days = as_u32(&request.pending_window_in_days)
        .or_else(|| as_u32(&response.pending_window_in_days))
        .unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
    if !PENDING_WINDOW_DAYS.contains(&window_days) {
        return Err((
            "pendingWindowInDays",
            format!("{window_days} is outside the 7 to 30 days KMS accepts"),
        ));
    }
    let reported = match &response.deletion_date {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(Timestamp::parse_deletion_date(s).ok_or((
            "responseElements.deletionDate",
            format!("unreadable date {s:?}"),
        ))?),
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .map(|secs| Timestamp::from_millis((secs * 1000.0) as i64)),
        Some(other) => {
            return Err((
                "responseElements.deletionDate",
                format!("unexpected {other}"),
            ))
        }
    };
    let key_state = response
        .key_state
        .as_deref()
        .map_or(KeyState::PendingDeletion, |s| {
            KeyState::parse(s).unwrap_or_default()
        });
    let waits_for_replicas = key_state == KeyState::PendingReplicaDeletion;
    Ok(KeyEventKind::DeletionScheduled {
        window_days,
        deletion_date: match reported {
            Some(date) => Some(date),
            None if waits_for_replicas => None,
            None => Some(event_time.plus_millis(i64::from(window_days) * DAY_MS)),
        },
        deletion_date_reported: reported.is_some(),
        key_state,
        custom_key_store_id: additional.custom_key_store_id,
        cloudhsm_cluster_id: additional.cluster_id,
    })
}

/// `backingKeysDeletionStatus` is a JSON document inside a string (sometimes inline).
fn decode_backing_keys(v: &Option<serde_json::Value>) -> Result<Vec<BackingKeyStatus>, String> {
    let list: Vec<BackingKeyDeletion> = match v {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => serde_json::from_str(s).map_err(|e| e.to_string())?,
        Some(other) => serde_json::from_value(other.clone()).map_err(|e| e.to_string())?,
    };
    Ok(list
        .into_iter()
        .map(|b| BackingKeyStatus {
            key_handle: b.key_handle,
            backing_key_id: b.backing_key_id,
            deletion_status: b.deletion_status.as_deref().map_or(
                BackingKeyDeletionStatus::Unknown,
                BackingKeyDeletionStatus::parse,
            ),
        })
        .collect())
}

/// The keys a record is about: KMS key ARNs in `resources[]`, else `responseElements.keyId`,
/// else `requestParameters.keyId` when it is an ARN, else a key ID with the record's account
/// and Region.
fn key_arns(
    r: &CloudTrailRecord<'_>,
    request: &RequestParameters,
    response: &ResponseElements,
    account: &str,
    region: &str,
) -> Result<Vec<KeyArn>, String> {
    let resources: Vec<Resource<'_>> = match r.resources {
        Some(raw) if raw.get() != "null" => {
            serde_json::from_str(raw.get()).map_err(|e| e.to_string())?
        }
        _ => Vec::new(),
    };
    let mut keys: Vec<KeyArn> = Vec::with_capacity(resources.len());
    for res in &resources {
        let declared_key = match res.resource_type.as_deref() {
            Some("AWS::KMS::Key") => true,
            None => false,
            Some(_) => continue,
        };
        let Some(arn) = res.arn.as_deref() else {
            continue;
        };
        match KeyArn::parse(arn) {
            Some(key) => keys.push(key),
            // A resource that says it is a KMS key but whose ARN is not one is a malformed
            // (or crafted) record: rejected with the reason, not guessed around.
            None if declared_key => {
                let shown: String = arn.chars().take(200).collect();
                return Err(format!("{shown:?} is not a valid KMS key ARN"));
            }
            None => {}
        }
    }
    keys.sort();
    keys.dedup();
    if keys.len() > MAX_KEYS_PER_RECORD {
        return Err(format!(
            "names {} KMS keys; a KMS call names at most {MAX_KEYS_PER_RECORD}",
            keys.len()
        ));
    }
    if !keys.is_empty() {
        return Ok(keys);
    }
    // One slot per key the call names: the key (or ReEncrypt's destination), and
    // ReEncrypt's source. In each, an ARN from the response beats one from the request,
    // which beats a bare key ID placed in the record's account and Region.
    let resolve = |candidates: &[Option<&str>]| {
        candidates
            .iter()
            .flatten()
            .find_map(|c| KeyArn::parse(c))
            .or_else(|| {
                candidates
                    .iter()
                    .flatten()
                    .find(|id| is_key_id(id) && !account.is_empty() && !region.is_empty())
                    .and_then(|id| KeyArn::from_parts(region, account, id))
            })
    };
    let key = resolve(&[
        response.key_id.as_deref(),
        response
            .key_metadata
            .as_ref()
            .and_then(|m| m.arn.as_deref()),
        request.key_id.as_deref(),
        request.destination_key_id.as_deref(),
    ]);
    let source = resolve(&[
        response.source_key_id.as_deref(),
        request.source_key_id.as_deref(),
    ]);
    let mut keys: Vec<KeyArn> = key.into_iter().chain(source).collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}
