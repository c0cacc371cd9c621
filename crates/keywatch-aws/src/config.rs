//! The configuration the projector and sweeper functions share, from environment variables.

/// A variable that is missing or invalid: fails the cold start, naming it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// `KEYWATCH_TABLE`, `KEYWATCH_SNS_TOPIC_ARN`, `KEYWATCH_SUPPRESS_MINUTES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertingConfig {
    /// The DynamoDB table.
    pub table: String,
    /// The SNS topic that pages on-call.
    pub sns_topic_arn: String,
    /// The pending-deletion page suppression window.
    pub suppress_minutes: u32,
}

impl AlertingConfig {
    /// Reads the variables through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError {
                    variable: name,
                    reason: "is not set".into(),
                })
        };
        let sns_topic_arn = required("KEYWATCH_SNS_TOPIC_ARN")?;
        if !sns_topic_arn.starts_with("arn:") || sns_topic_arn.split(':').count() != 6 {
            return Err(ConfigError {
                variable: "KEYWATCH_SNS_TOPIC_ARN",
                reason: format!("{sns_topic_arn:?} is not an SNS topic ARN"),
            });
        }
        let suppress_minutes = match var("KEYWATCH_SUPPRESS_MINUTES") {
            None => 60,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|m: &u32| *m >= 1)
                .ok_or(ConfigError {
                    variable: "KEYWATCH_SUPPRESS_MINUTES",
                    reason: format!("{v:?} is not a whole number of minutes, at least 1"),
                })?,
        };
        Ok(AlertingConfig {
            table: required("KEYWATCH_TABLE")?,
            sns_topic_arn,
            suppress_minutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn each_bad_variable_is_named() {
        let topic = (
            "KEYWATCH_SNS_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111122223333:pages",
        );
        let variable = |pairs: &[(&str, &str)]| {
            AlertingConfig::from_env(env(pairs))
                .err()
                .map(|e| e.variable)
        };
        assert_eq!(variable(&[topic]), Some("KEYWATCH_TABLE"));
        assert_eq!(
            variable(&[("KEYWATCH_TABLE", "t"), ("KEYWATCH_SNS_TOPIC_ARN", "pages")]),
            Some("KEYWATCH_SNS_TOPIC_ARN")
        );
        assert_eq!(
            variable(&[
                ("KEYWATCH_TABLE", "t"),
                topic,
                ("KEYWATCH_SUPPRESS_MINUTES", "0")
            ]),
            Some("KEYWATCH_SUPPRESS_MINUTES")
        );
        let ok = AlertingConfig::from_env(env(&[("KEYWATCH_TABLE", "t"), topic])).expect("valid");
        assert_eq!(ok.suppress_minutes, 60);
    }
}
