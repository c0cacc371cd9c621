//! `keywatch replay`: read inputs on every core, and drive the pipeline with them in input
//! order: project each batch, then deliver its alerts to standard output.

use crate::outbox::StreamPager;
use crate::render::AlertFormat;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keywatch_core::{normalise_found, AlertConfig, Normalised, NormalisedOnRead, Timestamp};
use keywatch_database::{Database, NormalisedRecord};
use keywatch_pipeline::{NoMetrics, Pipeline};
use keywatch_reader::{list_inputs, read_path_limited_as, Item, Limits, Origin};
use keywatch_sqlite::SqliteDatabase;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// How many KMS records the projector takes at once.
const BATCH: usize = 20_000;

/// How many batches pass between saves of whole timelines: in between, a batch saves the
/// timelines it touched in summary only (a busy key's timeline is hundreds of KB of JSON to
/// encode and compress). A run that stops in between leaves them to be rebuilt from the log.
const BATCHES_PER_TIMELINE_SAVE: u64 = 10;

/// How many files' results each reading thread may have read ahead of the projector. With
/// the readers yielding to the projector, a deeper queue keeps both cores busier; each file
/// queued holds a few MiB, and eight a reader took the ten-million-record replay to 200 MiB.
const FILES_QUEUED_PER_READER: usize = 4;

/// How much lower than the projecting thread's a reading thread's scheduling priority is
/// (its nice value, on Linux, where that is per thread).
const READER_NICENESS: i32 = 10;

/// Lowers the calling reading thread's scheduling priority. Reading files is the replay's
/// parallel stage and projecting its serial one: with every core shared equally, the
/// projecting thread got two thirds of a core while two readers ran, and it is the stage
/// every batch waits for. Yielding to it, the readers take what it leaves. Where the nice
/// value is not per thread, or cannot be raised, nothing changes.
fn yield_to_projector() {
    #[cfg(target_os = "linux")]
    if let Ok(nice) = rustix::process::getpriority_process(None) {
        // Lowering a priority never needs a privilege; failing to leaves it as it was.
        let _ = rustix::process::setpriority_process(None, (nice + READER_NICENESS).min(19));
    }
}

pub struct Options {
    pub store: SqliteDatabase,
    pub as_of: Timestamp,
    pub format: AlertFormat,
    /// No progress bar and no summary.
    pub quiet: bool,
    pub quarantine: Option<PathBuf>,
    pub suppress_minutes: u32,
    pub limits: Limits,
    pub paths: Vec<PathBuf>,
}

/// A rejected record, as written to the quarantine file.
#[derive(serde::Serialize)]
struct Rejection {
    reason: String,
    #[serde(flatten)]
    origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl Rejection {
    fn new(reason: String, origin: Origin, text: String) -> Self {
        match serde_json::value::RawValue::from_string(text.clone()) {
            Ok(raw) => Rejection {
                reason,
                origin,
                record: Some(raw),
                text: None,
            },
            Err(_) => Rejection {
                reason,
                origin,
                record: None,
                text: Some(text),
            },
        }
    }
}

/// What one input file gave.
#[derive(Default)]
struct FileResult {
    records: u64,
    not_kms: u64,
    untracked: u64,
    skipped: u64,
    kms: Vec<NormalisedRecord>,
    rejected: Vec<Rejection>,
    error: Option<String>,
}

fn read_file(path: &std::path::Path, limits: Limits) -> FileResult {
    let mut out = FileResult::default();
    let result = read_path_limited_as(
        path,
        limits,
        &mut |item: Item<NormalisedOnRead>| match item {
            // Records over --max-record-bytes come as rejections from the reader, in every shape.
            Item::Record {
                json,
                origin,
                parsed,
            } => {
                out.records += 1;
                match normalise_found(parsed, &json) {
                    Ok(Normalised::NotKms) => out.not_kms += 1,
                    Ok(Normalised::KmsUntracked { .. }) => out.untracked += 1,
                    Ok(Normalised::Kms { event_id, events }) => {
                        out.kms.push(NormalisedRecord::new(event_id, json, events))
                    }
                    Err(e) => {
                        out.rejected
                            .push(Rejection::new(e.to_string(), origin, json.into_owned()))
                    }
                }
            }
            Item::Rejected {
                reason,
                text,
                origin,
            } => out.rejected.push(Rejection::new(reason, origin, text)),
            Item::Skipped { .. } => out.skipped += 1,
        },
    );
    if let Err(e) = result {
        out.error = Some(e.to_string());
    }
    out
}

#[derive(Default)]
struct Totals {
    files: u64,
    records: u64,
    kms: u64,
    not_kms: u64,
    untracked: u64,
    skipped: u64,
    rejected: u64,
    duplicates: u64,
    rebuilds: u64,
    rebuilds_from_snapshots: u64,
    alerts: u64,
    /// Inputs that could not be read, or not to their end.
    unreadable: u64,
    /// The highest severity of the alerts this run raised.
    highest: Option<keywatch_core::Severity>,
}

/// The run's state: the pipeline (alerts go to `W`), the batch it has not taken yet, where
/// rejected records go, and the counts for the summary.
struct Replay<W: Write> {
    pipeline: Pipeline<SqliteDatabase, StreamPager<W>, NoMetrics>,
    /// Drives the pipeline's delivery (it waits between retries of the database).
    runtime: tokio::runtime::Runtime,
    batch: Vec<NormalisedRecord>,
    as_of: Timestamp,
    quarantine: Option<BufWriter<File>>,
    shown_rejections: usize,
    totals: Totals,
    /// Batches projected.
    batches: u64,
}

/// Rejected records shown on stderr when there is no quarantine file.
const SHOWN_REJECTIONS: usize = 20;

impl<W: Write> Replay<W> {
    /// Takes one file's results: counts, quarantines its rejections, queues its KMS records.
    fn take(&mut self, result: FileResult, progress: &ProgressBar) -> Result<()> {
        let t = &mut self.totals;
        t.files += 1;
        t.records += result.records;
        t.not_kms += result.not_kms;
        t.untracked += result.untracked;
        t.skipped += result.skipped;
        t.kms += result.kms.len() as u64 + result.untracked;
        t.rejected += result.rejected.len() as u64;
        for r in result.rejected {
            match self.quarantine.as_mut() {
                Some(q) => {
                    serde_json::to_writer(&mut *q, &r)?;
                    q.write_all(b"\n")?;
                }
                None if self.shown_rejections < SHOWN_REJECTIONS => {
                    self.shown_rejections += 1;
                    progress.suspend(|| eprintln!("rejected {}: {}", r.origin, r.reason));
                }
                None => {}
            }
        }
        self.batch.extend(result.kms);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Reports an input that cannot be read (or not to its end): on stderr, and in the
    /// quarantine file with its path and reason.
    fn unreadable(&mut self, path: &str, reason: &str, progress: &ProgressBar) -> Result<()> {
        self.totals.unreadable += 1;
        progress.suspend(|| eprintln!("keywatch: cannot read {path}: {reason}"));
        if let Some(q) = self.quarantine.as_mut() {
            let entry = Rejection {
                reason: format!("input unreadable: {reason}"),
                origin: Origin {
                    file: path.to_owned(),
                    line: None,
                    record_index: None,
                },
                record: None,
                text: None,
            };
            serde_json::to_writer(&mut *q, &entry)?;
            q.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Projects the queued records and prints the alerts they raise.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let outcome = self
            .runtime
            .block_on(self.pipeline.project(&self.batch, self.as_of))?;
        // Freeing a batch's records and events takes the projecting thread half a second
        // per million records: another core does it.
        let projected = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        rayon::spawn(move || drop(projected));
        self.totals.duplicates += outcome.duplicate_records as u64;
        self.totals.rebuilds += outcome.rebuilds as u64;
        self.totals.rebuilds_from_snapshots += outcome.rebuilds_from_snapshots as u64;
        self.batches += 1;
        if self.batches.is_multiple_of(BATCHES_PER_TIMELINE_SAVE) {
            self.runtime
                .block_on(self.pipeline.projector_mut().save_deferred_timelines())?;
        }
        self.print(outcome.alerts)
    }

    /// Counts the alerts raised and delivers them: written and flushed is delivered, so they
    /// leave the outbox. The outbox holds nothing else (it is not read back): the run
    /// delivered it whole before its first batch, and ends at the first delivery that fails.
    fn print(&mut self, raised: Vec<keywatch_core::Alert>) -> Result<()> {
        self.totals.alerts += raised.len() as u64;
        self.totals.highest = raised
            .iter()
            .map(|a| a.severity)
            .chain(self.totals.highest)
            .max();
        let delivery = self
            .runtime
            .block_on(self.pipeline.deliver_raised(raised, self.as_of))?;
        self.check(&delivery).map(|_| ())
    }

    /// Delivers the whole outbox to the output; returns how many alerts it wrote.
    fn deliver(&mut self) -> Result<usize> {
        let delivery = self
            .runtime
            .block_on(self.pipeline.deliver_all(self.as_of))?;
        self.check(&delivery)
    }

    /// A delivery that left alerts in the outbox ends the run, saying why.
    fn check(&mut self, delivery: &keywatch_pipeline::Delivery) -> Result<usize> {
        if delivery.failed > 0 {
            if let Some(e) = self.pipeline.pager_mut().take_failure() {
                return Err(anyhow::Error::new(e).context(format!(
                    "writing alerts: {} stay in the store's outbox and a later run writes them first",
                    delivery.failed
                )));
            }
            bail!(
                "{} alert(s) could not be written to the output; they stay in the store's outbox and a later run writes them first",
                delivery.failed
            );
        }
        Ok(delivery.sent)
    }

    /// Projects what is left, raises the time-driven alerts and flushes every output.
    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        let swept = self.runtime.block_on(self.pipeline.sweep(self.as_of))?;
        self.print(swept)?;
        if let Some(q) = self.quarantine.as_mut() {
            q.flush()?;
        }
        self.pipeline.pager_mut().flush()?;
        Ok(())
    }
}

/// What a run ends with: whether every input could be read.
pub struct Outcome {
    /// Inputs that could not be read, or not to their end.
    pub unreadable: u64,
    /// The highest severity of the alerts this run raised.
    pub highest: Option<keywatch_core::Severity>,
}

pub fn run(opts: Options) -> Result<Outcome> {
    let inputs = list_inputs(&opts.paths);
    let files = inputs.files;
    let quarantine = match &opts.quarantine {
        Some(p) => {
            Some(BufWriter::new(File::create(p).with_context(|| {
                format!("creating quarantine file {}", p.display())
            })?))
        }
        None => None,
    };
    let mut replay = Replay {
        pipeline: Pipeline::new(
            opts.store,
            AlertConfig {
                suppress_minutes: opts.suppress_minutes,
            },
            StreamPager::new(std::io::stdout().lock(), opts.format),
            NoMetrics,
        ),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("starting the runtime")?,
        batch: Vec::with_capacity(BATCH),
        as_of: opts.as_of,
        quarantine,
        shown_rejections: 0,
        totals: Totals::default(),
        batches: 0,
    };
    replay.pipeline.projector_mut().defer_timeline_saves();
    let progress = ProgressBar::with_draw_target(
        Some(files.len() as u64),
        if opts.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    // What an earlier run raised but could not write goes out first.
    let leftovers = replay.deliver()?;
    if leftovers > 0 && !opts.quiet {
        eprintln!("keywatch: {leftovers} alert(s) raised by an earlier run and never delivered, delivered now");
    }
    for (path, reason) in &inputs.unreadable {
        replay.unreadable(path, reason, &progress)?;
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, FileResult)>(workers * FILES_QUEUED_PER_READER);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, files, limits) = (&next, &files, opts.limits);
            scope.spawn(move || {
                yield_to_projector();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { return };
                    if tx.send((i, read_file(path, limits))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // Take the files' results in input order so that output is the same on every run.
        let mut pending: BTreeMap<usize, FileResult> = BTreeMap::new();
        let mut expected = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(mut result) = pending.remove(&expected) {
                expected += 1;
                progress.inc(1);
                if let Some(e) = result.error.take() {
                    // What was read before the fault is kept; the other inputs go on.
                    let path = files[expected - 1].display().to_string();
                    replay.unreadable(&path, &e, &progress)?;
                }
                replay.take(result, &progress)?;
                progress.set_message(format!(
                    "{} records, {} alerts",
                    replay.totals.records, replay.totals.alerts
                ));
            }
        }
        Ok(())
    })?;
    replay.finish()?;
    progress.finish_and_clear();
    let keys = replay
        .runtime
        .block_on(replay.pipeline.projector().database().key_count())?;
    let totals = &replay.totals;
    if !opts.quiet {
        eprintln!(
        "keywatch: {} files, {} records read: {} KMS ({} tracked), {} from other services, {} envelopes without a record; {} keys; {} alerts raised; {} rejected{}; {} duplicates; {} timelines rebuilt for late records{}",
        totals.files,
        totals.records,
        totals.kms,
        totals.kms - totals.untracked,
        totals.not_kms,
        totals.skipped,
        keys,
        totals.alerts,
        totals.rejected,
        match (&opts.quarantine, totals.rejected) {
            (_, 0) => String::new(),
            (Some(p), _) => format!(" (see {})", p.display()),
            (None, n) if n > SHOWN_REJECTIONS as u64 => format!(
                " (first {SHOWN_REJECTIONS} shown; use --quarantine FILE to keep them all)"
            ),
            (None, _) => String::new(),
        },
        totals.duplicates,
        totals.rebuilds,
        match totals.rebuilds_from_snapshots {
            0 => String::new(),
            n => format!(" ({n} from a snapshot)"),
        },
    );
    }
    if totals.unreadable > 0 {
        eprintln!(
            "keywatch: {} input(s) could not be read (or not to their end): see above{}",
            totals.unreadable,
            opts.quarantine
                .as_ref()
                .map(|p| format!(" and {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(Outcome {
        unreadable: totals.unreadable,
        highest: totals.highest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading thread yields to the projecting thread, and only itself: the nice value is
    /// per thread on Linux, so the thread that projects keeps its own.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_reading_thread_lowers_its_own_priority_and_no_other() {
        use rustix::process::getpriority_process;
        let projecting = getpriority_process(None).expect("the nice value");
        let reading = std::thread::spawn(|| {
            yield_to_projector();
            getpriority_process(None).expect("the nice value")
        })
        .join()
        .expect("the reading thread");
        assert_eq!(reading, (projecting + READER_NICENESS).min(19));
        assert!(reading > projecting || projecting == 19);
        assert_eq!(getpriority_process(None).ok(), Some(projecting));
    }
}
