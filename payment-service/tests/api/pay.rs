//! `Pay`: the decision rule, idempotent replays, and at most one successful payment per order.
use crate::support;

use futures::future::join_all;
use payment_service::{projection::OrderStage, proto::PaymentStatus};
use tonic::Code;

fn user() -> String {
    support::unique("user-")
}

#[tokio::test]
async fn pay_up_to_the_limit_succeeds_and_stores_the_payment() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 500_000).await;
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
    let user = user();
    let response = app.pay(&app.known_order(&user, 500_001).await, &user, 500_001, "key-1").await.expect("answered");
    assert_eq!(response.status(), PaymentStatus::Declined);
    assert_eq!(response.reason, "amount 5000.01 EUR exceeds the limit of 5000.00 EUR per payment");
    assert!(!response.payment_id.is_empty());
}

#[tokio::test]
async fn the_decline_limit_comes_from_configuration() {
    let app = support::spawn(&[("PAYMENT_DECLINE_ABOVE_CENTS", "1000")]).await;
    let user = user();
    let (small, large) = (app.known_order(&user, 1000).await, app.known_order(&user, 1001).await);
    assert_eq!(app.pay(&small, &user, 1000, "a").await.expect("paid").status(), PaymentStatus::Success);
    let declined = app.pay(&large, &user, 1001, "b").await.expect("answered");
    assert_eq!(declined.status(), PaymentStatus::Declined);
    assert!(declined.reason.contains("10.00 EUR"), "{}", declined.reason);
}

#[tokio::test]
async fn pay_with_same_idempotency_key_replays_first_result() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 2_500).await;
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
    let user = user();
    let order = app.known_order(&user, 2_500).await;
    app.pay(&order, &user, 2_500, "key-1").await.expect("paid");
    let other_amount = app.pay(&order, &user, 2_600, "key-1").await.unwrap_err();
    assert_eq!(other_amount.code(), Code::InvalidArgument);
    assert_eq!(other_amount.message(), "idempotency key reused with a different request");
    let other_order = app.pay(&app.known_order(&user, 2_500).await, &user, 2_500, "key-1").await.unwrap_err();
    assert_eq!(other_order.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn another_key_after_a_success_is_already_exists() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 2_500).await;
    app.pay(&order, &user, 2_500, "key-1").await.expect("paid");
    let again = app.pay(&order, &user, 2_500, "key-2").await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(app.stored_payments_for_order(&order).await.len(), 1);
}

#[tokio::test]
async fn a_declined_payment_replays_under_its_key_but_does_not_block_another_key() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 900_000).await;
    let declined = app.pay(&order, &user, 900_000, "too-much").await.expect("answered");
    assert_eq!(declined.status(), PaymentStatus::Declined);
    let replay = app.pay(&order, &user, 900_000, "too-much").await.expect("replayed");
    assert_eq!(
        (replay.payment_id.as_str(), replay.status(), replay.replayed),
        (declined.payment_id.as_str(), PaymentStatus::Declined, true)
    );
    assert_eq!(replay.reason, declined.reason);
    // A declined attempt holds no claim on the order: another key is decided anew, not ALREADY_EXISTS.
    let again = app.pay(&order, &user, 900_000, "another-try").await.expect("answered");
    assert_eq!(again.status(), PaymentStatus::Declined);
    assert_ne!(again.payment_id, declined.payment_id);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_paying_user() {
    let app = support::spawn(&[]).await;
    let (alice, bob) = (user(), user());
    let for_alice = app.pay(&app.known_order(&alice, 1_000).await, &alice, 1_000, "shared-key").await.expect("paid");
    let for_bob = app.pay(&app.known_order(&bob, 1_000).await, &bob, 1_000, "shared-key").await.expect("paid");
    assert_ne!(for_alice.payment_id, for_bob.payment_id);
    assert!(!for_bob.replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_pays_for_one_order_with_different_keys_give_exactly_one_success() {
    let app = support::spawn(&[]).await;
    let user = user();
    // Several rounds, so that the calls really overlap at least once.
    for round in 0..5 {
        let order = app.known_order(&user, 1_000).await;
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
        let order = app.known_order(&user, 1_000).await;
        let key = format!("one-key-{round}");
        let results = join_all((0..3).map(|_| app.pay(&order, &user, 1_000, &key))).await;
        let responses: Vec<_> = results.into_iter().map(|result| result.expect("every call is answered")).collect();
        assert!(responses.iter().all(|r| r.payment_id == responses[0].payment_id), "round {round}: {responses:?}");
        assert_eq!(responses.iter().filter(|r| !r.replayed).count(), 1, "round {round}: {responses:?}");
        assert_eq!(app.stored_payments_for_order(&order).await.len(), 1, "round {round}");
    }
}

// The payment-service decides on its own record of the order, never on what the caller says.

#[tokio::test]
async fn pay_with_an_amount_that_is_not_the_order_total_is_refused_and_stores_nothing() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 389_997).await;
    let one_cent = app.pay(&order, &user, 1, "cheap").await.unwrap_err();
    assert_eq!(one_cent.code(), Code::InvalidArgument);
    assert_eq!(one_cent.metadata().get("x-error-reason").unwrap(), "AMOUNT_MISMATCH");
    assert_eq!(one_cent.metadata().get("x-order-total-cents").unwrap(), "389997");
    let too_much = app.pay(&order, &user, 389_998, "generous").await.unwrap_err();
    assert_eq!(too_much.code(), Code::InvalidArgument);
    assert!(app.stored_payments_for_order(&order).await.is_empty(), "nothing stored for a refused payment");
    let paid = app.pay(&order, &user, 389_997, "exact").await.expect("the exact total is paid");
    assert_eq!(paid.status(), PaymentStatus::Success);
}

#[tokio::test]
async fn pay_for_someone_elses_order_is_not_found_even_paying_as_themselves() {
    let app = support::spawn(&[]).await;
    let (owner, mallory) = (user(), user());
    let order = app.known_order(&owner, 1_000).await;
    let status = app.pay(&order, &mallory, 1_000, "not-mine").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.metadata().get("x-error-reason").unwrap(), "ORDER_NOT_FOUND");
    assert!(app.stored_payments_for_order(&order).await.is_empty());
}

#[tokio::test]
async fn an_admin_pays_any_users_order_but_only_as_that_user() {
    let app = support::spawn(&[]).await;
    let owner = user();
    let order = app.known_order(&owner, 1_000).await;
    let admin = app.issuer.token_for("admin-1", "admin");
    let as_other = support::with_token(support::pay_request(&order, "someone-else", 1_000, "k1"), &admin);
    assert_eq!(app.client().await.pay(as_other).await.unwrap_err().code(), Code::NotFound);
    let as_owner = support::with_token(support::pay_request(&order, &owner, 1_000, "k2"), &admin);
    let paid = app.client().await.pay(as_owner).await.expect("paid").into_inner();
    assert_eq!(paid.status(), PaymentStatus::Success);
}

#[tokio::test]
async fn pay_for_an_unknown_order_is_not_found_and_stores_nothing() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = support::unique("no-such-order-");
    assert_eq!(app.pay(&order, &user, 1_000, "key").await.unwrap_err().code(), Code::NotFound);
    assert!(app.stored_payments_for_order(&order).await.is_empty());
}

#[tokio::test]
async fn pay_for_a_pending_order_is_failed_precondition_until_it_is_processed() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order_at(&user, 1_000, OrderStage::Pending).await;
    let early = app.pay(&order, &user, 1_000, "early").await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(early.metadata().get("x-error-reason").unwrap(), "ORDER_NOT_READY");
    assert!(app.stored_payments_for_order(&order).await.is_empty(), "a refused early payment is not stored");
    app.know_order(&order, &user, 1_000, OrderStage::Processed).await;
    // The same key again: the refusal was not stored, so this is a first attempt, and it succeeds.
    let paid = app.pay(&order, &user, 1_000, "early").await.expect("paid once processed");
    assert_eq!((paid.status(), paid.replayed), (PaymentStatus::Success, false));
}

#[tokio::test]
async fn the_same_key_replays_the_success_after_the_order_is_paid_and_a_new_key_is_already_exists() {
    let app = support::spawn(&[]).await;
    let user = user();
    let order = app.known_order(&user, 1_000).await;
    let first = app.pay(&order, &user, 1_000, "k").await.expect("paid");
    let replay = app.pay(&order, &user, 1_000, "k").await.expect("replayed");
    assert_eq!((replay.payment_id.as_str(), replay.replayed), (first.payment_id.as_str(), true));
    assert_eq!(app.pay(&order, &user, 1_000, "other").await.unwrap_err().code(), Code::AlreadyExists);
}
