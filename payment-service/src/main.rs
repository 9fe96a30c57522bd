//! Thin entry point: configuration → telemetry → application → run until SIGTERM/Ctrl-C.
//! `--healthcheck` instead asks the running service's gRPC health service (exit 0 when SERVING).
use payment_service::{config::Config, healthcheck, shutdown, startup::Application, telemetry};

// The system allocator: this service's throughput is bound by its database writes, not by allocation
// (mimalloc, which doubled the read paths' throughput in the gateway and the product-service, only
// raised this service's peak RSS, by ~8 MB under order load).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("payment-service: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if std::env::args().any(|arg| arg == "--healthcheck") {
        let serving = healthcheck::probe(config.host, config.port).await;
        return if serving { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE };
    }
    let telemetry = telemetry::init(config.log_format, &config.tracing);
    let result = async {
        let app = Application::build(config).await?;
        app.run_until(shutdown::signal()).await
    }
    .await;
    // After the servers and the relay stopped: their last spans leave before exit (the flush blocks: off the
    // executor).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "payment-service stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
