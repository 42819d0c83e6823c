//! Pod networking: a bridge in the root network namespace (the CIDR's first address) and, per
//! pod, a network namespace joined to it by a veth pair, with its own IP, loopback up and a
//! default route via the bridge. Done with `ip` (iproute2), as root.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use parking_lot::Mutex;
use tokio::process::Command;

use crate::config::Cidr;

/// A network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `ip` failed or could not run.
    #[error("`ip {args}` failed: {why}")]
    Ip {
        /// Its arguments.
        args: String,
        /// Its stderr or the spawn error.
        why: String,
    },
    /// Every address of the CIDR is taken.
    #[error("no free pod address left in {0}")]
    Exhausted(Cidr),
}

/// A pod's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNet {
    /// The network namespace's name (`ip netns`).
    pub netns: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

impl PodNet {
    /// The namespace's file, for `nsenter --net=`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

/// The pods' network: a Linux bridge and a veth pair per pod namespace.
#[derive(Debug)]
pub struct BridgeNetwork {
    bridge: String,
    cidr: Cidr,
    used: Mutex<HashSet<Ipv4Addr>>,
}

/// Runs `ip args…`; its stdout.
pub async fn ip(args: &[&str]) -> Result<String, NetError> {
    let fail = |why: String| NetError::Ip {
        args: args.join(" "),
        why,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl BridgeNetwork {
    /// Creates (or reuses) the bridge with the gateway address, and removes the namespaces a
    /// previous run with the same bridge left behind.
    pub async fn start(bridge: &str, cidr: Cidr) -> Result<Self, NetError> {
        let net = BridgeNetwork {
            bridge: bridge.to_owned(),
            cidr,
            used: Mutex::new(HashSet::from([cidr.gateway()])),
        };
        for stale in net.own_namespaces().await? {
            tracing::info!(netns = %stale, "removing a network namespace left by a previous run");
            ip(&["netns", "del", &stale]).await?;
        }
        if ip(&["link", "show", bridge]).await.is_err() {
            ip(&["link", "add", bridge, "type", "bridge"]).await?;
        }
        let gateway = format!("{}/{}", cidr.gateway(), cidr.prefix);
        let addrs = ip(&["-4", "addr", "show", "dev", bridge]).await?;
        if !addrs.contains(&format!("inet {gateway} ")) {
            ip(&["addr", "add", &gateway, "dev", bridge]).await?;
        }
        ip(&["link", "set", bridge, "up"]).await?;
        Ok(net)
    }

    /// The gateway (bridge) address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    async fn own_namespaces(&self) -> Result<Vec<String>, NetError> {
        let prefix = format!("{}-", self.bridge);
        Ok(ip(&["netns", "list"])
            .await?
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Removes every pod namespace of this bridge and the bridge itself.
    pub async fn stop(&self) -> Result<(), NetError> {
        for ns in self.own_namespaces().await? {
            ip(&["netns", "del", &ns]).await?;
        }
        ip(&["link", "del", &self.bridge]).await.map(|_| ())
    }

    fn allocate(&self) -> Result<Ipv4Addr, NetError> {
        let mut used = self.used.lock();
        let free = (2..)
            .map_while(|n| self.cidr.host(n))
            .find(|a| !used.contains(a))
            .ok_or(NetError::Exhausted(self.cidr))?;
        used.insert(free);
        Ok(free)
    }

    async fn plumb(&self, net: &PodNet, host_if: &str) -> Result<(), NetError> {
        let ns = net.netns.as_str();
        let pod_if = format!("{host_if}p");
        let addr = format!("{}/{}", net.ip, self.cidr.prefix);
        let gateway = self.cidr.gateway().to_string();
        ip(&["netns", "add", ns]).await?;
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", &pod_if]).await?;
        ip(&["link", "set", &pod_if, "netns", ns]).await?;
        ip(&["-n", ns, "link", "set", &pod_if, "name", "eth0"]).await?;
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        ip(&["-n", ns, "route", "add", "default", "via", &gateway]).await?;
        ip(&["link", "set", host_if, "master", &self.bridge]).await?;
        ip(&["link", "set", host_if, "up"]).await?;
        Ok(())
    }
}

/// The host-side veth name of a namespace (at most 15 characters).
fn host_interface(key: &str) -> String {
    let tail: String = key.chars().filter(char::is_ascii_alphanumeric).take(10).collect();
    format!("dwv{tail}")
}

impl BridgeNetwork {
    /// Creates the namespace of pod `key` (a unique, stable token such as its UID).
    pub async fn attach(&self, key: &str) -> Result<PodNet, NetError> {
        let net = PodNet {
            netns: format!("{}-{key}", self.bridge),
            ip: self.allocate()?,
        };
        let host_if = host_interface(key);
        if let Err(e) = self.plumb(&net, &host_if).await {
            let _ = ip(&["link", "del", &host_if]).await;
            let _ = self.detach(&net).await;
            return Err(e);
        }
        Ok(net)
    }

    /// Removes the namespace (and so its veth pair) and frees the address.
    pub async fn detach(&self, net: &PodNet) -> Result<(), NetError> {
        let result = if net.netns_path().exists() {
            ip(&["netns", "del", &net.netns]).await.map(|_| ())
        } else {
            Ok(())
        };
        self.used.lock().remove(&net.ip);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::host_interface;

    #[test]
    fn host_interfaces_fit_linux_names() {
        let name = host_interface("0f6c2a4e-5b1d-4c3e-9a7b-123456789abc");
        assert_eq!(name, "dwv0f6c2a4e5b");
        assert!(name.len() <= 15, "IFNAMSIZ");
    }
}
