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
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::Metrics;
use direwolf_core::metrics::sessions::track_phases_of;
use direwolf_core::relay::SharedPorts;
use direwolf_k8s::crd::SessionPorts;
use direwolf_k8s::exposure;
use direwolf_k8s::leader::{LEASE_NAME, LeaderElector, LeaseTiming};
use direwolf_k8s::operator::config::{
    self, DEFAULT_AGENT_IMAGE, DEFAULT_INIT_IMAGE, DEFAULT_PULSEAUDIO_IMAGE, DEFAULT_WOLF_IMAGE,
};
use direwolf_k8s::operator::{
    Exposure, GatewayExposure, GpuResource, Images, LoadBalancerExposure, Operator, OperatorConfig,
    PodSettings, PortRange, TrafficPolicy,
};
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

    /// Give every Session the one shared port set (RTSP 48010, control 47999, video 48100, audio
    /// 48200) instead of a block of `--port-range`, for proxies run with `--shared-ports`.
    /// Needs `--exposure relay`.
    #[arg(long)]
    pub shared_ports: bool,

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

    /// How each Session's four public stream ports reach its pod: `relay` (the proxies relay
    /// them; the proxies must run without `--no-relay`), `load-balancer` (a LoadBalancer Service
    /// per Session sharing the proxies' address) or `gateway` (Gateway API routes per Session on
    /// `--gateway`). Outside `relay`, Wolf listens on the allocated ports and the proxies must
    /// run with `--no-relay`.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = ExposureMode::Relay)]
    pub exposure: ExposureMode,

    /// With `--exposure load-balancer`: the sharing key of the Sessions' Services (Cilium
    /// `lbipam.cilium.io/sharing-key`, MetalLB `metallb.universe.tf/allow-shared-ip`); the
    /// proxies' Service's key (default: `direwolf`, the one `direwolf install` gives it).
    #[arg(long, value_name = "KEY")]
    pub lb_sharing_key: Option<String>,

    /// With `--exposure load-balancer`: the address the Sessions' Services ask for (Cilium
    /// `lbipam.cilium.io/ips`, MetalLB `metallb.universe.tf/loadBalancerIPs`), the proxies'
    /// address; a Service given another gets `LoadBalancerAddressAssigned` False.
    #[arg(long, value_name = "IP")]
    pub lb_ip: Option<IpAddr>,

    /// With `--exposure load-balancer`: seconds a Session's Service may wait for a
    /// load-balancer address before its Session gets `LoadBalancerAddressAssigned` False.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lb_address_wait: Option<u64>,

    /// With `--exposure load-balancer`: the Sessions' Services' `externalTrafficPolicy`.
    /// `local` keeps the client's address for Wolf; MetalLB shares an address only between
    /// Services that are all `cluster`, so with MetalLB give `cluster` here and to the proxies'
    /// Service (`direwolf install --lb-traffic-policy cluster` does both).
    #[arg(long, value_name = "POLICY", value_enum)]
    pub lb_traffic_policy: Option<LbTrafficPolicy>,

    /// With `--exposure gateway`: the Gateway the Sessions' routes attach to, `NAMESPACE/NAME`
    /// (it needs a listener on every port of `--port-range`: TCP for each block's first port,
    /// UDP for the other three).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub gateway: Option<GatewayExposure>,

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

/// The `--exposure` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExposureMode {
    /// The proxies relay every Session's ports (the default).
    Relay,
    /// A LoadBalancer Service per Session, sharing the proxies' address.
    LoadBalancer,
    /// Gateway API routes per Session on `--gateway`.
    Gateway,
}

/// The `--lb-traffic-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LbTrafficPolicy {
    /// `externalTrafficPolicy: Local` (the default): the client's address is kept.
    Local,
    /// `externalTrafficPolicy: Cluster`: what MetalLB needs to share an address.
    Cluster,
}

impl LbTrafficPolicy {
    /// The operator's value.
    pub fn policy(self) -> TrafficPolicy {
        match self {
            LbTrafficPolicy::Local => TrafficPolicy::Local,
            LbTrafficPolicy::Cluster => TrafficPolicy::Cluster,
        }
    }
}

/// The exposure the flags describe, or why they contradict each other (one line).
pub fn exposure(args: &OperatorArgs) -> Result<Exposure, String> {
    let lb_flags = [
        ("--lb-sharing-key", args.lb_sharing_key.is_some()),
        ("--lb-ip", args.lb_ip.is_some()),
        ("--lb-address-wait", args.lb_address_wait.is_some()),
        ("--lb-traffic-policy", args.lb_traffic_policy.is_some()),
    ];
    let mode = args.exposure;
    if mode != ExposureMode::LoadBalancer
        && let Some((flag, _)) = lb_flags.iter().find(|(_, given)| *given)
    {
        return Err(format!("{flag} needs --exposure load-balancer"));
    }
    if mode != ExposureMode::Gateway && args.gateway.is_some() {
        return Err("--gateway needs --exposure gateway".to_owned());
    }
    if mode != ExposureMode::Relay && args.shared_ports {
        return Err("--shared-ports is a mode of the proxies' relay: it needs --exposure relay".to_owned());
    }
    if mode != ExposureMode::Relay && args.proxy_service.is_some() {
        return Err(
            "--proxy-service publishes the ports the proxies relay: it needs --exposure relay (unset DIREWOLF_PROXY_SERVICE)"
                .to_owned(),
        );
    }
    Ok(match mode {
        ExposureMode::Relay => Exposure::Relay,
        ExposureMode::LoadBalancer => {
            let defaults = LoadBalancerExposure::default();
            Exposure::LoadBalancer(LoadBalancerExposure {
                sharing_key: args.lb_sharing_key.clone().unwrap_or(defaults.sharing_key),
                ip: args.lb_ip,
                address_wait: args
                    .lb_address_wait
                    .map_or(defaults.address_wait, Duration::from_secs),
                traffic_policy: args
                    .lb_traffic_policy
                    .map_or(defaults.traffic_policy, LbTrafficPolicy::policy),
            })
        }
        ExposureMode::Gateway => Exposure::Gateway(
            args.gateway
                .clone()
                .ok_or("--exposure gateway needs --gateway NAMESPACE/NAME")?,
        ),
    })
}

/// Moonlight's ports as a Session's `status.ports` (the proxies' shared set).
fn shared_session_ports() -> SessionPorts {
    let shared = SharedPorts::default();
    let port = |p: u16| NonZeroU16::new(p).expect("Moonlight's ports are not 0");
    SessionPorts {
        rtsp: port(shared.rtsp),
        control: port(shared.control),
        video_rtp: port(shared.video),
        audio_rtp: port(shared.audio),
    }
}

/// The operator's configuration from the flags, in `namespace`.
fn config(args: &OperatorArgs, namespace: &str) -> OperatorConfig {
    OperatorConfig {
        exposure: exposure(args).unwrap_or_default(),
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
        shared_ports: args.shared_ports.then(shared_session_ports),
        ..OperatorConfig::new(namespace)
    }
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster service account)")?;
    exposure(&args).map_err(anyhow::Error::msg)?;
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
        exposure = config.exposure.name(),
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
    fn exposure_flags_and_their_refusals() {
        let relay = parse(&["--proxy-service", "direwolf-proxy"]).expect("parse");
        assert_eq!(exposure(&relay), Ok(Exposure::Relay));
        let lb = parse(&[
            "--exposure",
            "load-balancer",
            "--lb-sharing-key",
            "games",
            "--lb-ip",
            "203.0.113.7",
            "--lb-address-wait",
            "5",
            "--lb-traffic-policy",
            "cluster",
        ])
        .expect("parse");
        let Ok(Exposure::LoadBalancer(settings)) = exposure(&lb) else {
            panic!("load-balancer mode");
        };
        assert_eq!(settings.sharing_key, "games");
        assert_eq!(settings.ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(settings.address_wait, Duration::from_secs(5));
        assert_eq!(settings.traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(config(&lb, "games").exposure.name(), "load-balancer");
        let default_lb = parse(&["--exposure", "load-balancer"]).expect("parse");
        let Ok(Exposure::LoadBalancer(settings)) = exposure(&default_lb) else {
            panic!("load-balancer mode");
        };
        assert_eq!(settings.sharing_key, "direwolf");
        let gateway = parse(&["--exposure", "gateway", "--gateway", "infra/public"]).expect("parse");
        assert!(matches!(exposure(&gateway), Ok(Exposure::Gateway(g)) if g.to_string() == "infra/public"));
        for (flags, says) in [
            (
                &["--lb-ip", "203.0.113.7"][..],
                "--lb-ip needs --exposure load-balancer",
            ),
            (
                &[
                    "--exposure",
                    "gateway",
                    "--lb-sharing-key",
                    "x",
                    "--gateway",
                    "a/b",
                ],
                "--lb-sharing-key needs",
            ),
            (
                &["--gateway", "infra/public"],
                "--gateway needs --exposure gateway",
            ),
            (&["--exposure", "gateway"], "needs --gateway NAMESPACE/NAME"),
            (&["--lb-traffic-policy", "cluster"], "--lb-traffic-policy needs"),
            (
                &["--exposure", "load-balancer", "--proxy-service", "p"],
                "--proxy-service publishes",
            ),
        ] {
            let args = parse(flags).expect("parse");
            let err = exposure(&args).expect_err(says);
            assert!(err.contains(says) && !err.contains('\n'), "{flags:?}: {err}");
        }
        assert!(parse(&["--exposure", "nodeport"]).is_err());
        assert!(parse(&["--exposure", "gateway", "--gateway", "public"]).is_err());
    }

    #[test]
    fn every_lease_duration_gives_a_valid_timing() {
        for seconds in 2..=600 {
            lease_timing(seconds).validate().expect("valid timing");
        }
        assert_eq!(lease_timing(15).renew_deadline, Duration::from_secs(10));
    }
}
