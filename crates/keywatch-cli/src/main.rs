//! `keywatch`: replay CloudTrail archives into per-key KMS timelines and alerts on an
//! embedded store, and show what it knows.

mod outbox;
mod render;
mod replay;
mod run;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use keywatch_core::Timestamp;
use keywatch_store::{SqliteStore, Store};
use std::path::PathBuf;
use std::process::ExitCode;

/// Watches AWS KMS keys through their deletion, from CloudTrail records.
#[derive(Parser)]
#[command(name = "keywatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    Text,
    /// For scripts: JSON (Lines, for lists; `jsonl` is accepted too).
    #[value(alias = "jsonl")]
    Json,
}

/// A severity threshold for `--fail-on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Info,
    Medium,
    High,
    Critical,
}

impl FailOn {
    fn severity(self) -> keywatch_core::Severity {
        use keywatch_core::Severity;
        match self {
            FailOn::Info => Severity::Info,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

/// Where the store lives.
#[derive(clap::Args)]
struct StoreArgs {
    /// The SQLite store file.
    #[arg(long, default_value = "keywatch.db", value_name = "FILE")]
    db: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Reads CloudTrail records (files, directories, `-` for stdin) and prints the alerts they raise.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// Use a throwaway store in memory instead of --db.
        #[arg(long, conflicts_with = "db")]
        in_memory: bool,
        /// The clock for time-driven alerts (RFC 3339); default now.
        #[arg(long, value_name = "RFC3339")]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write rejected records here, one JSON line each with the reason and origin.
        #[arg(long, value_name = "FILE")]
        quarantine: Option<PathBuf>,
        /// Page once per key per principal per this many minutes of pending-deletion use.
        #[arg(long, default_value_t = 60, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        suppress_minutes: u32,
        /// Exit with status 3 when this run raised an alert at or above this severity (for
        /// CI and cron).
        #[arg(long, value_enum, ignore_case = true, value_name = "SEVERITY")]
        fail_on: Option<FailOn>,
        /// Reject (and skip) a record larger than this many bytes.
        #[arg(long, default_value_t = keywatch_reader::DEFAULT_MAX_RECORD_BYTES, value_name = "BYTES")]
        max_record_bytes: usize,
        /// Read an input only up to this many bytes after decompression, and report it.
        #[arg(long, default_value_t = keywatch_reader::DEFAULT_MAX_INPUT_BYTES, value_name = "BYTES")]
        max_input_bytes: u64,
        /// Inputs.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Shows one key's timeline (by key ARN or key ID).
    Timeline {
        /// Key ARN or key ID.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Runs the projector as a Kafka consumer: folds the event log into the store and pages.
    Run {
        /// Kafka bootstrap servers (host:port,…); security settings come from KEYWATCH_KAFKA_*.
        #[arg(long, env = "KEYWATCH_KAFKA_BROKERS")]
        brokers: String,
        /// The event log topic.
        #[arg(long, env = "KEYWATCH_KAFKA_TOPIC", default_value = "keywatch-events")]
        topic: String,
        /// The consumer group.
        #[arg(long, default_value = "keywatch-projector")]
        group: String,
        /// Where timelines live: sqlite:FILE, or dynamodb (the table named by KEYWATCH_TABLE).
        #[arg(long, default_value = "sqlite:keywatch.db")]
        store: String,
        /// Page through this SNS topic (and put CloudWatch metrics); without it alerts go to stdout.
        #[arg(long, env = "KEYWATCH_SNS_TOPIC_ARN")]
        sns_topic_arn: Option<String>,
        #[arg(long, env = "KEYWATCH_SUPPRESS_MINUTES", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
        suppress_minutes: u32,
        /// Records per batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Exit after this many seconds without a record (for batch jobs and tests).
        #[arg(long, value_name = "SECONDS")]
        exit_when_idle: Option<u64>,
        /// How often to evaluate the time-driven alerts.
        #[arg(long, default_value_t = 15)]
        sweep_minutes: u64,
    },
    /// Is this key safe to delete? Its use, what it protects, and a verdict from what the
    /// store has seen. Exit status: 0 safe (or already deleted), 3 in use.
    Preflight {
        /// Key ARN or key ID.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        /// How many days without use count as unused.
        #[arg(long, default_value_t = keywatch_core::preflight::DEFAULT_PREFLIGHT_DAYS, value_name = "N")]
        days: u32,
        /// The clock (RFC 3339); default now.
        #[arg(long, value_name = "RFC3339")]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Lists the keys keywatch knows, with state, deletion date and last use.
    Keys {
        #[command(flatten)]
        store: StoreArgs,
        /// Only keys in this state (any case).
        #[arg(long, ignore_case = true, value_parser = clap::builder::PossibleValuesParser::new(KEY_STATES))]
        state: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn open_existing(args: &StoreArgs) -> Result<SqliteStore> {
    if !args.db.exists() {
        bail!(
            "no store at {} (run `keywatch replay` first, or pass --db)",
            args.db.display()
        );
    }
    SqliteStore::open(&args.db).with_context(|| format!("opening store {}", args.db.display()))
}

/// The one key that `key` (an ARN or a key ID) names in the store.
fn find_one_key(
    db: &SqliteStore,
    key: &str,
    store: &StoreArgs,
) -> Result<keywatch_core::KeyTimeline> {
    let found = db.find_keys(key)?;
    let arn = match found.as_slice() {
        [] => bail!("no key {key} in {}", store.db.display()),
        [one] => one.clone(),
        many => bail!(
            "{key} names {} keys (a multi-Region key has one per Region); pass one ARN:\n  {}",
            many.len(),
            many.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
    };
    db.load_timeline(&arn)?
        .context("timeline vanished while reading")
}

fn parse_as_of(as_of: Option<String>) -> Result<Timestamp> {
    match as_of {
        Some(s) => Timestamp::parse_rfc3339(&s)
            .with_context(|| format!("--as-of {s:?} is not an RFC 3339 instant")),
        None => Ok(Timestamp::now()),
    }
}

/// AWS's key states, and Deleted and Unknown.
const KEY_STATES: [&str; 8] = [
    "Enabled",
    "Disabled",
    "PendingDeletion",
    "PendingReplicaDeletion",
    "PendingImport",
    "Unavailable",
    "Deleted",
    "Unknown",
];

/// Writes to standard output (a closed pipe is an error the caller ends quietly on).
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether an error is standard output's reader going away (`| head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Exit status of `preflight` for a key in use, and of `replay --fail-on` when an alert at or
/// above the threshold was raised.
const EXIT_IN_USE: u8 = 3;

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay {
            store,
            in_memory,
            as_of,
            format,
            quarantine,
            suppress_minutes,
            fail_on,
            max_record_bytes,
            max_input_bytes,
            paths,
        } => {
            let as_of = parse_as_of(as_of)?;
            let db = if in_memory {
                SqliteStore::in_memory()?
            } else {
                SqliteStore::open(&store.db)
                    .with_context(|| format!("opening store {}", store.db.display()))?
            };
            replay::run(replay::Options {
                store: db,
                as_of,
                json: format == Format::Json,
                quarantine,
                suppress_minutes,
                limits: keywatch_reader::Limits {
                    max_record_bytes,
                    max_input_bytes,
                },
                paths,
            })
            .map(|outcome| {
                let failed = fail_on
                    .zip(outcome.highest)
                    .is_some_and(|(at, highest)| highest >= at.severity());
                if outcome.unreadable > 0 {
                    ExitCode::FAILURE
                } else if failed {
                    ExitCode::from(EXIT_IN_USE)
                } else {
                    ExitCode::SUCCESS
                }
            })
        }
        Command::Run {
            brokers,
            topic,
            group,
            store,
            sns_topic_arn,
            suppress_minutes,
            batch,
            exit_when_idle,
            sweep_minutes,
        } => run::run(run::Options {
            brokers,
            topic,
            group,
            store,
            sns_topic_arn,
            suppress_minutes,
            batch,
            exit_when_idle,
            sweep_minutes,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Timeline { key, store, format } => {
            let db = open_existing(&store)?;
            let timeline = find_one_key(&db, &key, &store)?;
            if format == Format::Json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&timeline)?))?;
            } else {
                emit(&render::timeline(&timeline))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Preflight {
            key,
            store,
            days,
            as_of,
            format,
        } => {
            let as_of = parse_as_of(as_of)?;
            let db = open_existing(&store)?;
            let timeline = find_one_key(&db, &key, &store)?;
            let report = keywatch_core::preflight::preflight(&timeline, as_of, days);
            if format == Format::Json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&render::preflight(&report))?;
            }
            Ok(match report.verdict {
                keywatch_core::preflight::Verdict::InUse => ExitCode::from(EXIT_IN_USE),
                _ => ExitCode::SUCCESS,
            })
        }
        Command::Keys {
            store,
            state,
            format,
        } => {
            let db = open_existing(&store)?;
            // The spelling AWS uses, whatever case was typed.
            let state = state.and_then(|s| {
                KEY_STATES
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(&s))
                    .map(|k| (*k).to_owned())
            });
            let keys = db.list_keys(state.as_deref())?;
            if format == Format::Json {
                for k in keys {
                    emit(&format!("{}\n", serde_json::to_string(&k)?))?;
                }
            } else {
                emit(&render::keys(&keys))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWATCH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): what was not written stays in the
        // outbox for the next run; end quietly, as ripgrep and fd do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keywatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
