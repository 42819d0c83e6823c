//! The shared-ports network of the end-to-end tests: a bridge in the direwolf namespace
//! (10.77.0.1/24) with Wolf A (.21), Wolf B (.22), a stranger (.14) and a NAT router (.13); behind
//! the router, on 10.78.0.0/24, client 1 (.11) and client 2 (.12), whom direwolf sees as
//! 10.77.0.13. With the configuration and the kernel fast path's table as the tests read them.

use std::path::{Path, PathBuf};

use super::pack::{DW_IP, SUBNET};
use super::{Namespaces, in_netns, ip, run};

/// direwolf's metrics port, inside its namespace.
pub const METRICS: &str = "127.0.0.1:9465";

pub const NAT_IP: &str = "10.77.0.13";

pub fn veth_into(net: &Namespaces, from: &str, bridge: &str, other: &str, addr: &str) {
    let veth = format!("v{other}");
    let other_ns = net.ns(other);
    // The peer gets its final name inside its namespace: `from` may have an eth0 of its own.
    let peer = format!("p{other}");
    ip(&[
        "-n", from, "link", "add", &veth, "type", "veth", "peer", "name", &peer,
    ]);
    ip(&["-n", from, "link", "set", &peer, "netns", &other_ns]);
    ip(&["-n", &other_ns, "link", "set", &peer, "name", "eth0"]);
    ip(&["-n", from, "link", "set", &veth, "master", bridge, "up"]);
    ip(&["-n", &other_ns, "addr", "add", addr, "dev", "eth0"]);
    ip(&["-n", &other_ns, "link", "set", "eth0", "up"]);
}

pub fn bridge(ns: &str, name: &str, addr: &str) {
    ip(&["-n", ns, "link", "add", name, "type", "bridge"]);
    ip(&["-n", ns, "addr", "add", addr, "dev", name]);
    ip(&["-n", ns, "link", "set", name, "up"]);
}

/// The namespaces: direwolf, two Wolfs, a stranger and a NAT router with two clients behind it.
pub fn create_net(tag: char) -> Namespaces {
    let mut net = Namespaces::new(&format!("dws{}{tag}", std::process::id()));
    let dw = net.add("dw");
    bridge(&dw, "br0", &format!("{DW_IP}/24"));
    for (role, host) in [("wa", 21), ("wb", 22), ("st", 14), ("nat", 13)] {
        net.add(role);
        veth_into(&net, &dw, "br0", role, &format!("{SUBNET}.{host}/24"));
    }
    let nat = net.ns("nat");
    bridge(&nat, "br1", "10.78.0.1/24");
    for (role, host) in [("c1", 11), ("c2", 12)] {
        net.add(role);
        veth_into(&net, &nat, "br1", role, &format!("10.78.0.{host}/24"));
        ip(&["-n", &net.ns(role), "route", "add", "default", "via", "10.78.0.1"]);
    }
    run(
        in_netns(&nat, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]),
        "sysctl ip_forward in the NAT namespace",
    );
    let rules = "table ip dwnat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  \
                 oifname \"eth0\" masquerade\n }\n}\n";
    let file = std::env::temp_dir().join(format!("{nat}.nft"));
    std::fs::write(&file, rules).expect("write nft rules");
    run(in_netns(&nat, "nft").arg("-f").arg(&file), "nft -f (masquerade)");
    let _ = std::fs::remove_file(file);
    net
}

pub fn scrape(ns: &str) -> String {
    super::fetch_in_netns(ns, &format!("http://{METRICS}/metrics"))
}

/// Elements of one set (or `…_addr` map) of direwolf's nftables table in the direwolf namespace (`None`: no table).
pub fn fast_path_elements(ns: &str, set: &str) -> Option<usize> {
    let kind = if set.ends_with("_addr") { "map" } else { "set" };
    let out = in_netns(ns, "nft")
        .args(["-j", "list", kind, "ip", "direwolf", set])
        .output()
        .expect("run nft");
    if !out.status.success() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
    let sets = json["nftables"].as_array().cloned().unwrap_or_default();
    Some(
        sets.iter()
            .filter_map(|o| o[kind]["elem"].as_array())
            .map(Vec::len)
            .sum(),
    )
}

pub fn config_file(root: &Path, fast_path: bool) -> PathBuf {
    config_with(root, fast_path, true)
}

/// The configuration: shared ports, or a port set per session from `port_range`.
pub fn config_with(root: &Path, fast_path: bool, shared: bool) -> PathBuf {
    let config = root.join("direwolf.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"shared-e2e\"\n\n[[apps]]\ntitle = \"Desktop\"\nid = 1\n\n\
             [relay]\nshared = {shared}\nfast_path = {fast_path}\nport_range = \"41000-41011\"\n\n\
             [[wolf]]\nname = \"wolf-a\"\napi = \"{}\"\nstream_address = \"{SUBNET}.21\"\n\n\
             [[wolf]]\nname = \"wolf-b\"\napi = \"{}\"\nstream_address = \"{SUBNET}.22\"\n",
            root.join("wolf-a.sock").display(),
            root.join("wolf-b.sock").display()
        ),
    )
    .expect("write the configuration");
    config
}

/// One run: its temporary directory, network and two fake Wolfs (A at .21, B at .22).
pub struct Run {
    pub tmp: tempfile::TempDir,
    pub net: Namespaces,
    pub wolves: [super::pack::Wolf; 2],
}

impl Run {
    /// A fresh run; the namespaces are named after `tag`. With `forwarding`, the direwolf
    /// namespace forwards IPv4 (the kernel fast path needs it).
    pub fn start(tag: char, forwarding: bool) -> Run {
        super::pack::require_tools();
        let bin = super::fake_wolf_binary();
        let tmp = tempfile::tempdir().expect("temporary directory");
        let net = create_net(tag);
        let root = tmp.path();
        let wolves = [
            super::pack::Wolf::start(&bin, &net.ns("wa"), "wolf-a", root, &format!("{SUBNET}.21")),
            super::pack::Wolf::start(&bin, &net.ns("wb"), "wolf-b", root, &format!("{SUBNET}.22")),
        ];
        if forwarding {
            run(
                in_netns(&net.ns("dw"), "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]),
                "sysctl ip_forward in the direwolf namespace",
            );
        }
        Run { tmp, net, wolves }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }
}

/// Waits until every client namespace of `clients` has received more audio and video RTP than
/// it had when called.
pub fn rtp_keeps_arriving(through: &str, clients: &[&str]) {
    let before: Vec<(u64, u64)> = clients.iter().map(|ns| super::pack::rtp_counts(ns)).collect();
    super::wait_until(
        &format!("RTP keeps arriving through {through}"),
        std::time::Duration::from_secs(5),
        || {
            clients.iter().zip(&before).all(|(ns, then)| {
                let now = super::pack::rtp_counts(ns);
                now.0 > then.0 && now.1 > then.1
            })
        },
    );
}
