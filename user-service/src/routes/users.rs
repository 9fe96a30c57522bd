//! POST /users/register, POST /users/login, GET /users/me.
use std::net::SocketAddr;

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use serde::Deserialize;
use serde_json::json;

use platform::http::extract::JsonBody;

use crate::{
    domain::{Email, Password, Role, Username},
    error::{ApiError, FieldError},
    routes::Authenticated,
    state::AppState,
    store::{NewUser, StoreError, TakenField},
};

const INVALID_CREDENTIALS: &str = "Invalid email or password";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

fn required<'a>(field: &'static str, value: Option<&'a String>, errors: &mut Vec<FieldError>) -> Option<&'a str> {
    if value.is_none() {
        errors.push(FieldError { field, message: format!("{field} is required") });
    }
    value.map(String::as_str)
}

fn parse_field<T>(
    field: &'static str,
    raw: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match parse(raw?) {
        Ok(value) => Some(value),
        Err(message) => {
            errors.push(FieldError { field, message });
            None
        }
    }
}

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let username = required("username", request.username.as_ref(), &mut errors);
    let email = required("email", request.email.as_ref(), &mut errors);
    let password = required("password", request.password.as_ref(), &mut errors);
    let username = parse_field("username", username, Username::parse, &mut errors);
    let email = parse_field("email", email, Email::parse, &mut errors);
    let password = parse_field("password", password, Password::parse, &mut errors);
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(ApiError::validation(errors));
    };
    state.require_bootstrapped()?;
    let address = state.trusted_proxies.client_address(peer.ip(), &headers);
    state.registrations.admit(address).map_err(|wait| crate::error::too_many_registrations(wait.as_secs() + 1))?;

    // A taken email is refused before the hash: the 409 says so anyway, and a flood of duplicates
    // must not cost a hash each. The unique index still decides between concurrent registrations.
    if state.store.find_by_email(&email).await?.is_some() {
        return Err(email_taken());
    }
    let password_hash = state.hasher.hash(&password).await?;
    let user = NewUser { username: &username, email: &email, password_hash, role: Role::Customer };
    let user_id = state.store.insert(user).await.map_err(|error| match error {
        StoreError::Duplicate(TakenField::Email) => email_taken(),
        StoreError::Duplicate(TakenField::Username) => ApiError::new(StatusCode::CONFLICT, "Username already taken"),
        other => other.into(),
    })?;
    tracing::info!(user_id = %user_id, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "message": "Utilisateur enregistré avec succès", "userId": user_id })),
    ))
}

fn email_taken() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "Email already registered")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: Option<String>,
    password: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let email = required("email", request.email.as_ref(), &mut errors);
    let password = required("password", request.password.as_ref(), &mut errors);
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::validation(errors));
    };
    // An address that cannot be an email cannot be an account: it still costs one hash (timing),
    // and counts against the client's address.
    let account = Email::parse(email).ok();
    let address = state.trusted_proxies.client_address(peer.ip(), &headers);
    // Reserved before the hash: concurrent guesses cannot all pass the check before any failure
    // is recorded. Returned early (database down, queue full), the attempt is released.
    let attempt = state
        .throttle
        .reserve(account.as_ref(), address)
        .map_err(|wait| crate::error::too_many_attempts(wait.as_secs() + 1))?;
    let user = match &account {
        Some(email) => state.store.find_by_email(email).await?,
        None => None,
    };
    let verified = state.hasher.verify(password, user.as_ref().map(|user| user.password_hash.as_str())).await?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            attempt.failed();
            return Err(ApiError::unauthorized(INVALID_CREDENTIALS));
        }
    };
    attempt.succeeded();
    let token = state.tokens.issue(&user.id, &user.username, &user.email, user.role).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "success": true,
        "message": "Connexion réussie",
        "token": token,
        "user": { "id": user.id, "username": user.username, "email": user.email },
    })))
}

pub async fn me(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    match state.store.find_by_id(&claims.bearer.sub).await? {
        Some(user) => {
            Ok(Json(json!({ "id": user.id, "username": user.username, "email": user.email, "role": user.role })))
        }
        None => Err(ApiError::unauthorized("Account no longer exists")),
    }
}
