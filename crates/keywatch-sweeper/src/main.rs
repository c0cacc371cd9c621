//! `keywatch-sweeper`: run by EventBridge Scheduler every 15 minutes. Raises the time-driven
//! alerts (`deletion_imminent`, `deletion_overdue`) of the keys pending deletion and sends
//! whatever is still in the outbox. Configuration: KEYWATCH_TABLE, KEYWATCH_SNS_TOPIC_ARN.

use keywatch_aws::{AlertingConfig, BatchMetrics, DynamoStore, Metrics, Notifier, SnsPager};
use keywatch_core::{AlertConfig, Timestamp};
use keywatch_store::Projector;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[derive(serde::Serialize)]
struct Outcome {
    alerts: usize,
    sent: usize,
    left_in_outbox: usize,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AlertingConfig::from_env(|k| std::env::var(k).ok())?;
    let sdk = keywatch_aws::sdk_config().await;
    let notifier = Notifier::new(SnsPager::new(&sdk, &config.sns_topic_arn));
    let metrics = Metrics::new(&sdk);
    let (config, sdk, notifier, metrics) = (&config, &sdk, &notifier, &metrics);
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde::de::IgnoredAny>| async move {
            let now = Timestamp::now();
            let store = DynamoStore::new(sdk, &config.table)?;
            let mut projector = Projector::new(
                store,
                AlertConfig {
                    suppress_minutes: config.suppress_minutes,
                },
            );
            let alerts = projector.sweep(now)?;
            let mut counts = BatchMetrics::default();
            counts.count_alerts(&alerts);
            let delivery = notifier.deliver(&mut projector, now).await?;
            if let Err(e) = metrics.put(&counts).await {
                tracing::warn!(error = %e, "metrics not put");
            }
            tracing::info!(
                alerts = alerts.len(),
                sent = delivery.sent,
                left = delivery.failed,
                "swept"
            );
            Ok::<_, Error>(Outcome {
                alerts: alerts.len(),
                sent: delivery.sent,
                left_in_outbox: delivery.failed,
            })
        },
    ))
    .await
}
