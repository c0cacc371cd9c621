//! keywatch's AWS adapters: thin shells that send what the core decided. SNS pages
//! ([`SnsPager`]), CloudWatch metrics ([`Metrics`]) and the DynamoDB store ([`DynamoStore`]). Endpoints come from the SDK's usual
//! configuration, including `AWS_ENDPOINT_URL` (which the tests point at a moto server).

mod config;
mod dynamo;
mod metrics;
mod notifier;
mod pager;

pub use config::{AlertingConfig, ConfigError};
pub use dynamo::DynamoStore;
pub use metrics::{BatchMetrics, Metrics, NAMESPACE};
pub use notifier::{Delivery, Notifier, OUTBOX_BATCH};
pub use pager::{PageError, SnsPager};

/// Loads the AWS SDK configuration from the environment, as every AWS tool does.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}
