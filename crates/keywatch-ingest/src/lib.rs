//! Ingest: CloudTrail records for KMS onto the event log. Accepts whatever the reader
//! accepts (EventBridge envelopes of "AWS API Call via CloudTrail" and "AWS Service Event via
//! CloudTrail", KMS's own "KMS CMK Deletion" event, CloudTrail log files, gzip or not…),
//! validates and normalises each record with the core,
//! and produces the unmodified record keyed by key ARN. An invocation succeeds only when the
//! broker acknowledged every record; invalid records are logged with the reason and counted,
//! not retried.

use keywatch_core::{normalise, Normalised, Timestamp};
use keywatch_kafka::{message_keys, EventLogProducer, KafkaError, KafkaSettings};
use keywatch_reader::{read_stream, Item};

/// Loads the AWS SDK configuration from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// The Kafka settings from KEYWATCH_KAFKA_*; with KEYWATCH_KAFKA_SECRET_ARN, the SASL user
/// name and password come from that Secrets Manager secret (`{"username":…,"password":…}`,
/// as MSK's SASL/SCRAM secrets are). Errors name the variable or the secret at fault.
pub async fn kafka_settings_from_env() -> Result<KafkaSettings, KafkaError> {
    let secret = match std::env::var("KEYWATCH_KAFKA_SECRET_ARN")
        .ok()
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(arn) => Some(sasl_credentials(&sdk_config().await, &arn).await?),
    };
    KafkaSettings::from_env(|k| match (k, &secret) {
        ("KEYWATCH_KAFKA_SASL_USERNAME", Some((user, _))) => Some(user.clone()),
        ("KEYWATCH_KAFKA_SASL_PASSWORD", Some((_, password))) => Some(password.clone()),
        _ => std::env::var(k).ok(),
    })
}

/// Reads `{"username","password"}` from a Secrets Manager secret.
pub async fn sasl_credentials(
    config: &aws_config::SdkConfig,
    secret_arn: &str,
) -> Result<(String, String), KafkaError> {
    #[derive(serde::Deserialize)]
    struct Credentials {
        username: String,
        password: String,
    }
    let bad = |reason: String| {
        KafkaError::Config(format!("KEYWATCH_KAFKA_SECRET_ARN={secret_arn}: {reason}"))
    };
    let out = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| bad(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let c: Credentials =
        serde_json::from_str(out.secret_string().unwrap_or_default()).map_err(|e| {
            bad(format!(
                "not a {{\"username\",\"password\"}} JSON secret: {e}"
            ))
        })?;
    Ok((c.username, c.password))
}

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    /// KMS records acknowledged by the broker.
    pub published: usize,
    /// Records from other services, untracked KMS calls and EventBridge events of other
    /// detail-types.
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

/// Splits a payload (gzip or not) into the KMS records to publish, counting the rest. A
/// payload that cannot be read to its end (a truncated gzip) keeps the records read before
/// the fault and counts the rest as one rejection, logged with the reason.
fn accept(payload: &[u8], source: &str, outcome: &mut IngestOutcome) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    let read = read_stream(payload, source, &mut |item| match item {
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
    if let Err(e) = read {
        outcome.rejected += 1;
        tracing::warn!(origin = %source, reason = %e, "input unreadable past this point");
    }
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
        let a = accept(deletion.as_bytes(), "eb", &mut o);
        assert_eq!(a.len(), 1, "KMS's deletion event goes on the log");
        assert_eq!(
            a[0].keys,
            ["arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
        );
        assert_eq!(o.skipped, 0);
        // A gzipped log file, truncated: the records before the fault are kept, the fault is
        // counted.
        let file = format!(r#"{{"Records":[{record}]}}"#);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, file.as_bytes()).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut o = IngestOutcome::default();
        assert_eq!(accept(&gz, "s3", &mut o).len(), 1, "gzip is read");
        let mut o = IngestOutcome::default();
        assert!(accept(&gz[..gz.len() / 2], "s3", &mut o).is_empty());
        assert_eq!(o.rejected, 1, "a truncated object is reported, not dropped");
        let mut o = IngestOutcome::default();
        let no_id = envelope(
            r#"{"eventSource":"kms.amazonaws.com","eventTime":"2026-11-01T00:00:00Z"}"#,
            "AWS API Call via CloudTrail",
        );
        assert!(accept(no_id.as_bytes(), "eb", &mut o).is_empty());
        assert_eq!(o.rejected, 1);
    }
}
