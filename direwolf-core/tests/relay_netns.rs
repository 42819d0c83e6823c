//! The relay across network namespaces: client namespace → relay namespace → Wolf-host
//! namespace, over veth pairs, checking which addresses each side sees.
//!
//! Needs root and `ip netns` (iproute2) and `python3` for the two end points. The test creates
//! uniquely named namespaces and deletes them at the end, also on failure. It fails loudly if
//! namespaces cannot be created: it is meant to run in CI (as root).
//!
//! Topology (addresses exist only inside the test's namespaces):
//! ```text
//!  client ns: c0 10.77.1.2 ── r1 10.77.1.1 :relay ns: r2 10.77.2.1 ── w0 10.77.2.2 wolf ns
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use direwolf_core::StreamPorts;
use direwolf_core::relay::{Relay, RelayConfig, SessionRelayConfig, WolfPorts};

const INNER_ENV: &str = "DIREWOLF_RELAY_NETNS_INNER";
const RELAY_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const RELAY_INNER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const WOLF: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const FAKE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 7);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run `ip` (iproute2 is required)");
    assert!(
        out.status.success(),
        "`ip {}` failed (root and network namespaces are required): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces (and with them the veths) when dropped.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all);
}

#[test]
fn relay_between_namespaces_preserves_addresses() {
    let tag = std::process::id();
    let (c, r, w) = (format!("dwrc{tag}"), format!("dwrr{tag}"), format!("dwrw{tag}"));
    let guard = Namespaces {
        names: vec![c.clone(), r.clone(), w.clone()],
    };
    for n in &guard.names {
        ip(&["netns", "add", n]);
        in_ns(n, &["link", "set", "lo", "up"]);
    }
    let (c0, r1, r2, w0) = (
        format!("dc{tag}"),
        format!("dr1{tag}"),
        format!("dr2{tag}"),
        format!("dw{tag}"),
    );
    ip(&[
        "link", "add", &c0, "netns", &c, "type", "veth", "peer", "name", &r1, "netns", &r,
    ]);
    ip(&[
        "link", "add", &r2, "netns", &r, "type", "veth", "peer", "name", &w0, "netns", &w,
    ]);
    for (ns, dev, addr) in [
        (&c, &c0, "10.77.1.2/24"),
        (&r, &r1, "10.77.1.1/24"),
        (&r, &r2, "10.77.2.1/24"),
        (&w, &w0, "10.77.2.2/24"),
    ] {
        in_ns(ns, &["addr", "add", addr, "dev", dev]);
        in_ns(ns, &["link", "set", dev, "up"]);
    }
    // The relay runs in its namespace: run this test binary's inner half there.
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", &r])
        .arg(exe)
        .args([
            "inner_relay_in_namespace",
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(INNER_ENV, format!("{c} {w}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the inner half in the relay namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inner half failed:\n{text}");
    assert!(
        text.contains("INNER OK"),
        "the inner half did not run its checks:\n{text}"
    );
    drop(guard);
}

/// Wolf's side: RTSP on 48010 answering OPTIONS and SETUP video, a video socket on 48100 that
/// answers a ping with three RTP-sized datagrams; prints what it saw as JSON.
const WOLF_PY: &str = r#"
import json, socket, threading
seen = {"rtsp": [], "pings": []}
def rtsp():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("10.77.2.2", 48010)); srv.listen(8); srv.settimeout(20)
    for _ in range(2):
        conn, peer = srv.accept(); conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        req = data.decode()
        seen["rtsp"].append({"peer": peer[0], "first": req.split("\r\n")[0],
            "host": [l[6:] for l in req.split("\r\n") if l.startswith("Host: ")]})
        cseq = [l[6:] for l in req.split("\r\n") if l.startswith("CSeq: ")][0]
        if req.startswith("SETUP"):
            ans = "RTSP/1.0 200 OK\r\nCSeq: %s\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=48100\r\nX-SS-Ping-Payload: Ab3$x~Zq!9Lm#2Rt\r\n\r\n" % cseq
        else:
            ans = "RTSP/1.0 200 OK\r\nCSeq: %s\r\n\r\n" % cseq
        conn.sendall(ans.encode()); conn.close()
t = threading.Thread(target=rtsp); t.start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.77.2.2", 48100)); u.settimeout(20)
data, src = u.recvfrom(2048)
seen["pings"].append({"src": "%s:%d" % src, "len": len(data), "secret": data[:16].decode()})
for i in range(3):
    u.sendto(bytes([i]) * 1400, src)
t.join()
print("WOLF " + json.dumps(seen), flush=True)
"#;

/// The client's side: OPTIONS and SETUP video to the relay, then a ping from one socket and three
/// datagrams back; prints what it saw as JSON.
const CLIENT_PY: &str = r#"
import json, socket, sys
relay, rtsp_port = "10.77.1.1", int(sys.argv[1])
def rtsp(req):
    s = socket.create_connection((relay, rtsp_port), timeout=10)
    s.sendall(req.encode()); out = b""
    while True:
        d = s.recv(4096)
        if not d: break
        out += d
    return out.decode()
opt = rtsp("OPTIONS rtsp://0.0.0.0:%d RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\n\r\n" % rtsp_port)
setup = rtsp("SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 2\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\nTransport: unicast;X-GS-ClientPort=50000-50001\r\n\r\n")
port = int([l for l in setup.split("\r\n") if l.startswith("Transport: server_port=")][0].split("=")[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.77.1.2", 0)); u.settimeout(10)
u.sendto(b"Ab3$x~Zq!9Lm#2Rt" + (1).to_bytes(4, "big"), (relay, port))
got = []
for _ in range(3):
    data, src = u.recvfrom(2048)
    got.append({"src": "%s:%d" % src, "len": len(data)})
print("CLIENT " + json.dumps({"options": opt, "video_port": port, "media": got}), flush=True)
"#;

fn json_line(output: &str, prefix: &str) -> serde_json::Value {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{output}"));
    serde_json::from_str(line).expect("end point printed JSON")
}

#[tokio::test]
#[ignore = "inner half of relay_between_namespaces_preserves_addresses; runs inside its relay namespace"]
async fn inner_relay_in_namespace() {
    let names = std::env::var(INNER_ENV).expect("started by relay_between_namespaces_preserves_addresses");
    let (client_ns, wolf_ns) = names.split_once(' ').expect("two namespace names");
    let mut config = RelayConfig::new(IpAddr::V4(RELAY_PUBLIC), 40000..=40003);
    config.socket_buffer_bytes = 0;
    let relay = Relay::new(config).expect("relay");
    let mut session = SessionRelayConfig::new(
        IpAddr::V4(CLIENT),
        SocketAddr::new(IpAddr::V4(WOLF), 48010),
        FAKE_IP,
    );
    session.wolf_ports = WolfPorts::default();
    let s = relay.open_session(session).await.expect("open the session");
    assert_eq!(
        s.ports(),
        StreamPorts {
            rtsp: 40000,
            video: 40001,
            audio: 40002,
            control: 40003
        }
    );

    let wolf = tokio::process::Command::new("ip")
        .args(["netns", "exec", wolf_ns, "python3", "-c", WOLF_PY])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Wolf end point");
    tokio::time::sleep(Duration::from_millis(500)).await; // let it bind
    let client = tokio::process::Command::new("ip")
        .args(["netns", "exec", client_ns, "python3", "-c", CLIENT_PY, "40000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the client end point");
    let client = tokio::time::timeout(Duration::from_secs(30), client.wait_with_output())
        .await
        .expect("the client end point timed out: RTSP or media did not flow through the relay")
        .expect("client output");
    let wolf = tokio::time::timeout(Duration::from_secs(30), wolf.wait_with_output())
        .await
        .expect("the Wolf end point timed out")
        .expect("wolf output");
    let client_out = format!(
        "{}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );
    let wolf_out = format!(
        "{}{}",
        String::from_utf8_lossy(&wolf.stdout),
        String::from_utf8_lossy(&wolf.stderr)
    );
    assert!(client.status.success(), "client failed:\n{client_out}");
    assert!(wolf.status.success(), "wolf failed:\n{wolf_out}");
    let c = json_line(&client_out, "CLIENT ");
    let w = json_line(&wolf_out, "WOLF ");

    // Wolf sees the relay's inner address as the RTSP peer and the fake IP as host.
    for req in w["rtsp"].as_array().expect("rtsp list") {
        assert_eq!(req["peer"], RELAY_INNER.to_string());
        assert_eq!(req["host"], serde_json::json!([FAKE_IP.to_string()]));
    }
    assert_eq!(w["rtsp"][0]["first"], "OPTIONS rtsp://10.99.0.7:40000 RTSP/1.0");
    // The client was told the relay's public video port, and its ping reached Wolf from the relay.
    assert_eq!(c["video_port"], 40001);
    let ping_src: SocketAddr = w["pings"][0]["src"].as_str().expect("src").parse().expect("addr");
    assert_eq!(ping_src.ip(), IpAddr::V4(RELAY_INNER));
    assert_eq!(w["pings"][0]["len"], 20);
    // Media reached the client from the public address and port it pinged.
    let media = c["media"].as_array().expect("media list");
    assert_eq!(media.len(), 3);
    for m in media {
        assert_eq!(m["src"], "10.77.1.1:40001");
        assert_eq!(m["len"], 1400);
    }
    let st = s.stats();
    assert_eq!((st.video.to_wolf_packets, st.video.to_client_packets), (1, 3));
    assert_eq!(st.rtsp.relayed, 2);
    println!("INNER OK");
}
