//! `direwolf_sessions{phase}`: how many sessions are in each phase, from any session store.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;

use super::Metrics;
use crate::model::SessionPhase;
use crate::store::SessionStore;

/// Every phase, in life order.
const PHASES: [SessionPhase; 6] = [
    SessionPhase::Pending,
    SessionPhase::Initializing,
    SessionPhase::WaitForPing,
    SessionPhase::Streaming,
    SessionPhase::Paused,
    SessionPhase::Ended,
];

/// The `phase` label: the phase's name as in the Session resource's `status.phase`.
pub fn phase_label(phase: SessionPhase) -> &'static str {
    match phase {
        SessionPhase::Pending => "Pending",
        SessionPhase::Initializing => "Initializing",
        SessionPhase::WaitForPing => "WaitForPing",
        SessionPhase::Streaming => "Streaming",
        SessionPhase::Paused => "Paused",
        SessionPhase::Ended => "Ended",
    }
}

/// `direwolf_sessions{phase}`, every phase reported, zeros included.
#[derive(Debug, Clone)]
pub struct PhaseGauge {
    gauge: Family<[(&'static str, &'static str); 1], Gauge>,
}

impl PhaseGauge {
    /// The family, registered in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let gauge = Family::default();
        metrics.register(
            "sessions",
            "Sessions by phase (refreshed every few seconds).",
            gauge.clone(),
        );
        let this = PhaseGauge { gauge };
        this.set([]);
        this
    }

    /// Sets the gauge to the count of each phase in `phases`.
    pub fn set(&self, phases: impl IntoIterator<Item = SessionPhase>) {
        let mut counts = [0i64; PHASES.len()];
        for phase in phases {
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in PHASES.iter().zip(counts) {
            self.gauge
                .get_or_create(&[("phase", phase_label(*phase))])
                .set(count);
        }
    }
}

/// Registers `direwolf_sessions{phase}` and keeps it current from `store`, listed every `every`
/// (so the gauge is at most that old). A store that fails leaves the last values and is retried
/// at the next tick. The task ends when the returned handle is aborted.
pub fn track_phases(store: Arc<dyn SessionStore>, metrics: &Metrics, every: Duration) -> JoinHandle<()> {
    let gauge = PhaseGauge::register(metrics);
    every_tick(every, move || {
        let (store, gauge) = (store.clone(), gauge.clone());
        async move {
            match store.list().await {
                Ok(sessions) => gauge.set(sessions.iter().map(|s| s.phase)),
                Err(e) => tracing::debug!(error = %e, "cannot list sessions for the phase gauge"),
            }
        }
    })
}

/// [`track_phases`] over a source read from memory (a watch's cache), without a store's costs.
pub fn track_phases_of(
    source: impl Fn() -> Vec<SessionPhase> + Send + 'static,
    metrics: &Metrics,
    every: Duration,
) -> JoinHandle<()> {
    let gauge = PhaseGauge::register(metrics);
    every_tick(every, move || {
        gauge.set(source());
        std::future::ready(())
    })
}

/// Runs `tick` now and then every `every` (a late tick delays the next), in a task of its own.
fn every_tick<F, Fut>(every: Duration, mut tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            tick().await;
        }
    })
}
