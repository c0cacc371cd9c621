//! Pages on-call through an SNS topic.

use aws_sdk_sns::types::MessageAttributeValue;
use keywatch_core::page::page;
use keywatch_core::Alert;

/// A page that SNS did not accept.
#[derive(Debug, thiserror::Error)]
#[error("SNS did not accept the page for alert {alert_id}: {reason}")]
pub struct PageError {
    /// The alert.
    pub alert_id: String,
    /// What SNS (or the network) said.
    pub reason: String,
}

/// Publishes pages to one SNS topic.
#[derive(Clone, Debug)]
pub struct SnsPager {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPager {
    /// A pager for `topic_arn`.
    pub fn new(config: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        SnsPager {
            client: aws_sdk_sns::Client::new(config),
            topic_arn: topic_arn.into(),
        }
    }

    /// Publishes the page for `alert`: the text for email and SMS-like protocols, the alert
    /// JSON for SQS, Lambda and HTTPS subscribers (`MessageStructure` json), and the
    /// attributes `severity`, `kind`, `account`, `region` for filter policies.
    pub async fn send(&self, alert: &Alert) -> Result<(), PageError> {
        let p = page(alert);
        let message = serde_json::json!({
            "default": p.text,
            "email": p.text,
            "sqs": p.json,
            "lambda": p.json,
            "http": p.json,
            "https": p.json,
        });
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&p.subject)
            .message_structure("json")
            .message(message.to_string());
        for (name, value) in &p.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PageError {
                    alert_id: alert.alert_id.clone(),
                    reason: e.to_string(),
                })?;
            request = request.message_attributes(*name, attribute);
        }
        request.send().await.map(|_| ()).map_err(|e| PageError {
            alert_id: alert.alert_id.clone(),
            reason: aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
        })
    }
}
