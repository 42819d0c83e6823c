//! The agent's health port: `/livez` (200 while the process runs) and `/readyz` (200 once
//! Wolf's socket accepted a connection, 503 before), plain HTTP through
//! [`direwolf_core::health`], nothing else. Wolf's API is never served here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::Metrics;

use super::error::AgentError;

/// Whether Wolf's socket has accepted a connection; shared by the agent and the listener.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the agent ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds `addr` and serves the probes until the returned server is stopped or dropped.
///
/// # Errors
/// [`AgentError::Health`] if the port cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    ready: Readiness,
    metrics: Arc<Metrics>,
) -> Result<HealthServer, AgentError> {
    let probes = Probes::new(move || {
        if ready.is_ready() {
            Ok(())
        } else {
            Err("Wolf's socket does not accept connections yet".to_owned())
        }
    })
    .with_metrics(metrics);
    HealthServer::bind(addr, probes)
        .await
        .map_err(|source| AgentError::Health { addr, source })
}

/// Binds `addr` and serves `/metrics` alone.
///
/// # Errors
/// [`AgentError::Health`] if the port cannot be bound.
pub async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<HealthServer, AgentError> {
    HealthServer::bind(addr, Probes::metrics_only(metrics))
        .await
        .map_err(|source| AgentError::Health { addr, source })
}
