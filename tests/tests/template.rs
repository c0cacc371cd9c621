//! The template's own code, run against the moto server `make test` starts
//! (KEYWATCH_TEST_AWS_ENDPOINT): the custom resource that keeps the S3 ingest function's
//! notification on the trail's bucket. The checks are in
//! scripts/test_trail_bucket_notification.py, run with the project's Python (boto3 and
//! cfn-lint, installed by `make tools`). Without moto or the tools this test fails and says so.

use std::path::Path;
use std::process::Command;

#[test]
fn the_trail_bucket_notification_resource_keeps_the_buckets_other_notifications() {
    let endpoint = std::env::var("KEYWATCH_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("KEYWATCH_TEST_AWS_ENDPOINT is not set: this test needs the moto server `make test` starts")
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make tools` installs boto3 and cfn-lint there",
        python.display()
    );
    let out = Command::new(python)
        .arg(root.join("scripts/test_trail_bucket_notification.py"))
        .arg(root.join("infra/template.yaml"))
        .env("KEYWATCH_TEST_AWS_ENDPOINT", endpoint)
        .output()
        .expect("run the script");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
