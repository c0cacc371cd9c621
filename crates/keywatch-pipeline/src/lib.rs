//! keywatch's application layer: the one batch use case every driver runs. A batch of the
//! event log is decoded and normalised ([`decode_batch`]), projected into the database
//! (the [`Projector`] over a [`Database`]), its alerts paged from the outbox through a
//! [`Pager`], and its counts put to a [`MetricsSink`]. The time-driven alerts come from a
//! sweep. `keywatch run`, `keywatch replay` and the projector and sweeper Lambda functions
//! build one [`Pipeline`] per process (per cold start) and drive it, so that its caches live
//! across batches and the use case is written once.

mod decode;
mod metrics;
mod ports;

pub use decode::{decode_batch, DecodedBatch, Payload};
pub use metrics::BatchMetrics;
pub use ports::{MetricsError, MetricsSink, NoMetrics, PageError, Pager};

use keywatch_core::{Alert, AlertConfig, Timestamp};
use keywatch_database::{BatchOutcome, Database, DatabaseError, NormalisedRecord, Projector};

/// How many outbox alerts one delivery round takes.
pub const OUTBOX_BATCH: usize = 500;

/// How long a delivery holds its claim on an alert (milliseconds): another process sends the
/// page only after that, should this one die between claiming and sending.
pub const SENDING_CLAIM_MILLIS: i64 = 120_000;

/// Attempts at recording pages the pager accepted as sent, 100 ms apart and doubling (≈ 3 s).
pub const MARK_SENT_ATTEMPTS: u32 = 6;

/// What one delivery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Pages the pager accepted.
    pub sent: usize,
    /// Pages that stay in the outbox (refused, or the service unreachable).
    pub failed: usize,
}

/// What one batch did, end to end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Payloads in the batch.
    pub payloads: usize,
    /// Records new to the event log.
    pub new_records: usize,
    /// Records from other services or untracked KMS calls.
    pub skipped: usize,
    /// Payloads rejected.
    pub rejected: u64,
    /// Alerts raised for the first time.
    pub alerts: usize,
    /// What the delivery after it did.
    pub delivery: Delivery,
}

/// The use case over a database `S`, a pager `P` and a metrics sink `M`.
pub struct Pipeline<S: Database, P: Pager, M: MetricsSink> {
    projector: Projector<S>,
    pager: P,
    metrics: M,
}

impl<S: Database, P: Pager, M: MetricsSink> Pipeline<S, P, M> {
    /// A pipeline over `database` with rule settings `config`, paging through `pager` and
    /// counting into `metrics`.
    pub fn new(database: S, config: AlertConfig, pager: P, metrics: M) -> Self {
        Pipeline {
            projector: Projector::new(database, config),
            pager,
            metrics,
        }
    }

    /// The projector (and through it the database), for reading.
    pub fn projector(&self) -> &Projector<S> {
        &self.projector
    }

    /// The projector, to set how it saves timelines ([`Projector::defer_timeline_saves`]).
    pub fn projector_mut(&mut self) -> &mut Projector<S> {
        &mut self.projector
    }

    /// The pager.
    pub fn pager_mut(&mut self) -> &mut P {
        &mut self.pager
    }

    /// The metrics sink.
    pub fn metrics(&self) -> &M {
        &self.metrics
    }

    /// The whole use case for one batch of the event log: decode, project, deliver what the
    /// outbox holds, put the counts. Fails only when the database does (the batch is then
    /// to be retried); a page refused waits in the outbox, metrics not put are logged.
    pub async fn handle_batch<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = Payload<'a>>,
        now: Timestamp,
    ) -> Result<BatchReport, DatabaseError> {
        let decoded = decode_batch(payloads);
        let outcome = self.project(&decoded.records, now).await?;
        let mut counts = BatchMetrics {
            records_rejected: decoded.rejected,
            ..BatchMetrics::default()
        };
        counts.count_alerts(&outcome.alerts);
        let delivery = self.deliver(now).await?;
        self.put_metrics(&counts).await;
        let report = BatchReport {
            payloads: decoded.payloads,
            new_records: outcome.new_records,
            skipped: decoded.skipped,
            rejected: decoded.rejected,
            alerts: outcome.alerts.len(),
            delivery,
        };
        tracing::info!(
            payloads = report.payloads,
            new = report.new_records,
            skipped = report.skipped,
            rejected = report.rejected,
            alerts = report.alerts,
            sent = report.delivery.sent,
            left = report.delivery.failed,
            "batch projected"
        );
        Ok(report)
    }

    /// The time-driven use case: sweep as of `now`, deliver the outbox, put the counts.
    /// Returns the alerts the sweep raised and the delivery.
    pub async fn handle_sweep(
        &mut self,
        now: Timestamp,
    ) -> Result<(Vec<Alert>, Delivery), DatabaseError> {
        let alerts = self.sweep(now).await?;
        let mut counts = BatchMetrics::default();
        counts.count_alerts(&alerts);
        let delivery = self.deliver(now).await?;
        self.put_metrics(&counts).await;
        tracing::info!(
            alerts = alerts.len(),
            sent = delivery.sent,
            left = delivery.failed,
            "swept"
        );
        Ok((alerts, delivery))
    }

    /// Projects records into the database (see [`Projector::process`]).
    pub async fn project(
        &mut self,
        records: &[NormalisedRecord],
        now: Timestamp,
    ) -> Result<BatchOutcome, DatabaseError> {
        self.projector.process(records, now).await
    }

    /// Raises the time-driven alerts as of `now` (see [`Projector::sweep`]).
    pub async fn sweep(&mut self, now: Timestamp) -> Result<Vec<Alert>, DatabaseError> {
        self.projector.sweep(now).await
    }

    /// Puts a batch's counts, unless there are none; a failure is logged, not returned (the
    /// counts are not worth failing a batch for).
    pub async fn put_metrics(&self, counts: &BatchMetrics) {
        if counts.is_empty() {
            return;
        }
        if let Err(e) = self.metrics.put(counts).await {
            tracing::warn!(error = %e, "metrics not put");
        }
    }

    /// Delivers one round of the outbox (up to [`OUTBOX_BATCH`] alerts, oldest first).
    /// Several processes may drain one outbox: each alert is claimed first, and only the
    /// process that claims it pages; an alert already sent only leaves the outbox.
    pub async fn deliver(&mut self, now: Timestamp) -> Result<Delivery, DatabaseError> {
        let unsent = self.projector.unsent(OUTBOX_BATCH).await?;
        self.deliver_alerts(unsent, now).await
    }

    /// Delivers the whole outbox: rounds until it is empty, a page is refused, or a round
    /// sends nothing (the rest is claimed by another process).
    pub async fn deliver_all(&mut self, now: Timestamp) -> Result<Delivery, DatabaseError> {
        let mut total = Delivery::default();
        loop {
            let unsent = self.projector.unsent(OUTBOX_BATCH).await?;
            let full = unsent.len() == OUTBOX_BATCH;
            let round = self.deliver_alerts(unsent, now).await?;
            total.sent += round.sent;
            total.failed += round.failed;
            if !full || round.failed > 0 || round.sent == 0 {
                return Ok(total);
            }
        }
    }

    /// Delivers alerts a batch or sweep just raised (recorded in the outbox, unsent), without
    /// reading the outbox back: for a driver that knows the outbox held nothing else, because
    /// it delivered the whole outbox before and every delivery since succeeded (`keywatch
    /// replay`, which ends at the first delivery that fails).
    pub async fn deliver_raised(
        &mut self,
        raised: Vec<Alert>,
        now: Timestamp,
    ) -> Result<Delivery, DatabaseError> {
        self.deliver_alerts(raised, now).await
    }

    async fn deliver_alerts(
        &mut self,
        alerts: Vec<Alert>,
        now: Timestamp,
    ) -> Result<Delivery, DatabaseError> {
        let until = now.plus_millis(SENDING_CLAIM_MILLIS);
        let mut delivery = Delivery::default();
        // Claimed, sent and recorded a `send` at a time: should this process die, at most one
        // send's pages go out again, and at most one send's claims wait for their lease. A
        // send's pages are recorded as sent together with the next send's claims, one
        // request where the database takes them together (DynamoDB).
        let mut chunks = alerts.chunks(self.pager.pages_per_send().max(1));
        let mut accepted: Vec<String> = Vec::new();
        loop {
            let chunk = chunks.next();
            let ids: Vec<&str> = chunk
                .unwrap_or_default()
                .iter()
                .map(|a| a.alert_id.as_str())
                .collect();
            let granted = if accepted.is_empty() {
                if ids.is_empty() {
                    break;
                }
                self.projector.claim_for_sending(&ids, now, until).await?
            } else {
                let sent: Vec<&str> = accepted.iter().map(String::as_str).collect();
                let granted =
                    mark_sent_and_claim(&mut self.projector, &sent, &ids, now, until).await?;
                tracing::debug!(pages = sent.len(), "pages sent and recorded as sent");
                accepted.clear();
                granted
            };
            let Some(chunk) = chunk else { break };
            let claimed: Vec<Alert> = chunk
                .iter()
                .zip(granted)
                .filter(|(_, granted)| *granted)
                .map(|(a, _)| a.clone())
                .collect();
            if claimed.is_empty() {
                continue;
            }
            accepted = self.send(&claimed).await;
            delivery.sent += accepted.len();
            delivery.failed += claimed.len() - accepted.len();
        }
        Ok(delivery)
    }

    /// Sends claimed alerts in one `send` and releases the claims on what was refused;
    /// returns the ids of the pages accepted, to be recorded as sent.
    async fn send(&mut self, claimed: &[Alert]) -> Vec<String> {
        let results = self.pager.send(claimed).await;
        let mut accepted = Vec::with_capacity(claimed.len());
        // A pager that answers for fewer alerts than it was given: the rest count as refused.
        let mut results = results.into_iter();
        let mut first_refusal: Option<PageError> = None;
        let mut refused = 0;
        for a in claimed {
            match results.next().unwrap_or_else(|| {
                Err(PageError {
                    alert_id: a.alert_id.clone(),
                    reason: "the pager gave no answer for it".into(),
                })
            }) {
                Ok(()) => accepted.push(a.alert_id.clone()),
                Err(e) => {
                    tracing::debug!(alert_id = %a.alert_id, error = %e, "page not sent");
                    if let Err(e) = self.projector.release_claim(&a.alert_id).await {
                        tracing::warn!(alert_id = %a.alert_id, error = %e, "claim not released; the page is tried again when it expires");
                    }
                    first_refusal.get_or_insert(e);
                    refused += 1;
                }
            }
        }
        // One line per round, not per page: a closed stream or an SNS outage refuses them all.
        if let Some(e) = first_refusal {
            tracing::warn!(pages = refused, first = %e, "pages not sent; they stay in the outbox");
        }
        accepted
    }
}

/// Records pages the pager accepted, with the claims of the next send's (`to_claim`),
/// retrying the database: a page marked sent is never sent again; only if the database stays
/// unavailable through every attempt is a page sent again later (delivery is at least once).
/// Returns, for each of `to_claim`, whether it is claimed.
async fn mark_sent_and_claim<S: Database>(
    projector: &mut Projector<S>,
    sent: &[&str],
    to_claim: &[&str],
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<bool>, DatabaseError> {
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 1..MARK_SENT_ATTEMPTS {
        match projector
            .mark_sent_and_claim(sent, now, to_claim, now, until)
            .await
        {
            Ok(granted) => return Ok(granted),
            Err(e) => {
                tracing::warn!(pages = sent.len(), error = %e, retry_in = ?pause, "pages sent but not yet marked sent; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    projector
        .mark_sent_and_claim(sent, now, to_claim, now, until)
        .await
        .inspect_err(|e| {
            tracing::error!(pages = sent.len(), error = %e, "pages sent but not marked sent: they will be sent again");
        })
}
