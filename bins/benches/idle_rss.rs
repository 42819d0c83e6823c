//! Idle resident memory of `direwolf serve`, next to two baselines measured in the same run.
//!
//! `cargo bench -p direwolf --bench idle_rss` (release build). Starts `direwolf serve` on
//! 127.0.0.1 with free ports, a fresh data directory and no mDNS, waits for start-up plus a few
//! idle seconds, and reads `VmRSS` from `/proc/PID/status`. Baselines: `sleep` (a process that
//! does nothing) and a minimal tokio program (this binary re-invoked: a 2-worker runtime with one
//! TCP listener, idle). The target is < 20 MiB for `direwolf serve`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::proc_status;

const IDLE: Duration = Duration::from_secs(3);
const TARGET_KIB: u64 = 20 * 1024;
const BASELINE_VAR: &str = "DIREWOLF_RSS_BASELINE";

/// `VmRSS` and `Threads` of a process.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let pid = pid.to_string();
    (proc_status(&pid, "VmRSS:"), proc_status(&pid, "Threads:"))
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` with stderr piped and waits until a stderr line contains `ready`.
fn start(mut command: Command, ready: &str) -> Guard {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(ready) => return guard,
            Ok(_) => {}
            Err(e) => panic!("the process did not print {ready:?} within 120 s: {e}"),
        }
    }
}

fn measure(name: &str, guard: Guard) -> u64 {
    std::thread::sleep(IDLE);
    let (rss, threads) = rss_and_threads(guard.0.id());
    println!("{name:<28} {:>8.1} MiB  ({threads} threads)", rss as f64 / 1024.0);
    rss
}

/// The minimal tokio baseline program.
fn baseline_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let _listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        eprintln!("ready");
        std::future::pending::<()>().await;
    });
}

fn main() {
    if std::env::var_os(BASELINE_VAR).is_some() {
        baseline_tokio();
        return;
    }
    let data = tempfile::tempdir().expect("temporary directory");

    let mut sleep = Command::new("sh");
    sleep.args(["-c", "echo ready >&2; exec sleep 600"]);
    let sleep_kib = measure("sleep (baseline)", start(sleep, "ready"));

    let mut tokio = Command::new(std::env::current_exe().expect("this binary"));
    tokio.env(BASELINE_VAR, "1");
    let tokio_kib = measure("minimal tokio (baseline)", start(tokio, "ready"));

    let mut serve = Command::new(env!("CARGO_BIN_EXE_direwolf"));
    serve
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--admin-port",
            "0",
            "--no-mdns",
        ])
        .env("RUST_LOG", "info");
    let serve_kib = measure("direwolf serve (idle)", start(serve, "direwolf serve started"));

    println!(
        "direwolf serve / minimal tokio = {:.2}x, direwolf serve / sleep = {:.2}x; target < 20 MiB: {}",
        serve_kib as f64 / tokio_kib as f64,
        serve_kib as f64 / sleep_kib as f64,
        if serve_kib < TARGET_KIB { "met" } else { "NOT met" }
    );
}
