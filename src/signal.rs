//! SIGTERM and SIGINT: how an operator (or Docker, or systemd) asks teal to stop.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next one and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// `teal run`: the first signal shuts everything down.
pub async fn cancel_on_stop(shutdown: CancellationToken) {
    let Ok(mut signals) = StopSignals::install() else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down");
    shutdown.cancel();
}
