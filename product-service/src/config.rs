//! Every environment variable the product-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{str::FromStr, time::Duration};

pub use platform::config::{
    AppEnv, BaseUrl, Common, ConfigError, LogFormat, MongoSettings, MongoUri, ProcessEnv, ServiceDefaults, Source,
    TracingConfig, at_least_one, check_topic_name, millis, non_empty, parsed, text,
};
pub use platform::http::server::ServerLimits;

/// A count that must be at least `min`.
pub fn at_least(source: &dyn Source, name: &'static str, default: usize, min: usize) -> Result<usize, ConfigError> {
    let value = parsed(source, name, default)?;
    if value < min {
        return Err(ConfigError { variable: name, reason: format!("must be at least {min}, got {value}") });
    }
    Ok(value)
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
    /// APP_ENV, HOST, PORT, LOG_FORMAT and tracing, read the same way in every service.
    pub common: Common,
    /// MONGODB_URI, MONGODB_DATABASE, MONGODB_TIMEOUT_MS.
    pub mongodb: MongoSettings,
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

/// What production requires of this service; see `platform::config`.
const SERVICE: ServiceDefaults =
    ServiceDefaults { name: "product-service", port: 3002, required_in_production: &["MONGODB_URI", "JWKS_URL"] };

impl Config {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let common = Common::from_source(source, &SERVICE)?;
        Ok(Self {
            common,
            mongodb: MongoSettings::from_source(source, "products")?,
            server: ServerLimits::from_source(source)?,
            jwks_url: parsed(source, "JWKS_URL", HttpUrl(DEFAULT_JWKS_URL.into()))?,
            jwt_issuer: text(source, "JWT_ISSUER", "user-service"),
            jwt_audience: text(source, "JWT_AUDIENCE", "ecommerce-api"),
            // Not `millis`: here 0 is meaningful (no cache), not a timeout that fails everything.
            product_cache_ttl: Duration::from_millis(parsed(source, "PRODUCT_CACHE_TTL_MS", 1_000)?),
            graphql: GraphqlLimits {
                max_depth: at_least(source, "GRAPHQL_MAX_DEPTH", 10, 1)?,
                max_complexity: at_least(source, "GRAPHQL_MAX_COMPLEXITY", 500, 1)?,
                // Below 1 KiB not even a modest mutation fits.
                max_body_bytes: at_least(source, "MAX_BODY_BYTES", 64 * 1024, 1024)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.common.port, 3002);
        assert_eq!(config.mongodb.database, "products");
        assert_eq!(config.jwks_url.0, DEFAULT_JWKS_URL);
        assert_eq!(config.product_cache_ttl, Duration::from_secs(1));
        assert_eq!(config.graphql, GraphqlLimits { max_depth: 10, max_complexity: 500, max_body_bytes: 65_536 });
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
    fn production_requires_the_database_and_the_jwks_url() {
        let required =
            [("MONGODB_URI", "mongodb://db:27017"), ("JWKS_URL", "http://user-service:3005/.well-known/jwks.json")];
        test_support::config::assert_production_requires(Config::from_source, &required);
    }

    #[test]
    fn a_cache_lifetime_of_zero_turns_the_cache_off() {
        let config = Config::from_source(&HashMap::from([("PRODUCT_CACHE_TTL_MS", "0")])).expect("0 is allowed");
        assert_eq!(config.product_cache_ttl, Duration::ZERO);
    }

    /// Parsing itself is platform::config's (tested there); the service only names itself.
    #[test]
    fn traces_carry_the_service_name_by_default() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.common.tracing.service_name, "product-service");
    }
}
