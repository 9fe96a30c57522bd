//! Application: state, router, listener (port 0 in tests), background bootstrap, graceful shutdown.
use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::Router;
use platform::http::server::ServerLimits;
use tokio::{net::TcpListener, task::JoinHandle};
use tower_http::limit::RequestBodyLimitLayer;

use crate::{
    backoff::Backoff,
    config::{AdminAccount, Config},
    domain::{Email, Password, Username},
    metrics::Metrics,
    password::PasswordHasher,
    routes,
    state::{AdminSeedStatus, AppState, Inner},
    store::{StoreError, TakenField, UserStore},
    throttle::{LoginThrottle, RegistrationThrottle},
    tokens::TokenIssuer,
};

/// Bodies on this service are tiny JSON documents.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    bootstrap: JoinHandle<()>,
    state: AppState,
}

impl Application {
    /// Binds the listener and starts connecting to MongoDB in the background; never fails
    /// because MongoDB is down (the service reports not-ready until it answers).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let client =
            platform::mongo::connect(&config.mongodb.uri.0, "user-service", config.mongodb.timeout, &metrics.mongodb)
                .await
                .context("MONGODB_URI is not a usable MongoDB connection string")?;
        let tokens = TokenIssuer::new(&config.signing_key, &config.jwt_issuer, &config.jwt_audience, config.jwt_ttl)
            .context("JWT_PRIVATE_KEY / JWT_PRIVATE_KEY_FILE")?;
        let state = AppState::new(
            Inner {
                store: UserStore::new(client.database(&config.mongodb.database)),
                hasher: PasswordHasher::new(
                    config.password_hash_concurrency,
                    config.password_hash_queue_limit,
                    crate::metrics::password_hash_dropped(&metrics.registry),
                )?,
                tokens,
                throttle: LoginThrottle::new(config.login_limits),
                registrations: RegistrationThrottle::new(
                    config.registration_max_per_address,
                    config.registration_window,
                    config.login_limits.capacity,
                ),
                trusted_proxies: config.trusted_proxies.clone(),
                metrics,
            },
            match config.admin {
                Some(_) => AdminSeedStatus::Pending,
                None => AdminSeedStatus::NotConfigured,
            },
        );
        let admin = match &config.admin {
            Some(admin) => Some(AdminSeed::parse(admin)?),
            None => None,
        };
        let bootstrap = tokio::spawn(bootstrap(state.clone(), admin));
        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "user-service listening");
        let router = with_middleware(routes::router(state.clone()));
        Ok(Self { listener, router, limits: config.server, bootstrap, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// (for at most SHUTDOWN_DRAIN_MS).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        platform::http::server::serve(self.listener, self.router, self.limits, shutdown).await?;
        self.bootstrap.abort();
        tracing::info!("user-service stopped");
        Ok(())
    }
}

fn with_middleware(router: Router) -> Router {
    platform::http::observe::traced(router.layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)))
}

struct AdminSeed {
    email: Email,
    username: Username,
    password: Password,
}

impl AdminSeed {
    fn parse(admin: &AdminAccount) -> anyhow::Result<Self> {
        Ok(Self {
            email: Email::parse(&admin.email).map_err(|error| anyhow::anyhow!("ADMIN_EMAIL: {error}"))?,
            username: Username::parse(&admin.username).map_err(|error| anyhow::anyhow!("ADMIN_USERNAME: {error}"))?,
            password: Password::parse(&admin.password).map_err(|error| anyhow::anyhow!("ADMIN_PASSWORD: {error}"))?,
        })
    }
}

enum BootstrapError {
    /// Worth another attempt: MongoDB unreachable, or busy.
    Transient(anyhow::Error),
    /// ADMIN_USERNAME belongs to another account than ADMIN_EMAIL's: no retry can fix that.
    AdminConflict(String),
}

impl<E: Into<anyhow::Error>> From<E> for BootstrapError {
    fn from(error: E) -> Self {
        Self::Transient(error.into())
    }
}

/// Creates the indexes (and the admin account), retrying with backoff until MongoDB answers. A
/// conflicting admin seed is reported once (log and `/ready`) and not retried.
async fn bootstrap(state: AppState, admin: Option<AdminSeed>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match bootstrap_once(&state, admin.as_ref()).await {
            Ok(()) => {
                state.mark_bootstrapped();
                if admin.is_some() {
                    state.set_admin_seed(AdminSeedStatus::Done);
                }
                tracing::info!("connected to MongoDB; indexes ready");
                return;
            }
            Err(BootstrapError::AdminConflict(message)) => {
                // The indexes exist, so the service works; `/ready` keeps it out of rotation until fixed.
                state.mark_bootstrapped();
                state.set_admin_seed(AdminSeedStatus::Conflict(message));
                return;
            }
            Err(BootstrapError::Transient(error)) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "MongoDB not ready");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn bootstrap_once(state: &AppState, admin: Option<&AdminSeed>) -> Result<(), BootstrapError> {
    state.store.ensure_indexes().await?;
    if let Some(admin) = admin {
        let hash = state.hasher.hash(&admin.password).await?;
        match state.store.upsert_admin(&admin.email, &admin.username, hash).await {
            Ok(()) => tracing::info!(email = admin.email.as_str(), "admin account ensured"),
            Err(StoreError::Duplicate(TakenField::Username)) => {
                let holder = state.store.find_by_username(&admin.username).await?;
                let message = format!(
                    "ADMIN_USERNAME {:?} belongs to another account than ADMIN_EMAIL's; the admin account was neither \
                     created nor updated: set ADMIN_USERNAME to a free name, or ADMIN_EMAIL to that account's email",
                    admin.username.as_str()
                );
                tracing::error!(
                    admin_email = admin.email.as_str(),
                    admin_username = admin.username.as_str(),
                    holder_id = holder.as_ref().map(|user| user.id.as_str()),
                    holder_email = holder.as_ref().map(|user| user.email.as_str()),
                    "admin seed conflict: {message} (not retried)"
                );
                return Err(BootstrapError::AdminConflict(message));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
