//! The gateway's Swagger UI (GET /docs), clicked through in a real browser: Debian's Chromium
//! driven by scripts/e2e/swagger-ui.mjs (playwright-core). The script fails when any request
//! leaves 127.0.0.1, so the UI stays usable offline.
use std::{path::PathBuf, process::Command};

use system_tests::Stack;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The target directory this test runs from (honours CARGO_TARGET_DIR): target/<profile>/deps/<exe>.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

#[tokio::test]
async fn swagger_ui_lists_operations_and_tries_get_products() {
    let script = repo().join("scripts/e2e/swagger-ui.mjs");
    let playwright = repo().join("scripts/e2e/node_modules/playwright-core");
    assert!(playwright.exists(), "{} is missing: run scripts/bootstrap.sh", playwright.display());
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/bootstrap.sh (it installs Debian's chromium)"
    );
    let screenshot = target_dir().join("e2e/swagger-ui.png");
    let _ = std::fs::remove_file(&screenshot);

    let stack = Stack::start().await;
    let mut command = Command::new("node");
    command.arg(&script).arg(&stack.gateway).arg(&screenshot);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the browser task")
        .expect("node runs (run scripts/bootstrap.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Swagger UI check failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("swagger-ui: ok"), "{stdout}\n{stderr}");
    let png = std::fs::read(&screenshot).unwrap_or_else(|error| panic!("{}: {error}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot",
        screenshot.display()
    );
    println!("{stdout}");
}
