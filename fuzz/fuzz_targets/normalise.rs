//! Any record text through normalisation, the fold and the alerts: no panic, a timeline that
//! does not depend on the order or duplication of the events, and pages that carry no
//! control character from a record.
#![no_main]

use std::collections::BTreeSet;

use keywatch_core::page::{is_unsafe_char, page, MAX_SUBJECT};
use keywatch_core::{
    evaluate, normalise, normalise_object, AlertConfig, KeyTimeline, KmsEvent, Normalised,
    NormalisedOnRead, Timestamp,
};
use keywatch_reader::{read_bytes_as, Item};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut events: Vec<KmsEvent> = Vec::new();
    // Whole records (the reader's output) and, for inputs that are one record, the text itself.
    let mut texts = Vec::new();
    read_bytes_as(data, "fuzz", &mut |item: Item<NormalisedOnRead>| {
        if let Item::Record { json, parsed, .. } = item {
            // The reader's records are JSON objects: what normalise takes for KMS's,
            // normalise_object reads in full and finds the same, and so does normalising a
            // record as the reader reads it; another service's record is counted as such.
            let full = normalise(&json);
            let read = parsed.map(|NormalisedOnRead(n)| n);
            if matches!(
                full,
                Ok(Normalised::Kms { .. } | Normalised::KmsUntracked { .. })
            ) {
                assert_eq!(
                    normalise_object(&json),
                    full,
                    "a KMS record taken for another service's"
                );
                assert!(
                    read.is_none_or(|r| r == full),
                    "a KMS record read otherwise as it was found"
                );
            } else {
                assert!(
                    read.is_none_or(|r| r == full || r == Ok(Normalised::NotKms)),
                    "another service's record read as KMS's, or rejected, as it was found"
                );
            }
            texts.push(json.into_owned());
        }
    });
    if let Ok(text) = std::str::from_utf8(data) {
        texts.push(text.to_owned());
    }
    for text in &texts {
        if let Ok(Normalised::Kms { events: found, .. }) = normalise(text) {
            events.extend(found);
        }
    }
    let keys: BTreeSet<_> = events
        .iter()
        .filter_map(|e| match e {
            KmsEvent::Key(k) => Some(k.key.clone()),
            KmsEvent::KeyStore(_) => None,
        })
        .collect();
    let as_of = Timestamp::parse_rfc3339("2026-11-28T00:00:00Z").expect("a valid time");
    for key in keys {
        let folded = KeyTimeline::fold(key.clone(), &events);
        let reversed = KeyTimeline::fold(key.clone(), events.iter().rev());
        let doubled = KeyTimeline::fold(key.clone(), events.iter().chain(&events));
        assert_eq!(
            folded, reversed,
            "the order of events changed {key}'s timeline"
        );
        assert_eq!(
            folded, doubled,
            "duplicated events changed {key}'s timeline"
        );
        for alert in evaluate(&folded, as_of, &AlertConfig::default()) {
            let p = page(&alert);
            assert!(p.subject.chars().count() <= MAX_SUBJECT, "subject too long");
            assert!(
                !p.subject.chars().any(is_unsafe_char),
                "control character in subject"
            );
            assert!(
                !p.text.chars().any(|c| c != '\n' && is_unsafe_char(c)),
                "control character in page text"
            );
            serde_json::from_str::<serde_json::Value>(&p.json).expect("page JSON parses");
        }
    }
});
