//! The operator's configuration: the port range, the images of the injected containers, the
//! GPU request of the `wolf` container, the node selector of stream pods and the deadlines.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::crd::SessionPorts;

/// The image of Wolf used when none is configured.
pub const DEFAULT_WOLF_IMAGE: &str = "ghcr.io/games-on-whales/wolf:stable";
/// The image of the agent used when none is configured (the direwolf image: `direwolf agent`).
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/games-on-whales/direwolf:latest";
/// The image of PulseAudio used when none is configured.
pub const DEFAULT_PULSEAUDIO_IMAGE: &str = "ghcr.io/games-on-whales/pulseaudio:edge";
/// The image of the init container used when none is configured.
pub const DEFAULT_INIT_IMAGE: &str = "ghcr.io/games-on-whales/base:edge";

/// A range of public ports, cut into blocks of four contiguous ports (one block per Session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl Default for PortRange {
    /// 40000–40999: 250 Sessions.
    fn default() -> Self {
        PortRange {
            first: 40000,
            last: 40999,
        }
    }
}

impl PortRange {
    /// How many four-port blocks fit in the range.
    pub fn blocks(&self) -> u32 {
        (u32::from(self.last) + 1 - u32::from(self.first)) / 4
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why a configuration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl FromStr for PortRange {
    type Err = ConfigError;

    /// `FIRST-LAST`, both in 1..=65535, holding at least one block of four ports.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError(format!("port range {s:?} is not FIRST-LAST (e.g. 40000-40999)"));
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first.saturating_add(3) {
            return Err(ConfigError(format!(
                "port range {s:?} must start above 0 and hold at least four ports"
            )));
        }
        Ok(PortRange { first, last })
    }
}

/// An extended resource and a count asked for the `wolf` container (e.g. `nvidia.com/gpu=1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuResource {
    /// The resource name.
    pub name: String,
    /// How many.
    pub count: u32,
}

impl FromStr for GpuResource {
    type Err = ConfigError;

    /// `NAME=COUNT` with COUNT ≥ 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError(format!(
                "GPU resource {s:?} is not NAME=COUNT (e.g. nvidia.com/gpu=1)"
            ))
        };
        let (name, count) = s.split_once('=').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if name.trim().is_empty() || count == 0 {
            return Err(bad());
        }
        Ok(GpuResource {
            name: name.trim().to_owned(),
            count,
        })
    }
}

/// Parses `k=v[,k=v...]` into a node selector.
///
/// # Errors
/// An element without `=` or with an empty key.
pub fn parse_node_selector(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut selector = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| ConfigError(format!("node selector element {pair:?} is not KEY=VALUE")))?;
        selector.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(selector)
}

/// The images of the containers the operator injects into every stream pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Wolf.
    pub wolf: String,
    /// The wolf-agent (the direwolf image running `direwolf agent`).
    pub agent: String,
    /// PulseAudio.
    pub pulseaudio: String,
    /// The init container.
    pub init: String,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            wolf: DEFAULT_WOLF_IMAGE.to_owned(),
            agent: DEFAULT_AGENT_IMAGE.to_owned(),
            pulseaudio: DEFAULT_PULSEAUDIO_IMAGE.to_owned(),
            init: DEFAULT_INIT_IMAGE.to_owned(),
        }
    }
}

/// What a stream pod is built with besides the Session, App and User.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSettings {
    /// The injected containers' images.
    pub images: Images,
    /// An extended resource the `wolf` container asks for (many installations give the GPU
    /// through the User's wolf policy instead).
    pub gpu: Option<GpuResource>,
    /// Node selector added to every stream pod.
    pub node_selector: BTreeMap<String, String>,
}

/// The sharing key of the proxies' LoadBalancer Service (Cilium LB-IPAM, MetalLB): a Service
/// carrying the same key may share the proxies' address.
pub const DEFAULT_LB_SHARING_KEY: &str = "direwolf";

/// How a Session's four public stream ports reach its pod (`docs/protocol/kubernetes.md`
/// § Exposure modes). One mode per installation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Exposure {
    /// Every proxy replica relays the ports to Wolf's default ports in the pod (the proxies run
    /// the relay; the operator may publish the ports on the proxies' Service).
    #[default]
    Relay,
    /// A LoadBalancer Service per Session sharing the proxies' address; Wolf listens on the
    /// allocated ports themselves.
    LoadBalancer(LoadBalancerExposure),
    /// Gateway API routes per Session attached to one Gateway, to a ClusterIP Service per
    /// Session; Wolf listens on the allocated ports themselves.
    Gateway(GatewayExposure),
}

impl Exposure {
    /// The mode's name as the `--exposure` flag spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Exposure::Relay => "relay",
            Exposure::LoadBalancer(_) => "load-balancer",
            Exposure::Gateway(_) => "gateway",
        }
    }

    /// Whether Wolf in the stream pod listens on the Session's public ports (every mode but the
    /// relay, which maps the public ports to Wolf's defaults).
    pub fn wolf_on_public_ports(&self) -> bool {
        !matches!(self, Exposure::Relay)
    }
}

/// The per-Session LoadBalancer Service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerExposure {
    /// The sharing key (Cilium `lbipam.cilium.io/sharing-key`, MetalLB
    /// `metallb.universe.tf/allow-shared-ip`): the proxies' Service's key.
    pub sharing_key: String,
    /// The address to ask for (Cilium `lbipam.cilium.io/ips`, MetalLB
    /// `metallb.universe.tf/loadBalancerIPs`): the proxies' address.
    pub ip: Option<std::net::IpAddr>,
    /// How long a Service may go without an ingress address before the Session says so.
    pub address_wait: Duration,
    /// The Services' `externalTrafficPolicy`: `Local` keeps the client's address for Wolf;
    /// MetalLB shares an address only between Services that are all `Cluster` (or select the
    /// same pods), so with MetalLB the Sessions' and the proxies' Services must be `Cluster`.
    pub traffic_policy: TrafficPolicy,
}

/// A Service's `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Only nodes with a selected pod take traffic; the client's address is kept.
    #[default]
    Local,
    /// Every node takes traffic and forwards it, replacing the client's address.
    Cluster,
}

impl TrafficPolicy {
    /// The field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Local => "Local",
            TrafficPolicy::Cluster => "Cluster",
        }
    }
}

impl Default for LoadBalancerExposure {
    fn default() -> Self {
        LoadBalancerExposure {
            sharing_key: DEFAULT_LB_SHARING_KEY.to_owned(),
            ip: None,
            address_wait: Duration::from_secs(20),
            traffic_policy: TrafficPolicy::Local,
        }
    }
}

/// The Gateway every Session's routes attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayExposure {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub name: String,
}

impl FromStr for GatewayExposure {
    type Err = ConfigError;

    /// `NAMESPACE/NAME`, both DNS-1123 (the name a subdomain, the namespace a label).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError(format!("gateway {s:?} is not NAMESPACE/NAME (e.g. infra/public)"));
        let (namespace, name) = s.split_once('/').ok_or_else(bad)?;
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !label(namespace) || name.len() > 253 || !name.split('.').all(label) {
            return Err(bad());
        }
        Ok(GatewayExposure {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for GatewayExposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything the operator is configured with.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// The namespace whose Sessions are reconciled.
    pub namespace: String,
    /// Public ports handed out to Sessions.
    pub port_range: PortRange,
    /// How stream pods are built.
    pub pod: PodSettings,
    /// How long a Session may take from creation to a Ready pod and a stream URL (below the
    /// proxy's launch timeout, so the waiting proxy learns why).
    pub start_deadline: Duration,
    /// How long the deletion of a Session waits for its pod to be gone before releasing it.
    pub pod_deletion_bound: Duration,
    /// Concurrent reconciles.
    pub concurrency: u16,
    /// The name Events are reported under, and this replica's identity.
    pub reporter: String,
    /// This replica's identity (Events' `reportingInstance`).
    pub instance: Option<String>,
    /// How the stream ports reach the pods.
    pub exposure: Exposure,
    /// Every Session gets these ports instead of a block of `port_range` (the proxies relay them
    /// in shared-ports mode).
    pub shared_ports: Option<SessionPorts>,
}

impl OperatorConfig {
    /// The defaults for `namespace`: ports 40000–40999, the default images, no GPU, a 40 s
    /// start deadline and a 30 s bound on waiting for a deleted Session's pod.
    pub fn new(namespace: &str) -> Self {
        OperatorConfig {
            namespace: namespace.to_owned(),
            port_range: PortRange::default(),
            pod: PodSettings::default(),
            start_deadline: Duration::from_secs(40),
            pod_deletion_bound: Duration::from_secs(30),
            concurrency: 8,
            reporter: "direwolf-operator".to_owned(),
            instance: None,
            exposure: Exposure::Relay,
            shared_ports: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_count_blocks() {
        let range: PortRange = "40000-40999".parse().expect("valid");
        assert_eq!(range, PortRange::default());
        assert_eq!(range.blocks(), 250);
        assert_eq!("1-4".parse::<PortRange>().expect("valid").blocks(), 1);
        for bad in ["", "40000", "0-10", "10-12", "a-b", "40000-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gpu_resources_and_node_selectors_parse() {
        let gpu: GpuResource = "nvidia.com/gpu=2".parse().expect("valid");
        assert_eq!(gpu.name, "nvidia.com/gpu");
        assert_eq!(gpu.count, 2);
        for bad in ["nvidia.com/gpu", "=1", "nvidia.com/gpu=0", "x=y"] {
            assert!(bad.parse::<GpuResource>().is_err(), "{bad}");
        }
        let selector = parse_node_selector("type=kwok, gpu=yes").expect("valid");
        assert_eq!(selector.get("type").map(String::as_str), Some("kwok"));
        assert_eq!(selector.len(), 2);
        assert!(parse_node_selector("novalue").is_err());
        assert!(parse_node_selector("").expect("empty is fine").is_empty());
    }

    #[test]
    fn gateways_parse() {
        let gateway: GatewayExposure = "infra/public".parse().expect("valid");
        assert_eq!(gateway.namespace, "infra");
        assert_eq!(gateway.name, "public");
        assert_eq!(gateway.to_string(), "infra/public");
        assert!("infra/gw.example".parse::<GatewayExposure>().is_ok());
        for bad in [
            "",
            "public",
            "/public",
            "infra/",
            "Infra/public",
            "a/b/c",
            "in_fra/x",
        ] {
            assert!(bad.parse::<GatewayExposure>().is_err(), "{bad}");
        }
        assert_eq!(Exposure::default().name(), "relay");
        assert!(!Exposure::Relay.wolf_on_public_ports());
        assert!(Exposure::LoadBalancer(LoadBalancerExposure::default()).wolf_on_public_ports());
    }
}
