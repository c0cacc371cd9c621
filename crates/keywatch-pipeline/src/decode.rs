//! From event-log payloads to the records the projector takes: one decoding policy for every
//! driver. A value that is not UTF-8 is not a CloudTrail record: it is rejected, never read
//! lossily.

use keywatch_core::{normalise, Normalised};
use keywatch_database::NormalisedRecord;
use std::borrow::Cow;

/// One record of the event log as a driver received it.
#[derive(Clone, Debug)]
pub struct Payload<'a> {
    /// Its partition (for the logs).
    pub partition: i64,
    /// Its offset in the partition (for the logs).
    pub offset: i64,
    /// Its value, or why the transport could not give it (a Lambda event's value that is
    /// not base64). A record without a value is an empty value.
    pub value: Result<Cow<'a, [u8]>, String>,
}

/// A batch of payloads, decoded and normalised.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// The KMS records keywatch tracks, in the order received.
    pub records: Vec<NormalisedRecord>,
    /// Payloads in the batch.
    pub payloads: usize,
    /// Records from other services, or KMS records keywatch does not track: skipped.
    pub skipped: usize,
    /// Payloads rejected (not UTF-8, not a CloudTrail record, invalid), each logged with its
    /// partition, offset and reason.
    pub rejected: u64,
}

/// Why a payload is rejected, or `None` when it is skipped. A value the driver owns (a Lambda
/// event's, decoded from base64) becomes the record's text without a copy.
fn decode_one(value: Result<Cow<'_, [u8]>, String>) -> Result<Option<NormalisedRecord>, String> {
    let not_utf8 = |e: std::str::Utf8Error| format!("not UTF-8: {e}");
    let json: Cow<'_, str> = match value? {
        Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).map_err(not_utf8)?),
        Cow::Owned(bytes) => {
            Cow::Owned(String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error()))?)
        }
    };
    match normalise(&json).map_err(|e| e.to_string())? {
        // The text is copied only where the event log keeps it (not for a use).
        Normalised::Kms { event_id, events } => {
            Ok(Some(NormalisedRecord::new(event_id, json, events)))
        }
        Normalised::NotKms | Normalised::KmsUntracked { .. } => Ok(None),
    }
}

/// Decodes and normalises a batch; a payload rejected is logged and counted, and the others
/// go on.
pub fn decode_batch<'a>(payloads: impl IntoIterator<Item = Payload<'a>>) -> DecodedBatch {
    let mut batch = DecodedBatch::default();
    for p in payloads {
        batch.payloads += 1;
        let (partition, offset) = (p.partition, p.offset);
        match decode_one(p.value) {
            Ok(Some(record)) => batch.records.push(record),
            Ok(None) => {
                batch.skipped += 1;
                tracing::debug!(
                    partition,
                    offset,
                    "not a KMS record keywatch tracks; skipped"
                );
            }
            Err(reason) => {
                batch.rejected += 1;
                tracing::warn!(partition, offset, %reason, "record rejected");
            }
        }
    }
    batch
}
