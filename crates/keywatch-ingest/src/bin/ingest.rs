//! `keywatch-ingest`: the target of the EventBridge rules.
//! Configuration: KEYWATCH_KAFKA_BROKERS, KEYWATCH_KAFKA_TOPIC and KEYWATCH_KAFKA_* security
//! settings (SASL credentials, client certificate and CA from the secrets `keywatch_ingest::kafka_settings`
//! names); an invalid one fails the cold start with a message that names it.

use keywatch_ingest::{ingest, IngestOutcome};
use keywatch_kafka::EventLogProducer;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = keywatch_ingest::kafka_settings_from_env().await?;
    let producer = EventLogProducer::new(&settings)?;
    let producer = &producer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let payload = serde_json::to_vec(&event.payload)?;
            let source = format!("eventbridge:{}", event.context.request_id);
            let outcome: IngestOutcome = ingest(&payload, &source, producer).await?;
            Ok::<_, Error>(outcome)
        },
    ))
    .await
}
