//! Application: state, schema, router, listener (port 0 in tests), background bootstrap, graceful shutdown.
use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::DefaultBodyLimit};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    auth::JwksVerifier,
    backoff::Backoff,
    catalogue::Catalogue,
    config::{Config, ServerLimits},
    graphql,
    metrics::Metrics,
    routes::{self, GraphqlEndpoint},
    seed::SEED_PRODUCTS,
    state::AppState,
    store::ProductStore,
};

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    bootstrap: JoinHandle<()>,
}

impl Application {
    /// Binds the listener and starts connecting to MongoDB in the background; never fails
    /// because MongoDB is down (the service reports not-ready until it answers).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let client = platform::mongo::connect(
            &config.mongodb.uri.0,
            "product-service",
            config.mongodb.timeout,
            &metrics.mongodb,
        )
        .await
        .context("MONGODB_URI is not a usable MongoDB connection string")?;
        let store = ProductStore::new(client.database(&config.mongodb.database));
        let state = AppState::new(Catalogue::new(store, config.product_cache_ttl));
        let verifier = JwksVerifier::new(
            config.jwks_url.0.clone(),
            &config.jwt_issuer,
            &config.jwt_audience,
            platform::tls::http_client(&config.common.tls)?.build()?,
        );
        let endpoint = GraphqlEndpoint {
            schema: graphql::build_schema(state.clone(), &config.graphql),
            verifier: Arc::new(verifier),
            max_body_bytes: config.graphql.max_body_bytes,
        };
        let bootstrap = tokio::spawn(bootstrap(state.clone()));
        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "product-service listening");
        let router = with_middleware(routes::router(state, endpoint, metrics), config.graphql.max_body_bytes);
        Ok(Self { listener, router, limits: config.server, bootstrap })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// (for at most SHUTDOWN_DRAIN_MS).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        platform::http::server::serve(self.listener, self.router, self.limits, shutdown).await?;
        self.bootstrap.abort();
        tracing::info!("product-service stopped");
        Ok(())
    }
}

fn with_middleware(router: Router, max_body_bytes: usize) -> Router {
    // Applied by the body extractor, which turns an oversized body into the handler's JSON 413.
    platform::http::observe::traced(router.layer(DefaultBodyLimit::max(max_body_bytes)))
}

/// Creates the indexes and seeds a fresh catalogue, retrying with backoff until MongoDB answers.
async fn bootstrap(state: AppState) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match bootstrap_once(&state).await {
            Ok(()) => {
                state.mark_bootstrapped();
                tracing::info!("connected to MongoDB; indexes and catalogue ready");
                return;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms, "MongoDB not ready");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn bootstrap_once(state: &AppState) -> anyhow::Result<()> {
    let store = state.catalogue.store();
    store.ensure_indexes().await?;
    if store.seed_once(&SEED_PRODUCTS).await? {
        tracing::info!(count = SEED_PRODUCTS.len(), "seeded the catalogue");
    }
    Ok(())
}
