//! `keywatch-sweeper`: run by EventBridge Scheduler every 15 minutes. A thin driver of the
//! pipeline (built once per cold start): raises the time-driven alerts (`deletion_imminent`,
//! `deletion_overdue`) of the keys pending deletion and sends whatever is still in the
//! outbox. Configuration: KEYWATCH_TABLE, KEYWATCH_SNS_TOPIC_ARN.

// The release build's layout of the handler's future (the pipeline's sweep and delivery,
// the SDK's calls within) nests deeper than the default 128.
#![recursion_limit = "256"]

use keywatch_core::Timestamp;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use tokio::sync::Mutex;

#[derive(serde::Serialize)]
struct Outcome {
    alerts: usize,
    sent: usize,
    left_in_outbox: usize,
}

// One thread: an invocation is handled at a time, and the database port awaits DynamoDB
// rather than blocking (the end-to-end test would panic on a call that blocked in place).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let pipeline = Mutex::new(keywatch_aws::aws_pipeline_from_env().await?);
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde::de::IgnoredAny>| async move {
            let (alerts, delivery) = pipeline.lock().await.handle_sweep(Timestamp::now()).await?;
            Ok::<_, Error>(Outcome {
                alerts: alerts.len(),
                sent: delivery.sent,
                left_in_outbox: delivery.failed,
            })
        },
    ))
    .await
}
