//! The Kafka connection settings ([`KafkaConnection`], read by `platform::config`) applied to librdkafka's
//! configuration, so every client of every service connects the same way; the loop of a consumer that works in
//! batches; a producer replaced when it can no longer deliver ([`ReplaceableProducer`]); a client torn down off the
//! async threads ([`Detached`]); and the JSON envelope every event travels in
//! (each service keeps its own event types).
//!
//! librdkafka is built with its own OpenSSL (rdkafka's `ssl-vendored`), statically linked: without a CA file,
//! TLS connections use `ssl.ca.location=probe` (the system's usual CA locations). librdkafka checks the
//! broker's host name (`ssl.endpoint.identification.algorithm=https`, its default).
use std::{
    ops::Deref,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, ToBytes},
    producer::{FutureProducer, FutureRecord, Producer as _},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use crate::config::{GroupMembership, KafkaConnection, KafkaProtocol, SaslMechanism};
use crate::shutdown::StopSignal;

/// How long topic creation may take before it is retried.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a consumer stopping gracefully waits to commit its offsets and leave its group; after that it is left
/// to finish on its own thread ([`Detached::close`]). Well within `shutdown::WORKER_DRAIN`.
pub const CONSUMER_CLOSE: Duration = Duration::from_secs(5);

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
    /// A group consumer's configuration: the client's, the group, the session and heartbeat of
    /// [`GroupMembership`], and `instance` (the replica's name) as the static
    /// member's `group.instance.id` when membership is static. The caller adds its own settings.
    pub fn group_consumer(&self, group: &str, instance: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("session.timeout.ms", self.membership.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", self.membership.heartbeat_interval().as_millis().to_string());
        if self.membership.static_members {
            config.set("group.instance.id", instance);
        }
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

/// The producer a service's events leave through, shared by the tasks that publish, and replaced by a new one when it
/// can no longer deliver. A replaced producer is dropped off the async threads (dropping flushes and joins
/// librdkafka's threads).
pub struct ReplaceableProducer {
    config: ClientConfig,
    current: Mutex<FutureProducer>,
}

/// After this many publishing rounds in a row that Kafka failed, a relay replaces its producer even when no error said
/// the producer was stuck: a broker that restarted may refuse its idempotence state in ways librdkafka does not report.
const FAILED_ROUNDS_BEFORE_NEW_PRODUCER: u32 = 3;

impl ReplaceableProducer {
    /// Creates the first producer from `config`; this does no I/O, so it succeeds while the brokers are down.
    pub fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let producer = config.create()?;
        Ok(Self { config, current: Mutex::new(producer) })
    }

    /// The producer in use now (clones share one librdkafka client): to flush it, or to ask the broker for metadata.
    pub fn current(&self) -> FutureProducer {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends `record` through the current producer and waits for the broker's acknowledgement (`queue_timeout`: how
    /// long it may wait for room in librdkafka's queue). A failure that no retry mends replaces that producer, so that
    /// the caller's retry goes through a new one.
    pub async fn send<K, P>(&self, record: FutureRecord<'_, K, P>, queue_timeout: Duration) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let producer = self.current();
        match producer.send(record, queue_timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                self.after_failure(&producer, &error);
                Err(error)
            }
        }
    }

    /// A relay's publishing round failed in Kafka, the `consecutive`-th in a row: from the third on, the producer is
    /// replaced. Returns whether it was.
    pub fn after_failed_rounds(&self, consecutive: u32) -> bool {
        let replaced = consecutive >= FAILED_ROUNDS_BEFORE_NEW_PRODUCER && self.replace(&self.current());
        if replaced {
            tracing::warn!(consecutive, "replaced a Kafka producer after repeated failures");
        }
        replaced
    }

    /// Called with the producer a send went through and the error it failed with: replaces that producer when no
    /// retry can mend the failure ([`cannot_deliver_again`]). Returns whether it was replaced.
    fn after_failure(&self, used: &FutureProducer, error: &KafkaError) -> bool {
        if !cannot_deliver_again(used, error) {
            return false;
        }
        let replaced = self.replace(used);
        if replaced {
            tracing::warn!(%error, fatal = ?used.client().fatal_error(), "replaced a Kafka producer that cannot deliver again");
        }
        replaced
    }

    /// Puts a new producer in the place of `used`, unless `used` was replaced already: sends that fail together
    /// replace their producer once. When no new producer can be created the old one stays, and the next failure
    /// tries again. Returns whether it was replaced.
    fn replace(&self, used: &FutureProducer) -> bool {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.client().native_ptr() != used.client().native_ptr() {
            return false;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, fresh);
                drop(current);
                drop_on_own_thread(old, None);
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot create a new Kafka producer; keeping the old one");
                false
            }
        }
    }
}

/// Whether `producer`, which just failed with `error`, will never deliver again, so that only a new one can: it is in
/// librdkafka's fatal state, or the broker refused its producer id or epoch. Tansu answers `ProducerFenced` to an
/// idempotent producer whose sends timed out while it stalled (librdkafka bumped the epoch meanwhile), and
/// librdkafka keeps retrying with the refused id instead of failing for good.
pub fn cannot_deliver_again(producer: &FutureProducer, error: &KafkaError) -> bool {
    use RDKafkaErrorCode::{
        InvalidProducerEpoch, InvalidProducerIdMapping, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId,
    };
    producer.client().fatal_error().is_some()
        || matches!(
            error.rdkafka_error_code(),
            Some(
                ProducerFenced
                    | InvalidProducerEpoch
                    | UnknownProducerId
                    | OutOfOrderSequenceNumber
                    | InvalidProducerIdMapping
            )
        )
}

/// A librdkafka client that is never torn down on an async thread. Dropping a group consumer closes it, and
/// librdkafka's close waits for the group's coordinator: about 6 s here once the broker is gone, and forever in the
/// cases of confluentinc/librdkafka#4519. On a runtime thread that stalls every task of the thread (a test's
/// runtime has one), and a runtime's shutdown waits for its threads; so the client is dropped on a thread of its
/// own, which the process does not wait for at exit.
pub struct Detached<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Detached<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }

    /// Tears the client down (a consumer commits what it stored and leaves its group) and waits for that at most
    /// `deadline`; false when it is still closing then, left to its thread.
    pub async fn close(mut self, deadline: Duration) -> bool {
        let (closed, done) = tokio::sync::oneshot::channel();
        if let Some(client) = self.0.take() {
            drop_on_own_thread(client, Some(closed));
        }
        tokio::time::timeout(deadline, done).await.is_ok_and(|done| done.is_ok())
    }
}

impl<T: Send + 'static> Deref for Detached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("a client until it is closed")
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop_on_own_thread(client, None);
        }
    }
}

fn drop_on_own_thread<T: Send + 'static>(client: T, closed: Option<tokio::sync::oneshot::Sender<()>>) {
    let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
        drop(client);
        if let Some(closed) = closed {
            let _ = closed.send(());
        }
    });
    if let Err(error) = spawned {
        // The closure, and the client with it, is dropped here: on this thread after all.
        tracing::warn!(%error, "no thread to close a Kafka client on");
    }
}

/// The envelope of every event (documented in DOCUMENTATION.md):
/// `{"eventId": "uuid", "type": "new-order", "version": 1, "occurredAt": "RFC 3339", "data": {...}}`. Consumers
/// deduplicate on `eventId` (delivery is at-least-once); `type` and `version` say what `data` is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: String,
    pub data: T,
}

impl<T> Envelope<T> {
    /// A new event, its id a UUID v7 (time-ordered).
    pub fn new(event_type: &str, version: u32, occurred_at: String, data: T) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: event_type.to_owned(),
            version,
            occurred_at,
            data,
        }
    }
}

/// Why a message can never be processed: it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison(pub String);

/// Parses a message payload into an envelope of `expected_type` at `version`; anything else is poison.
pub fn parse_envelope<T: DeserializeOwned>(
    payload: Option<&[u8]>,
    expected_type: &str,
    version: u32,
) -> Result<Envelope<T>, Poison> {
    let payload = payload.ok_or_else(|| Poison("empty message".into()))?;
    let envelope: Envelope<T> =
        serde_json::from_slice(payload).map_err(|error| Poison(format!("not a {expected_type} envelope: {error}")))?;
    if envelope.event_type != expected_type {
        return Err(Poison(format!("unexpected event type {:?}", envelope.event_type)));
    }
    if envelope.version != version {
        return Err(Poison(format!("unsupported version {}", envelope.version)));
    }
    Ok(envelope)
}

/// What a group consumer does with the batches [`consume_batches`] receives.
pub trait BatchWork {
    /// Makes the whole batch durable (or dead-lettered), retrying while a dependency is away; false when asked to
    /// stop first, and then nothing of the batch counts as done.
    fn work(&self, batch: &[BorrowedMessage<'_>], stop: &mut StopSignal) -> impl Future<Output = bool> + Send;

    /// A consumer error (a broker away, a subscribed topic missing); the loop pauses briefly after it.
    fn failed(&self, error: KafkaError) -> impl Future<Output = ()> + Send;
}

/// The loop of a group consumer that works in batches and stores its offsets by hand
/// (`enable.auto.offset.store=false`, committed from the store): the first message is waited for, whatever else
/// has already arrived joins it (up to `max`, no waiting), and the batch's offsets are stored only once the whole
/// batch is done, in order, so that a crash redelivers rather than skips. When asked to stop, the stored offsets
/// are handed to a commit (closing the consumer waits for it: [`Detached::close`]) before returning.
pub async fn consume_batches<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    stop: &mut StopSignal,
    work: &impl BatchWork,
) {
    loop {
        let first = tokio::select! {
            message = consumer.recv() => message,
            () = stop.stopped() => break,
        };
        let first = match first {
            Ok(first) => first,
            Err(error) => {
                work.failed(error).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message),
                _ => break,
            }
        }
        if !work.work(&batch, stop).await {
            break;
        }
        for message in &batch {
            if let Err(error) = consumer.store_offset_from_message(message) {
                tracing::warn!(%error, "cannot store the offset; the message may be redelivered");
            }
        }
    }
    // Not `Sync`: it would block this async thread for as long as the broker takes to answer, or is away.
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::debug!(%error, "no offsets committed at shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_well_formed_envelope() {
        let payload =
            json!({"eventId": "e", "type": "new-order", "version": 1, "occurredAt": "t", "data": {"id": "o1"}});
        let envelope: Envelope<serde_json::Value> =
            parse_envelope(Some(payload.to_string().as_bytes()), "new-order", 1).unwrap();
        assert_eq!((envelope.event_id.as_str(), &envelope.data["id"]), ("e", &json!("o1")));
    }

    #[test]
    fn garbage_other_types_and_other_versions_are_poison() {
        let parse = |payload: Option<&[u8]>| parse_envelope::<serde_json::Value>(payload, "new-order", 1);
        assert_eq!(parse(None), Err(Poison("empty message".into())));
        assert!(parse(Some(b"{not json")).unwrap_err().0.starts_with("not a new-order envelope"));
        let other = json!({"eventId": "e", "type": "other", "version": 1, "occurredAt": "t", "data": {}});
        assert!(parse(Some(other.to_string().as_bytes())).is_err());
        let v2 = json!({"eventId": "e", "type": "new-order", "version": 2, "occurredAt": "t", "data": {}});
        assert_eq!(parse(Some(v2.to_string().as_bytes())), Err(Poison("unsupported version 2".into())));
    }

    /// A client whose teardown blocks its thread until released, as librdkafka's close does while it waits for a
    /// coordinator that no broker provides.
    struct StuckClient(std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<String>);

    impl Drop for StuckClient {
        fn drop(&mut self) {
            let _ = self.0.recv();
            let _ = self.1.send(std::thread::current().name().unwrap_or_default().to_owned());
        }
    }

    fn stuck_client() -> (Detached<StuckClient>, std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<String>) {
        let (release, released) = std::sync::mpsc::channel();
        let (torn_down, teardowns) = std::sync::mpsc::channel();
        (Detached::new(StuckClient(released, torn_down)), release, teardowns)
    }

    #[test]
    fn dropping_a_client_whose_close_hangs_returns_at_once() {
        let (client, release, teardowns) = stuck_client();
        let (dropped, returned) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(client);
            let _ = dropped.send(());
        });
        let returned_at_once = returned.recv_timeout(Duration::from_secs(10)).is_ok();
        release.send(()).unwrap();
        assert!(returned_at_once, "the drop waited for the teardown");
        let thread = teardowns.recv_timeout(Duration::from_secs(10));
        assert_eq!(thread.as_deref(), Ok("kafka-close"), "torn down on a thread of its own once released");
    }

    /// `close` on a runtime of its own thread: a close that blocked its caller fails the test instead of hanging it.
    fn close_on_own_thread(client: Detached<StuckClient>, deadline: Duration) -> std::sync::mpsc::Receiver<bool> {
        let (returned, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let _ = returned.send(runtime.block_on(client.close(deadline)));
        });
        outcome
    }

    #[test]
    fn close_waits_for_the_teardown_up_to_its_deadline() {
        let (client, release, teardowns) = stuck_client();
        let outcome = close_on_own_thread(client, Duration::from_millis(100)).recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        assert_eq!(outcome, Ok(false), "close returns at its deadline, the client still closing");
        let thread = teardowns.recv_timeout(Duration::from_secs(10));
        assert_eq!(thread.as_deref(), Ok("kafka-close"), "and the teardown finishes later, on its own thread");

        let (client, release, teardowns) = stuck_client();
        release.send(()).unwrap();
        let outcome = close_on_own_thread(client, Duration::from_secs(10)).recv_timeout(Duration::from_secs(20));
        assert_eq!(outcome, Ok(true), "a teardown that completes is waited for");
        assert_eq!(teardowns.try_recv().as_deref(), Ok("kafka-close"));
    }

    /// A producer of a broker nobody listens on: creating one does no I/O.
    fn producers() -> ReplaceableProducer {
        let config = KafkaConnection::plaintext(&format!("127.0.0.1:{}", closed_port())).durable_producer();
        ReplaceableProducer::new(config).expect("a producer needs no broker to be created")
    }

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn same(a: &FutureProducer, b: &FutureProducer) -> bool {
        a.client().native_ptr() == b.client().native_ptr()
    }

    #[test]
    fn a_producer_the_broker_fenced_is_replaced_once_however_many_sends_report_it() {
        let producers = producers();
        let fenced = producers.current();
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert!(producers.after_failure(&fenced, &error), "the first report replaces it");
        let fresh = producers.current();
        assert!(!same(&fresh, &fenced));
        assert!(!producers.after_failure(&fenced, &error), "a second report of the same producer changes nothing");
        assert!(same(&producers.current(), &fresh));
        for code in [RDKafkaErrorCode::UnknownProducerId, RDKafkaErrorCode::InvalidProducerEpoch] {
            let used = producers.current();
            assert!(producers.after_failure(&used, &KafkaError::MessageProduction(code)), "{code:?}");
        }
    }

    #[test]
    fn a_producer_whose_send_timed_out_or_found_no_broker_is_kept() {
        let producers = producers();
        let used = producers.current();
        for code in [RDKafkaErrorCode::MessageTimedOut, RDKafkaErrorCode::AllBrokersDown, RDKafkaErrorCode::QueueFull] {
            assert!(!producers.after_failure(&used, &KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(same(&producers.current(), &used), "a retry may still deliver: the producer stays");
        assert!(!producers.after_failed_rounds(1) && !producers.after_failed_rounds(2), "two failed rounds keep it");
        assert!(same(&producers.current(), &used));
        assert!(producers.after_failed_rounds(3), "the third replaces it");
        assert!(!same(&producers.current(), &used));
    }

    #[test]
    fn a_group_consumer_is_a_static_member_only_when_membership_is_static() {
        let mut kafka = KafkaConnection::plaintext("b:9092");
        let config = kafka.group_consumer("orders", "replica-a");
        assert_eq!(config.get("group.id"), Some("orders"));
        assert_eq!(config.get("group.instance.id"), Some("replica-a"));
        assert_eq!(
            (config.get("session.timeout.ms"), config.get("heartbeat.interval.ms")),
            (Some("6000"), Some("1200"))
        );
        kafka.membership = GroupMembership { session_timeout: Duration::from_secs(1), static_members: false };
        let config = kafka.group_consumer("orders", "replica-a");
        assert_eq!(config.get("group.instance.id"), None);
        assert_eq!(
            (config.get("session.timeout.ms"), config.get("heartbeat.interval.ms")),
            (Some("1000"), Some("200"))
        );
    }

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
