//! Ingest: CloudTrail records for KMS onto the event log. Accepts whatever the reader
//! accepts (EventBridge envelopes of "AWS API Call via CloudTrail" and "AWS Service Event via
//! CloudTrail", KMS's own "KMS CMK Deletion" event, CloudTrail log files, gzip or not…),
//! validates and normalises each record with the core,
//! and produces the unmodified record keyed by key ARN. An invocation succeeds only when the
//! broker acknowledged every record; invalid records are logged with the reason and counted,
//! not retried.

use keywatch_core::{normalise_found, Normalised, Timestamp};
use keywatch_kafka::{message_keys, EventLogProducer, KafkaError, KafkaSettings};
use keywatch_reader::{read_stream_limited_as, Item, Limits};

/// Loads the AWS SDK configuration from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// A Secrets Manager secret that supplies Kafka settings, in the shape the event source
/// mapping reads for the same authentication, so one secret serves both.
struct KafkaSecret {
    /// The variable holding the secret's ARN.
    arn_var: &'static str,
    /// The JSON the secret holds, for errors.
    shape: &'static str,
    /// Each JSON field, the KEYWATCH_KAFKA_* setting it supplies, and whether it is required.
    fields: &'static [(&'static str, &'static str, bool)],
}

const KAFKA_SECRETS: [KafkaSecret; 3] = [
    // SASL/SCRAM, as MSK's and the mapping's SASL_SCRAM_*_AUTH secrets.
    KafkaSecret {
        arn_var: "KEYWATCH_KAFKA_SECRET_ARN",
        shape: r#"{"username","password"}"#,
        fields: &[
            ("username", "KEYWATCH_KAFKA_SASL_USERNAME", true),
            ("password", "KEYWATCH_KAFKA_SASL_PASSWORD", true),
        ],
    },
    // Mutual TLS, as the mapping's CLIENT_CERTIFICATE_TLS_AUTH secret.
    KafkaSecret {
        arn_var: "KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN",
        shape: r#"{"certificate","privateKey","privateKeyPassword"?} (PEM)"#,
        fields: &[
            ("certificate", "KEYWATCH_KAFKA_SSL_CERTIFICATE_PEM", true),
            ("privateKey", "KEYWATCH_KAFKA_SSL_KEY_PEM", true),
            (
                "privateKeyPassword",
                "KEYWATCH_KAFKA_SSL_KEY_PASSWORD",
                false,
            ),
        ],
    },
    // The brokers' private CA, as the mapping's SERVER_ROOT_CA_CERTIFICATE secret.
    KafkaSecret {
        arn_var: "KEYWATCH_KAFKA_ROOT_CA_SECRET_ARN",
        shape: r#"{"certificate"} (PEM)"#,
        fields: &[("certificate", "KEYWATCH_KAFKA_SSL_CA_PEM", true)],
    },
];

/// The Kafka settings from the process environment: [`kafka_settings`] with the AWS
/// configuration loaded only when a secret is named.
pub async fn kafka_settings_from_env() -> Result<KafkaSettings, KafkaError> {
    let env = |k: &str| std::env::var(k).ok();
    let named = KAFKA_SECRETS
        .iter()
        .any(|s| env(s.arn_var).is_some_and(|a| !a.trim().is_empty()));
    let config = if named {
        Some(sdk_config().await)
    } else {
        None
    };
    kafka_settings(config.as_ref(), env).await
}

/// The Kafka settings from KEYWATCH_KAFKA_* read through `env`. Secrets Manager secrets may
/// supply the credentials: KEYWATCH_KAFKA_SECRET_ARN the SASL user name and password
/// (`{"username","password"}`), KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN the client
/// certificate for mutual TLS (`{"certificate","privateKey","privateKeyPassword"?}`, PEM),
/// KEYWATCH_KAFKA_ROOT_CA_SECRET_ARN the brokers' CA (`{"certificate"}`): the shapes the
/// event source mapping reads. Errors name the variable or the secret at fault, never a
/// secret's value.
pub async fn kafka_settings(
    config: Option<&aws_config::SdkConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<KafkaSettings, KafkaError> {
    let mut from_secrets: Vec<(&'static str, String)> = Vec::new();
    for secret in &KAFKA_SECRETS {
        let Some(arn) = env(secret.arn_var).filter(|a| !a.trim().is_empty()) else {
            continue;
        };
        let config = config.ok_or_else(|| {
            KafkaError::Config(format!(
                "{} is set but no AWS configuration was loaded",
                secret.arn_var
            ))
        })?;
        from_secrets.extend(read_kafka_secret(config, secret, &arn).await?);
    }
    KafkaSettings::from_env(|k| {
        from_secrets
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
            .or_else(|| env(k))
    })
}

async fn read_kafka_secret(
    config: &aws_config::SdkConfig,
    secret: &KafkaSecret,
    arn: &str,
) -> Result<Vec<(&'static str, String)>, KafkaError> {
    let bad = |reason: String| KafkaError::Config(format!("{}={arn}: {reason}", secret.arn_var));
    let out = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| bad(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(out.secret_string().unwrap_or_default())
            .map_err(|e| bad(format!("not a {} JSON secret: {e}", secret.shape)))?;
    let mut settings = Vec::new();
    for &(field, setting, required) in secret.fields {
        match value.get(field).and_then(serde_json::Value::as_str) {
            Some(v) => settings.push((setting, v.to_owned())),
            None if required => {
                return Err(bad(format!(
                    "the secret has no {field:?} string (expected {})",
                    secret.shape
                )))
            }
            None => {}
        }
    }
    Ok(settings)
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
    let read = read_stream_limited_as(payload, source, Limits::default(), &mut |item| match item {
        Item::Record {
            json,
            origin,
            parsed,
        } => match normalise_found(parsed, &json) {
            Ok(Normalised::Kms { event_id, events }) => accepted.push(Accepted {
                event_id,
                keys: message_keys(&events),
                json: json.into_owned(),
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
