//! `keywatch doctor`: with read access to an account, checks what keywatch depends on and
//! says what is wrong in plain words. The checks are pure functions over what the account
//! describes; [`examine`] fetches it (CloudTrail, EventBridge, SNS).

use anyhow::{Context, Result};
use serde::Serialize;

/// KMS's event source, as trails and rules name it.
const KMS: &str = "kms.amazonaws.com";

/// One check's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: &'static str,
    /// Whether it is as keywatch needs it.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
    /// What to do, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A trail's management event selection, as CloudTrail describes it.
#[derive(Clone, Debug, Default)]
pub struct Trail {
    /// Its name.
    pub name: String,
    /// Whether it is logging now.
    pub logging: bool,
    /// Classic event selectors.
    pub selectors: Vec<EventSelector>,
    /// Advanced event selectors (a trail has one kind or the other).
    pub advanced: Vec<Vec<FieldSelector>>,
}

/// A classic event selector.
#[derive(Clone, Debug, Default)]
pub struct EventSelector {
    /// `All`, `ReadOnly` or `WriteOnly`.
    pub read_write: String,
    /// Whether management events are included.
    pub management: bool,
    /// Event sources excluded from management events.
    pub excluded: Vec<String>,
}

/// One field condition of an advanced event selector.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    /// `eventCategory`, `readOnly`, `eventSource`…
    pub field: String,
    /// Values it must equal (any of).
    pub equals: Vec<String>,
    /// Values it must not equal.
    pub not_equals: Vec<String>,
}

/// Why a trail does not record what keywatch needs (none: it does).
pub fn trail_gaps(t: &Trail) -> Vec<String> {
    let mut gaps = Vec::new();
    if !t.logging {
        gaps.push("is not logging".to_owned());
    }
    let selection = if !t.advanced.is_empty() {
        advanced_gap(&t.advanced)
    } else if t.selectors.is_empty() {
        Some("has no event selectors".to_owned())
    } else {
        classic_gap(&t.selectors)
    };
    gaps.extend(selection);
    gaps
}

fn classic_gap(selectors: &[EventSelector]) -> Option<String> {
    let mut why = Vec::new();
    for s in selectors {
        if !s.management {
            why.push("logs no management events");
        } else if s.excluded.iter().any(|e| e == KMS) {
            why.push("excludes KMS events (ExcludeManagementEventSources)");
        } else if s.read_write == "WriteOnly" {
            why.push("logs only write events, and KMS usage (Decrypt, Encrypt, GenerateDataKey…) is read-only");
        } else if s.read_write == "ReadOnly" {
            why.push("logs only read events, and ScheduleKeyDeletion and CancelKeyDeletion are write events");
        } else {
            return None;
        }
    }
    why.sort_unstable();
    why.dedup();
    Some(why.join("; "))
}

fn advanced_gap(selectors: &[Vec<FieldSelector>]) -> Option<String> {
    let mut why = Vec::new();
    for fields in selectors {
        let field = |name: &str| fields.iter().find(|f| f.field == name);
        let management =
            field("eventCategory").is_some_and(|f| f.equals.iter().any(|v| v == "Management"));
        let read_only_split = field("readOnly").is_some_and(|f| f.equals.len() == 1);
        let kms_out = field("eventSource").is_some_and(|f| {
            f.not_equals.iter().any(|v| v == KMS)
                || (!f.equals.is_empty() && !f.equals.iter().any(|v| v == KMS))
        });
        if !management {
            why.push("selects no management events");
        } else if kms_out {
            why.push("leaves KMS events out (eventSource)");
        } else if read_only_split {
            why.push("selects only read or only write management events; keywatch needs both");
        } else {
            return None;
        }
    }
    why.sort_unstable();
    why.dedup();
    Some(why.join("; "))
}

/// The trails check: at least one trail records KMS management events, read and write.
pub fn check_trails(trails: &[Trail]) -> Finding {
    const CHECK: &str = "CloudTrail logs KMS management events, read and write";
    let fix = "log management events of type All on a trail (or event data store), logging, with \
               kms.amazonaws.com not excluded: KMS usage is read-only, deletion is a write"
        .to_owned();
    if trails.is_empty() {
        return Finding {
            check: CHECK,
            ok: false,
            detail: "no trail in this account and Region".to_owned(),
            fix: Some(fix),
        };
    }
    if let Some(good) = trails.iter().find(|t| trail_gaps(t).is_empty()) {
        return Finding {
            check: CHECK,
            ok: true,
            detail: format!("trail {} does", good.name),
            fix: None,
        };
    }
    Finding {
        check: CHECK,
        ok: false,
        detail: trails
            .iter()
            .map(|t| format!("trail {} {}", t.name, trail_gaps(t).join(" and ")))
            .collect::<Vec<_>>()
            .join("; "),
        fix: Some(fix),
    }
}

/// An EventBridge rule.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// `ENABLED`, `DISABLED`, `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS`.
    pub state: String,
    /// Its event pattern (JSON), if any.
    pub pattern: Option<String>,
}

/// Operations whose calls are read-only management events.
const READ_ONLY_USES: [&str; 6] = [
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "Sign",
    "ReEncrypt",
    "errorCode",
];

/// The rules check: rules send KMS events, and those matching read-only calls are in the
/// one state in which EventBridge delivers read-only management events.
pub fn check_rules(rules: &[Rule]) -> Finding {
    const CHECK: &str = "EventBridge rules forward KMS events";
    let kms: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.pattern.as_deref().is_some_and(|p| p.contains("aws.kms")))
        .collect();
    if kms.is_empty() {
        return Finding {
            check: CHECK,
            ok: false,
            detail: "no rule on the default event bus matches source aws.kms".to_owned(),
            fix: Some(
                "deploy infra/template.yaml (its rules forward KMS events to the ingest function)"
                    .to_owned(),
            ),
        };
    }
    let mut problems = Vec::new();
    for r in &kms {
        let pattern = r.pattern.as_deref().unwrap_or_default();
        let reads = READ_ONLY_USES.iter().any(|op| pattern.contains(op));
        match r.state.as_str() {
            "DISABLED" => problems.push(format!("rule {} is disabled", r.name)),
            "ENABLED" if reads => problems.push(format!(
                "rule {} matches read-only calls but is ENABLED, which skips read-only management events: set it to ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
                r.name
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        Finding {
            check: CHECK,
            ok: true,
            detail: format!(
                "{} rule(s) on aws.kms, each in a state that delivers what it matches",
                kms.len()
            ),
            fix: None,
        }
    } else {
        Finding {
            check: CHECK,
            ok: false,
            detail: problems.join("; "),
            fix: Some("aws events put-rule --name NAME --event-pattern … --state ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS (or enable it)".to_owned()),
        }
    }
}

/// A subscription of the paging topic.
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    /// `email`, `sqs`, `https`, `lambda`…
    pub protocol: String,
    /// Confirmed (not `PendingConfirmation`).
    pub confirmed: bool,
}

/// The paging topic check: someone is subscribed, and has confirmed.
pub fn check_topic(topic_arn: &str, subscriptions: &[Subscription]) -> Finding {
    const CHECK: &str = "the paging topic reaches someone";
    let confirmed: Vec<&str> = subscriptions
        .iter()
        .filter(|s| s.confirmed)
        .map(|s| s.protocol.as_str())
        .collect();
    let pending = subscriptions.len() - confirmed.len();
    if confirmed.is_empty() {
        return Finding {
            check: CHECK,
            ok: false,
            detail: if pending > 0 {
                format!("{topic_arn} has {pending} subscription(s), none confirmed: pages reach nobody")
            } else {
                format!("nobody is subscribed to {topic_arn}: pages reach nobody")
            },
            fix: Some(format!(
                "aws sns subscribe --topic-arn {topic_arn} --protocol email --notification-endpoint ON-CALL-ADDRESS, and confirm it"
            )),
        };
    }
    Finding {
        check: CHECK,
        ok: true,
        detail: format!(
            "{} confirmed subscription(s) ({}){}",
            confirmed.len(),
            confirmed.join(", "),
            if pending > 0 {
                format!(", {pending} pending confirmation")
            } else {
                String::new()
            }
        ),
        fix: None,
    }
}

/// Fetches what the checks look at and runs them.
pub async fn examine(
    config: &aws_config::SdkConfig,
    topic_arn: Option<&str>,
) -> Result<Vec<Finding>> {
    let mut findings = vec![check_trails(&trails(config).await?)];
    findings.push(check_rules(&rules(config).await?));
    if let Some(topic) = topic_arn {
        let sns = aws_sdk_sns::Client::new(config);
        let mut subs = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = match sns
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(next.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) =>
                {
                    findings.push(Finding {
                        check: "the paging topic reaches someone",
                        ok: false,
                        detail: format!("{topic} does not exist (in this account and Region)"),
                        fix: Some("pass the AlertTopicArn output of the stack (--topic-arn or KEYWATCH_SNS_TOPIC_ARN)".to_owned()),
                    });
                    return Ok(findings);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("listing the subscriptions of {topic}"))
                }
            };
            subs.extend(page.subscriptions().iter().map(|s| Subscription {
                protocol: s.protocol().unwrap_or_default().to_owned(),
                confirmed: s.subscription_arn().is_some_and(|a| a.starts_with("arn:")),
            }));
            match page.next_token() {
                Some(t) => next = Some(t.to_owned()),
                None => break,
            }
        }
        findings.push(check_topic(topic, &subs));
    }
    Ok(findings)
}

async fn trails(config: &aws_config::SdkConfig) -> Result<Vec<Trail>> {
    let ct = aws_sdk_cloudtrail::Client::new(config);
    let described = ct
        .describe_trails()
        .send()
        .await
        .context("describing the trails (cloudtrail:DescribeTrails)")?;
    let mut out = Vec::new();
    for t in described.trail_list() {
        let Some(arn) = t.trail_arn() else { continue };
        let status = ct
            .get_trail_status()
            .name(arn)
            .send()
            .await
            .with_context(|| format!("reading the status of trail {arn}"))?;
        let selectors = ct
            .get_event_selectors()
            .trail_name(arn)
            .send()
            .await
            .with_context(|| format!("reading the event selectors of trail {arn}"))?;
        out.push(Trail {
            name: t.name().unwrap_or(arn).to_owned(),
            logging: status.is_logging().unwrap_or(false),
            selectors: selectors
                .event_selectors()
                .iter()
                .map(|s| EventSelector {
                    read_write: s
                        .read_write_type()
                        .map_or("All".to_owned(), |r| r.as_str().to_owned()),
                    management: s.include_management_events().unwrap_or(true),
                    excluded: s.exclude_management_event_sources().to_vec(),
                })
                .collect(),
            advanced: selectors
                .advanced_event_selectors()
                .iter()
                .map(|a| {
                    a.field_selectors()
                        .iter()
                        .map(|f| FieldSelector {
                            field: f.field().to_owned(),
                            equals: f.equals().to_vec(),
                            not_equals: f.not_equals().to_vec(),
                        })
                        .collect()
                })
                .collect(),
        });
    }
    Ok(out)
}

async fn rules(config: &aws_config::SdkConfig) -> Result<Vec<Rule>> {
    let ev = aws_sdk_eventbridge::Client::new(config);
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = ev
            .list_rules()
            .set_next_token(next.take())
            .send()
            .await
            .context("listing the EventBridge rules (events:ListRules)")?;
        out.extend(page.rules().iter().map(|r| Rule {
            name: r.name().unwrap_or_default().to_owned(),
            state: r.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            pattern: r.event_pattern().map(str::to_owned),
        }));
        match page.next_token() {
            Some(t) => next = Some(t.to_owned()),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(read_write: &str, excluded: &[&str], logging: bool) -> Trail {
        Trail {
            name: "main".into(),
            logging,
            selectors: vec![EventSelector {
                read_write: read_write.into(),
                management: true,
                excluded: excluded.iter().map(|s| (*s).to_owned()).collect(),
            }],
            advanced: Vec::new(),
        }
    }

    #[test]
    fn a_trail_must_log_kms_reads_and_writes() {
        assert!(trail_gaps(&trail("All", &[], true)).is_empty());
        assert!(trail_gaps(&trail("WriteOnly", &[], true))[0].contains("read-only"));
        assert!(trail_gaps(&trail("ReadOnly", &[], true))[0].contains("write events"));
        assert!(trail_gaps(&trail("All", &[KMS], true))[0].contains("excludes KMS"));
        assert_eq!(trail_gaps(&trail("All", &[], false)), ["is not logging"]);
        let advanced = Trail {
            name: "adv".into(),
            logging: true,
            selectors: Vec::new(),
            advanced: vec![vec![
                FieldSelector {
                    field: "eventCategory".into(),
                    equals: vec!["Management".into()],
                    not_equals: vec![],
                },
                FieldSelector {
                    field: "eventSource".into(),
                    equals: vec![],
                    not_equals: vec![KMS.into()],
                },
            ]],
        };
        assert!(trail_gaps(&advanced)[0].contains("leaves KMS events out"));
        assert!(check_trails(&[trail("WriteOnly", &[], true), trail("All", &[], true)]).ok);
        assert!(!check_trails(&[]).ok);
    }

    #[test]
    fn usage_rules_must_see_read_only_events() {
        let rule = |state: &str, pattern: &str| Rule {
            name: "r".into(),
            state: state.into(),
            pattern: Some(pattern.into()),
        };
        let usage = r#"{"source":["aws.kms"],"detail":{"eventName":["Decrypt"]}}"#;
        let lifecycle = r#"{"source":["aws.kms"],"detail":{"eventName":["ScheduleKeyDeletion"]}}"#;
        assert!(!check_rules(&[rule("ENABLED", usage)]).ok);
        assert!(check_rules(&[rule("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", usage)]).ok);
        assert!(check_rules(&[rule("ENABLED", lifecycle)]).ok);
        assert!(!check_rules(&[rule("DISABLED", lifecycle)]).ok);
        assert!(!check_rules(&[rule("ENABLED", r#"{"source":["aws.s3"]}"#)]).ok);
    }

    #[test]
    fn a_topic_needs_a_confirmed_subscriber() {
        let t = "arn:aws:sns:us-east-1:111122223333:pages";
        assert!(!check_topic(t, &[]).ok);
        let pending = Subscription {
            protocol: "email".into(),
            confirmed: false,
        };
        assert!(check_topic(t, std::slice::from_ref(&pending))
            .detail
            .contains("none confirmed"));
        let sqs = Subscription {
            protocol: "sqs".into(),
            confirmed: true,
        };
        assert!(check_topic(t, &[pending, sqs]).ok);
    }
}
