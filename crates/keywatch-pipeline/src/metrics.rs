//! What a batch counts for the metrics sink.

use keywatch_core::{Alert, AlertKind};
use std::collections::BTreeMap;

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
                let key_id = a.key_arn.key_id().to_owned();
                *self
                    .pending_deletion_key_usage
                    .entry((a.account.clone(), a.region.clone(), key_id))
                    .or_default() += a.uses_in_window.unwrap_or(1);
            }
        }
    }

    /// Whether there is nothing to put.
    pub fn is_empty(&self) -> bool {
        self == &BatchMetrics::default()
    }
}
