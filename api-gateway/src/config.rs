//! Every environment variable the api-gateway reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

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
pub struct Config {
    pub app_env: AppEnv,
    pub host: IpAddr,
    pub port: u16,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    pub user_service_url: BaseUrl,
    pub product_service_url: BaseUrl,
    pub order_service_url: BaseUrl,
    pub payment_service_url: BaseUrl,
    pub jwks_url: BaseUrl,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Longest a client waits on any downstream call before a 504.
    pub downstream_timeout: Duration,
    /// HEADER_READ_TIMEOUT_MS, REQUEST_TIMEOUT_MS (above the downstream timeout), SHUTDOWN_DRAIN_MS.
    pub server: ServerLimits,
    /// Proxies in front of the gateway whose `X-Forwarded-For` is believed; empty trusts no one.
    pub trusted_proxies: TrustedProxies,
    pub max_body_bytes: usize,
    pub resilience: crate::resilience::Settings,
    /// Origins allowed by CORS; empty means CORS is off, `*` allows any origin.
    pub cors_allowed_origins: Vec<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let open_for = millis(source, "CIRCUIT_BREAKER_OPEN_MS", 5_000)?;
        if open_for.is_zero() {
            return Err(ConfigError { variable: "CIRCUIT_BREAKER_OPEN_MS", reason: "must be at least 1".into() });
        }
        let downstream_timeout = millis(source, "DOWNSTREAM_TIMEOUT_MS", 3_000)?;
        let server = ServerLimits::from_lookup(|name| source.get(name))
            .map_err(|error| ConfigError { variable: error.variable, reason: error.reason })?;
        // Otherwise a slow service would be cut off by the client-facing 408 instead of answered
        // with the gateway's own 504 (and its breaker would never hear of the timeout).
        if server.request_timeout <= downstream_timeout {
            return Err(ConfigError {
                variable: "REQUEST_TIMEOUT_MS",
                reason: format!(
                    "must exceed DOWNSTREAM_TIMEOUT_MS: {} ms is not more than {} ms",
                    server.request_timeout.as_millis(),
                    downstream_timeout.as_millis()
                ),
            });
        }
        let user_service_url: BaseUrl = parsed(source, "USER_SERVICE_URL", BaseUrl("http://127.0.0.1:3005".into()))?;
        let default_jwks = BaseUrl(format!("{}/.well-known/jwks.json", user_service_url.0));
        Ok(Self {
            app_env: parsed(source, "APP_ENV", AppEnv::Development)?,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", 3000)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, "api-gateway")?,
            product_service_url: parsed(source, "PRODUCT_SERVICE_URL", BaseUrl("http://127.0.0.1:3002".into()))?,
            order_service_url: parsed(source, "ORDER_SERVICE_URL", BaseUrl("http://127.0.0.1:3003".into()))?,
            payment_service_url: parsed(source, "PAYMENT_SERVICE_URL", BaseUrl("http://127.0.0.1:50051".into()))?,
            jwks_url: parsed(source, "JWKS_URL", default_jwks)?,
            user_service_url,
            jwt_issuer: text(source, "JWT_ISSUER", "user-service"),
            jwt_audience: text(source, "JWT_AUDIENCE", "ecommerce-api"),
            downstream_timeout,
            server,
            trusted_proxies: parsed(source, "TRUSTED_PROXIES", TrustedProxies::default())?,
            max_body_bytes: parsed(source, "MAX_BODY_BYTES", 64 * 1024)?,
            resilience: crate::resilience::Settings {
                failures_to_open: parsed(source, "CIRCUIT_BREAKER_FAILURES", 5)?,
                open_for,
                max_in_flight: parsed(source, "DOWNSTREAM_MAX_IN_FLIGHT", 512)?,
                retries: parsed(source, "DOWNSTREAM_RETRIES", 2)?,
            },
            cors_allowed_origins: text(source, "CORS_ALLOWED_ORIGINS", "")
                .split(',')
                .map(str::trim)
                .filter(|origin| !origin.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_point_at_the_default_service_ports() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.port, 3000);
        assert_eq!(config.user_service_url.0, "http://127.0.0.1:3005");
        assert_eq!(config.jwks_url.0, "http://127.0.0.1:3005/.well-known/jwks.json");
        assert_eq!(config.payment_service_url.0, "http://127.0.0.1:50051");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            ("PORT", "x"),
            ("USER_SERVICE_URL", "user-service:3005"),
            ("ORDER_SERVICE_URL", "http://"),
            ("DOWNSTREAM_TIMEOUT_MS", "soon"),
            ("APP_ENV", "staging"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"),
        ] {
            let error = Config::from_source(&HashMap::from([(name, value)])).unwrap_err();
            assert_eq!(error.variable, name);
        }
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let config = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.service_name, "api-gateway");
        let config =
            Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, Some(BaseUrl("http://jaeger:4318".into())));
    }

    #[test]
    fn the_request_timeout_must_exceed_the_downstream_timeout() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.server.request_timeout, Duration::from_secs(30));
        assert_eq!(config.downstream_timeout, Duration::from_secs(3));
        for (request, downstream) in [("3000", "3000"), ("2000", "3000"), ("30000", "45000")] {
            let error = Config::from_source(&HashMap::from([
                ("REQUEST_TIMEOUT_MS", request),
                ("DOWNSTREAM_TIMEOUT_MS", downstream),
            ]))
            .unwrap_err();
            assert_eq!(error.variable, "REQUEST_TIMEOUT_MS");
            assert!(error.to_string().contains("must exceed DOWNSTREAM_TIMEOUT_MS"), "{error}");
        }
        let config =
            Config::from_source(&HashMap::from([("REQUEST_TIMEOUT_MS", "3001"), ("DOWNSTREAM_TIMEOUT_MS", "3000")]))
                .unwrap();
        assert_eq!(config.server.request_timeout, Duration::from_millis(3001));
    }

    #[test]
    fn trusted_proxies_default_to_none_and_malformed_ones_name_the_variable() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.trusted_proxies, TrustedProxies::default());
        let config = Config::from_source(&HashMap::from([("TRUSTED_PROXIES", "10.0.0.0/8")])).unwrap();
        assert!(config.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        for (name, value) in [("TRUSTED_PROXIES", "10.0.0.0/8,nonsense"), ("HEADER_READ_TIMEOUT_MS", "0")] {
            assert_eq!(Config::from_source(&HashMap::from([(name, value)])).unwrap_err().variable, name);
        }
    }

    #[test]
    fn the_jwks_url_follows_the_user_service_url() {
        let config = Config::from_source(&HashMap::from([("USER_SERVICE_URL", "http://users:3005/")])).unwrap();
        assert_eq!(config.jwks_url.0, "http://users:3005/.well-known/jwks.json");
    }
}
