//! Every environment variable the user-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{path::PathBuf, time::Duration};

pub use crate::throttle::LoginLimits;
pub use platform::http::{proxies::TrustedProxies, server::ServerLimits};

pub use platform::config::{
    AppEnv, BaseUrl, Common, ConfigError, LogFormat, MongoSettings, MongoUri, ProcessEnv, ServiceDefaults, Source,
    TracingConfig, at_least_one, check_topic_name, millis, non_empty, parsed, text,
};

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
    /// APP_ENV, HOST, PORT, LOG_FORMAT and tracing, read the same way in every service.
    pub common: Common,
    /// MONGODB_URI, MONGODB_DATABASE, MONGODB_TIMEOUT_MS.
    pub mongodb: MongoSettings,
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

/// What production requires of this service; see `platform::config`.
const SERVICE: ServiceDefaults = ServiceDefaults {
    name: "user-service",
    port: 3005,
    required_in_production: &["MONGODB_URI", "JWT_PRIVATE_KEY_FILE|JWT_PRIVATE_KEY"],
};

impl Config {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let common = Common::from_source(source, &SERVICE)?;
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
            // Production requires one of the two (`SERVICE`), so only development gets here.
            (None, None) => SigningKeySource::Generate,
        };
        // Read whether or not an admin is configured: every variable is read on every start, so that
        // `--print-env` declares them all.
        let admin_username = text(source, "ADMIN_USERNAME", "admin");
        let admin = match (source.get("ADMIN_EMAIL"), source.get("ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some(AdminAccount { email, password, username: admin_username }),
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
            common,
            mongodb: MongoSettings::from_source(source, "users")?,
            server: ServerLimits::from_source(source)?,
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
        assert_eq!(config.common.port, 3005);
        assert_eq!(config.mongodb.database, "users");
        assert!(matches!(config.signing_key, SigningKeySource::Generate));
    }

    #[test]
    fn malformed_mongodb_uri_names_the_variable() {
        let error = Config::from_source(&HashMap::from([("MONGODB_URI", "localhost:27017")])).unwrap_err();
        assert_eq!(error.variable, "MONGODB_URI");
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
        let database = ("MONGODB_URI", "mongodb://db:27017");
        let error = Config::from_source(&HashMap::from([("APP_ENV", "production"), database])).unwrap_err();
        assert_eq!(error.variable, "JWT_PRIVATE_KEY_FILE");
        let pem = "-----BEGIN PRIVATE KEY-----\\n-----END PRIVATE KEY-----";
        let config =
            Config::from_source(&HashMap::from([("APP_ENV", "production"), database, ("JWT_PRIVATE_KEY", pem)]))
                .expect("a key given inline is enough");
        assert!(matches!(config.signing_key, SigningKeySource::Pem(_)));
    }

    /// Parsing itself is platform::config's (tested there); the service only names itself.
    #[test]
    fn traces_carry_the_service_name_by_default() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        assert_eq!(config.common.tracing.service_name, "user-service");
    }
}
