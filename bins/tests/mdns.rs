//! mDNS discovery with a real client: `direwolf serve` runs in one network namespace, and
//! moonlight-python's own discovery (`moonlight_python.discovery`, zeroconf browsing
//! `_nvstream._tcp.local.`) runs in another, joined by a veth pair. Multicast stays inside the
//! two namespaces this test creates.
//!
//! Needs root (`ip netns`), `python3` with `moonlight_python` 0.3.0 (`scripts/test-all` installs
//! it). Fails loudly when either is missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Deletes the test's namespaces (and with them the veth pair) when dropped, even on panic.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Kills a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {} (this test needs root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two namespaces `server` and `client` joined by a veth pair, addresses 10.213.N.1 and .2.
fn topology() -> (Namespaces, String, String, String) {
    let tag = format!("{}", std::process::id() % 100_000);
    let (server, client) = (format!("dwmdns-s{tag}"), format!("dwmdns-c{tag}"));
    let namespaces = Namespaces(vec![server.clone(), client.clone()]);
    let subnet = std::process::id() % 250 + 1;
    let (server_ip, client_ip) = (format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2"));
    ip(&["netns", "add", &server]);
    ip(&["netns", "add", &client]);
    let (veth_s, veth_c) = (format!("dwms{tag}"), format!("dwmc{tag}"));
    ip(&["link", "add", &veth_s, "type", "veth", "peer", "name", &veth_c]);
    ip(&["link", "set", &veth_s, "netns", &server]);
    ip(&["link", "set", &veth_c, "netns", &client]);
    for (ns, dev, addr) in [(&server, &veth_s, &server_ip), (&client, &veth_c, &client_ip)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    (namespaces, server, client, server_ip)
}

/// Starts `direwolf serve` inside `ns` and waits until its HTTP listener is up.
fn serve(ns: &str, data_dir: &std::path::Path, extra: &[&str]) -> ChildGuard {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_direwolf"),
            "serve",
            "--hostname",
            "MdnsTestHost",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start direwolf serve in the namespace");
    let (tx, rx) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("GameStream HTTP listening") => return guard,
            Ok(_) => {}
            Err(_) => panic!("direwolf serve did not start listening within 60 s"),
        }
    }
}

/// Runs moonlight-python's mDNS discovery in `ns` for `seconds`; returns the addresses found.
fn discover(ns: &str, seconds: u32) -> Vec<String> {
    let script = format!(
        "import json\nfrom moonlight_python.discovery import discover_mdns\nprint(json.dumps(discover_mdns({seconds})))"
    );
    let out: Output = Command::new("timeout")
        .args(["60", "ip", "netns", "exec", ns, "python3", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "discovery failed (is moonlight_python 0.3.0 installed? run scripts/test-all): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("[]");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("discovery printed {line:?}: {e}"))
}

/// Asks the server found by discovery for its name, through the client's own HTTP code.
fn hostname_via_client(ns: &str, address: &str, home: &std::path::Path) -> String {
    let script = format!(
        "from moonlight_python.identity import Identity\n\
         from moonlight_python.discovery import connect_to_server\n\
         print(connect_to_server({address:?}, Identity({home:?})).hostname)",
        home = home.display().to_string()
    );
    let out = Command::new("timeout")
        .args(["60", "ip", "netns", "exec", ns, "python3", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "serverinfo through the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
