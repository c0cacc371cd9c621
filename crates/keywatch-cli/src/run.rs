//! `keywatch run`: the pipeline as a long-running Kafka consumer (for ECS, Kubernetes,
//! on-premises). A driver of the pipeline: consumes the event log, folds it into the
//! database, pages through SNS (or writes to stdout), and commits offsets only after the
//! timelines and the outbox are written.

use crate::outbox::StreamPager;
use crate::render::{self, AlertFormat};
use anyhow::{bail, Context, Result};
use keywatch_aws::{Metrics, SnsPager};
use keywatch_core::{Alert, AlertConfig, Timestamp};
use keywatch_database::Database;
use keywatch_kafka::{ensure_topic, topic_partitions, EventLogConsumer, KafkaSettings};
use keywatch_pipeline::{
    decode_batch, BatchMetrics, MetricsError, MetricsSink, NoMetrics, PageError, Pager, Payload,
    Pipeline,
};
use keywatch_sqlite::SqliteDatabase;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `--exit-when-idle` waits for the consumer group to assign partitions.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// How long a failing store (a throttled table, a full disk) is retried before the run gives
/// up with an error; the batch in hand is not committed, so it is read again after a restart.
const STORE_PATIENCE: Duration = Duration::from_secs(300);

/// Runs `work` against the store until it succeeds, backing off from 0.5 s to 30 s, for up to
/// [`STORE_PATIENCE`]. A failed unit of work leaves nothing half-applied that a retry would
/// not heal (the projector redoes a batch whose records the log already has).
async fn retry_store<T>(
    what: &str,
    mut work: impl AsyncFnMut() -> std::result::Result<T, keywatch_database::DatabaseError>,
) -> Result<T> {
    let since = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        match work().await {
            Ok(t) => return Ok(t),
            // Stored data this version cannot read: waiting will not change it.
            Err(e) if !e.is_retryable() => {
                return Err(e).with_context(|| {
                    format!("{what}; not retried (the batch was not committed: it is read again on restart)")
                })
            }
            Err(e) if since.elapsed() + pause <= STORE_PATIENCE => {
                tracing::warn!(error = %e, retry_in = ?pause, "store failed {what}; the batch is kept and tried again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "store failing for {} s while {what}; giving up (the batch was not committed: it is read again on restart)",
                        since.elapsed().as_secs()
                    )
                })
            }
        }
    }
}

pub struct Options {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// The static member id (`group.instance.id`); default one unique to the process.
    pub group_instance_id: Option<String>,
    pub store: String,
    pub sns_topic_arn: Option<String>,
    pub suppress_minutes: u32,
    pub batch: usize,
    /// A batch is cut this long after its first record, full or not.
    pub batch_window: Duration,
    pub exit_when_idle: Option<u64>,
    pub sweep_minutes: u64,
    /// Create the topic (with this many partitions) when it does not exist.
    pub create_topic: Option<i32>,
}

/// Sets the returned flag on SIGTERM or SIGINT: the loop then finishes the batch in hand,
/// commits its offsets and exits (as a container stop or a Ctrl-C asks).
fn stop_on_signal() -> Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let flag = stop.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping after the batch in hand");
        flag.store(true, Ordering::SeqCst);
    });
    Ok(stop)
}

/// How long `run` waits for a broker to answer before saying it cannot reach any.
const BROKER_PATIENCE: Duration = Duration::from_secs(10);

/// Where the timelines live.
enum StoreSpec {
    Sqlite(PathBuf),
    /// The table named by KEYWATCH_TABLE.
    DynamoDb(String),
}

fn store_spec(spec: &str) -> Result<StoreSpec> {
    match spec.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSpec::Sqlite(PathBuf::from(path))),
        _ if spec == "dynamodb" => match std::env::var("KEYWATCH_TABLE") {
            Ok(t) if !t.trim().is_empty() => Ok(StoreSpec::DynamoDb(t)),
            _ => bail!("--store dynamodb needs KEYWATCH_TABLE (the DynamoDB table name)"),
        },
        _ => bail!("--store {spec:?}: expected sqlite:FILE or dynamodb"),
    }
}

/// Where pages go: SNS, or standard output when no topic is given.
enum RunPager {
    Sns(SnsPager),
    Stdout(StreamPager<std::io::Stdout>),
}

impl Pager for RunPager {
    fn pages_per_send(&self) -> usize {
        match self {
            RunPager::Sns(p) => p.pages_per_send(),
            RunPager::Stdout(p) => p.pages_per_send(),
        }
    }

    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>> {
        match self {
            RunPager::Sns(p) => p.send(alerts).await,
            RunPager::Stdout(p) => p.send(alerts).await,
        }
    }
}

/// CloudWatch with SNS; nothing with stdout.
enum RunMetrics {
    CloudWatch(Metrics),
    None(NoMetrics),
}

impl MetricsSink for RunMetrics {
    async fn put(&self, metrics: &BatchMetrics) -> std::result::Result<(), MetricsError> {
        match self {
            RunMetrics::CloudWatch(m) => m.put(metrics).await,
            RunMetrics::None(m) => m.put(metrics).await,
        }
    }
}

pub fn run(opts: Options) -> Result<()> {
    let settings = KafkaSettings::from_env(|k| match k {
        "KEYWATCH_KAFKA_BROKERS" => Some(opts.brokers.clone()),
        "KEYWATCH_KAFKA_TOPIC" => Some(opts.topic.clone()),
        other => std::env::var(other).ok(),
    })?;
    let spec = store_spec(&opts.store)?;
    let config = AlertConfig {
        suppress_minutes: opts.suppress_minutes,
    };
    // Multi-threaded: polling the Kafka consumer (librdkafka) blocks in place on it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // AWS configuration is loaded only for what needs it (DynamoDB, SNS): a run on SQLite
        // printing to stdout touches no AWS endpoint, not even the instance metadata service.
        let sdk = match (&spec, &opts.sns_topic_arn) {
            (StoreSpec::DynamoDb(_), _) | (_, Some(_)) => Some(keywatch_aws::sdk_config().await),
            _ => None,
        };
        let (pager, metrics) = match (&opts.sns_topic_arn, &sdk) {
            (Some(arn), Some(sdk)) => (
                RunPager::Sns(SnsPager::new(sdk, arn)),
                RunMetrics::CloudWatch(Metrics::new(sdk)),
            ),
            _ => (
                RunPager::Stdout(StreamPager::new(std::io::stdout(), AlertFormat::Json)),
                RunMetrics::None(NoMetrics),
            ),
        };
        match spec {
            StoreSpec::DynamoDb(table) => {
                let sdk = match sdk {
                    Some(sdk) => sdk,
                    None => keywatch_aws::sdk_config().await,
                };
                let store = keywatch_aws::DynamoDatabase::new(&sdk, table);
                consume(
                    Pipeline::new(store, config, pager, metrics),
                    &settings,
                    &opts,
                )
                .await
            }
            StoreSpec::Sqlite(path) => {
                let store = SqliteDatabase::open(&path)
                    .with_context(|| format!("opening store {}", path.display()))?;
                consume(
                    Pipeline::new(store, config, pager, metrics),
                    &settings,
                    &opts,
                )
                .await
            }
        }
    })
}

async fn consume<S: Database>(
    mut pipeline: Pipeline<S, RunPager, RunMetrics>,
    settings: &KafkaSettings,
    opts: &Options,
) -> Result<()> {
    // With SNS paging, what was raised is also shown on stdout, as a log.
    let echo = opts.sns_topic_arn.is_some();
    // Fail fast, naming the brokers, rather than wait in silence for one that never answers.
    match tokio::task::block_in_place(|| topic_partitions(settings, BROKER_PATIENCE))? {
        Some(partitions) => {
            tracing::info!(brokers = %settings.brokers, topic = %settings.topic, partitions, "connected")
        }
        None => match opts.create_topic {
            Some(partitions) => {
                ensure_topic(settings, partitions).await?;
                tracing::info!(topic = %settings.topic, partitions, "topic created");
            }
            None => bail!(
                "topic {} does not exist on {} (pass --create-topic to create it)",
                settings.topic,
                settings.brokers
            ),
        },
    }
    // One static member id for this process, kept by every client it creates. By default it
    // is unique to the process (pid and start time), so that two runs never fence each other;
    // a process restarted in a dead one's place may take over its id, and with it, at once, the
    // partitions the broker would otherwise keep for the dead member until its session ends.
    let instance_id = opts.group_instance_id.clone().unwrap_or_else(|| {
        format!(
            "keywatch-run-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        )
    });
    let mut consumer =
        EventLogConsumer::with_instance_id(settings, &opts.group, Some(&instance_id))?;
    let stop = stop_on_signal()?;
    let stdout = std::io::stdout();
    let started = Instant::now();
    let mut last_record = Instant::now();
    let mut last_sweep: Option<Instant> = None;
    let mut folded_since_sweep = false;
    tracing::info!(topic = %settings.topic, group = %opts.group, "consuming");
    let mut backoff = Duration::ZERO;
    let mut assigned: Vec<i32> = Vec::new();
    loop {
        // The broker may restart, move the group coordinator or forget this member: log it,
        // back off, and poll again (librdkafka reconnects and rejoins); exit only when told to.
        let polling = Instant::now();
        let polled = tokio::task::block_in_place(|| {
            consumer.poll_batch(opts.batch, Duration::from_secs(1), opts.batch_window)
        });
        let batch = match polled {
            Ok(batch) => {
                backoff = Duration::ZERO;
                batch
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
                tracing::warn!(brokers = %opts.brokers, error = %e, retry_in = ?backoff, "event log unavailable; retrying");
                tokio::time::sleep(backoff).await;
                // A new client: after a broker restart the old one may never get through again.
                // It takes the old one's place as the same static member, and reads on from the
                // group's offsets (records read again are ignored by the store).
                match EventLogConsumer::with_instance_id(settings, &opts.group, Some(&instance_id))
                {
                    Ok(fresh) => consumer = fresh,
                    Err(e) => tracing::warn!(error = %e, "cannot create a new consumer yet"),
                }
                if stop.load(Ordering::SeqCst)
                    || opts
                        .exit_when_idle
                        .is_some_and(|s| last_record.elapsed() >= Duration::from_secs(s))
                {
                    tracing::info!("exiting");
                    return Ok(());
                }
                continue;
            }
        };
        let polled_in = polling.elapsed();
        let now = Timestamp::now();
        // A rebalance (a process joining or leaving the group) moves partitions: say so.
        let partitions = consumer.assigned_partitions();
        if partitions != assigned {
            tracing::info!(topic = %settings.topic, ?partitions, "partitions assigned");
            assigned = partitions;
        }
        if assigned.is_empty() && started.elapsed() < JOIN_PATIENCE {
            // Idle time counts from when the group has given us partitions.
            last_record = Instant::now();
        }
        let mut counts = BatchMetrics::default();
        let mut alerts = Vec::new();
        if !batch.is_empty() {
            let projecting = Instant::now();
            let decoded = decode_batch(batch.iter().map(|c| Payload {
                partition: c.partition.into(),
                offset: c.offset,
                value: Ok(c.payload.as_slice().into()),
            }));
            counts.records_rejected = decoded.rejected;
            let outcome = retry_store("projecting a batch", async || {
                pipeline.project(&decoded.records, now).await
            })
            .await?;
            tracing::debug!(
                records = batch.len(),
                first = ?batch.first().map(|c| (c.partition, c.offset)),
                last = ?batch.last().map(|c| (c.partition, c.offset)),
                new = outcome.new_records,
                duplicates = outcome.duplicate_records,
                rebuilds = outcome.rebuilds,
                rebuilds_from_snapshots = outcome.rebuilds_from_snapshots,
                alerts = outcome.alerts.len(),
                polled_ms = polled_in.as_millis(),
                projected_ms = projecting.elapsed().as_millis(),
                "batch projected"
            );
            alerts.extend(outcome.alerts);
        }
        // Time-driven alerts: every --sweep-minutes, and as soon as a backlog is caught up.
        folded_since_sweep |= !batch.is_empty();
        let caught_up = batch.is_empty() && folded_since_sweep;
        if caught_up
            || last_sweep
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(opts.sweep_minutes * 60))
        {
            alerts.extend(retry_store("sweeping", async || pipeline.sweep(now).await).await?);
            last_sweep = Some(Instant::now());
            folded_since_sweep = false;
        }
        counts.count_alerts(&alerts);
        if echo {
            for a in &alerts {
                render::alert(&mut stdout.lock(), a, AlertFormat::Json)?;
            }
        }
        // The outbox is in the database: what is not delivered now is delivered next round,
        // and what an earlier run could not deliver goes first.
        let delivering = Instant::now();
        match pipeline.deliver_all(now).await {
            Ok(d) if d.failed > 0 => tracing::warn!(
                failed = d.failed,
                "pages left in the outbox; retried next round"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox not read; retried next round"),
        }
        // Standard output that cannot be written (a closed pipe, a full disk) ends the run:
        // the alerts stay in the outbox, the batch is not committed, and the next run
        // delivers them first.
        if let RunPager::Stdout(p) = pipeline.pager_mut() {
            if let Some(e) = p.take_failure() {
                return Err(e).context("writing alerts to standard output");
            }
        }
        let delivered_in = delivering.elapsed();
        let putting = Instant::now();
        pipeline.put_metrics(&counts).await;
        let put_in = putting.elapsed();
        let committing = Instant::now();
        // Timelines and outbox are written: now the broker may forget these records. A commit
        // that fails (a coordinator moving, a restart) only means they may come again, which
        // the store ignores.
        if let Err(e) = consumer.commit(&settings.topic, &batch) {
            tracing::warn!(error = %e, records = batch.len(), "offsets not committed; the records may be redelivered");
        }
        if !batch.is_empty() {
            // Idle time counts from when the last records were done with, not from when they
            // came: a batch held up by a throttled database is not idleness, and a run that
            // exited after it would leave its pages to the next run.
            last_record = Instant::now();
            tracing::debug!(
                records = batch.len(),
                delivered_ms = delivered_in.as_millis(),
                metrics_ms = put_in.as_millis(),
                committed_ms = committing.elapsed().as_millis(),
                "batch committed"
            );
        }
        if stop.load(Ordering::SeqCst) {
            tracing::info!(records = batch.len(), "last batch committed; exiting");
            return Ok(());
        }
        if opts
            .exit_when_idle
            .is_some_and(|s| last_record.elapsed() >= Duration::from_secs(s))
        {
            if assigned.is_empty() {
                // Nothing read because nothing was given: say why, rather than look done.
                tracing::warn!(
                    group = %opts.group,
                    "no partitions assigned: other members of the group hold them (a member that \
                     died holds them until the broker drops it; a run restarted with its \
                     --group-instance-id takes them at once)"
                );
            }
            tracing::info!("idle; exiting");
            return Ok(());
        }
    }
}
