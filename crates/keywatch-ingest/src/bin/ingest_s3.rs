//! `keywatch-ingest-s3`: S3 ObjectCreated notifications for CloudTrail log files (backfill,
//! and organisations that route KMS usage through S3 rather than EventBridge). Reads each
//! object (CloudTrail writes them gzipped, `.json.gz`; plain JSON is read too) and puts its
//! KMS records on the event log like `keywatch-ingest`. Fails the invocation when an object
//! cannot be fetched or the broker does not acknowledge, so that the notification is
//! retried; an object whose content is damaged is logged and counted as rejected.

use aws_lambda_events::event::s3::S3Event;
use keywatch_ingest::{ingest, IngestOutcome};
use keywatch_kafka::EventLogProducer;
use lambda_runtime::{service_fn, Error, LambdaEvent};

/// Largest object read (a CloudTrail log file is far smaller).
const MAX_OBJECT: i64 = 512 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = keywatch_ingest::kafka_settings_from_env().await?;
    let producer = EventLogProducer::new(&settings)?;
    let config = keywatch_ingest::sdk_config().await;
    // A custom endpoint (an S3-compatible server) is addressed by path, not by bucket host.
    let s3_config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_config);
    let (producer, s3) = (&producer, &s3);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        let mut total = IngestOutcome::default();
        for record in event.payload.records {
            let (Some(bucket), Some(key)) = (record.s3.bucket.name, record.s3.object.key) else {
                total.rejected += 1;
                tracing::warn!(
                    event_name = record.event_name.as_deref().unwrap_or_default(),
                    "S3 notification record without a bucket or object key: nothing to read"
                );
                continue;
            };
            // S3 event keys are URL-encoded (spaces as '+').
            let key = percent_decode(&key.replace('+', " "));
            let object = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    Error::from(format!(
                        "cannot read s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    ))
                })?;
            if object.content_length().unwrap_or(0) > MAX_OBJECT {
                return Err(Error::from(format!(
                    "s3://{bucket}/{key} is larger than {MAX_OBJECT} bytes"
                )));
            }
            let bytes = object.body.collect().await?.into_bytes();
            let outcome = ingest(&bytes, &format!("s3://{bucket}/{key}"), producer).await?;
            total.published += outcome.published;
            total.skipped += outcome.skipped;
            total.rejected += outcome.rejected;
        }
        Ok::<_, Error>(total)
    }))
    .await
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
