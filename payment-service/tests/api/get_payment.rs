//! `GetPayment`: the caller's own payments, any payment for an admin, NOT_FOUND otherwise.
use crate::support;

use payment_service::proto::PaymentStatus;
use tonic::{Code, Request};

#[tokio::test]
async fn the_owner_reads_their_payment_with_every_field() {
    let app = support::spawn(&[]).await;
    let order = app.known_order("alice", 12_345).await;
    let paid = app.pay(&order, "alice", 12_345, "key-1").await.expect("paid");
    let payment = app.get_payment(&paid.payment_id, &app.issuer.token_for("alice", "customer")).await.expect("found");
    assert_eq!(payment.payment_id, paid.payment_id);
    assert_eq!((payment.order_id.as_str(), payment.user_id.as_str()), (order.as_str(), "alice"));
    assert_eq!((payment.amount_cents, payment.currency.as_str()), (12_345, "EUR"));
    assert_eq!((payment.status(), payment.reason.as_str()), (PaymentStatus::Success, ""));
    let created_at = payment.created_at.as_str();
    assert!(created_at.len() >= 20 && created_at.as_bytes()[10] == b'T' && created_at.ends_with('Z'), "{created_at}");
}

#[tokio::test]
async fn a_declined_payment_is_readable_with_its_reason() {
    let app = support::spawn(&[]).await;
    let declined =
        app.pay(&app.known_order("alice", 600_000).await, "alice", 600_000, "key-1").await.expect("answered");
    let payment =
        app.get_payment(&declined.payment_id, &app.issuer.token_for("alice", "customer")).await.expect("found");
    assert_eq!(payment.status(), PaymentStatus::Declined);
    assert_eq!(payment.reason, declined.reason);
}

#[tokio::test]
async fn another_customers_payment_is_not_found() {
    let app = support::spawn(&[]).await;
    let paid = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");
    let status = app.get_payment(&paid.payment_id, &app.issuer.token_for("mallory", "customer")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn an_admin_reads_any_payment() {
    let app = support::spawn(&[]).await;
    let paid = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");
    let payment = app.get_payment(&paid.payment_id, &app.issuer.token_for("admin-1", "admin")).await.expect("found");
    assert_eq!(payment.user_id, "alice");
}

#[tokio::test]
async fn an_unknown_payment_is_not_found() {
    let app = support::spawn(&[]).await;
    let status = app
        .get_payment(&uuid::Uuid::now_v7().to_string(), &app.issuer.token_for("admin-1", "admin"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn reading_a_payment_requires_a_valid_token() {
    let app = support::spawn(&[]).await;
    let paid = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");
    let request = Request::new(payment_service::proto::GetPaymentRequest { payment_id: paid.payment_id.clone() });
    assert_eq!(app.client().await.get_payment(request).await.unwrap_err().code(), Code::Unauthenticated);
    let forged = app.issuer.forged(&support::Issuer::claims_for("alice", "customer"));
    assert_eq!(app.get_payment(&paid.payment_id, &forged).await.unwrap_err().code(), Code::Unauthenticated);
}
