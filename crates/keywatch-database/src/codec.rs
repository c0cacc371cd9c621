//! How the event log keeps CloudTrail records: a segment (format 2), several records of one
//! stream deflated together, each in a fraction of what it takes alone. A record alone
//! (format 1: raw deflate with a preset dictionary of the text every KMS record shares,
//! about 4× smaller than the JSON) is what earlier versions kept, and how the databases keep
//! timelines' and alerts' JSON. The first byte names the format, so that stored data stays
//! readable when a better one is added.

use crate::DatabaseError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use keywatch_core::Timestamp;
use std::cell::RefCell;

/// Format 1: raw deflate (level 1) primed with [`DICTIONARY_V1`].
const FORMAT_DEFLATE_DICT_V1: u8 = 1;

/// Text common to KMS CloudTrail records, most frequent last (deflate reaches back 32 KiB,
/// and nearer matches code shorter). Stored records depend on it: never change it; add a
/// format with a new dictionary instead.
const DICTIONARY_V1: &[u8] = br#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::","accountId":"","accessKeyId":"AKIA","userName":"","invokedBy":"AWS Internal"},"errorCode":"KMSInvalidStateException","errorMessage":" is pending deletion.","additionalEventData":{"customKeyStoreId":"cks-","clusterId":"cluster-","backingKeys":"[{\"keyHandle\":\"","backingKeyId\":\""}]"},"eventType":"AwsServiceEvent","eventName":"ScheduleKeyDeletion","requestParameters":{"keyId":"","pendingWindowInDays":30},"responseElements":{"keyId":"arn:aws:kms:","keyState":"PendingDeletion","deletionDate":""},"GenerateDataKey","keySpec":"AES_256","Encrypt","Sign","Decrypt","encryptionContext":{"aws:s3:arn":"arn:aws:s3:::"},"userIdentity":{"type":"AssumedRole","principalId":"AROA","arn":"arn:aws:sts::","assumed-role/","accountId":"","accessKeyId":"ASIA","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA","arn":"arn:aws:iam::","role/","accountId":"","userName":""},"webIdFederationData":{},"attributes":{"creationDate":"","mfaAuthenticated":"false"}}},"eventTime":"","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"","userAgent":"aws-sdk-java/","requestParameters":{"keyId":"arn:aws:kms:","encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{}},"responseElements":null,"requestID":"","eventID":"","readOnly":true,"resources":[{"accountId":"","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"","eventCategory":"Management"}"#;

thread_local! {
    static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static DECOMPRESS: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

fn corrupt(reason: impl ToString) -> DatabaseError {
    DatabaseError::Corrupt {
        what: "record",
        reason: reason.to_string(),
    }
}

/// Encodes a record's JSON for the event log.
pub fn encode_record(json: &str) -> Vec<u8> {
    COMPRESS
        .with(|c| deflate(&mut c.borrow_mut(), FORMAT_DEFLATE_DICT_V1, json.as_bytes()))
        .unwrap_or_else(|| {
            // Deflating a slice into a growing Vec has no failure mode we know of; should one
            // appear, keep the record as plain text (format 0) rather than lose it.
            let mut out = Vec::with_capacity(json.len() + 1);
            out.push(0);
            out.extend_from_slice(json.as_bytes());
            out
        })
}

fn deflate(c: &mut Compress, format: u8, mut input: &[u8]) -> Option<Vec<u8>> {
    c.reset();
    c.set_dictionary(DICTIONARY_V1).ok()?;
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    out.push(format);
    loop {
        out.reserve(input.len() / 2 + 64);
        let before = c.total_in();
        match c
            .compress_vec(input, &mut out, FlushCompress::Finish)
            .ok()?
        {
            Status::StreamEnd => {
                // A batch holds many of these: keep no spare capacity.
                out.shrink_to_fit();
                return Some(out);
            }
            _ => input = &input[(c.total_in() - before) as usize..],
        }
    }
}

/// A value's JSON as the databases keep timelines (and SQLite alerts): deflated with
/// [`encode_record`]; `what` names it in the error.
pub fn encode_json(
    value: &impl serde::Serialize,
    what: &'static str,
) -> Result<Vec<u8>, DatabaseError> {
    serde_json::to_string(value)
        .map(|json| encode_record(&json))
        .map_err(|e| DatabaseError::Corrupt {
            what,
            reason: e.to_string(),
        })
}

/// Reads what [`encode_json`] made.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &'static str,
) -> Result<T, DatabaseError> {
    serde_json::from_str(&decode_record(body)?).map_err(|e| DatabaseError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// Decodes what [`encode_record`] made.
pub fn decode_record(bytes: &[u8]) -> Result<String, DatabaseError> {
    match bytes.split_first() {
        Some((0, text)) => String::from_utf8(text.to_vec()).map_err(corrupt),
        Some((&FORMAT_DEFLATE_DICT_V1, packed)) => {
            String::from_utf8(inflate(packed)?).map_err(corrupt)
        }
        Some((format, _)) => Err(corrupt(format!("unknown record format {format}"))),
        None => Err(corrupt("empty")),
    }
}

fn inflate(packed: &[u8]) -> Result<Vec<u8>, DatabaseError> {
    DECOMPRESS.with(|d| {
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
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut digits = b.iter().filter(|&&c| c != b'-').map(|&c| hex(c));
    let mut out = [0u8; 16];
    for byte in &mut out {
        *byte = (digits.next()?? << 4) | digits.next()??;
    }
    Some(out)
}

/// Format 2: a segment, several records of one stream deflated together (primed with
/// [`DICTIONARY_V1`]), each as its eventTime (ms, 8 bytes LE), its eventID (length in 2
/// bytes LE, then UTF-8) and its JSON (length in 4 bytes LE, then UTF-8). Records of one key
/// repeat most of their text, so a segment stores each in a fraction of what it takes alone.
const FORMAT_SEGMENT_V1: u8 = 2;

/// A record as a segment holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// `eventTime`.
    pub event_time: Timestamp,
    /// `eventID`.
    pub event_id: String,
    /// The record's JSON, as it came.
    pub json: String,
}

/// Encodes records for one segment of the event log.
pub fn encode_segment(entries: &[SegmentEntry]) -> Vec<u8> {
    encode_segment_of(
        entries
            .iter()
            .map(|e| (e.event_time, e.event_id.as_str(), e.json.as_str())),
    )
}

/// Encodes records, given as (eventTime, eventID, JSON), for one segment of the event log:
/// [`encode_segment`] without owning them.
pub fn encode_segment_of<'a>(
    entries: impl IntoIterator<Item = (Timestamp, &'a str, &'a str)> + Clone,
) -> Vec<u8> {
    let size = entries
        .clone()
        .into_iter()
        .map(|(_, id, json)| 14 + id.len() + json.len())
        .sum();
    let mut raw = Vec::with_capacity(size);
    for (event_time, event_id, json) in entries {
        raw.extend_from_slice(&event_time.millis().to_le_bytes());
        // eventIDs are at most a few hundred bytes (the reader bounds them) and a record
        // far below 4 GiB, so the lengths fit.
        raw.extend_from_slice(&(event_id.len() as u16).to_le_bytes());
        raw.extend_from_slice(event_id.as_bytes());
        raw.extend_from_slice(&(json.len() as u32).to_le_bytes());
        raw.extend_from_slice(json.as_bytes());
    }
    COMPRESS
        .with(|c| deflate(&mut c.borrow_mut(), FORMAT_SEGMENT_V1, &raw))
        .unwrap_or_else(|| {
            // As for a record: no known failure mode; keep it uncompressed rather than lose it.
            let mut out = Vec::with_capacity(raw.len() + 1);
            out.push(FORMAT_SEGMENT_PLAIN);
            out.extend_from_slice(&raw);
            out
        })
}

/// A segment kept uncompressed (should deflate ever fail).
const FORMAT_SEGMENT_PLAIN: u8 = 3;

/// Decodes what [`encode_segment`] made.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<SegmentEntry>, DatabaseError> {
    let raw = match bytes.split_first() {
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
            json: String::from_utf8(json.to_vec()).map_err(corrupt)?,
        });
        rest = r;
    }
    Ok(entries)
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
                json: record(i),
            })
            .collect();
        let segment = encode_segment(&entries);
        let alone: usize = entries.iter().map(|e| encode_record(&e.json).len()).sum();
        assert!(
            segment.len() * 3 < alone,
            "a segment of {} bytes, the records alone {alone}",
            segment.len()
        );
        assert_eq!(decode_segment(&segment).expect("decodes"), entries);
        assert_eq!(decode_segment(&encode_segment(&[])).expect("decodes"), []);
    }

    #[test]
    fn a_damaged_segment_is_an_error_not_a_panic() {
        let entry = SegmentEntry {
            event_time: Timestamp::from_millis(1),
            event_id: "x".into(),
            json: r#"{"eventID":"x"}"#.into(),
        };
        let segment = encode_segment(&[entry.clone(), entry]);
        for cut in [1, segment.len() / 2, segment.len() - 1] {
            assert!(decode_segment(&segment[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            decode_segment(&encode_record("{}")).is_err(),
            "a record is no segment"
        );
        assert!(decode_segment(&[]).is_err());
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
    fn damage_is_an_error_not_a_panic() {
        let mut packed = encode_record(r#"{"eventID":"x"}"#);
        packed.truncate(packed.len() / 2);
        assert!(decode_record(&packed).is_err());
        assert!(decode_record(&[9, 1, 2]).is_err());
        assert!(decode_record(&[]).is_err());
    }
}
