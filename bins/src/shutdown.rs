//! SIGINT and SIGTERM, the stop of every long-running subcommand: caught from
//! [`Shutdown::install`] on, so a stop that arrives during start-up is still a clean one.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::info;

/// SIGINT and SIGTERM, caught from [`Shutdown::install`] on.
#[derive(Debug)]
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Replaces the default action (exit at once) of SIGINT and SIGTERM. Needs a runtime.
    ///
    /// # Errors
    ///
    /// A signal handler cannot be installed.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// Completes on the first SIGINT or SIGTERM (including one received before this is polled).
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => info!("SIGINT received, shutting down"),
            _ = self.terminate.recv() => info!("SIGTERM received, shutting down"),
        }
    }
}
