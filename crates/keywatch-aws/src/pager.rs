//! Pages on-call through an SNS topic, with PublishBatch: up to ten pages a request.

use aws_sdk_sns::types::builders::PublishBatchRequestEntryBuilder;
use aws_sdk_sns::types::MessageAttributeValue;
use keywatch_core::page::page;
use keywatch_core::Alert;
use keywatch_pipeline::{PageError, Pager};

/// PublishBatch takes at most ten entries…
pub const MAX_BATCH_ENTRIES: usize = 10;
/// …and 262,144 bytes of messages and attributes in all; this leaves room for the request's
/// own framing.
const MAX_BATCH_BYTES: usize = 240 * 1024;

/// Publishes pages to one SNS topic.
#[derive(Clone, Debug)]
pub struct SnsPager {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

/// One page as SNS takes it, and its size as PublishBatch counts it.
struct Entry {
    alert_id: String,
    /// Everything but its Id, which is its position in the request.
    entry: PublishBatchRequestEntryBuilder,
    bytes: usize,
}

impl SnsPager {
    /// A pager for `topic_arn`.
    pub fn new(config: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        SnsPager {
            client: aws_sdk_sns::Client::new(config),
            topic_arn: topic_arn.into(),
        }
    }

    /// The page for `alert`: the text for email and SMS-like protocols, the alert JSON for
    /// SQS, Lambda and HTTPS subscribers (`MessageStructure` json), and the attributes
    /// `severity`, `kind`, `account`, `region` for filter policies.
    fn entry(alert: &Alert) -> Result<Entry, PageError> {
        let refused = |reason: String| PageError {
            alert_id: alert.alert_id.clone(),
            reason,
        };
        let p = page(alert);
        let message = serde_json::json!({
            "default": p.text,
            "email": p.text,
            "sqs": p.json,
            "lambda": p.json,
            "http": p.json,
            "https": p.json,
        })
        .to_string();
        let mut bytes = message.len() + p.subject.len();
        let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
            .subject(&p.subject)
            .message_structure("json")
            .message(message);
        for (name, value) in &p.attributes {
            bytes += name.len() + value.len() + "String".len();
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| refused(e.to_string()))?;
            entry = entry.message_attributes(*name, attribute);
        }
        Ok(Entry {
            alert_id: alert.alert_id.clone(),
            entry,
            bytes,
        })
    }

    /// Publishes one PublishBatch request; one result per entry, in order.
    async fn publish(&self, entries: Vec<Entry>) -> Vec<Result<(), PageError>> {
        if entries.is_empty() {
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut request = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            match e.entry.id(i.to_string()).build() {
                Ok(entry) => request.push(entry),
                // Every field is set above: a build error is a bug, reported as a refusal.
                Err(err) => {
                    return vec![Err(PageError {
                        alert_id: e.alert_id,
                        reason: err.to_string(),
                    })]
                }
            }
            ids.push(e.alert_id);
        }
        let answer = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(request))
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) => {
                let reason = aws_sdk_sns::error::DisplayErrorContext(e).to_string();
                return ids
                    .into_iter()
                    .map(|alert_id| {
                        Err(PageError {
                            alert_id,
                            reason: reason.clone(),
                        })
                    })
                    .collect();
            }
        };
        ids.into_iter()
            .enumerate()
            .map(|(i, alert_id)| {
                let id = i.to_string();
                if let Some(f) = out.failed().iter().find(|f| f.id() == id) {
                    Err(PageError {
                        alert_id,
                        reason: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                    })
                } else if out.successful().iter().any(|s| s.id() == Some(id.as_str())) {
                    Ok(())
                } else {
                    Err(PageError {
                        alert_id,
                        reason: "SNS answered neither success nor failure for it".into(),
                    })
                }
            })
            .collect()
    }
}

impl Pager for SnsPager {
    /// One PublishBatch request's worth: what a crash between publishing and recording can
    /// send again.
    fn pages_per_send(&self) -> usize {
        MAX_BATCH_ENTRIES
    }

    /// Publishes the pages in PublishBatch requests of up to ten (fewer when they are large).
    /// An alert SNS refuses (or a request that fails) is an error naming the alert.
    async fn send(&mut self, alerts: &[Alert]) -> Vec<Result<(), PageError>> {
        let mut results = Vec::with_capacity(alerts.len());
        let mut batch: Vec<Entry> = Vec::new();
        let mut batch_bytes = 0;
        for alert in alerts {
            let entry = Self::entry(alert);
            let full = entry.as_ref().is_ok_and(|e| {
                batch.len() == MAX_BATCH_ENTRIES || batch_bytes + e.bytes > MAX_BATCH_BYTES
            });
            // The earlier alerts' results first, so that results stay in the alerts' order.
            if full || entry.is_err() {
                results.extend(self.publish(std::mem::take(&mut batch)).await);
                batch_bytes = 0;
            }
            match entry {
                Ok(e) => {
                    batch_bytes += e.bytes;
                    batch.push(e);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        results.extend(self.publish(batch).await);
        results
    }
}
