//! CloudWatch metrics, one PutMetricData call per batch.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use keywatch_pipeline::{BatchMetrics, MetricsError, MetricsSink};
use std::collections::BTreeMap;

/// The metric namespace.
pub const NAMESPACE: &str = "Keywatch";
/// PutMetricData takes at most this many data points a call.
const MAX_DATUMS: usize = 1000;

/// The CloudWatch data points of a batch's counts.
fn datums(metrics: &BatchMetrics) -> Vec<MetricDatum> {
    let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
    let datum = |name: &str, value: u64, dims: Vec<Dimension>| {
        MetricDatum::builder()
            .metric_name(name)
            .value(value as f64)
            .unit(StandardUnit::Count)
            .set_dimensions(Some(dims))
            .build()
    };
    let mut out = Vec::new();
    let mut by_place: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for ((account, region, key_id), n) in &metrics.pending_deletion_key_usage {
        *by_place.entry((account, region)).or_default() += n;
        out.push(datum(
            "PendingDeletionKeyUsage",
            *n,
            vec![dim("KeyId", key_id)],
        ));
    }
    // Undimensioned: what the CloudWatch alarm in infra/template.yaml watches.
    let total: u64 = by_place.values().sum();
    if total > 0 {
        out.push(datum("PendingDeletionKeyUsage", total, vec![]));
    }
    for ((account, region), n) in by_place {
        out.push(datum(
            "PendingDeletionKeyUsage",
            n,
            vec![dim("Account", account), dim("Region", region)],
        ));
    }
    for (kind, n) in &metrics.alerts_raised {
        out.push(datum("AlertsRaised", *n, vec![dim("Kind", kind.as_str())]));
    }
    if metrics.records_rejected > 0 {
        out.push(datum("RecordsRejected", metrics.records_rejected, vec![]));
    }
    out
}

/// Publishes [`BatchMetrics`] to CloudWatch.
#[derive(Clone, Debug)]
pub struct Metrics {
    client: aws_sdk_cloudwatch::Client,
}

impl Metrics {
    /// A publisher using `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Metrics {
            client: aws_sdk_cloudwatch::Client::new(config),
        }
    }
}

impl MetricsSink for Metrics {
    /// Puts the batch's metrics: one call (more only past 1,000 data points).
    async fn put(&self, metrics: &BatchMetrics) -> Result<(), MetricsError> {
        let datums = datums(metrics);
        for chunk in datums.chunks(MAX_DATUMS) {
            self.client
                .put_metric_data()
                .namespace(NAMESPACE)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    MetricsError(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string())
                })?;
        }
        Ok(())
    }
}
