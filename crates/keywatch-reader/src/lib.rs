//! Reads CloudTrail records from every form users hold them in, recognised by content:
//! S3-delivered log files (`{"Records":[…]}`, gzip or not), JSON arrays, JSON Lines,
//! EventBridge envelopes, CloudWatch Logs subscription payloads and
//! `aws cloudtrail lookup-events` output; directories recursively and `-` for stdin.
//!
//! The reader yields each record's JSON text with where it came from; it does not interpret
//! records (that is `keywatch-core`'s job), though a caller may have the records of a log
//! file as CloudTrail delivers it read as its own type in the pass that finds them
//! ([`read_path_limited_as`]). Memory is bounded: a source is read whole only
//! up to [`WHOLE_READ_LIMIT`]; beyond that it is read as JSON Lines, line by line.

use aws_lambda_events::event::cloudwatch_logs::LogData;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use flate2::read::MultiGzDecoder;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Sources up to this size (after decompression) are read whole and parsed from memory;
/// larger ones must be JSON Lines and are streamed.
pub const WHOLE_READ_LIMIT: usize = 256 * 1024 * 1024;
const MAX_NESTING: u8 = 4;

/// Bounds on one input, whatever it holds: a record (a line of JSON Lines) larger than
/// `max_record_bytes` is rejected with the reason and skipped without being held; an input
/// that decompresses to more than `max_input_bytes` is read up to there and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest record (CloudTrail's own limit is 256 KiB).
    pub max_record_bytes: usize,
    /// The largest input after decompression.
    pub max_input_bytes: u64,
}

/// Default largest record: 4 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;
/// Default largest input after decompression: 16 GiB.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// A reader that fails once more than `left` bytes came through it.
struct Capped<R> {
    inner: R,
    left: u64,
    max: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a source of exactly `max` bytes from a larger one.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "larger than {} bytes after decompression (--max-input-bytes); read up to there",
                    self.max
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// EventBridge detail-types that carry a CloudTrail record in `detail`.
pub const CLOUDTRAIL_DETAIL_TYPES: &[&str] = &[
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
    "AWS Console Sign In via CloudTrail",
];

/// The detail-type of KMS's own event when it deletes a key at the end of its waiting
/// period: passed on whole, as a record.
pub const KMS_KEY_DELETION_EVENT: &str = "KMS CMK Deletion";

/// An input that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The input.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// An input that is not a readable file (a loop of links, a dangling link, a FIFO…).
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The input.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Where a record came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The file, or `-` for stdin.
    pub file: String,
    /// The line the record (or its container) starts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The record's index within its container (`Records[]`, an array, `Events[]`, log events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_index: Option<u64>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(i) = self.record_index {
            write!(f, " record #{i}")?;
        }
        Ok(())
    }
}

/// What the reader found. `T` is what a record of a log file as CloudTrail delivers it is
/// read as, in the one pass that finds it in the file (see [`read_path_limited_as`]); the
/// plain readers only check it is JSON ([`IgnoredAny`]).
#[derive(Debug)]
pub enum Item<'a, T = IgnoredAny> {
    /// A record's JSON text.
    Record {
        /// The record: always the text of one JSON object (what is not one is
        /// [`Item::Rejected`]), so `keywatch_core::normalise_object` may take it. Borrowed
        /// from what the reader read where it can be: a sink copies what it keeps
        /// ([`Item::into_owned`]), and most records are not kept as text.
        json: Cow<'a, str>,
        /// Where.
        origin: Origin,
        /// The record read as `T` in the pass that found it: for the records of a log file
        /// in the form CloudTrail delivers; `None` for the records of other sources, and for
        /// a record that is JSON but not a `T` (reading `json` tells why).
        parsed: Option<T>,
    },
    /// Something that is not a record: rejected with a reason, kept for quarantine.
    Rejected {
        /// Why.
        reason: String,
        /// The text (possibly truncated to 1 MiB).
        text: String,
        /// Where.
        origin: Origin,
    },
    /// A well-formed envelope that holds no CloudTrail record (another EventBridge
    /// detail-type): counted, not an error.
    Skipped {
        /// What it was.
        what: String,
        /// Where.
        origin: Origin,
    },
}

impl<T> Item<'_, T> {
    /// The item with its record's text owned, to be kept beyond the sink's call.
    pub fn into_owned(self) -> Item<'static, T> {
        match self {
            Item::Record {
                json,
                origin,
                parsed,
            } => Item::Record {
                json: Cow::Owned(json.into_owned()),
                origin,
                parsed,
            },
            Item::Rejected {
                reason,
                text,
                origin,
            } => Item::Rejected {
                reason,
                text,
                origin,
            },
            Item::Skipped { what, origin } => Item::Skipped { what, origin },
        }
    }
}

/// The inputs a run reads, and those it cannot.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Regular files (and `-`), directories' files in name order.
    pub files: Vec<PathBuf>,
    /// Inputs that cannot be read, each with the reason: missing paths, dangling links,
    /// loops of links, unreadable directories, FIFOs, sockets and devices.
    pub unreadable: Vec<(String, String)>,
}

/// Lists the files below the paths: directories recursively (symbolic links followed, each
/// directory once, loops reported), in name order; `-` is stdin. Nothing here stops the
/// listing: what cannot be read is listed with its reason.
pub fn list_inputs(paths: &[PathBuf]) -> Inputs {
    let mut inputs = Inputs::default();
    for p in paths {
        if p.as_os_str() == "-" {
            inputs.files.push(p.clone());
            continue;
        }
        let walk = walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            match entry {
                Ok(e) if e.file_type().is_dir() => {}
                Ok(e) if e.file_type().is_file() => inputs.files.push(e.into_path()),
                Ok(e) => inputs.unreadable.push((
                    e.path().display().to_string(),
                    "not a regular file (a FIFO, socket or device); pipe it to `keywatch replay -` instead".to_owned(),
                )),
                Err(err) => {
                    let path = err
                        .path()
                        .unwrap_or(p.as_path())
                        .display()
                        .to_string();
                    let reason = match (err.loop_ancestor(), err.io_error()) {
                        (Some(ancestor), _) => {
                            format!("a loop of symbolic links back to {}", ancestor.display())
                        }
                        (None, Some(io)) if io.kind() == io::ErrorKind::NotFound => {
                            if std::fs::symlink_metadata(&path).is_ok() {
                                "a symbolic link to nothing (dangling)".to_owned()
                            } else {
                                "no such file or directory".to_owned()
                            }
                        }
                        (None, Some(io)) => io.to_string(),
                        (None, None) => err.to_string(),
                    };
                    inputs.unreadable.push((path, reason));
                }
            }
        }
    }
    inputs
}

/// [`list_inputs`], failing on the first input that cannot be read.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReadError> {
    let inputs = list_inputs(paths);
    match inputs.unreadable.into_iter().next() {
        Some((path, reason)) => Err(ReadError::Unreadable { path, reason }),
        None => Ok(inputs.files),
    }
}

/// Reads one file (or `-` for stdin), gzip or not, and hands every item to `sink`.
pub fn read_path(path: &Path, sink: &mut dyn FnMut(Item)) -> Result<(), ReadError> {
    read_path_limited(path, Limits::default(), sink)
}

/// [`read_path`] within `limits`.
pub fn read_path_limited(
    path: &Path,
    limits: Limits,
    sink: &mut dyn FnMut(Item),
) -> Result<(), ReadError> {
    read_path_limited_as(path, limits, sink)
}

/// [`read_path_limited`], each record of a log file as CloudTrail delivers it read as `T` in
/// the pass that finds it (a typed reading checks the record's syntax as it goes: the
/// record's text is not gone through twice).
pub fn read_path_limited_as<T: DeserializeOwned>(
    path: &Path,
    limits: Limits,
    sink: &mut dyn FnMut(Item<T>),
) -> Result<(), ReadError> {
    let name = path.display().to_string();
    let io_err = |source| ReadError::Io {
        path: name.clone(),
        source,
    };
    if path.as_os_str() == "-" {
        let stdin = io::stdin();
        read_stream_limited_as(stdin.lock(), &name, limits, sink).map_err(io_err)
    } else {
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_or(0, |m| m.len());
        read_stream_sized(
            BufReader::with_capacity(256 * 1024, file),
            &name,
            limits,
            size,
            sink,
        )
        .map_err(io_err)
    }
}

/// Reads a stream (gzip or not) named `name` and hands every item to `sink`.
pub fn read_stream<R: BufRead>(input: R, name: &str, sink: &mut dyn FnMut(Item)) -> io::Result<()> {
    read_stream_limited(input, name, Limits::default(), sink)
}

/// [`read_stream`] within `limits`.
pub fn read_stream_limited<R: BufRead>(
    input: R,
    name: &str,
    limits: Limits,
    sink: &mut dyn FnMut(Item),
) -> io::Result<()> {
    read_stream_limited_as(input, name, limits, sink)
}

/// [`read_stream_limited`], each record of a log file as CloudTrail delivers it read as `T`
/// in the pass that finds it.
pub fn read_stream_limited_as<R: BufRead, T: DeserializeOwned>(
    input: R,
    name: &str,
    limits: Limits,
    sink: &mut dyn FnMut(Item<T>),
) -> io::Result<()> {
    read_stream_sized(input, name, limits, 0, sink)
}

/// About how many times its size a gzip file of CloudTrail records decompresses to (JSON
/// that repeats itself: 10 to 20 times).
const GZIP_RATIO_GUESS: u64 = 16;

/// [`read_stream_limited`] of an input of `size` bytes (0 if not known), read in one
/// piece into a buffer of about its decompressed size: grown from nothing, the buffer was
/// copied at each doubling.
fn read_stream_sized<R: BufRead, T: DeserializeOwned>(
    mut input: R,
    name: &str,
    limits: Limits,
    size: u64,
    sink: &mut dyn FnMut(Item<T>),
) -> io::Result<()> {
    let (left, max) = (limits.max_input_bytes, limits.max_input_bytes);
    let head = input.fill_buf()?;
    // The decoder writes straight into the buffer read to the end (no buffer in between).
    if head.starts_with(&[0x1f, 0x8b]) {
        let inner = MultiGzDecoder::new(input);
        let hint = size.saturating_mul(GZIP_RATIO_GUESS);
        read_plain_limited(
            Capped { inner, left, max },
            name,
            WHOLE_READ_LIMIT,
            limits,
            hint,
            sink,
        )
    } else {
        let plain = Capped {
            inner: input,
            left,
            max,
        };
        read_plain_limited(plain, name, WHOLE_READ_LIMIT, limits, size, sink)
    }
}

/// Reads `input` whole (up to `limit` bytes, into a buffer of `size_hint` bytes to begin
/// with) and hands its items to `sink`; an input larger than `limit` must be JSON Lines,
/// and is read on line by line.
fn read_plain_limited<R: Read, T: DeserializeOwned>(
    mut input: R,
    name: &str,
    limit: usize,
    limits: Limits,
    size_hint: u64,
    sink: &mut dyn FnMut(Item<T>),
) -> io::Result<()> {
    // One byte more than the input: the read that finds its end has room without growing.
    let capacity = usize::try_from(size_hint.saturating_add(1)).map_or(limit, |n| n.min(limit));
    let mut buf = READ_BUFFER.take();
    let (filled, fault) = read_into(&mut input, &mut buf, capacity, limit.saturating_add(1));
    if let Some(e) = fault {
        // A truncated gzip, trailing junk: keep every whole record read before the fault.
        salvage(&buf[..filled], name, sink);
        keep_read_buffer(buf);
        return Err(e);
    }
    if filled <= limit {
        // Whole files (`{"Records":[…]}`, one pretty-printed record…): the same record limit.
        let max = limits.max_record_bytes;
        read_bytes_as(&buf[..filled], name, &mut |item| match item {
            Item::Record { json, origin, .. } if json.len() > max => sink(reject(
                format!("record larger than {max} bytes (--max-record-bytes): skipped"),
                &json.as_bytes()[..json.len().min(1024)],
                origin,
            )),
            other => sink(other),
        });
        keep_read_buffer(buf);
        return Ok(());
    }
    buf.truncate(filled);
    // Too large to hold: it must be JSON Lines. Finish the partial last line, then stream.
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let mut line_no = 0u64;
    let mut rest = Vec::new();
    let partial_too_long = read_line_bounded(&mut input, &mut rest, limits.max_record_bytes)?;
    let last_start = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let oversized_last = partial_too_long || buf.len() - last_start > limits.max_record_bytes;
    if !oversized_last {
        buf.extend_from_slice(&rest);
    }
    let complete = if oversized_last {
        &buf[..last_start.saturating_sub(1)]
    } else {
        // The buffer now ends at a line end: its last "line" after the final newline is empty.
        buf.strip_suffix(b"\n").unwrap_or(&buf)
    };
    for line in complete.split(|b| *b == b'\n') {
        line_no += 1;
        if line.len() > limits.max_record_bytes {
            sink(too_large(line, name, line_no, limits));
        } else {
            read_line(line, name, line_no, sink);
        }
    }
    if oversized_last {
        line_no += 1;
        sink(too_large(&buf[last_start..], name, line_no, limits));
    }
    drop(buf);
    let mut line = Vec::new();
    loop {
        line.clear();
        let too_long = read_line_bounded(&mut input, &mut line, limits.max_record_bytes)?;
        if line.is_empty() && !too_long {
            return Ok(());
        }
        line_no += 1;
        if too_long {
            sink(too_large(&line, name, line_no, limits));
        } else {
            read_line(&line, name, line_no, sink);
        }
    }
}

thread_local! {
    /// The buffer a thread read its last input into, kept for its next one: CloudTrail's
    /// files are read one after another by the same threads, and a buffer new for each was
    /// zeroed twice before the decoder wrote into it (by the kernel, page by page, and by
    /// the standard library's `read_to_end`), a twentieth of the reading threads' CPU.
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest buffer a thread keeps between inputs: a CloudTrail log file decompresses to a
/// few MB.
const READ_BUFFER_KEPT: usize = 16 * 1024 * 1024;

fn keep_read_buffer(buf: Vec<u8>) {
    if buf.len() <= READ_BUFFER_KEPT {
        READ_BUFFER.set(buf);
    }
}

/// Reads `input` to its end, or to `max` bytes, into `buf` from its start; returns how many
/// bytes it read and the fault that stopped it early, if one did. All of `buf` is kept
/// initialised, so a buffer read into before is read into again without being zeroed;
/// room for `size_hint` bytes is reserved, and only what reading reaches is zeroed.
fn read_into(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    size_hint: usize,
    max: usize,
) -> (usize, Option<io::Error>) {
    buf.reserve(size_hint.min(max).saturating_sub(buf.len()));
    let mut filled = 0;
    loop {
        if filled >= max {
            return (filled, None);
        }
        if filled == buf.len() {
            // Doubling zeroes at most twice what is read; within the room reserved, it stops
            // at the room's end rather than move the buffer past it.
            let doubled = buf.len().saturating_mul(2).max(64 * 1024);
            let room = buf.capacity();
            let grown = if buf.len() < room {
                doubled.min(room)
            } else {
                doubled
            };
            buf.resize(grown.min(max), 0);
        }
        let end = buf.len().min(max);
        match input.read(&mut buf[filled..end]) {
            Ok(0) => return (filled, None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e)),
        }
    }
}

/// Reads one line (up to and without needing more than `max` bytes of memory); returns
/// whether it was longer than `max`, in which case `line` holds its first `max` bytes and the
/// rest was skipped.
fn read_line_bounded<R: BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    let mut too_long = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(too_long);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            too_long = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        input.consume(used);
        if done {
            return Ok(too_long);
        }
    }
}

fn too_large<T>(line: &[u8], name: &str, line_no: u64, limits: Limits) -> Item<'static, T> {
    reject(
        format!(
            "record larger than {} bytes (--max-record-bytes): skipped",
            limits.max_record_bytes
        ),
        &line[..line.len().min(1024)],
        Origin {
            file: name.to_owned(),
            line: Some(line_no),
            record_index: None,
        },
    )
}

/// What can be read from the start of an input cut short: the whole records of a
/// `{"Records":[…` file, else its whole lines.
fn salvage<T: DeserializeOwned>(buf: &[u8], name: &str, sink: &mut dyn FnMut(Item<T>)) {
    let text = String::from_utf8_lossy(buf);
    let head: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(12)
        .collect();
    if !head.starts_with("{\"Records\":[") {
        // JSON Lines or one value per line: every complete line.
        let complete = match buf.iter().rposition(|b| *b == b'\n') {
            Some(end) => &buf[..end],
            None => return,
        };
        read_bytes_as(complete, name, sink);
        return;
    }
    let Some(open) = text.find('[') else { return };
    let mut rest = &text[open + 1..];
    let mut index = 0u64;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<&RawValue>();
        match values.next() {
            Some(Ok(raw)) => {
                let consumed = values.byte_offset();
                classify(
                    raw,
                    Origin {
                        file: name.to_owned(),
                        line: Some(1),
                        record_index: Some(index),
                    },
                    0,
                    sink,
                );
                index += 1;
                rest = &rest[consumed..];
            }
            _ => return,
        }
    }
}

fn read_line<T>(line: &[u8], name: &str, line_no: u64, sink: &mut dyn FnMut(Item<T>)) {
    let origin = Origin {
        file: name.to_owned(),
        line: Some(line_no),
        record_index: None,
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match std::str::from_utf8(line)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<&RawValue>(s.trim()).map_err(|e| e.to_string()))
    {
        Ok(raw) => classify(raw, origin, 0, sink),
        Err(e) => sink(reject(format!("not JSON: {e}"), line, origin)),
    }
}

fn reject<T>(reason: String, text: &[u8], origin: Origin) -> Item<'static, T> {
    const MAX: usize = 1024 * 1024;
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX)]).into_owned();
    Item::Rejected {
        reason,
        text,
        origin,
    }
}

fn line_of(bytes: &[u8], offset: usize) -> u64 {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64
        + 1
}

/// Reads an in-memory source (a whole file, an S3 object, a Lambda payload).
pub fn read_bytes(bytes: &[u8], name: &str, sink: &mut dyn FnMut(Item)) {
    read_bytes_as(bytes, name, sink)
}

/// [`read_bytes`], each record of a log file as CloudTrail delivers it read as `T` in the
/// pass that finds it.
pub fn read_bytes_as<T: DeserializeOwned>(bytes: &[u8], name: &str, sink: &mut dyn FnMut(Item<T>)) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            // Fall back to lines so that one bad line does not lose the rest.
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                read_line(line, name, i as u64 + 1, sink);
            }
            return;
        }
    };
    // The form AWS delivers to S3, `{"Records":[…]}`: each record read as `T` where it is found,
    // one pass over the file; a broken record is rejected alone and the rest read.
    let start = leading_ws(text);
    if text[start..].starts_with('{') {
        let origin = Origin {
            file: name.to_owned(),
            line: Some(line_of(bytes, start)),
            record_index: None,
        };
        if let Some(records) = delivered_records_as::<T>(&text[start..]) {
            for (i, record) in records.into_iter().enumerate() {
                let origin = Origin {
                    record_index: Some(i as u64),
                    ..origin.clone()
                };
                sink(match record {
                    Delivered::Read(json, parsed) => Item::Record {
                        json: Cow::Borrowed(json),
                        origin,
                        parsed: Some(parsed),
                    },
                    Delivered::Json(json) => Item::Record {
                        json: Cow::Borrowed(json),
                        origin,
                        parsed: None,
                    },
                    Delivered::Broken(text, e) => {
                        reject(format!("not JSON: {e}"), text.as_bytes(), origin)
                    }
                });
            }
            return;
        }
        // Other objects holding `Records` (with more members, say), read in one pass: the
        // general path below reads a value through once to find where it ends, then again.
        if let Ok(
            probe @ Probe {
                records: Some(_), ..
            },
        ) = serde_json::from_str::<Probe<'_>>(text)
        {
            classify_object(probe, text[start..].trim_end(), origin, sink);
            return;
        }
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    // Line numbers are counted on from the previous value, not from the start: linear in the
    // input, however many values it holds.
    let mut cursor = (0usize, 1u64);
    let mut line_at = |offset: usize| {
        let (from, line) = cursor;
        let offset = offset.max(from);
        let line = line + line_of(&bytes[from..], offset - from) - 1;
        cursor = (offset, line);
        line
    };
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return,
            Some(Ok(raw)) => {
                let line = line_at(start + leading_ws(&text[start..]));
                classify(
                    raw,
                    Origin {
                        file: name.to_owned(),
                        line: Some(line),
                        record_index: None,
                    },
                    0,
                    sink,
                );
            }
            Some(Err(e)) => {
                // Resume line by line from the line where the broken value starts.
                let from = start + leading_ws(&text[start..]);
                let first_line = line_of(bytes, from);
                let line_start = text[..from].rfind('\n').map_or(0, |i| i + 1);
                let rest = &bytes[line_start..];
                if from == 0 && !rest.contains(&b'\n') {
                    sink(reject(
                        format!("not JSON: {e}"),
                        rest,
                        Origin {
                            file: name.to_owned(),
                            line: Some(1),
                            record_index: None,
                        },
                    ));
                    return;
                }
                for (i, line) in rest.split(|b| *b == b'\n').enumerate() {
                    read_line(line, name, first_line + i as u64, sink);
                }
                return;
            }
        }
    }
}

fn leading_ws(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// A record of a log file as CloudTrail delivers it, as [`delivered_records_as`] finds it.
#[derive(Debug)]
enum Delivered<'a, T> {
    /// Read as a `T`.
    Read(&'a str, T),
    /// JSON, but not a `T`.
    Json(&'a str),
    /// Not JSON: the text from its opening brace to the brace that closes it.
    Broken(&'a str, serde_json::Error),
}

/// The records of an object exactly as CloudTrail delivers it to S3, `{"Records":[{…},…]}`
/// (JSON whitespace allowed between tokens, nothing after), each read as `T` where it starts:
/// the reading finds where it ends, so the file is gone through once. A record that cannot be
/// read is found by its braces outside strings and checked to be JSON, so that a broken one
/// is rejected alone and the file's other records read. `None` for any other shape, or an
/// element that is not an object: the general path reads those.
fn delivered_records_as<T: DeserializeOwned>(text: &str) -> Option<Vec<Delivered<'_, T>>> {
    let b = text.as_bytes();
    let mut i = 0;
    for token in [&b"{"[..], b"\"Records\"", b":", b"["] {
        i = skip_json_ws(b, i);
        i = b.get(i..)?.starts_with(token).then_some(i + token.len())?;
    }
    let mut records = Vec::new();
    i = skip_json_ws(b, i);
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'{') {
                return None;
            }
            // An object ends at its closing brace: the stream does not look past it.
            let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<T>();
            let end = match stream.next() {
                Some(Ok(parsed)) => {
                    let end = i + stream.byte_offset();
                    records.push(Delivered::Read(&text[i..end], parsed));
                    end
                }
                _ => {
                    let end = object_end(b, i)?;
                    let record = &text[i..end];
                    records.push(match serde_json::from_str::<IgnoredAny>(record) {
                        Ok(_) => Delivered::Json(record),
                        Err(e) => Delivered::Broken(record, e),
                    });
                    end
                }
            };
            i = skip_json_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_json_ws(b, i + 1),
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    i = skip_json_ws(b, i);
    (b.get(i) == Some(&b'}') && skip_json_ws(b, i + 1) == b.len()).then_some(records)
}

/// Where JSON whitespace from `i` ends.
fn skip_json_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Just past the `}` that closes the object opening at `start`, counting braces outside
/// strings (a backslash escapes the next byte); `None` if the text ends first.
fn object_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let j = i + memchr::memchr3(b'"', b'{', b'}', b.get(i..)?)?;
        match b[j] {
            b'"' => {
                let mut k = j + 1;
                loop {
                    let m = k + memchr::memchr2(b'"', b'\\', b.get(k..)?)?;
                    if b[m] == b'"' {
                        i = m + 1;
                        break;
                    }
                    k = m + 2;
                }
            }
            b'{' => {
                depth += 1;
                i = j + 1;
            }
            _ => {
                depth -= 1;
                i = j + 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
    }
}

/// The containers a top-level object may be, read in one pass.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Events", default)]
    events: Option<Vec<LookupEvent>>,
    #[serde(borrow, default)]
    awslogs: Option<&'a RawValue>,
    #[serde(rename = "detail-type", borrow, default)]
    detail_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

/// The most a CloudWatch Logs subscription payload may decompress to. CloudWatch Logs
/// sends batches of at most 1 MiB of log events; more is a gzip bomb, not a batch.
pub const MAX_AWSLOGS_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct AwsLogsEnvelope<'a> {
    #[serde(borrow)]
    awslogs: AwsLogsData<'a>,
}

#[derive(Deserialize)]
struct AwsLogsData<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// A CloudWatch Logs subscription payload (`{"awslogs":{"data":base64 of gzip}}`), decoded
/// within [`MAX_AWSLOGS_BYTES`].
fn decode_awslogs(text: &str) -> Result<LogData, String> {
    use base64::Engine;
    let envelope: AwsLogsEnvelope = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let gzip = base64::engine::general_purpose::STANDARD
        .decode(envelope.awslogs.data.as_bytes())
        .map_err(|e| format!("data is not base64: {e}"))?;
    let mut json = Vec::new();
    MultiGzDecoder::new(gzip.as_slice())
        .take(MAX_AWSLOGS_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("data is not gzip: {e}"))?;
    if json.len() as u64 > MAX_AWSLOGS_BYTES {
        return Err(format!(
            "data decompresses to more than {MAX_AWSLOGS_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// One element of `aws cloudtrail lookup-events` output.
#[derive(Deserialize)]
struct LookupEvent {
    #[serde(rename = "CloudTrailEvent", default)]
    cloud_trail_event: Option<String>,
    #[serde(rename = "EventId", default)]
    event_id: Option<String>,
}

fn classify<T>(raw: &RawValue, origin: Origin, depth: u8, sink: &mut dyn FnMut(Item<T>)) {
    let text = raw.get();
    let indexed = |i: usize| Origin {
        record_index: Some(i as u64),
        ..origin.clone()
    };
    if depth > MAX_NESTING {
        sink(reject(
            "nested too deeply to be a CloudTrail container".into(),
            text.as_bytes(),
            origin,
        ));
        return;
    }
    if text.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    classify(item, indexed(i), depth + 1, sink);
                }
            }
            Err(e) => sink(reject(
                format!("not a JSON array: {e}"),
                text.as_bytes(),
                origin,
            )),
        }
        return;
    }
    if !text.starts_with('{') {
        sink(reject("not a JSON object".into(), text.as_bytes(), origin));
        return;
    }
    let probe: Probe<'_> = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            sink(reject(
                format!("unexpected shape: {e}"),
                text.as_bytes(),
                origin,
            ));
            return;
        }
    };
    classify_object(probe, text, origin, sink);
}

/// What a top-level object (`text`, read as `probe`) holds: records, lookup-events entries,
/// a CloudWatch Logs payload, an EventBridge event, or itself a record.
fn classify_object<T>(probe: Probe<'_>, text: &str, origin: Origin, sink: &mut dyn FnMut(Item<T>)) {
    let indexed = |i: usize| Origin {
        record_index: Some(i as u64),
        ..origin.clone()
    };
    if let Some(records) = probe.records {
        for (i, r) in records.into_iter().enumerate() {
            emit_record(r, indexed(i), sink);
        }
    } else if let Some(events) = probe.events {
        for (i, e) in events.into_iter().enumerate() {
            match e.cloud_trail_event {
                // The entry holds the record as a string of JSON: read as one here like any
                // other record, so that what is not a JSON object is rejected.
                Some(json) => match serde_json::from_str::<&RawValue>(&json) {
                    Ok(record) => emit_record(record, indexed(i), sink),
                    Err(err) => sink(reject(
                        format!(
                            "lookup-events entry {}: CloudTrailEvent is not JSON: {err}",
                            e.event_id.unwrap_or_default()
                        ),
                        json.as_bytes(),
                        indexed(i),
                    )),
                },
                None => sink(reject(
                    format!(
                        "lookup-events entry {} has no CloudTrailEvent",
                        e.event_id.unwrap_or_default()
                    ),
                    b"",
                    indexed(i),
                )),
            }
        }
    } else if probe.awslogs.is_some() {
        match decode_awslogs(text) {
            Ok(data) => {
                for (i, entry) in data.log_events.into_iter().enumerate() {
                    let o = indexed(i);
                    match serde_json::from_str::<&RawValue>(&entry.message) {
                        Ok(r) => emit_record(r, o, sink),
                        Err(e) => sink(reject(
                            format!("CloudWatch Logs event {} is not JSON: {e}", entry.id),
                            entry.message.as_bytes(),
                            o,
                        )),
                    }
                }
            }
            Err(e) => sink(reject(
                format!("unreadable CloudWatch Logs payload: {e}"),
                text.as_bytes(),
                origin,
            )),
        }
    } else if let (Some(detail_type), Some(_)) = (probe.detail_type.as_deref(), probe.detail) {
        if detail_type == KMS_KEY_DELETION_EVENT {
            // KMS's own event at the end of a waiting period: itself the record (the core
            // reads it as evidence that the key is deleted).
            sink(Item::Record {
                json: Cow::Borrowed(text),
                origin,
                parsed: None,
            });
            return;
        }
        if !CLOUDTRAIL_DETAIL_TYPES.contains(&detail_type) {
            sink(Item::Skipped {
                what: format!("EventBridge event \"{detail_type}\""),
                origin,
            });
            return;
        }
        match serde_json::from_str::<EventBridgeEvent<Box<RawValue>>>(text) {
            Ok(event) => emit_record(&event.detail, origin, sink),
            Err(e) => sink(reject(
                format!("unreadable EventBridge envelope: {e}"),
                text.as_bytes(),
                origin,
            )),
        }
    } else {
        sink(Item::Record {
            json: Cow::Borrowed(text),
            origin,
            parsed: None,
        });
    }
}

fn emit_record<T>(raw: &RawValue, origin: Origin, sink: &mut dyn FnMut(Item<T>)) {
    emit_record_text(raw.get(), origin, sink);
}

/// A record's text as the sink takes it, or a rejection where it is not a JSON object.
fn emit_record_text<T>(text: &str, origin: Origin, sink: &mut dyn FnMut(Item<T>)) {
    if text.starts_with('{') {
        sink(Item::Record {
            json: Cow::Borrowed(text),
            origin,
            parsed: None,
        });
    } else {
        sink(reject(
            "a record must be a JSON object".into(),
            text.as_bytes(),
            origin,
        ));
    }
}

#[cfg(test)]
mod tests;
