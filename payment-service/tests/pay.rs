//! `Pay`: the decision rule, idempotent replays, and at most one successful payment per order.
mod support;

use futures::future::join_all;
use payment_service::proto::PaymentStatus;
use tonic::Code;

fn order() -> String {
    support::unique("order-")
}

fn user() -> String {
    support::unique("user-")
}

#[tokio::test]
async fn pay_up_to_the_limit_succeeds_and_stores_the_payment() {
    let app = support::spawn(&[]).await;
    let (order, user) = (order(), user());
    let response = app.pay(&order, &user, 500_000, "key-1").await.expect("paid");
    assert_eq!(response.status(), PaymentStatus::Success);
    assert_eq!((response.reason.as_str(), response.replayed), ("", false));
    assert!(uuid::Uuid::parse_str(&response.payment_id).is_ok());
    let stored = app.stored_payments_for_order(&order).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_str("status"), Ok("SUCCESS"));
    assert_eq!(stored[0].get_i64("amountCents"), Ok(500_000));
}

#[tokio::test]
async fn pay_above_the_limit_is_declined_with_a_reason_naming_the_limit() {
    let app = support::spawn(&[]).await;
    let response = app.pay(&order(), &user(), 500_001, "key-1").await.expect("answered");
    assert_eq!(response.status(), PaymentStatus::Declined);
    assert_eq!(response.reason, "amount 5000.01 EUR exceeds the limit of 5000.00 EUR per payment");
    assert!(!response.payment_id.is_empty());
}

#[tokio::test]
async fn the_decline_limit_comes_from_configuration() {
    let app = support::spawn(&[("PAYMENT_DECLINE_ABOVE_CENTS", "1000")]).await;
    let user = user();
    assert_eq!(app.pay(&order(), &user, 1000, "a").await.expect("paid").status(), PaymentStatus::Success);
    let declined = app.pay(&order(), &user, 1001, "b").await.expect("answered");
    assert_eq!(declined.status(), PaymentStatus::Declined);
    assert!(declined.reason.contains("10.00 EUR"), "{}", declined.reason);
}

#[tokio::test]
async fn pay_with_same_idempotency_key_replays_first_result() {
    let app = support::spawn(&[]).await;
    let (order, user) = (order(), user());
    let first = app.pay(&order, &user, 2_500, "retry-me").await.expect("paid");
    let second = app.pay(&order, &user, 2_500, "retry-me").await.expect("replayed");
    assert_eq!(second.payment_id, first.payment_id);
    assert_eq!(second.status(), PaymentStatus::Success);
    assert!(!first.replayed && second.replayed);
    assert_eq!(app.stored_payments_for_order(&order).await.len(), 1, "charged once");
}

#[tokio::test]
async fn same_key_with_a_different_request_is_invalid_argument() {
    let app = support::spawn(&[]).await;
    let (order, user) = (order(), user());
    app.pay(&order, &user, 2_500, "key-1").await.expect("paid");
    let other_amount = app.pay(&order, &user, 2_600, "key-1").await.unwrap_err();
    assert_eq!(other_amount.code(), Code::InvalidArgument);
    assert_eq!(other_amount.message(), "idempotency key reused with a different request");
    let other_order = app.pay(&self::order(), &user, 2_500, "key-1").await.unwrap_err();
    assert_eq!(other_order.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn another_key_after_a_success_is_already_exists() {
    let app = support::spawn(&[]).await;
    let (order, user) = (order(), user());
    app.pay(&order, &user, 2_500, "key-1").await.expect("paid");
    let again = app.pay(&order, &user, 2_500, "key-2").await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(app.stored_payments_for_order(&order).await.len(), 1);
}

#[tokio::test]
async fn a_declined_payment_replays_under_its_key_but_does_not_block_another_key() {
    let app = support::spawn(&[]).await;
    let (order, user) = (order(), user());
    let declined = app.pay(&order, &user, 900_000, "too-much").await.expect("answered");
    assert_eq!(declined.status(), PaymentStatus::Declined);
    let replay = app.pay(&order, &user, 900_000, "too-much").await.expect("replayed");
    assert_eq!(
        (replay.payment_id.as_str(), replay.status(), replay.replayed),
        (declined.payment_id.as_str(), PaymentStatus::Declined, true)
    );
    assert_eq!(replay.reason, declined.reason);
    let paid = app.pay(&order, &user, 400_000, "smaller").await.expect("paid");
    assert_eq!(paid.status(), PaymentStatus::Success);
    assert_ne!(paid.payment_id, declined.payment_id);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_paying_user() {
    let app = support::spawn(&[]).await;
    let (alice, bob) = (user(), user());
    let for_alice = app.pay(&order(), &alice, 1_000, "shared-key").await.expect("paid");
    let for_bob = app.pay(&order(), &bob, 1_000, "shared-key").await.expect("paid");
    assert_ne!(for_alice.payment_id, for_bob.payment_id);
    assert!(!for_bob.replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_pays_for_one_order_with_different_keys_give_exactly_one_success() {
    let app = support::spawn(&[]).await;
    let user = user();
    // Several rounds, so that the calls really overlap at least once.
    for round in 0..5 {
        let order = order();
        let keys = [format!("key-a-{round}"), format!("key-b-{round}")];
        let results = join_all(keys.iter().map(|key| app.pay(&order, &user, 1_000, key))).await;
        let successes = results.iter().filter(|result| matches!(result, Ok(r) if r.status() == PaymentStatus::Success));
        let already = results.iter().filter(|result| matches!(result, Err(s) if s.code() == Code::AlreadyExists));
        assert_eq!((successes.count(), already.count()), (1, 1), "round {round}: {results:?}");
        assert_eq!(app.stored_payments_for_order(&order).await.len(), 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pays_with_the_same_key_store_one_payment() {
    let app = support::spawn(&[]).await;
    let user = user();
    for round in 0..5 {
        let order = order();
        let key = format!("one-key-{round}");
        let results = join_all((0..3).map(|_| app.pay(&order, &user, 1_000, &key))).await;
        let responses: Vec<_> = results.into_iter().map(|result| result.expect("every call is answered")).collect();
        assert!(responses.iter().all(|r| r.payment_id == responses[0].payment_id), "round {round}: {responses:?}");
        assert_eq!(responses.iter().filter(|r| !r.replayed).count(), 1, "round {round}: {responses:?}");
        assert_eq!(app.stored_payments_for_order(&order).await.len(), 1, "round {round}");
    }
}
