//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead probes the running service's `/ready` (exit 0 when ready).
use order_service::{config::Config, healthcheck, startup::Application};
use platform::service_main;

// The system allocator: this service's throughput is bound by its database writes, not by allocation
// (mimalloc, which doubled the read paths' throughput in the gateway and the product-service, only
// raised this service's peak RSS, by ~8 MB under order load).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main::run(
        "order-service",
        Config::from_source,
        |config| &config.common,
        async |config: &Config| healthcheck::probe(config.common.host, config.common.port, "/ready"),
        async |config, stop| Application::build(config).await?.run_until(stop).await,
    )
    .await
}
