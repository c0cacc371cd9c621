//! keywatch's event log on Kafka. Every KMS CloudTrail record is produced unmodified, keyed
//! by the key ARN it is about (a record about two keys, such as ReEncrypt, once per key), so
//! each key's events stay in order on one partition. Key store events are keyed by the key
//! store. Consumers process idempotently (records are deduplicated by eventID downstream):
//! the broker's transactions are not relied on.

use keywatch_core::KmsEvent;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::{Duration, Instant};

/// A Kafka failure.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The configuration is invalid (names the setting).
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// The broker did not acknowledge a record.
    #[error("the broker did not acknowledge record {event_id} for {key}: {reason}")]
    NotAcknowledged {
        /// eventID.
        event_id: String,
        /// The message key.
        key: String,
        /// Why.
        reason: String,
    },
    /// No broker answered.
    #[error("cannot reach the Kafka broker(s) at {brokers} within {seconds} s ({reason}); check --brokers (KEYWATCH_KAFKA_BROKERS), the network path and the security settings")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// How long we waited.
        seconds: u64,
        /// What the client said.
        reason: String,
    },
    /// librdkafka refused to create a client from the settings.
    #[error("invalid Kafka client settings: {0}")]
    ClientSettings(#[source] rdkafka::error::KafkaError),
    /// The topic could not be created.
    #[error("creating topic {topic}: {code}")]
    TopicNotCreated {
        /// The topic.
        topic: String,
        /// What the broker said.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// Any other client error.
    #[error("Kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// How to reach the brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port,host:port`.
    pub brokers: String,
    /// The event log topic.
    pub topic: String,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` (with SASL).
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password.
    pub sasl_password: Option<String>,
    /// TLS (with `SSL` and `SASL_SSL`): the brokers' CA and the client certificate.
    pub tls: KafkaTls,
}

/// A PEM document: a file's path, or the text itself (as read from Secrets Manager).
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file holding PEM.
    File(String),
    /// PEM text.
    Text(String),
}

impl std::fmt::Debug for Pem {
    // A private key's text never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            Pem::Text(text) => write!(f, "Text({} bytes)", text.len()),
        }
    }
}

/// TLS to the brokers. Without a CA the system's trust store verifies the brokers; with a
/// client certificate and key the client authenticates itself (mutual TLS, as MSK's and
/// Lambda's `CLIENT_CERTIFICATE_TLS_AUTH`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaTls {
    /// CA certificate(s) that sign the brokers' certificates.
    pub ca: Option<Pem>,
    /// The client's certificate (chain), for mutual TLS.
    pub certificate: Option<Pem>,
    /// The client certificate's private key.
    pub key: Option<Pem>,
    /// The password of an encrypted private key.
    pub key_password: Option<String>,
}

impl KafkaTls {
    /// Reads `KEYWATCH_KAFKA_SSL_{CA,CERTIFICATE,KEY}_LOCATION` (files) or `…_PEM` (text),
    /// and `KEYWATCH_KAFKA_SSL_KEY_PASSWORD`.
    fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<Self, KafkaError> {
        let pem = |what: &str| -> Result<Option<Pem>, KafkaError> {
            let file = format!("KEYWATCH_KAFKA_SSL_{what}_LOCATION");
            let text = format!("KEYWATCH_KAFKA_SSL_{what}_PEM");
            let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
            match (set(var(&file)), set(var(&text))) {
                (Some(_), Some(_)) => Err(KafkaError::Config(format!(
                    "{file} and {text} are both set: give one"
                ))),
                (Some(path), None) => Ok(Some(Pem::File(path))),
                (None, Some(pem)) => Ok(Some(Pem::Text(pem))),
                (None, None) => Ok(None),
            }
        };
        let tls = KafkaTls {
            ca: pem("CA")?,
            certificate: pem("CERTIFICATE")?,
            key: pem("KEY")?,
            key_password: var("KEYWATCH_KAFKA_SSL_KEY_PASSWORD").filter(|p| !p.is_empty()),
        };
        if tls.certificate.is_some() != tls.key.is_some() {
            return Err(KafkaError::Config(
                "a client certificate needs its key: set both KEYWATCH_KAFKA_SSL_CERTIFICATE_* and KEYWATCH_KAFKA_SSL_KEY_*".into(),
            ));
        }
        Ok(tls)
    }

    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.certificate.is_none() && self.key.is_none()
    }

    fn apply(&self, c: &mut ClientConfig) {
        let mut set = |name: &str, pem: &Option<Pem>| match pem {
            Some(Pem::File(path)) => {
                c.set(format!("ssl.{name}.location"), path);
            }
            Some(Pem::Text(text)) => {
                c.set(format!("ssl.{name}.pem"), text);
            }
            None => {}
        };
        set("ca", &self.ca);
        set("certificate", &self.certificate);
        set("key", &self.key);
        if let Some(p) = &self.key_password {
            c.set("ssl.key.password", p);
        }
    }
}

impl KafkaSettings {
    /// Reads `KEYWATCH_KAFKA_BROKERS`, `KEYWATCH_KAFKA_TOPIC` (default `keywatch-events`),
    /// `KEYWATCH_KAFKA_SECURITY_PROTOCOL` (default `PLAINTEXT`), `KEYWATCH_KAFKA_SASL_MECHANISM`,
    /// `KEYWATCH_KAFKA_SASL_USERNAME`, `KEYWATCH_KAFKA_SASL_PASSWORD` and the TLS settings
    /// of [`KafkaTls`] through `var`, and names the variable that is missing or wrong.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, KafkaError> {
        let brokers = var("KEYWATCH_KAFKA_BROKERS")
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| {
                KafkaError::Config("KEYWATCH_KAFKA_BROKERS is not set (host:port,…)".into())
            })?;
        let security_protocol =
            var("KEYWATCH_KAFKA_SECURITY_PROTOCOL").unwrap_or_else(|| "PLAINTEXT".into());
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&security_protocol.as_str())
        {
            return Err(KafkaError::Config(format!(
                "KEYWATCH_KAFKA_SECURITY_PROTOCOL={security_protocol} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            )));
        }
        let settings = KafkaSettings {
            brokers,
            topic: var("KEYWATCH_KAFKA_TOPIC").unwrap_or_else(|| "keywatch-events".into()),
            sasl_mechanism: var("KEYWATCH_KAFKA_SASL_MECHANISM"),
            sasl_username: var("KEYWATCH_KAFKA_SASL_USERNAME"),
            sasl_password: var("KEYWATCH_KAFKA_SASL_PASSWORD"),
            tls: KafkaTls::from_env(&var)?,
            security_protocol,
        };
        if !settings.security_protocol.ends_with("SSL") && !settings.tls.is_empty() {
            return Err(KafkaError::Config(format!(
                "KEYWATCH_KAFKA_SSL_* are set but KEYWATCH_KAFKA_SECURITY_PROTOCOL={} uses no TLS (SSL or SASL_SSL)",
                settings.security_protocol
            )));
        }
        if settings.security_protocol.starts_with("SASL")
            && (settings.sasl_username.is_none() || settings.sasl_password.is_none())
        {
            return Err(KafkaError::Config(
                "KEYWATCH_KAFKA_SECURITY_PROTOCOL uses SASL but KEYWATCH_KAFKA_SASL_USERNAME or KEYWATCH_KAFKA_SASL_PASSWORD is not set".into(),
            ));
        }
        Ok(settings)
    }

    /// Plain-text brokers (local runs and tests).
    pub fn plaintext(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topic: topic.into(),
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            tls: KafkaTls::default(),
        }
    }

    /// A librdkafka configuration with these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("security.protocol", &self.security_protocol);
        if let Some(m) = &self.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let (Some(u), Some(p)) = (&self.sasl_username, &self.sasl_password) {
            c.set("sasl.username", u).set("sasl.password", p);
        }
        self.tls.apply(&mut c);
        c
    }
}

/// The message key of an event: the key ARN, or `cks:<account>/<region>/<id>` for a key store.
pub fn message_key(event: &KmsEvent) -> String {
    match event {
        KmsEvent::Key(k) => k.key.to_string(),
        KmsEvent::KeyStore(s) => format!("cks:{}", s.key_store),
    }
}

/// The message keys of a record's events, each once.
pub fn message_keys(events: &[KmsEvent]) -> Vec<String> {
    let mut keys: Vec<String> = events.iter().map(message_key).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Produces records to the event log: idempotent, `acks=all`.
pub struct EventLogProducer {
    producer: FutureProducer,
    topic: String,
}

impl EventLogProducer {
    /// Connects (lazily, as librdkafka does) with `settings`.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("compression.type", "lz4")
            .create()
            .map_err(KafkaError::ClientSettings)?;
        Ok(EventLogProducer {
            producer,
            topic: settings.topic.clone(),
        })
    }

    /// Produces `json` (a CloudTrail record, unmodified) once per message key and returns
    /// when the broker has acknowledged every copy.
    pub async fn publish(
        &self,
        event_id: &str,
        json: &str,
        keys: &[String],
        source: &str,
        ingest_time: &str,
    ) -> Result<(), KafkaError> {
        for key in keys {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "source",
                    value: Some(source),
                })
                .insert(Header {
                    key: "ingest_time",
                    value: Some(ingest_time),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(event_id),
                });
            let record = FutureRecord::to(&self.topic)
                .key(key.as_str())
                .payload(json)
                .headers(headers);
            self.producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| KafkaError::NotAcknowledged {
                    event_id: event_id.to_owned(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Waits for every record in flight.
    pub fn flush(&self) -> Result<(), KafkaError> {
        self.producer
            .flush(Duration::from_secs(10))
            .map_err(KafkaError::Client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_name_the_variable_at_fault() {
        let err = KafkaSettings::from_env(env(&[])).expect_err("no brokers");
        assert!(err.to_string().contains("KEYWATCH_KAFKA_BROKERS"), "{err}");
        let err = KafkaSettings::from_env(env(&[
            ("KEYWATCH_KAFKA_BROKERS", "b:9092"),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ]))
        .expect_err("bad protocol");
        assert!(
            err.to_string()
                .contains("KEYWATCH_KAFKA_SECURITY_PROTOCOL=TLS"),
            "{err}"
        );
        let err = KafkaSettings::from_env(env(&[
            ("KEYWATCH_KAFKA_BROKERS", "b:9092"),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ]))
        .expect_err("no credentials");
        assert!(
            err.to_string().contains("KEYWATCH_KAFKA_SASL_USERNAME"),
            "{err}"
        );
        let ok =
            KafkaSettings::from_env(env(&[("KEYWATCH_KAFKA_BROKERS", "b:9092")])).expect("valid");
        assert_eq!(ok.topic, "keywatch-events");
    }

    #[test]
    fn tls_settings_are_read_checked_and_passed_to_the_client() {
        let base = [
            ("KEYWATCH_KAFKA_BROKERS", "b:9094"),
            ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let vars: Vec<_> = base.iter().chain(extra).copied().collect();
            KafkaSettings::from_env(env(&vars))
        };
        let err = with(&[("KEYWATCH_KAFKA_SSL_CERTIFICATE_LOCATION", "/c.pem")])
            .expect_err("a certificate without its key");
        assert!(err.to_string().contains("KEYWATCH_KAFKA_SSL_KEY_"), "{err}");
        let err = with(&[
            ("KEYWATCH_KAFKA_SSL_CA_LOCATION", "/ca.pem"),
            ("KEYWATCH_KAFKA_SSL_CA_PEM", "-----BEGIN CERTIFICATE-----"),
        ])
        .expect_err("a file and a text for one PEM");
        assert!(
            err.to_string().contains("KEYWATCH_KAFKA_SSL_CA_PEM"),
            "{err}"
        );
        let err = KafkaSettings::from_env(env(&[
            ("KEYWATCH_KAFKA_BROKERS", "b:9092"),
            ("KEYWATCH_KAFKA_SSL_CA_LOCATION", "/ca.pem"),
        ]))
        .expect_err("TLS files with PLAINTEXT");
        assert!(err.to_string().contains("PLAINTEXT"), "{err}");

        let ok = with(&[
            ("KEYWATCH_KAFKA_SSL_CA_LOCATION", "/ca.pem"),
            (
                "KEYWATCH_KAFKA_SSL_CERTIFICATE_PEM",
                "-----BEGIN CERTIFICATE-----",
            ),
            ("KEYWATCH_KAFKA_SSL_KEY_PEM", "-----BEGIN PRIVATE KEY-----"),
            ("KEYWATCH_KAFKA_SSL_KEY_PASSWORD", "secret"),
        ])
        .expect("mutual TLS");
        let config = ok.client_config();
        assert_eq!(config.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(
            config.get("ssl.certificate.pem"),
            Some("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(
            config.get("ssl.key.pem"),
            Some("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(config.get("ssl.key.password"), Some("secret"));
        assert!(
            !format!("{ok:?}").contains("BEGIN PRIVATE KEY"),
            "a key's text is not logged"
        );
    }

    /// The deployed functions speak TLS (SASL/SCRAM over SSL, or mutual TLS): librdkafka must
    /// be built with OpenSSL, or every client fails at creation.
    #[test]
    fn clients_can_be_made_for_every_protocol_the_template_offers() {
        use rdkafka::consumer::BaseConsumer;
        for (protocol, mechanism) in [
            ("SASL_SSL", Some("SCRAM-SHA-512")),
            ("SASL_SSL", Some("SCRAM-SHA-256")),
            ("SSL", None),
            ("PLAINTEXT", None),
        ] {
            let mut vars = vec![
                ("KEYWATCH_KAFKA_BROKERS", "b:9094"),
                ("KEYWATCH_KAFKA_SECURITY_PROTOCOL", protocol),
                ("KEYWATCH_KAFKA_SASL_USERNAME", "user"),
                ("KEYWATCH_KAFKA_SASL_PASSWORD", "password"),
            ];
            if let Some(m) = mechanism {
                vars.push(("KEYWATCH_KAFKA_SASL_MECHANISM", m));
            }
            let settings = KafkaSettings::from_env(env(&vars)).expect("valid");
            let made: Result<BaseConsumer, _> = settings.client_config().create();
            assert!(made.is_ok(), "{protocol} {mechanism:?}: {:?}", made.err());
        }
    }
}

/// One record consumed from the event log.
#[derive(Clone, Debug)]
pub struct Consumed {
    /// The message key (key ARN).
    pub key: Option<String>,
    /// The record's JSON, as produced.
    pub payload: Vec<u8>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Reads the event log as part of a consumer group; offsets are committed only when the
/// caller says the batch is safely processed.
pub struct EventLogConsumer {
    /// Taken only when dropped (see the `Drop` impl).
    consumer: Option<rdkafka::consumer::BaseConsumer>,
}

/// How long dropping an [`EventLogConsumer`] waits for librdkafka to close it.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Closes the client on a thread of its own, and waits for it at most [`CLOSE_PATIENCE`]:
/// librdkafka's close can hang for ever in `rd_kafka_assign` when an assignment arrives as it
/// closes (librdkafka #4884), which left a `keywatch run` that was done unable to exit.
/// Offsets are committed explicitly before, so a close given up loses nothing; the thread is
/// left to the process's exit.
impl Drop for EventLogConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let (closed, done) = std::sync::mpsc::channel();
        let closing = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        if closing.is_ok() && done.recv_timeout(CLOSE_PATIENCE).is_err() {
            tracing::warn!(
                patience = ?CLOSE_PATIENCE,
                "the Kafka consumer did not close in time; left to the process's exit"
            );
        }
    }
}

impl EventLogConsumer {
    fn client(&self) -> &rdkafka::consumer::BaseConsumer {
        self.consumer
            .as_ref()
            .expect("the client is taken only when the consumer is dropped")
    }

    /// Joins `group` and subscribes to the settings' topic.
    pub fn new(settings: &KafkaSettings, group: &str) -> Result<Self, KafkaError> {
        Self::with_instance_id(settings, group, None)
    }

    /// [`Self::new`] as a static member of the group (`group.instance.id`): a client created
    /// again with the same id (after a broker restart) takes the place of the one before at
    /// once, instead of joining while the group waits for a member that will never rejoin.
    pub fn with_instance_id(
        settings: &KafkaSettings,
        group: &str,
        instance_id: Option<&str>,
    ) -> Result<Self, KafkaError> {
        use rdkafka::consumer::Consumer;
        let mut config = settings.client_config();
        if let Some(id) = instance_id {
            config.set("group.instance.id", id);
        }
        let consumer: rdkafka::consumer::BaseConsumer = config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            // Notice a topic that appears (or reappears after a broker lost it) within
            // seconds, not librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()
            .map_err(KafkaError::ClientSettings)?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(KafkaError::Client)?;
        Ok(EventLogConsumer {
            consumer: Some(consumer),
        })
    }

    /// Collects up to `max` records, waiting at most `wait` for the first and then taking what
    /// is already there, for at most `window` after the first: a steady stream is cut into
    /// batches at least that often (as Lambda's `MaximumBatchingWindowInSeconds` does), so
    /// that the first record of a batch does not wait for a full one.
    pub fn poll_batch(
        &self,
        max: usize,
        wait: Duration,
        window: Duration,
    ) -> Result<Vec<Consumed>, KafkaError> {
        use rdkafka::Message;
        let mut out = Vec::new();
        let mut timeout = wait;
        let mut first: Option<Instant> = None;
        while out.len() < max {
            if let Some(first) = first {
                let left = window.saturating_sub(first.elapsed());
                if left.is_zero() {
                    break;
                }
                timeout = timeout.min(left);
            }
            match self.client().poll(timeout) {
                None => break,
                // Records already taken are handed over (their position has moved on); the
                // error comes again on the next call if it lasts.
                Some(Err(_)) if !out.is_empty() => break,
                Some(Err(e)) => return Err(KafkaError::Client(e)),
                Some(Ok(m)) => out.push(Consumed {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                }),
            }
            first.get_or_insert_with(Instant::now);
            timeout = Duration::from_millis(50);
        }
        Ok(out)
    }

    /// The partitions the group has given this consumer, sorted (empty before it joined).
    pub fn assigned_partitions(&self) -> Vec<i32> {
        use rdkafka::consumer::Consumer;
        let mut partitions: Vec<i32> = self
            .client()
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort_unstable();
        partitions
    }

    /// Commits, for each partition, the offset after the last record of `batch`.
    pub fn commit(&self, topic: &str, batch: &[Consumed]) -> Result<(), KafkaError> {
        use rdkafka::consumer::{CommitMode, Consumer};
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        if batch.is_empty() {
            return Ok(());
        }
        let mut next: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
        for c in batch {
            let e = next.entry(c.partition).or_insert(c.offset + 1);
            *e = (*e).max(c.offset + 1);
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in next {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(KafkaError::Client)?;
        }
        self.client()
            .commit(&list, CommitMode::Sync)
            .map_err(KafkaError::Client)
    }
}

/// How many partitions the event log topic has (`None`: it does not exist), asking the
/// brokers for at most `timeout`; [`KafkaError::Unreachable`] names them when none answers.
/// Asks for every topic's metadata, so that a broker that creates topics on first mention
/// does not create this one. Blocks for up to `timeout`.
pub fn topic_partitions(
    settings: &KafkaSettings,
    timeout: std::time::Duration,
) -> Result<Option<usize>, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(KafkaError::ClientSettings)?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| KafkaError::Unreachable {
            brokers: settings.brokers.clone(),
            seconds: timeout.as_secs(),
            reason: e.to_string(),
        })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == settings.topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

/// Creates the topic if it does not exist (for local runs and tests; in AWS the topic is
/// part of the deployment).
pub async fn ensure_topic(settings: &KafkaSettings, partitions: i32) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(KafkaError::ClientSettings)?;
    let topic = NewTopic::new(&settings.topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .map_err(KafkaError::Client)?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::TopicNotCreated { topic, code }),
        }
    }
    Ok(())
}
