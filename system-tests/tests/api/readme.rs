//! The README's curl examples, run as written against a stack, so they never drift from the code.
use system_tests::Stack;

/// The first ```sh block after the "## Try it" heading.
fn try_it_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let section = readme.split("## Try it").nth(1).expect("a Try it section");
    let block = section.split("```sh").nth(1).expect("an sh block");
    block.split("```").next().expect("a closed block").to_owned()
}

#[tokio::test]
async fn the_readme_curl_journey_works_as_written() {
    let stack = Stack::start().await;
    // A user runs the README against a stack that has been up a while; a fresh one first has to
    // let its consumer join its group (a few seconds on the test broker). Warm it up the same way.
    let (_, token) = stack.customer().await;
    let warm_up = stack.order(&token, "4", 1).await;
    stack.wait_for_status(&token, &warm_up, "processed", std::time::Duration::from_secs(20)).await;
    // The README talks to the default gateway address; this stack listens elsewhere.
    let script = try_it_script().replace("http://127.0.0.1:3000", &stack.gateway);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output()
    })
    .await
    .expect("the script task")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the script failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Utilisateur enregistré avec succès"), "{stdout}");
    assert!(stdout.contains("\"product\":{\"id\":\"1\""), "{stdout}");
    assert!(stdout.contains("Paiement traité avec succès"), "{stdout}");
    // curl prints no newline after a body: the last "status" in the output is the final order's.
    let last_status = stdout.rsplit("\"status\":\"").next().unwrap_or_default();
    assert!(last_status.starts_with("paid\""), "the last answer shows the order paid: {stdout}");
}
