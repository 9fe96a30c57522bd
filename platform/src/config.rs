//! The plumbing under every service's `config.rs`: where values come from, how they are parsed, the error that
//! names the variable, the settings every service has (`APP_ENV`, `HOST`, `PORT`, `LOG_FORMAT`, tracing) and
//! the one production rule: with `APP_ENV=production` every variable the service declares as required must be
//! set explicitly, because its development default (a local address, a generated secret) would be wrong there.
use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr, time::Duration};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment. An empty variable counts as unset.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Source for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).filter(|value| !value.is_empty()).map(|value| (*value).to_owned())
    }
}

/// A source that answers nothing and remembers every name it was asked for: a service's configuration read from
/// it (all development defaults) names every variable the service reads, which is how `<service> --print-env`
/// declares them (deployment files are checked against that list, not against a scan of the source code).
#[derive(Default)]
pub struct Recorder(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl Source for Recorder {
    fn get(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_owned());
        None
    }
}

impl Recorder {
    /// The variables `parse` reads, sorted, with `RUST_LOG` (read by the log filter itself, not through a
    /// `Source`).
    pub fn variables_of<C>(parse: fn(&dyn Source) -> Result<C, ConfigError>) -> Result<Vec<String>, ConfigError> {
        let recorder = Self::default();
        parse(&recorder)?;
        let mut names = recorder.0.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        names.insert("RUST_LOG".to_owned());
        Ok(names.into_iter().collect())
    }
}

/// A value that stops startup, with the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self { variable, reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Reads `name`, parsing it with `FromStr`, or returns `default` when unset.
pub fn parsed<T: FromStr>(source: &dyn Source, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match source.get(name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|error| ConfigError::new(name, format!("cannot parse {raw:?}: {error}")))
        }
    }
}

/// A duration given in milliseconds; zero is rejected because it would make every operation fail at once.
pub fn millis(source: &dyn Source, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
    match parsed(source, name, default_ms)? {
        0 => Err(ConfigError::new(name, "must be at least 1 millisecond")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// The raw text of `name`, or `default` when unset.
pub fn text(source: &dyn Source, name: &str, default: &str) -> String {
    source.get(name).unwrap_or_else(|| default.to_owned())
}

/// Like [`text`], refusing a value of only spaces.
pub fn non_empty(source: &dyn Source, name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value = text(source, name, default);
    if value.trim().is_empty() { Err(ConfigError::new(name, "must not be blank")) } else { Ok(value) }
}

/// A whole number of at least 1 (a pool size, a limit), or `default` when unset.
pub fn at_least_one<T>(source: &dyn Source, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + From<u8>,
    T::Err: fmt::Display,
{
    let value = parsed(source, name, default)?;
    if value < T::from(1) { Err(ConfigError::new(name, "must be at least 1")) } else { Ok(value) }
}

/// A count that must be within `range` (queue and batch sizes), or `default` when unset.
pub fn bounded(
    source: &dyn Source,
    name: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let value = parsed(source, name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(name, format!("must be from {} to {}", range.start(), range.end())))
    }
}

/// The default name of this replica (the owner of its leases, its static group membership): the host's name,
/// which is a pod's or container's own, else the process id.
pub fn default_replica_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// `development` (the default) may fall back on local addresses and generated secrets; `production` may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!("expected `development` or `production`, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "text" | "pretty" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `text` or `json`, got {other:?}")),
        }
    }
}

/// A MongoDB connection string, checked for its scheme so that typos fail at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoUri(pub String);

impl FromStr for MongoUri {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.starts_with("mongodb://") || value.starts_with("mongodb+srv://") {
            Ok(Self(value.to_owned()))
        } else {
            Err("expected a mongodb:// or mongodb+srv:// connection string".to_owned())
        }
    }
}

/// Where a service's database is, the same three variables in every service that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoSettings {
    /// MONGODB_URI (default `mongodb://127.0.0.1:27017`).
    pub uri: MongoUri,
    /// MONGODB_DATABASE: the service's own database.
    pub database: String,
    /// MONGODB_TIMEOUT_MS (default 2 s): how long an operation waits for a server before the request fails
    /// as unavailable, instead of the driver's 30 s.
    pub timeout: Duration,
}

impl MongoSettings {
    pub fn from_source(source: &dyn Source, default_database: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            uri: parsed(source, "MONGODB_URI", MongoUri("mongodb://127.0.0.1:27017".into()))?,
            database: non_empty(source, "MONGODB_DATABASE", default_database)?,
            timeout: millis(source, "MONGODB_TIMEOUT_MS", 2_000)?,
        })
    }
}

/// An absolute http(s) URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl FromStr for BaseUrl {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => {
                Ok(Self(value.trim_end_matches('/').to_owned()))
            }
            _ => Err("expected an absolute http:// or https:// URL".to_owned()),
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// TLS_CA_FILE (or another CA variable): PEM certificates a TLS client trusts besides the public web roots, for
/// a private PKI. Read and checked at startup, so a missing or malformed file stops the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsRoots {
    /// The file the certificates came from, for messages; None: the public web roots only.
    pub ca_file: Option<String>,
    /// The file's PEM text (tonic takes PEM).
    pub pem: Vec<u8>,
    pub certificates: Vec<CertificateDer<'static>>,
}

impl TlsRoots {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self::from_variable(source, "TLS_CA_FILE")?.unwrap_or_default())
    }

    /// The certificates of the file `variable` names, None when it is unset.
    pub fn from_variable(source: &dyn Source, variable: &'static str) -> Result<Option<Self>, ConfigError> {
        source.get(variable).map(|path| Self::read(variable, path.trim())).transpose()
    }

    fn read(variable: &'static str, path: &str) -> Result<Self, ConfigError> {
        let pem =
            std::fs::read(path).map_err(|error| ConfigError::new(variable, format!("cannot read {path}: {error}")))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ConfigError::new(variable, format!("{path} is not PEM: {error}")))?;
        if certificates.is_empty() {
            return Err(ConfigError::new(variable, format!("{path} holds no PEM CERTIFICATE")));
        }
        Ok(Self { ca_file: Some(path.to_owned()), pem, certificates })
    }
}

/// A server's TLS identity: a PEM certificate chain (leaf first) and its private key, from two file variables
/// that are set together or not at all. The key stays out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub cert_file: String,
    /// The chain's PEM text, and its first (the server's own) certificate.
    pub certificate_chain: Vec<u8>,
    pub leaf: CertificateDer<'static>,
    pub private_key: Vec<u8>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl ServerIdentity {
    pub fn from_source(
        source: &dyn Source,
        cert_variable: &'static str,
        key_variable: &'static str,
    ) -> Result<Option<Self>, ConfigError> {
        let (cert_file, key_file) = match (source.get(cert_variable), source.get(key_variable)) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert.trim().to_owned(), key.trim().to_owned()),
            (Some(_), None) => return Err(ConfigError::new(key_variable, format!("must be set with {cert_variable}"))),
            (None, Some(_)) => return Err(ConfigError::new(cert_variable, format!("must be set with {key_variable}"))),
        };
        let roots = TlsRoots::read(cert_variable, &cert_file)?;
        let private_key = std::fs::read(&key_file)
            .map_err(|error| ConfigError::new(key_variable, format!("cannot read {key_file}: {error}")))?;
        PrivateKeyDer::from_pem_slice(&private_key)
            .map_err(|error| ConfigError::new(key_variable, format!("{key_file} holds no PEM private key: {error}")))?;
        let leaf = roots.certificates[0].clone();
        Ok(Some(Self { cert_file, certificate_chain: roots.pem, leaf, private_key }))
    }
}

/// A value given directly in `variable` or in the file `variable_FILE` names (a mounted secret); None when
/// neither is set. Both at once is refused (which one was meant?). Trailing newlines of the file are dropped.
pub fn value_or_file(
    source: &dyn Source,
    variable: &'static str,
    file_variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (source.get(variable), source.get(file_variable)) {
        (Some(_), Some(_)) => Err(ConfigError::new(variable, format!("set {variable} or {file_variable}, not both"))),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(path.trim())
            .map(|value| Some(value.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|error| ConfigError::new(file_variable, format!("cannot read {}: {error}", path.trim()))),
        (None, None) => Ok(None),
    }
}

/// Where traces go, from the standard OTEL_* variables (read here rather than by the SDK, so that a bad value
/// stops startup with the variable's name): OTLP over HTTP (protobuf) to `traces_url`, or nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// The full URL spans are POSTed to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else
    /// OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`; None (neither set, or OTEL_SDK_DISABLED=true) exports nothing.
    pub traces_url: Option<String>,
    /// OTEL_EXPORTER_OTLP_HEADERS, overridden key by key by OTEL_EXPORTER_OTLP_TRACES_HEADERS.
    pub headers: BTreeMap<String, String>,
    /// OTEL_SERVICE_NAME, else `service.name` of OTEL_RESOURCE_ATTRIBUTES, else the service's own name.
    pub service_name: String,
    /// OTEL_RESOURCE_ATTRIBUTES without `service.name` (which is `service_name`).
    pub resource_attributes: BTreeMap<String, String>,
    /// The CAs the exporter trusts besides the web roots: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, else
    /// OTEL_EXPORTER_OTLP_CERTIFICATE, else TLS_CA_FILE.
    pub roots: TlsRoots,
}

impl TracingConfig {
    /// No export: what tests and tools use.
    pub fn disabled(service_name: &str) -> Self {
        Self {
            traces_url: None,
            headers: BTreeMap::new(),
            service_name: service_name.to_owned(),
            resource_attributes: BTreeMap::new(),
            roots: TlsRoots::default(),
        }
    }

    /// Export to `traces_url` (the full URL), nothing else set.
    pub fn exporting_to(traces_url: &str, service_name: &str) -> Self {
        Self { traces_url: Some(traces_url.to_owned()), ..Self::disabled(service_name) }
    }

    pub fn from_source(source: &dyn Source, default_name: &str) -> Result<Self, ConfigError> {
        Self::with_roots(source, default_name, &TlsRoots::from_source(source)?)
    }

    fn with_roots(source: &dyn Source, default_name: &str, tls: &TlsRoots) -> Result<Self, ConfigError> {
        let url = |variable: &'static str| -> Result<Option<BaseUrl>, ConfigError> {
            source
                .get(variable)
                .map(|raw| raw.trim().parse().map_err(|reason| ConfigError::new(variable, reason)))
                .transpose()
        };
        let signal = url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?;
        let base = url("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        for variable in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            if let Some(protocol) = source.get(variable).filter(|protocol| protocol.trim() != "http/protobuf") {
                return Err(ConfigError::new(
                    variable,
                    format!("{protocol:?} is not supported: the exporter speaks http/protobuf only"),
                ));
            }
        }
        let disabled = match source.get("OTEL_SDK_DISABLED").map(|raw| raw.trim().to_ascii_lowercase()) {
            None => false,
            Some(value) if value == "true" => true,
            Some(value) if value == "false" => false,
            Some(value) => {
                return Err(ConfigError::new("OTEL_SDK_DISABLED", format!("expected true or false, got {value:?}")));
            }
        };
        // The signal-specific URL is used as it is; the general one is a base the signal's path goes under.
        let traces_url = match (signal, base) {
            _ if disabled => None,
            (Some(signal), _) => Some(signal.0),
            (None, Some(base)) => Some(format!("{}/v1/traces", base.0)),
            (None, None) => None,
        };
        let mut headers = key_values(source, "OTEL_EXPORTER_OTLP_HEADERS")?;
        headers.extend(key_values(source, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")?);
        // The exporter would drop a header it cannot send without a word.
        for (name, value) in &headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    format!("{name:?} is not a valid HTTP header name and value"),
                ));
            }
        }
        let mut resource_attributes = key_values(source, "OTEL_RESOURCE_ATTRIBUTES")?;
        let from_resource = resource_attributes.remove("service.name");
        let service_name = match source.get("OTEL_SERVICE_NAME") {
            Some(_) => non_empty(source, "OTEL_SERVICE_NAME", default_name)?,
            None => from_resource.unwrap_or_else(|| default_name.to_owned()),
        };
        let roots = match TlsRoots::from_variable(source, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")? {
            Some(roots) => roots,
            None => TlsRoots::from_variable(source, "OTEL_EXPORTER_OTLP_CERTIFICATE")?.unwrap_or_else(|| tls.clone()),
        };
        Ok(Self { traces_url, headers, service_name, resource_attributes, roots })
    }
}

/// The OpenTelemetry list format of OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES: `key=value` pairs
/// separated by commas, values percent-encoded (`%2C` for a comma); a later key replaces an earlier one.
fn key_values(source: &dyn Source, variable: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut pairs = BTreeMap::new();
    for item in text(source, variable, "").split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(ConfigError::new(variable, format!("{item:?} is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::new(variable, format!("{item:?} has no key")));
        }
        let value = percent_decoded(value.trim()).map_err(|reason| ConfigError::new(variable, reason))?;
        pairs.insert(key.to_owned(), value);
    }
    Ok(pairs)
}

fn percent_decoded(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            let byte = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok());
            decoded.push(byte.ok_or_else(|| format!("{value:?}: a % must start a two-digit hex escape"))?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("{value:?} does not decode to UTF-8"))
}

/// What a service declares about itself for [`Common::from_source`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// The service's name in traces (OTEL_SERVICE_NAME's default).
    pub name: &'static str,
    /// PORT's default.
    pub port: u16,
    /// The variables `APP_ENV=production` requires to be set explicitly: the addresses of other systems and
    /// the secrets, whose development defaults are wrong in production.
    pub required_in_production: &'static [&'static str],
}

/// The settings every service has, read the same way in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub app_env: AppEnv,
    /// HOST: the listen address (0.0.0.0 by default, for containers).
    pub host: IpAddr,
    pub port: u16,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    /// TLS_CA_FILE: what every outbound TLS client trusts besides the public web roots.
    pub tls: TlsRoots,
}

impl Common {
    /// Reads the common settings and applies the production rule.
    pub fn from_source(source: &dyn Source, service: &ServiceDefaults) -> Result<Self, ConfigError> {
        let app_env = parsed(source, "APP_ENV", AppEnv::Development)?;
        if app_env == AppEnv::Production {
            require_all(source, service.required_in_production)?;
        }
        let tls = TlsRoots::from_source(source)?;
        Ok(Self {
            app_env,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", service.port)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::with_roots(source, service.name, &tls)?,
            tls,
        })
    }
}

/// The production rule: each of `variables` must be set (a group `A|B` is met by either).
fn require_all(source: &dyn Source, variables: &'static [&'static str]) -> Result<(), ConfigError> {
    for &variable in variables {
        if !variable.split('|').any(|name| source.get(name).is_some()) {
            let shown = variable.split('|').next().unwrap_or(variable);
            let alternatives = variable.replace('|', " or ");
            return Err(ConfigError::new(
                shown,
                format!("{alternatives} must be set explicitly when APP_ENV=production"),
            ));
        }
    }
    Ok(())
}

/// Kafka's own rule for topic names, checked here so a typo fails at startup rather than at the first publish.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > 249 {
        Err(format!("topic name {name:?} (prefix included) is longer than 249 characters"))
    } else if name == "." || name == ".." || !name.chars().all(legal) {
        Err(format!("topic name {name:?} (prefix included) may only use ASCII letters, digits, '.', '_' and '-'"))
    } else {
        Ok(())
    }
}

/// The full name of a Kafka topic: `KAFKA_TOPIC_PREFIX` (so that tests and environments can share brokers), then
/// the name `variable` holds (else `default`), checked whole against Kafka's rule.
pub fn topic_name(source: &dyn Source, variable: &'static str, default: &str) -> Result<String, ConfigError> {
    let full = format!("{}{}", text(source, "KAFKA_TOPIC_PREFIX", ""), non_empty(source, variable, default)?);
    check_topic_name(&full).map_err(|reason| ConfigError::new(variable, reason))?;
    Ok(full)
}

/// KAFKA_SECURITY_PROTOCOL: how the Kafka clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaProtocol {
    /// librdkafka's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for KafkaProtocol {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            other => Err(format!("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {other:?}")),
        }
    }
}

/// KAFKA_SASL_MECHANISM: the SASL mechanisms this build's librdkafka supports without Cyrus SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            "GSSAPI" | "OAUTHBEARER" => {
                Err(format!("{value} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
            }
            other => Err(format!("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {other:?}")),
        }
    }
}

/// SASL credentials; the password never appears in `Debug` output (configuration is logged on errors).
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How the Kafka clients connect: brokers, protocol, SASL credentials and the CA the brokers' certificates are
/// checked against. `platform::kafka` applies it to librdkafka's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    /// KAFKA_BROKERS: comma-separated `host:port` bootstrap servers.
    pub brokers: String,
    pub protocol: KafkaProtocol,
    /// Set exactly when the protocol is SASL_*.
    pub sasl: Option<SaslCredentials>,
    /// KAFKA_SSL_CA_FILE, else TLS_CA_FILE (TLS protocols only); None: the system's CA certificates.
    pub ca_file: Option<String>,
    /// How the service's group consumers take part in their groups.
    pub membership: GroupMembership,
}

/// How every group consumer of a service takes part in its group (`platform::kafka` applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMembership {
    /// KAFKA_SESSION_TIMEOUT_MS (default 6000, the least a Kafka broker accepts unless configured otherwise): how
    /// long the group's coordinator waits for a member's heartbeat before it hands that member's partitions to the
    /// others. Heartbeats go every fifth of it.
    pub session_timeout: Duration,
    /// KAFKA_STATIC_MEMBERSHIP (default true): consumers join as static members named by REPLICA_ID (KIP-345), so
    /// that a replica that restarts takes its partitions back at once instead of after a rebalance.
    pub static_members: bool,
}

impl Default for GroupMembership {
    fn default() -> Self {
        Self { session_timeout: Duration::from_secs(6), static_members: true }
    }
}

impl GroupMembership {
    /// librdkafka's bound on `session.timeout.ms` is one hour; a session under a second would leave a busy machine's
    /// members almost no room for a late heartbeat.
    const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

    fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let session_timeout = millis(source, "KAFKA_SESSION_TIMEOUT_MS", 6_000)?;
        let range = Self::SESSION_TIMEOUT_MS;
        if !range.contains(&(session_timeout.as_millis() as u64)) {
            return Err(ConfigError::new(
                "KAFKA_SESSION_TIMEOUT_MS",
                format!("must be from {} to {} milliseconds", range.start(), range.end()),
            ));
        }
        Ok(Self { session_timeout, static_members: parsed(source, "KAFKA_STATIC_MEMBERSHIP", true)? })
    }

    /// How often a member tells the coordinator it lives: a fifth of the session, so several may go missing.
    pub fn heartbeat_interval(&self) -> Duration {
        self.session_timeout / 5
    }
}

impl KafkaConnection {
    /// Plaintext to `brokers`: the development default, and what tests use.
    pub fn plaintext(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            protocol: KafkaProtocol::Plaintext,
            sasl: None,
            ca_file: None,
            membership: GroupMembership::default(),
        }
    }

    /// Reads KAFKA_BROKERS (default `default_brokers`) and the security settings; `tls` is TLS_CA_FILE's, the
    /// CA used when KAFKA_SSL_CA_FILE is unset. Settings that cannot work together stop startup.
    pub fn from_source(source: &dyn Source, default_brokers: &str, tls: &TlsRoots) -> Result<Self, ConfigError> {
        let brokers = non_empty(source, "KAFKA_BROKERS", default_brokers)?;
        let protocol = parsed(source, "KAFKA_SECURITY_PROTOCOL", KafkaProtocol::Plaintext)?;
        let mechanism = source.get("KAFKA_SASL_MECHANISM");
        let username = value_or_file(source, "KAFKA_SASL_USERNAME", "KAFKA_SASL_USERNAME_FILE")?;
        let password = value_or_file(source, "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE")?;
        let needs = |variable: &'static str| {
            ConfigError::new(
                variable,
                format!("must be set when KAFKA_SECURITY_PROTOCOL={}", protocol.as_str().to_uppercase()),
            )
        };
        let sasl = if protocol.uses_sasl() {
            let mechanism: SaslMechanism = mechanism
                .ok_or_else(|| needs("KAFKA_SASL_MECHANISM"))?
                .trim()
                .parse()
                .map_err(|reason| ConfigError::new("KAFKA_SASL_MECHANISM", reason))?;
            let username =
                username.filter(|name| !name.trim().is_empty()).ok_or_else(|| needs("KAFKA_SASL_USERNAME"))?;
            let password =
                password.filter(|password| !password.is_empty()).ok_or_else(|| needs("KAFKA_SASL_PASSWORD"))?;
            Some(SaslCredentials { mechanism, username, password })
        } else {
            // A credential without SASL would be silently ignored: the operator meant SASL_SSL (or SASL_PLAINTEXT).
            let stray = [
                ("KAFKA_SASL_MECHANISM", mechanism.is_some()),
                ("KAFKA_SASL_USERNAME", username.is_some()),
                ("KAFKA_SASL_PASSWORD", password.is_some()),
            ];
            if let Some((variable, _)) = stray.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    variable,
                    format!(
                        "has no effect with KAFKA_SECURITY_PROTOCOL={}: use SASL_SSL or SASL_PLAINTEXT",
                        protocol.as_str().to_uppercase()
                    ),
                ));
            }
            None
        };
        let own_ca = TlsRoots::from_variable(source, "KAFKA_SSL_CA_FILE")?;
        let ca_file = if protocol.uses_tls() {
            own_ca.map_or_else(|| tls.ca_file.clone(), |roots| roots.ca_file)
        } else if own_ca.is_some() {
            return Err(ConfigError::new(
                "KAFKA_SSL_CA_FILE",
                format!(
                    "has no effect with KAFKA_SECURITY_PROTOCOL={}: use SSL or SASL_SSL",
                    protocol.as_str().to_uppercase()
                ),
            ));
        } else {
            None
        };
        let membership = GroupMembership::from_source(source)?;
        Ok(Self { brokers, protocol, sasl, ca_file, membership })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SERVICE: ServiceDefaults =
        ServiceDefaults { name: "a-service", port: 3999, required_in_production: &["MONGODB_URI", "KEY|KEY_FILE"] };

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let common = Common::from_source(&HashMap::new(), &SERVICE).expect("defaults are valid");
        assert_eq!(common.app_env, AppEnv::Development);
        assert_eq!((common.host, common.port), (IpAddr::from([0, 0, 0, 0]), 3999));
        assert_eq!(common.log_format, LogFormat::Text);
        assert_eq!(common.tracing, TracingConfig::disabled("a-service"));
        assert_eq!(common.tls, TlsRoots::default());
    }

    #[test]
    fn production_requires_every_declared_variable_and_accepts_either_of_a_group() {
        let error = Common::from_source(&HashMap::from([("APP_ENV", "production")]), &SERVICE).unwrap_err();
        assert_eq!(error.variable, "MONGODB_URI");
        let source = HashMap::from([("APP_ENV", "production"), ("MONGODB_URI", "mongodb://db")]);
        let error = Common::from_source(&source, &SERVICE).unwrap_err();
        assert_eq!(error.variable, "KEY");
        assert!(error.reason.contains("KEY or KEY_FILE"), "{error}");
        let source = HashMap::from([("APP_ENV", "prod"), ("MONGODB_URI", "mongodb://db"), ("KEY_FILE", "/run/k")]);
        assert_eq!(Common::from_source(&source, &SERVICE).expect("complete").app_env, AppEnv::Production);
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let source = HashMap::from([("APP_ENV", "production"), ("MONGODB_URI", ""), ("KEY", "k")]);
        assert_eq!(Common::from_source(&source, &SERVICE).unwrap_err().variable, "MONGODB_URI");
        assert_eq!(parsed(&HashMap::from([("PORT", "")]), "PORT", 7u16), Ok(7));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (variable, value) in [
            ("APP_ENV", "staging"),
            ("HOST", "localhost"),
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("LOG_FORMAT", "xml"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"),
            ("OTEL_SERVICE_NAME", " "),
        ] {
            let error = Common::from_source(&HashMap::from([(variable, value)]), &SERVICE).unwrap_err();
            assert_eq!(error.variable, variable, "{variable}={value}");
            assert!(error.to_string().contains(variable));
        }
    }

    #[test]
    fn zero_milliseconds_is_refused_everywhere() {
        let source = HashMap::from([("TIMEOUT_MS", "0")]);
        assert_eq!(millis(&source, "TIMEOUT_MS", 5).unwrap_err().variable, "TIMEOUT_MS");
        assert_eq!(millis(&HashMap::new(), "TIMEOUT_MS", 5), Ok(Duration::from_millis(5)));
    }

    #[test]
    fn at_least_one_refuses_zero_and_negatives() {
        assert!(at_least_one(&HashMap::from([("N", "0")]), "N", 3_i32).is_err());
        assert!(at_least_one(&HashMap::from([("N", "-2")]), "N", 3_i32).is_err());
        assert_eq!(at_least_one(&HashMap::from([("N", "4")]), "N", 3_i32), Ok(4));
    }

    #[test]
    fn tracing_exports_only_to_an_absolute_url() {
        let source =
            HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"), ("OTEL_SERVICE_NAME", "pay")]);
        let tracing = TracingConfig::from_source(&source, "x").unwrap();
        assert_eq!(tracing.traces_url.as_deref(), Some("http://jaeger:4318/v1/traces"));
        assert_eq!(tracing.service_name, "pay");
    }

    #[test]
    fn the_traces_endpoint_takes_precedence_and_is_the_full_url() {
        let source = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://collector.example:443/otlp/traces"),
        ]);
        let tracing = TracingConfig::from_source(&source, "x").unwrap();
        assert_eq!(tracing.traces_url.as_deref(), Some("https://collector.example:443/otlp/traces"));
        let only_signal = HashMap::from([("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")]);
        assert_eq!(
            TracingConfig::from_source(&only_signal, "x").unwrap().traces_url.as_deref(),
            Some("http://c:4318/custom")
        );
        let malformed = HashMap::from([("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318")]);
        assert_eq!(
            TracingConfig::from_source(&malformed, "x").unwrap_err().variable,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        );
    }

    #[test]
    fn the_sdk_can_be_disabled_whatever_the_endpoint() {
        for (value, exports) in [("true", false), ("TRUE", false), ("false", true)] {
            let source =
                HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"), ("OTEL_SDK_DISABLED", value)]);
            assert_eq!(TracingConfig::from_source(&source, "x").unwrap().traces_url.is_some(), exports, "{value}");
        }
        let error = TracingConfig::from_source(&HashMap::from([("OTEL_SDK_DISABLED", "yes")]), "x").unwrap_err();
        assert_eq!(error.variable, "OTEL_SDK_DISABLED");
    }

    #[test]
    fn headers_merge_with_the_traces_headers_winning_and_values_are_percent_decoded() {
        let source = HashMap::from([
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general, x-tenant=a%2Cb"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces%3D1"),
        ]);
        let tracing = TracingConfig::from_source(&source, "x").unwrap();
        let expected =
            BTreeMap::from([("api-key".to_owned(), "traces=1".to_owned()), ("x-tenant".to_owned(), "a,b".to_owned())]);
        assert_eq!(tracing.headers, expected);
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=v"),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz"),
        ] {
            assert_eq!(
                TracingConfig::from_source(&HashMap::from([(variable, value)]), "x").unwrap_err().variable,
                variable
            );
        }
    }

    #[test]
    fn resource_attributes_and_the_service_name() {
        let source =
            HashMap::from([("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=from-resource")]);
        let tracing = TracingConfig::from_source(&source, "default").unwrap();
        assert_eq!(tracing.service_name, "from-resource");
        assert_eq!(
            tracing.resource_attributes,
            BTreeMap::from([("deployment.environment".to_owned(), "prod".to_owned())])
        );
        let named = HashMap::from([
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource"),
            ("OTEL_SERVICE_NAME", "explicit"),
        ]);
        assert_eq!(TracingConfig::from_source(&named, "default").unwrap().service_name, "explicit");
        assert_eq!(TracingConfig::from_source(&HashMap::new(), "default").unwrap().service_name, "default");
    }

    #[test]
    fn only_the_http_protobuf_protocol_is_accepted() {
        let source = HashMap::from([("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert!(TracingConfig::from_source(&source, "x").is_ok());
        for variable in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            let error = TracingConfig::from_source(&HashMap::from([(variable, "grpc")]), "x").unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.reason.contains("http/protobuf"), "{error}");
        }
    }

    /// A PEM file in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(contents: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("platform-config-{}-{n}.pem", std::process::id()));
            std::fs::write(&path, contents).expect("a writable temporary directory");
            Self(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 path")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    // A syntactically valid PEM certificate block (its DER is not checked here; the TLS tests use real ones).
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_ca_file_must_exist_and_hold_certificates() {
        let file = TempFile::new(PEM);
        let roots = TlsRoots::from_source(&HashMap::from([("TLS_CA_FILE", file.path())])).unwrap();
        assert_eq!((roots.ca_file.as_deref(), roots.certificates.len()), (Some(file.path()), 1));
        let missing = TlsRoots::from_source(&HashMap::from([("TLS_CA_FILE", "/nonexistent/ca.pem")])).unwrap_err();
        assert_eq!(missing.variable, "TLS_CA_FILE");
        assert!(missing.reason.contains("cannot read /nonexistent/ca.pem"), "{missing}");
        let empty = TempFile::new("not a certificate\n");
        let error = TlsRoots::from_source(&HashMap::from([("TLS_CA_FILE", empty.path())])).unwrap_err();
        assert!(error.reason.contains("no PEM CERTIFICATE"), "{error}");
    }

    #[test]
    fn the_exporters_certificate_variables_override_the_shared_ca_file() {
        let shared = TempFile::new(PEM);
        let own = TempFile::new(&PEM.repeat(2));
        let source = HashMap::from([("TLS_CA_FILE", shared.path())]);
        assert_eq!(
            Common::from_source(&source, &SERVICE).unwrap().tracing.roots.ca_file.as_deref(),
            Some(shared.path())
        );
        for variable in ["OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"] {
            let source = HashMap::from([("TLS_CA_FILE", shared.path()), (variable, own.path())]);
            let tracing = Common::from_source(&source, &SERVICE).unwrap().tracing;
            assert_eq!(tracing.roots.certificates.len(), 2, "{variable}");
        }
    }

    #[test]
    fn a_secret_comes_from_its_variable_or_its_file_not_both() {
        let file = TempFile::new("s3cret\n");
        assert_eq!(value_or_file(&HashMap::from([("P", "direct")]), "P", "P_FILE"), Ok(Some("direct".into())));
        assert_eq!(value_or_file(&HashMap::from([("P_FILE", file.path())]), "P", "P_FILE"), Ok(Some("s3cret".into())));
        assert_eq!(value_or_file(&HashMap::new(), "P", "P_FILE"), Ok(None));
        let both = HashMap::from([("P", "direct"), ("P_FILE", file.path())]);
        assert!(value_or_file(&both, "P", "P_FILE").unwrap_err().reason.contains("not both"));
        assert_eq!(
            value_or_file(&HashMap::from([("P_FILE", "/nonexistent")]), "P", "P_FILE").unwrap_err().variable,
            "P_FILE"
        );
    }

    #[test]
    fn kafka_is_plaintext_by_default() {
        let kafka = KafkaConnection::from_source(&HashMap::new(), "k:9092", &TlsRoots::default()).unwrap();
        assert_eq!(kafka, KafkaConnection::plaintext("k:9092"));
    }

    #[test]
    fn kafka_group_membership_is_static_with_a_six_second_session_unless_configured() {
        let read = |pairs: &[(&str, &str)]| {
            let source: HashMap<&str, &str> = pairs.iter().copied().collect();
            KafkaConnection::from_source(&source, "k:9092", &TlsRoots::default()).map(|kafka| kafka.membership)
        };
        let default = read(&[]).unwrap();
        assert_eq!(default, GroupMembership { session_timeout: Duration::from_secs(6), static_members: true });
        assert_eq!(default.heartbeat_interval(), Duration::from_millis(1_200));
        let tuned = read(&[("KAFKA_SESSION_TIMEOUT_MS", "1000"), ("KAFKA_STATIC_MEMBERSHIP", "false")]).unwrap();
        assert_eq!(tuned, GroupMembership { session_timeout: Duration::from_secs(1), static_members: false });
        for (variable, value) in [
            ("KAFKA_SESSION_TIMEOUT_MS", "999"),
            ("KAFKA_SESSION_TIMEOUT_MS", "3600001"),
            ("KAFKA_SESSION_TIMEOUT_MS", "6s"),
            ("KAFKA_STATIC_MEMBERSHIP", "yes"),
        ] {
            assert_eq!(read(&[(variable, value)]).unwrap_err().variable, variable, "{variable}={value}");
        }
    }

    #[test]
    fn kafka_sasl_ssl_needs_a_mechanism_and_credentials_from_values_or_files() {
        let ca = TempFile::new(PEM);
        let password = TempFile::new("p4ss\n");
        let mut source = HashMap::from([("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"), ("KAFKA_BROKERS", "b:9093")]);
        let shared = TlsRoots::default();
        assert_eq!(KafkaConnection::from_source(&source, "x", &shared).unwrap_err().variable, "KAFKA_SASL_MECHANISM");
        source.insert("KAFKA_SASL_MECHANISM", "scram-sha-512");
        assert_eq!(KafkaConnection::from_source(&source, "x", &shared).unwrap_err().variable, "KAFKA_SASL_USERNAME");
        source.insert("KAFKA_SASL_USERNAME", "orders");
        let error = KafkaConnection::from_source(&source, "x", &shared).unwrap_err();
        assert_eq!(error.variable, "KAFKA_SASL_PASSWORD");
        assert!(error.reason.contains("KAFKA_SECURITY_PROTOCOL=SASL_SSL"), "{error}");
        source.insert("KAFKA_SASL_PASSWORD_FILE", password.path());
        source.insert("KAFKA_SSL_CA_FILE", ca.path());
        let kafka = KafkaConnection::from_source(&source, "x", &shared).unwrap();
        assert_eq!(kafka.brokers, "b:9093");
        assert_eq!(kafka.protocol, KafkaProtocol::SaslSsl);
        let sasl = kafka.sasl.clone().expect("SASL");
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str(), sasl.password.as_str()),
            (SaslMechanism::ScramSha512, "orders", "p4ss")
        );
        assert_eq!(kafka.ca_file.as_deref(), Some(ca.path()));
        assert!(!format!("{kafka:?}").contains("p4ss"), "the password stays out of Debug output");
    }

    #[test]
    fn kafka_tls_falls_back_on_the_shared_ca_file() {
        let ca = TempFile::new(PEM);
        let shared = TlsRoots::from_source(&HashMap::from([("TLS_CA_FILE", ca.path())])).unwrap();
        let source = HashMap::from([("KAFKA_SECURITY_PROTOCOL", "ssl")]);
        let kafka = KafkaConnection::from_source(&source, "x", &shared).unwrap();
        assert_eq!((kafka.protocol, kafka.ca_file.as_deref(), kafka.sasl), (KafkaProtocol::Ssl, Some(ca.path()), None));
        // Plaintext does not use it.
        let plain = KafkaConnection::from_source(&HashMap::new(), "x", &shared).unwrap();
        assert_eq!(plain.ca_file, None);
    }

    #[test]
    fn kafka_settings_that_cannot_work_stop_startup() {
        let ca = TempFile::new(PEM);
        for (settings, variable) in [
            (vec![("KAFKA_SECURITY_PROTOCOL", "TLS")], "KAFKA_SECURITY_PROTOCOL"),
            (vec![("KAFKA_SASL_USERNAME", "u")], "KAFKA_SASL_USERNAME"),
            (vec![("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SASL_MECHANISM", "PLAIN")], "KAFKA_SASL_MECHANISM"),
            (vec![("KAFKA_SSL_CA_FILE", ca.path())], "KAFKA_SSL_CA_FILE"),
            (vec![("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SSL_CA_FILE", "/nonexistent.pem")], "KAFKA_SSL_CA_FILE"),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
                    ("KAFKA_SASL_USERNAME", "u"),
                    ("KAFKA_SASL_PASSWORD", "p"),
                ],
                "KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "u"),
                    ("KAFKA_SASL_PASSWORD", "p"),
                    ("KAFKA_SASL_PASSWORD_FILE", "/x"),
                ],
                "KAFKA_SASL_PASSWORD",
            ),
        ] {
            let source: HashMap<&str, &str> = settings.iter().copied().collect();
            let error = KafkaConnection::from_source(&source, "x", &TlsRoots::default()).unwrap_err();
            assert_eq!(error.variable, variable, "{settings:?}: {error}");
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(check_topic_name("t42.new-order_1").is_ok());
        assert!(check_topic_name("new order").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn a_topic_name_takes_the_prefix_and_is_checked_whole() {
        let source = HashMap::from([("KAFKA_TOPIC_PREFIX", "t42."), ("KAFKA_TOPIC_PAID", "paid")]);
        assert_eq!(topic_name(&source, "KAFKA_TOPIC_PAID", "payment-processed").as_deref(), Ok("t42.paid"));
        assert_eq!(topic_name(&source, "KAFKA_TOPIC_OTHER", "other").as_deref(), Ok("t42.other"));
        let blank = HashMap::from([("KAFKA_TOPIC_PAID", " ")]);
        assert_eq!(topic_name(&blank, "KAFKA_TOPIC_PAID", "paid").unwrap_err().variable, "KAFKA_TOPIC_PAID");
        let long = "a".repeat(246);
        let source = HashMap::from([("KAFKA_TOPIC_PREFIX", "t42."), ("KAFKA_TOPIC_PAID", long.as_str())]);
        assert_eq!(topic_name(&source, "KAFKA_TOPIC_PAID", "paid").unwrap_err().variable, "KAFKA_TOPIC_PAID");
    }

    #[test]
    fn the_recorder_names_every_variable_a_configuration_reads() {
        fn parse(source: &dyn Source) -> Result<(u16, Duration), ConfigError> {
            Ok((parsed(source, "PORT", 80)?, millis(source, "TIMEOUT_MS", 5)?))
        }
        let names = Recorder::variables_of(parse).unwrap();
        assert_eq!(names, ["PORT", "RUST_LOG", "TIMEOUT_MS"]);
        let common = Recorder::variables_of(|source| Common::from_source(source, &SERVICE)).unwrap();
        for name in ["APP_ENV", "HOST", "PORT", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"] {
            assert!(common.iter().any(|read| read == name), "{name} in {common:?}");
        }
    }

    #[test]
    fn mongodb_settings_have_local_defaults_and_name_the_bad_variable() {
        let settings = MongoSettings::from_source(&HashMap::new(), "orders").unwrap();
        assert_eq!(settings.uri, MongoUri("mongodb://127.0.0.1:27017".into()));
        assert_eq!((settings.database.as_str(), settings.timeout), ("orders", Duration::from_secs(2)));
        for (variable, value) in
            [("MONGODB_URI", "localhost:27017"), ("MONGODB_DATABASE", " "), ("MONGODB_TIMEOUT_MS", "0")]
        {
            let error = MongoSettings::from_source(&HashMap::from([(variable, value)]), "orders").unwrap_err();
            assert_eq!(error.variable, variable, "{variable}={value}");
        }
    }
}
