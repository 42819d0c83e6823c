//! `--metrics-bind`, which every long-running subcommand takes: its Prometheus metrics on a port
//! of their own (the health port serves them too, at `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::Metrics;

/// How old the `direwolf_sessions{phase}` gauge may be.
pub const PHASE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the metrics are served.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve the Prometheus metrics (`/metrics`, OpenMetrics text, plain HTTP) on this address
    /// and port, apart from the health port; port 0 picks a free one. Default: only on the health
    /// port, if any.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_bind: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Binds the metrics port, when one was asked for. Stops serving when the result is dropped.
    pub async fn serve(&self, metrics: &Arc<Metrics>) -> anyhow::Result<Option<HealthServer>> {
        let Some(addr) = self.metrics_bind else {
            return Ok(None);
        };
        let server = HealthServer::bind(addr, Probes::metrics_only(metrics.clone()))
            .await
            .with_context(|| format!("cannot bind the metrics port {addr}"))?;
        Ok(Some(server))
    }
}
