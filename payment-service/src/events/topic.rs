//! Creates the topics this service publishes to or reads, with the configured partitions and replication, when
//! they are missing.
use rdkafka::error::KafkaError;

use crate::config::KafkaConfig;

/// Succeeds when the `payment-processed` topic exists afterwards, whether this call created it or not.
pub async fn ensure_topic(kafka: &KafkaConfig) -> Result<(), KafkaError> {
    ensure_topics(kafka, &[&kafka.payment_processed_topic]).await
}

/// Succeeds when every one of `names` exists afterwards.
pub async fn ensure_topics(kafka: &KafkaConfig, names: &[&str]) -> Result<(), KafkaError> {
    kafka.connection.ensure_topics(names, kafka.partitions, kafka.replication_factor).await
}
