//! Prometheus metrics: one registry per process, the metric families every component shares,
//! and the adapters that feed them from the core traits.
//!
//! | Family | Fed by |
//! |---|---|
//! | `direwolf_launch_duration_seconds{op,result}` | [`MeteredLauncher`], around any [`Launcher`](crate::launcher::Launcher) |
//! | `direwolf_pairing_attempts_total{outcome}` | [`PairingMetrics`], by the Moonlight server |
//! | `direwolf_sessions{phase}` | [`sessions::track_phases`], from any [`SessionStore`](crate::store::SessionStore) |
//! | `direwolf_relay_*` (packets, bytes, drops by reason and stream) | `RelayCollector` (feature `relay`) |
//! | `direwolf_wolf_api_request_duration_seconds{endpoint,outcome}` | `WolfApiMetrics` (feature `wolf-metrics`), a Wolf client observer |
//!
//! The operator adds its reconcile families (`direwolf-k8s`). The text is OpenMetrics 1.0
//! ([`CONTENT_TYPE`]), which Prometheus scrapes natively; [`Metrics::render`] gives it.
//!
//! ```
//! use direwolf_core::metrics::{Metrics, PairingMetrics, PairingOutcome};
//!
//! let metrics = Metrics::new();
//! let pairing = PairingMetrics::register(&metrics);
//! pairing.record(PairingOutcome::Paired);
//! assert!(metrics.render().contains(r#"direwolf_pairing_attempts_total{outcome="paired"} 1"#));
//! ```

use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

mod launch;
mod pairing;
#[cfg(feature = "relay")]
mod relay;
pub mod sessions;
#[cfg(feature = "wolf-metrics")]
mod wolf;

pub use launch::{LaunchMetrics, MeteredLauncher};
pub use pairing::{PairingMetrics, PairingOutcome};
#[cfg(feature = "relay")]
pub use relay::RelayCollector;
#[cfg(feature = "wolf-metrics")]
pub use wolf::WolfApiMetrics;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metric registry (every name gets the prefix `direwolf_`). Register at start-up;
/// render on every scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: RwLock<Registry>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics {
            registry: RwLock::new(Registry::with_prefix("direwolf")),
        })
    }

    /// Adds a metric family; `name` without the prefix or the `_total` of a counter.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().register(name, help, metric);
    }

    /// Adds a metric family whose name ends in its unit (`_seconds`, `_bytes`).
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.registry.write().register_with_unit(name, help, unit, metric);
    }

    /// Adds a collector, asked for its values on every scrape.
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry.write().register_collector(Box::new(collector));
    }

    /// Every family in the OpenMetrics text format, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; a collector that fails leaves a partial text, which
        // a scraper refuses: better than hiding the rest.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry.read());
        text
    }
}

/// Latency buckets from 1 ms to 60 s: Wolf calls at the low end, cold launches at the top.
pub fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 45.0, 60.0,
    ])
}

#[cfg(test)]
mod tests;
