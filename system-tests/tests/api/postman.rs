//! The Postman collection in api-gateway/postman/, run with newman against a stack, so every
//! request and assertion in it stays true.
use std::{path::PathBuf, process::Command, time::Duration};

use system_tests::Stack;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test]
async fn the_postman_collection_passes_with_newman() {
    let newman = repo().join("scripts/e2e/node_modules/.bin/newman");
    assert!(
        newman.exists(),
        "{} is missing: run scripts/bootstrap.sh (it runs npm ci in scripts/e2e)",
        newman.display()
    );
    let stack = Stack::start().await;
    // A user runs the collection against a stack that has been up a while; a fresh one first has
    // to let its consumer join its group (a few seconds on the test broker). Warm it up the same way.
    let (_, token) = stack.customer().await;
    let warm_up = stack.order(&token, "4", 1).await;
    stack.wait_for_status(&token, &warm_up, "processed", Duration::from_secs(20)).await;

    let postman = repo().join("api-gateway/postman");
    let mut command = Command::new(&newman);
    command
        .arg("run")
        .arg(postman.join("rust-microservices.postman_collection.json"))
        .arg("-e")
        .arg(postman.join("local.postman_environment.json"))
        .args(["--env-var", &format!("baseUrl={}", stack.gateway)])
        .args(["--reporters", "cli", "--color", "off"])
        // The whole run, in ms: the collection's own waits are bounded at 30 s each.
        .args(["--timeout", "120000"]);
    let output =
        tokio::task::spawn_blocking(move || command.output()).await.expect("the newman task").expect("newman runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "newman failed ({}):\n{stdout}\n{stderr}", output.status);
    // Every folder ran, and its assertions were counted with none failing.
    for request in ["Login (stores token)", "Get order until paid", "Login with a wrong password (401)"] {
        assert!(stdout.contains(request), "newman ran {request:?}:\n{stdout}");
    }
    // The summary row: "│ assertions │ <executed> │ <failed> │".
    let counts: Vec<&str> = stdout
        .lines()
        .find(|line| line.contains(" assertions "))
        .map(|line| line.split('│').map(str::trim).filter(|cell| cell.parse::<u32>().is_ok()).collect())
        .unwrap_or_default();
    assert_eq!(counts.get(1), Some(&"0"), "no assertion failed:\n{stdout}");
    println!("newman: {} assertions passed", counts[0]);
}
