//! The `main` of every service, once: configuration (exit code 2 when it is invalid), `--healthcheck` (exit 0
//! when the running service answers ready), telemetry, then the service until Ctrl-C or SIGTERM; the last
//! spans are flushed before the process exits.
use std::process::ExitCode;

use crate::{
    config::{Common, ConfigError, ProcessEnv, Recorder, Source},
    shutdown, telemetry,
};

/// Exit code for a configuration the service refuses to start with.
pub const BAD_CONFIG: u8 = 2;

/// Runs a service binary. `parse` reads its configuration (from the process environment here); `probe`
/// answers `--healthcheck`; `serve` runs the service until the future it is given resolves (the stop signal).
/// `--print-env` prints every variable the configuration reads, one a line, and exits.
pub async fn run<C, P, S>(
    name: &str,
    parse: fn(&dyn Source) -> Result<C, ConfigError>,
    common: fn(&C) -> &Common,
    probe: P,
    serve: S,
) -> ExitCode
where
    P: AsyncFnOnce(&C) -> bool,
    S: AsyncFnOnce(C, shutdown::Signal) -> anyhow::Result<()>,
{
    if std::env::args().any(|arg| arg == "--print-env") {
        return match Recorder::variables_of(parse) {
            Ok(names) => {
                println!("{}", names.join("\n"));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{name}: its development defaults do not parse: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match parse(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: configuration error: {error}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    if std::env::args().any(|arg| arg == "--healthcheck") {
        return if probe(&config).await { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let settings = common(&config);
    let telemetry = telemetry::init(settings.log_format, &settings.tracing);
    let result = serve(config, Box::pin(shutdown::signal())).await;
    // After the servers and background tasks stopped: their last spans leave before exit (the flush blocks:
    // off the executor).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "{name} stopped with an error");
            ExitCode::FAILURE
        }
    }
}
