//! `keywatch replay`: read inputs on every core, project them in input order, print alerts.

use crate::render;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keywatch_core::{normalise, AlertConfig, Normalised, Timestamp};
use keywatch_reader::{expand_paths, read_path, Item, Origin};
use keywatch_store::{NormalisedRecord, Projector, SqliteStore, Store};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// How many KMS records the projector takes at once.
const BATCH: usize = 10_000;

pub struct Options {
    pub store: SqliteStore,
    pub as_of: Timestamp,
    pub json: bool,
    pub quarantine: Option<PathBuf>,
    pub suppress_minutes: u32,
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

fn read_file(path: &std::path::Path) -> FileResult {
    let mut out = FileResult::default();
    let result = read_path(path, &mut |item| match item {
        Item::Record { json, origin } => {
            out.records += 1;
            match normalise(&json) {
                Ok(Normalised::NotKms) => out.not_kms += 1,
                Ok(Normalised::KmsUntracked { .. }) => out.untracked += 1,
                Ok(Normalised::Kms { event_id, events }) => out.kms.push(NormalisedRecord {
                    event_id,
                    json,
                    events,
                }),
                Err(e) => out
                    .rejected
                    .push(Rejection::new(e.to_string(), origin, json)),
            }
        }
        Item::Rejected {
            reason,
            text,
            origin,
        } => out.rejected.push(Rejection::new(reason, origin, text)),
        Item::Skipped { .. } => out.skipped += 1,
    });
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
    alerts: u64,
}

pub fn run(opts: Options) -> Result<()> {
    let files = expand_paths(&opts.paths)?;
    let mut projector = Projector::new(
        opts.store,
        AlertConfig {
            suppress_minutes: opts.suppress_minutes,
        },
    );
    let mut quarantine = match &opts.quarantine {
        Some(p) => {
            Some(BufWriter::new(File::create(p).with_context(|| {
                format!("creating quarantine file {}", p.display())
            })?))
        }
        None => None,
    };
    let progress =
        ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut totals = Totals::default();
    let mut batch: Vec<NormalisedRecord> = Vec::with_capacity(BATCH);
    let mut shown_rejections = 0;

    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, FileResult)>(workers * 2);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, files) = (&next, &files);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { return };
                if tx.send((i, read_file(path))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        // Take the files' results in input order so that output is the same on every run.
        let mut pending: BTreeMap<usize, FileResult> = BTreeMap::new();
        let mut expected = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&expected) {
                expected += 1;
                progress.inc(1);
                if let Some(e) = result.error {
                    // An input that cannot be opened stops the run, after what was read is stored.
                    flush(
                        &mut projector,
                        &mut batch,
                        opts.as_of,
                        opts.json,
                        &mut out,
                        &mut totals,
                    )?;
                    anyhow::bail!("{e}");
                }
                totals.files += 1;
                totals.records += result.records;
                totals.not_kms += result.not_kms;
                totals.untracked += result.untracked;
                totals.skipped += result.skipped;
                totals.kms += result.kms.len() as u64 + result.untracked;
                for r in result.rejected {
                    totals.rejected += 1;
                    match quarantine.as_mut() {
                        Some(q) => {
                            serde_json::to_writer(&mut *q, &r)?;
                            q.write_all(b"\n")?;
                        }
                        None if shown_rejections < 20 => {
                            shown_rejections += 1;
                            progress.suspend(|| eprintln!("rejected {}: {}", r.origin, r.reason));
                        }
                        None => {}
                    }
                }
                batch.extend(result.kms);
                if batch.len() >= BATCH {
                    flush(
                        &mut projector,
                        &mut batch,
                        opts.as_of,
                        opts.json,
                        &mut out,
                        &mut totals,
                    )?;
                }
                progress.set_message(format!(
                    "{} records, {} alerts",
                    totals.records, totals.alerts
                ));
            }
        }
        Ok(())
    })?;
    flush(
        &mut projector,
        &mut batch,
        opts.as_of,
        opts.json,
        &mut out,
        &mut totals,
    )?;
    let swept = projector.sweep(opts.as_of)?;
    totals.alerts += swept.len() as u64;
    for a in &swept {
        render::alert(&mut out, a, opts.json)?;
    }
    if let Some(mut q) = quarantine {
        q.flush()?;
    }
    out.flush()?;
    progress.finish_and_clear();
    let keys = projector.store().key_count()?;
    eprintln!(
        "keywatch: {} files, {} records read: {} KMS ({} tracked), {} from other services, {} envelopes without a record; {} keys; {} alerts raised; {} rejected{}; {} duplicates",
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
            (None, n) if n > 20 => " (first 20 shown; use --quarantine FILE to keep them all)".to_owned(),
            (None, _) => String::new(),
        },
        totals.duplicates,
    );
    Ok(())
}

fn flush(
    projector: &mut Projector<SqliteStore>,
    batch: &mut Vec<NormalisedRecord>,
    as_of: Timestamp,
    json: bool,
    out: &mut impl Write,
    totals: &mut Totals,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcome = projector.process(batch, as_of)?;
    batch.clear();
    totals.duplicates += outcome.duplicate_records as u64;
    totals.alerts += outcome.alerts.len() as u64;
    for a in &outcome.alerts {
        render::alert(out, a, json)?;
    }
    Ok(())
}
