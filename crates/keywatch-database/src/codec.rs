//! How a CloudTrail record is kept in the event log: raw deflate with a preset dictionary of
//! the text every KMS record shares, about 4× smaller than the JSON. (The DynamoDB database
//! keeps timelines' JSON this way too.) The first byte names
//! the format, so that stored records stay readable when a better one is added.

use crate::DatabaseError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
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
        .with(|c| deflate(&mut c.borrow_mut(), json.as_bytes()))
        .unwrap_or_else(|| {
            // Deflating a slice into a growing Vec has no failure mode we know of; should one
            // appear, keep the record as plain text (format 0) rather than lose it.
            let mut out = Vec::with_capacity(json.len() + 1);
            out.push(0);
            out.extend_from_slice(json.as_bytes());
            out
        })
}

fn deflate(c: &mut Compress, mut input: &[u8]) -> Option<Vec<u8>> {
    c.reset();
    c.set_dictionary(DICTIONARY_V1).ok()?;
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    out.push(FORMAT_DEFLATE_DICT_V1);
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

/// Decodes what [`encode_record`] made.
pub fn decode_record(bytes: &[u8]) -> Result<String, DatabaseError> {
    match bytes.split_first() {
        Some((0, text)) => String::from_utf8(text.to_vec()).map_err(corrupt),
        Some((&FORMAT_DEFLATE_DICT_V1, packed)) => DECOMPRESS.with(|d| {
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
                    Status::StreamEnd => break,
                    _ if d.total_in() == before && out.len() < out.capacity() => {
                        return Err(corrupt("truncated deflate stream"))
                    }
                    _ => input = &input[(d.total_in() - before) as usize..],
                }
            }
            String::from_utf8(out).map_err(corrupt)
        }),
        Some((format, _)) => Err(corrupt(format!("unknown record format {format}"))),
        None => Err(corrupt("empty")),
    }
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
    fn damage_is_an_error_not_a_panic() {
        let mut packed = encode_record(r#"{"eventID":"x"}"#);
        packed.truncate(packed.len() / 2);
        assert!(decode_record(&packed).is_err());
        assert!(decode_record(&[9, 1, 2]).is_err());
        assert!(decode_record(&[]).is_err());
    }
}
