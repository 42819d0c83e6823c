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
//! The same run with the kernel fast path on (`[relay] fast_path = true`) gives the same
//! results, with every audio, video and control flow carried by the kernel once admitted, and
//! no element of direwolf's nftables table left once the sessions end; with a host firewall
//! that drops forwarded traffic (Docker's `FORWARD` policy) the flows are given back to the relay
//! and both clients still stream (`fast_path_e2e.rs` has the fast path's own tests).
//!
//! Needs root, `ip`, `nft` and python3 with moonlight_python 0.3.0; fails (never passes
//! silently) without them.

mod support;

use std::time::Duration;

use support::pack::*;
use support::shared_net::*;
use support::{in_netns, run, wait_until};

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

/// How the relay carries the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// The userspace relay alone.
    Relay,
    /// The kernel fast path.
    Kernel,
    /// The kernel fast path, on a host whose firewall drops forwarded traffic.
    KernelBehindForwardDrop,
    /// The same firewall with the rule `docs/troubleshooting.md` gives for the fast path's mark.
    KernelThroughForwardDropWithRule,
    /// The fast path asked for, but `nft` refuses (as without `CAP_NET_ADMIN`).
    KernelRefusedByNft,
}

impl Carrier {
    /// Whether the kernel carries the flows.
    fn kernel_carries(self) -> bool {
        matches!(self, Carrier::Kernel | Carrier::KernelThroughForwardDropWithRule)
    }

    fn tag(self) -> char {
        match self {
            Carrier::Relay => 'r',
            Carrier::Kernel => 'k',
            Carrier::KernelBehindForwardDrop => 'f',
            Carrier::KernelThroughForwardDropWithRule => 'a',
            Carrier::KernelRefusedByNft => 'n',
        }
    }
}

/// Docker's `FORWARD` policy, as iptables-nft writes it (no rule lets direwolf's flows pass).
const FORWARD_DROP: &str = "table ip filter {\n chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n  \
                            ct state established,related accept\n }\n}\n";
/// The rule `docs/troubleshooting.md` § The kernel fast path gives flows back gives for it.
const FORWARD_ALLOW_MARK: &str = "insert rule ip filter FORWARD meta mark 0x64770000 accept";

#[test]
fn two_clients_behind_one_nat_stream_through_one_shared_port_set() {
    two_clients_stream(Carrier::Relay);
}

#[test]
fn the_kernel_fast_path_carries_both_clients_and_leaves_no_rule() {
    two_clients_stream(Carrier::Kernel);
}

#[test]
fn behind_a_forward_drop_firewall_the_fast_path_gives_the_flows_back() {
    two_clients_stream(Carrier::KernelBehindForwardDrop);
}

#[test]
fn a_forward_drop_firewall_with_the_documented_rule_lets_the_kernel_carry() {
    two_clients_stream(Carrier::KernelThroughForwardDropWithRule);
}

#[test]
fn when_nft_refuses_the_relay_carries_everything() {
    two_clients_stream(Carrier::KernelRefusedByNft);
}

/// One run at a time: each holds two Moonlight clients and two Wolfs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn two_clients_stream(carrier: Carrier) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fast_path = carrier != Carrier::Relay;
    let pack = Run::start(carrier.tag(), fast_path);
    let (root, net, wolves) = (pack.root(), &pack.net, &pack.wolves[..]);
    let (c1, c2, dw) = (net.ns("c1"), net.ns("c2"), net.ns("dw"));
    if matches!(
        carrier,
        Carrier::KernelBehindForwardDrop | Carrier::KernelThroughForwardDropWithRule
    ) {
        let file = root.join("forward-drop.nft");
        std::fs::write(&file, FORWARD_DROP).expect("write nft rules");
        run(in_netns(&dw, "nft").arg("-f").arg(&file), "nft -f (FORWARD drop)");
    }
    if carrier == Carrier::KernelThroughForwardDropWithRule {
        let args: Vec<&str> = FORWARD_ALLOW_MARK.split(' ').collect();
        run(
            in_netns(&dw, "nft").args(&args),
            "nft (the documented accept rule)",
        );
    }
    let config = config_file(root, fast_path);
    let mut command = serve_command_in(
        &dw,
        root,
        &config,
        METRICS,
        "info,direwolf_core::relay::shared=debug",
    );
    if carrier == Carrier::KernelRefusedByNft {
        // An `nft` first on the PATH that refuses, as nft does without CAP_NET_ADMIN.
        let bin = root.join("refusing-nft");
        std::fs::create_dir(&bin).expect("directory");
        let nft = bin.join("nft");
        std::fs::write(
            &nft,
            "#!/bin/sh\necho 'Error: Operation not permitted' >&2\nexit 1\n",
        )
        .expect("write");
        run(std::process::Command::new("chmod").arg("755").arg(&nft), "chmod");
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", bin.display()));
    }
    let server = support::Proc::spawn("direwolf", &mut command);
    server.wait_for("shared stream ports listening", STEP);
    server.wait_for("direwolf serve started", STEP);
    assert_eq!(
        server.printed("kernel fast path on"),
        fast_path && carrier != Carrier::KernelRefusedByNft,
        "the fast path starts exactly when asked for and allowed\n{}",
        server.tail()
    );
    if carrier == Carrier::KernelRefusedByNft {
        assert!(
            server.printed_line_with(&["kernel fast path unavailable", "Operation not permitted"]),
            "one warning says why\n{}",
            server.tail()
        );
    }

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
        || wolves_streaming(wolves).len() == 2,
    );
    for wolf in wolves {
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

    match carrier {
        Carrier::Relay | Carrier::KernelRefusedByNft => {
            assert_eq!(fast_path_elements(&dw, "clients"), None, "no table")
        }
        Carrier::Kernel | Carrier::KernelThroughForwardDropWithRule => {
            // Three flows per client (audio, video, control), each handed over once a client
            // datagram went through the kernel.
            wait_until(
                "the kernel carries all six flows",
                Duration::from_secs(10),
                || fast_path_elements(&dw, "wolves") == Some(6),
            );
            rtp_keeps_arriving("the kernel", &[&c1, &c2]);
            let text = scrape(&dw);
            for stream in ["audio", "video", "control"] {
                let name =
                    format!(r#"direwolf_relay_kernel_flows_total{{stream="{stream}",outcome="carried"}}"#);
                assert_eq!(support::metric(&text, &name), Some(2.0), "{name}\n{text}");
            }
        }
        Carrier::KernelBehindForwardDrop => {
            wait_until("every flow is given back", Duration::from_secs(10), || {
                let text = scrape(&dw);
                ["audio", "video", "control"].iter().all(|stream| {
                    let name = format!(
                        r#"direwolf_relay_kernel_flows_total{{stream="{stream}",outcome="given_back"}}"#
                    );
                    support::metric(&text, &name) == Some(2.0)
                })
            });
            assert_eq!(
                fast_path_elements(&dw, "clients"),
                Some(0),
                "no flow stays in the kernel"
            );
            assert!(
                server.printed_line_with(&["a host firewall drops the forwarded datagrams"]),
                "{}",
                server.tail()
            );
            rtp_keeps_arriving("the relay", &[&c1, &c2]);
        }
    }

    stranger_pings(&net.ns("st"));
    wait_until("the stranger's pings are counted", Duration::from_secs(5), || {
        support::metric(
            &scrape(&dw),
            r#"direwolf_relay_drops_total{stream="video",reason="unknown_secret"}"#,
        ) == Some(3.0)
    });
    for wolf in wolves {
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
    for (ns, dir) in [(&c1, &dir1), (&c2, &dir2)] {
        let quit = driver(ns, dir, &["quit"], "pack_driver.py").report(STEP);
        assert_eq!(quit["ok"], true, "quit: {quit}");
    }
    if carrier.kernel_carries() {
        for set in ["clients", "wolves", "flows", "wolf_addr", "relay_addr"] {
            wait_until(
                &format!("no element of {set} is left once the sessions ended"),
                Duration::from_secs(10),
                || fast_path_elements(&dw, set) == Some(0),
            );
        }
        server.stop();
        assert_eq!(
            fast_path_elements(&dw, "clients"),
            None,
            "a clean stop removes the table"
        );
    } else {
        drop(server);
    }
    drop(pack);
}
