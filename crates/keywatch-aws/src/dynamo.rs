//! The DynamoDB database, for the Lambda functions: one table (`pk`, `sk`), on demand.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | a segment of a stream: its records appended by one batch, compressed together | `stream#<stream>` | `seg#<last eventTime ms, 15 digits>#<first>#<writer>-<n>` |
//! | a CloudTrail record, before segments (read, no longer written) | `rec#<eventID>` | `rec` |
//! | its stream entry, likewise | `stream#<stream>` | `<eventTime ms, 15 digits>#<eventID>` |
//! | a timeline (encoded JSON, `version`, `parts`) | `key#<arn>` | `timeline` |
//! | the rest of a large timeline | `key#<arn>` | `timeline#<version, 12 digits>#<writer>#<part, 4 digits>` |
//! | a snapshot of a timeline, which a rebuild starts from (encoded JSON in parts) | `snap#<arn>#<id>` | `<part, 6 digits>` |
//! | the key list | `keys` | `<arn>` |
//! | keys by key ID | `keyid#<id>` | `<arn>` |
//! | keys pending deletion | `pending` | `<arn>` |
//! | keys of a custom key store | `cks#<account>/<region>/<id>` | `<arn>` |
//! | a raised alert (encoded JSON in `body`; `json`, plain, before 2 December 2026) | `alert#<id>` | `alert` |
//! | the outbox (the alert, likewise) | `outbox` | `<alert id>` |
//!
//! A record is stored once: one that follows its key's timeline is new (see
//! [`RecordToAppend::unseen`]); any other is looked up in its streams' segments from its
//! time on. Alerts are put with `attribute_not_exists(pk)`, so each is stored once;
//! timelines are put with a `version` condition (optimistic concurrency: a conflict is
//! [`DatabaseError::Conflict`] and the projector redoes the batch). DynamoDB has no unit of
//! work spanning a batch: each write stands alone, and the projector heals a batch that
//! failed half-way (see `Projector::process`).
//!
//! Every call awaits the SDK's requests on the Tokio runtime that polls it; none blocks a
//! thread.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use keywatch_core::{Alert, KeyArn, KeyState, KeyStoreRef, KeyTimeline, Timestamp};
use keywatch_database::{
    decode_record, decode_segment, encode_json, encode_records_segment, new_records_by_stream,
    split_by_size, Database, DatabaseError, KeySummary, LoggedRecord, RecordToAppend, SegmentEntry,
    SegmentMerge, StreamId,
};
use std::collections::HashMap;
use std::sync::Mutex;

type Item = HashMap<String, AttributeValue>;

/// keywatch's database in a DynamoDB table.
pub struct DynamoDatabase {
    client: Client,
    table: String,
    /// The `version` of each timeline as last read or written, and where its parts beyond
    /// the head are.
    versions: Mutex<HashMap<String, (i64, TimelineParts)>>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn db(e: impl std::fmt::Display) -> DatabaseError {
    DatabaseError::Database(e.to_string().into())
}

fn err<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> DatabaseError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // The whole context in the message (the SDK's own Display says only "service error").
    DatabaseError::Database(
        aws_sdk_dynamodb::error::DisplayErrorContext(e)
            .to_string()
            .into(),
    )
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn arn(text: &str) -> Result<KeyArn, DatabaseError> {
    KeyArn::parse(text).ok_or_else(|| DatabaseError::Corrupt {
        what: "key ARN",
        reason: text.to_owned(),
    })
}

/// Puts an item; `Ok(false)` when its condition did not hold.
async fn put_item(
    client: &Client,
    table: &str,
    item: Item,
    condition: Option<(&str, Item)>,
) -> Result<bool, DatabaseError> {
    let mut req = client.put_item().table_name(table).set_item(Some(item));
    if let Some((expr, values)) = condition {
        req = req.condition_expression(expr);
        if !values.is_empty() {
            req = req.set_expression_attribute_values(Some(values));
        }
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(err(e)),
    }
}

/// DynamoDB refuses an item over 400 KB (names and values together), and a busy key's
/// timeline is larger than that as JSON even encoded: a body over [`TIMELINE_INLINE_BYTES`]
/// is kept in parts of at most this many bytes, in items of their own beside the `timeline`
/// item (the head), which names them. (Versions before kept the first part in the head.)
const TIMELINE_PART_BYTES: usize = 300 * 1024;
/// An encoded timeline body up to this size is kept in its head.
const TIMELINE_INLINE_BYTES: usize = 8 * 1024;

/// Where the parts of one saved timeline are: their sort keys' prefix, unique to the writer
/// and version (two writers racing for one version must not write over each other's parts),
/// and how many there are.
#[derive(Clone, Debug, Default)]
struct TimelineParts {
    prefix: String,
    count: usize,
}

impl TimelineParts {
    /// Parts for a new version, written by this process.
    fn new(version: i64, count: usize) -> Self {
        TimelineParts {
            prefix: format!("timeline#{version:012}#{}#", unique_writer_id()),
            count,
        }
    }

    /// The sort key of part `i` (from 1).
    fn sk(&self, i: usize) -> String {
        format!("{}{i:04}", self.prefix)
    }

    fn sort_keys(&self) -> impl Iterator<Item = String> + '_ {
        (1..=self.count).map(|i| self.sk(i))
    }
}

/// How often a timeline is read again when its parts changed under the reader (a writer
/// saved a newer version between the head and the parts).
const TIMELINE_READ_ATTEMPTS: usize = 3;

/// Items in one BatchWriteItem request (DynamoDB's limit).
const BATCH_WRITE_ITEMS: usize = 25;
/// Keys in one BatchGetItem request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Batch requests in flight at once.
const BATCH_CONCURRENCY: usize = 8;
/// Rounds of a batch request's unprocessed items (DynamoDB returns them when throttling)
/// before giving up; the SDK's own retries come first.
const UNPROCESSED_ROUNDS: u32 = 12;

/// Puts every item, 25 to a BatchWriteItem, [`BATCH_CONCURRENCY`] requests at a time,
/// retrying what DynamoDB leaves unprocessed with backoff.
async fn write_all(client: &Client, table: &str, items: Vec<Item>) -> Result<(), DatabaseError> {
    let requests = items.into_iter().map(Write::Put).collect();
    write_and_delete_all(client, table, requests).await
}

/// One write of a BatchWriteItem.
enum Write {
    /// Put this item.
    Put(Item),
    /// Delete the item of this key.
    Delete(Item),
}

/// Puts and deletes items, 25 to a BatchWriteItem, [`BATCH_CONCURRENCY`] requests at a time,
/// retrying what DynamoDB leaves unprocessed with backoff. No two writes may name one item.
async fn write_and_delete_all(
    client: &Client,
    table: &str,
    writes: Vec<Write>,
) -> Result<(), DatabaseError> {
    use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
    let mut requests = Vec::with_capacity(writes.len());
    for write in writes {
        requests.push(match write {
            Write::Put(item) => WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(db)?,
                )
                .build(),
            Write::Delete(key) => WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map_err(db)?,
                )
                .build(),
        });
    }
    let mut chunks = requests.chunks(BATCH_WRITE_ITEMS).map(<[_]>::to_vec);
    loop {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in chunks.by_ref().take(BATCH_CONCURRENCY) {
            let (client, table) = (client.clone(), table.to_owned());
            tasks.spawn(async move {
                let mut pending = chunk;
                let mut pause = std::time::Duration::from_millis(50);
                for _ in 0..UNPROCESSED_ROUNDS {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await
                        .map_err(err)?;
                    pending = out
                        .unprocessed_items()
                        .and_then(|m| m.get(&table))
                        .cloned()
                        .unwrap_or_default();
                    if pending.is_empty() {
                        return Ok(());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
                Err(DatabaseError::Database(
                format!(
                    "{} item(s) still unprocessed after {UNPROCESSED_ROUNDS} rounds of BatchWriteItem",
                    pending.len()
                )
                .into(),
                ))
            });
        }
        if tasks.is_empty() {
            return Ok(());
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(db)??;
        }
    }
}

/// Sort keys of segments begin so: `seg#<last record's eventTime, ms, 15 digits>#<first
/// record's>#<writer>-<n>`.
const SEGMENT_PREFIX: &str = "seg#";
/// Records of one segment at most, in bytes of JSON, before compression.
const SEGMENT_RAW_BYTES: usize = 1024 * 1024;
/// A segment's body at most: DynamoDB refuses an item over 400 KB. A larger segment is
/// split in two.
const SEGMENT_MAX_BYTES: usize = 350 * 1024;

/// The items of a stream's segment of these entries (sorted), split while over
/// [`SEGMENT_MAX_BYTES`].
fn segment_items(
    pk: &str,
    writer: &str,
    entries: &[&RecordToAppend<'_>],
    out: &mut Vec<Item>,
) -> Result<(), DatabaseError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let body = encode_records_segment(entries)?;
    if body.len() > SEGMENT_MAX_BYTES {
        if entries.len() == 1 {
            return Err(DatabaseError::Database(
                format!(
                    "record {} is {} bytes even compressed: over DynamoDB's item limit",
                    first.event_id,
                    body.len()
                )
                .into(),
            ));
        }
        let (a, b) = entries.split_at(entries.len() / 2);
        segment_items(pk, writer, a, out)?;
        return segment_items(pk, writer, b, out);
    }
    let sk = format!(
        "{SEGMENT_PREFIX}{:015}#{:015}#{writer}-{}",
        last.event_time.millis().max(0),
        first.event_time.millis().max(0),
        out.len()
    );
    out.push(
        [
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(sk)),
            ("body".to_owned(), AttributeValue::B(body.into())),
        ]
        .into(),
    );
    Ok(())
}

/// The records of a segment item.
fn segment_of(item: &Item) -> Result<Vec<SegmentEntry>, DatabaseError> {
    decode_segment(segment_body(item)?)
}

/// A segment item's encoded records ([`keywatch_database::encode_segment`]).
fn segment_body(item: &Item) -> Result<&[u8], DatabaseError> {
    item_body(item, "segment")
}

/// An item's `body` (a segment's records, a record's text), or why it is corrupt.
fn item_body<'i>(item: &'i Item, what: &'static str) -> Result<&'i [u8], DatabaseError> {
    match item.get("body") {
        Some(AttributeValue::B(body)) => Ok(body.as_ref()),
        _ => Err(DatabaseError::Corrupt {
            what,
            reason: format!(
                "{} {}: no body",
                text(item, "pk").unwrap_or_default(),
                text(item, "sk").unwrap_or_default()
            ),
        }),
    }
}

/// A name unique to this write of this process, so that two writers' segments (or parts)
/// never share a sort key.
fn unique_writer_id() -> String {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// The key of a record's item in the event log (before segments).
fn record_key(event_id: &str) -> Item {
    [
        ("pk".to_owned(), s(format!("rec#{event_id}"))),
        ("sk".to_owned(), s("rec")),
    ]
    .into()
}

/// How many of a stream's parts a rebuild reads with one BatchGetItem: at most 16 segments of
/// 1 MB of records each held at once.
const PARTS_READ_AT_ONCE: usize = 16;

/// The partition of a snapshot of a key's timeline ([`Database::save_snapshot`]).
fn snapshot_pk(key: &KeyArn, id: &str) -> String {
    format!("snap#{key}#{id}")
}

/// An item of a stream's partition, as its sort key names it: a segment, or (before
/// segments) the entry of a record kept as an item of its own, `<time>#<eventID>`.
struct StreamPart {
    sk: String,
    /// Its first record's eventTime.
    first_time: Timestamp,
    /// The eventID of a record kept as an item of its own.
    record: Option<String>,
}

impl StreamPart {
    /// The part a sort key names; none for another item; an error for a segment whose key
    /// does not say when it begins.
    fn of(sk: String) -> Result<Option<Self>, DatabaseError> {
        if let Some(times) = sk.strip_prefix(SEGMENT_PREFIX) {
            // `<last>#<first>#<writer>-<n>`
            let first = times.split('#').nth(1).and_then(|t| t.parse().ok());
            let Some(first) = first else {
                return Err(DatabaseError::Corrupt {
                    what: "segment",
                    reason: format!("sort key {sk} does not say when it begins"),
                });
            };
            return Ok(Some(StreamPart {
                first_time: Timestamp::from_millis(first),
                record: None,
                sk,
            }));
        }
        let Some((at, id)) = sk.split_once('#') else {
            return Ok(None);
        };
        Ok(Some(StreamPart {
            first_time: Timestamp::from_millis(at.parse().unwrap_or_default()),
            record: Some(id.to_owned()),
            sk,
        }))
    }
}

/// Which of these eventIDs the event log holds, 100 to a BatchGetItem (consistent reads).
async fn stored_records(
    client: &Client,
    table: &str,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, DatabaseError> {
    let mut stored = std::collections::HashSet::new();
    let mut chunks = ids.chunks(BATCH_GET_KEYS);
    loop {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in chunks.by_ref().take(BATCH_CONCURRENCY) {
            let mut keys = KeysAndAttributes::builder()
                .projection_expression("pk")
                .consistent_read(true);
            for id in chunk {
                keys = keys.keys(record_key(id));
            }
            let mut request: HashMap<String, KeysAndAttributes> =
                [(table.to_owned(), keys.build().map_err(db)?)].into();
            let (client, table) = (client.clone(), table.to_owned());
            tasks.spawn(async move {
                let mut found = Vec::new();
                let mut pause = std::time::Duration::from_millis(50);
                for _ in 0..UNPROCESSED_ROUNDS {
                    let out = client
                        .batch_get_item()
                        .set_request_items(Some(request))
                        .send()
                        .await
                        .map_err(err)?;
                    found.extend(
                        out.responses()
                            .and_then(|r| r.get(&table))
                            .into_iter()
                            .flatten()
                            .filter_map(|item| text(item, "pk"))
                            .map(|pk| pk.trim_start_matches("rec#").to_owned()),
                    );
                    request = out.unprocessed_keys().cloned().unwrap_or_default();
                    if request.is_empty() {
                        return Ok(found);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
                Err(DatabaseError::Database(
                    format!(
                        "keys still unprocessed after {UNPROCESSED_ROUNDS} rounds of BatchGetItem"
                    )
                    .into(),
                ))
            });
        }
        if tasks.is_empty() {
            return Ok(stored);
        }
        while let Some(done) = tasks.join_next().await {
            stored.extend(done.map_err(db)??);
        }
    }
}

/// Actions in one TransactWriteItems request (DynamoDB's limit).
const TRANSACT_ITEMS: usize = 100;
/// Times a transaction cancelled by a conflicting one (another process writing the same
/// items) is tried again.
const TRANSACTION_CONFLICT_ROUNDS: u32 = 5;

/// Writes groups of actions, as many whole groups to a TransactWriteItems as fit in 100
/// actions. A group is one thing (an alert and its outbox entry); only its first action may
/// carry a condition. Returns, for each group, whether its condition held (and it was
/// written): a transaction cancelled by conditions is tried again without the groups whose
/// condition failed, until it goes through.
///
/// One transaction at a time. In flight together they would cut a batch's wall time on
/// DynamoDB, but could not be tested here: moto copies the table while another transaction
/// writes it ("dictionary changed size during iteration", HTTP 500), and a cancelled
/// transaction's rollback can undo a concurrent one's writes.
async fn transact_groups(
    client: &Client,
    groups: Vec<Vec<TransactWriteItem>>,
) -> Result<Vec<bool>, DatabaseError> {
    let mut held = vec![false; groups.len()];
    let mut start = 0;
    while start < groups.len() {
        let mut end = start;
        let mut actions = 0;
        while end < groups.len() && actions + groups[end].len() <= TRANSACT_ITEMS {
            actions += groups[end].len();
            end += 1;
        }
        if end == start {
            return Err(db("a group of writes over DynamoDB's transaction limit"));
        }
        let mut pending: Vec<usize> = (start..end).collect();
        let mut conflicts = 0;
        while !pending.is_empty() {
            let items: Vec<TransactWriteItem> = pending
                .iter()
                .flat_map(|&g| groups[g].iter().cloned())
                .collect();
            match client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    for &g in &pending {
                        held[g] = true;
                    }
                    pending.clear();
                }
                Err(e) => {
                    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                        e.as_service_error()
                    else {
                        return Err(err(e));
                    };
                    // One reason per action, in order: find the groups whose condition failed.
                    let codes: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    let mut failed = std::collections::HashSet::new();
                    let mut at = 0;
                    let mut other = None;
                    for &g in &pending {
                        for code in codes.iter().skip(at).take(groups[g].len()) {
                            match *code {
                                "None" => {}
                                "ConditionalCheckFailed" => {
                                    failed.insert(g);
                                }
                                code => other = Some(code.to_owned()),
                            }
                        }
                        at += groups[g].len();
                    }
                    if failed.is_empty() {
                        conflicts += 1;
                        if conflicts > TRANSACTION_CONFLICT_ROUNDS {
                            return Err(db(format!(
                                "transaction cancelled {conflicts} times ({})",
                                other.unwrap_or_else(|| "no reason given".to_owned())
                            )));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(
                            20 << conflicts.min(6),
                        ))
                        .await;
                    }
                    pending.retain(|g| !failed.contains(g));
                }
            }
        }
        start = end;
    }
    Ok(held)
}

/// Attempts per DynamoDB request unless `AWS_MAX_ATTEMPTS` says otherwise: DynamoDB
/// throttles in bursts (a hot partition, on-demand scaling), and AWS's advice is to retry
/// them with backoff; the SDK's general default of 3 gives up within a second.
pub const DYNAMODB_MAX_ATTEMPTS: u32 = 10;

/// The SDK configuration for keywatch's table: [`DYNAMODB_MAX_ATTEMPTS`] with backoff from
/// 50 ms, and a retry quota of its own that refills over time, so that a stretch of throttling
/// cannot use up the quota for good (the SDK's default bucket only refills on successes).
fn throttle_tolerant(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Config {
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition, TokenBucket};
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
        builder = builder.retry_config(
            RetryConfig::standard()
                .with_max_attempts(DYNAMODB_MAX_ATTEMPTS)
                .with_initial_backoff(std::time::Duration::from_millis(50)),
        );
    }
    builder
        .retry_partition(
            RetryPartition::custom("keywatch-dynamodb")
                .token_bucket(
                    TokenBucket::builder()
                        .capacity(5000)
                        .refill_rate(50.0)
                        .build(),
                )
                .build(),
        )
        .build()
}

impl DynamoDatabase {
    /// A database in `table`, calling DynamoDB through `config`.
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoDatabase {
            client: Client::from_conf(throttle_tolerant(config)),
            table: table.into(),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the table (on demand) if it does not exist: for local runs and tests; in AWS
    /// the template creates it.
    pub async fn create_table(
        config: &aws_config::SdkConfig,
        table: &str,
    ) -> Result<(), DatabaseError> {
        let client = Client::new(config);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(db)
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(db)
        };
        let result = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Every item a Query finds, page after page, in sort key order, read consistently.
    async fn query_all(&self, request: QueryFluentBuilder) -> Result<Vec<Item>, DatabaseError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(err)?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(out),
            }
        }
    }

    /// Reads a stream's parts (of the partition `pk`) a few at a time, in order of their
    /// first record's time, into `merge`.
    async fn visit_parts(
        &self,
        pk: &str,
        mut parts: Vec<StreamPart>,
        mut merge: SegmentMerge,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        parts.sort_by(|a, b| (a.first_time, &a.sk).cmp(&(b.first_time, &b.sk)));
        for group in parts.chunks(PARTS_READ_AT_ONCE) {
            let keys = group
                .iter()
                .map(|p| match &p.record {
                    Some(id) => record_key(id),
                    None => [("pk".to_owned(), s(pk)), ("sk".to_owned(), s(&p.sk))].into(),
                })
                .collect();
            let mut bodies: HashMap<(String, String), Item> = self
                .get_all(keys)
                .await?
                .into_iter()
                .map(|item| {
                    let key = (
                        text(&item, "pk").unwrap_or_default().to_owned(),
                        text(&item, "sk").unwrap_or_default().to_owned(),
                    );
                    (key, item)
                })
                .collect();
            for part in group {
                // Listed, so stored: none is ever deleted, and the reads are consistent.
                let key = match &part.record {
                    Some(id) => (format!("rec#{id}"), "rec".to_owned()),
                    None => (pk.to_owned(), part.sk.clone()),
                };
                let item = bodies.remove(&key).ok_or_else(|| DatabaseError::Corrupt {
                    what: "stream",
                    reason: format!("{pk} lists {}, which is not stored", part.sk),
                })?;
                let entries = match &part.record {
                    Some(id) => vec![SegmentEntry {
                        event_time: part.first_time,
                        record: LoggedRecord::CloudTrail(decode_record(item_body(
                            &item, "record",
                        )?)?),
                        event_id: id.clone(),
                    }],
                    None => segment_of(&item)?,
                };
                merge.add_segment(part.first_time, entries, visit)?;
            }
        }
        merge.finish(visit)
    }

    /// A Query of one partition.
    fn query_of(&self, pk: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(pk))
    }

    /// Every item of a partition (those whose sort key begins with `sk_prefix`, if given),
    /// in sort key order, read consistently.
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, DatabaseError> {
        let request = match sk_prefix {
            Some(prefix) => self
                .query_of(pk)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => self.query_of(pk).key_condition_expression("pk = :pk"),
        };
        self.query_all(request).await
    }

    /// The sort keys of a partition's items, in order, read consistently (DynamoDB still reads
    /// the items whole, in capacity; only the keys come back).
    async fn sort_keys(&self, pk: &str) -> Result<Vec<String>, DatabaseError> {
        let request = self
            .query_of(pk)
            .key_condition_expression("pk = :pk")
            .projection_expression("sk");
        let items = self.query_all(request).await?;
        Ok(items
            .iter()
            .filter_map(|i| text(i, "sk").map(str::to_owned))
            .collect())
    }

    /// The segment items of a stream's partition; with `from`, only those holding records
    /// of that time or later (a segment's sort key begins with its last record's time).
    async fn segments(
        &self,
        pk: &str,
        from: Option<Timestamp>,
    ) -> Result<Vec<Item>, DatabaseError> {
        let Some(from) = from else {
            return self.query(pk, Some(SEGMENT_PREFIX)).await;
        };
        self.query_all(self.segments_ending_from(pk, from)).await
    }

    /// A Query of the segment items of a stream's partition that hold records of `from` or
    /// later: a segment's sort key begins with its last record's time.
    fn segments_ending_from(&self, pk: &str, from: Timestamp) -> QueryFluentBuilder {
        self.query_of(pk)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(
                ":from",
                s(format!("{SEGMENT_PREFIX}{:015}", from.millis().max(0))),
            )
            .expression_attribute_values(":to", s(format!("{SEGMENT_PREFIX}~")))
    }

    /// The items of these keys that exist, 100 keys to a BatchGetItem (consistent reads),
    /// asking again for what DynamoDB leaves unprocessed.
    async fn get_all(&self, keys: Vec<Item>) -> Result<Vec<Item>, DatabaseError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let request = KeysAndAttributes::builder()
                .consistent_read(true)
                .set_keys(Some(chunk.to_vec()))
                .build()
                .map_err(db)?;
            let mut request: HashMap<String, KeysAndAttributes> =
                [(self.table.clone(), request)].into();
            while !request.is_empty() {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(err)?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().cloned());
                }
                request = out.unprocessed_keys().cloned().unwrap_or_default();
            }
        }
        Ok(found)
    }

    async fn put(
        &self,
        item: Item,
        condition: Option<(&str, Item)>,
    ) -> Result<bool, DatabaseError> {
        put_item(&self.client, &self.table, item, condition).await
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), DatabaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// An update of an alert's record.
    fn alert_update(
        &self,
        alert_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("alert#{alert_id}")))
            .key("sk", s("alert"))
    }

    /// Each alert's sent mark and its outbox entry's removal, a group of two writes per alert
    /// (an alert given twice once).
    fn sent_marks(
        &self,
        alert_ids: &[&str],
        at: Timestamp,
    ) -> Result<Vec<Vec<TransactWriteItem>>, DatabaseError> {
        let mut ids = alert_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let sent = Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(format!("alert#{id}")))
                    .key("sk", s("alert"))
                    .update_expression("SET sent_at = :t")
                    .expression_attribute_values(":t", n(at.millis()))
                    .build()
                    .map_err(db)?;
                let dequeued = Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s("outbox"))
                    .key("sk", s(id))
                    .build()
                    .map_err(db)?;
                Ok(vec![
                    TransactWriteItem::builder().update(sent).build(),
                    TransactWriteItem::builder().delete(dequeued).build(),
                ])
            })
            .collect()
    }

    async fn was_sent(&self, alert_id: &str) -> Result<bool, DatabaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("alert#{alert_id}")))
            .key("sk", s("alert"))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item().is_some_and(|i| i.contains_key("sent_at")))
    }

    /// The parts beyond the head of a timeline whose sort keys begin with `prefix`, in order.
    async fn timeline_parts(&self, pk: &str, prefix: &str) -> Result<Vec<Vec<u8>>, DatabaseError> {
        self.query(pk, Some(prefix))
            .await?
            .iter()
            .map(|item| {
                item.get("body")
                    .and_then(|b| b.as_b().ok())
                    .map(|b| b.as_ref().to_vec())
                    .ok_or_else(|| DatabaseError::Corrupt {
                        what: "timeline part",
                        reason: format!("{pk}: no body"),
                    })
            })
            .collect()
    }

    async fn arns(&self, pk: &str) -> Result<Vec<KeyArn>, DatabaseError> {
        self.query(pk, None)
            .await?
            .iter()
            .filter_map(|i| text(i, "sk"))
            .map(arn)
            .collect()
    }
}

impl Database for DynamoDatabase {
    async fn begin_batch(&mut self) -> Result<(), DatabaseError> {
        Ok(())
    }

    async fn commit_batch(&mut self) -> Result<(), DatabaseError> {
        Ok(())
    }

    async fn abort_batch(&mut self) {
        // Nothing to undo: writes stand alone. Versions read in the batch may be stale.
        if let Ok(mut v) = self.versions.lock() {
            v.clear();
        }
    }

    async fn append_records(
        &mut self,
        records: &[RecordToAppend<'_>],
    ) -> Result<Vec<bool>, DatabaseError> {
        // Records that follow their timelines are new; the others are looked up: in the
        // segments of their streams from their time on, and as items of their own (how
        // records were kept before segments).
        let mut ids: Vec<&str> = records
            .iter()
            .filter(|r| !r.unseen)
            .map(|r| r.event_id)
            .collect();
        let mut found = keywatch_database::FoundRecords::of(records);
        if !ids.is_empty() {
            ids.sort_unstable();
            ids.dedup();
            found.note(stored_records(&self.client, &self.table, &ids).await?);
            for (stream, (from, _)) in keywatch_database::windows_to_look_up(records) {
                let pk = format!("stream#{}", stream.as_text());
                for item in self.segments(&pk, Some(from)).await? {
                    found.search(segment_body(&item)?)?;
                }
            }
        }
        let fresh = found.fresh();
        // The new records, a segment per stream (more where one would pass DynamoDB's item
        // limit), 25 segments to a BatchWriteItem.
        // Encoded from the batch's own text: no copy of a record is made.
        let writer = unique_writer_id();
        let mut items = Vec::new();
        for (stream, entries) in new_records_by_stream(records, &fresh) {
            let pk = format!("stream#{}", stream.as_text());
            for chunk in split_by_size(&entries, SEGMENT_RAW_BYTES) {
                segment_items(&pk, &writer, chunk, &mut items)?;
            }
        }
        write_all(&self.client, &self.table, items).await?;
        Ok(fresh)
    }

    async fn visit_stream(
        &self,
        stream: &StreamId,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        let pk = format!("stream#{}", stream.as_text());
        // The stream's parts by their sort keys alone, then read a few at a time in order of
        // their first record's time, so that a long stream is never held whole.
        let mut parts = Vec::new();
        for sk in self.sort_keys(&pk).await? {
            parts.extend(StreamPart::of(sk)?);
        }
        self.visit_parts(&pk, parts, SegmentMerge::new(), visit)
            .await
    }

    async fn visit_stream_after(
        &self,
        stream: &StreamId,
        after: Timestamp,
        visit: &mut keywatch_database::RecordVisitor<'_>,
    ) -> Result<(), DatabaseError> {
        let pk = format!("stream#{}", stream.as_text());
        // The segments that end after `after` (their sort keys begin with their last
        // record's time), and the records kept as items of their own (before segments,
        // their sort keys sort before every segment's) of a later time.
        let segments = self
            .segments_ending_from(
                &pk,
                Timestamp::from_millis(after.millis().saturating_add(1)),
            )
            .projection_expression("sk");
        let records = self
            .query_of(&pk)
            .key_condition_expression("pk = :pk AND sk < :segments")
            .expression_attribute_values(":segments", s(SEGMENT_PREFIX))
            .projection_expression("sk");
        let mut parts = Vec::new();
        for request in [segments, records] {
            for item in self.query_all(request).await? {
                if let Some(sk) = text(&item, "sk") {
                    parts.extend(
                        StreamPart::of(sk.to_owned())?
                            .filter(|p| p.record.is_none() || p.first_time > after),
                    );
                }
            }
        }
        self.visit_parts(&pk, parts, SegmentMerge::after(after), visit)
            .await
    }

    async fn save_snapshot(
        &mut self,
        id: &str,
        timeline: &KeyTimeline,
    ) -> Result<(), DatabaseError> {
        // In parts of a partition of its own, as large as the timeline is.
        let pk = snapshot_pk(&timeline.key_arn, id);
        let body = encode_json(timeline, "snapshot")?;
        let items = body
            .chunks(TIMELINE_PART_BYTES)
            .enumerate()
            .map(|(i, part)| {
                [
                    ("pk".to_owned(), s(&pk)),
                    ("sk".to_owned(), s(format!("{i:06}"))),
                    ("body".to_owned(), AttributeValue::B(part.to_vec().into())),
                ]
                .into()
            })
            .collect();
        write_all(&self.client, &self.table, items).await
    }

    async fn delete_snapshots(&mut self, key: &KeyArn, ids: &[&str]) -> Result<(), DatabaseError> {
        let mut deletes = Vec::new();
        for id in ids {
            let pk = snapshot_pk(key, id);
            for sk in self.sort_keys(&pk).await? {
                deletes.push(Write::Delete(
                    [("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))].into(),
                ));
            }
        }
        write_and_delete_all(&self.client, &self.table, deletes).await
    }

    async fn load_snapshot(
        &self,
        key: &KeyArn,
        id: &str,
    ) -> Result<Option<KeyTimeline>, DatabaseError> {
        let parts = self.query(&snapshot_pk(key, id), None).await?;
        if parts.is_empty() {
            return Ok(None);
        }
        let mut body = Vec::new();
        for part in &parts {
            body.extend_from_slice(item_body(part, "snapshot")?);
        }
        keywatch_database::decode_json(&body, "snapshot").map(Some)
    }

    async fn load_timeline(&self, key: &KeyArn) -> Result<Option<KeyTimeline>, DatabaseError> {
        let pk = format!("key#{key}");
        for _ in 0..TIMELINE_READ_ATTEMPTS {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s("timeline"))
                .consistent_read(true)
                .send()
                .await
                .map_err(err)?;
            let Some(item) = out.item() else {
                return Ok(None);
            };
            let version = number(item, "version").unwrap_or(0);
            let parts = TimelineParts {
                prefix: text(item, "parts_prefix").unwrap_or_default().to_owned(),
                count: number(item, "parts").unwrap_or(0).max(0) as usize,
            };
            let json = match (
                text(item, "json"),
                item.get("body").and_then(|b| b.as_b().ok()),
            ) {
                // Written before timelines were encoded.
                (Some(json), _) => json.to_owned(),
                (None, head) if head.is_some() || parts.count > 0 => {
                    // A large timeline's head holds no body: all of it is in its parts.
                    let mut body = head.map(|h| h.as_ref().to_vec()).unwrap_or_default();
                    let rest = if parts.count == 0 {
                        Vec::new()
                    } else {
                        self.timeline_parts(&pk, &parts.prefix).await?
                    };
                    if rest.len() != parts.count {
                        continue; // a newer version replaced these parts meanwhile
                    }
                    for part in rest {
                        body.extend_from_slice(&part);
                    }
                    decode_record(&body)?
                }
                (None, _) => {
                    return Err(DatabaseError::Corrupt {
                        what: "timeline",
                        reason: format!("{key}: no body"),
                    })
                }
            };
            self.versions
                .lock()
                .map_err(db)?
                .insert(key.to_string(), (version, parts));
            return keywatch_database::parse_json(&json, "timeline").map(Some);
        }
        Err(DatabaseError::Corrupt {
            what: "timeline",
            reason: format!("{key}: its parts kept changing while read"),
        })
    }

    async fn load_timelines(
        &self,
        keys: &[KeyArn],
    ) -> Result<Vec<Option<KeyTimeline>>, DatabaseError> {
        // The heads, then the parts of the timelines in parts, 100 to a BatchGetItem.
        let heads: HashMap<String, Item> = self
            .get_all(
                keys.iter()
                    .map(|key| {
                        [
                            ("pk".to_owned(), s(format!("key#{key}"))),
                            ("sk".to_owned(), s("timeline")),
                        ]
                        .into()
                    })
                    .collect(),
            )
            .await?
            .into_iter()
            .filter_map(|item| text(&item, "pk").map(str::to_owned).map(|pk| (pk, item)))
            .collect();
        let mut part_keys: Vec<Item> = Vec::new();
        for item in heads.values() {
            if let (Some(pk), Some(prefix), Some(count)) = (
                text(item, "pk"),
                text(item, "parts_prefix"),
                number(item, "parts"),
            ) {
                let parts = TimelineParts {
                    prefix: prefix.to_owned(),
                    count: count.max(0) as usize,
                };
                part_keys.extend(
                    parts
                        .sort_keys()
                        .map(|sk| [("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))].into()),
                );
            }
        }
        let parts_read: HashMap<(String, String), Vec<u8>> = self
            .get_all(part_keys)
            .await?
            .into_iter()
            .filter_map(
                |item| match (text(&item, "pk"), text(&item, "sk"), item.get("body")) {
                    (Some(pk), Some(sk), Some(AttributeValue::B(b))) => {
                        Some(((pk.to_owned(), sk.to_owned()), b.clone().into_inner()))
                    }
                    _ => None,
                },
            )
            .collect();
        let mut timelines = Vec::with_capacity(keys.len());
        'keys: for key in keys {
            let pk = format!("key#{key}");
            let Some(item) = heads.get(&pk) else {
                timelines.push(None);
                continue;
            };
            if text(item, "json").is_some() {
                // Stored before timelines were encoded.
                timelines.push(self.load_timeline(key).await?);
                continue;
            }
            let parts = TimelineParts {
                prefix: text(item, "parts_prefix").unwrap_or_default().to_owned(),
                count: number(item, "parts").unwrap_or(0).max(0) as usize,
            };
            let mut body = match item.get("body") {
                Some(AttributeValue::B(head)) => head.as_ref().to_vec(),
                _ => Vec::new(),
            };
            for sk in parts.sort_keys() {
                match parts_read.get(&(pk.clone(), sk)) {
                    Some(part) => body.extend_from_slice(part),
                    // Replaced by a newer version meanwhile: read it on its own.
                    None => {
                        timelines.push(self.load_timeline(key).await?);
                        continue 'keys;
                    }
                }
            }
            let timeline = keywatch_database::decode_json(&body, "timeline")?;
            self.versions.lock().map_err(db)?.insert(
                key.to_string(),
                (number(item, "version").unwrap_or(0), parts),
            );
            timelines.push(Some(timeline));
        }
        Ok(timelines)
    }

    async fn save_timelines(&mut self, timelines: &[&KeyTimeline]) -> Result<(), DatabaseError> {
        // Each timeline's parts beyond its head first (BatchWriteItem), under sort keys of
        // their own: readers look for them only once a head names them. Then the heads, each
        // conditional on the version read (TransactWriteItems, 100 at a time). Then the old
        // parts' removal and the indexes (BatchWriteItem).
        struct Saving {
            arn: String,
            pk: String,
            version: i64,
            parts: TimelineParts,
            old: Option<TimelineParts>,
        }
        let mut saving = Vec::with_capacity(timelines.len());
        let mut part_items = Vec::new();
        let mut heads = Vec::with_capacity(timelines.len());
        for t in timelines {
            let arn = t.key_arn.to_string();
            let pk = format!("key#{arn}");
            let known = self.versions.lock().map_err(db)?.get(&arn).cloned();
            let body = encode_json(*t, "timeline")?;
            // A small body in the head; a large one only in parts, so that the head, written
            // in a transaction (which costs twice the write units), stays small.
            let (head, rest): (&[u8], Vec<&[u8]>) = if body.len() <= TIMELINE_INLINE_BYTES {
                (&body, Vec::new())
            } else {
                (&[], body.chunks(TIMELINE_PART_BYTES).collect())
            };
            let version = known.as_ref().map_or(0, |(v, _)| *v) + 1;
            let parts = TimelineParts::new(version, rest.len());
            for (i, part) in rest.iter().enumerate() {
                part_items.push(
                    [
                        ("pk".to_owned(), s(&pk)),
                        ("sk".to_owned(), s(parts.sk(i + 1))),
                        ("body".to_owned(), AttributeValue::B(part.to_vec().into())),
                    ]
                    .into(),
                );
            }
            let mut item: Item = [
                ("pk".to_owned(), s(&pk)),
                ("sk".to_owned(), s("timeline")),
                ("parts".to_owned(), n(rest.len() as i64)),
                ("parts_prefix".to_owned(), s(&parts.prefix)),
                ("version".to_owned(), n(version)),
            ]
            .into();
            if !head.is_empty() {
                item.insert("body".to_owned(), AttributeValue::B(head.to_vec().into()));
            }
            let put = Put::builder().table_name(&self.table).set_item(Some(item));
            let put = match &known {
                Some((v, _)) => put
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(*v)),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            heads.push(vec![TransactWriteItem::builder()
                .put(put.build().map_err(db)?)
                .build()]);
            saving.push(Saving {
                arn,
                pk,
                version,
                parts,
                old: known.map(|(_, old)| old),
            });
        }
        write_all(&self.client, &self.table, part_items).await?;
        let saved = transact_groups(&self.client, heads).await?;

        let mut writes = Vec::new();
        let mut conflict = None;
        for ((t, sv), saved) in timelines.iter().zip(saving).zip(saved) {
            let key = |sk: String| -> Item {
                [("pk".to_owned(), s(&sv.pk)), ("sk".to_owned(), s(sk))].into()
            };
            if !saved {
                // Another writer's version stands: this one's parts are nobody's.
                writes.extend(sv.parts.sort_keys().map(|sk| Write::Delete(key(sk))));
                conflict.get_or_insert_with(|| format!("timeline of {}", sv.arn));
                continue;
            }
            if let Some(old) = &sv.old {
                writes.extend(old.sort_keys().map(|sk| Write::Delete(key(sk))));
            }
            self.versions
                .lock()
                .map_err(db)?
                .insert(sv.arn.clone(), (sv.version, sv.parts));
            // The indexes.
            let mut summary: Item = [
                ("pk".to_owned(), s("keys")),
                ("sk".to_owned(), s(sv.arn.clone())),
                ("state".to_owned(), s(t.state.as_str())),
            ]
            .into();
            if let Some(d) = t.deletion_date {
                summary.insert("deletion_date".into(), n(d.millis()));
            }
            if let Some(u) = t.last_use() {
                summary.insert("last_use".into(), n(u.millis()));
            }
            if let Some(ks) = t.key_store_ref() {
                summary.insert("cks".into(), s(ks.custom_key_store_id.clone()));
                writes.push(Write::Put(
                    [
                        ("pk".to_owned(), s(format!("cks#{ks}"))),
                        ("sk".to_owned(), s(sv.arn.clone())),
                    ]
                    .into(),
                ));
            }
            writes.push(Write::Put(summary));
            writes.push(Write::Put(
                [
                    ("pk".to_owned(), s(format!("keyid#{}", t.key_arn.key_id()))),
                    ("sk".to_owned(), s(sv.arn.clone())),
                ]
                .into(),
            ));
            let pending: Item = [
                ("pk".to_owned(), s("pending")),
                ("sk".to_owned(), s(sv.arn.clone())),
            ]
            .into();
            writes.push(if t.state.is_pending_deletion() {
                Write::Put(pending)
            } else {
                Write::Delete(pending)
            });
        }
        write_and_delete_all(&self.client, &self.table, writes).await?;
        match conflict {
            Some(what) => Err(DatabaseError::Conflict(what)),
            None => Ok(()),
        }
    }

    async fn keys_in_key_store(
        &self,
        key_store: &KeyStoreRef,
    ) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns(&format!("cks#{key_store}")).await
    }

    async fn find_keys(&self, key: &str) -> Result<Vec<KeyArn>, DatabaseError> {
        match KeyArn::parse(key) {
            Some(a) => Ok(self
                .arns(&format!("keyid#{}", a.key_id()))
                .await?
                .into_iter()
                .filter(|k| *k == a)
                .collect()),
            None => self.arns(&format!("keyid#{key}")).await,
        }
    }

    async fn keys_pending_deletion(&self) -> Result<Vec<KeyArn>, DatabaseError> {
        self.arns("pending").await
    }

    async fn key_count(&self) -> Result<u64, DatabaseError> {
        Ok(self.query("keys", None).await?.len() as u64)
    }

    async fn list_keys(&self, state: Option<KeyState>) -> Result<Vec<KeySummary>, DatabaseError> {
        Ok(self
            .query("keys", None)
            .await?
            .iter()
            .filter(|i| state.is_none_or(|st| text(i, "state") == Some(st.as_str())))
            .map(|i| KeySummary {
                key_arn: text(i, "sk").unwrap_or_default().to_owned(),
                state: text(i, "state")
                    .and_then(KeyState::parse)
                    .unwrap_or_default(),
                deletion_date: number(i, "deletion_date").map(Timestamp::from_millis),
                last_use: number(i, "last_use").map(Timestamp::from_millis),
                custom_key_store_id: text(i, "cks").map(str::to_owned),
            })
            .collect())
    }

    async fn unsent_alerts(&self, limit: usize) -> Result<Vec<Alert>, DatabaseError> {
        let mut alerts: Vec<Alert> = self
            .query("outbox", None)
            .await?
            .iter()
            .filter_map(|i| match (i.get("body"), text(i, "json")) {
                (Some(AttributeValue::B(body)), _) => {
                    Some(keywatch_database::decode_json(body.as_ref(), "alert"))
                }
                // Queued before alerts were encoded.
                (_, Some(json)) => Some(keywatch_database::parse_json(json, "alert")),
                _ => None,
            })
            .collect::<Result<_, _>>()?;
        keywatch_database::sort_oldest_first(&mut alerts);
        alerts.truncate(limit);
        Ok(alerts)
    }

    async fn mark_sent(&mut self, alert_ids: &[&str], at: Timestamp) -> Result<(), DatabaseError> {
        // Each alert's sent mark and its outbox entry's removal, together: 50 alerts to a
        // TransactWriteItems.
        let groups = self.sent_marks(alert_ids, at)?;
        let held = transact_groups(&self.client, groups).await?;
        if held.iter().all(|h| *h) {
            Ok(())
        } else {
            Err(db("a sent mark without a condition was refused"))
        }
    }

    async fn claim_for_sending(
        &mut self,
        alert_ids: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        self.mark_sent_and_claim(&[], now, alert_ids, now, until)
            .await
    }

    async fn mark_sent_and_claim(
        &mut self,
        sent: &[&str],
        sent_at: Timestamp,
        to_claim: &[&str],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        // A transaction may not name one item twice: an alert both sent and to claim (not
        // how a delivery asks) is marked first, then its claim refused.
        let sent = if to_claim.iter().any(|id| sent.contains(id)) {
            self.mark_sent(sent, sent_at).await?;
            &[]
        } else {
            sent
        };
        // The sent marks (unconditional) and the conditional claims in TransactWriteItems of
        // up to 100 actions: with one PublishBatch request's pages on either side, one
        // request. A claim that fails its condition is taken out and the rest tried again.
        // An id given twice is claimed once, at its first place.
        let mut seen = std::collections::HashSet::new();
        let first: Vec<bool> = to_claim.iter().map(|id| seen.insert(*id)).collect();
        let mut groups = self.sent_marks(sent, sent_at)?;
        let marks = groups.len();
        for id in to_claim
            .iter()
            .zip(&first)
            .filter(|(_, f)| **f)
            .map(|(id, _)| id)
        {
            let claim = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("alert#{id}")))
                .key("sk", s("alert"))
                .update_expression("SET sending_until = :until")
                .condition_expression(
                    "attribute_exists(pk) AND attribute_not_exists(sent_at) \
                     AND (attribute_not_exists(sending_until) OR sending_until < :now)",
                )
                .expression_attribute_values(":until", n(until.millis()))
                .expression_attribute_values(":now", n(now.millis()))
                .build()
                .map_err(db)?;
            groups.push(vec![TransactWriteItem::builder().update(claim).build()]);
        }
        let held = transact_groups(&self.client, groups).await?;
        if !held[..marks].iter().all(|h| *h) {
            return Err(db("a sent mark without a condition was refused"));
        }
        let mut granted = held[marks..].iter();
        let claimed: Vec<bool> = first
            .iter()
            .map(|f| *f && granted.next().copied().unwrap_or(false))
            .collect();
        for (id, claimed) in to_claim.iter().zip(&claimed) {
            // Sent by another process (its outbox entry put back by a late duplicate of the
            // alert): drop the entry. Claimed by another: leave it to that one.
            if !claimed && self.was_sent(id).await? {
                self.delete("outbox", id).await?;
            }
        }
        Ok(claimed)
    }

    async fn release_claim(&mut self, alert_id: &str) -> Result<(), DatabaseError> {
        self.alert_update(alert_id)
            .update_expression("REMOVE sending_until")
            .send()
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn record_alerts(
        &mut self,
        alerts: &[Alert],
        raised_at: Timestamp,
    ) -> Result<Vec<bool>, DatabaseError> {
        // Each alert with its outbox entry, together and only if the alert is new: 50 alerts
        // to a TransactWriteItems.
        // An alert given twice is new once, at its first place (a transaction may not name
        // one item twice).
        let mut seen = std::collections::HashSet::new();
        let first: Vec<bool> = alerts
            .iter()
            .map(|a| seen.insert(a.alert_id.as_str()))
            .collect();
        let mut groups = Vec::with_capacity(alerts.len());
        let mut outboxes = Vec::with_capacity(alerts.len());
        for a in alerts
            .iter()
            .zip(&first)
            .filter(|(_, f)| **f)
            .map(|(a, _)| a)
        {
            // Encoded, an alert is about a quarter of its JSON: fewer write units per page.
            let body = encode_json(a, "alert")?;
            let outbox: Item = [
                ("pk".to_owned(), s("outbox")),
                ("sk".to_owned(), s(a.alert_id.clone())),
                ("body".to_owned(), AttributeValue::B(body.clone().into())),
            ]
            .into();
            let record: Item = [
                ("pk".to_owned(), s(format!("alert#{}", a.alert_id))),
                ("sk".to_owned(), s("alert")),
                ("kind".to_owned(), s(a.kind.as_str())),
                ("raised_at".to_owned(), n(raised_at.millis())),
                ("body".to_owned(), AttributeValue::B(body.into())),
            ]
            .into();
            let put = |item: Item, condition: Option<&str>| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .set_condition_expression(condition.map(str::to_owned))
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .map_err(db)
            };
            groups.push(vec![
                put(record, Some("attribute_not_exists(pk)"))?,
                put(outbox.clone(), None)?,
            ]);
            outboxes.push(outbox);
        }
        let mut written = transact_groups(&self.client, groups).await?.into_iter();
        let fresh: Vec<bool> = first
            .iter()
            .map(|f| *f && written.next().unwrap_or(false))
            .collect();
        let firsts = alerts.iter().zip(&fresh).zip(&first).filter(|(_, f)| **f);
        for (((a, new), _), outbox) in firsts.zip(outboxes) {
            // Raised before but never sent (its outbox entry lost, or the page refused for
            // good): queue it again; the outbox item is the same, so this is idempotent.
            if !new && !self.was_sent(&a.alert_id).await? {
                self.put(outbox, None).await?;
            }
        }
        Ok(fresh)
    }
}
