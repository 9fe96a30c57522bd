//! Stopping: the future that resolves when the process is asked to stop (Ctrl-C or SIGTERM), and the signal that
//! tells background tasks to finish their work.

/// The future that tells a service to stop, as `service_main` hands it over.
pub type Signal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Creates the pair that tells background tasks to finish: the application keeps the [`StopHandle`], each task
/// gets a clone of the [`StopSignal`].
pub fn stop_channel() -> (StopHandle, StopSignal) {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    (StopHandle(sender), StopSignal(receiver))
}

pub struct StopHandle(tokio::sync::watch::Sender<bool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

#[derive(Clone)]
pub struct StopSignal(tokio::sync::watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once stopping was requested (or the handle is gone, which means the same).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}
