//! `keywatch-projector`: the target of the Kafka event source mapping (values base64). A
//! thin driver of the pipeline, built once per cold start so that its caches (timelines,
//! alerts known raised) live across invocations: each batch is decoded, folded into the
//! timelines in DynamoDB, its alerts recorded in the outbox and paged through SNS, and its
//! counts put to CloudWatch. It fails the invocation (so that the batch is retried, and then
//! goes to the on-failure destination) only when DynamoDB fails; a page SNS refuses waits in
//! the outbox for the next invocation or sweep.
//! Configuration: KEYWATCH_TABLE, KEYWATCH_SNS_TOPIC_ARN, KEYWATCH_SUPPRESS_MINUTES.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use keywatch_aws::AwsPipeline;
use keywatch_core::Timestamp;
use keywatch_pipeline::Payload;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use tokio::sync::Mutex;

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

async fn handle(pipeline: &Mutex<AwsPipeline>, event: KafkaEvent) -> Result<Outcome, Error> {
    // Each record of the event is consumed as it is decoded, so that its base64 text is
    // freed before the next: a batch near Lambda's 6 MB payload is not held twice.
    let payloads = event.records.into_values().flatten().map(|r| Payload {
        partition: r.partition,
        offset: r.offset,
        value: r
            .value
            .map(|v| base64::engine::general_purpose::STANDARD.decode(v))
            .transpose()
            .map(|v| v.unwrap_or_default().into())
            .map_err(|e| format!("value is not base64: {e}")),
    });
    // One invocation at a time per instance: the lock is never contended.
    let report = pipeline
        .lock()
        .await
        .handle_batch(payloads, Timestamp::now())
        .await
        .inspect_err(|e| {
            // The event source mapping retries the batch, then sends it to the on-failure
            // destination; a failure that is not retryable will end there.
            tracing::error!(error = %e, retryable = e.is_retryable(), "batch failed");
        })?;
    Ok(Outcome {
        records: report.payloads,
        new_records: report.new_records,
        skipped: report.skipped,
        rejected: report.rejected,
        alerts: report.alerts,
        sent: report.delivery.sent,
        left_in_outbox: report.delivery.failed,
    })
}

// One thread: an invocation is handled at a time, and the database port awaits DynamoDB
// rather than blocking (the end-to-end test would panic on a call that blocked in place).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let pipeline = Mutex::new(keywatch_aws::aws_pipeline_from_env().await?);
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KafkaEvent>| async move { handle(pipeline, event.payload).await },
    ))
    .await
}
