//! The ids of alerts a projector knows to be raised: a cache, not the record (the database
//! is), so that a candidate raised before is not built, serialised and offered to the
//! database again on every batch.

use crate::codec::alert_id_bytes;
use std::mem;
use std::sync::Mutex;

/// Alert ids known to be raised, bounded in two generations. When the newer holds `capacity`
/// ids it becomes the older, and the older is forgotten; an id found in the older is taken
/// back into the newer. Ids that every batch asks for (the pending-deletion pages of a busy
/// key's kept minutes, thousands of them) therefore stay known however many alerts a long
/// replay raises, and memory stays within two generations. Forgetting an id only means
/// offering it to the database again.
#[derive(Debug)]
pub(crate) struct RaisedIds {
    capacity: usize,
    newer: IdSet,
    older: IdSet,
    /// Ids found in the older generation since the last [`Self::remember`]: asked for from
    /// parallel evaluations, taken into the newer one then.
    found_older: Mutex<Vec<Id>>,
}

/// An alert id: keywatch's (32 hex digits) as its 16 bytes, any other as its text.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Id {
    Bytes(u128),
    Text(Box<str>),
}

impl Id {
    fn of(alert_id: &str) -> Self {
        match alert_id_bytes(alert_id) {
            Some(bytes) => Id::Bytes(u128::from_be_bytes(bytes)),
            None => Id::Text(alert_id.into()),
        }
    }
}

type IdSet = foldhash::HashSet<Id>;

impl RaisedIds {
    /// A cache holding at most about `2 * capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        RaisedIds {
            capacity: capacity.max(1),
            newer: IdSet::default(),
            older: IdSet::default(),
            found_older: Mutex::new(Vec::new()),
        }
    }

    /// Whether `alert_id` is known to be raised. Safe to ask from parallel evaluations.
    pub(crate) fn contains(&self, alert_id: &str) -> bool {
        let id = Id::of(alert_id);
        if self.newer.contains(&id) {
            return true;
        }
        if !self.older.contains(&id) {
            return false;
        }
        // A poisoned lock only loses the promotion: the id is still known, in the older.
        if let Ok(mut found) = self.found_older.lock() {
            found.push(id);
        }
        true
    }

    /// Remembers ids as raised, with those found in the older generation since the last call.
    pub(crate) fn remember<'a>(&mut self, alert_ids: impl IntoIterator<Item = &'a str>) {
        let found = mem::take(
            self.found_older
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for id in found.into_iter().chain(alert_ids.into_iter().map(Id::of)) {
            if self.newer.len() >= self.capacity {
                self.older = mem::take(&mut self.newer);
            }
            self.newer.insert(id);
        }
    }

    /// Forgets every id (after a unit of work failed: what it raised was not stored).
    pub(crate) fn clear(&mut self) {
        self.newer.clear();
        self.older.clear();
        self.found_older
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// How many ids are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> String {
        format!("{n:032x}")
    }

    #[test]
    fn ids_asked_for_in_every_batch_are_not_forgotten_as_others_come_and_go() {
        let mut raised = RaisedIds::new(100);
        let asked: Vec<String> = (0..60).map(id).collect();
        raised.remember(asked.iter().map(String::as_str));
        // Many batches, each asking for the same 60 ids and raising 30 new ones.
        for batch in 0..50 {
            for a in &asked {
                assert!(raised.contains(a), "batch {batch}: {a} forgotten");
            }
            let fresh: Vec<String> = (0..30).map(|n| id(1_000 + batch * 30 + n)).collect();
            assert!(!raised.contains(&fresh[0]));
            raised.remember(fresh.iter().map(String::as_str));
            assert!(raised.len() <= 200, "holds {}", raised.len());
        }
        // Ids nobody asked for again are forgotten.
        assert!(!raised.contains(&id(1_000)));
    }

    #[test]
    fn ids_of_another_form_are_kept_as_text_and_never_equal_a_hex_one() {
        let mut raised = RaisedIds::new(10);
        raised.remember(["sched-1", "F2509D10C5789C46F43B01A24827686A"]);
        assert!(raised.contains("sched-1"));
        assert!(raised.contains("F2509D10C5789C46F43B01A24827686A"));
        assert!(!raised.contains("f2509d10c5789c46f43b01a24827686a"));
        raised.clear();
        assert!(!raised.contains("sched-1"));
    }
}
