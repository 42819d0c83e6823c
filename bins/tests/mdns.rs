//! mDNS discovery with a real client: `direwolf serve` runs in one network namespace, and
//! moonlight-python's own discovery (`moonlight_python.discovery`, zeroconf browsing
//! `_nvstream._tcp.local.`) runs in another, joined by a veth pair. Multicast stays inside the
//! two namespaces this test creates.
//!
//! Needs root (`ip netns`), `python3` with `moonlight_python` 0.3.0 (`scripts/test-all` installs
//! it). Fails loudly when either is missing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{DIREWOLF, Namespaces, Proc, in_netns, ip, run};

/// Two namespaces `server` and `client` joined by a veth pair, addresses 10.213.N.1 and .2.
fn topology() -> (Namespaces, String, String, String) {
    let tag = format!("{}", std::process::id() % 100_000);
    let mut namespaces = Namespaces::new(&format!("dwmdns{tag}"));
    let (server, client) = (namespaces.add("s"), namespaces.add("c"));
    let subnet = std::process::id() % 250 + 1;
    let (server_ip, client_ip) = (format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2"));
    let (veth_s, veth_c) = (format!("dwms{tag}"), format!("dwmc{tag}"));
    ip(&["link", "add", &veth_s, "type", "veth", "peer", "name", &veth_c]);
    ip(&["link", "set", &veth_s, "netns", &server]);
    ip(&["link", "set", &veth_c, "netns", &client]);
    for (ns, dev, addr) in [(&server, &veth_s, &server_ip), (&client, &veth_c, &client_ip)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    (namespaces, server, client, server_ip)
}

/// Starts `direwolf serve` inside `ns` and waits until its HTTP listener is up.
fn serve(ns: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    let server = Proc::spawn(
        "direwolf",
        in_netns(ns, DIREWOLF)
            .args(["serve", "--hostname", "MdnsTestHost"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info"),
    );
    server.wait_for("GameStream HTTP listening", Duration::from_secs(60));
    server
}

/// Runs a Python program with moonlight-python in `ns` (at most 60 s); its stdout.
fn python_in(ns: &str, script: &str, what: &str) -> String {
    run(
        Command::new("timeout").args(["60", "ip", "netns", "exec", ns, "python3", "-c", script]),
        what,
    )
}

/// Runs moonlight-python's mDNS discovery in `ns` for `seconds`; returns the addresses found.
fn discover(ns: &str, seconds: u32) -> Vec<String> {
    let script = format!(
        "import json\nfrom moonlight_python.discovery import discover_mdns\nprint(json.dumps(discover_mdns({seconds})))"
    );
    let text = python_in(
        ns,
        &script,
        "discovery (is moonlight_python 0.3.0 installed? run scripts/test-all)",
    );
    let line = text.lines().last().unwrap_or("[]");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("discovery printed {line:?}: {e}"))
}

/// Asks the server found by discovery for its name, through the client's own HTTP code.
fn hostname_via_client(ns: &str, address: &str, home: &Path) -> String {
    let script = format!(
        "from moonlight_python.identity import Identity\n\
         from moonlight_python.discovery import connect_to_server\n\
         print(connect_to_server({address:?}, Identity({home:?})).hostname)",
        home = home.display().to_string()
    );
    python_in(ns, &script, "serverinfo through the client")
        .trim()
        .to_owned()
}

#[test]
fn a_real_client_discovers_direwolf_over_mdns_and_not_when_it_is_off() {
    let (_namespaces, server_ns, client_ns, server_ip) = topology();
    let dir = tempfile::tempdir().expect("temp dir");

    let server = serve(&server_ns, &dir.path().join("data"), &[]);
    let found = discover(&client_ns, 4);
    assert!(
        found.contains(&server_ip),
        "mDNS discovery from the client namespace found {found:?}, not {server_ip}"
    );
    let name = hostname_via_client(&client_ns, &server_ip, &dir.path().join("client"));
    assert_eq!(
        name, "MdnsTestHost",
        "the discovered address answers as this direwolf"
    );
    drop(server);

    let _quiet = serve(&server_ns, &dir.path().join("data"), &["--no-mdns"]);
    let found = discover(&client_ns, 3);
    assert!(
        !found.contains(&server_ip),
        "with --no-mdns the server is still advertised: {found:?}"
    );
}
