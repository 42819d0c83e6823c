//! The stand-in's command line: which node it plays, where its pods live, how they are run.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `direwolf-kubelet`: plays the kubelet of one node, running its pods as local processes.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "direwolf-kubelet", version, about)]
pub struct Args {
    /// Kubeconfig of the API server (default: `$KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the Node this stand-in registers and plays.
    #[arg(long)]
    pub node_name: String,
    /// Labels of the Node, `k=v,k=v`.
    #[arg(long, default_value = "", value_parser = parse_labels)]
    pub node_labels: BTreeMap<String, String>,
    /// Capacity (and allocatable) of the Node, `cpu=8,memory=16Gi,pods=110,nvidia.com/gpu=2`.
    #[arg(long, default_value = "cpu=8,memory=16Gi,pods=110", value_parser = parse_capacity)]
    pub capacity: BTreeMap<String, Quantity>,
    /// Pod addresses; the first address is the bridge (gateway) in the root namespace.
    #[arg(long, default_value = "10.77.0.0/16", value_parser = parse_cidr)]
    pub pod_cidr: Cidr,
    /// Name of the bridge in the root network namespace (also the prefix of the pods' network
    /// namespaces).
    #[arg(long, default_value = "dwk0")]
    pub bridge: String,
    /// Directory for emptyDir, PVC and materialised volumes, container logs (`logs/`).
    #[arg(long, default_value = "/var/tmp/direwolf-kubelet")]
    pub state_dir: PathBuf,
    /// Image map: YAML, image → `argv` (list) and `env` (map).
    #[arg(long, env = "DIREWOLF_KUBELET_IMAGES")]
    pub images: Option<PathBuf>,
    /// Also bind unscheduled pods whose nodeSelector matches this node's labels (for an API
    /// server without a scheduler, such as the emulator).
    #[arg(long)]
    pub schedule: bool,
    /// Port of the API forwarder on the bridge address (`KUBERNETES_SERVICE_PORT` of the pods).
    #[arg(long, default_value_t = 443)]
    pub api_port: u16,
    /// Stop (as on SIGTERM) once this process has ended.
    #[arg(long)]
    pub exit_with_pid: Option<u32>,
}

/// An IPv4 network `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length (8–30).
    pub prefix: u8,
}

impl Cidr {
    /// The bridge's address: the network's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1).unwrap_or(self.network)
    }

    /// The `n`th address of the network, if it is a host address (not the broadcast).
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        if n == 0 || u64::from(n) >= size - 1 {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses `10.77.0.0/16`.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not address/prefix"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: prefix: {e}"))?;
    if !(8..=30).contains(&prefix) {
        return Err(format!("{s:?}: the prefix must be 8 to 30"));
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(ip) & !mask != 0 {
        return Err(format!("{s:?} is not a network address (host bits set)"));
    }
    Ok(Cidr { network: ip, prefix })
}

fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("{p:?} is not key=value"))
        })
        .collect()
}

/// Parses `k=v,k=v` labels.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(pairs(s)?.into_iter().collect())
}

/// Parses `cpu=8,memory=16Gi` resource quantities.
pub fn parse_capacity(s: &str) -> Result<BTreeMap<String, Quantity>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs(s)? {
        let ok = !v.is_empty()
            && v.chars().next().is_some_and(|c| c.is_ascii_digit())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !ok {
            return Err(format!("{k}={v}: {v:?} is not a quantity"));
        }
        out.insert(k, Quantity(v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts_and_bounds() {
        let c = parse_cidr("10.77.0.0/16").expect("a cidr");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.host(256), Some(Ipv4Addr::new(10, 77, 1, 0)));
        assert_eq!(c.host(65535), None);
        assert!(c.contains(Ipv4Addr::new(10, 77, 3, 4)));
        assert!(!c.contains(Ipv4Addr::new(10, 78, 0, 1)));
        assert!(parse_cidr("10.77.0.1/16").is_err());
        assert!(parse_cidr("10.77.0.0").is_err());
    }

    #[test]
    fn labels_and_capacity() {
        let l = parse_labels("a=b, c/d=e").expect("labels");
        assert_eq!(l.get("c/d").map(String::as_str), Some("e"));
        assert!(parse_labels("a").is_err());
        let c = parse_capacity("cpu=8,memory=16Gi,nvidia.com/gpu=2").expect("capacity");
        assert_eq!(c["nvidia.com/gpu"].0, "2");
        assert!(parse_capacity("cpu=lots").is_err());
    }
}
