//! The public REST surface. Handlers stay thin: check the caller, shape the downstream call,
//! relay the answer with its real status.
pub(crate) mod health;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod products;
pub(crate) mod users;

use axum::{
    Router,
    routing::{get, post},
};

pub use platform::http::bearer::{Admin, Authenticated};
use platform::http::{error, observe};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/users/register", post(users::register))
        .route("/users/login", post(users::login))
        .route("/users/me", get(users::me))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::get).patch(products::update).delete(products::delete))
        .route("/graphql", get(products::graphiql).post(products::graphql))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/payments", post(payments::pay))
        .route("/metrics", get(platform::http::observe::metrics).with_state(state.metrics.registry.clone()))
        .merge(crate::openapi::router());
    observe::counted(error::with_fallbacks(routes), state.metrics.http.clone()).with_state(state)
}
