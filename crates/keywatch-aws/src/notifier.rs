//! Drains the alert outbox: claims each unsent alert (one process pages it, however many
//! drain the outbox), sends it and marks it sent once SNS accepted it.
//! An alert SNS refused stays in the outbox for the next call: never lost. Once SNS accepted
//! it, marking it sent is retried (a throttled table, a moment's outage); only if the store
//! stays unavailable through all of that is the page sent again later (at least once).

use crate::SnsPager;
use keywatch_core::Timestamp;
use keywatch_store::{Projector, Store, StoreError};

/// How many outbox alerts one call sends at most.
pub const OUTBOX_BATCH: usize = 500;

/// How long a delivery holds its claim on an alert (milliseconds): another process sends the
/// page only after that, should this one die between claiming and sending.
pub const SENDING_CLAIM_MILLIS: i64 = 120_000;

/// Attempts at recording a page SNS accepted as sent, 100 ms apart and doubling (≈ 3 s).
pub const MARK_SENT_ATTEMPTS: u32 = 6;

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
            // Several processes may drain one outbox: only the one that claims the alert
            // pages, and an alert already sent is only dropped from the outbox.
            let until = now.plus_millis(SENDING_CLAIM_MILLIS);
            if !projector.claim_for_sending(&alert.alert_id, now, until)? {
                continue;
            }
            match self.pager.send(&alert).await {
                Ok(()) => {
                    mark_sent(projector, &alert.alert_id, now).await?;
                    delivery.sent += 1;
                }
                Err(e) => {
                    tracing::warn!(alert_id = %alert.alert_id, error = %e, "page not sent; it stays in the outbox");
                    if let Err(e) = projector.release_claim(&alert.alert_id) {
                        tracing::warn!(alert_id = %alert.alert_id, error = %e, "claim not released; the page is tried again when it expires");
                    }
                    delivery.failed += 1;
                }
            }
        }
        Ok(delivery)
    }
}

/// Records a page SNS accepted, retrying the store: a page marked sent is never sent again.
async fn mark_sent<S: Store>(
    projector: &mut Projector<S>,
    alert_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 1..MARK_SENT_ATTEMPTS {
        match projector.mark_sent(&[alert_id], now) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(%alert_id, error = %e, retry_in = ?pause, "page sent but not yet marked sent; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    projector.mark_sent(&[alert_id], now).inspect_err(|e| {
        tracing::error!(%alert_id, error = %e, "page sent but not marked sent: it will be sent again");
    })
}
