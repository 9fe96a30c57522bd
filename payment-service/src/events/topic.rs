//! Creates the `payment-processed` topic with the configured partitions and replication, if it is missing.
use std::time::Duration;

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::config::KafkaConfig;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Succeeds when the topic exists afterwards, whether this call created it or not.
pub async fn ensure_topic(kafka: &KafkaConfig) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &kafka.brokers).create()?;
    let topic = NewTopic::new(
        &kafka.payment_processed_topic,
        kafka.partitions,
        TopicReplication::Fixed(kafka.replication_factor),
    );
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
    let outcome = admin.create_topics([&topic], &options).await;
    // Dropping the client joins its polling thread: keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    for result in outcome? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}
