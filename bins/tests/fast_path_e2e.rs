//! The kernel fast path end to end, beside `shared_ports_e2e.rs` (which runs its two-client
//! tests with the fast path off, on, behind a `FORWARD` drop policy and with a refusing `nft`):
//! after a `kill -9` a restart leaves no flow of the killed relay, and a session on a port set of
//! its own is carried by the kernel from the relay's own source.
//!
//! Needs root, `ip`, `nft` and python3 with moonlight_python 0.3.0; fails (never passes
//! silently) without them.

mod support;

use std::time::Duration;

use support::pack::*;
use support::shared_net::*;
use support::wait_until;

/// One run at a time: each holds Moonlight clients and two Wolfs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `kill -9` leaves direwolf's table and its flows behind; the next start replaces them with an
/// empty table, so no rule outlives its session.
#[test]
fn after_kill_9_a_restart_leaves_no_orphaned_flow() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pack = Run::start('9', true);
    let (root, net) = (pack.root(), &pack.net);
    let (c1, dw) = (net.ns("c1"), net.ns("dw"));
    let config = config_file(root, true);
    let mut server = serve_in(&dw, root, &config, METRICS, "info");
    server.wait_for("kernel fast path on", STEP);
    server.wait_for("direwolf serve started", STEP);
    let dir1 = root.join("client1");
    pair(&server, &c1, &dir1, "alice");
    let stop1 = root.join("stop1");
    let s1 = stream(&c1, &dir1, &stop1, &["--bitrate", "20000"]);
    let started = s1.report(STEP);
    assert_eq!(started["event"], "started", "client 1 must stream: {started}");
    wait_until(
        "the kernel carries the three flows",
        Duration::from_secs(10),
        || fast_path_elements(&dw, "wolves") == Some(3),
    );

    server.kill();
    assert_eq!(
        fast_path_elements(&dw, "clients"),
        Some(3),
        "kill -9 leaves the flows behind"
    );
    let restarted = serve_in(&dw, root, &config, METRICS, "info");
    restarted.wait_for("direwolf serve started", STEP);
    assert!(restarted.printed("kernel fast path on"), "{}", restarted.tail());
    for set in ["clients", "wolves", "flows", "wolf_addr", "relay_addr"] {
        assert_eq!(
            fast_path_elements(&dw, set),
            Some(0),
            "no flow of the killed relay is left in {set}"
        );
    }
    std::fs::write(&stop1, b"").expect("stop file");
    let _ = s1.report(STEP);
    restarted.stop();
    assert_eq!(
        fast_path_elements(&dw, "clients"),
        None,
        "a clean stop removes the table"
    );
}

/// The fast path with a port set per session (not shared): the relay's upstream socket shares
/// the session's public port with it (`relay/source.rs`), and the kernel carries the flows from
/// that same source.
#[test]
fn the_kernel_fast_path_carries_a_session_on_its_own_ports() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pack = Run::start('o', true);
    let (root, net) = (pack.root(), &pack.net);
    let (c1, dw) = (net.ns("c1"), net.ns("dw"));
    let wolves = &pack.wolves;
    let config = config_with(root, true, false);
    let server = serve_in(&dw, root, &config, METRICS, "info");
    server.wait_for("kernel fast path on", STEP);
    server.wait_for("direwolf serve started", STEP);
    let dir1 = root.join("client1");
    pair(&server, &c1, &dir1, "alice");
    install_rtp_counters(&c1);
    let stop1 = root.join("stop1");
    let s1 = stream(&c1, &dir1, &stop1, &[]);
    let started = s1.report(STEP);
    assert_eq!(started["event"], "started", "client 1 must stream: {started}");
    assert_eq!(
        server.count_lines_with(&["relay session opened", "rtsp=41000"]),
        1,
        "the session's own port set\n{}",
        server.tail()
    );
    wait_until(
        "the kernel carries the three flows",
        Duration::from_secs(10),
        || fast_path_elements(&dw, "wolves") == Some(3),
    );
    rtp_keeps_arriving("the kernel", &[&c1]);
    let sessions: Vec<_> = wolves.iter().flat_map(|w| w.sessions()).collect();
    assert!(
        sessions
            .iter()
            .any(|s| s["enet_connects"].as_array().is_some_and(|c| c.len() == 1)),
        "ENet connected once: {sessions:?}"
    );
    std::fs::write(&stop1, b"").expect("stop file");
    let done = s1.report(STEP);
    assert_eq!(done["terminated"], false, "the stream ran until stopped: {done}");
    let quit = driver(&c1, &dir1, &["quit"], "pack_driver.py").report(STEP);
    assert_eq!(quit["ok"], true, "quit: {quit}");
    wait_until(
        "no flow is left once the session ended",
        Duration::from_secs(10),
        || fast_path_elements(&dw, "clients") == Some(0),
    );
    server.stop();
}
