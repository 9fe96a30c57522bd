//! Every input rule answers INVALID_ARGUMENT with a message naming the field, before anything is stored.
use crate::support;

use payment_service::{
    projection::OrderStage,
    proto::{PayRequest, PaymentStatus},
};
use tonic::Code;

async fn pay_as_admin(app: &support::TestApp, request: PayRequest) -> Result<PaymentStatus, tonic::Status> {
    let token = app.issuer.token_for("admin-1", "admin");
    let response = app.client().await.pay(support::with_token(request, &token)).await?;
    Ok(response.into_inner().status())
}

fn valid() -> PayRequest {
    support::pay_request(&support::unique("order-"), "user-1", 1_000, &support::unique("key-"))
}

async fn assert_rejected(app: &support::TestApp, request: PayRequest, field: &str) {
    let order_id = request.order_id.clone();
    let status = pay_as_admin(app, request).await.expect_err("rejected");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with(&format!("{field}: ")), "{field}: {}", status.message());
    if !order_id.is_empty() {
        assert!(app.stored_payments_for_order(&order_id).await.is_empty(), "nothing stored");
    }
}

#[tokio::test]
async fn order_id_must_be_1_to_128_characters_without_control_characters() {
    let app = support::spawn(&[]).await;
    for order_id in [String::new(), "o".repeat(129), "line\nbreak".into()] {
        assert_rejected(&app, PayRequest { order_id, ..valid() }, "order_id").await;
    }
    let longest = PayRequest { order_id: format!("{}-{}", support::unique(""), "o".repeat(95)), ..valid() };
    assert_eq!(longest.order_id.chars().count(), 128);
    app.know_order(&longest.order_id, "user-1", 1_000, OrderStage::Processed).await;
    assert_eq!(pay_as_admin(&app, longest).await.expect("accepted"), PaymentStatus::Success);
}

#[tokio::test]
async fn user_id_must_be_present_and_at_most_128_characters() {
    let app = support::spawn(&[]).await;
    for user_id in [String::new(), "u".repeat(129)] {
        assert_rejected(&app, PayRequest { user_id, ..valid() }, "user_id").await;
    }
    let longest = "u".repeat(128);
    let order_id = app.known_order(&longest, 1_000).await;
    assert!(pay_as_admin(&app, PayRequest { user_id: longest, order_id, ..valid() }).await.is_ok());
}

#[tokio::test]
async fn amount_cents_must_be_positive_and_at_most_ten_billion() {
    let app = support::spawn(&[]).await;
    for amount_cents in [0, -1, i64::MIN, 10_000_000_001, i64::MAX] {
        assert_rejected(&app, PayRequest { amount_cents, ..valid() }, "amount_cents").await;
    }
    let order_id = app.known_order("user-1", 10_000_000_000).await;
    let largest = PayRequest { amount_cents: 10_000_000_000, order_id, ..valid() };
    assert_eq!(pay_as_admin(&app, largest).await.expect("accepted"), PaymentStatus::Declined);
    let order_id = app.known_order("user-1", 1).await;
    let smallest = PayRequest { amount_cents: 1, order_id, ..valid() };
    assert_eq!(pay_as_admin(&app, smallest).await.unwrap(), PaymentStatus::Success);
}

#[tokio::test]
async fn currency_must_be_three_uppercase_letters_and_supported() {
    let app = support::spawn(&[]).await;
    for currency in ["", "eur", "EU", "EURO", "E1R", "€UR"] {
        assert_rejected(&app, PayRequest { currency: currency.into(), ..valid() }, "currency").await;
    }
    let dollars = pay_as_admin(&app, PayRequest { currency: "USD".into(), ..valid() }).await.unwrap_err();
    assert_eq!(dollars.code(), Code::InvalidArgument);
    assert!(dollars.message().contains("unsupported currency"), "{}", dollars.message());
}

#[tokio::test]
async fn idempotency_key_must_be_1_to_128_visible_ascii_characters() {
    let app = support::spawn(&[]).await;
    for idempotency_key in [String::new(), "k".repeat(129), "tab\tkey".into(), "clé".into(), "with space".into()] {
        assert_rejected(&app, PayRequest { idempotency_key, ..valid() }, "idempotency_key").await;
    }
    // 128 visible characters, symbols included, are fine: the rule the gateway and the order-service apply.
    let printable = PayRequest { idempotency_key: format!("{}_~!#{}", support::unique(""), "x".repeat(92)), ..valid() };
    assert_eq!(printable.idempotency_key.len(), 128);
    let order_id = app.known_order("user-1", 1_000).await;
    assert!(pay_as_admin(&app, PayRequest { order_id, ..printable }).await.is_ok());
}

#[tokio::test]
async fn get_payment_requires_a_payment_id_of_at_most_128_characters() {
    let app = support::spawn(&[]).await;
    let token = app.issuer.token_for("admin-1", "admin");
    for payment_id in [String::new(), "p".repeat(129)] {
        let status = app.get_payment(&payment_id, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("payment_id: "), "{}", status.message());
    }
}

#[tokio::test]
async fn invalid_input_is_reported_before_the_token_is_checked() {
    let app = support::spawn(&[]).await;
    let request = tonic::Request::new(PayRequest { amount_cents: 0, ..valid() });
    let status = app.client().await.pay(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
