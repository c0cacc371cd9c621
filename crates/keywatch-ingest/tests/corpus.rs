//! Every record of the public CloudTrail corpus, as the reader gives it: what ingest counts
//! as another service's without parsing it (`normalise_object`) is never a KMS record.

use keywatch_core::{normalise, normalise_object, Normalised};
use keywatch_reader::{expand_paths, read_path, Item};
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
                records.push(json);
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
