//! The plumbing under every service's `config.rs`: where values come from, how they are parsed, the error that
//! names the variable, the settings every service has (`APP_ENV`, `HOST`, `PORT`, `LOG_FORMAT`, tracing) and
//! the one production rule: with `APP_ENV=production` every variable the service declares as required must be
//! set explicitly, because its development default (a local address, a generated secret) would be wrong there.
use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

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

/// Where traces go: OTLP over HTTP when an endpoint is set, nowhere otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// OTEL_EXPORTER_OTLP_ENDPOINT, e.g. `http://jaeger:4318` (spans go to `<endpoint>/v1/traces`).
    pub otlp_endpoint: Option<BaseUrl>,
    /// OTEL_SERVICE_NAME: the service's name in traces.
    pub service_name: String,
}

impl TracingConfig {
    pub fn from_source(source: &dyn Source, default_name: &str) -> Result<Self, ConfigError> {
        let otlp_endpoint = match source.get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|value| !value.trim().is_empty()) {
            None => None,
            Some(raw) => {
                Some(raw.trim().parse().map_err(|reason| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", reason))?)
            }
        };
        Ok(Self { otlp_endpoint, service_name: non_empty(source, "OTEL_SERVICE_NAME", default_name)? })
    }
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
}

impl Common {
    /// Reads the common settings and applies the production rule.
    pub fn from_source(source: &dyn Source, service: &ServiceDefaults) -> Result<Self, ConfigError> {
        let app_env = parsed(source, "APP_ENV", AppEnv::Development)?;
        if app_env == AppEnv::Production {
            require_all(source, service.required_in_production)?;
        }
        Ok(Self {
            app_env,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", service.port)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, service.name)?,
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
        assert_eq!(common.tracing, TracingConfig { otlp_endpoint: None, service_name: "a-service".into() });
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
        assert_eq!(tracing.otlp_endpoint, Some(BaseUrl("http://jaeger:4318".into())));
        assert_eq!(tracing.service_name, "pay");
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(check_topic_name("t42.new-order_1").is_ok());
        assert!(check_topic_name("new order").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name(&"a".repeat(250)).is_err());
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
}
