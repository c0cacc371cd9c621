//! Any permutation and duplication of the same records folds to the identical timeline and
//! the identical alerts.

mod support;

use keywatch_core::{evaluate, AlertConfig, KeyArn, KeyTimeline};
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
