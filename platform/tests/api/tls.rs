//! Every outbound TLS client of the platform against a real TLS server made here, with a CA generated at test
//! time: HTTP (reqwest: JWKS and service calls), OTLP traces, gRPC (tonic, client and server) and Kafka
//! (librdkafka's own OpenSSL). Each is also shown to refuse a server whose CA it was not given.
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use platform::{
    config::{KafkaConnection, ServerIdentity, TlsRoots, TracingConfig},
    tls::testing::TestPki,
};
use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext},
    error::KafkaError,
};

/// What a one-connection TLS server saw: the handshake's outcome, then the decrypted bytes it read.
type Seen = Result<Vec<u8>, String>;

/// Accepts one connection on 127.0.0.1, completes the TLS handshake with `pki`'s server certificate and hands
/// the decrypted stream to `serve`, which returns what it read.
fn tls_server(
    pki: &TestPki,
    alpn: &[&[u8]],
    serve: impl FnOnce(&mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>) -> Vec<u8> + Send + 'static,
) -> (u16, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    let config = pki.server_config(alpn);
    let handle = std::thread::spawn(move || {
        let (socket, _) = listener.accept().map_err(|error| error.to_string())?;
        socket.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        let connection = rustls::ServerConnection::new(config).map_err(|error| error.to_string())?;
        let mut stream = rustls::StreamOwned::new(connection, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|error| error.to_string())?;
        }
        Ok(serve(&mut stream))
    });
    (port, handle)
}

/// Reads an HTTP/1.1 request (head and a Content-Length body), answers 200 with `body`.
fn answer_http(stream: &mut impl ReadWrite, body: &'static str) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).unwrap_or(0);
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length:").map(|value| value.trim().parse().unwrap_or(0)))
                .unwrap_or(0usize);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = stream.write_all(answer.as_bytes()).and_then(|()| stream.flush());
    request
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn an_https_client_trusts_the_ca_file_and_refuses_a_server_of_another_ca() {
    let pki = TestPki::new();
    let (port, server) = tls_server(&pki, &[b"http/1.1"], |stream| answer_http(stream, "{\"keys\":[]}"));
    let client = platform::tls::http_client(&pki.roots()).expect("a client").build().expect("a client");
    let url = format!("https://localhost:{port}/.well-known/jwks.json");
    let body = client.get(&url).send().await.expect("an answer over TLS").text().await.expect("a body");
    assert_eq!(body, "{\"keys\":[]}");
    let request = String::from_utf8(server.join().expect("the server").expect("a handshake")).expect("HTTP");
    assert!(request.starts_with("GET /.well-known/jwks.json HTTP/1.1\r\n"), "{request}");

    // The web roots alone, or another private CA, do not vouch for this server.
    for roots in [TlsRoots::default(), TestPki::new().roots()] {
        let (port, server) = tls_server(&pki, &[b"http/1.1"], |stream| answer_http(stream, "unreachable"));
        let client = platform::tls::http_client(&roots).expect("a client").build().expect("a client");
        let error = client.get(format!("https://localhost:{port}/")).send().await.expect_err("an unknown issuer");
        assert!(chain(&error).contains("UnknownIssuer"), "{}", chain(&error));
        assert!(server.join().expect("the server").is_err(), "the handshake must fail");
    }
}

#[test]
fn traces_go_to_the_traces_url_over_https_with_the_configured_headers_and_resource() {
    let pki = TestPki::new();
    let (port, server) = tls_server(&pki, &[b"http/1.1"], |stream| answer_http(stream, ""));
    let traces_url = format!("https://localhost:{port}/custom/v1/traces");
    let ca_file = pki.ca_file();
    let source = HashMap::from([
        // The general endpoint points elsewhere: the signal's own URL wins and is used as it is.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_url.as_str()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=general,x-tenant=shop"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=tr%2Cces"),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca_file.as_str()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=tls-test"),
        ("OTEL_SERVICE_NAME", "otlp-tls-test"),
    ]);
    let tracing = TracingConfig::from_source(&source, "unused").expect("valid settings");
    let provider = platform::telemetry::tracer_provider(&tracing).expect("an exporter");
    provider.tracer("test").in_span("an-operation", |_| {});
    provider.force_flush().expect("the span is exported");
    let request = server.join().expect("the server").expect("a handshake");
    let text = String::from_utf8_lossy(&request);
    let head = text.to_ascii_lowercase();
    assert!(text.starts_with("POST /custom/v1/traces HTTP/1.1\r\n"), "{text}");
    assert!(head.contains("\r\nx-api-key: tr,ces\r\n") && head.contains("\r\nx-tenant: shop\r\n"), "{text}");
    assert!(head.contains("content-type: application/x-protobuf"), "{text}");
    for expected in ["an-operation", "otlp-tls-test", "deployment.environment", "tls-test"] {
        assert!(text.contains(expected), "the exported body names {expected}");
    }
    let _ = provider.shutdown();
}

#[tokio::test]
async fn grpc_over_tls_with_the_platforms_client_and_server_settings() {
    let pki = TestPki::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    let (cert_file, key_file) = (pki.cert_file(), pki.key_file());
    let files = HashMap::from([("GRPC_TLS_CERT_FILE", cert_file.as_str()), ("GRPC_TLS_KEY_FILE", key_file.as_str())]);
    let identity = ServerIdentity::from_source(&files, "GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE").unwrap().unwrap();
    let tls = platform::tls::grpc_server(&identity).expect("a matching key");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("server TLS")
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let check = |roots: TlsRoots| async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
            .expect("a URL")
            .tls_config(platform::tls::grpc_client(&roots))
            .expect("client TLS")
            .connect()
            .await
            .map_err(|error| chain(&error))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        client.check(request).await.map(|response| response.into_inner().status).map_err(|status| status.to_string())
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(check(pki.roots()).await, Ok(serving));
    let refused = check(TestPki::new().roots()).await.expect_err("another CA's client refuses the server");
    assert!(refused.contains("UnknownIssuer") || refused.contains("invalid peer certificate"), "{refused}");
    server.abort();

    // A key that does not belong to the certificate is refused before any client connects.
    let other = TestPki::new();
    let other_key = other.key_file();
    let files = HashMap::from([("GRPC_TLS_CERT_FILE", cert_file.as_str()), ("GRPC_TLS_KEY_FILE", other_key.as_str())]);
    let mismatched = ServerIdentity::from_source(&files, "GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE").unwrap().unwrap();
    let error = platform::tls::grpc_server(&mismatched).expect_err("a key of another certificate");
    assert!(format!("{error:#}").contains("does not fit"), "{error:#}");
}

/// Kafka client errors, as librdkafka reports them.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().expect("not poisoned").push(format!("{error}: {reason}"));
    }

    // librdkafka reports a failed handshake in its log too, at once (errors wait for a poll).
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.lock().expect("not poisoned").push(format!("{facility}: {message}"));
    }
}

impl ConsumerContext for Errors {}

/// A Kafka request frame: big-endian i32 size, then api_key, api_version, correlation_id, client_id.
fn read_frame(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).ok()?;
    Some(frame)
}

/// Answers the request `frame` with `body` (response header v0: the correlation id).
fn respond(stream: &mut impl Write, frame: &[u8], body: &[u8]) {
    let mut answer = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    answer.extend_from_slice(&frame[4..8]);
    answer.extend_from_slice(body);
    let _ = stream.write_all(&answer).and_then(|()| stream.flush());
}

fn kafka_client(connection: &KafkaConnection, extra: &[(&str, &str)]) -> (BaseConsumer<Errors>, Errors) {
    let errors = Errors::default();
    let mut config = connection.client_config();
    config.set("group.id", "tls-test").set("socket.timeout.ms", "5000");
    // rdkafka follows the `log` crate's level, which is off without a logger.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    (config.create_with_context(errors.clone()).expect("a client"), errors)
}

#[test]
fn kafka_over_tls_checks_the_broker_against_the_configured_ca() {
    let pki = TestPki::new();
    let (port, server) = tls_server(&pki, &[], |stream| read_frame(stream).unwrap_or_default());
    let brokers = format!("localhost:{port}");
    let ca_file = pki.ca_file();
    let source = HashMap::from([
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("KAFKA_SSL_CA_FILE", ca_file.as_str()),
    ]);
    let connection = KafkaConnection::from_source(&source, "unused", &TlsRoots::default()).expect("valid settings");
    let (client, _) = kafka_client(&connection, &[]);
    // The metadata request fails (this server speaks no Kafka): what matters is what reached it through TLS.
    let _ = client.fetch_metadata(None, Duration::from_secs(3));
    let frame = server.join().expect("the server").expect("the TLS handshake completes");
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    assert_eq!(api_key, 18, "the first request over TLS is ApiVersions");

    // A broker whose certificate another CA signed is refused, with librdkafka's reason.
    let stranger = TestPki::new();
    let (port, server) = tls_server(&stranger, &[], |stream| read_frame(stream).unwrap_or_default());
    let connection = KafkaConnection { brokers: format!("localhost:{port}"), ..connection };
    let (client, errors) = kafka_client(&connection, &[]);
    let _ = client.fetch_metadata(None, Duration::from_secs(3));
    let _ = client.poll(Duration::from_millis(200)); // delivers the error events
    let handshake = server.join().expect("the server");
    assert!(handshake.is_err(), "the client must abort the handshake: {handshake:?}");
    let errors = errors.0.lock().expect("not poisoned").join("\n");
    assert!(errors.contains("certificate verify failed"), "{errors}");
}

#[test]
fn kafka_sasl_ssl_sends_the_mechanism_and_the_credentials_from_their_files_inside_tls() {
    let pki = TestPki::new();
    let (port, server) = tls_server(&pki, &[], |stream| {
        // Just enough of a broker: ApiVersions (offering SaslHandshake v1 and SaslAuthenticate v0), then
        // SaslHandshake ("no error, PLAIN enabled"), then the SaslAuthenticate request, whose token is kept.
        let Some(versions) = read_frame(stream) else { return Vec::new() };
        let mut body = vec![0, 0, 4]; // error_code 0, compact array of 3 entries
        for (key, max) in [(18i16, 3i16), (17, 1), (36, 0)] {
            body.extend_from_slice(&key.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&max.to_be_bytes());
            body.push(0); // no tagged fields
        }
        body.extend_from_slice(&[0, 0, 0, 0, 0]); // throttle_time_ms, no tagged fields
        respond(stream, &versions, &body);
        let Some(handshake) = read_frame(stream) else { return versions };
        let mut body = 0i16.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&5i16.to_be_bytes());
        body.extend_from_slice(b"PLAIN");
        respond(stream, &handshake, &body);
        let authenticate = read_frame(stream).unwrap_or_default();
        [versions, handshake, authenticate]
            .iter()
            .flat_map(|frame| [(frame.len() as u32).to_be_bytes().to_vec(), frame.clone()])
            .flatten()
            .collect()
    });
    let dir = std::env::temp_dir().join(format!("kafka-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let password_file = dir.join("password");
    std::fs::write(&password_file, "s3cret\n").expect("the secret file");
    let (brokers, ca_file) = (format!("localhost:{port}"), pki.ca_file());
    let source = HashMap::from([
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("KAFKA_SASL_USERNAME", "orders"),
        ("KAFKA_SASL_PASSWORD_FILE", password_file.to_str().expect("UTF-8")),
    ]);
    // The CA comes from TLS_CA_FILE, the shared setting, here.
    let connection = KafkaConnection::from_source(&source, "unused", &pki.roots()).expect("valid settings");
    assert_eq!(connection.ca_file.as_deref(), Some(ca_file.as_str()));
    let (client, _) = kafka_client(&connection, &[]);
    let _ = client.fetch_metadata(None, Duration::from_secs(3));
    let seen = server.join().expect("the server").expect("the TLS handshake completes");
    let _ = std::fs::remove_dir_all(&dir);
    let mut frames = Vec::new();
    let mut rest = seen.as_slice();
    while let Some(frame) = read_frame(&mut rest) {
        frames.push(frame);
    }
    let keys: Vec<i16> = frames.iter().map(|frame| i16::from_be_bytes([frame[0], frame[1]])).collect();
    assert_eq!(keys, [18, 17, 36], "ApiVersions, SaslHandshake, SaslAuthenticate, all inside TLS");
    assert!(String::from_utf8_lossy(&frames[1]).ends_with("PLAIN"), "the mechanism: {:?}", frames[1]);
    let token = String::from_utf8_lossy(&frames[2]);
    assert!(token.ends_with("\0orders\0s3cret"), "the PLAIN token carries the credentials: {token:?}");
}
