//! Every environment variable the product-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

pub use platform::http::server::ServerLimits;

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

/// A count that must be at least `min`.
pub fn at_least(source: &dyn Source, name: &'static str, default: usize, min: usize) -> Result<usize, ConfigError> {
    let value = parsed(source, name, default)?;
    if value < min {
        return Err(ConfigError { variable: name, reason: format!("must be at least {min}, got {value}") });
    }
    Ok(value)
}

pub fn text(source: &dyn Source, name: &str, default: &str) -> String {
    source.get(name).unwrap_or_else(|| default.to_owned())
}

/// `development` accepts the local defaults; `production` insists on explicit wiring.
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

/// An http(s) URL, checked for its scheme so that typos fail at startup rather than at the first mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.starts_with("http://") || value.starts_with("https://") {
            Ok(Self(value.to_owned()))
        } else {
            Err("expected an http:// or https:// URL".to_owned())
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

const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:3005/.well-known/jwks.json";

/// Limits on what one GraphQL request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphqlLimits {
    /// Deepest field nesting allowed outside introspection.
    pub max_depth: usize,
    /// Highest static cost (see `graphql::query`) a request may have.
    pub max_complexity: usize,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: IpAddr,
    pub port: u16,
    pub mongodb_uri: MongoUri,
    pub mongodb_database: String,
    /// How long a MongoDB operation may wait for a server before the request fails with SERVICE_UNAVAILABLE.
    pub mongodb_timeout: Duration,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    /// HEADER_READ_TIMEOUT_MS, REQUEST_TIMEOUT_MS, SHUTDOWN_DRAIN_MS (platform::http::server).
    pub server: ServerLimits,
    /// Where the user-service publishes the public keys that sign access tokens.
    pub jwks_url: HttpUrl,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// How long product reads are served from memory; zero turns the cache off.
    pub product_cache_ttl: Duration,
    pub graphql: GraphqlLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let app_env = parsed(source, "APP_ENV", AppEnv::Development)?;
        // The default points at a user-service on this machine: right for development, a silent
        // misconfiguration in production (every mutation would fail), so production must say where.
        if app_env == AppEnv::Production && source.get("JWKS_URL").is_none() {
            return Err(ConfigError { variable: "JWKS_URL", reason: "required when APP_ENV=production".into() });
        }
        Ok(Self {
            app_env,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", 3002)?,
            mongodb_uri: parsed(source, "MONGODB_URI", MongoUri("mongodb://127.0.0.1:27017".into()))?,
            mongodb_database: text(source, "MONGODB_DATABASE", "products"),
            mongodb_timeout: millis(source, "MONGODB_TIMEOUT_MS", 2_000)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, "product-service")?,
            server: server_limits(source)?,
            jwks_url: parsed(source, "JWKS_URL", HttpUrl(DEFAULT_JWKS_URL.into()))?,
            jwt_issuer: text(source, "JWT_ISSUER", "user-service"),
            jwt_audience: text(source, "JWT_AUDIENCE", "ecommerce-api"),
            product_cache_ttl: millis(source, "PRODUCT_CACHE_TTL_MS", 1_000)?,
            graphql: GraphqlLimits {
                max_depth: at_least(source, "GRAPHQL_MAX_DEPTH", 10, 1)?,
                max_complexity: at_least(source, "GRAPHQL_MAX_COMPLEXITY", 500, 1)?,
                // Below 1 KiB not even a modest mutation fits.
                max_body_bytes: at_least(source, "MAX_BODY_BYTES", 64 * 1024, 1024)?,
            },
        })
    }
}

/// The shared server limits, read through this service's source.
pub fn server_limits(source: &dyn Source) -> Result<ServerLimits, ConfigError> {
    ServerLimits::from_lookup(|name| source.get(name))
        .map_err(|error| ConfigError { variable: error.variable, reason: error.reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.port, 3002);
        assert_eq!(config.mongodb_database, "products");
        assert_eq!(config.jwks_url.0, DEFAULT_JWKS_URL);
        assert_eq!(config.product_cache_ttl, Duration::from_secs(1));
        assert_eq!(config.graphql, GraphqlLimits { max_depth: 10, max_complexity: 500, max_body_bytes: 65_536 });
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
    fn jwks_url_without_http_scheme_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("JWKS_URL", "user-service:3005/jwks")])).unwrap_err();
        assert_eq!(error.variable, "JWKS_URL");
    }

    #[test]
    fn negative_cache_ttl_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("PRODUCT_CACHE_TTL_MS", "-1")])).unwrap_err();
        assert_eq!(error.variable, "PRODUCT_CACHE_TTL_MS");
    }

    #[test]
    fn zero_depth_limit_is_rejected() {
        let error = Config::from_source(&HashMap::from([("GRAPHQL_MAX_DEPTH", "0")])).unwrap_err();
        assert_eq!(error.variable, "GRAPHQL_MAX_DEPTH");
    }

    #[test]
    fn tiny_body_limit_is_rejected() {
        let error = Config::from_source(&HashMap::from([("MAX_BODY_BYTES", "100")])).unwrap_err();
        assert_eq!(error.variable, "MAX_BODY_BYTES");
    }

    #[test]
    fn unknown_log_format_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(error.variable, "LOG_FORMAT");
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let config = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.service_name, "product-service");
        let config = Config::from_source(&HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
            ("OTEL_SERVICE_NAME", "products"),
        ]))
        .unwrap();
        assert_eq!(config.tracing.otlp_endpoint, Some(BaseUrl("http://jaeger:4318".into())));
        assert_eq!(config.tracing.service_name, "products");
    }

    #[test]
    fn malformed_otlp_endpoint_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318")])).unwrap_err();
        assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn production_requires_an_explicit_jwks_url() {
        let error = Config::from_source(&HashMap::from([("APP_ENV", "production")])).unwrap_err();
        assert_eq!(error.variable, "JWKS_URL");
        let config = Config::from_source(&HashMap::from([
            ("APP_ENV", "production"),
            ("JWKS_URL", "http://user-service:3005/.well-known/jwks.json"),
        ]))
        .expect("explicit JWKS_URL is enough");
        assert_eq!(config.app_env, AppEnv::Production);
    }
}
