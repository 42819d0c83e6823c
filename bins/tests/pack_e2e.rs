//! The single-machine pack end to end, on one machine with network namespaces: `direwolf serve`
//! with two `[[wolf]]` hosts (fake Wolfs with their streaming side, the `fake_wolf` example of
//! direwolf-wolf-client), and the real Moonlight client (moonlight-python 0.3.0, which runs
//! moonlight-common-c) streaming through direwolf's relay.
//!
//! Topology (all addresses live inside namespaces created for this run; the root namespace is
//! untouched): a bridge in the direwolf namespace (10.77.0.1/24) and one veth per other
//! namespace: client 1 (.11), client 2 (.12), Wolf A (.21), Wolf B (.22). The Wolf API sockets
//! are unix sockets in a temporary directory (the file system is shared).
//!
//! Needs root, `ip`, `nft` and python3 with moonlight_python 0.3.0; fails (never passes
//! silently) without them.

mod support;

use std::time::{Duration, Instant};

use support::pack::*;
use support::wait_until;
/// direwolf's metrics port, inside its namespace.
const METRICS: &str = "127.0.0.1:9464";

/// What `/metrics` says once two clients paired, launched and stream.
fn metrics_of_two_streams(ns: &str) {
    let url = format!("http://{METRICS}/metrics");
    let scrape = || support::fetch_in_netns(ns, &url);
    let text = scrape();
    let value = |series: &str| support::metric(&text, series);
    assert_eq!(
        value(r#"direwolf_pairing_attempts_total{outcome="paired"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(r#"direwolf_launch_duration_seconds_count{op="launch",result="ok"}"#),
        Some(2.0),
        "{text}"
    );
    let add =
        r#"direwolf_wolf_api_request_duration_seconds_count{endpoint="/api/v1/sessions/add",outcome="ok"}"#;
    assert_eq!(value(add), Some(2.0), "{text}");
    let video_out = r#"direwolf_relay_packets_total{stream="video",direction="to_client"}"#;
    assert!(value(video_out).is_some_and(|n| n > 0.0), "{text}");
    assert_eq!(
        value(r#"direwolf_relay_rtsp_total{event="relayed"}"#),
        Some(14.0),
        "7 RTSP requests per client: {text}"
    );
    assert_eq!(value("direwolf_relay_sessions"), Some(2.0), "{text}");
    // The phase gauge is refreshed every 5 s.
    wait_until(
        "the phase gauge counts two live sessions",
        Duration::from_secs(10),
        || {
            let text = scrape();
            let live: f64 = ["Initializing", "WaitForPing", "Streaming", "Paused"]
                .iter()
                .filter_map(|phase| {
                    support::metric(&text, &format!("direwolf_sessions{{phase=\"{phase}\"}}"))
                })
                .sum();
            live == 2.0
        },
    );
}

#[test]
fn real_client_streams_through_the_relay_to_a_wolf_of_the_pool() {
    require_tools();
    let bin = support::fake_wolf_binary();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path();
    let net = pack_net("dwe");
    let (c1, c2) = (net.ns("c1"), net.ns("c2"));

    let mut wolves = vec![
        Wolf::start(&bin, &net.ns("wa"), "wolf-a", root, &format!("{SUBNET}.21")),
        Wolf::start(&bin, &net.ns("wb"), "wolf-b", root, &format!("{SUBNET}.22")),
    ];
    let config = root.join("direwolf.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"pack-e2e\"\n[pool]\nhost_lost_after = 3\n\n[[apps]]\ntitle = \"Desktop\"\nid = 1\n\n[relay]\nport_range = \"41000-41099\"\n\n\
             [[wolf]]\nname = \"wolf-a\"\napi = \"{}\"\nstream_address = \"{SUBNET}.21\"\n\n\
             [[wolf]]\nname = \"wolf-b\"\napi = \"{}\"\nstream_address = \"{SUBNET}.22\"\n",
            root.join("wolf-a.sock").display(),
            root.join("wolf-b.sock").display()
        ),
    )
    .expect("write the configuration");
    let server = serve_in(&net.ns("dw"), root, &config, METRICS, "info");
    server.wait_for("streaming through the Wolf pool", STEP);
    server.wait_for("direwolf serve started", STEP);
    let reached = support::poll(STEP, Duration::from_millis(100), || {
        server
            .printed("Wolf reached wolf=wolf-a version=V6")
            .then_some(())
    });
    assert!(
        reached.is_some(),
        "start-up says which Wolf answered, with its API version\n{}",
        server.tail()
    );

    let (dir1, dir2) = (root.join("client1"), root.join("client2"));
    pair(&server, &c1, &dir1, "alice");
    pair(&server, &c2, &dir2, "bob");
    install_rtp_counters(&c1);
    install_rtp_counters(&c2);
    let free = serverinfo(&c1, &dir1);
    assert!(
        free["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("_SERVER_FREE")),
        "{free}"
    );

    // Client 1 streams.
    let (stop1, stop2) = (root.join("stop1"), root.join("stop2"));
    let s1 = stream(&c1, &dir1, &stop1, &[]);
    let started1 = s1.report(STEP);
    eprintln!("client 1: {started1}");
    assert_eq!(
        started1["event"], "started",
        "moonlight-common-c must complete every connection stage: {started1}"
    );
    wait_until(
        "client 1's pings reach one fake Wolf",
        Duration::from_secs(5),
        || wolves_streaming(&wolves).len() == 1,
    );
    let first = wolves_streaming(&wolves)[0];
    let (w1, w2) = (&wolves[first], &wolves[1 - first]);
    let rec1 = w1.sessions()[0].clone();
    eprintln!("client 1 on {}: {rec1}", w1.proc.name());
    let requests: Vec<String> = rec1["rtsp_requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            r.as_str()
                .unwrap_or_default()
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        requests,
        [
            "OPTIONS", "DESCRIBE", "SETUP", "SETUP", "SETUP", "ANNOUNCE", "PLAY"
        ],
        "the whole RTSP handshake must reach the Wolf through the relay"
    );
    assert_eq!(rec1["announced"], true);
    assert!(
        rec1["rtsp_sources"]
            .as_array()
            .expect("sources")
            .iter()
            .all(|s| s == DW_IP),
        "{rec1}"
    );
    assert!(
        rec1["enet_connects"].as_array().is_some_and(|c| c.len() == 1),
        "the control stream (ENet) must connect through the relay: {rec1}"
    );
    wait_until(
        "client 1 receives audio and video RTP",
        Duration::from_secs(5),
        || {
            let (audio, video) = rtp_counts(&c1);
            audio > 0 && video > 0
        },
    );
    assert!(
        w2.sessions().is_empty(),
        "the other Wolf must see nothing of client 1"
    );
    let busy = serverinfo(&c1, &dir1);
    assert!(
        busy["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("_SERVER_BUSY")),
        "{busy}"
    );
    assert_eq!(busy["current_game"], 1);

    // Client 2 streams at the same time: the other Wolf.
    let s2 = stream(&c2, &dir2, &stop2, &[]);
    let started2 = s2.report(STEP);
    let client2_started = Instant::now();
    assert_eq!(
        started2["event"], "started",
        "client 2 must stream too: {started2}"
    );
    wait_until(
        "client 2's pings reach the other Wolf",
        Duration::from_secs(5),
        || w2.has_stream(),
    );
    assert_eq!(
        w1.sessions().len(),
        1,
        "client 2 must not land on client 1's Wolf"
    );
    for w in &wolves {
        assert_eq!(
            w.report()["unmatched_pings"],
            0,
            "{} saw pings of no session of its own",
            w.proc.name()
        );
    }
    wait_until("client 2 receives RTP", Duration::from_secs(5), || {
        rtp_counts(&c2).0 > 0
    });
    let c2_audio_at_crash = rtp_counts(&c2).0;
    metrics_of_two_streams(&net.ns("dw"));
    for line in ["session placed", "relay session opened"] {
        assert!(
            server.printed_line_with(&["session{session=", line]),
            "a launch's log lines carry the session as a span field: {line}\n{}",
            server.tail()
        );
    }

    // The Wolf of client 1 crashes and stays down: after `[pool] host_lost_after` (3 s) direwolf
    // takes its sessions as lost and ends them.
    let wolf2_pings = |w: &Wolf| w.sessions()[0]["audio_pings"].as_u64().unwrap_or(0);
    let crashed_at = Instant::now();
    wolves[first].proc.kill();
    let other_pings_at_crash = wolf2_pings(&wolves[1 - first]);
    let closed = server.wait_for("relay session closed", Duration::from_secs(15));
    eprintln!(
        "client 1's session ended {:?} after its Wolf crashed",
        crashed_at.elapsed()
    );
    let rtsp_port = closed
        .rsplit("rtsp=")
        .next()
        .expect("rtsp port")
        .trim()
        .to_owned();
    let probe = driver(&c1, &dir1, &["probe", "--port", &rtsp_port], "pack_driver.py").report(STEP);
    assert_eq!(
        probe["refused"], true,
        "the ended session's relay RTSP port {rtsp_port} must be closed: {probe}"
    );
    wait_until("alice is FREE again", Duration::from_secs(5), || {
        serverinfo(&c1, &dir1)["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("_SERVER_FREE"))
    });
    let bob = serverinfo(&c2, &dir2);
    assert!(
        bob["state"].as_str().is_some_and(|s| s.ends_with("_SERVER_BUSY")),
        "bob's session must be unaffected: {bob}"
    );
    wait_until("client 2 keeps pinging its Wolf", Duration::from_secs(5), || {
        wolf2_pings(&wolves[1 - first]) > other_pings_at_crash + 2
    });

    wait_until("client 2 keeps receiving RTP", Duration::from_secs(5), || {
        rtp_counts(&c2).0 > c2_audio_at_crash + 2
    });

    std::fs::write(&stop2, b"").expect("stop file");
    let done2 = s2.report(STEP);
    eprintln!(
        "client 2 done {:?} after it started: {done2}",
        client2_started.elapsed()
    );
    assert_eq!(
        done2["terminated"], false,
        "client 2's stream must survive the other Wolf's crash: {done2}"
    );

    std::fs::write(&stop1, b"").expect("stop file");
    let done1 = s1.report(STEP);
    eprintln!("client 1 done: {done1}");

    // The crashed Wolf comes back (a supervisor restarts it, without sessions): client 1 streams
    // again, on it (the other Wolf is full).
    wolves[first].restart(&bin);
    let stop3 = root.join("stop3");
    let s3 = stream(&c1, &dir1, &stop3, &[]);
    let started3 = s3.report(STEP);
    assert_eq!(
        started3["event"], "started",
        "client 1 must stream again: {started3}"
    );
    wait_until(
        "client 1's new pings reach the restarted Wolf",
        Duration::from_secs(5),
        || wolves[first].has_stream(),
    );
    std::fs::write(&stop3, b"").expect("stop file");
    let done3 = s3.report(STEP);
    assert_eq!(done3["terminated"], false, "{done3}");
    drop(server);
    drop(net);
}
