//! gRPC reflection: `grpcurl` (the real tool, installed in .venv by scripts/bootstrap.sh) lists,
//! describes and calls the PaymentService with nothing but the server's reflection, as the README shows.
use serde_json::{Value, json};
use system_tests::Stack;

/// Runs grpcurl off the executor: the services it talks to run on this test's runtime.
async fn grpcurl(args: &[&str]) -> (bool, String) {
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/grpcurl");
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || std::process::Command::new(binary).args(&args).output())
        .await
        .expect("the grpcurl task")
        .unwrap_or_else(|error| panic!("{binary}: {error} (run scripts/bootstrap.sh)"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_the_payment_service_through_reflection() {
    let stack = Stack::start().await;
    let address = stack.payments.trim_start_matches("http://").to_owned();

    let (ok, services) = grpcurl(&["-plaintext", &address, "list"]).await;
    assert!(ok, "{services}");
    assert!(services.lines().any(|line| line == "payment.v1.PaymentService"), "{services}");
    assert!(services.lines().any(|line| line == "grpc.health.v1.Health"), "{services}");

    let (ok, methods) = grpcurl(&["-plaintext", &address, "describe", "payment.v1.PaymentService"]).await;
    assert!(ok, "{methods}");
    assert!(methods.contains("rpc Pay ( .payment.v1.PayRequest ) returns ( .payment.v1.PayResponse )"), "{methods}");
    assert!(methods.contains("rpc GetPayment"), "{methods}");

    // A payment made through the gateway, read back over gRPC with the caller's token.
    let (_, token) = stack.customer().await;
    let order_id = stack.order(&token, "4", 1).await;
    stack.wait_for_status(&token, &order_id, "processed", std::time::Duration::from_secs(30)).await;
    let order: Value = stack.get(&format!("/orders/{order_id}"), Some(&token)).await.json().await.expect("order");
    let paid: Value = stack.pay(&token, &order_id, &order["order"]["total"], None).await.json().await.expect("payment");
    let payment_id = paid["paymentId"].as_str().expect("a payment id");
    let authorization = format!("authorization: Bearer {token}");
    let request = json!({ "paymentId": payment_id }).to_string();
    let (ok, answer) = grpcurl(&[
        "-plaintext",
        "-H",
        &authorization,
        "-d",
        &request,
        &address,
        "payment.v1.PaymentService/GetPayment",
    ])
    .await;
    assert!(ok, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("JSON from grpcurl: {answer}"));
    assert_eq!(answer["orderId"], order_id.as_str(), "{answer}");
    assert_eq!(answer["status"], "PAYMENT_STATUS_SUCCESS", "{answer}");
    stack.stop().await;
}
