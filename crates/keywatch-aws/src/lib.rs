//! keywatch's AWS adapters of the pipeline's ports: SNS pages ([`SnsPager`], a
//! `keywatch_pipeline::Pager`), CloudWatch metrics ([`Metrics`], a `MetricsSink`) and the
//! DynamoDB database ([`DynamoDatabase`], a `keywatch_database::Database`). Endpoints come from the SDK's usual
//! configuration, including `AWS_ENDPOINT_URL` (which the tests point at a moto server).

mod config;
mod dynamo;
mod metrics;
mod pager;

pub use config::{AlertingConfig, ConfigError};
pub use dynamo::DynamoDatabase;
pub use metrics::{Metrics, NAMESPACE};
pub use pager::{SnsPager, MAX_BATCH_ENTRIES};

/// The pipeline as the deployed functions run it: the DynamoDB database, SNS pages and
/// CloudWatch metrics, all from `config`'s table and topic.
pub type AwsPipeline = keywatch_pipeline::Pipeline<DynamoDatabase, SnsPager, Metrics>;

/// Builds the deployed functions' pipeline (once per cold start).
pub fn aws_pipeline(sdk: &aws_config::SdkConfig, config: &AlertingConfig) -> AwsPipeline {
    keywatch_pipeline::Pipeline::new(
        DynamoDatabase::new(sdk, &config.table),
        keywatch_core::AlertConfig {
            suppress_minutes: config.suppress_minutes,
        },
        SnsPager::new(sdk, &config.sns_topic_arn),
        Metrics::new(sdk),
    )
}

/// The deployed functions' pipeline from the process's environment: the table, topic and
/// suppression window ([`AlertingConfig::from_env`]) and the SDK's usual configuration.
pub async fn aws_pipeline_from_env() -> Result<AwsPipeline, ConfigError> {
    let config = AlertingConfig::from_env(|k| std::env::var(k).ok())?;
    Ok(aws_pipeline(&sdk_config().await, &config))
}

/// Loads the AWS SDK configuration from the environment, as every AWS tool does.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// The deployed pipeline's batch and sweep are `Send` futures: a driver may spawn them
    /// on any runtime (the port's futures carry no bound of their own: SQLite's are not).
    #[test]
    fn the_deployed_pipelines_futures_are_send() {
        fn check(pipeline: &mut AwsPipeline) {
            let now = keywatch_core::Timestamp::now();
            let batch = pipeline.handle_batch(std::iter::empty(), now);
            is_send(&batch);
            drop(batch);
            is_send(&pipeline.handle_sweep(now));
        }
        let _ = check;
    }
}
