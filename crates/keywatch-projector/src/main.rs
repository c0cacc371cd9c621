//! `keywatch-projector`: the target of the Kafka event source mapping (batches of up to
//! 10,000 records, values base64). Folds them into the timelines in DynamoDB, records the
//! alerts in the outbox, pages through SNS and puts the metrics. It fails the invocation
//! (so that the batch is retried, and then goes to the on-failure destination) only when the
//! store fails; a page SNS refuses waits in the outbox for the next invocation or sweep.
//! Configuration: KEYWATCH_TABLE, KEYWATCH_SNS_TOPIC_ARN, KEYWATCH_SUPPRESS_MINUTES.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use keywatch_aws::{AlertingConfig, BatchMetrics, DynamoStore, Metrics, Notifier, SnsPager};
use keywatch_core::{normalise, AlertConfig, Normalised, Timestamp};
use keywatch_store::{NormalisedRecord, Projector};
use lambda_runtime::{service_fn, Error, LambdaEvent};

/// What one invocation did.
#[derive(serde::Serialize)]
struct Outcome {
    records: usize,
    new_records: usize,
    skipped: usize,
    rejected: u64,
    alerts: usize,
    sent: usize,
    left_in_outbox: usize,
}

struct Function {
    config: AlertingConfig,
    sdk: aws_config::SdkConfig,
    notifier: Notifier,
    metrics: Metrics,
}

async fn handle(f: &Function, event: KafkaEvent) -> Result<Outcome, Error> {
    let now = Timestamp::now();
    let mut counts = BatchMetrics::default();
    let mut records = Vec::new();
    let mut total = 0;
    let mut skipped = 0;
    for (partition, batch) in &event.records {
        for r in batch {
            total += 1;
            let decoded = r
                .value
                .as_deref()
                .map(|v| base64::engine::general_purpose::STANDARD.decode(v))
                .transpose()
                .map_err(|e| e.to_string())
                .and_then(|v| String::from_utf8(v.unwrap_or_default()).map_err(|e| e.to_string()));
            match decoded.map(|json| (normalise(&json), json)) {
                Ok((Ok(Normalised::Kms { event_id, events }), json)) => {
                    records.push(NormalisedRecord::new(event_id, &json, events))
                }
                Ok((Ok(_), _)) => {
                    skipped += 1;
                    tracing::debug!(partition = %partition, offset = r.offset, "not a KMS record keywatch tracks; skipped");
                }
                Ok((Err(e), _)) => {
                    counts.records_rejected += 1;
                    tracing::warn!(partition = %partition, offset = r.offset, reason = %e, "record rejected");
                }
                Err(e) => {
                    counts.records_rejected += 1;
                    tracing::warn!(partition = %partition, offset = r.offset, reason = %e, "value is not base64 UTF-8");
                }
            }
        }
    }
    let store = DynamoStore::new(&f.sdk, &f.config.table)?;
    let mut projector = Projector::new(
        store,
        AlertConfig {
            suppress_minutes: f.config.suppress_minutes,
        },
    );
    let outcome = projector.process(&records, now)?;
    counts.count_alerts(&outcome.alerts);
    let delivery = f.notifier.deliver(&mut projector, now).await?;
    if let Err(e) = f.metrics.put(&counts).await {
        tracing::warn!(error = %e, "metrics not put");
    }
    tracing::info!(
        records = total,
        new = outcome.new_records,
        skipped,
        rejected = counts.records_rejected,
        alerts = outcome.alerts.len(),
        sent = delivery.sent,
        left = delivery.failed,
        "batch projected"
    );
    Ok(Outcome {
        records: total,
        new_records: outcome.new_records,
        skipped,
        rejected: counts.records_rejected,
        alerts: outcome.alerts.len(),
        sent: delivery.sent,
        left_in_outbox: delivery.failed,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AlertingConfig::from_env(|k| std::env::var(k).ok())?;
    let sdk = keywatch_aws::sdk_config().await;
    let f = Function {
        notifier: Notifier::new(SnsPager::new(&sdk, &config.sns_topic_arn)),
        metrics: Metrics::new(&sdk),
        config,
        sdk,
    };
    let f = &f;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KafkaEvent>| async move { handle(f, event.payload).await },
    ))
    .await
}
