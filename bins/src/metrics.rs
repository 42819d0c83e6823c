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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use direwolf_core::metrics::sessions::PhaseGauge;
    use direwolf_core::metrics::{LaunchMetrics, PairingMetrics, RelayCollector, WolfApiMetrics};
    use direwolf_core::relay::{Relay, RelayConfig};

    use super::*;

    /// Every family any component registers, by the name its `# TYPE` line gives.
    fn every_family() -> BTreeSet<String> {
        let metrics = Metrics::new();
        LaunchMetrics::register(&metrics);
        PairingMetrics::register(&metrics);
        PhaseGauge::register(&metrics);
        // Its endpoints are known once called.
        direwolf_wolf_client::CallObserver::call(
            &WolfApiMetrics::register(&metrics),
            "/api/v1/apps",
            std::time::Duration::from_millis(1),
            direwolf_wolf_client::CallOutcome::Ok,
        );
        let relay = Relay::new(RelayConfig::new(
            "127.0.0.1".parse().expect("an IP"),
            40000..=40003,
        ))
        .expect("relay");
        metrics.register_collector(RelayCollector::new(relay));
        direwolf_k8s::operator::Metrics::default().register(&metrics);
        metrics
            .render()
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next().map(str::to_owned))
            .collect()
    }

    /// The family a sample or family name belongs to (`_total`, `_bucket`, `_count`, `_sum` off).
    fn family(name: &str) -> String {
        ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name)
            .to_owned()
    }

    /// Every `direwolf_…` name in `text`.
    fn names_in(text: &str) -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("direwolf_") && word.len() > "direwolf_".len())
            .map(family)
            .collect()
    }

    fn repo_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_dashboard_and_the_docs_name_exactly_the_families_the_code_exports() {
        let exported = every_family();
        assert!(exported.len() >= 16, "{exported:?}");
        let dashboard: serde_json::Value =
            serde_json::from_str(&repo_file("deploy/grafana/direwolf.json")).expect("dashboard JSON");
        let queries: Vec<&str> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
            .filter_map(|target| target["expr"].as_str())
            .collect();
        let charted = names_in(&queries.join("\n"));
        assert_eq!(
            charted, exported,
            "the dashboard charts every exported family and nothing else"
        );

        let docs = repo_file("docs/configuration.md");
        let section = docs.split("\n## Metrics\n").nth(1).expect("a Metrics section");
        assert_eq!(
            names_in(section),
            exported,
            "docs/configuration.md § Metrics lists every family"
        );
    }
}
