//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead probes the running service's `/ready` (exit 0 when ready).
use api_gateway::{config::Config, healthcheck, startup::Application};
use platform::service_main;

/// mimalloc instead of glibc's allocator: request handling allocates and frees many small buffers
/// across threads, which glibc's malloc made the largest single cost in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main::run(
        "api-gateway",
        Config::from_source,
        |config| &config.common,
        async |config: &Config| healthcheck::probe(config.common.host, config.common.port, "/ready"),
        async |config, stop| Application::build(config).await?.run_until(stop).await,
    )
    .await
}
