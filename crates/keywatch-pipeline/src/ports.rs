//! What the pipeline needs from the world besides the database: a pager and a metrics sink.
//! Adapters: SNS and CloudWatch (`keywatch-aws`), a stream (`keywatch` writing to stdout).

use crate::BatchMetrics;
use keywatch_core::Alert;

/// A page the notification service (or the stream) did not accept.
#[derive(Debug, thiserror::Error)]
#[error("page for alert {alert_id} not accepted: {reason}")]
pub struct PageError {
    /// The alert.
    pub alert_id: String,
    /// What the service (or the network, or the stream) said.
    pub reason: String,
}

/// Where pages go. A page counts as delivered once `send` says it was accepted: it is then
/// marked sent and never sent again; a page not accepted stays in the outbox.
#[allow(async_fn_in_trait)]
pub trait Pager {
    /// Sends the pages of `alerts`, in order; returns one result per alert, in the same order.
    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>>;

    /// How many pages one `send` takes at most. The pipeline records what a `send` accepted
    /// before the next, so this is also how many pages a crash between sending and recording
    /// can send again (SNS PublishBatch: ten; a stream: a whole round, one flush). No
    /// default: a pager wrapping another must pass its figure on.
    fn pages_per_send(&self) -> usize;
}

/// Metrics that could not be put.
#[derive(Debug, thiserror::Error)]
#[error("metrics not put: {0}")]
pub struct MetricsError(pub String);

/// Where a batch's counts go.
#[allow(async_fn_in_trait)]
pub trait MetricsSink {
    /// Puts one batch's counts.
    async fn put(&self, metrics: &BatchMetrics) -> Result<(), MetricsError>;
}

/// No metrics (a run paging to a stream, a replay).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    async fn put(&self, _: &BatchMetrics) -> Result<(), MetricsError> {
        Ok(())
    }
}
