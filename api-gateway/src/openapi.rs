//! The gateway's OpenAPI 3.1 document (`GET /openapi.json`) and Swagger UI (`GET /docs`).
//!
//! Each route documents itself with `#[utoipa::path]` beside its handler; this module lists them and
//! describes the bodies the gateway forwards without parsing (they belong to the services behind it,
//! so the types here exist only to describe the wire contract). Swagger UI's assets are compiled into
//! the binary from the `utoipa-swagger-ui` crate: `/docs` works with no network.
#![allow(dead_code)] // The forwarded-body types are never built: they describe JSON, they don't carry it.

use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{routes, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rust microservices reference system: API gateway",
        description = "The REST/JSON entry point of the system: users, the product catalogue, orders and payments. \
            Errors share one body, `{\"success\": false, \"message\", \"errors\"?}`; 503 answers carry `Retry-After`. \
            Routes marked with a lock need `Authorization: Bearer <token>` from `POST /users/login`.",
        license(name = "MIT", identifier = "MIT")
    ),
    servers((url = "/", description = "This gateway")),
    paths(
        routes::health::health,
        routes::health::ready,
        routes::users::register,
        routes::users::login,
        routes::users::me,
        routes::products::list,
        routes::products::get,
        routes::products::create,
        routes::products::update,
        routes::products::delete,
        routes::products::graphql,
        routes::products::graphiql,
        routes::orders::create,
        routes::orders::list,
        routes::orders::get,
        routes::payments::pay,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "users", description = "Registration, login and the caller's profile (user-service)"),
        (name = "products", description = "The catalogue, as REST over the product-service's GraphQL API"),
        (name = "orders", description = "Orders, processed asynchronously through Kafka (order-service)"),
        (name = "payments", description = "Paying a processed order (payment-service, over gRPC)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `token` from POST /users/login (EdDSA JWT, 1 hour)"))
                    .build(),
            ),
        );
    }
}

/// `/docs` (Swagger UI) and `/openapi.json`, the document it shows.
pub fn router() -> Router<AppState> {
    // Tokens entered with "Authorize" survive a reload of the page.
    let config = utoipa_swagger_ui::Config::from("/openapi.json").persist_authorization(true);
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()).config(config).into()
}

// ---- shared ------------------------------------------------------------------------------------------

/// Every error answer.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"success": false, "message": "Validation failed", "errors": [{"field": "email", "message": "email must be a valid address"}]}))]
pub struct ErrorBody {
    /// Always false.
    success: bool,
    message: String,
    /// Present only for field validation failures (400).
    errors: Option<Vec<FieldErrorBody>>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldErrorBody {
    field: String,
    message: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "service": "api-gateway"}))]
pub struct Health {
    status: String,
    service: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"user-service": "up", "product-service": "up", "order-service": "up", "payment-service": "up"}}))]
pub struct Readiness {
    /// `ready`, or absent with `success: false` when a service is down.
    status: Option<String>,
    success: Option<bool>,
    message: Option<String>,
    /// `up` or `down` per service.
    checks: std::collections::HashMap<String, String>,
}

// ---- users -------------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"username": "alice", "email": "alice@example.com", "password": "correct horse battery"}))]
pub struct RegisterRequest {
    /// 3–32 letters, digits, `_`, `.` or `-`; unique, case-insensitively.
    username: String,
    /// Stored trimmed and lowercased; unique.
    email: String,
    /// 8–128 characters.
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"success": true, "message": "Utilisateur enregistré avec succès", "userId": "6745f0c2a1b2c3d4e5f60718"}))]
pub struct Registered {
    success: bool,
    message: String,
    user_id: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "alice@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    success: bool,
    message: String,
    /// Send it back as `Authorization: Bearer <token>`.
    token: String,
    user: UserSummary,
}

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    id: String,
    username: String,
    email: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    id: String,
    username: String,
    email: String,
    /// `customer` or `admin`.
    role: String,
}

// ---- products ----------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "1", "name": "Laptop", "price": 999.99, "description": "A fast laptop", "createdAt": "2026-11-28T09:00:00Z", "updatedAt": "2026-11-28T09:00:00Z"}))]
pub struct Product {
    id: String,
    name: String,
    /// Euros, at most two decimals.
    price: f64,
    description: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProductList {
    products: Vec<Product>,
}

#[derive(Serialize, ToSchema)]
pub struct ProductEnvelope {
    product: Product,
}

#[derive(Serialize, ToSchema)]
pub struct ProductChanged {
    success: bool,
    product: Product,
}

/// A GraphQL request, as the product-service takes it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"query": "query Product($id: ID!) { product(id: $id) { id name price } }", "variables": {"id": "1"}}))]
pub struct GraphQlRequest {
    query: String,
    variables: Option<serde_json::Value>,
    operation_name: Option<String>,
}

/// A GraphQL answer: `data`, and `errors` with `extensions.code` when something failed.
#[derive(Serialize, ToSchema)]
pub struct GraphQlResponse {
    data: Option<serde_json::Value>,
    errors: Option<Vec<serde_json::Value>>,
}

// ---- orders ------------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"productId": "1", "quantity": 2}))]
pub struct CreateOrder {
    product_id: String,
    /// An integer from 1 to 100.
    quantity: u32,
    /// Optional; when given it must be the caller's own id (403 otherwise).
    user_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"success": true, "message": "Commande créée et envoyée pour traitement", "orderId": "0193a5c8-7d3e-7c41-9a52-2f1e0b6c4d11"}))]
pub struct OrderCreated {
    success: bool,
    message: String,
    order_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    id: String,
    user_id: String,
    product_id: String,
    product_name: String,
    quantity: u32,
    /// Euros, a snapshot of the product's price when the order was made.
    unit_price: f64,
    /// unitPrice × quantity, exact to the cent.
    total: f64,
    /// `pending` → `processed` → `paid`.
    status: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderEnvelope {
    order: Order,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderList {
    orders: Vec<Order>,
    /// Pass as `before` for the next page; null on the last page.
    next_cursor: Option<String>,
}

// ---- payments ----------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"success": true, "message": "Paiement traité avec succès", "status": "SUCCESS", "paymentId": "0193a5c9-1b2c-7d3e-8f40-5a6b7c8d9e0f"}))]
pub struct PaymentSucceeded {
    success: bool,
    message: String,
    /// `SUCCESS`.
    status: String,
    payment_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    /// Always false.
    success: bool,
    message: String,
    /// `DECLINED`.
    status: String,
    reason: String,
    payment_id: String,
}
