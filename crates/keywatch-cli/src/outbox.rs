//! Standard output as a sink of the outbox: an alert counts as delivered only once it is
//! written and flushed, and every run first delivers what an earlier run raised but could not
//! write (a closed pipe, a full disk, a kill between the store's commit and the write).

use crate::render::{self, AlertFormat};
use anyhow::Result;
use keywatch_core::{Alert, Timestamp};
use keywatch_store::{Projector, Store};
use std::io::Write;

/// How many alerts are taken from the outbox at once.
const PAGE: usize = 1_000;

/// Writes `alerts`, flushes, then marks them sent. A write that fails leaves them in the
/// outbox for the next run (delivery to a stream is at least once).
pub fn deliver<S: Store>(
    projector: &mut Projector<S>,
    out: &mut impl Write,
    alerts: &[Alert],
    format: AlertFormat,
    at: Timestamp,
) -> Result<()> {
    for a in alerts {
        render::alert(out, a, format)?;
    }
    out.flush()?;
    let ids: Vec<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    projector.mark_sent(&ids, at)?;
    Ok(())
}

/// Delivers the alerts an earlier run raised but never wrote, oldest first; returns how many.
pub fn deliver_leftovers<S: Store>(
    projector: &mut Projector<S>,
    out: &mut impl Write,
    format: AlertFormat,
    at: Timestamp,
) -> Result<usize> {
    let mut delivered = 0;
    loop {
        let mut left = projector.unsent(PAGE)?;
        if left.is_empty() {
            return Ok(delivered);
        }
        left.sort_by(|a, b| (a.event_time, &a.alert_id).cmp(&(b.event_time, &b.alert_id)));
        deliver(projector, out, &left, format, at)?;
        delivered += left.len();
    }
}
