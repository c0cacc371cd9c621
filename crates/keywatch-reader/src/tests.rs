use super::*;
use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use std::io::Write;

const REC_A: &str = r#"{"eventVersion":"1.08","eventID":"a","eventTime":"2024-01-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt"}"#;
const REC_B: &str = r#"{"eventVersion":"1.08","eventID":"b","eventTime":"2024-01-01T00:00:01Z","eventSource":"s3.amazonaws.com","eventName":"GetObject"}"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

fn read(bytes: &[u8]) -> Vec<Item<'static>> {
    let mut items = Vec::new();
    read_stream(bytes, "input", &mut |i| items.push(i.into_owned())).expect("in-memory read");
    items
}

/// Whether the record at `index` was rejected for a reason that says `why`.
fn rejected_at(items: &[Item], index: u64, why: &str) -> bool {
    items.iter().any(|i| {
        matches!(i, Item::Rejected { reason, origin, .. }
            if reason.contains(why) && origin.record_index == Some(index))
    })
}

fn event_ids(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Record { json, .. } => {
                let v: serde_json::Value = serde_json::from_str(json).ok()?;
                v["eventID"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn s3_delivered_log_file_plain_and_gzip() {
    let doc = format!(r#"{{"Records":[{REC_A},{REC_B}]}}"#);
    assert_eq!(event_ids(&read(doc.as_bytes())), ["a", "b"]);
    let items = read(&gzip(doc.as_bytes()));
    assert_eq!(event_ids(&items), ["a", "b"]);
    match &items[1] {
        Item::Record { origin, .. } => assert_eq!(origin.record_index, Some(1)),
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn records_objects_alone_or_several_to_a_file_keep_their_lines() {
    let lines = |items: &[Item]| -> Vec<(Option<u64>, Option<u64>)> {
        items
            .iter()
            .map(|i| match i {
                Item::Record { origin, .. } => (origin.line, origin.record_index),
                other => panic!("expected a record, got {other:?}"),
            })
            .collect()
    };
    // One object after blank lines (read in one pass)…
    let one = format!("\n\n{{\"Records\":[{REC_A},\n{REC_B}]}}\n");
    let items = read(one.as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    assert_eq!(lines(&items), [(Some(3), Some(0)), (Some(3), Some(1))]);
    // …and two objects one after the other (read as a stream of values).
    let two = format!("{{\"Records\":[{REC_A}]}}\n\n{{\"Records\":[{REC_B}]}}");
    let items = read(two.as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    assert_eq!(lines(&items), [(Some(1), Some(0)), (Some(3), Some(0))]);
}

#[test]
fn json_array_and_json_lines() {
    let array = format!("[\n  {REC_A},\n  {REC_B}\n]");
    assert_eq!(event_ids(&read(array.as_bytes())), ["a", "b"]);
    let lines = format!("{REC_A}\n\n{REC_B}\n");
    assert_eq!(event_ids(&read(lines.as_bytes())), ["a", "b"]);
}

#[test]
fn a_broken_line_is_rejected_with_its_line_and_the_rest_still_read() {
    let lines = format!("{REC_A}\n{{\"eventID\": oops\n{REC_B}\n");
    let items = read(lines.as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    let rejected: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected { origin, reason, .. } => Some((origin.line, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, Some(2));
    assert!(rejected[0].1.starts_with("not JSON"), "{}", rejected[0].1);
}

#[test]
fn eventbridge_envelopes_single_and_per_line() {
    let env = |rec: &str, dt: &str| {
        format!(
            r#"{{"version":"0","id":"x","detail-type":"{dt}","source":"aws.kms","account":"111122223333","time":"2024-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{rec}}}"#
        )
    };
    let one = env(REC_A, "AWS API Call via CloudTrail");
    assert_eq!(event_ids(&read(one.as_bytes())), ["a"]);
    let lines = format!(
        "{}\n{}\n{}\n",
        one,
        env(REC_B, "AWS Service Event via CloudTrail"),
        env("{\"key-id\":\"k\"}", "KMS CMK Deletion")
    );
    let items = read(lines.as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    // KMS's own deletion event is a record of its own: the whole envelope.
    assert!(items.iter().any(
        |i| matches!(i, Item::Record { json, .. } if json.contains("\"detail-type\":\"KMS CMK Deletion\""))
    ));
    let other = env("{}", "EC2 Instance State-change Notification");
    assert!(read(other.as_bytes())
        .iter()
        .any(|i| matches!(i, Item::Skipped { what, .. } if what.contains("EC2 Instance"))));
}

#[test]
fn cloudwatch_logs_subscription_payload() {
    let data = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
        "logStream": "111122223333_CloudTrail_us-east-1", "subscriptionFilters": ["kms"],
        "logEvents": [
            {"id": "1", "timestamp": 1, "message": REC_A},
            {"id": "2", "timestamp": 2, "message": REC_B},
            {"id": "3", "timestamp": 3, "message": "not json"}
        ]
    });
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(gzip(data.to_string().as_bytes()));
    let payload = format!(r#"{{"awslogs":{{"data":"{encoded}"}}}}"#);
    let items = read(payload.as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Rejected { origin, .. } if origin.record_index == Some(2))));
}

#[test]
fn a_cloudwatch_logs_payload_that_decompresses_past_its_bound_is_rejected_and_the_next_read() {
    // 20 MiB of spaces inside valid JSON: a few KiB of gzip.
    let padding = " ".repeat(20 * 1024 * 1024);
    let bomb = format!(r#"{{"messageType":"DATA_MESSAGE",{padding}"logEvents":[]}}"#);
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzip(bomb.as_bytes()));
    let input = format!("{{\"awslogs\":{{\"data\":\"{encoded}\"}}}}\n{REC_A}\n");
    let items = read(input.as_bytes());
    assert_eq!(event_ids(&items), ["a"]);
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::Rejected { reason, .. }
            if reason.contains("decompresses to more than 16777216 bytes"))),
        "{items:?}"
    );
}

/// Found by the reader fuzz target: the record limit held for JSON Lines only.
#[test]
fn the_record_limit_holds_for_records_inside_whole_files_too() {
    let big = format!(
        r#"{{"eventVersion":"1.08","eventID":"big","eventSource":"kms.amazonaws.com","pad":"{}"}}"#,
        "x".repeat(4096)
    );
    let file = format!("{{\"Records\":[{REC_A},{big}]}}");
    let limits = Limits {
        max_record_bytes: 2048,
        ..Limits::default()
    };
    let mut items = Vec::new();
    read_stream_limited(file.as_bytes(), "input", limits, &mut |i| {
        items.push(i.into_owned())
    })
    .expect("in-memory read");
    assert_eq!(event_ids(&items), ["a"]);
    assert!(
        rejected_at(&items, 1, "larger than 2048 bytes"),
        "{items:?}"
    );
}

#[test]
fn lookup_events_output() {
    let out = serde_json::json!({"Events": [
        {"EventId": "a", "EventName": "Decrypt", "CloudTrailEvent": REC_A},
        {"EventId": "b", "EventName": "GetObject", "CloudTrailEvent": REC_B}
    ]});
    assert_eq!(event_ids(&read(out.to_string().as_bytes())), ["a", "b"]);
}

/// Every record the reader gives is one JSON object (what `normalise_object` relies on), in
/// lookup-events output too, where the record is a string inside the entry.
#[test]
fn a_lookup_events_entry_that_is_not_a_json_object_is_rejected() {
    let out = serde_json::json!({"Events": [
        {"EventId": "a", "EventName": "Decrypt", "CloudTrailEvent": REC_A},
        {"EventId": "x", "EventName": "Decrypt", "CloudTrailEvent": "{\"eventSource\": \"s3"},
        {"EventId": "y", "EventName": "Decrypt", "CloudTrailEvent": "[1, 2]"},
        {"EventId": "b", "EventName": "GetObject", "CloudTrailEvent": REC_B}
    ]});
    let items = read(out.to_string().as_bytes());
    assert_eq!(event_ids(&items), ["a", "b"]);
    assert!(
        rejected_at(&items, 1, "entry x: CloudTrailEvent is not JSON"),
        "{items:?}"
    );
    assert!(rejected_at(&items, 2, "must be a JSON object"), "{items:?}");
}

#[test]
fn a_single_record_object() {
    assert_eq!(event_ids(&read(REC_A.as_bytes())), ["a"]);
}

#[test]
fn garbage_is_rejected_not_fatal() {
    let items = read(b"this is not json at all");
    assert!(matches!(&items[..], [Item::Rejected { .. }]));
}

#[test]
fn directories_are_expanded_recursively_in_name_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = dir.path().join("2024/01");
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(sub.join("b.json"), REC_B).expect("write");
    std::fs::write(dir.path().join("a.json"), REC_A).expect("write");
    std::fs::write(dir.path().join(".hidden"), "x").expect("write");
    let files = expand_paths(&[dir.path().to_path_buf()]).expect("expand");
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    // Sorted by full path: "<dir>/2024/01/b.json" sorts before "<dir>/a.json".
    assert_eq!(
        names,
        [Some("b.json".to_owned()), Some("a.json".to_owned())]
    );
    assert!(expand_paths(&[dir.path().join("missing")]).is_err());
}

#[test]
fn a_source_over_the_whole_read_limit_is_streamed_as_json_lines() {
    let lines = format!("{REC_A}\n{REC_B}\n{{broken\n{REC_A}\n");
    let mut items = Vec::new();
    // A limit that cuts the first line in two: the reader must finish that line and stream on.
    read_plain_limited(
        lines.as_bytes(),
        "big",
        40,
        Limits::default(),
        0,
        &mut |i| items.push(i.into_owned()),
    )
    .expect("in memory");
    assert_eq!(event_ids(&items), ["a", "b", "a"]);
    let rejected_lines: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected { origin, .. } => origin.line,
            _ => None,
        })
        .collect();
    assert_eq!(rejected_lines, [3]);
}

#[test]
fn an_oversized_record_is_rejected_without_being_held_and_the_next_ones_are_read() {
    let small = Limits {
        max_record_bytes: 300,
        max_input_bytes: u64::MAX,
    };
    let huge = format!("{{\"eventID\":\"x\",\"pad\":\"{}\"}}", "y".repeat(5_000));
    let lines = format!("{REC_A}\n{huge}\n{REC_B}\n");
    let mut items = Vec::new();
    // A whole-read limit of 40 bytes sends the input down the streaming path.
    read_plain_limited(lines.as_bytes(), "big", 40, small, 0, &mut |i| {
        items.push(i.into_owned())
    })
    .expect("in memory");
    assert_eq!(event_ids(&items), ["a", "b"]);
    let rejected: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected {
                reason,
                text,
                origin,
            } => Some((reason, text.len(), origin.line)),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].0.contains("larger than 300 bytes"),
        "{}",
        rejected[0].0
    );
    assert!(rejected[0].1 <= 1024, "only a preview is kept");
    assert_eq!(rejected[0].2, Some(2));
}

#[test]
fn a_gzip_bomb_is_read_up_to_the_input_limit_and_reported() {
    // 64 MiB of zeros compress to some 64 KiB.
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        gz.write_all(&zeros).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    let limits = Limits {
        max_record_bytes: 1024,
        max_input_bytes: 8 * 1024 * 1024,
    };
    let mut items = Vec::new();
    let err = read_stream_limited(&bomb[..], "bomb.gz", limits, &mut |i| {
        items.push(i.into_owned())
    })
    .expect_err("over the limit");
    assert!(err.to_string().contains("--max-input-bytes"), "{err}");
    assert!(event_ids(&items).is_empty());
    // A file within the limits reads as before.
    let mut items = Vec::new();
    read_stream_limited(REC_A.as_bytes(), "ok", limits, &mut |i| {
        items.push(i.into_owned())
    })
    .expect("read");
    assert_eq!(event_ids(&items), ["a"]);
}

/// The text of a record as [`delivered_records_as`] found it, however it was read.
fn spanned<'a, T>(record: &Delivered<'a, T>) -> &'a str {
    match record {
        Delivered::Read(text, _) | Delivered::Json(text) | Delivered::Broken(text, _) => text,
    }
}

/// A type no record can be read as: each record is then found by its braces.
#[derive(Debug)]
struct Unreadable;

impl<'de> Deserialize<'de> for Unreadable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never read"))
    }
}

#[test]
fn records_of_a_delivered_file_are_found_where_a_parser_finds_them() {
    let tricky = [
        r#"{"eventID":"q","note":"a } and a { in a string, \" and \\ too","x":{"y":[{"z":"}"}]}}"#,
        r#"{"eventID":"e","s":"ends in a backslash \\","t":"\"}{\""}"#,
        r#"{ }"#,
        r#"{"eventID":"u","name":"ключ 🔑 }","n":[1,{"m":{}},"]"]}"#,
    ];
    let docs = [
        format!(r#"{{"Records":[{}]}}"#, tricky.join(",")),
        format!(
            "\n {{ \"Records\" :\r\n [ {} ]\t}}\n\n",
            tricky.join(" ,\n  ")
        ),
        r#"{"Records":[]}"#.to_owned(),
    ];
    for doc in &docs {
        let parsed: Vec<&str> = serde_json::from_str::<Probe<'_>>(doc)
            .expect("valid JSON")
            .records
            .expect("records")
            .iter()
            .map(|r| r.get())
            .collect();
        let found: Option<Vec<&str>> = delivered_records_as::<IgnoredAny>(doc.trim_start())
            .map(|records| records.iter().map(spanned).collect());
        assert_eq!(found, Some(parsed.clone()), "{doc}");
        // Found by their braces (where a record cannot be read), they are the same.
        let by_braces = delivered_records_as::<Unreadable>(doc.trim_start()).map(|records| {
            assert!(records.iter().all(|r| matches!(r, Delivered::Json(_))));
            records.iter().map(spanned).collect::<Vec<_>>()
        });
        assert_eq!(by_braces, Some(parsed), "{doc}");
    }
    // Any other shape goes the general way.
    for other in [
        format!(r#"{{"Records":[{REC_A}],"more":1}}"#),
        format!(r#"{{"Records":[{REC_A},"text"]}}"#),
        format!(r#"{{"Records":[{REC_A}]}} trailing"#),
        format!(r#"{{"Records":[{REC_A}"#),
        format!(r#"{{"Records":[{REC_A},]}}"#),
        r#"{"Records":[{"cut":"in a string}]}"#.to_owned(),
        format!(r#"{{"Events":[{REC_A}]}}"#),
    ] {
        assert!(
            delivered_records_as::<IgnoredAny>(&other).is_none(),
            "{other}"
        );
    }
}

#[test]
fn a_record_broken_inside_a_delivered_file_is_rejected_alone_and_the_rest_read() {
    let broken = r#"{"eventID":"x","eventName":tru}"#;
    let doc = format!(r#"{{"Records":[{REC_A},{broken},{REC_B}]}}"#);
    let items = read(&gzip(doc.as_bytes()));
    assert_eq!(event_ids(&items), ["a", "b"]);
    assert!(rejected_at(&items, 1, "not JSON"), "{items:?}");
    // What the reader calls a record is JSON: not a control character inside a string.
    let raw_nul = "{\"eventID\":\"c\",\"eventTime\":\"2024-01-01\u{0}\"}";
    let doc = format!(r#"{{"Records":[{REC_A},{raw_nul}]}}"#);
    let items = read(doc.as_bytes());
    assert_eq!(event_ids(&items), ["a"]);
    assert!(rejected_at(&items, 1, "not JSON"), "{items:?}");
}

#[test]
fn records_of_a_delivered_file_are_read_as_the_caller_asks_in_the_pass_that_finds_them() {
    /// What a caller may read a record as: here, only its `eventID`, which must be text.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Id {
        #[serde(rename = "eventID")]
        event_id: String,
    }
    let not_an_id = r#"{"eventID":7,"note":"JSON, but not an Id"}"#;
    let broken = r#"{"eventID":"x","eventName":tru}"#;
    let doc = format!(r#"{{"Records":[{REC_A}, {not_an_id},{broken} ,{REC_B}]}}"#);
    for bytes in [doc.as_bytes().to_vec(), gzip(doc.as_bytes())] {
        let mut items = Vec::new();
        read_stream_limited_as::<_, Id>(bytes.as_slice(), "typed", Limits::default(), &mut |i| {
            items.push(i.into_owned())
        })
        .expect("in-memory read");
        let records: Vec<(&str, Option<&Id>, Option<u64>)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record {
                    json,
                    parsed,
                    origin,
                } => Some((&**json, parsed.as_ref(), origin.record_index)),
                _ => None,
            })
            .collect();
        let id = |s: &str| Id {
            event_id: s.to_owned(),
        };
        assert_eq!(
            records,
            [
                (REC_A, Some(&id("a")), Some(0)),
                (not_an_id, None, Some(1)),
                (REC_B, Some(&id("b")), Some(3)),
            ]
        );
        let rejected: Vec<&Item<Id>> = items
            .iter()
            .filter(|i| matches!(i, Item::Rejected { .. }))
            .collect();
        assert_eq!(rejected.len(), 1, "{items:?}");
        assert!(
            matches!(rejected[0], Item::Rejected { reason, text, origin }
                if reason.starts_with("not JSON") && text == broken && origin.record_index == Some(2)),
            "{rejected:?}"
        );
    }
    // Other shapes are read the general way: their records' text only.
    let mut items = Vec::new();
    read_bytes_as::<Id>(
        format!("{REC_A}\n{REC_B}\n").as_bytes(),
        "lines",
        &mut |i| items.push(i.into_owned()),
    );
    assert!(
        items
            .iter()
            .all(|i| matches!(i, Item::Record { parsed: None, .. })),
        "{items:?}"
    );
    assert_eq!(items.len(), 2);
}

/// A log file of `n` records with eventIDs `{prefix}-0`….
fn log_file(prefix: &str, n: usize) -> String {
    let records: Vec<String> = (0..n)
        .map(|i| REC_A.replace(r#""eventID":"a""#, &format!(r#""eventID":"{prefix}-{i}""#)))
        .collect();
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

#[test]
fn an_input_read_after_a_larger_one_on_the_same_thread_is_read_alone() {
    // The thread's buffer keeps the larger input's bytes past the smaller one's end.
    let large = gzip(log_file("large", 5000).as_bytes());
    let small = log_file("small", 2);
    assert_eq!(event_ids(&read(&large)).len(), 5000);
    let items = read(small.as_bytes());
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(event_ids(&items), ["small-0", "small-1"]);
    // JSON Lines, whose last line has no newline: nothing of the larger input follows it.
    assert_eq!(event_ids(&read(&large)).len(), 5000);
    let items = read(REC_B.as_bytes());
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(event_ids(&items), ["b"]);
    // A truncated gzip after the larger input: what it held before the cut, and no more.
    assert_eq!(event_ids(&read(&large)).len(), 5000);
    let whole = gzip(log_file("cut", 400).as_bytes());
    let mut items = Vec::new();
    let result = read_stream(&whole[..whole.len() / 2], "cut", &mut |i| {
        items.push(i.into_owned())
    });
    assert!(result.is_err());
    let ids = event_ids(&items);
    assert!(
        !ids.is_empty() && ids.len() < 400,
        "{} records salvaged",
        ids.len()
    );
    assert!(ids.iter().all(|id| id.starts_with("cut-")));
    // The cut record, rejected, and nothing after it.
    assert!(items.len() <= ids.len() + 1, "{} items", items.len());
}
