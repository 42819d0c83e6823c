//! Shared-ports mode end to end (`[relay] shared = true`): two real Moonlight clients
//! (moonlight-python, which runs moonlight-common-c) behind one NAT address stream at once
//! through one port set of `direwolf serve` (RTSP 48010, video 48100, audio 48200, control 47999)
//! to two fake Wolfs, and a stranger's ping with a wrong payload reaches no one.
//!
//! Topology (namespaces of this run only): a bridge in the direwolf namespace (10.77.0.1/24)
//! with Wolf A (.21), Wolf B (.22), a stranger (.14) and a NAT router (.13). Behind the router,
//! on 10.78.0.0/24, client 1 (.11) and client 2 (.12): direwolf sees both as 10.77.0.13.
//! Client 1 streams at 20 Mbit/s (its RTSP requests echo the session's fake IP), client 2 at
//! 10 Mbit/s (it sends `0.0.0.0` and is matched by its address, the one session from it still in
//! its handshake).
//!
//! Needs root, `ip`, `nft` and python3 with moonlight_python 0.3.0; fails (never passes
//! silently) without them.

mod support;

use std::time::Duration;

use support::pack::*;
use support::{Namespaces, in_netns, ip, run, wait_until};

/// direwolf's metrics port, inside its namespace.
const METRICS: &str = "127.0.0.1:9465";
const NAT_IP: &str = "10.77.0.13";

fn veth_into(net: &Namespaces, from: &str, bridge: &str, other: &str, addr: &str) {
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

fn bridge(ns: &str, name: &str, addr: &str) {
    ip(&["-n", ns, "link", "add", name, "type", "bridge"]);
    ip(&["-n", ns, "addr", "add", addr, "dev", name]);
    ip(&["-n", ns, "link", "set", name, "up"]);
}

/// The namespaces: direwolf, two Wolfs, a stranger and a NAT router with two clients behind it.
fn create_net() -> Namespaces {
    let mut net = Namespaces::new(&format!("dws{}", std::process::id()));
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

/// A 20-byte ping with a payload no session has, from the stranger's namespace.
fn stranger_pings(ns: &str) {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(3):\n    s.sendto(b'0123456789abcdef' + i.to_bytes(4, 'big'), ('{DW_IP}', 48100))\n"
    );
    run(
        in_netns(ns, "python3").args(["-c", &script]),
        "the stranger's pings",
    );
}

fn scrape(ns: &str) -> String {
    support::fetch_in_netns(ns, &format!("http://{METRICS}/metrics"))
}

#[test]
fn two_clients_behind_one_nat_stream_through_one_shared_port_set() {
    require_tools();
    let bin = support::fake_wolf_binary();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path();
    let net = create_net();
    let (c1, c2, dw) = (net.ns("c1"), net.ns("c2"), net.ns("dw"));
    let wolves = [
        Wolf::start(&bin, &net.ns("wa"), "wolf-a", root, &format!("{SUBNET}.21")),
        Wolf::start(&bin, &net.ns("wb"), "wolf-b", root, &format!("{SUBNET}.22")),
    ];
    let config = root.join("direwolf.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"shared-e2e\"\n\n[[apps]]\ntitle = \"Desktop\"\nid = 1\n\n\
             [relay]\nshared = true\nport_range = \"41000-41011\"\n\n\
             [[wolf]]\nname = \"wolf-a\"\napi = \"{}\"\nstream_address = \"{SUBNET}.21\"\n\n\
             [[wolf]]\nname = \"wolf-b\"\napi = \"{}\"\nstream_address = \"{SUBNET}.22\"\n",
            root.join("wolf-a.sock").display(),
            root.join("wolf-b.sock").display()
        ),
    )
    .expect("write the configuration");
    let server = serve_in(
        &dw,
        root,
        &config,
        METRICS,
        "info,direwolf_core::relay::shared=debug",
    );
    server.wait_for("shared stream ports listening", STEP);
    server.wait_for("direwolf serve started", STEP);

    let (dir1, dir2) = (root.join("client1"), root.join("client2"));
    pair(&server, &c1, &dir1, "alice");
    pair(&server, &c2, &dir2, "bob");
    install_rtp_counters(&c1);
    install_rtp_counters(&c2);

    let (stop1, stop2) = (root.join("stop1"), root.join("stop2"));
    let s1 = stream(&c1, &dir1, &stop1, &["--bitrate", "20000"]);
    let started1 = s1.report(STEP);
    assert_eq!(started1["event"], "started", "client 1 must stream: {started1}");
    let s2 = stream(&c2, &dir2, &stop2, &[]);
    let started2 = s2.report(STEP);
    assert_eq!(started2["event"], "started", "client 2 must stream: {started2}");

    wait_until(
        "both Wolfs receive their client's pings",
        Duration::from_secs(5),
        || wolf_with_pings(&wolves).len() == 2,
    );
    for wolf in &wolves {
        let sessions = wolf.sessions();
        assert_eq!(sessions.len(), 1, "one session per Wolf: {sessions:?}");
        let requests = sessions[0]["rtsp_requests"].as_array().map_or(0, Vec::len);
        assert_eq!(
            requests, 7,
            "the whole RTSP handshake through the shared port: {sessions:?}"
        );
        assert!(
            sessions[0]["enet_connects"]
                .as_array()
                .is_some_and(|c| c.len() == 1),
            "ENet through the shared control port: {sessions:?}"
        );
    }
    for (ns, who) in [(&c1, "client 1"), (&c2, "client 2")] {
        wait_until(
            &format!("{who} receives audio and video RTP"),
            Duration::from_secs(5),
            || {
                let (audio, video) = rtp_counts(ns);
                audio > 0 && video > 0
            },
        );
    }
    for opened in [
        "rtsp=48010 video=48100 audio=48200 control=47999",
        &format!("client={NAT_IP}"),
    ] {
        let count = server.count_lines_with(&["relay session opened", opened]);
        assert_eq!(
            count,
            2,
            "both sessions on the shared ports, from the NAT's address: {opened}\n{}",
            server.tail()
        );
    }
    for by in [r#"by="fake_ip""#, r#"by="address""#] {
        let count = server.count_lines_with(&["rtsp request routed", by]);
        assert_eq!(count, 7, "one client's 7 requests routed {by}\n{}", server.tail());
    }
    assert!(
        !server.printed("an RTSP port of its own"),
        "client 1 had finished its handshake: client 2 needs no port of its own\n{}",
        server.tail()
    );

    stranger_pings(&net.ns("st"));
    wait_until("the stranger's pings are counted", Duration::from_secs(5), || {
        support::metric(
            &scrape(&dw),
            r#"direwolf_relay_drops_total{stream="video",reason="unknown_secret"}"#,
        ) == Some(3.0)
    });
    for wolf in &wolves {
        assert_eq!(
            wolf.report()["unmatched_pings"],
            0,
            "{} saw a ping of no session of its own",
            wolf.proc.name()
        );
    }
    let text = scrape(&dw);
    assert_eq!(
        support::metric(&text, r#"direwolf_relay_rtsp_total{event="relayed"}"#),
        Some(14.0),
        "{text}"
    );
    assert_eq!(
        support::metric(&text, r#"direwolf_relay_rtsp_total{event="unrouted"}"#),
        Some(0.0),
        "{text}"
    );

    for (stop, s) in [(&stop1, s1), (&stop2, s2)] {
        std::fs::write(stop, b"").expect("stop file");
        let done = s.report(STEP);
        assert_eq!(done["terminated"], false, "the stream ran until stopped: {done}");
    }
    drop(server);
    drop(net);
}
