//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead probes the running service's `/ready` (exit 0 when ready).
use platform::service_main;
use user_service::{config::Config, healthcheck, startup::Application};

// The system allocator, unlike the gateway and the product-service (mimalloc): this service's cost is
// argon2, not allocation, and with mimalloc the hashing threads' working memory raised its peak RSS by ~7 MB.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main::run(
        "user-service",
        Config::from_source,
        |config| &config.common,
        async |config: &Config| healthcheck::probe(config.common.host, config.common.port, "/ready"),
        async |config, stop| Application::build(config).await?.run_until(stop).await,
    )
    .await
}
