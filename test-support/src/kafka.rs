//! Reading what a service published, as a test checks it.
use std::{collections::HashMap, time::Duration};

use platform::kafka::Detached;

use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
    message::Headers as _,
};

/// One message as a consumer reads it.
pub struct Record {
    pub key: Option<String>,
    pub headers: HashMap<String, String>,
    /// The payload as sent.
    pub raw: Vec<u8>,
    /// The payload as JSON (`Null` when it is not JSON).
    pub payload: serde_json::Value,
}

/// Every message of `topic`, all partitions from the beginning, read for `window` (no consumer group: the
/// partitions are assigned directly, so nothing is committed and other readers are not disturbed).
pub async fn read_topic(brokers: &str, topic: &str, window: Duration) -> Vec<Record> {
    // Closed off the test's thread, whatever the broker's state by then (see `Detached`).
    let consumer: Detached<StreamConsumer> = Detached::new(
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka reader"),
    );
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).expect("a partition");
    }
    consumer.assign(&assignment).expect("the partitions assigned");
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, consumer.recv()).await {
        let raw = message.payload().unwrap_or_default().to_vec();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
            raw,
            headers,
        });
    }
    records
}
