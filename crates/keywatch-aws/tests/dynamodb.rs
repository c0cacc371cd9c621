//! The DynamoDB store against moto (KEYWATCH_TEST_AWS_ENDPOINT, started by `make test`):
//! the same records give the same timelines and alerts as the SQLite store; the outbox;
//! optimistic concurrency. Without moto these tests fail and say so.

use keywatch_aws::DynamoStore;
use keywatch_core::{normalise, AlertConfig, KeyArn, Normalised, Timestamp};
use keywatch_reader::{expand_paths, read_path, Item};
use keywatch_store::{NormalisedRecord, Projector, SqliteStore, Store, StoreError};
use keywatch_testkit::{moto, unique};
use std::path::PathBuf;

async fn table(config: &aws_config::SdkConfig) -> String {
    let name = unique("keywatch-test");
    DynamoStore::create_table(config, &name)
        .await
        .expect("table");
    name
}

fn samples() -> Vec<NormalisedRecord> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut out = Vec::new();
    for f in expand_paths(&[dir]).expect("samples") {
        read_path(&f, &mut |item| {
            if let Item::Record { json, .. } = item {
                if let Ok(Normalised::Kms { event_id, events }) = normalise(&json) {
                    out.push(NormalisedRecord::new(event_id, &json, events));
                }
            }
        })
        .expect("readable");
    }
    out
}

fn as_of() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").expect("time")
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_folds_the_same_timelines_and_alerts_as_sqlite() {
    let config = moto().await;
    let table = table(&config).await;
    let records = samples();

    let mut reference = Projector::new(
        SqliteStore::in_memory().expect("sqlite"),
        AlertConfig::default(),
    );
    let mut expected: Vec<String> = reference
        .process(&records, as_of())
        .expect("sqlite")
        .alerts
        .into_iter()
        .map(|a| a.alert_id)
        .collect();
    expected.extend(
        reference
            .sweep(as_of())
            .expect("sweep")
            .into_iter()
            .map(|a| a.alert_id),
    );

    // Reversed, in three batches, with a repeated batch: as the event log may deliver.
    let mut shuffled: Vec<NormalisedRecord> = records.iter().rev().cloned().collect();
    let third = shuffled.len() / 3;
    shuffled.extend(records[..third].iter().cloned());
    let mut p = Projector::new(
        DynamoStore::new(&config, &table).expect("store"),
        AlertConfig::default(),
    );
    let mut got = Vec::new();
    for batch in shuffled.chunks(third.max(1)) {
        got.extend(
            p.process(batch, as_of())
                .expect("dynamodb batch")
                .alerts
                .into_iter()
                .map(|a| a.alert_id),
        );
    }
    got.extend(
        p.sweep(as_of())
            .expect("sweep")
            .into_iter()
            .map(|a| a.alert_id),
    );
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    for k in reference.store().list_keys(None).expect("keys") {
        let key = KeyArn::parse(&k.key_arn).expect("arn");
        let a = reference
            .store()
            .load_timeline(&key)
            .expect("load")
            .expect("sqlite timeline");
        let b = p
            .store()
            .load_timeline(&key)
            .expect("load")
            .expect("dynamodb timeline");
        assert_eq!(a, b, "timeline of {key}");
    }
    assert_eq!(p.store().key_count().expect("count"), 6);
    assert_eq!(p.store().keys_pending_deletion().expect("pending").len(), 2);
    assert_eq!(
        p.store()
            .find_keys("1111aaaa-11aa-11aa-11aa-111111111111")
            .expect("find")
            .len(),
        1
    );

    // Everything raised waits in the outbox until marked sent.
    let unsent = p.unsent(1000).expect("outbox");
    assert_eq!(unsent.len(), expected.len());
    let ids: Vec<&str> = unsent.iter().map(|a| a.alert_id.as_str()).collect();
    p.mark_sent(&ids[..3], as_of()).expect("mark");
    assert_eq!(p.unsent(1000).expect("outbox").len(), expected.len() - 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeline_saved_by_another_writer_is_a_conflict() {
    let config = moto().await;
    let table = table(&config).await;
    let records = samples();
    let mut first = Projector::new(
        DynamoStore::new(&config, &table).expect("store"),
        AlertConfig::default(),
    );
    first
        .process(&records[..10], as_of())
        .expect("first writer");

    let key = KeyArn::parse(
        "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-11aa-11aa-11aa-111111111111",
    )
    .expect("arn");
    let mut a = DynamoStore::new(&config, &table).expect("a");
    let mut b = DynamoStore::new(&config, &table).expect("b");
    let ta = a.load_timeline(&key).expect("load").expect("stored");
    let tb = b.load_timeline(&key).expect("load").expect("stored");
    b.save_timelines(&[&tb]).expect("b saves first");
    assert!(
        matches!(a.save_timelines(&[&ta]), Err(StoreError::Conflict(_))),
        "a read a version b replaced"
    );
}
