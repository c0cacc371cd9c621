//! Every record of the public CloudTrail corpus, as the reader gives it: what ingest counts
//! as another service's without parsing it (`normalise_object`) is never a KMS record, and
//! a record normalised in the pass that reads it is what its text normalises to.

use keywatch_core::{normalise, normalise_object, Normalised, NormalisedOnRead};
use keywatch_reader::{expand_paths, read_path, read_path_limited_as, Item, Limits};
use keywatch_testkit::corpus;

#[test]
fn no_kms_record_of_the_public_corpus_is_taken_for_another_services() {
    let files = expand_paths(&[corpus("")]).expect("the corpus lists");
    let (mut kms, mut other, mut unparsed) = (0, 0, 0);
    for file in &files {
        let mut records = Vec::new();
        // Files the reader cannot read to their end keep what was read before the fault.
        let _ = read_path(file, &mut |item| {
            if let Item::Record { json, .. } = item {
                records.push(json.into_owned());
            }
        });
        for json in records {
            let full = normalise(&json);
            let fast = normalise_object(&json);
            match &full {
                Ok(Normalised::Kms { .. } | Normalised::KmsUntracked { .. }) => {
                    kms += 1;
                    assert_eq!(fast, full, "{}: {json}", file.display());
                }
                _ if fast == full => other += 1,
                _ => {
                    assert_eq!(fast, Ok(Normalised::NotKms), "{}: {json}", file.display());
                    unparsed += 1;
                }
            }
        }
    }
    // The corpus holds AWS's example of every KMS record and real trails of other services.
    assert!(kms > 100, "{kms} KMS records");
    assert!(
        other + unparsed > 100,
        "{other} + {unparsed} records of other services"
    );
    eprintln!("{kms} KMS records read in full; {other} others alike, {unparsed} others counted without their checks");
}

/// One input's items, as text: a record's JSON and origin, a rejection's reason and origin.
fn items_of<T>(items: &[Item<T>]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Record { json, origin, .. } => format!("record {origin}: {json}"),
            Item::Rejected { reason, origin, .. } => format!("rejected {origin}: {reason}"),
            Item::Skipped { what, origin } => format!("skipped {origin}: {what}"),
        })
        .collect()
}

#[test]
fn records_normalised_as_they_are_read_are_what_their_text_normalises_to() {
    let files = expand_paths(&[corpus("")]).expect("the corpus lists");
    let (mut read_as_found, mut kms) = (0, 0);
    for file in &files {
        let (mut plain, mut typed) = (Vec::new(), Vec::new());
        let _ = read_path(file, &mut |item| plain.push(item.into_owned()));
        let _ = read_path_limited_as::<NormalisedOnRead>(file, Limits::default(), &mut |item| {
            typed.push(item.into_owned())
        });
        // The same records, rejections and origins, whichever way they are read.
        assert_eq!(items_of(&plain), items_of(&typed), "{}", file.display());
        for item in typed {
            let Item::Record {
                json,
                parsed: Some(NormalisedOnRead(on_read)),
                ..
            } = item
            else {
                continue;
            };
            read_as_found += 1;
            let full = normalise(&json);
            match &full {
                // A KMS record is normalised alike, and never taken for another service's.
                Ok(Normalised::Kms { .. } | Normalised::KmsUntracked { .. }) => {
                    kms += 1;
                    assert_eq!(on_read, full, "{}: {json}", file.display());
                }
                // Another service's record is counted as such, unchecked.
                _ => assert!(
                    on_read == full || on_read == Ok(Normalised::NotKms),
                    "{}: {on_read:?} for {json}",
                    file.display()
                ),
            }
        }
    }
    // The corpus holds real delivered log files: their records are read as they are found.
    assert!(read_as_found > 100, "{read_as_found} records read as found");
    assert!(kms > 0, "no KMS record read as found");
    eprintln!("{read_as_found} records normalised as they were read, {kms} of them KMS's");
}
