//! CloudWatch metrics, one PutMetricData call per batch.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use keywatch_core::{Alert, AlertKind};
use std::collections::BTreeMap;

/// The metric namespace.
pub const NAMESPACE: &str = "Keywatch";
/// PutMetricData takes at most this many data points a call.
const MAX_DATUMS: usize = 1000;

/// What one batch counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchMetrics {
    /// Pending-deletion uses, by (account, region, key id).
    pub pending_deletion_key_usage: BTreeMap<(String, String, String), u64>,
    /// Alerts raised, by kind.
    pub alerts_raised: BTreeMap<AlertKind, u64>,
    /// Records rejected as invalid.
    pub records_rejected: u64,
}

impl BatchMetrics {
    /// Counts the alerts raised by a batch.
    pub fn count_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            *self.alerts_raised.entry(a.kind).or_default() += 1;
            if a.kind == AlertKind::PendingDeletionKeyUsed {
                let key_id = a
                    .key_arn
                    .rsplit_once("key/")
                    .map_or("", |(_, id)| id)
                    .to_owned();
                *self
                    .pending_deletion_key_usage
                    .entry((a.account.clone(), a.region.clone(), key_id))
                    .or_default() += a.uses_in_window.unwrap_or(1);
            }
        }
    }

    fn datums(&self) -> Vec<MetricDatum> {
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
        for ((account, region, key_id), n) in &self.pending_deletion_key_usage {
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
        for (kind, n) in &self.alerts_raised {
            out.push(datum("AlertsRaised", *n, vec![dim("Kind", kind.as_str())]));
        }
        if self.records_rejected > 0 {
            out.push(datum("RecordsRejected", self.records_rejected, vec![]));
        }
        out
    }
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

    /// Puts the batch's metrics: one call (more only past 1,000 data points).
    pub async fn put(&self, metrics: &BatchMetrics) -> Result<(), String> {
        let datums = metrics.datums();
        for chunk in datums.chunks(MAX_DATUMS) {
            self.client
                .put_metric_data()
                .namespace(NAMESPACE)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string())?;
        }
        Ok(())
    }
}
