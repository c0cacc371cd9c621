//! A stream (standard output) as the pipeline's pager: an alert counts as delivered only once
//! it is written and flushed; what could not be written stays in the outbox, and the next
//! delivery (this run's or a later one's) writes it first.

use crate::render::{self, AlertFormat};
use keywatch_core::Alert;
use keywatch_pipeline::{PageError, Pager};
use rayon::prelude::*;
use std::io::Write;

/// Writes alerts to a stream in a format.
pub struct StreamPager<W: Write> {
    out: W,
    format: AlertFormat,
    /// Why the last send failed, for the caller to report (a broken pipe ends a run quietly).
    failure: Option<std::io::Error>,
}

impl<W: Write> StreamPager<W> {
    /// A pager writing to `out`.
    pub fn new(out: W, format: AlertFormat) -> Self {
        StreamPager {
            out,
            format,
            failure: None,
        }
    }

    /// Why the last failed send failed, once.
    pub fn take_failure(&mut self) -> Option<std::io::Error> {
        self.failure.take()
    }

    /// Flushes the stream.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Pager for StreamPager<W> {
    /// A whole delivery round, written with one flush.
    fn pages_per_send(&self) -> usize {
        usize::MAX
    }

    /// Writes the alerts and flushes: all are delivered, or (a write or the flush failed)
    /// none counts as delivered and all are written again later (at least once).
    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>> {
        // Rendered on every core (a replay's projecting thread is its slowest stage), then
        // written in order.
        let format = self.format;
        let rendered: Vec<std::io::Result<Vec<u8>>> = alerts
            .par_iter()
            .map(|a| {
                let mut text = Vec::new();
                render::alert(&mut text, a, format).map(|()| text)
            })
            .collect();
        let written = rendered
            .into_iter()
            .try_for_each(|text| self.out.write_all(&text?))
            .and_then(|()| self.out.flush());
        let results = alerts
            .iter()
            .map(|a| {
                written.as_ref().map(|_| ()).map_err(|e| PageError {
                    alert_id: a.alert_id.clone(),
                    reason: format!("not written: {e}"),
                })
            })
            .collect();
        if let Err(e) = written {
            self.failure = Some(e);
        }
        results
    }
}
