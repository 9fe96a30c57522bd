//! The Kafka connection settings ([`KafkaConnection`], read by `platform::config`) applied to librdkafka's
//! configuration, so every client of every service connects the same way.
//!
//! librdkafka is built with its own OpenSSL (rdkafka's `ssl-vendored`), statically linked: without a CA file,
//! TLS connections use `ssl.ca.location=probe` (the system's usual CA locations). librdkafka checks the
//! broker's host name (`ssl.endpoint.identification.algorithm=https`, its default).
use std::time::Duration;

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
};

pub use crate::config::{KafkaConnection, KafkaProtocol, SaslMechanism};

/// How long topic creation may take before it is retried.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

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
        match &self.ca_file {
            Some(ca_file) => config.set("ssl.ca.location", ca_file),
            // Its OpenSSL is built in (ssl-vendored) and looks for CAs where it was built, not on this system:
            // `probe` makes librdkafka look in the usual places (/etc/ssl/certs/ca-certificates.crt, …).
            None if self.protocol.uses_tls() => config.set("ssl.ca.location", "probe"),
            None => &mut config,
        };
        config
    }
}

impl KafkaConnection {
    /// An idempotent producer's configuration with `acks=all`: a retried send never duplicates or reorders a
    /// message, and it reconnects to a restarted broker within seconds rather than librdkafka's default of up to
    /// 10 s. The caller adds its own timeouts and batching.
    pub fn durable_producer(&self) -> ClientConfig {
        let mut config = self.client_config();
        config.set("enable.idempotence", "true").set("acks", "all").set("reconnect.backoff.max.ms", "2000");
        config
    }

    /// Creates those of `names` that are missing, with `partitions` and `replication`; existing ones are left as
    /// they are. Succeeds when every one exists afterwards.
    pub async fn ensure_topics(&self, names: &[&str], partitions: i32, replication: i32) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().set("socket.connection.setup.timeout.ms", "3000").create()?;
        let topics: Vec<NewTopic<'_>> =
            names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication))).collect();
        let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
        let outcome = admin.create_topics(&topics, &options).await;
        // Dropping the client joins its polling thread: keep that off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
        for result in outcome? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    tracing::warn!(%topic, ?code, "cannot create topic");
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_without_a_ca_file_probes_the_systems_ca_certificates() {
        let mut kafka = KafkaConnection { protocol: KafkaProtocol::Ssl, ..KafkaConnection::plaintext("b:9093") };
        let config = kafka.client_config();
        assert_eq!(config.get("security.protocol"), Some("ssl"));
        assert_eq!(config.get("ssl.ca.location"), Some("probe"));
        kafka.ca_file = Some("/etc/kafka/ca.pem".into());
        assert_eq!(kafka.client_config().get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        let plaintext = KafkaConnection::plaintext("b:9092").client_config();
        assert_eq!((plaintext.get("security.protocol"), plaintext.get("ssl.ca.location")), (Some("plaintext"), None));
    }
}
