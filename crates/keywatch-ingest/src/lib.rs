//! Ingest: CloudTrail records for KMS onto the event log. Accepts whatever the reader
//! accepts (EventBridge envelopes of "AWS API Call via CloudTrail" and "AWS Service Event via
//! CloudTrail", CloudTrail log files…), validates and normalises each record with the core,
//! and produces the unmodified record keyed by key ARN. An invocation succeeds only when the
//! broker acknowledged every record; invalid records are logged with the reason and counted,
//! not retried.

use keywatch_core::{normalise, Normalised, Timestamp};
use keywatch_kafka::{message_keys, EventLogProducer, KafkaError};
use keywatch_reader::{read_bytes, Item};

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    /// KMS records acknowledged by the broker.
    pub published: usize,
    /// Records from other services, untracked KMS calls and envelopes without a record
    /// (such as KMS's own "KMS CMK Deletion" notification).
    pub skipped: usize,
    /// Invalid records (logged with the reason).
    pub rejected: usize,
}

/// A record keywatch will put on the log.
struct Accepted {
    event_id: String,
    json: String,
    keys: Vec<String>,
}

/// Splits a payload into the KMS records to publish, counting the rest.
fn accept(payload: &[u8], source: &str, outcome: &mut IngestOutcome) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    read_bytes(payload, source, &mut |item| match item {
        Item::Record { json, origin } => match normalise(&json) {
            Ok(Normalised::Kms { event_id, events }) => accepted.push(Accepted {
                event_id,
                keys: message_keys(&events),
                json,
            }),
            Ok(_) => outcome.skipped += 1,
            Err(e) => {
                outcome.rejected += 1;
                tracing::warn!(origin = %origin, reason = %e, "record rejected");
            }
        },
        Item::Rejected { reason, origin, .. } => {
            outcome.rejected += 1;
            tracing::warn!(origin = %origin, reason = %reason, "input rejected");
        }
        Item::Skipped { what, origin } => {
            outcome.skipped += 1;
            tracing::info!(origin = %origin, what = %what, "no CloudTrail record in this event");
        }
    });
    accepted
}

/// Publishes the KMS records in `payload`; fails (so that the caller retries) when the
/// broker does not acknowledge one.
pub async fn ingest(
    payload: &[u8],
    source: &str,
    producer: &EventLogProducer,
) -> Result<IngestOutcome, KafkaError> {
    let mut outcome = IngestOutcome::default();
    let ingest_time = Timestamp::now().to_string();
    for r in accept(payload, source, &mut outcome) {
        producer
            .publish(&r.event_id, &r.json, &r.keys, source, &ingest_time)
            .await?;
        outcome.published += 1;
    }
    tracing::info!(
        published = outcome.published,
        skipped = outcome.skipped,
        rejected = outcome.rejected,
        source,
        "ingested"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_accepted_counted_or_rejected() {
        let record = r#"{"eventVersion":"1.08","eventID":"e1","eventTime":"2026-11-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","recipientAccountId":"111122223333","errorCode":"KMSInvalidStateException","errorMessage":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is pending deletion.","resources":[{"type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}"#;
        let envelope = |detail: &str, dt: &str| {
            format!(
                r#"{{"version":"0","id":"x","detail-type":"{dt}","source":"aws.kms","account":"111122223333","time":"2026-11-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{detail}}}"#
            )
        };
        let mut o = IngestOutcome::default();
        let a = accept(
            envelope(record, "AWS API Call via CloudTrail").as_bytes(),
            "eb",
            &mut o,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].keys,
            ["arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
        );
        assert_eq!(a[0].json, record, "the record goes on the log unmodified");
        let mut o = IngestOutcome::default();
        let deletion = envelope(
            r#"{"key-id":"1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
            "KMS CMK Deletion",
        );
        assert!(accept(deletion.as_bytes(), "eb", &mut o).is_empty());
        assert_eq!(o.skipped, 1);
        let mut o = IngestOutcome::default();
        let no_id = envelope(
            r#"{"eventSource":"kms.amazonaws.com","eventTime":"2026-11-01T00:00:00Z"}"#,
            "AWS API Call via CloudTrail",
        );
        assert!(accept(no_id.as_bytes(), "eb", &mut o).is_empty());
        assert_eq!(o.rejected, 1);
    }
}
