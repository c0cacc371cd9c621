//! Any permutation and duplication of the same records folds to the identical timeline and
//! the identical alerts.

pub mod support;

use keywatch_core::{evaluate, AlertConfig, KeyArn, KeyTimeline};
use proptest::prelude::*;
use serde_json::Value;
use support::*;

/// A consistent key history: creation, uses, maybe a schedule with rejected uses (and a
/// few that still succeed), then maybe a cancellation or the deletion.
pub fn history() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec((0u32..3, 0u32..600), 0..8),
        prop::option::of((
            1u32..4,
            prop::collection::vec((0u32..3, 0u32..3000, any::<bool>()), 0..12),
        )),
        0u8..3,
    )
        .prop_map(|(before, during, end)| {
            let roles = [
                "arn:aws:iam::111122223333:role/a",
                "arn:aws:iam::111122223333:role/b",
                "arn:aws:iam::111122223333:role/c",
            ];
            let t = |minutes: u32| {
                keywatch_core::Timestamp::from_millis(
                    1_793_000_000_000 + i64::from(minutes) * 60_000,
                )
                .to_string()
            };
            let mut out = vec![create_key(&t(0), "create", "AWS_KMS", None, None, None)];
            for (i, (who, m)) in before.iter().enumerate() {
                out.push(decrypt(
                    &t(1 + m),
                    &format!("before-{i}"),
                    roles[*who as usize],
                ));
            }
            if let Some((days, uses)) = during {
                out.push(schedule(&t(1000), "sched", 7 * days, None));
                for (i, (who, m, succeeded)) in uses.iter().enumerate() {
                    let (time, id) = (t(1001 + m), format!("during-{i}"));
                    out.push(if *succeeded && *m < 2 {
                        decrypt(&time, &id, roles[*who as usize])
                    } else {
                        rejected("Decrypt", &time, &id, roles[*who as usize])
                    });
                }
                match end {
                    1 => out.push(cancel(&t(5000), "cancel")),
                    2 => out.push(delete_key(&t(5000), "delete", serde_json::json!({}))),
                    _ => {}
                }
            }
            out
        })
}

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
