//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead asks the running service's gRPC health service (exit 0 when SERVING).
use payment_service::{config::Config, healthcheck, startup::Application};
use platform::service_main;

// The system allocator: this service's throughput is bound by its database writes, not by allocation
// (mimalloc, which doubled the read paths' throughput in the gateway and the product-service, only
// raised this service's peak RSS, by ~8 MB under order load).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main::run(
        "payment-service",
        Config::from_source,
        |config| &config.common,
        // With GRPC_TLS_* the probe speaks TLS to the port, trusting exactly the configured certificate.
        async |config: &Config| {
            healthcheck::probe(config.common.host, config.common.port, config.grpc_tls.as_ref()).await
        },
        async |config, stop| Application::build(config).await?.run_until(stop).await,
    )
    .await
}
