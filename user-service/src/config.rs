//! Every environment variable the user-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

pub use crate::throttle::LoginLimits;
pub use platform::http::{proxies::TrustedProxies, server::ServerLimits};

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Source for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| (*value).to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
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
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|error| ConfigError { variable: name, reason: format!("cannot parse {raw:?}: {error}") }),
    }
}

/// A duration given in milliseconds.
pub fn millis(source: &dyn Source, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
    parsed(source, name, default_ms).map(Duration::from_millis)
}

pub fn text(source: &dyn Source, name: &str, default: &str) -> String {
    source.get(name).unwrap_or_else(|| default.to_owned())
}

/// `development` runs with generated secrets for convenience; `production` refuses to.
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
            Some(raw) => Some(
                raw.trim().parse().map_err(|reason| ConfigError { variable: "OTEL_EXPORTER_OTLP_ENDPOINT", reason })?,
            ),
        };
        Ok(Self { otlp_endpoint, service_name: text(source, "OTEL_SERVICE_NAME", default_name) })
    }
}

#[derive(Debug, Clone)]
pub struct AdminAccount {
    pub email: String,
    pub password: String,
    pub username: String,
}

#[derive(Debug, Clone)]
pub enum SigningKeySource {
    /// PEM text of a PKCS#8 Ed25519 private key.
    Pem(String),
    /// Generated at startup: development mode only; tokens die with the process.
    Generate,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: IpAddr,
    pub port: u16,
    pub mongodb_uri: MongoUri,
    pub mongodb_database: String,
    /// How long a MongoDB operation may wait for a server before the route answers 503.
    pub mongodb_timeout: Duration,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    /// HEADER_READ_TIMEOUT_MS, REQUEST_TIMEOUT_MS, SHUTDOWN_DRAIN_MS (platform::http::server).
    pub server: ServerLimits,
    pub signing_key: SigningKeySource,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_ttl: Duration,
    pub admin: Option<AdminAccount>,
    /// Proxies (the gateway) whose `X-Forwarded-For` is believed; empty trusts no one.
    pub trusted_proxies: TrustedProxies,
    pub login_limits: LoginLimits,
    pub registration_max_per_address: u32,
    pub registration_window: Duration,
    /// How many password hashes may run at once (each holds ~7 MiB while it runs).
    pub password_hash_concurrency: usize,
    /// How many hashes may wait for a thread; more are refused with 503.
    pub password_hash_queue_limit: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let app_env = parsed(source, "APP_ENV", AppEnv::Development)?;
        let signing_key = match (source.get("JWT_PRIVATE_KEY"), source.get("JWT_PRIVATE_KEY_FILE")) {
            (Some(pem), _) => SigningKeySource::Pem(pem.replace("\\n", "\n")),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let pem = std::fs::read_to_string(&path).map_err(|error| ConfigError {
                    variable: "JWT_PRIVATE_KEY_FILE",
                    reason: format!("cannot read {}: {error}", path.display()),
                })?;
                SigningKeySource::Pem(pem)
            }
            (None, None) if app_env == AppEnv::Development => SigningKeySource::Generate,
            (None, None) => {
                return Err(ConfigError {
                    variable: "JWT_PRIVATE_KEY_FILE",
                    reason:
                        "a signing key (JWT_PRIVATE_KEY_FILE or JWT_PRIVATE_KEY) is required when APP_ENV=production"
                            .into(),
                });
            }
        };
        let admin = match (source.get("ADMIN_EMAIL"), source.get("ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => {
                Some(AdminAccount { email, password, username: text(source, "ADMIN_USERNAME", "admin") })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    variable: "ADMIN_PASSWORD",
                    reason: "required when ADMIN_EMAIL is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    variable: "ADMIN_EMAIL",
                    reason: "required when ADMIN_PASSWORD is set".into(),
                });
            }
        };
        let password_hash_concurrency = parsed(source, "PASSWORD_HASH_CONCURRENCY", default_hash_concurrency())?;
        if password_hash_concurrency == 0 {
            return Err(ConfigError { variable: "PASSWORD_HASH_CONCURRENCY", reason: "must be at least 1".into() });
        }
        let password_hash_queue_limit = parsed(source, "PASSWORD_HASH_QUEUE_LIMIT", 64)?;
        if password_hash_queue_limit == 0 {
            return Err(ConfigError { variable: "PASSWORD_HASH_QUEUE_LIMIT", reason: "must be at least 1".into() });
        }
        let throttle_max_keys = parsed(source, "THROTTLE_MAX_KEYS", crate::throttle::DEFAULT_CAPACITY)?;
        if throttle_max_keys == 0 {
            return Err(ConfigError { variable: "THROTTLE_MAX_KEYS", reason: "must be at least 1".into() });
        }
        Ok(Self {
            app_env,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", 3005)?,
            mongodb_uri: parsed(source, "MONGODB_URI", MongoUri("mongodb://127.0.0.1:27017".into()))?,
            mongodb_database: text(source, "MONGODB_DATABASE", "users"),
            mongodb_timeout: millis(source, "MONGODB_TIMEOUT_MS", 2_000)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, "user-service")?,
            server: server_limits(source)?,
            signing_key,
            jwt_issuer: text(source, "JWT_ISSUER", "user-service"),
            jwt_audience: text(source, "JWT_AUDIENCE", "ecommerce-api"),
            jwt_ttl: Duration::from_secs(parsed(source, "JWT_TTL_SECONDS", 3_600)?),
            admin,
            trusted_proxies: parsed(source, "TRUSTED_PROXIES", TrustedProxies::default())?,
            login_limits: LoginLimits {
                per_account_address: parsed(source, "LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS", 10)?,
                per_account: parsed(source, "LOGIN_MAX_FAILURES_PER_ACCOUNT", 50)?,
                per_address: parsed(source, "LOGIN_MAX_FAILURES_PER_ADDRESS", 100)?,
                window: Duration::from_secs(parsed(source, "LOGIN_FAILURE_WINDOW_SECONDS", 900)?),
                capacity: throttle_max_keys,
            },
            registration_max_per_address: parsed(source, "REGISTRATION_MAX_PER_ADDRESS", 20)?,
            registration_window: Duration::from_secs(parsed(source, "REGISTRATION_WINDOW_SECONDS", 3_600)?),
            password_hash_concurrency,
            password_hash_queue_limit,
        })
    }
}

/// The shared server limits, read through this service's source.
pub fn server_limits(source: &dyn Source) -> Result<ServerLimits, ConfigError> {
    ServerLimits::from_lookup(|name| source.get(name))
        .map_err(|error| ConfigError { variable: error.variable, reason: error.reason })
}

fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.port, 3005);
        assert_eq!(config.mongodb_database, "users");
        assert!(matches!(config.signing_key, SigningKeySource::Generate));
    }

    #[test]
    fn malformed_port_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("PORT", "eighty")])).unwrap_err();
        assert_eq!(error.variable, "PORT");
        assert!(error.to_string().contains("PORT"));
    }

    #[test]
    fn malformed_mongodb_uri_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("MONGODB_URI", "localhost:27017")])).unwrap_err();
        assert_eq!(error.variable, "MONGODB_URI");
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let config = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.service_name, "user-service");
        let config = Config::from_source(&HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
            ("OTEL_SERVICE_NAME", "users"),
        ]))
        .unwrap();
        assert_eq!(config.tracing.otlp_endpoint, Some(BaseUrl("http://jaeger:4318".into())));
        assert_eq!(config.tracing.service_name, "users");
    }

    #[test]
    fn malformed_otlp_endpoint_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318")])).unwrap_err();
        assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn trusted_proxies_default_to_none_and_malformed_networks_name_the_variable() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.trusted_proxies, TrustedProxies::default());
        let config = Config::from_source(&HashMap::from([("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8")])).unwrap();
        assert!(config.trusted_proxies.trusts("10.1.2.3".parse().unwrap()));
        let error = Config::from_source(&HashMap::from([("TRUSTED_PROXIES", "10.0.0.0/40")])).unwrap_err();
        assert_eq!(error.variable, "TRUSTED_PROXIES");
    }

    #[test]
    fn production_refuses_to_generate_a_signing_key() {
        let error = Config::from_source(&HashMap::from([("APP_ENV", "production")])).unwrap_err();
        assert_eq!(error.variable, "JWT_PRIVATE_KEY_FILE");
    }
}
