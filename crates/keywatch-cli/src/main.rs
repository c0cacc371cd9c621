//! `keywatch`: replay CloudTrail archives into per-key KMS timelines and alerts on an
//! embedded store, and show what it knows.

#[cfg(feature = "doctor")]
mod doctor;
mod html;
mod outbox;
mod render;
mod replay;
#[cfg(feature = "run")]
mod run;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use keywatch_core::{KeyState, Timestamp};
use keywatch_database::Database;
use keywatch_sqlite::SqliteDatabase;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: a replay's records are allocated by its reading
/// threads and freed by others, which glibc's per-thread arenas kept as free memory. On the
/// million records, 8-14 MiB less at the peak and 10-20 % faster; on ten million, 178 MiB
/// against 196 (bench/HISTORY.md, nineteenth session).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Watches AWS KMS keys through their deletion, from CloudTrail records.
#[derive(Parser)]
#[command(name = "keywatch", version)]
struct Cli {
    /// Colour in text output: auto (only on a terminal, and not when NO_COLOR is set),
    /// always, never.
    #[arg(long, global = true, value_enum, ignore_case = true, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
    /// Print only results, alerts and errors: no progress bar, no summary, warnings only.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log lines (stderr) as text or as JSON objects, one per line.
    #[arg(long, global = true, value_enum, ignore_case = true, default_value_t = LogFormat::Text, env = "KEYWATCH_LOG_FORMAT", value_name = "FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// When to colour text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set (and not empty).
    Auto,
    /// Always, even in pipes and files.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// Whether to colour, for an output that is (or is not) a terminal, with NO_COLOR's value.
    fn colour(self, terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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

/// Output format of `keywatch timeline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TimelineFormat {
    /// For people, in a terminal.
    Text,
    /// For scripts.
    Json,
    /// A self-contained page with the timeline as a picture (`> key.html`).
    Html,
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
        /// The clock for time-driven alerts: an RFC 3339 instant, a date, or now-7d (s, m, h,
        /// d, w); default now.
        #[arg(long, value_name = "WHEN")]
        as_of: Option<String>,
        #[arg(long, value_enum, ignore_case = true, default_value_t = Format::Text)]
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
    /// Shows one key's timeline (by key ARN or key ID); `--format html > key.html` draws it.
    Timeline {
        /// Key ARN or key ID.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, ignore_case = true, default_value_t = TimelineFormat::Text)]
        format: TimelineFormat,
        /// The clock for the verdict on the HTML page; default now.
        #[arg(long, value_name = "WHEN")]
        as_of: Option<String>,
    },
    /// Writes one self-contained HTML page (`> report.html`) with the timeline of every key at
    /// risk: pending deletion, possibly orphaned key material, or a high or critical page.
    Report {
        #[command(flatten)]
        store: StoreArgs,
        /// The clock for the verdicts: an RFC 3339 instant, a date, or now-7d; default now.
        #[arg(long, value_name = "WHEN")]
        as_of: Option<String>,
    },
    /// Runs the projector as a Kafka consumer: folds the event log into the store and pages.
    #[cfg(feature = "run")]
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
        /// This process's static member id in the group (Kafka's `group.instance.id`); default
        /// one unique to the process. A process restarted with the id of the one it replaces
        /// (a supervisor's restart, a pod of a StatefulSet) takes that member's partitions at
        /// once, instead of waiting for the broker to drop a member that died. Never give two
        /// running processes the same id: the broker fences the older.
        #[arg(long, env = "KEYWATCH_GROUP_INSTANCE_ID", value_name = "ID", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        group_instance_id: Option<String>,
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
        /// A batch is cut this many milliseconds after its first record, full or not, so that
        /// a busy stream pages within a second (Lambda's `MaximumBatchingWindowInSeconds`).
        #[arg(long, value_name = "MILLISECONDS", default_value_t = 250)]
        batch_window_ms: u64,
        /// Exit after this many seconds without a record, counted from when the last batch
        /// was done (for batch jobs and tests). Pages SNS did not take stay in the outbox for
        /// the next run.
        #[arg(long, value_name = "SECONDS")]
        exit_when_idle: Option<u64>,
        /// How often to evaluate the time-driven alerts.
        #[arg(long, default_value_t = 15)]
        sweep_minutes: u64,
        /// Create the topic when it does not exist, with this many partitions (default 6).
        #[arg(long, value_name = "PARTITIONS", num_args = 0..=1, default_missing_value = "6", value_parser = clap::value_parser!(i32).range(1..))]
        create_topic: Option<i32>,
    },
    /// Is this key safe to delete? Its use, what it protects, and a verdict from what the
    /// store has seen. Exit status: 0 safe (or already deleted), 3 in use, 4 cannot tell (no
    /// use seen, but keywatch's records of the key begin within the days asked).
    Preflight {
        /// Key ARN or key ID.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        /// How many days without use count as unused.
        #[arg(long, default_value_t = keywatch_core::preflight::DEFAULT_PREFLIGHT_DAYS, value_name = "N")]
        days: u32,
        /// The clock: an RFC 3339 instant, a date, or now-7d (s, m, h, d, w); default now.
        #[arg(long, value_name = "WHEN")]
        as_of: Option<String>,
        #[arg(long, value_enum, ignore_case = true, default_value_t = Format::Text)]
        format: Format,
    },
    /// Lists the keys keywatch knows, with state, deletion date and last use.
    Keys {
        #[command(flatten)]
        store: StoreArgs,
        /// Only keys in this state (any case).
        #[arg(long, ignore_case = true, value_parser = clap::builder::PossibleValuesParser::new(KeyState::ALL.map(KeyState::as_str)))]
        state: Option<String>,
        #[arg(long, value_enum, ignore_case = true, default_value_t = Format::Text)]
        format: Format,
    },
    /// Checks, with read access to an account, what keywatch depends on: a trail logging KMS
    /// management events (read and write), EventBridge rules for KMS in the state that
    /// delivers them, and the paging topic's subscriptions. Exit status: 0 all well, 3 a
    /// problem found.
    #[cfg(feature = "doctor")]
    Doctor {
        /// The paging topic to check.
        #[arg(long, env = "KEYWATCH_SNS_TOPIC_ARN", value_name = "ARN")]
        topic_arn: Option<String>,
        /// Call AWS at this endpoint (a local test server, a private endpoint).
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
        #[arg(long, value_enum, ignore_case = true, default_value_t = Format::Text)]
        format: Format,
    },
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum, ignore_case = true)]
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff): `keywatch man > keywatch.1`.
    Man,
}

fn open_existing(args: &StoreArgs) -> Result<SqliteDatabase> {
    if !args.db.exists() {
        bail!(
            "no store at {} (run `keywatch replay` first, or pass --db)",
            args.db.display()
        );
    }
    SqliteDatabase::open(&args.db).with_context(|| format!("opening store {}", args.db.display()))
}

/// The one key that `key` (an ARN or a key ID) names in the store.
async fn find_one_key(
    db: &SqliteDatabase,
    key: &str,
    store: &StoreArgs,
) -> Result<keywatch_core::KeyTimeline> {
    let found = db.find_keys(key).await?;
    let arn = match found.as_slice() {
        // An alias is what people often have at hand; KMS's records name keys by ID and ARN.
        [] if key.starts_with("alias/") || key.contains(":alias/") => bail!(
            "{key} is an alias: keywatch knows keys by key ID or key ARN (aws kms describe-key --key-id {key} gives them)"
        ),
        [] => bail!(
            "no key {key} in {}: keywatch has read no CloudTrail record of it (replay the trail's log files that cover its use first); it cannot say whether the key is in use",
            store.db.display()
        ),
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
    keywatch_database::current_timeline(db, &arn)
        .await?
        .context("timeline vanished while reading")
}

/// Awaits calls to the local SQLite database (whose futures do their work when first polled
/// and never wait) on a current-thread runtime.
fn local<F: std::future::Future>(work: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the runtime")?
        .block_on(work))
}

fn parse_as_of(as_of: Option<String>) -> Result<Timestamp> {
    match as_of {
        Some(s) => Timestamp::parse_as_of(&s, Timestamp::now()).with_context(|| {
            format!("--as-of {s:?} is not an RFC 3339 instant, a date (2026-11-01) or now-N with s, m, h, d or w")
        }),
        None => Ok(Timestamp::now()),
    }
}

/// What the HTML page of a key needs beside its timeline: its uses counted from the event
/// log, its pages, and the preflight verdict.
fn drawn(
    db: &SqliteDatabase,
    timeline: &keywatch_core::KeyTimeline,
    as_of: Timestamp,
) -> Result<(
    html::UsageGrid,
    Vec<keywatch_core::Alert>,
    keywatch_core::preflight::Preflight,
)> {
    let alerts = db.alerts_for_key(&timeline.key_arn)?;
    let span = html::Span::of(timeline, &alerts);
    let grid = html::UsageGrid::from_event_log(db, timeline, span)?;
    let preflight = keywatch_core::preflight::preflight(
        timeline,
        as_of,
        keywatch_core::preflight::DEFAULT_PREFLIGHT_DAYS,
    );
    Ok((grid, alerts, preflight))
}

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

/// Exit status of `preflight` when keywatch saw no use of a key but its records of the key
/// do not reach back the days asked: neither safe nor in use.
const EXIT_CANNOT_TELL: u8 = 4;

fn run(cli: Cli) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let colour = cli.color.colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
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
                SqliteDatabase::in_memory()?
            } else {
                SqliteDatabase::open(&store.db)
                    .with_context(|| format!("opening store {}", store.db.display()))?
            };
            replay::run(replay::Options {
                store: db,
                as_of,
                format: match format {
                    Format::Json => render::AlertFormat::Json,
                    Format::Text => render::AlertFormat::Text { colour },
                },
                quiet: cli.quiet,
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
        #[cfg(feature = "run")]
        Command::Run {
            brokers,
            topic,
            group,
            group_instance_id,
            store,
            sns_topic_arn,
            suppress_minutes,
            batch,
            batch_window_ms,
            exit_when_idle,
            sweep_minutes,
            create_topic,
        } => run::run(run::Options {
            brokers,
            topic,
            group,
            group_instance_id,
            store,
            sns_topic_arn,
            suppress_minutes,
            batch,
            batch_window: std::time::Duration::from_millis(batch_window_ms),
            exit_when_idle,
            sweep_minutes,
            create_topic,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Timeline {
            key,
            store,
            format,
            as_of,
        } => {
            let as_of = parse_as_of(as_of)?;
            let db = open_existing(&store)?;
            let mut timeline = local(find_one_key(&db, &key, &store))??;
            // Where the database keeps snapshots of it (ids new at every save), not what the
            // key's records say: the same records print the same timeline.
            timeline.snapshots.clear();
            match format {
                TimelineFormat::Json => {
                    emit(&format!("{}\n", serde_json::to_string_pretty(&timeline)?))?
                }
                TimelineFormat::Text => emit(&render::timeline(&timeline))?,
                TimelineFormat::Html => {
                    let (grid, alerts, preflight) = drawn(&db, &timeline, as_of)?;
                    emit(&html::key_page(&timeline, &grid, &alerts, &preflight))?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { store, as_of } => {
            let as_of = parse_as_of(as_of)?;
            let db = open_existing(&store)?;
            // Every read of the store on one runtime: SQLite's calls do their work at once.
            let keys = local(async {
                let mut keys = Vec::new();
                for summary in db.list_keys(None).await? {
                    let Some(arn) = keywatch_core::KeyArn::parse(&summary.key_arn) else {
                        continue;
                    };
                    let Some(timeline) = keywatch_database::current_timeline(&db, &arn).await?
                    else {
                        continue;
                    };
                    let alerts = db.alerts_for_key(&arn)?;
                    let at_risk = timeline.state.is_pending_deletion()
                        || timeline.orphaned_key_material.is_some()
                        || alerts
                            .iter()
                            .any(|a| a.severity >= keywatch_core::Severity::High);
                    if at_risk {
                        let (grid, alerts, preflight) = drawn(&db, &timeline, as_of)?;
                        keys.push((timeline, grid, alerts, preflight));
                    }
                }
                anyhow::Ok(keys)
            })??;
            emit(&html::report_page(&keys, as_of))?;
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
            let timeline = local(find_one_key(&db, &key, &store))??;
            let report = keywatch_core::preflight::preflight(&timeline, as_of, days);
            if format == Format::Json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&render::preflight(&report))?;
            }
            Ok(match report.verdict {
                keywatch_core::preflight::Verdict::InUse => ExitCode::from(EXIT_IN_USE),
                keywatch_core::preflight::Verdict::Unknown => ExitCode::from(EXIT_CANNOT_TELL),
                keywatch_core::preflight::Verdict::Safe
                | keywatch_core::preflight::Verdict::Deleted => ExitCode::SUCCESS,
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
                KeyState::ALL
                    .into_iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(&s))
            });
            let keys = local(db.list_keys(state))??;
            if format == Format::Json {
                for k in keys {
                    emit(&format!("{}\n", serde_json::to_string(&k)?))?;
                }
            } else {
                emit(&render::keys(&keys))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "doctor")]
        Command::Doctor {
            topic_arn,
            endpoint_url,
            format,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let findings = runtime.block_on(async {
                let mut loader = aws_config::from_env();
                if let Some(url) = &endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let config = loader.load().await;
                doctor::examine(&config, topic_arn.as_deref()).await
            })?;
            if format == Format::Json {
                for f in &findings {
                    emit(&format!("{}\n", serde_json::to_string(f)?))?;
                }
            } else {
                let mut text = String::new();
                for f in &findings {
                    text.push_str(&format!(
                        "{} {}: {}\n",
                        if f.ok { "ok     " } else { "PROBLEM" },
                        f.check,
                        f.detail
                    ));
                    if let Some(fix) = &f.fix {
                        text.push_str(&format!("        fix: {fix}\n"));
                    }
                }
                emit(&text)?;
            }
            Ok(if findings.iter().all(|f| f.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_IN_USE)
            })
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keywatch", &mut out);
            emit(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            emit(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Log lines on stderr: KEYWATCH_LOG filters (default info, warn with --quiet); as JSON
/// objects with `--log-format json`; coloured only where text output is.
fn init_logging(cli: &Cli) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWATCH_LOG")
        .unwrap_or_else(|_| if cli.quiet { "warn" } else { "info" }.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder
            .with_ansi(cli.color.colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let json_logs = cli.log_format == LogFormat::Json;
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): what was not written stays in the
        // outbox for the next run; end quietly, as ripgrep and fd do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if json_logs => {
            tracing::error!(error = format!("{e:#}"), "keywatch failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("keywatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
