//! Launch and resume latency by result, measured around any [`Launcher`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use super::{Metrics, latency_histogram};
use crate::ids::{AppId, UserName};
use crate::launcher::{LaunchError, LaunchOutcome, Launcher};
use crate::model::{LaunchRequest, ResumeRequest};

type Labels = [(&'static str, &'static str); 2];

/// `direwolf_launch_duration_seconds{op="launch"|"resume", result}`: the time from the client's
/// request to its `sessionUrl0` (or failure). `result` is `ok`, the error's kind (`unknown_app`,
/// `not_running`, `unavailable`, `timeout`, `invalid`, `backend`), or `abandoned` when the client
/// hung up first.
#[derive(Debug, Clone)]
pub struct LaunchMetrics {
    durations: Family<Labels, Histogram>,
}

impl Default for LaunchMetrics {
    fn default() -> Self {
        LaunchMetrics {
            durations: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl LaunchMetrics {
    /// The family, registered in `metrics`, with empty `ok` histograms of both operations.
    pub fn register(metrics: &Metrics) -> Self {
        let this = LaunchMetrics::default();
        for op in ["launch", "resume"] {
            let _ = this.durations.get_or_create(&[("op", op), ("result", "ok")]);
        }
        metrics.register_with_unit(
            "launch_duration",
            "Launch and resume time to the stream URL, by operation and result.",
            Unit::Seconds,
            this.durations.clone(),
        );
        this
    }

    fn observe(&self, op: &'static str, result: &'static str, started: Instant) {
        self.durations
            .get_or_create(&[("op", op), ("result", result)])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The `result` label of a failed launch.
pub fn error_label(error: &LaunchError) -> &'static str {
    match error {
        LaunchError::UnknownApp(_) => "unknown_app",
        LaunchError::NotRunning => "not_running",
        LaunchError::Unavailable { .. } => "unavailable",
        LaunchError::Timeout => "timeout",
        LaunchError::Invalid(_) => "invalid",
        LaunchError::Backend(_) => "backend",
    }
}

/// Records the attempt when dropped: `abandoned` unless a result was set.
struct Attempt<'a> {
    metrics: &'a LaunchMetrics,
    op: &'static str,
    started: Instant,
    result: &'static str,
}

impl Attempt<'_> {
    fn end(mut self, outcome: &Result<LaunchOutcome, LaunchError>) {
        self.result = match outcome {
            Ok(_) => "ok",
            Err(e) => error_label(e),
        };
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.metrics.observe(self.op, self.result, self.started);
    }
}

/// A [`Launcher`] that times every launch and resume of the one it wraps.
#[derive(Debug)]
pub struct MeteredLauncher {
    inner: Arc<dyn Launcher>,
    metrics: LaunchMetrics,
}

impl MeteredLauncher {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Launcher>, metrics: LaunchMetrics) -> Self {
        MeteredLauncher { inner, metrics }
    }

    fn attempt(&self, op: &'static str) -> Attempt<'_> {
        Attempt {
            metrics: &self.metrics,
            op,
            started: Instant::now(),
            result: "abandoned",
        }
    }
}

#[async_trait]
impl Launcher for MeteredLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let attempt = self.attempt("launch");
        let outcome = self.inner.launch(request).await;
        attempt.end(&outcome);
        outcome
    }

    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let attempt = self.attempt("resume");
        let outcome = self.inner.resume(request).await;
        attempt.end(&outcome);
        outcome
    }

    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        self.inner.cancel(user).await
    }

    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        self.inner.current_app(user).await
    }
}
