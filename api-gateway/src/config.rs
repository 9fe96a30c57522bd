//! Every environment variable the api-gateway reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::time::Duration;

pub use platform::config::{
    AppEnv, BaseUrl, Common, ConfigError, LogFormat, MongoUri, ProcessEnv, ServiceDefaults, Source, TracingConfig,
    at_least_one, check_topic_name, millis, non_empty, parsed, text,
};
pub use platform::http::{proxies::TrustedProxies, server::ServerLimits};

#[derive(Debug, Clone)]
pub struct Config {
    /// APP_ENV, HOST, PORT, LOG_FORMAT and tracing, read the same way in every service.
    pub common: Common,
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

/// What production requires of this service; see `platform::config`.
const SERVICE: ServiceDefaults = ServiceDefaults {
    name: "api-gateway",
    port: 3000,
    required_in_production: &["USER_SERVICE_URL", "PRODUCT_SERVICE_URL", "ORDER_SERVICE_URL", "PAYMENT_SERVICE_URL"],
};

impl Config {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let common = Common::from_source(source, &SERVICE)?;
        let open_for = millis(source, "CIRCUIT_BREAKER_OPEN_MS", 5_000)?;
        if open_for.is_zero() {
            return Err(ConfigError { variable: "CIRCUIT_BREAKER_OPEN_MS", reason: "must be at least 1".into() });
        }
        let downstream_timeout = millis(source, "DOWNSTREAM_TIMEOUT_MS", 3_000)?;
        let server = ServerLimits::from_source(source)?;
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
            common,
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
        assert_eq!(config.common.port, 3000);
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

    #[test]
    fn production_requires_the_addresses_of_other_systems() {
        let required = [
            ("USER_SERVICE_URL", "http://users:3005"),
            ("PRODUCT_SERVICE_URL", "http://products:3002"),
            ("ORDER_SERVICE_URL", "http://orders:3003"),
            ("PAYMENT_SERVICE_URL", "http://payments:50051"),
        ];
        test_support::config::assert_production_requires(Config::from_source, &required);
    }

    /// Parsing itself is platform::config's (tested there); the service only names itself.
    #[test]
    fn traces_carry_the_service_name_by_default() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.common.tracing.service_name, "api-gateway");
    }
}
