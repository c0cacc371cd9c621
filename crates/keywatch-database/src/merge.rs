//! Reading a stream of the event log in bounded memory: its segments, taken in order of their
//! first eventTime, merged into the stream's records in (eventTime, eventID) order.

use crate::{DatabaseError, LoggedRecord, SegmentEntry};
use keywatch_core::Timestamp;
use std::cmp::{Ordering, Reverse};
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

/// Merges a stream's segments, given in order of their first eventTime, into its records in
/// (eventTime, eventID) order, each once. A record is passed on as soon as no segment still
/// to come can hold an earlier one, so only segments that overlap in time are held at once:
/// a stream whose segments follow one another (the projector writes a batch's late records
/// in segments of their own) is read a segment at a time, however long it is.
///
/// A segment's records are in order already: the merge orders the segments held by their
/// next record, not every record held, so a record is passed on without moving the others.
#[derive(Default)]
pub struct SegmentMerge {
    /// Only records later than this are passed on.
    after: Option<Timestamp>,
    /// The segments read whose records are not all passed on, by their next record.
    segments: BinaryHeap<Reverse<SegmentCursor>>,
    /// The records they hold.
    held: usize,
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

    /// A merge that passes on only the records later than `after` (a rebuild from a
    /// snapshot through `after` reads the segments that reach past it).
    pub fn after(after: Timestamp) -> Self {
        SegmentMerge {
            after: Some(after),
            ..Self::default()
        }
    }

    /// Takes the next segment, whose records begin at `first_time`: first passes on every
    /// record held that is earlier (no later segment holds one before them). A segment
    /// holding a record earlier than one already passed on is corrupt (segments out of
    /// order, or a wrong `first_time`).
    pub fn add_segment(
        &mut self,
        first_time: Timestamp,
        mut entries: Vec<SegmentEntry>,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        self.pass_on_earlier_than(Some(first_time), visit)?;
        if let Some(after) = self.after {
            entries.retain(|e| e.event_time > after);
        }
        if !entries.is_sorted_by(|a, b| order_of(a) <= order_of(b)) {
            entries.sort_by(|a, b| order_of(a).cmp(&order_of(b)));
        }
        if let (Some(earliest), Some((time, id))) = (entries.first(), &self.last) {
            if order_of(earliest) < (*time, id.as_str()) {
                return Err(DatabaseError::Corrupt {
                    what: "stream",
                    reason: format!(
                        "record {} of a segment said to begin at {first_time} comes after \
                         record {id} of {time} was read",
                        earliest.event_id
                    ),
                });
            }
        }
        if !entries.is_empty() {
            self.held += entries.len();
            self.segments
                .push(Reverse(SegmentCursor(VecDeque::from(entries))));
        }
        self.most_held = self.most_held.max(self.held);
        Ok(())
    }

    /// Passes on the records still held: there is no segment left.
    pub fn finish(
        mut self,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        self.pass_on_earlier_than(None, visit)
    }

    /// The most records held at once so far: the memory the merge took.
    pub fn most_held(&self) -> usize {
        self.most_held
    }

    /// Passes on, in order, the records held that are earlier than `limit` (all of them
    /// without one).
    fn pass_on_earlier_than(
        &mut self,
        limit: Option<Timestamp>,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        loop {
            let entry = {
                let Some(mut next) = self.segments.peek_mut() else {
                    break;
                };
                if limit.is_some_and(|limit| next.0.next_time() >= Some(limit)) {
                    break;
                }
                let entry = next.0 .0.pop_front();
                if next.0 .0.is_empty() {
                    PeekMut::pop(next);
                }
                entry
            };
            let Some(entry) = entry else {
                break;
            };
            self.held -= 1;
            self.pass_on(entry, visit)?;
        }
        Ok(())
    }

    fn pass_on(
        &mut self,
        entry: SegmentEntry,
        visit: &mut dyn FnMut(LoggedRecord) -> Result<(), DatabaseError>,
    ) -> Result<(), DatabaseError> {
        if self
            .last
            .as_ref()
            .is_some_and(|(time, id)| (*time, id.as_str()) == order_of(&entry))
        {
            return Ok(()); // a copy
        }
        visit(entry.record)?;
        self.last = Some((entry.event_time, entry.event_id));
        Ok(())
    }
}

/// Where a record stands in its stream: (eventTime, eventID).
fn order_of(entry: &SegmentEntry) -> (Timestamp, &str) {
    (entry.event_time, entry.event_id.as_str())
}

/// A segment's records not passed on yet, in order; never empty while the merge holds it.
/// Segments are ordered by their next record.
struct SegmentCursor(VecDeque<SegmentEntry>);

impl SegmentCursor {
    fn next_time(&self) -> Option<Timestamp> {
        self.0.front().map(|e| e.event_time)
    }
}

impl PartialEq for SegmentCursor {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SegmentCursor {}

impl PartialOrd for SegmentCursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SegmentCursor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .front()
            .map(order_of)
            .cmp(&other.0.front().map(order_of))
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
    fn a_segment_whose_records_are_out_of_order_still_merges_in_order() {
        let (records, most) = merge(vec![
            (
                Timestamp::from_millis(1000),
                vec![entry(4, "d"), entry(1, "a"), entry(3, "c")],
            ),
            segment(&[(2, "b"), (5, "e")]),
        ]);
        assert_eq!(records, ["1/a", "2/b", "3/c", "4/d", "5/e"]);
        assert_eq!(
            most, 4,
            "the first segment but its first record, and the second"
        );
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
