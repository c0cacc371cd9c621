//! The published alert contract, `schema/alert.schema.json`: every alert keywatch prints
//! validates against it, carries `schema_version`, and uses no field the schema does not
//! describe; and the schema is strict enough to reject a broken alert.

use keywatch_testkit::corpus;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(repo().join("schema/alert.schema.json")).expect("schema");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// Alerts (JSON Lines) from replaying `inputs` on a throwaway store.
fn alerts(inputs: &[&Path], as_of: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args([
            "replay",
            "--quiet",
            "--in-memory",
            "--format",
            "json",
            "--as-of",
            as_of,
        ])
        .args(inputs)
        .output()
        .expect("run keywatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Field paths an alert uses that the schema does not describe (`usage[].x`, `protects[].y`).
fn undescribed(alert: &Value, schema: &Value) -> Vec<String> {
    let props = &schema["properties"];
    let mut out = Vec::new();
    for (name, value) in alert.as_object().expect("an object") {
        if props.get(name).is_none() {
            out.push(name.clone());
            continue;
        }
        if let (Some(items), Some(item_props)) =
            (value.as_array(), props[name]["items"].get("properties"))
        {
            for item in items {
                for field in item.as_object().into_iter().flat_map(|o| o.keys()) {
                    if item_props.get(field).is_none() {
                        out.push(format!("{name}[].{field}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_alert_printed_matches_the_published_schema() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut all = alerts(&[&repo().join("samples")], "2026-11-23T12:00:00Z");
    // AWS's documented example of every KMS record, and a clock late enough for the
    // time-driven kinds.
    all.extend(alerts(
        &[&corpus("aws-kms-developer-guide"), &repo().join("samples")],
        "2027-06-01T00:00:00Z",
    ));
    assert!(all.len() > 20, "{} alerts", all.len());
    let mut kinds = BTreeSet::new();
    for a in &all {
        let errors: Vec<String> = validator
            .iter_errors(a)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{a}");
        assert_eq!(a["schema_version"], 1);
        let extra = undescribed(a, &schema);
        assert!(
            extra.is_empty(),
            "fields the schema does not describe: {extra:?}"
        );
        kinds.insert(a["kind"].as_str().unwrap_or_default().to_owned());
    }
    for kind in [
        "pending_deletion_key_used",
        "deletion_scheduled",
        "deletion_cancelled",
        "key_deleted",
        "orphaned_key_material",
        "deletion_overdue",
        "key_store_disconnected_pending_deletion",
    ] {
        assert!(kinds.contains(kind), "no {kind} alert checked: {kinds:?}");
    }
}

#[test]
fn the_schema_rejects_a_broken_alert() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let good = alerts(&[&repo().join("samples")], "2026-11-23T12:00:00Z")
        .into_iter()
        .next()
        .expect("an alert");
    assert!(validator.is_valid(&good));
    type Breakage = Box<dyn Fn(&mut Value)>;
    let broken: [(&str, Breakage); 6] = [
        (
            "no alert_id",
            Box::new(|a| drop(a.as_object_mut().map(|o| o.remove("alert_id")))),
        ),
        (
            "an unknown kind",
            Box::new(|a| a["kind"] = "key_exploded".into()),
        ),
        (
            "another schema version",
            Box::new(|a| a["schema_version"] = 2.into()),
        ),
        (
            "a time that is not RFC 3339",
            Box::new(|a| a["event_time"] = "yesterday".into()),
        ),
        (
            "an alias for a key ARN",
            Box::new(|a| a["key_arn"] = "arn:aws:kms:us-east-1:111122223333:alias/x".into()),
        ),
        (
            "a negative count",
            Box::new(|a| a["uses_so_far"] = (-1).into()),
        ),
    ];
    for (what, break_it) in broken {
        let mut a = good.clone();
        break_it(&mut a);
        assert!(!validator.is_valid(&a), "the schema accepts {what}");
    }
}
