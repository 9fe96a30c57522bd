//! Running the service: health, reflection, deadlines, MongoDB outages and graceful shutdown.
use crate::support;

use std::time::{Duration, Instant};

use payment_service::proto::{GetPaymentRequest, PaymentStatus};
use support::{PAYMENT_SERVICE, ServingStatus};
use test_support::engines::PrivateMongo;
use tonic::{Code, Request};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_payment_service() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.health("").await, ServingStatus::Serving);
    assert_eq!(app.health(PAYMENT_SERVICE).await, ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_lists_the_payment_service() {
    let app = support::spawn(&[]).await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(futures::stream::iter([list])).await.expect("a stream").into_inner();
    let answer = answers.message().await.expect("an answer").expect("one message");
    let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<_> = services.service.iter().map(|service| service.name.as_str()).collect();
    assert!(names.contains(&PAYMENT_SERVICE), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn while_mongodb_is_unreachable_calls_are_unavailable_and_health_is_not_serving() {
    let uri = test_support::unreachable_mongodb_uri();
    let app = support::spawn_unready(&[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "300")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.health("").await, ServingStatus::NotServing, "the process is up and says so");
    assert_eq!(app.health(PAYMENT_SERVICE).await, ServingStatus::NotServing);
    // Unavailable before any check of the order: the lookup itself cannot reach MongoDB.
    let pay = app.pay(&support::unique("order-"), "alice", 1_000, "key-1").await.unwrap_err();
    assert_eq!(pay.code(), Code::Unavailable);
    assert!(!pay.message().contains("127.0.0.1"), "no internals: {}", pay.message());
    let started = Instant::now();
    let get = app.get_payment("some-payment", &app.issuer.token_for("admin-1", "admin")).await.unwrap_err();
    assert_eq!(get.code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(3), "within the MongoDB timeout, took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_call_whose_deadline_passes_gets_deadline_exceeded_promptly() {
    // MongoDB would make the call wait 30 s; the caller allows 400 ms.
    let uri = test_support::unreachable_mongodb_uri();
    let app = support::spawn_unready(&[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "30000")]).await;
    let mut request = support::with_token(
        GetPaymentRequest { payment_id: "some-payment".into() },
        &app.issuer.token_for("admin-1", "admin"),
    );
    request.set_timeout(Duration::from_millis(400));
    let mut client = app.client().await;
    let started = Instant::now();
    let status = client.get_payment(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_calls_follow_mongodb_going_away_and_coming_back() {
    // Declared first, so it is stopped (and its data removed) last: after the app.
    let mut mongodb = PrivateMongo::start().await;
    let app = support::spawn(&[("MONGODB_URI", &mongodb.uri()), ("MONGODB_TIMEOUT_MS", "500")]).await;
    let order = app.known_order("alice", 1_000).await;
    let (later, latest) = (app.known_order("alice", 1_000).await, app.known_order("alice", 1_000).await);
    let paid = app.pay(&order, "alice", 1_000, "key-1").await.expect("paid");

    mongodb.stop();
    app.wait_for_health(ServingStatus::NotServing).await;
    let down = app.pay(&later, "alice", 1_000, "key-2").await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    // With a deadline shorter than the MongoDB timeout, the deadline wins.
    let mut request = support::with_token(
        support::pay_request(&latest, "alice", 1_000, "key-3"),
        &app.issuer.token_for("alice", "customer"),
    );
    request.set_timeout(Duration::from_millis(200));
    assert_eq!(app.client().await.pay(request).await.unwrap_err().code(), Code::DeadlineExceeded);

    mongodb.restart().await;
    app.wait_for_health(ServingStatus::Serving).await;
    let replay = app.pay(&order, "alice", 1_000, "key-1").await.expect("replayed");
    assert_eq!((replay.payment_id, replay.replayed), (paid.payment_id, true), "the data survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_call_in_flight_and_returns() {
    // The JWKS answers after 1 s, so the first call is still in flight when the shutdown begins.
    let app = support::spawn_with_jwks_delay(&[], Duration::from_secs(1)).await;
    app.wait_for_health(ServingStatus::Serving).await;
    let mut client = app.client().await;
    let request = support::with_token(
        support::pay_request(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1"),
        &app.issuer.token_for("alice", "customer"),
    );
    let in_flight = tokio::spawn(async move { client.pay(request).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.stop().await.expect("a clean stop");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let response = in_flight.await.expect("the call task").expect("the call completed").into_inner();
    assert_eq!(response.status(), PaymentStatus::Success);
}

#[tokio::test]
async fn a_stopped_service_refuses_new_calls() {
    let app = support::spawn(&[]).await;
    let address = app.address.clone();
    app.stop().await.expect("a clean stop");
    let connected = tonic::transport::Endpoint::from_shared(address).expect("an address").connect().await;
    if let Ok(channel) = connected {
        let mut client = payment_service::proto::payment_service_client::PaymentServiceClient::new(channel);
        let status = client.get_payment(Request::new(GetPaymentRequest { payment_id: "p".into() })).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
}
