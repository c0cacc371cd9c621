//! Reading a stream of the event log in bounded memory: its segments, taken in order of their
//! first eventTime, merged into the stream's records in (eventTime, eventID) order.

use crate::{DatabaseError, LoggedRecord, SegmentEntry};
use keywatch_core::Timestamp;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Merges a stream's segments, given in order of their first eventTime, into its records in
/// (eventTime, eventID) order, each once. A record is passed on as soon as no segment still
/// to come can hold an earlier one, so only segments that overlap in time are held at once:
/// a stream whose segments follow one another (the projector writes a batch's late records
/// in segments of their own) is read a segment at a time, however long it is.
#[derive(Default)]
pub struct SegmentMerge {
    pending: BinaryHeap<Reverse<PendingEntry>>,
    /// The last record passed on, to drop a copy of it (a batch retried after a failure may
    /// have stored a segment twice).
    last: Option<(Timestamp, String)>,
    most_held: usize,
}

impl SegmentMerge {
    /// A merge with nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next segment, whose records begin at `first_time`: first passes on every
    /// record held that is earlier (no later segment holds one before them). A segment
    /// holding a record earlier than one already passed on is corrupt (segments out of
    /// order, or a wrong `first_time`).
    pub fn add_segment(
        &mut self,
        first_time: Timestamp,
        entries: Vec<SegmentEntry>,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(e)| e.event_time < first_time)
        {
            if let Some(Reverse(entry)) = self.pending.pop() {
                self.pass_on(entry, visit)?;
            }
        }
        for e in entries {
            if let Some((time, id)) = &self.last {
                if (e.event_time, &e.event_id) < (*time, id) {
                    return Err(DatabaseError::Corrupt {
                        what: "stream",
                        reason: format!(
                            "record {} of a segment said to begin at {first_time} comes after \
                             record {id} of {time} was read",
                            e.event_id
                        ),
                    });
                }
            }
            self.pending.push(Reverse(PendingEntry {
                event_time: e.event_time,
                event_id: e.event_id,
                record: e.record,
            }));
        }
        self.most_held = self.most_held.max(self.pending.len());
        Ok(())
    }

    /// Passes on the records still held: there is no segment left.
    pub fn finish(
        mut self,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        while let Some(Reverse(entry)) = self.pending.pop() {
            self.pass_on(entry, visit)?;
        }
        Ok(())
    }

    /// The most records held at once so far: the memory the merge took.
    pub fn most_held(&self) -> usize {
        self.most_held
    }

    fn pass_on(
        &mut self,
        entry: PendingEntry,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        let key = (entry.event_time, entry.event_id);
        if self.last.as_ref() == Some(&key) {
            return Ok(()); // a copy
        }
        visit(entry.record)?;
        self.last = Some(key);
        Ok(())
    }
}

/// A record of a segment read and not yet passed on, ordered by (eventTime, eventID) only
/// (the order of a stream's records).
struct PendingEntry {
    event_time: Timestamp,
    event_id: String,
    record: LoggedRecord,
}

impl PartialEq for PendingEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PendingEntry {}

impl PartialOrd for PendingEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PendingEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.event_time, &self.event_id).cmp(&(other.event_time, &other.event_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(second: i64, id: &str) -> SegmentEntry {
        SegmentEntry {
            event_time: Timestamp::from_millis(second * 1000),
            event_id: id.to_owned(),
            record: LoggedRecord::CloudTrail(format!("{second}/{id}")),
        }
    }

    fn segment(entries: &[(i64, &str)]) -> (Timestamp, Vec<SegmentEntry>) {
        let entries: Vec<SegmentEntry> = entries.iter().map(|(s, id)| entry(*s, id)).collect();
        (entries[0].event_time, entries)
    }

    /// The records a merge passes on, and the most it held at once.
    fn merge(segments: Vec<(Timestamp, Vec<SegmentEntry>)>) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut visit = |r: LoggedRecord| {
            if let LoggedRecord::CloudTrail(text) = r {
                out.push(text);
            }
            Ok(())
        };
        let mut merge = SegmentMerge::new();
        for (first_time, entries) in segments {
            merge
                .add_segment(first_time, entries, &mut visit)
                .expect("in order");
        }
        let most = merge.most_held();
        merge.finish(&mut visit).expect("finished");
        (out, most)
    }

    #[test]
    fn overlapping_segments_merge_in_time_order_and_a_copy_passes_once() {
        let (records, _) = merge(vec![
            segment(&[(1, "a"), (5, "e"), (9, "i")]),
            // A batch's late records, and a copy of one record.
            segment(&[(2, "b"), (5, "e")]),
            segment(&[(5, "d"), (6, "f")]),
        ]);
        assert_eq!(records, ["1/a", "2/b", "5/d", "5/e", "6/f", "9/i"]);
    }

    #[test]
    fn segments_that_follow_one_another_are_held_one_at_a_time() {
        let segments = (0..100)
            .map(|n| {
                let entries: Vec<SegmentEntry> = (0..50)
                    .map(|i| entry(n * 100 + i, &format!("{n}-{i}")))
                    .collect();
                (entries[0].event_time, entries)
            })
            .collect();
        let (records, most) = merge(segments);
        assert_eq!(records.len(), 5000);
        assert_eq!(most, 50, "one segment's records at a time");
    }

    #[test]
    fn a_segment_earlier_than_what_was_passed_on_is_corrupt() {
        let mut visit = |_: LoggedRecord| Ok(());
        let mut merge = SegmentMerge::new();
        let (first, entries) = segment(&[(1, "a"), (2, "b")]);
        merge
            .add_segment(first, entries, &mut visit)
            .expect("first");
        // Said to begin at 3 (so 1 and 2 are passed on), it holds a record of 1.
        let late = vec![entry(1, "z")];
        let err = merge
            .add_segment(Timestamp::from_millis(3000), late, &mut visit)
            .expect_err("out of order");
        assert!(err.to_string().contains("record z"), "{err}");
    }
}
