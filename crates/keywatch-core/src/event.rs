//! Normalisation: one CloudTrail record in, the KMS events it means out.

use crate::record::{
    nested, AdditionalEventData, BackingKeyDeletion, CloudTrailRecord, RequestParameters, Resource,
    ResponseElements, UserIdentity,
};
use crate::time::{Timestamp, DAY_MS};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `eventSource` of every KMS record.
pub const KMS_EVENT_SOURCE: &str = "kms.amazonaws.com";
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
    /// Parses `arn:<partition>:kms:<region>:<account>:key/<key-id>`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        let (arn, _partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let key_id = resource.strip_prefix("key/")?;
        (arn == "arn"
            && service == "kms"
            && !region.is_empty()
            && !account.is_empty()
            && !key_id.is_empty())
        .then(|| KeyArn(s.to_owned()))
    }

    /// Builds the ARN of a key ID in an account and Region (partition `aws`).
    pub fn from_parts(region: &str, account: &str, key_id: &str) -> Self {
        KeyArn(format!("arn:aws:kms:{region}:{account}:key/{key_id}"))
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
        f.write_str(&self.0)
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
        f.write_str(&self.0)
    }
}

impl Principal {
    /// The role ARN for AssumedRole, the user ARN for IAMUser, the service for AWSService,
    /// the account root for Root.
    fn from_identity(id: &UserIdentity) -> Self {
        let non_empty =
            |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let issuer = id
            .session_context
            .as_ref()
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|i| non_empty(&i.arn));
        let account = non_empty(&id.account_id);
        let name = match id.identity_type.as_deref() {
            Some("AssumedRole") | Some("FederatedUser") => issuer.or_else(|| non_empty(&id.arn)),
            Some("IAMUser") => non_empty(&id.arn),
            Some("Root") => non_empty(&id.arn)
                .or_else(|| account.as_ref().map(|a| format!("arn:aws:iam::{a}:root"))),
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

/// The KMS operations that use a key's material.
pub const USAGE_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "GetPublicKey",
];

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

/// A backing key's deletion status reported by DeleteKey in a CloudHSM key store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingKeyStatus {
    /// `keyHandle` in the cluster.
    pub key_handle: Option<String>,
    /// `backingKeyId`.
    pub backing_key_id: Option<String>,
    /// `SUCCESS`, `FAILURE`, …
    pub deletion_status: String,
}

/// What a KMS record means for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyEventKind {
    /// CreateKey.
    Created {
        /// `AWS_KMS`, `EXTERNAL`, `AWS_CLOUDHSM`, `EXTERNAL_KEY_STORE`.
        origin: String,
        /// The key state in the response (`Enabled`, `PendingImport`…).
        key_state: Option<String>,
        /// The custom key store, if any.
        custom_key_store_id: Option<String>,
        /// The CloudHSM cluster of that key store.
        cloudhsm_cluster_id: Option<String>,
        /// The external key's ID in an XKS key store.
        xks_key_id: Option<String>,
        /// A multi-Region key.
        multi_region: bool,
    },
    /// ScheduleKeyDeletion.
    DeletionScheduled {
        /// `pendingWindowInDays` (default 30).
        window_days: u32,
        /// When KMS will delete the key.
        deletion_date: Timestamp,
        /// Whether `deletion_date` was read from the record rather than computed.
        deletion_date_reported: bool,
        /// `PendingDeletion`, or `PendingReplicaDeletion` for a multi-Region primary.
        key_state: String,
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
    /// DeleteImportedKeyMaterial.
    KeyMaterialDeleted,
    /// A use of the key's material.
    Used {
        /// The operation (`Decrypt`, `Sign`, …).
        operation: String,
        /// How it ended.
        #[serde(flatten)]
        outcome: UsageOutcome,
        /// The custom key store the call reports, if any.
        custom_key_store_id: Option<String>,
        /// The external key the call reports (XKS), if any.
        #[serde(default)]
        xks_key_id: Option<String>,
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

impl KmsEvent {
    /// The context of either kind.
    pub fn context(&self) -> &EventContext {
        match self {
            KmsEvent::Key(e) => &e.context,
            KmsEvent::KeyStore(e) => &e.context,
        }
    }

    /// The fold order: (eventTime, eventID).
    pub fn order_key(&self) -> (Timestamp, &str) {
        let c = self.context();
        (c.event_time, &c.event_id)
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
pub fn is_pending_deletion_message(message: &str) -> bool {
    message.contains("is pending deletion") || message.contains("key state is PendingDeletion")
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

/// [`normalise`] on an already-decoded record.
pub fn normalise_record(r: &CloudTrailRecord<'_>) -> Result<Normalised, RecordError> {
    let event_id = r
        .event_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(RecordError::Missing("eventID"))?;
    let event_time_text = r
        .event_time
        .as_deref()
        .ok_or(RecordError::Missing("eventTime"))?;
    let event_time = Timestamp::parse_rfc3339(event_time_text)
        .ok_or_else(|| RecordError::BadEventTime(event_time_text.to_owned()))?;
    if r.event_source.as_deref() != Some(KMS_EVENT_SOURCE) {
        return Ok(Normalised::NotKms);
    }
    let untracked = || {
        Ok(Normalised::KmsUntracked {
            event_id: event_id.to_owned(),
        })
    };
    let event_name = r
        .event_name
        .as_deref()
        .ok_or(RecordError::Missing("eventName"))?;
    let is_usage = USAGE_OPERATIONS.contains(&event_name);
    let is_key_store = matches!(
        event_name,
        "ConnectCustomKeyStore"
            | "DisconnectCustomKeyStore"
            | "CreateCustomKeyStore"
            | "DeleteCustomKeyStore"
    );
    let is_lifecycle = matches!(
        event_name,
        "CreateKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "DeleteKey"
            | "DisableKey"
            | "EnableKey"
            | "ImportKeyMaterial"
            | "DeleteImportedKeyMaterial"
    );
    if !(is_usage || is_key_store || is_lifecycle) {
        return untracked();
    }

    let identity: UserIdentity =
        nested(r.user_identity).map_err(|e| malformed(event_name, "userIdentity", e))?;
    let request: RequestParameters =
        nested(r.request_parameters).map_err(|e| malformed(event_name, "requestParameters", e))?;
    let response: ResponseElements =
        nested(r.response_elements).map_err(|e| malformed(event_name, "responseElements", e))?;
    let additional: AdditionalEventData = nested(r.additional_event_data)
        .map_err(|e| malformed(event_name, "additionalEventData", e))?;
    let error_code = r.error_code.as_deref().filter(|s| !s.is_empty());
    let context = EventContext {
        event_id: event_id.to_owned(),
        event_time,
        event_name: event_name.to_owned(),
        principal: Principal::from_identity(&identity),
        source_ip: r.source_ip_address.as_deref().map(str::to_owned),
        user_agent: r.user_agent.as_deref().map(str::to_owned),
        invoked_by: identity.invoked_by.clone(),
        error_message: r.error_message.as_deref().map(str::to_owned),
    };
    let account = r
        .recipient_account_id
        .as_deref()
        .or(identity.account_id.as_deref())
        .unwrap_or_default();
    let region = r.aws_region.as_deref().unwrap_or_default();

    if is_key_store {
        let Some(id) = request
            .custom_key_store_id
            .or(additional.custom_key_store_id)
            .or(response.custom_key_store_id)
        else {
            return untracked();
        };
        let change = match event_name {
            "ConnectCustomKeyStore" => KeyStoreChange::Connected,
            "DisconnectCustomKeyStore" => KeyStoreChange::Disconnected,
            "CreateCustomKeyStore" => KeyStoreChange::Created,
            _ => KeyStoreChange::Deleted,
        };
        if error_code.is_some() {
            return untracked();
        }
        return Ok(Normalised::Kms {
            event_id: event_id.to_owned(),
            events: vec![KmsEvent::KeyStore(KeyStoreEvent {
                key_store: KeyStoreRef {
                    account: account.to_owned(),
                    region: region.to_owned(),
                    custom_key_store_id: id,
                },
                context,
                change,
                cloudhsm_cluster_id: additional.cluster_id,
            })],
        });
    }

    let keys = key_arns(r, &request, &response, account, region)
        .map_err(|e| malformed(event_name, "resources", e))?;
    if keys.is_empty() {
        return untracked();
    }

    let kind = if is_usage {
        let outcome = match error_code {
            None => UsageOutcome::Succeeded,
            Some(_)
                if context
                    .error_message
                    .as_deref()
                    .is_some_and(is_pending_deletion_message) =>
            {
                UsageOutcome::RejectedPendingDeletion
            }
            Some(code) => UsageOutcome::Failed {
                error_code: code.to_owned(),
            },
        };
        KeyEventKind::Used {
            operation: event_name.to_owned(),
            outcome,
            custom_key_store_id: additional.custom_key_store_id.clone(),
            xks_key_id: additional.xks_key_id.clone(),
        }
    } else if let Some(code) = error_code {
        KeyEventKind::CallFailed {
            error_code: code.to_owned(),
        }
    } else {
        lifecycle_kind(event_name, event_time, &request, response, additional)
            .map_err(|(field, reason)| malformed(event_name, field, reason))?
    };
    let events = keys
        .into_iter()
        .map(|key| {
            KmsEvent::Key(KeyEvent {
                key,
                context: context.clone(),
                kind: kind.clone(),
            })
        })
        .collect();
    Ok(Normalised::Kms {
        event_id: event_id.to_owned(),
        events,
    })
}

fn lifecycle_kind(
    event_name: &str,
    event_time: Timestamp,
    request: &RequestParameters,
    response: ResponseElements,
    additional: AdditionalEventData,
) -> Result<KeyEventKind, (&'static str, String)> {
    Ok(match event_name {
        "CreateKey" => {
            let meta = response.key_metadata.unwrap_or_default();
            KeyEventKind::Created {
                origin: meta
                    .origin
                    .or_else(|| request.origin.clone())
                    .unwrap_or_else(|| "AWS_KMS".to_owned()),
                key_state: meta.key_state,
                custom_key_store_id: meta
                    .custom_key_store_id
                    .or_else(|| request.custom_key_store_id.clone()),
                cloudhsm_cluster_id: meta.cloud_hsm_cluster_id.or(additional.cluster_id),
                xks_key_id: meta
                    .xks_key_configuration
                    .and_then(|x| x.id)
                    .or_else(|| request.xks_key_id.clone()),
                multi_region: meta.multi_region.or(request.multi_region).unwrap_or(false),
            }
        }
        "ScheduleKeyDeletion" => {
            let window_days = as_u32(&request.pending_window_in_days)
                .or_else(|| as_u32(&response.pending_window_in_days))
                .unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
            let reported = match &response.deletion_date {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => {
                    Some(Timestamp::parse_deletion_date(s).ok_or((
                        "responseElements.deletionDate",
                        format!("unreadable date {s:?}"),
                    ))?)
                }
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
            KeyEventKind::DeletionScheduled {
                window_days,
                deletion_date: reported
                    .unwrap_or_else(|| event_time.plus_millis(i64::from(window_days) * DAY_MS)),
                deletion_date_reported: reported.is_some(),
                key_state: response
                    .key_state
                    .unwrap_or_else(|| "PendingDeletion".to_owned()),
                custom_key_store_id: additional.custom_key_store_id,
                cloudhsm_cluster_id: additional.cluster_id,
            }
        }
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
        _ => KeyEventKind::KeyMaterialDeleted,
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
            deletion_status: b.deletion_status.unwrap_or_else(|| "UNKNOWN".to_owned()),
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
) -> Result<Vec<KeyArn>, serde_json::Error> {
    let resources: Vec<Resource> = match r.resources {
        Some(raw) if raw.get() != "null" => serde_json::from_str(raw.get())?,
        _ => Vec::new(),
    };
    let mut keys: Vec<KeyArn> = resources
        .iter()
        .filter(|res| {
            res.resource_type
                .as_deref()
                .is_none_or(|t| t == "AWS::KMS::Key")
        })
        .filter_map(|res| res.arn.as_deref().and_then(KeyArn::parse))
        .collect();
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        return Ok(keys);
    }
    let from_response = response
        .key_id
        .as_deref()
        .or(response
            .key_metadata
            .as_ref()
            .and_then(|m| m.arn.as_deref()))
        .and_then(KeyArn::parse);
    let from_request = request.key_id.as_deref().and_then(KeyArn::parse);
    let from_id = request
        .key_id
        .as_deref()
        .filter(|id| is_key_id(id) && !account.is_empty() && !region.is_empty())
        .map(|id| KeyArn::from_parts(region, account, id));
    Ok(from_response
        .or(from_request)
        .or(from_id)
        .into_iter()
        .collect())
}
