//! Creates the topics this service publishes to or reads, with the configured partitions and replication, when
//! they are missing.
use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::config::KafkaConfig;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Succeeds when the `payment-processed` topic exists afterwards, whether this call created it or not.
pub async fn ensure_topic(kafka: &KafkaConfig) -> Result<(), KafkaError> {
    ensure_topics(kafka, &[&kafka.payment_processed_topic]).await
}

/// Succeeds when every one of `names` exists afterwards.
pub async fn ensure_topics(kafka: &KafkaConfig, names: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = kafka.connection.client_config().create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, kafka.partitions, TopicReplication::Fixed(kafka.replication_factor)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
    let outcome = admin.create_topics(&topics, &options).await;
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
