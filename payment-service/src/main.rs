//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead asks the running service's gRPC health service (exit 0 when SERVING).
use payment_service::{config::Config, healthcheck, startup::Application};
use platform::{config::Common, service_main};

// The system allocator: this service's throughput is bound by its database writes, not by allocation
// (mimalloc, which doubled the read paths' throughput in the gateway and the product-service, only
// raised this service's peak RSS, by ~8 MB under order load).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::from_env();
    // With GRPC_TLS_* the probe speaks TLS to the port, trusting exactly the configured certificate.
    let tls = config.as_ref().ok().and_then(|config| config.grpc_tls.clone());
    service_main::run(
        "payment-service",
        config,
        |config| &config.common,
        async |common: &Common| healthcheck::probe(common.host, common.port, tls.as_ref()).await,
        async |config, stop| Application::build(config).await?.run_until(stop).await,
    )
    .await
}
