//! Wolf API call latency and errors, from the Wolf client's observer.

use std::time::Duration;

use direwolf_wolf_client::{CallObserver, CallOutcome};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use super::{Metrics, latency_histogram};

type Labels = [(&'static str, &'static str); 2];

/// `direwolf_wolf_api_request_duration_seconds{endpoint,outcome}`: every call to a Wolf's API
/// (`outcome`: `ok`, `status_4xx`, `status_5xx`, `status_other`, `timeout`, `transport`); its
/// `_count` with an outcome other than `ok` is the error count. Give it to
/// `WolfClientBuilder::with_observer`.
#[derive(Debug, Clone)]
pub struct WolfApiMetrics {
    durations: Family<Labels, Histogram>,
}

impl WolfApiMetrics {
    /// The family, registered in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let durations = Family::<Labels, Histogram>::new_with_constructor(latency_histogram);
        metrics.register_with_unit(
            "wolf_api_request_duration",
            "Calls to Wolf's API by endpoint and outcome.",
            Unit::Seconds,
            durations.clone(),
        );
        WolfApiMetrics { durations }
    }
}

impl CallObserver for WolfApiMetrics {
    fn call(&self, endpoint: &'static str, elapsed: Duration, outcome: CallOutcome) {
        self.durations
            .get_or_create(&[("endpoint", endpoint), ("outcome", outcome.label())])
            .observe(elapsed.as_secs_f64());
    }
}
