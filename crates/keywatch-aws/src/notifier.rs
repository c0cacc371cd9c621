//! Drains the alert outbox: sends each unsent alert and marks it sent once SNS accepted it.
//! An alert SNS refused stays in the outbox for the next call: never lost, never sent twice
//! once accepted.

use crate::SnsPager;
use keywatch_core::Timestamp;
use keywatch_store::{Projector, Store, StoreError};

/// How many outbox alerts one call sends at most.
pub const OUTBOX_BATCH: usize = 500;

/// What one delivery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Alerts SNS accepted.
    pub sent: usize,
    /// Alerts that stay in the outbox (SNS refused or was unreachable).
    pub failed: usize,
}

/// Sends the outbox through a pager.
#[derive(Clone, Debug)]
pub struct Notifier {
    pager: SnsPager,
}

impl Notifier {
    /// A notifier paging through `pager`.
    pub fn new(pager: SnsPager) -> Self {
        Notifier { pager }
    }

    /// Sends what is in the outbox (oldest first) and marks what SNS accepted as sent.
    pub async fn deliver<S: Store>(
        &self,
        projector: &mut Projector<S>,
        now: Timestamp,
    ) -> Result<Delivery, StoreError> {
        let mut delivery = Delivery::default();
        for alert in projector.unsent(OUTBOX_BATCH)? {
            match self.pager.send(&alert).await {
                Ok(()) => {
                    projector.mark_sent(&[alert.alert_id.as_str()], now)?;
                    delivery.sent += 1;
                }
                Err(e) => {
                    tracing::warn!(alert_id = %alert.alert_id, error = %e, "page not sent; it stays in the outbox");
                    delivery.failed += 1;
                }
            }
        }
        Ok(delivery)
    }
}
