//! The pipeline's use case on the in-memory database, with a pager and a metrics sink that
//! record what they are given (the SNS and CloudWatch adapters are tested against moto, and
//! every driver end to end against the real services).

#[path = "../../keywatch-core/tests/support/mod.rs"]
mod support;

use keywatch_core::{Alert, AlertConfig, AlertKind, Timestamp};
use keywatch_database::MemoryDatabase;
use keywatch_pipeline::{
    decode_batch, BatchMetrics, MetricsError, MetricsSink, PageError, Pager, Payload, Pipeline,
    OUTBOX_BATCH,
};
use std::cell::RefCell;
use std::collections::BTreeSet;
use support::*;

/// Accepts every page but those it is told to refuse (and all after its first `sends_up`
/// sends, if set); remembers what it accepted.
#[derive(Default)]
struct RecordingPager {
    refuse: BTreeSet<String>,
    accepted: Vec<String>,
    calls: usize,
    /// Pages a send takes (0: no limit).
    per_send: usize,
    sends_up: Option<usize>,
}

impl Pager for RecordingPager {
    fn pages_per_send(&self) -> usize {
        match self.per_send {
            0 => usize::MAX,
            n => n,
        }
    }

    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>> {
        self.calls += 1;
        let down = self.sends_up.is_some_and(|up| self.calls > up);
        alerts
            .iter()
            .map(|a| {
                if down || self.refuse.contains(&a.alert_id) {
                    Err(PageError {
                        alert_id: a.alert_id.clone(),
                        reason: "refused (test)".into(),
                    })
                } else {
                    self.accepted.push(a.alert_id.clone());
                    Ok(())
                }
            })
            .collect()
    }
}

#[derive(Default)]
struct RecordingMetrics(RefCell<Vec<BatchMetrics>>);

impl MetricsSink for RecordingMetrics {
    async fn put(&self, metrics: &BatchMetrics) -> Result<(), MetricsError> {
        self.0.borrow_mut().push(metrics.clone());
        Ok(())
    }
}

type TestPipeline = Pipeline<MemoryDatabase, RecordingPager, RecordingMetrics>;

fn pipeline() -> TestPipeline {
    Pipeline::new(
        MemoryDatabase::new(),
        AlertConfig::default(),
        RecordingPager::default(),
        RecordingMetrics::default(),
    )
}

fn put_metrics(p: &TestPipeline) -> Vec<BatchMetrics> {
    p.metrics().0.borrow().clone()
}

fn now() -> Timestamp {
    ts("2026-11-05T00:00:00Z")
}

fn payload(offset: i64, value: Result<Vec<u8>, String>) -> Payload<'static> {
    Payload {
        partition: 0,
        offset,
        value: value.map(Into::into),
    }
}

fn json(record: serde_json::Value) -> Result<Vec<u8>, String> {
    Ok(record.to_string().into_bytes())
}

/// A schedule and a use of the key while pending deletion: two pages.
fn schedule_and_use() -> Vec<Payload<'static>> {
    vec![
        payload(0, json(schedule("2026-11-01T00:00:00Z", "sched", 7, None))),
        payload(
            5,
            json(rejected(
                "Decrypt",
                "2026-11-01T10:00:00Z",
                "use-1",
                APP_ROLE,
            )),
        ),
    ]
}

/// One batch with every kind of payload: the bad ones are rejected and counted, the rest
/// are folded and paged, once.
#[tokio::test]
async fn a_batch_is_decoded_projected_paged_and_counted() {
    let mut p = pipeline();
    let mut not_kms = decrypt("2026-11-01T09:00:00Z", "s3", APP_ROLE);
    not_kms["eventSource"] = "s3.amazonaws.com".into();
    let mut batch = schedule_and_use();
    batch.extend([
        payload(1, Ok(vec![0xff, 0xfe, b'{'])),
        payload(2, Err("value is not base64 (test)".into())),
        payload(3, json(not_kms)),
        payload(4, Ok(b"{\"eventVersion\": 3".to_vec())),
        // A value the driver lends (a Kafka message's) rather than owns.
        Payload {
            partition: 0,
            offset: 6,
            value: Ok(std::borrow::Cow::Borrowed(&[b'{', 0xc3, 0x28])),
        },
    ]);
    let report = p.handle_batch(batch, now()).await.expect("batch");
    assert_eq!(report.payloads, 7);
    assert_eq!(
        report.rejected, 4,
        "not UTF-8 (twice), not base64, not JSON"
    );
    assert_eq!(report.skipped, 1);
    assert_eq!(report.new_records, 2);
    assert_eq!(report.alerts, 2);
    assert_eq!(report.delivery.sent, 2);
    assert_eq!(p.pager_mut().accepted.len(), 2);
    let metrics = put_metrics(&p);
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].records_rejected, 4);
    assert_eq!(metrics[0].alerts_raised[&AlertKind::DeletionScheduled], 1);
    assert_eq!(
        metrics[0].alerts_raised[&AlertKind::PendingDeletionKeyUsed],
        1
    );
    // The same records again: nothing new, nothing paged, nothing counted.
    let again = p
        .handle_batch(schedule_and_use(), now())
        .await
        .expect("batch");
    assert_eq!((again.new_records, again.alerts), (0, 0));
    assert_eq!(p.pager_mut().accepted.len(), 2, "paged twice");
    assert_eq!(put_metrics(&p).len(), 1, "empty counts are not put");
}

/// A page the pager refuses stays in the outbox and goes out with the next delivery, once;
/// the others are not sent again.
#[tokio::test]
async fn a_refused_page_waits_in_the_outbox_and_is_sent_once_later() {
    // The batch's two pages, in the order they go out (a first pipeline learns them).
    let ids = {
        let mut probe = pipeline();
        probe
            .handle_batch(schedule_and_use(), now())
            .await
            .expect("probe");
        probe.pager_mut().accepted.clone()
    };
    assert_eq!(ids.len(), 2);
    let mut p = pipeline();
    p.pager_mut().refuse = [ids[1].clone()].into();
    let report = p
        .handle_batch(schedule_and_use(), now())
        .await
        .expect("batch");
    assert_eq!(report.delivery.sent, 1);
    assert_eq!(report.delivery.failed, 1);
    assert_eq!(
        p.projector().unsent(10).await.expect("outbox").len(),
        1,
        "the refused page is kept"
    );
    p.pager_mut().refuse.clear();
    let later = p.deliver(now()).await.expect("deliver");
    assert_eq!(later.sent, 1);
    assert_eq!(p.pager_mut().accepted, ids, "each page once, oldest first");
    assert!(p.projector().unsent(10).await.expect("outbox").is_empty());
}

/// More alerts than one delivery round takes: `deliver_all` sends them all, in the order
/// they were raised.
#[tokio::test]
async fn deliver_all_empties_an_outbox_of_several_rounds() {
    let mut p = pipeline();
    let n = OUTBOX_BATCH + 123;
    let records = (0..n).map(|i| {
        let key =
            format!("arn:aws:kms:us-east-1:111122223333:key/{i:08}-0000-0000-0000-000000000000");
        let time = format!("2026-11-01T{:02}:{:02}:00Z", i / 60 % 24, i % 60);
        payload(
            i as i64,
            json(on_key(schedule(&time, &format!("s{i}"), 7, None), &key)),
        )
    });
    let decoded = decode_batch(records);
    assert_eq!(decoded.rejected, 0);
    let outcome = p.project(&decoded.records, now()).await.expect("project");
    assert_eq!(outcome.alerts.len(), n);
    let delivery = p.deliver_all(now()).await.expect("deliver");
    assert_eq!(delivery.sent, n);
    assert!(p.pager_mut().calls >= 2, "in rounds");
    let raised: Vec<String> = outcome.alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(p.pager_mut().accepted, raised, "in the order raised");
}

/// Pages go ten to a send, each send's recorded as sent before the next send goes out (with
/// its claims): when the service goes down after two sends, their twenty pages are out of the
/// outbox and the rest wait in it, to be sent once, in order, when it is back.
#[tokio::test]
async fn each_send_is_recorded_before_the_next_and_the_refused_wait() {
    let mut p = pipeline();
    p.pager_mut().per_send = 10;
    p.pager_mut().sends_up = Some(2);
    let n = 35;
    let records = (0..n).map(|i| {
        let key =
            format!("arn:aws:kms:us-east-1:111122223333:key/{i:08}-0000-0000-0000-000000000000");
        let time = format!("2026-11-01T00:{:02}:00Z", i % 60);
        payload(
            i as i64,
            json(on_key(schedule(&time, &format!("s{i}"), 7, None), &key)),
        )
    });
    let decoded = decode_batch(records);
    let raised: Vec<String> = p
        .project(&decoded.records, now())
        .await
        .expect("project")
        .alerts
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(raised.len(), n);
    let delivery = p.deliver(now()).await.expect("deliver");
    assert_eq!((delivery.sent, delivery.failed), (20, 15));
    assert_eq!(p.pager_mut().calls, 4, "two sends accepted, two refused");
    let unsent: Vec<String> = p
        .projector()
        .unsent(100)
        .await
        .expect("outbox")
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(unsent, raised[20..], "the refused wait, the sent are out");

    p.pager_mut().sends_up = None;
    let delivery = p.deliver(now()).await.expect("deliver");
    assert_eq!((delivery.sent, delivery.failed), (15, 0));
    assert_eq!(p.pager_mut().accepted, raised, "each once, in order");
    assert!(p.projector().unsent(100).await.expect("outbox").is_empty());
}
