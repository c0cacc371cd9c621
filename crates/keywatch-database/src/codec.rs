//! How the databases keep CloudTrail records, timelines and alerts, compressed. The first
//! byte names the format, so that stored data stays readable when a better one is added:
//!
//! - 4, a text (a timeline's or an alert's JSON): zstd primed with [`DICTIONARY_V2`];
//! - 6, a segment, several records of one stream compressed together (records of a key
//!   repeat most of their text) in columns: their eventTimes, their eventIDs (a UUID as its
//!   16 bytes), then each record as it is logged ([`LoggedRecord`]: a CloudTrail record's
//!   JSON, or a use of a key as its event), with zstd primed with [`DICTIONARY_V2`];
//! - written by earlier versions and still read: 1, a text deflated (primed with
//!   [`DICTIONARY_V1`]); 2, a segment deflated alike; 5, a segment laid out as 2 with
//!   zstd (until 3 December 2026); 0 and 3, a text or segment kept as it is, should
//!   compression ever fail; 7, a segment laid out as 6, kept as it is.
//!
//! zstd replaced deflate on 2 December 2026: on the benchmark's million records it keeps
//! segments in 60 % of the bytes deflate took and alerts in half (the alerts' vocabulary in
//! the dictionary is what shrinks such short texts), for less CPU.

use crate::DatabaseError;
use flate2::{Decompress, FlushDecompress, Status};
use keywatch_core::event::{EventContext, UsageOutcome};
use keywatch_core::protects::{ContextResources, ProtectedResource, ResourceType};
use keywatch_core::{
    KeyArn, KeyEvent, KeyEventKind, KmsEvent, KmsOperation, Normalised, Principal, Timestamp,
};
use std::cell::RefCell;
use std::sync::LazyLock;

/// Format 1: raw deflate (level 1) primed with [`DICTIONARY_V1`] (read, no longer written).
const FORMAT_DEFLATE_DICT_V1: u8 = 1;

/// Format 4: zstd primed with [`DICTIONARY_V2`], one text.
const FORMAT_ZSTD_TEXT_V2: u8 = 4;

/// zstd's fastest regular level: on records, timelines and alerts, levels up to 3 kept
/// only 1–2 % fewer bytes for two to three times the CPU.
const ZSTD_LEVEL: i32 = 1;

/// The most scratch space a thread keeps between compressions (a segment's worth, about
/// 1 MiB of records, needs a little more; a timeline of several MiB gives its space back).
const SCRATCH_KEPT: usize = 2 << 20;

/// The most a stored text or segment may inflate to (a segment holds at most about 1 MiB of
/// records, a timeline a few MiB): a larger claim is damage, not something to allocate.
const MAX_DECODED: u64 = 256 << 20;

/// Text common to KMS CloudTrail records, most frequent last (deflate reaches back 32 KiB,
/// and nearer matches code shorter). Stored records depend on it: never change it; add a
/// format with a new dictionary instead.
const DICTIONARY_V1: &[u8] = br#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::","accountId":"","accessKeyId":"AKIA","userName":"","invokedBy":"AWS Internal"},"errorCode":"KMSInvalidStateException","errorMessage":" is pending deletion.","additionalEventData":{"customKeyStoreId":"cks-","clusterId":"cluster-","backingKeys":"[{\"keyHandle\":\"","backingKeyId\":\""}]"},"eventType":"AwsServiceEvent","eventName":"ScheduleKeyDeletion","requestParameters":{"keyId":"","pendingWindowInDays":30},"responseElements":{"keyId":"arn:aws:kms:","keyState":"PendingDeletion","deletionDate":""},"GenerateDataKey","keySpec":"AES_256","Encrypt","Sign","Decrypt","encryptionContext":{"aws:s3:arn":"arn:aws:s3:::"},"userIdentity":{"type":"AssumedRole","principalId":"AROA","arn":"arn:aws:sts::","assumed-role/","accountId":"","accessKeyId":"ASIA","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA","arn":"arn:aws:iam::","role/","accountId":"","userName":""},"webIdFederationData":{},"attributes":{"creationDate":"","mfaAuthenticated":"false"}}},"eventTime":"","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"","userAgent":"aws-sdk-java/","requestParameters":{"keyId":"arn:aws:kms:","encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{}},"responseElements":null,"requestID":"","eventID":"","readOnly":true,"resources":[{"accountId":"","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"","eventCategory":"Management"}"#;

/// Text common to the timelines' and alerts' JSON (their field names, kinds and the
/// phrases of summaries), most frequent last; [`DICTIONARY_V2`] is it after
/// [`DICTIONARY_V1`]. Stored data depends on it: never change it; add a format instead.
const DICTIONARY_V2_TAIL: &[u8] = br#"{"format":1,"key_arn":"arn:aws:kms:us-east-1:","state":"Enabled","state_before_unavailable":null,"deletion_date":null,"origin":"AWS_KMS","multi_region":false,"custom_key_store":{"custom_key_store_id":"cks-","key_store_type":"AWS_CLOUDHSM","cloudhsm_cluster_id":"cluster-","xks_key_id":null,"connected":true},"entries":[{"event_id":"","event_time":"","event_name":"ScheduleKeyDeletion","principal":"arn:aws:iam::","detail":{"entry":"lifecycle","type":"deletion_scheduled","window_days":30,"deletion_date":"","deletion_date_reported":true,"key_state":"PendingDeletion","custom_key_store_id":null,"cloudhsm_cluster_id":null}}],"blast_radius":{"resources":[{"resource_type":"s3_bucket","id":"","count":1,"first_seen":"","last_seen":"","principals":["arn:aws:iam::"]}]},"schedules":[{"event_id":"","scheduled_at":"","scheduled_by":"arn:aws:iam::","window_days":30,"deletion_date":"","used_in_prior_30_days":true,"last_use_before":"","usage_before":[],"uses_during_window":0,"failed_attempts_during_window":0,"ended":null}],"pending_use_buckets":[{"schedule":"","principal":"arn:aws:iam::","minute":"","count":1,"first":{"operation":"Decrypt","rejected":true,"event_id":"","event_time":"","event_name":"Decrypt","principal":"arn:aws:iam::","source_ip":"","user_agent":"","invoked_by":null,"error_message":null,"caller_account":""}}],"pending_uses":0,"pending_use_entries_dropped":0,"orphaned_key_material":null,"deleted_by_event":null,"event_count":0,"last_applied":["",""],"usage":[{"principal":"arn:aws:iam::","operation":"Decrypt","successes":0,"failures":0,"rejected_pending_deletion":0,"last_used":"","first_seen":"","last_seen":"T00:00:00Z"}]}{"schema_version":1,"alert_id":"","kind":"deletion_scheduled","severity":"high","key_arn":"arn:aws:kms:us-east-1:","account":"","region":"us-east-1","event_id":"","event_time":"","principal":"arn:aws:iam::","summary":" scheduled deletion of KMS key  in 30 days, on ; used in the 30 days before (last use ); protects ","deletion_date":"","window_days":30,"scheduled_by":"arn:aws:iam::","usage":[{"principal":"arn:aws:iam::","uses":1,"operations":["Decrypt","Encrypt","GenerateDataKey","Sign"],"last_seen":""}],"last_use":"","verdict":"","custom_key_store_id":"","remediation":"","kind":"key_deleted","severity":"info","summary":"KMS deleted key ","kind":"deletion_cancelled","kind":"orphaned_key_material","kind":"deletion_imminent","kind":"deletion_overdue","kind":"key_store_disconnected_pending_deletion","failed_attempts":0,"invoked_by":"","caller_account":""}{"schema_version":1,"alert_id":"","kind":"pending_deletion_key_used","severity":"critical","key_arn":"arn:aws:kms:us-east-1:","account":"","region":"us-east-1","event_id":"","event_time":"","principal":"arn:aws:iam::","summary":" used Decrypt on KMS key  pending deletion (deleted on T00:00:00Z): 1 use(s) in this window,  so far; protects  S3 buckets (); to keep it: aws kms cancel-key-deletion --key-id arn:aws:kms:us-east-1: --region us-east-1","operation":"Decrypt","source_ip":"10.0.","user_agent":"aws-sdk-java/","rejected":false,"uses_in_window":1,"uses_so_far":1,"deletion_date":"T00:00:00Z","scheduled_by":"arn:aws:iam::","protects":[{"resource_type":"s3_bucket","count":1,"examples":["",""],"last_seen":""}],"rescue_command":"aws kms cancel-key-deletion --key-id arn:aws:kms:us-east-1: --region us-east-1","timeline_command":"keywatch timeline arn:aws:kms:us-east-1:"}"#;

/// [`DICTIONARY_V1`] then [`DICTIONARY_V2_TAIL`]: what formats 4 and 5 are primed with.
static DICTIONARY_V2: LazyLock<Vec<u8>> =
    LazyLock::new(|| [DICTIONARY_V1, DICTIONARY_V2_TAIL].concat());

thread_local! {
    /// This thread's compressor (primed with [`DICTIONARY_V2`]) and its scratch space.
    static COMPRESS: RefCell<(Option<zstd::bulk::Compressor<'static>>, Vec<u8>)> = RefCell::new((
        zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, &DICTIONARY_V2)
            .and_then(|mut c| {
                // No dictionary ID in each frame: the format byte says which dictionary.
                c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
                Ok(c)
            })
            .ok(),
        Vec::new(),
    ));
    static DECOMPRESS: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::with_dictionary(&DICTIONARY_V2).ok());
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// This thread's space for the JSON of a timeline or alert being encoded.
    static JSON_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn corrupt(reason: impl ToString) -> DatabaseError {
    DatabaseError::Corrupt {
        what: "record",
        reason: reason.to_string(),
    }
}

/// Encodes a text (a record's, a timeline's or an alert's JSON) for a database.
pub fn encode_record(json: &str) -> Vec<u8> {
    encode_bytes(json.as_bytes())
}

/// [`encode_record`] of a text's bytes.
fn encode_bytes(json: &[u8]) -> Vec<u8> {
    compress(FORMAT_ZSTD_TEXT_V2, json).unwrap_or_else(|| {
        // Compressing a slice into memory has no failure mode we know of; should one appear,
        // keep the text as it is (format 0) rather than lose it.
        let mut out = Vec::with_capacity(json.len() + 1);
        out.push(0);
        out.extend_from_slice(json);
        out
    })
}

/// `input` compressed with zstd primed with [`DICTIONARY_V2`], after the byte `format`.
fn compress(format: u8, input: &[u8]) -> Option<Vec<u8>> {
    COMPRESS.with(|c| {
        let (c, scratch) = &mut *c.borrow_mut();
        let c = c.as_mut()?;
        // Compressed into this thread's scratch space (kept between calls, never zeroed),
        // then copied out at its size: a batch holds many of these, with no spare capacity.
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(input.len()));
        c.compress_to_buffer(input, scratch).ok()?;
        let mut out = Vec::with_capacity(1 + scratch.len());
        out.push(format);
        out.extend_from_slice(scratch);
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        Some(out)
    })
}

/// Reverses [`compress`] (`packed` without its format byte).
fn decompress(packed: &[u8]) -> Result<Vec<u8>, DatabaseError> {
    let size = match zstd::zstd_safe::get_frame_content_size(packed) {
        Ok(Some(size)) if size <= MAX_DECODED => size as usize,
        Ok(Some(size)) => return Err(corrupt(format!("claims {size} bytes decompressed"))),
        Ok(None) | Err(_) => return Err(corrupt("not a zstd frame with its size")),
    };
    DECOMPRESS.with(|d| {
        let mut d = d.borrow_mut();
        let d = d
            .as_mut()
            .ok_or_else(|| corrupt("zstd could not be set up"))?;
        let mut out = Vec::with_capacity(size);
        d.decompress_to_buffer(packed, &mut out).map_err(corrupt)?;
        if out.len() != size {
            return Err(corrupt("zstd frame shorter than it claims"));
        }
        Ok(out)
    })
}

/// A value's JSON as the databases keep timelines and alerts: compressed with
/// [`encode_record`]; `what` names it in the error.
pub fn encode_json(
    value: &impl serde::Serialize,
    what: &'static str,
) -> Result<Vec<u8>, DatabaseError> {
    JSON_SCRATCH.with(|scratch| {
        // Written into this thread's scratch space, kept between calls: a timeline's JSON
        // (tens of KiB) would otherwise grow a new string by doubling, copying it each time.
        let json = &mut *scratch.borrow_mut();
        json.clear();
        let written =
            serde_json::to_writer(&mut *json, value).map_err(|e| DatabaseError::Corrupt {
                what,
                reason: e.to_string(),
            });
        let encoded = written.map(|()| encode_bytes(json));
        if json.capacity() > SCRATCH_KEPT {
            *json = Vec::new();
        }
        encoded
    })
}

/// Reads what [`encode_json`] made.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &'static str,
) -> Result<T, DatabaseError> {
    parse_json(&decode_record(body)?, what)
}

/// A value read from its JSON text (as [`decode_json`] inflates it, or as earlier versions
/// stored it plain); `what` names it in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &'static str,
) -> Result<T, DatabaseError> {
    serde_json::from_str(json).map_err(|e| DatabaseError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// Decodes what [`encode_record`] made.
pub fn decode_record(bytes: &[u8]) -> Result<String, DatabaseError> {
    match bytes.split_first() {
        Some((0, text)) => String::from_utf8(text.to_vec()).map_err(corrupt),
        Some((&FORMAT_ZSTD_TEXT_V2, packed)) => {
            String::from_utf8(decompress(packed)?).map_err(corrupt)
        }
        Some((&FORMAT_DEFLATE_DICT_V1, packed)) => {
            String::from_utf8(inflate(packed)?).map_err(corrupt)
        }
        Some((format, _)) => Err(corrupt(format!("unknown record format {format}"))),
        None => Err(corrupt("empty")),
    }
}

/// Reads what earlier versions deflated (formats 1 and 2).
fn inflate(packed: &[u8]) -> Result<Vec<u8>, DatabaseError> {
    INFLATE.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        d.set_dictionary(DICTIONARY_V1).map_err(corrupt)?;
        let mut out = Vec::with_capacity(packed.len() * 5);
        let mut input = packed;
        loop {
            out.reserve(packed.len() * 2 + 256);
            let before = d.total_in();
            match d
                .decompress_vec(input, &mut out, FlushDecompress::Finish)
                .map_err(corrupt)?
            {
                Status::StreamEnd => return Ok(out),
                _ if d.total_in() == before && out.len() < out.capacity() => {
                    return Err(corrupt("truncated deflate stream"))
                }
                _ => input = &input[(d.total_in() - before) as usize..],
            }
        }
    })
}

/// A CloudTrail eventID in its usual form, a UUID in lower-case hex, as its 16 bytes: how the
/// databases keep the eventIDs they hold (any other eventID is kept as its text).
pub fn event_id_uuid(event_id: &str) -> Option<[u8; 16]> {
    let b = event_id.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    hex_bytes(b.iter().copied().filter(|&c| c != b'-'))
}

/// An alert's id in keywatch's form, 32 lower-case hex digits, as its 16 bytes: how the
/// databases and the projector's cache keep the ids they hold (any other id as its text).
pub fn alert_id_bytes(alert_id: &str) -> Option<[u8; 16]> {
    let b = alert_id.as_bytes();
    if b.len() != 32 {
        return None;
    }
    hex_bytes(b.iter().copied())
}

/// 16 bytes from exactly 32 lower-case hex digits.
fn hex_bytes(mut digits: impl Iterator<Item = u8>) -> Option<[u8; 16]> {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for byte in &mut out {
        *byte = (hex(digits.next()?)? << 4) | hex(digits.next()?)?;
    }
    digits.next().is_none().then_some(out)
}

/// Format 2: a segment, several records of one stream deflated together (primed with
/// [`DICTIONARY_V1`]), each as its eventTime (ms, 8 bytes LE), its eventID (length in 2
/// bytes LE, then UTF-8) and its JSON (length in 4 bytes LE, then UTF-8). Read, no longer
/// written.
const FORMAT_SEGMENT_V1: u8 = 2;

/// Format 5: a segment laid out as format 2's, compressed with zstd primed with
/// [`DICTIONARY_V2`]. Read, no longer written (since 3 December 2026).
const FORMAT_ZSTD_SEGMENT_V2: u8 = 5;

/// Format 6: a segment in columns ([`lay_out_columns`]), compressed with zstd primed with
/// [`DICTIONARY_V2`]. Each column repeats itself (times close together, records of a key
/// alike), and the uses it keeps as events hold none of a record's request IDs, session
/// context or resources: on the benchmark's million records, the event log takes 57 % of
/// the bytes format 5 took (18.4 MiB against 32.1), for 5 % fewer instructions in all.
const FORMAT_ZSTD_SEGMENT_V3: u8 = 6;

/// A segment laid out as format 6, kept as it is (should compression ever fail).
const FORMAT_SEGMENT_COLUMNS_PLAIN: u8 = 7;

/// How the event log keeps a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoggedRecord {
    /// The CloudTrail record's JSON, as it came: every record but a plain use.
    CloudTrail(String),
    /// A use of one key that KMS did not reject as pending deletion
    /// ([`LoggedRecord::use_of`]), kept as its event: all a fold ever reads of the record, in
    /// a fraction of its bytes. Usage is most of KMS's records; lifecycle records and the
    /// uses rejected while a key waited for deletion stay whole, as evidence.
    Use(Box<KeyEvent>),
}

impl LoggedRecord {
    /// The event the log keeps instead of a record's JSON, when its events are one use of
    /// one key that KMS did not reject as pending deletion.
    pub fn use_of(events: &[KmsEvent]) -> Option<&KeyEvent> {
        match events {
            [KmsEvent::Key(
                k @ KeyEvent {
                    kind: KeyEventKind::Used { outcome, .. },
                    ..
                },
            )] if *outcome != UsageOutcome::RejectedPendingDeletion => Some(k),
            _ => None,
        }
    }

    /// The record's events, as a fold consumes them: a CloudTrail record normalised again
    /// (none if it is not a tracked KMS record), a use as it was kept.
    pub fn into_events(self) -> Result<Vec<KmsEvent>, keywatch_core::RecordError> {
        match self {
            LoggedRecord::CloudTrail(json) => match keywatch_core::normalise(&json)? {
                Normalised::Kms { events, .. } => Ok(events),
                _ => Ok(Vec::new()),
            },
            LoggedRecord::Use(e) => Ok(vec![KmsEvent::Key(*e)]),
        }
    }
}

/// A record as a segment holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// `eventTime`.
    pub event_time: Timestamp,
    /// `eventID`.
    pub event_id: String,
    /// The record, as the log keeps it.
    pub record: LoggedRecord,
}

/// A record to put in a segment: (eventTime, eventID, its JSON as it came, the use the log
/// keeps instead when it is one: [`LoggedRecord::use_of`]).
pub type EntryToLog<'a> = (Timestamp, &'a str, &'a str, Option<&'a KeyEvent>);

/// Encodes records for one segment of the event log.
pub fn encode_segment(entries: &[SegmentEntry]) -> Result<Vec<u8>, DatabaseError> {
    encode_segment_of(entries.iter().map(|e| match &e.record {
        LoggedRecord::CloudTrail(json) => (e.event_time, e.event_id.as_str(), json.as_str(), None),
        LoggedRecord::Use(k) => (e.event_time, e.event_id.as_str(), "", Some(&**k)),
    }))
}

/// Encodes records for one segment of the event log: [`encode_segment`] without owning
/// them.
pub fn encode_segment_of<'a>(
    entries: impl IntoIterator<Item = EntryToLog<'a>>,
) -> Result<Vec<u8>, DatabaseError> {
    let raw = lay_out_columns(entries)?;
    Ok(compress(FORMAT_ZSTD_SEGMENT_V3, &raw).unwrap_or_else(|| {
        // As for a record: no known failure mode; keep it uncompressed rather than lose it.
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(FORMAT_SEGMENT_COLUMNS_PLAIN);
        out.extend_from_slice(&raw);
        out
    }))
}

/// Writes a use as format 6 keeps it (tag [`LOGGED_USE`]): its event's fields in a fixed
/// order, without its eventID and eventTime (columns of their own). A text is its length
/// (LEB128) and UTF-8; an optional text is its length plus one, 0 when absent; a list is its
/// length, then its items. Every field is named in a pattern here, so that a field added to
/// the event fails to compile until it is kept too. (JSON took a tenth of replay's CPU.)
fn write_use(e: &KeyEvent, out: &mut Vec<u8>) -> Result<(), DatabaseError> {
    let KeyEvent { key, context, kind } = e;
    let EventContext {
        event_id: _,
        event_time: _,
        event_name,
        principal,
        source_ip,
        user_agent,
        invoked_by,
        error_message,
        caller_account,
        shared_event_id,
        caller_is_account,
    } = context;
    let KeyEventKind::Used {
        operation,
        outcome,
        custom_key_store_id,
        xks_key_id,
        protects,
    } = kind
    else {
        return Err(DatabaseError::Corrupt {
            what: "use",
            reason: format!(
                "{}: a use must be kept whole, not as its event",
                e.context.event_id
            ),
        });
    };
    let ContextResources {
        resources,
        other_keys,
    } = protects;
    write_text(out, key.as_str());
    write_text(out, event_name);
    write_text(out, &principal.0);
    for field in [
        source_ip,
        user_agent,
        invoked_by,
        error_message,
        caller_account,
        shared_event_id,
    ] {
        write_optional_text(out, field.as_deref());
    }
    out.push(u8::from(*caller_is_account));
    write_text(out, operation.as_str());
    match outcome {
        UsageOutcome::Succeeded => out.push(OUTCOME_SUCCEEDED),
        UsageOutcome::RejectedPendingDeletion => out.push(OUTCOME_REJECTED_PENDING_DELETION),
        UsageOutcome::Failed { error_code } => {
            out.push(OUTCOME_FAILED);
            write_text(out, error_code);
        }
    }
    write_optional_text(out, custom_key_store_id.as_deref());
    write_optional_text(out, xks_key_id.as_deref());
    write_varint(out, resources.len() as u64);
    for ProtectedResource { resource_type, id } in resources {
        out.push(resource_type_code(*resource_type));
        write_text(out, id);
    }
    write_varint(out, other_keys.len() as u64);
    for k in other_keys {
        write_text(out, k);
    }
    Ok(())
}

/// Reverses [`write_use`].
///
/// `last_key` is the key of the segment's use read before: a stream's uses are of one key, and
/// one read already is not parsed again.
fn read_use(
    bytes: &[u8],
    event_time: Timestamp,
    event_id: &str,
    last_key: &mut Option<KeyArn>,
) -> Result<KeyEvent, DatabaseError> {
    let mut r = Fields(bytes);
    let key = r.key(last_key)?;
    let event_name = r.text()?;
    let principal = Principal(r.text()?);
    let mut optional = || r.optional_text();
    let (source_ip, user_agent, invoked_by) = (optional()?, optional()?, optional()?);
    let (error_message, caller_account, shared_event_id) = (optional()?, optional()?, optional()?);
    let caller_is_account = match r.byte()? {
        0 => false,
        1 => true,
        other => return Err(corrupt(format!("caller_is_account {other}"))),
    };
    let operation = r.text()?;
    let operation = KmsOperation::parse(&operation).unwrap_or(KmsOperation::Other(operation));
    let outcome = match r.byte()? {
        OUTCOME_SUCCEEDED => UsageOutcome::Succeeded,
        OUTCOME_REJECTED_PENDING_DELETION => UsageOutcome::RejectedPendingDeletion,
        OUTCOME_FAILED => UsageOutcome::Failed {
            error_code: r.text()?,
        },
        other => return Err(corrupt(format!("unknown outcome {other}"))),
    };
    let custom_key_store_id = r.optional_text()?;
    let xks_key_id = r.optional_text()?;
    let mut resources = Vec::new();
    for _ in 0..r.count()? {
        let resource_type = resource_type_of(r.byte()?)?;
        resources.push(ProtectedResource {
            resource_type,
            id: r.text()?,
        });
    }
    let mut other_keys = Vec::new();
    for _ in 0..r.count()? {
        other_keys.push(r.text()?);
    }
    if !r.0.is_empty() {
        return Err(corrupt("bytes after a use"));
    }
    Ok(KeyEvent {
        key,
        context: EventContext {
            event_id: event_id.to_owned(),
            event_time,
            event_name,
            principal,
            source_ip,
            user_agent,
            invoked_by,
            error_message,
            caller_account,
            shared_event_id,
            caller_is_account,
        },
        kind: KeyEventKind::Used {
            operation,
            outcome,
            custom_key_store_id,
            xks_key_id,
            protects: ContextResources {
                resources,
                other_keys,
            },
        },
    })
}

const OUTCOME_SUCCEEDED: u8 = 0;
const OUTCOME_REJECTED_PENDING_DELETION: u8 = 1;
const OUTCOME_FAILED: u8 = 2;

/// A resource type's code in a kept use: fixed for good (stored data depends on them); a
/// new type takes the next.
fn resource_type_code(t: ResourceType) -> u8 {
    match t {
        ResourceType::S3Bucket => 0,
        ResourceType::EbsVolume => 1,
        ResourceType::EbsSnapshot => 2,
        ResourceType::Secret => 3,
        ResourceType::SsmParameter => 4,
        ResourceType::DynamodbTable => 5,
        ResourceType::RdsDatabase => 6,
        ResourceType::CloudtrailTrail => 7,
        ResourceType::LambdaFunction => 8,
        ResourceType::SqsQueue => 9,
        ResourceType::SnsTopic => 10,
        ResourceType::LogGroup => 11,
    }
}

/// Reverses [`resource_type_code`].
fn resource_type_of(code: u8) -> Result<ResourceType, DatabaseError> {
    Ok(match code {
        0 => ResourceType::S3Bucket,
        1 => ResourceType::EbsVolume,
        2 => ResourceType::EbsSnapshot,
        3 => ResourceType::Secret,
        4 => ResourceType::SsmParameter,
        5 => ResourceType::DynamodbTable,
        6 => ResourceType::RdsDatabase,
        7 => ResourceType::CloudtrailTrail,
        8 => ResourceType::LambdaFunction,
        9 => ResourceType::SqsQueue,
        10 => ResourceType::SnsTopic,
        11 => ResourceType::LogGroup,
        other => return Err(corrupt(format!("unknown resource type {other}"))),
    })
}

fn write_text(out: &mut Vec<u8>, text: &str) {
    write_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn write_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            write_varint(out, t.len() as u64 + 1);
            out.extend_from_slice(t.as_bytes());
        }
        None => out.push(0),
    }
}

/// The fields of a kept use not read yet.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn byte(&mut self) -> Result<u8, DatabaseError> {
        let (b, rest) = take(self.0, 1)?;
        self.0 = rest;
        Ok(b[0])
    }

    fn count(&mut self) -> Result<usize, DatabaseError> {
        let (n, rest) = read_len(self.0)?;
        self.0 = rest;
        Ok(n)
    }

    fn bytes(&mut self, n: usize) -> Result<String, DatabaseError> {
        let (b, rest) = take(self.0, n)?;
        self.0 = rest;
        String::from_utf8(b.to_vec()).map_err(corrupt)
    }

    /// A key ARN: `last`, when the text is its; else parsed, and then kept as `last`.
    fn key(&mut self, last: &mut Option<KeyArn>) -> Result<KeyArn, DatabaseError> {
        let n = self.count()?;
        let (b, rest) = take(self.0, n)?;
        self.0 = rest;
        if let Some(key) = last.as_ref().filter(|k| k.as_str().as_bytes() == b) {
            return Ok(key.clone());
        }
        let text = std::str::from_utf8(b).map_err(corrupt)?;
        let key = KeyArn::parse(text).ok_or_else(|| corrupt(format!("not a key ARN: {text}")))?;
        *last = Some(key.clone());
        Ok(key)
    }

    fn text(&mut self) -> Result<String, DatabaseError> {
        let n = self.count()?;
        self.bytes(n)
    }

    fn optional_text(&mut self) -> Result<Option<String>, DatabaseError> {
        let (n, rest) = read_varint(self.0)?;
        self.0 = rest;
        match usize::try_from(n) {
            Ok(0) => Ok(None),
            Ok(n) => self.bytes(n - 1).map(Some),
            Err(_) => Err(corrupt("segment cut short")),
        }
    }
}

/// The tag of a logged record in format 6: a CloudTrail record's JSON.
const LOGGED_CLOUDTRAIL: u8 = 0;
/// The tag of a logged record in format 6: a use ([`write_use`]).
const LOGGED_USE: u8 = 1;
/// The tag of an eventID in format 6: a UUID, its 16 bytes follow.
const ID_UUID: u8 = 0;
/// The tag of an eventID in format 6: any other text, its length and UTF-8 follow.
const ID_TEXT: u8 = 1;

/// Format 6 before compression: the number of records, then three columns: the eventTimes
/// (ms, each the difference from the one before, zigzag LEB128), the eventIDs (a tag, then
/// 16 bytes or a length and text) and the records (a tag, a length and JSON). Lengths are
/// LEB128.
fn lay_out_columns<'a>(
    entries: impl IntoIterator<Item = EntryToLog<'a>>,
) -> Result<Vec<u8>, DatabaseError> {
    let entries: Vec<EntryToLog<'a>> = entries.into_iter().collect();
    let mut raw = Vec::with_capacity(entries.iter().map(|e| 24 + e.2.len()).sum());
    write_varint(&mut raw, entries.len() as u64);
    let mut previous = 0i64;
    for (time, ..) in &entries {
        let delta = time.millis().wrapping_sub(previous);
        write_varint(&mut raw, ((delta << 1) ^ (delta >> 63)) as u64);
        previous = time.millis();
    }
    for (_, event_id, ..) in &entries {
        match event_id_uuid(event_id) {
            Some(uuid) => {
                raw.push(ID_UUID);
                raw.extend_from_slice(&uuid);
            }
            None => {
                raw.push(ID_TEXT);
                write_varint(&mut raw, event_id.len() as u64);
                raw.extend_from_slice(event_id.as_bytes());
            }
        }
    }
    let mut text = Vec::new();
    for (_, _, json, kept_use) in &entries {
        text.clear();
        match kept_use {
            Some(e) => {
                raw.push(LOGGED_USE);
                write_use(e, &mut text)?;
            }
            None => {
                raw.push(LOGGED_CLOUDTRAIL);
                text.extend_from_slice(json.as_bytes());
            }
        }
        write_varint(&mut raw, text.len() as u64);
        raw.extend_from_slice(&text);
    }
    Ok(raw)
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 number and the rest, or an error naming a segment cut short or damaged.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), DatabaseError> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((n, &bytes[i + 1..]));
        }
    }
    Err(corrupt("segment cut short"))
}

/// A length read as a varint, checked against what is left.
fn read_len(bytes: &[u8]) -> Result<(usize, &[u8]), DatabaseError> {
    let (n, rest) = read_varint(bytes)?;
    match usize::try_from(n) {
        Ok(n) if n <= rest.len() => Ok((n, rest)),
        _ => Err(corrupt("segment cut short")),
    }
}

/// The most records [`read_columns`] makes room for before reading them: more than a
/// segment of 1 MiB of records holds.
const SEGMENT_ROOM: usize = 16 * 1024;

/// A segment's eventTimes and eventIDs, in order, and what follows them: the records.
type SegmentKeys<'a> = (Vec<Timestamp>, Vec<String>, &'a [u8]);

/// Reads the leading columns of [`lay_out_columns`]: the eventTimes and eventIDs.
fn read_keys(raw: &[u8]) -> Result<SegmentKeys<'_>, DatabaseError> {
    let (count, mut rest) = read_varint(raw)?;
    // Every record takes at least three bytes: a claim of more is damage.
    let count = usize::try_from(count)
        .ok()
        .filter(|n| n.saturating_mul(3) <= rest.len())
        .ok_or_else(|| corrupt("segment cut short"))?;
    // Room for what a segment written here holds at most; a damaged segment that claims
    // millions of records (of its up to 256 MiB) fails as it is read, not by allocating.
    let room = count.min(SEGMENT_ROOM);
    let mut times = Vec::with_capacity(room);
    let mut previous = 0i64;
    for _ in 0..count {
        let (zigzag, r) = read_varint(rest)?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        previous = previous.wrapping_add(delta);
        times.push(Timestamp::from_millis(previous));
        rest = r;
    }
    let mut ids = Vec::with_capacity(room);
    for _ in 0..count {
        let (tag, r) = take(rest, 1)?;
        let (id, r) = match tag[0] {
            ID_UUID => {
                let (b, r) = take(r, 16)?;
                (uuid_text(b), r)
            }
            ID_TEXT => {
                let (len, r) = read_len(r)?;
                let (b, r) = take(r, len)?;
                (String::from_utf8(b.to_vec()).map_err(corrupt)?, r)
            }
            other => return Err(corrupt(format!("unknown eventID tag {other}"))),
        };
        ids.push(id);
        rest = r;
    }
    Ok((times, ids, rest))
}

/// Reverses [`lay_out_columns`].
fn read_columns(raw: &[u8]) -> Result<Vec<SegmentEntry>, DatabaseError> {
    let (times, ids, mut rest) = read_keys(raw)?;
    let mut entries = Vec::with_capacity(times.len());
    let mut last_key = None;
    for (event_time, event_id) in times.into_iter().zip(ids) {
        let (tag, r) = take(rest, 1)?;
        let (len, r) = read_len(r)?;
        let (text, r) = take(r, len)?;
        let record = match tag[0] {
            LOGGED_CLOUDTRAIL => {
                LoggedRecord::CloudTrail(String::from_utf8(text.to_vec()).map_err(corrupt)?)
            }
            LOGGED_USE => LoggedRecord::Use(Box::new(read_use(
                text,
                event_time,
                &event_id,
                &mut last_key,
            )?)),
            other => return Err(corrupt(format!("unknown record tag {other}"))),
        };
        entries.push(SegmentEntry {
            event_time,
            event_id,
            record,
        });
        rest = r;
    }
    if !rest.is_empty() {
        return Err(corrupt("bytes after the segment's records"));
    }
    Ok(entries)
}

/// A UUID's text, lower case, from its 16 bytes: the reverse of [`event_id_uuid`].
fn uuid_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A segment's records laid out one after the other, as formats 2, 3 and 5 hold them.
#[cfg(test)]
fn lay_out<'a>(entries: impl IntoIterator<Item = (Timestamp, &'a str, &'a str)>) -> Vec<u8> {
    let mut raw = Vec::new();
    for (event_time, event_id, json) in entries {
        raw.extend_from_slice(&event_time.millis().to_le_bytes());
        raw.extend_from_slice(&(event_id.len() as u16).to_le_bytes());
        raw.extend_from_slice(event_id.as_bytes());
        raw.extend_from_slice(&(json.len() as u32).to_le_bytes());
        raw.extend_from_slice(json.as_bytes());
    }
    raw
}

/// A segment kept uncompressed (should compression ever fail), laid out as format 2.
const FORMAT_SEGMENT_PLAIN: u8 = 3;

/// Decodes what [`encode_segment`] made, and the segments earlier versions wrote.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<SegmentEntry>, DatabaseError> {
    let raw = match bytes.split_first() {
        Some((&FORMAT_ZSTD_SEGMENT_V3, packed)) => return read_columns(&decompress(packed)?),
        Some((&FORMAT_SEGMENT_COLUMNS_PLAIN, raw)) => return read_columns(raw),
        Some((&FORMAT_ZSTD_SEGMENT_V2, packed)) => decompress(packed)?,
        Some((&FORMAT_SEGMENT_V1, packed)) => inflate(packed)?,
        Some((&FORMAT_SEGMENT_PLAIN, raw)) => raw.to_vec(),
        Some((format, _)) => return Err(corrupt(format!("unknown segment format {format}"))),
        None => return Err(corrupt("empty segment")),
    };
    let mut entries = Vec::new();
    let mut rest = raw.as_slice();
    while !rest.is_empty() {
        let (time, r) = take(rest, 8)?;
        let millis = i64::from_le_bytes(time.try_into().map_err(corrupt)?);
        let (len, r) = take(r, 2)?;
        let (id, r) = take(r, usize::from(u16::from_le_bytes([len[0], len[1]])))?;
        let (len, r) = take(r, 4)?;
        let len = u32::from_le_bytes(len.try_into().map_err(corrupt)?) as usize;
        let (json, r) = take(r, len)?;
        entries.push(SegmentEntry {
            event_time: Timestamp::from_millis(millis),
            event_id: String::from_utf8(id.to_vec()).map_err(corrupt)?,
            record: LoggedRecord::CloudTrail(String::from_utf8(json.to_vec()).map_err(corrupt)?),
        });
        rest = r;
    }
    Ok(entries)
}

/// The eventIDs a segment holds, in its order: what [`decode_segment`] reads, without the
/// records (a format 6 segment's records are not read at all).
pub fn segment_event_ids(bytes: &[u8]) -> Result<Vec<String>, DatabaseError> {
    match bytes.split_first() {
        Some((&FORMAT_ZSTD_SEGMENT_V3, packed)) => Ok(read_keys(&decompress(packed)?)?.1),
        Some((&FORMAT_SEGMENT_COLUMNS_PLAIN, raw)) => Ok(read_keys(raw)?.1),
        _ => Ok(decode_segment(bytes)?
            .into_iter()
            .map(|e| e.event_id)
            .collect()),
    }
}

/// The first `n` bytes and the rest, or an error naming a segment cut short.
fn take(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), DatabaseError> {
    if bytes.len() < n {
        return Err(corrupt("segment cut short"));
    }
    Ok(bytes.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_shrink() {
        let record = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:app","arn":"arn:aws:sts::111122223333:assumed-role/app/s","accountId":"111122223333"},"eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-sdk-java/2.25.6","requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"},"responseElements":null,"requestID":"6ee1a1c7-b90b-4df1-be37-6947a459ee9b","eventID":"b7341259-e4be-49d7-b2fb-1d9253becfa8","readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/0e5d0ab6-097e-49d8-99ef-747ce3e5f8f4"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;
        let packed = encode_record(record);
        assert!(
            packed.len() * 2 < record.len(),
            "{} bytes from {}",
            packed.len(),
            record.len()
        );
        assert_eq!(decode_record(&packed).expect("decodes"), record);
        // Twice in a row on one thread: the reused (de)compressor is reset properly.
        assert_eq!(decode_record(&encode_record("{}")).expect("decodes"), "{}");
        let big = format!("[{}]", vec![record; 200].join(","));
        assert_eq!(decode_record(&encode_record(&big)).expect("decodes"), big);
    }

    #[test]
    fn segments_round_trip_and_shrink_below_their_records_alone() {
        let record = |i: usize| {
            format!(
                r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/s"}},"eventTime":"2026-11-01T00:00:{:02}Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","requestID":"6ee1a1c7-b90b-4df1-be37-{i:012}","eventID":"b7341259-e4be-49d7-b2fb-{i:012}","resources":[{{"ARN":"arn:aws:kms:us-east-1:111122223333:key/0e5d0ab6-097e-49d8-99ef-747ce3e5f8f4"}}]}}"#,
                i % 60
            )
        };
        let entries: Vec<SegmentEntry> = (0..100)
            .map(|i| SegmentEntry {
                event_time: Timestamp::from_millis(1_000 * i as i64),
                event_id: format!("b7341259-e4be-49d7-b2fb-{i:012}"),
                record: LoggedRecord::CloudTrail(record(i)),
            })
            .collect();
        let segment = encode_segment(&entries).expect("encodes");
        let alone: usize = (0..100).map(|i| encode_record(&record(i)).len()).sum();
        assert!(
            segment.len() * 3 < alone,
            "a segment of {} bytes, the records alone {alone}",
            segment.len()
        );
        assert_eq!(decode_segment(&segment).expect("decodes"), entries);
        assert_eq!(
            decode_segment(&encode_segment(&[]).expect("encodes")).expect("decodes"),
            []
        );
    }

    /// A use as CloudTrail writes it: `n` numbers its eventID and second, `extra` is more
    /// of the record's fields.
    fn use_record(n: u32, extra: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:s","arn":"arn:aws:sts::111122223333:assumed-role/app/s","accountId":"111122223333","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/app"}}}}}},"eventTime":"2026-11-01T00:00:{:02}Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.{n}","userAgent":"aws-sdk-java/2.25.6","requestParameters":{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::reports/2026/{n}.csv"}}}},"responseElements":null,"requestID":"6ee1a1c7-b90b-4df1-be37-{n:012}","eventID":"b7341259-e4be-49d7-b2fb-{n:012}","readOnly":true,"resources":[{{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/0e5d0ab6-097e-49d8-99ef-747ce3e5f8f4"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"{extra}}}"#,
            n % 60
        )
    }

    fn entry_of(json: String) -> SegmentEntry {
        let Ok(Normalised::Kms { events, .. }) = keywatch_core::normalise(&json) else {
            panic!("a KMS record: {json}");
        };
        let first = events[0].context();
        SegmentEntry {
            event_time: first.event_time,
            event_id: first.event_id.clone(),
            record: match LoggedRecord::use_of(&events) {
                Some(u) => LoggedRecord::Use(Box::new(u.clone())),
                None => LoggedRecord::CloudTrail(json),
            },
        }
    }

    #[test]
    fn uses_are_kept_as_their_events_and_read_back_as_the_records_normalise() {
        let failed =
            r#","errorCode":"AccessDeniedException","errorMessage":"User is not authorized""#;
        let rejected = r#","errorCode":"KMSInvalidStateException","errorMessage":"arn:aws:kms:us-east-1:111122223333:key/0e5d0ab6-097e-49d8-99ef-747ce3e5f8f4 is pending deletion.""#;
        let shared = r#","sharedEventID":"9e1f4a1e-2b3c-4d5e-8f90-0a1b2c3d4e5f""#;
        let records = vec![
            use_record(1, ""),
            use_record(2, failed),
            use_record(3, rejected),
            use_record(4, shared),
            // An eventID that is no UUID, and a record earlier than the one before it.
            use_record(5, "").replace("b7341259-e4be-49d7-b2fb-000000000005", "not-a-uuid"),
            use_record(0, ""),
        ];
        let entries: Vec<SegmentEntry> = records.iter().cloned().map(entry_of).collect();
        let kept: Vec<bool> = entries
            .iter()
            .map(|e| matches!(e.record, LoggedRecord::Use(_)))
            .collect();
        // The rejected use stays whole; the failed one, as any other use, is its event.
        assert_eq!(kept, [true, true, false, true, true, true]);
        let back = decode_segment(&encode_segment(&entries).expect("encodes")).expect("decodes");
        assert_eq!(back, entries);
        for (entry, json) in back.into_iter().zip(&records) {
            let Ok(Normalised::Kms { events, .. }) = keywatch_core::normalise(json) else {
                panic!("normalises");
            };
            assert_eq!(entry.record.into_events().expect("events"), events);
        }
    }

    #[test]
    fn every_field_of_a_use_reads_back() {
        use keywatch_core::protects::{ContextResources, ProtectedResource, ResourceType};
        let Ok(Normalised::Kms { mut events, .. }) = keywatch_core::normalise(&use_record(7, ""))
        else {
            panic!("a use");
        };
        let KmsEvent::Key(mut event) = events.remove(0) else {
            panic!("of a key");
        };
        let every_type = [
            ResourceType::S3Bucket,
            ResourceType::EbsVolume,
            ResourceType::EbsSnapshot,
            ResourceType::Secret,
            ResourceType::SsmParameter,
            ResourceType::DynamodbTable,
            ResourceType::RdsDatabase,
            ResourceType::CloudtrailTrail,
            ResourceType::LambdaFunction,
            ResourceType::SqsQueue,
            ResourceType::SnsTopic,
            ResourceType::LogGroup,
        ];
        let c = &mut event.context;
        c.invoked_by = Some("s3.amazonaws.com".into());
        c.error_message = Some(String::new());
        c.caller_account = Some("444455556666".into());
        c.shared_event_id = Some("9e1f4a1e-2b3c-4d5e-8f90-0a1b2c3d4e5f".into());
        c.caller_is_account = true;
        c.user_agent = None;
        event.kind = KeyEventKind::Used {
            operation: KmsOperation::Other("DeriveSharedSecret2".into()),
            outcome: UsageOutcome::Failed {
                error_code: "KMSInvalidStateException".into(),
            },
            custom_key_store_id: Some("cks-1234567890abcdef0".into()),
            xks_key_id: Some("külső kulcs".into()),
            protects: ContextResources {
                resources: every_type
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ProtectedResource {
                        resource_type: *t,
                        id: format!("resource-{i}"),
                    })
                    .collect(),
                other_keys: vec!["tenant".into(), String::new()],
            },
        };
        let entry = SegmentEntry {
            event_time: event.context.event_time,
            event_id: event.context.event_id.clone(),
            record: LoggedRecord::Use(Box::new(event)),
        };
        let back = decode_segment(&encode_segment(std::slice::from_ref(&entry)).expect("encodes"));
        assert_eq!(back.expect("decodes"), [entry]);
    }

    #[test]
    fn a_use_takes_a_fraction_of_its_record_in_a_segment() {
        let records: Vec<String> = (0..100).map(|n| use_record(n, "")).collect();
        let whole: Vec<SegmentEntry> = records
            .iter()
            .map(|json| {
                let e = entry_of(json.clone());
                SegmentEntry {
                    record: LoggedRecord::CloudTrail(json.clone()),
                    ..e
                }
            })
            .collect();
        let as_uses: Vec<SegmentEntry> = records.into_iter().map(entry_of).collect();
        let whole = encode_segment(&whole).expect("encodes").len();
        let as_uses = encode_segment(&as_uses).expect("encodes").len();
        assert!(
            as_uses * 3 < whole * 2,
            "{as_uses} bytes as uses, {whole} as records"
        );
    }

    #[test]
    fn a_damaged_segment_is_an_error_not_a_panic() {
        let entry = SegmentEntry {
            event_time: Timestamp::from_millis(1),
            event_id: "x".into(),
            record: LoggedRecord::CloudTrail(r#"{"eventID":"x"}"#.into()),
        };
        let segment = encode_segment(&[entry.clone(), entry]).expect("encodes");
        for cut in [1, segment.len() / 2, segment.len() - 1] {
            assert!(decode_segment(&segment[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            decode_segment(&encode_record("{}")).is_err(),
            "a record is no segment"
        );
        assert!(decode_segment(&[]).is_err());
        let uses: Vec<SegmentEntry> = (0..3).map(|n| entry_of(use_record(n, ""))).collect();
        let raw = lay_out_columns(uses.iter().map(|e| match &e.record {
            LoggedRecord::Use(u) => (e.event_time, e.event_id.as_str(), "", Some(&**u)),
            LoggedRecord::CloudTrail(j) => (e.event_time, e.event_id.as_str(), j.as_str(), None),
        }))
        .expect("lays out");
        let plain = [vec![FORMAT_SEGMENT_COLUMNS_PLAIN], raw].concat();
        assert_eq!(decode_segment(&plain).expect("decodes"), uses);
        for cut in 1..plain.len() {
            assert!(decode_segment(&plain[..cut]).is_err(), "cut at {cut}");
        }
        for at in 1..plain.len() {
            let mut flipped = plain.clone();
            flipped[at] ^= 0x55;
            let _ = decode_segment(&flipped); // an error or other records, never a panic
        }
        assert!(decode_segment(&[FORMAT_SEGMENT_COLUMNS_PLAIN, 0xff, 0xff, 0xff, 0x7f]).is_err());
        // Plain entries whose lengths overrun what follows.
        assert!(decode_segment(&[FORMAT_SEGMENT_PLAIN, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0]).is_err());
    }

    #[test]
    fn only_lower_case_uuids_are_kept_as_bytes() {
        assert_eq!(
            event_id_uuid("b7341259-e4be-49d7-b2fb-1d9253becfa8").map(|b| b[..2].to_vec()),
            Some(vec![0xb7, 0x34])
        );
        for other in [
            "B7341259-E4BE-49D7-B2FB-1D9253BECFA8",
            "b7341259-e4be-49d7-b2fb-1d9253becfa",
            "b7341259-e4be-49d7-b2fb-1d9253becfa88",
            "b7341259e4be-49d7-b2fb--1d9253becfa8",
            "b7341259-e4be-49d7-b2fb-1d9253becfg8",
            "unscheduled",
            "",
        ] {
            assert_eq!(event_id_uuid(other), None, "{other}");
        }
    }

    #[test]
    fn only_keywatch_alert_ids_are_kept_as_bytes() {
        assert_eq!(
            alert_id_bytes("f2509d10c5789c46f43b01a24827686a").map(|b| (b[0], b[15])),
            Some((0xf2, 0x6a))
        );
        for other in [
            "F2509D10C5789C46F43B01A24827686A",
            "f2509d10c5789c46f43b01a24827686",
            "f2509d10c5789c46f43b01a24827686a0",
            "f2509d10-5789c46f43b01a24827686a",
            "f2509d10c5789c46f43b01a24827686g",
            "",
        ] {
            assert_eq!(alert_id_bytes(other), None, "{other}");
        }
    }

    /// What earlier versions wrote: `raw` deflated (level 1, primed with [`DICTIONARY_V1`])
    /// after the byte `format`.
    fn deflated_as_before(format: u8, raw: &[u8]) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::fast(), false);
        c.set_dictionary(DICTIONARY_V1).expect("a dictionary");
        let mut out = Vec::with_capacity(raw.len() * 2 + 64);
        let status = c
            .compress_vec(raw, &mut out, FlushCompress::Finish)
            .expect("deflates");
        assert_eq!(status, Status::StreamEnd);
        [vec![format], out].concat()
    }

    #[test]
    fn what_earlier_versions_deflated_still_reads() {
        let record = r#"{"eventVersion":"1.08","eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventID":"b7341259-e4be-49d7-b2fb-1d9253becfa8"}"#;
        let stored = deflated_as_before(FORMAT_DEFLATE_DICT_V1, record.as_bytes());
        assert_eq!(decode_record(&stored).expect("decodes"), record);
        let entries = vec![
            SegmentEntry {
                event_time: Timestamp::from_millis(1_000),
                event_id: "b7341259-e4be-49d7-b2fb-1d9253becfa8".into(),
                record: LoggedRecord::CloudTrail(record.into()),
            },
            SegmentEntry {
                event_time: Timestamp::from_millis(2_000),
                event_id: "other".into(),
                record: LoggedRecord::CloudTrail("{}".into()),
            },
        ];
        let raw = lay_out([
            (entries[0].event_time, entries[0].event_id.as_str(), record),
            (entries[1].event_time, entries[1].event_id.as_str(), "{}"),
        ]);
        let stored = deflated_as_before(FORMAT_SEGMENT_V1, &raw);
        assert_eq!(decode_segment(&stored).expect("decodes"), entries);
        // What is written now is the newer format, and reads the same.
        assert_eq!(encode_record(record)[0], FORMAT_ZSTD_TEXT_V2);
        let stored = [vec![FORMAT_SEGMENT_PLAIN], raw.clone()].concat();
        assert_eq!(decode_segment(&stored).expect("decodes"), entries);
        let stored = compress(FORMAT_ZSTD_SEGMENT_V2, &raw).expect("compresses");
        assert_eq!(decode_segment(&stored).expect("decodes"), entries);
        let now = encode_segment(&entries).expect("encodes");
        assert_eq!(now[0], FORMAT_ZSTD_SEGMENT_V3);
        assert_eq!(decode_segment(&now).expect("decodes"), entries);
    }

    #[test]
    fn an_alert_alone_takes_a_fraction_of_its_json() {
        // Alerts are stored one by one, each far too short for a compressor to find much to
        // reuse within it: the dictionary's alert vocabulary is what shrinks them.
        let alert = r#"{"schema_version":1,"alert_id":"5d1c1a5890cb73855e70cc727d590f45","kind":"pending_deletion_key_used","severity":"critical","key_arn":"arn:aws:kms:eu-west-1:444455556666:key/c6f87718-6d76-b07e-881e-d162ae2eb154","account":"444455556666","region":"eu-west-1","event_id":"a00bdfae-4fb5-0d00-d7d8-331de32885fe","event_time":"2026-11-20T10:41:27Z","principal":"arn:aws:iam::444455556666:role/reporting","summary":"arn:aws:iam::444455556666:role/reporting used Decrypt on KMS key c6f87718-6d76-b07e-881e-d162ae2eb154 (444455556666/eu-west-1) pending deletion (deleted on 2026-12-20T00:00:00Z): 1 use(s) in this window, 35 so far; protects 3 S3 buckets (reports, exports, logs); to keep it: aws kms cancel-key-deletion --key-id arn:aws:kms:eu-west-1:444455556666:key/c6f87718-6d76-b07e-881e-d162ae2eb154 --region eu-west-1","operation":"Decrypt","source_ip":"192.0.2.10","user_agent":"aws-cli/2.15.0","rejected":false,"uses_in_window":1,"uses_so_far":35,"deletion_date":"2026-12-20T00:00:00Z","scheduled_by":"arn:aws:iam::444455556666:role/admin","protects":[{"resource_type":"s3_bucket","count":3,"examples":["exports","logs","reports"],"last_seen":"2026-11-20T10:41:27Z"}],"rescue_command":"aws kms cancel-key-deletion --key-id arn:aws:kms:eu-west-1:444455556666:key/c6f87718-6d76-b07e-881e-d162ae2eb154 --region eu-west-1","timeline_command":"keywatch timeline arn:aws:kms:eu-west-1:444455556666:key/c6f87718-6d76-b07e-881e-d162ae2eb154"}"#;
        let packed = encode_record(alert);
        let deflated = deflated_as_before(FORMAT_DEFLATE_DICT_V1, alert.as_bytes());
        assert!(
            packed.len() * 3 < alert.len() && packed.len() * 3 < deflated.len() * 2,
            "{} bytes from {} (deflated as before: {})",
            packed.len(),
            alert.len(),
            deflated.len()
        );
        assert_eq!(decode_record(&packed).expect("decodes"), alert);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut packed = encode_record(r#"{"eventID":"x"}"#);
        packed.truncate(packed.len() / 2);
        assert!(decode_record(&packed).is_err());
        assert!(decode_record(&[9, 1, 2]).is_err());
        assert!(decode_record(&[FORMAT_ZSTD_TEXT_V2]).is_err());
        assert!(decode_record(&[FORMAT_DEFLATE_DICT_V1, 1, 2]).is_err());
        let mut flipped = encode_record(r#"{"eventID":"x","eventName":"Decrypt"}"#);
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let _ = decode_record(&flipped); // an error or other text, never a panic
        assert!(decode_record(&[]).is_err());
    }
}
