//! Any bytes, as a file or stream keywatch is given (gzip or not, any of the shapes the
//! reader knows): the reader must not panic, must stay within its limits, and everything it
//! calls a record must be a JSON object.
#![no_main]

use keywatch_reader::{read_bytes, read_stream_limited, Item, Limits};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches the paths that enforce them.
const LIMITS: Limits = Limits {
    max_record_bytes: 16 * 1024,
    max_input_bytes: 256 * 1024,
};

fn check(item: Item, max_record_bytes: usize) {
    match item {
        Item::Record { json, origin, .. } => {
            assert!(
                json.len() <= max_record_bytes,
                "{origin}: a record of {} bytes passed the limit of {max_record_bytes}",
                json.len()
            );
            // Syntax, not values: serde_json's Value cannot hold a number like 1e4444444,
            // which is still JSON (the normaliser rejects such a record with the reason).
            serde_json::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(
                &json,
            )
            .unwrap_or_else(|e| panic!("{origin}: a record that is not a JSON object: {e}"));
            assert!(origin.line.is_none_or(|l| l >= 1), "{origin}: line 0");
        }
        Item::Rejected { reason, text, .. } => {
            assert!(!reason.is_empty(), "a rejection without a reason");
            assert!(text.len() <= 1024 * 1024 + 4, "rejected text not truncated");
        }
        Item::Skipped { .. } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // As a stream (a file, stdin): gzip detected by its magic, within the limits.
    let _ = read_stream_limited(data, "fuzz", LIMITS, &mut |item| {
        check(item, LIMITS.max_record_bytes)
    });
    // As an in-memory object (an S3 object, a Lambda payload): bounded by its size.
    read_bytes(data, "fuzz", &mut |item| check(item, data.len()));
});
