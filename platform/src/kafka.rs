//! The Kafka connection settings ([`KafkaConnection`], read by `platform::config`) applied to librdkafka's
//! configuration, so every client of every service connects the same way.
//!
//! librdkafka is built with its own OpenSSL (rdkafka's `ssl-vendored`): statically linked, it probes the
//! system's usual CA locations itself when no CA file is given (librdkafka's `ssl.ca.location` default), and
//! checks the broker's host name (`ssl.endpoint.identification.algorithm=https`, its default).
use rdkafka::ClientConfig;

pub use crate::config::{KafkaConnection, KafkaProtocol, SaslMechanism};

impl KafkaConnection {
    /// A librdkafka configuration with the brokers and the security settings; the caller adds its own.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("security.protocol", self.protocol.as_str());
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        if let Some(ca_file) = &self.ca_file {
            config.set("ssl.ca.location", ca_file);
        }
        config
    }
}
