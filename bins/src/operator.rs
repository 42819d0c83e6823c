//! `direwolf operator`: the Session operator of a Kubernetes installation
//! (`docs/protocol/kubernetes.md` § The operator): for every Session of one namespace it allocates
//! a port block, claims the home, creates the agent's account and the stream pod, follows the pod,
//! and ends the Session when its stream cannot run.
//!
//! Its replicas elect one leader on the `direwolf-controller` Lease; only the leader reconciles
//! and, with `--proxy-service`, publishes the Sessions' stream ports on the proxies' Service. The
//! health port ([`direwolf_core::health`], `--health-bind`) answers `/livez` (always 200),
//! `/readyz` (200 once the caches of a leading operator have synced, or while standing by) and
//! `/metrics` (the reconciler's counters).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::Metrics;
use direwolf_core::metrics::sessions::track_phases_of;
use direwolf_k8s::exposure;
use direwolf_k8s::leader::{LEASE_NAME, LeaderElector, LeaseTiming};
use direwolf_k8s::operator::config::{
    self, DEFAULT_AGENT_IMAGE, DEFAULT_INIT_IMAGE, DEFAULT_PULSEAUDIO_IMAGE, DEFAULT_WOLF_IMAGE,
};
use direwolf_k8s::operator::{GpuResource, Images, Operator, OperatorConfig, PodSettings, PortRange};
use direwolf_k8s::watch::Watches;
use tokio::sync::watch;
use tracing::info;

use crate::metrics::{MetricsArgs, PHASE_REFRESH};
use crate::shutdown::Shutdown;

#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// The namespace whose Sessions are reconciled (default: the kubeconfig context's
    /// namespace, else `default`).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// This replica's identity in Events (and leader election); default: the host name.
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub holder_identity: Option<String>,

    /// Public ports handed out to Sessions, four contiguous ports each.
    #[arg(long, value_name = "FIRST-LAST", default_value = "40000-40999")]
    pub port_range: PortRange,

    /// Image of the `wolf` container.
    #[arg(long, value_name = "IMAGE", env = "WOLF_IMAGE", default_value = DEFAULT_WOLF_IMAGE)]
    pub wolf_image: String,

    /// Image of the `wolf-agent` container (the direwolf image, run as `direwolf agent`).
    #[arg(long, value_name = "IMAGE", env = "AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,

    /// Image of the `pulseaudio` container.
    #[arg(long, value_name = "IMAGE", env = "PULSEAUDIO_IMAGE", default_value = DEFAULT_PULSEAUDIO_IMAGE)]
    pub pulseaudio_image: String,

    /// Image of the `init` container.
    #[arg(long, value_name = "IMAGE", env = "INIT_IMAGE", default_value = DEFAULT_INIT_IMAGE)]
    pub init_image: String,

    /// An extended resource the `wolf` container asks for, e.g. `nvidia.com/gpu=1` (default:
    /// none; many installations give the GPU through the User's wolf policy instead).
    #[arg(long, value_name = "NAME=COUNT")]
    pub gpu_resource: Option<GpuResource>,

    /// Node selector of stream pods, `key=value[,key=value...]`.
    #[arg(long, value_name = "K=V", value_parser = config::parse_node_selector)]
    pub stream_node_selector: Option<BTreeMap<String, String>>,

    /// Seconds a Session may take to a Ready pod and a stream URL before it ends (keep it below
    /// the proxy's launch timeout, 45 s by default).
    #[arg(long, value_name = "SECONDS", default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub start_deadline: u64,

    /// The proxies' LoadBalancer Service on which every Session's stream ports are published
    /// (none: the installation opens the port range itself).
    #[arg(long, value_name = "NAME", env = "DIREWOLF_PROXY_SERVICE")]
    pub proxy_service: Option<String>,

    /// Seconds a leader's Lease lasts without renewal: the failover time after a crash (the
    /// renew deadline is two thirds of it, the retry period a seventh).
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub lease_duration: u64,

    /// Address and port of the health port (`/livez`, `/readyz`, `/metrics`; plain HTTP); port
    /// 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub health_bind: SocketAddr,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

pub fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(operator(args))
}

/// This host's name (the default identity).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "direwolf-operator".to_owned())
}

/// The operator's configuration from the flags, in `namespace`.
fn config(args: &OperatorArgs, namespace: &str) -> OperatorConfig {
    OperatorConfig {
        port_range: args.port_range,
        pod: PodSettings {
            images: Images {
                wolf: args.wolf_image.clone(),
                agent: args.agent_image.clone(),
                pulseaudio: args.pulseaudio_image.clone(),
                init: args.init_image.clone(),
            },
            gpu: args.gpu_resource.clone(),
            node_selector: args.stream_node_selector.clone().unwrap_or_default(),
        },
        start_deadline: Duration::from_secs(args.start_deadline),
        instance: Some(args.holder_identity.clone().unwrap_or_else(hostname)),
        ..OperatorConfig::new(namespace)
    }
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster service account)")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let config = config(&args, &namespace);
    let operator = Operator::new(client.clone(), config.clone());
    let metrics = Metrics::new();
    operator.metrics().register(&metrics);
    let phases = track_phases_of(
        {
            let operator = operator.clone();
            move || operator.session_phases()
        },
        &metrics,
        PHASE_REFRESH,
    );
    let health = start_health(&args, &operator, metrics.clone()).await?;
    let metrics_port = args.metrics.serve(&metrics).await?;
    info!(
        namespace,
        identity = config.instance.as_deref().unwrap_or(""),
        ports = %config.port_range,
        start_deadline = ?config.start_deadline,
        "direwolf operator started"
    );
    let identity = config.instance.clone().unwrap_or_else(hostname);
    let leadership = LeaderElector::new(
        client.clone(),
        &namespace,
        LEASE_NAME,
        &identity,
        lease_timing(args.lease_duration),
    )
    .context("cannot start the leader election")?
    .spawn();
    let exposure = args.proxy_service.clone().map(|service| {
        let watches = Watches::new(client.clone(), &namespace);
        tokio::spawn(expose_while_leading(watches, service, leadership.subscribe()))
    });
    let result = operator.run(leadership.subscribe(), shutdown.wait()).await;
    if let Some(task) = exposure {
        task.abort();
    }
    leadership.release().await;
    health.stop();
    phases.abort();
    drop(metrics_port);
    result.context("the operator cannot run")?;
    Ok(())
}

/// Binds the health port: `/readyz` follows [`Operator::ready`], `/metrics` serves `metrics`.
async fn start_health(
    args: &OperatorArgs,
    operator: &Operator,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HealthServer> {
    let ready = operator.clone();
    let probes = Probes::new(move || {
        if ready.ready() {
            Ok(())
        } else {
            Err("the leader's caches have not synced".to_owned())
        }
    })
    .with_metrics(metrics);
    HealthServer::bind(args.health_bind, probes)
        .await
        .with_context(|| format!("cannot bind the health port {}", args.health_bind))
}

/// The election's clocks for a lease of `seconds`: renew deadline ⅔, retry period 1/7.
fn lease_timing(seconds: u64) -> LeaseTiming {
    let lease_duration = Duration::from_secs(seconds);
    LeaseTiming {
        lease_duration,
        renew_deadline: lease_duration * 2 / 3,
        retry_period: lease_duration / 7,
    }
}

/// Publishes the stream ports on `service` during each term of leadership.
async fn expose_while_leading(watches: Watches, service: String, mut leading: watch::Receiver<bool>) {
    while leading.wait_for(|l| *l).await.is_ok() {
        let mut term = leading.clone();
        let lost = async move {
            let _ = term.wait_for(|l| !*l).await;
        };
        exposure::run(watches.clone(), service.clone(), lost).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        operator: OperatorArgs,
    }

    fn parse(args: &[&str]) -> Result<OperatorArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("operator").chain(args.iter().copied())).map(|w| w.operator)
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse(&[]).expect("defaults parse");
        let defaults = config(&args, "games");
        assert_eq!(defaults.port_range, PortRange::default());
        assert_eq!(defaults.start_deadline, Duration::from_secs(40));
        assert_eq!(defaults.pod.gpu, None);
        assert!(defaults.pod.node_selector.is_empty());
        let args = parse(&[
            "--namespace",
            "games",
            "--holder-identity",
            "op-0",
            "--port-range",
            "41000-41099",
            "--wolf-image",
            "wolf:test",
            "--gpu-resource",
            "nvidia.com/gpu=1",
            "--stream-node-selector",
            "type=kwok",
            "--start-deadline",
            "20",
        ])
        .expect("flags parse");
        let config = config(&args, args.namespace.as_deref().unwrap_or("default"));
        assert_eq!(config.namespace, "games");
        assert_eq!(config.instance.as_deref(), Some("op-0"));
        assert_eq!(config.port_range.blocks(), 25);
        assert_eq!(config.pod.images.wolf, "wolf:test");
        assert_eq!(config.pod.gpu.as_ref().map(|g| g.count), Some(1));
        assert_eq!(
            config.pod.node_selector.get("type").map(String::as_str),
            Some("kwok")
        );
        assert!(parse(&["--port-range", "1-2"]).is_err());
        assert!(parse(&["--gpu-resource", "nvidia.com/gpu"]).is_err());
        assert!(parse(&["--start-deadline", "0"]).is_err());
        assert!(parse(&["--lease-duration", "1"]).is_err());
    }

    #[test]
    fn every_lease_duration_gives_a_valid_timing() {
        for seconds in 2..=600 {
            lease_timing(seconds).validate().expect("valid timing");
        }
        assert_eq!(lease_timing(15).renew_deadline, Duration::from_secs(10));
    }
}
