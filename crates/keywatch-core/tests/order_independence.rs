//! Any permutation and duplication of the same records folds to the identical timeline and
//! the identical alerts.

mod support;

use keywatch_core::{evaluate, AlertConfig, KeyArn, KeyTimeline, KmsEvent, OrderedFold};
use proptest::prelude::*;
use serde_json::Value;
use support::*;

fn fold(records: &[Value]) -> KeyTimeline {
    let key = KeyArn::parse(KEY).expect("test key ARN");
    KeyTimeline::fold(key, events(records).iter())
}

proptest! {
    #[test]
    fn permutation_and_duplication_give_the_same_timeline_and_alerts(
        (records, shuffled, dups) in history().prop_flat_map(|h| {
            let n = h.len();
            (Just(h.clone()), Just(h).prop_shuffle(), prop::collection::vec(0..n, 0..5))
        })
    ) {
        let mut delivered = shuffled;
        for i in dups {
            delivered.push(records[i].clone());
        }
        let reference = fold(&records);
        let other = fold(&delivered);
        prop_assert_eq!(&reference, &other);
        let as_of = ts("2026-12-01T00:00:00Z");
        prop_assert_eq!(
            evaluate(&reference, as_of, &AlertConfig::default()),
            evaluate(&other, as_of, &AlertConfig::default())
        );
    }
}

/// A fold of events in time order as a rebuild does it: assuming no custom key store, then,
/// where the events name one, again assuming it.
fn fold_in_time_order(events: &[KmsEvent]) -> KeyTimeline {
    let key = KeyArn::parse(KEY).expect("test key ARN");
    let fold_assuming = |key_store| {
        let mut fold = OrderedFold::new(key.clone(), key_store);
        for e in events {
            fold.push(e).expect("in time order");
        }
        fold.finish()
    };
    match fold_assuming(None) {
        (timeline, None) => timeline,
        (_, named) => fold_assuming(named).0,
    }
}

proptest! {
    #[test]
    fn a_fold_in_time_order_gives_the_timeline_of_a_fold_in_any_order(
        (records, dups) in history().prop_flat_map(|h| {
            let n = h.len();
            (Just(h).prop_shuffle(), prop::collection::vec(0..n, 0..5))
        })
    ) {
        let mut delivered = records.clone();
        for i in dups {
            delivered.push(records[i].clone());
        }
        let mut events = events(&delivered);
        // In time order, the events of one time in any order (as streams merge them).
        events.sort_by_key(|e| e.context().event_time);
        prop_assert_eq!(fold(&records), fold_in_time_order(&events));
    }
}

proptest! {
    /// A rebuild from a snapshot: the fold is stopped before some eventTime, its timeline
    /// stored (as JSON) and read back, and the fold resumed from it with the events of that
    /// time and later. Where no custom key store is named before the cut, the timeline is the
    /// fold of all the events.
    #[test]
    fn a_fold_resumed_from_a_snapshot_gives_the_timeline_of_the_whole_fold(
        (records, cut) in history().prop_flat_map(|h| {
            let n = h.len();
            (Just(h).prop_shuffle(), 0..n)
        })
    ) {
        let key = KeyArn::parse(KEY).expect("test key ARN");
        let mut events = events(&records);
        events.sort_by_key(|e| e.context().event_time);
        if events.is_empty() {
            return Ok(());
        }
        let cut = cut.min(events.len() - 1);
        let mut fold: OrderedFold = OrderedFold::new(key, None);
        for e in &events[..=cut] {
            fold.push(e.clone()).expect("in time order");
        }
        let mut snapshot = None;
        if let Some((applied, pending)) = fold.applied() {
            if !fold.names_key_store() {
                let stored = serde_json::to_string(applied).expect("stored");
                let read: KeyTimeline = serde_json::from_str(&stored).expect("read back");
                snapshot = Some((read, pending));
            }
        }
        let Some((snapshot, pending)) = snapshot else {
            return Ok(());
        };
        let mut resumed: OrderedFold = OrderedFold::resume(snapshot);
        for e in events.iter().filter(|e| e.context().event_time >= pending) {
            resumed.push(e.clone()).expect("in time order");
        }
        let (timeline, named) = resumed.finish();
        if named.is_none() {
            prop_assert_eq!(timeline, fold_in_time_order(&events));
        }
    }
}

#[test]
fn a_fold_in_time_order_refuses_an_earlier_event() {
    let key = KeyArn::parse(KEY).expect("test key ARN");
    let events = events(&[
        decrypt("2026-11-01T00:00:00Z", "use-1", APP_ROLE),
        decrypt("2026-11-01T00:00:01Z", "use-2", APP_ROLE),
    ]);
    let (first, last) = (events[0].clone(), events[1].clone());
    let mut fold: OrderedFold = OrderedFold::new(key, None);
    fold.push(last).expect("the first event");
    let refused = fold.push(first.clone()).expect_err("earlier");
    assert_eq!(refused.event_id, first.context().event_id);
}
