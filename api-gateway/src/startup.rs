//! Application: downstream clients, router, middleware, listener (port 0 in tests), graceful shutdown.
use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
    response::{IntoResponse, Response},
};
use platform::http::server::ServerLimits;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    auth::JwksVerifier,
    body_limit::{self, BodyLimit},
    client_address,
    config::Config,
    downstream::Downstream,
    error::ApiError,
    metrics::Metrics,
    payment_client::PaymentClient,
    routes,
    state::{AppState, Inner},
};

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let router = router(&config)?;
        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "api-gateway listening");
        Ok(Self { listener, router, limits: config.server })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// (for at most SHUTDOWN_DRAIN_MS).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        platform::http::server::serve(self.listener, self.router, self.limits, shutdown).await?;
        tracing::info!("api-gateway stopped");
        Ok(())
    }
}

/// The whole gateway as one `Router` (routes, middleware, the clients of the services behind it), without a
/// listener: `Application` serves it, tests drive it with `Router::oneshot`.
pub fn router(config: &Config) -> anyhow::Result<Router> {
    {
        // https:// service URLs and JWKS_URL: rustls with the web roots and TLS_CA_FILE.
        let http = platform::tls::http_client(&config.common.tls)?
            .connect_timeout(Duration::from_secs(1))
            // Below the services' HEADER_READ_TIMEOUT_MS (10 s by default), which also closes idle
            // connections: a pooled connection is never reused just as the service closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .build()?;
        let timeout = config.downstream_timeout;
        let guard = config.resilience;
        let metrics = Arc::new(Metrics::new());
        let downstream = |name, url: &str| Downstream::new(name, url, http.clone(), timeout, guard, metrics.clone());
        let state = AppState::new(Inner {
            users: downstream("user-service", &config.user_service_url.0),
            products: downstream("product-service", &config.product_service_url.0),
            orders: downstream("order-service", &config.order_service_url.0),
            payments: PaymentClient::new(
                &config.payment_service_url.0,
                &config.common.tls,
                timeout,
                guard,
                metrics.clone(),
            )
            .context("PAYMENT_SERVICE_URL")?,
            verifier: JwksVerifier::new(&config.jwks_url.0, &config.jwt_issuer, &config.jwt_audience, http.clone()),
            metrics,
        });
        with_middleware(routes::router(state), config)
    }
}

/// Errors that did not come from a handler (axum's rejections of a body over the limit or of a path
/// that is not valid UTF-8, …) get the same JSON error body as everything else.
async fn json_error_bodies(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"));
    let status = response.status();
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.ok().and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
    let message = text
        .filter(|text| !text.trim().is_empty() && text.len() <= 200)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Request failed").to_owned());
    let mut json = ApiError::new(status, message).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW, HeaderName::from_static("x-request-id")] {
        if let Some(value) = parts.headers.get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let values = origins.iter().map(|origin| HeaderValue::from_str(origin)).collect::<Result<Vec<_>, _>>();
        AllowOrigin::list(values.context("CORS_ALLOWED_ORIGINS holds an invalid origin")?)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                "idempotency-key".parse()?,
                "x-request-id".parse()?,
            ])
            .expose_headers(["x-request-id".parse()?]),
    ))
}

fn with_middleware(router: Router, config: &Config) -> anyhow::Result<Router> {
    let router = platform::http::observe::traced(
        router.layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(config.trusted_proxies.clone()),
                    client_address::derive,
                ))
                .layer(axum::middleware::from_fn_with_state(BodyLimit(config.max_body_bytes), body_limit::limit_body)),
        ),
    );
    let router = router.layer(axum::middleware::map_response(json_error_bodies));
    Ok(match cors(&config.cors_allowed_origins)? {
        Some(cors) => router.layer(cors),
        None => router,
    })
}
