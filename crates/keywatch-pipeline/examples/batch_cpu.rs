//! `make bench-lambda`: the CPU one 10,000-record batch costs the projector's use case, with
//! the network taken out (the in-memory database, a pager that only renders the pages).
//! Peers in the same run: the same batches on SQLite in memory, and parsing the records'
//! JSON alone (the floor: every batch must at least be read).
//!
//! Usage: `batch_cpu RECORDS.jsonl [BATCH] [ROUNDS]` (one CloudTrail record per line; two
//! batches: the first into an empty database, the second into the database the first left).
//! Each figure is the median of `ROUNDS` rounds (7 unless given), the peers taking turns with
//! the in-memory database, since one round on a shared machine varies by a fifth or more.

use keywatch_core::page::page;
use keywatch_core::{Alert, AlertConfig, Timestamp};
use keywatch_database::{Database, MemoryDatabase};
use keywatch_pipeline::{NoMetrics, PageError, Pager, Payload, Pipeline};
use keywatch_sqlite::SqliteDatabase;
use std::time::Instant;

/// Renders each page as SNS would be given it, and sends nothing.
struct RenderingPager(usize);

impl Pager for RenderingPager {
    fn pages_per_send(&self) -> usize {
        usize::MAX
    }

    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>> {
        alerts
            .iter()
            .map(|a| {
                let p = page(a);
                self.0 += p.text.len() + p.json.len();
                Ok(())
            })
            .collect()
    }
}

/// CPU time of this process's threads so far (Linux `schedstat`, nanoseconds): the work,
/// not the wait, wherever it ran (the fold and the encoding run on every core; the pool's
/// threads live as long as the process, so none is missed).
fn cpu_nanos() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Milliseconds of CPU and of wall time `work` takes.
fn measure<T>(work: impl FnOnce() -> T) -> (f64, f64, T) {
    let (cpu, wall) = (cpu_nanos(), Instant::now());
    let out = work();
    let cpu = (cpu_nanos() - cpu) as f64 / 1e6;
    (cpu, wall.elapsed().as_secs_f64() * 1e3, out)
}

/// Runs the batches through a pipeline over `database`: per batch, (CPU ms, wall ms, alerts).
fn run<S: Database>(database: S, batches: &[Vec<String>]) -> Vec<(f64, f64, usize)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut pipeline = Pipeline::new(
        database,
        AlertConfig::default(),
        RenderingPager(0),
        NoMetrics,
    );
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap_or_default();
    batches
        .iter()
        .map(|batch| {
            let payloads = batch.iter().enumerate().map(|(i, r)| Payload {
                partition: 0,
                offset: i as i64,
                value: Ok(r.as_bytes().into()),
            });
            let (cpu, wall, report) =
                measure(|| runtime.block_on(pipeline.handle_batch(payloads, now)));
            let report = report.expect("batch");
            (cpu, wall, report.alerts)
        })
        .collect()
}

/// The median of some figures (the upper one of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// Per batch, the median of each figure over the rounds.
fn medians(rounds: &[Vec<(f64, f64, usize)>]) -> Vec<(f64, f64, usize)> {
    (0..rounds.first().map_or(0, Vec::len))
        .map(|i| {
            let cpu = median(rounds.iter().map(|r| r[i].0).collect());
            let wall = median(rounds.iter().map(|r| r[i].1).collect());
            (cpu, wall, rounds[0][i].2)
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: batch_cpu RECORDS.jsonl [BATCH] [ROUNDS]");
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(7).max(1);
    let text = std::fs::read_to_string(&path).expect("records file");
    let records: Vec<String> = text.lines().map(str::to_owned).collect();
    let batches: Vec<Vec<String>> = records
        .chunks(size)
        .take(2)
        .map(<[String]>::to_vec)
        .collect();
    assert!(
        batches.len() == 2 && batches[1].len() == size,
        "{path} holds fewer than {} records",
        2 * size
    );
    let (mut memory, mut sqlite, mut parse) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (parse_cpu, _, _) = measure(|| {
            batches[0]
                .iter()
                .filter(|r| serde_json::from_str::<serde_json::Value>(r).is_ok())
                .count()
        });
        parse.push(parse_cpu);
        memory.push(run(MemoryDatabase::new(), &batches));
        sqlite.push(run(
            SqliteDatabase::in_memory().expect("SQLite in memory"),
            &batches,
        ));
    }
    let (memory, sqlite, parse_cpu) = (medians(&memory), medians(&sqlite), median(parse));
    println!(
        "projector use case, CPU per batch of {size} KMS records (network excluded; CPU of all threads; median of {rounds} rounds):"
    );
    println!(
        "  {:<34} {:>8} {:>8} {:>7}",
        "", "CPU ms", "wall ms", "alerts"
    );
    for (name, rows) in [
        ("in-memory database", &memory),
        ("SQLite in memory (peer)", &sqlite),
    ] {
        for (i, (cpu, wall, alerts)) in rows.iter().enumerate() {
            let which = if i == 0 {
                "first batch, empty"
            } else {
                "second batch, warm"
            };
            println!(
                "  {:<34} {cpu:8.1} {wall:8.1} {alerts:7}",
                format!("{name}, {which}")
            );
        }
    }
    println!("  {:<34} {parse_cpu:8.1}", "parsing the JSON alone (floor)");
    let warm = memory[1].0;
    println!(
        "in-memory, warm batch: {warm:.1} ms of CPU, {:.1}x the aim of 50 ms; {:.2}x SQLite in memory; {:.1}x the JSON parse alone",
        warm / 50.0,
        warm / sqlite[1].0.max(0.001),
        warm / parse_cpu.max(0.001)
    );
}
