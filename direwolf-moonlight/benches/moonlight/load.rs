//! The HTTPS load comparison: HTTPS `GET /serverinfo` from a paired client over a NEW TLS
//! connection with a client certificate (RSA-2048) per request, against our server and the bare
//! rustls server of [`crate::servers`], at each concurrency, in interleaved rounds.
//!
//! Each server process runs pinned to one CPU (the last this process may use); the load
//! generator ([`crate::generator`]) runs at the lowest priority on every CPU. Per round the
//! server process's CPU time is read before and after, so the figures are requests/s, server
//! CPU per request and how busy the server's CPU was (a server at ~100 % is saturated; one
//! connection at a time cannot saturate it, since the client's own signature sits in the middle
//! of each handshake).
//!
//! `DW_BENCH_SECS` sets the length of a round (default 3 s), `DW_BENCH_ROUNDS` the rounds per
//! server and concurrency (default 4), `DW_BENCH_CONCURRENCY` the concurrencies (default `1,8`;
//! empty: skip this comparison);
//! `DW_BENCH_PIN=0` leaves the servers free to run on every CPU (their CPU figures then include
//! the cost of moving work between CPUs; "busy" is then of one CPU's worth);
//! `DW_BENCH_DIREWOLF=path/to/direwolf` adds that binary's `serve` as a third server, and
//! `DW_BENCH_DIREWOLF_BEFORE=path/to/older/direwolf` another build's (a before/after comparison
//! in the same run);
//! `DW_BENCH_WRAP='valgrind --tool=callgrind'` runs the bench's server processes under a
//! profiler (the figures are then the profiler's, not the servers').

use std::time::{Duration, Instant};

use direwolf_core::ServerIdentity;
use direwolf_core::persistent::PersistentStores;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

use crate::generator::Generator;
use crate::servers::{BARE_CERT_FILE, BARE_KEY_FILE, Kind, ServerProcess};
use crate::support::{Client, store_pairing};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// A data directory as `direwolf serve` leaves it: `identity`, the default user and the client's
/// pairing. The certificate and key also go to the files the bare server reads.
fn seed_data_dir(dir: &std::path::Path, identity: &ServerIdentity, client: &Client) {
    std::fs::write(dir.join(BARE_CERT_FILE), &identity.cert_pem).expect("writing the certificate");
    std::fs::write(dir.join(BARE_KEY_FILE), &identity.key_pem).expect("writing the key");
    let stores = PersistentStores::open(dir).expect("a data directory").stores();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        stores
            .identity
            .create_if_absent(identity.clone())
            .await
            .expect("identity");
        store_pairing(&stores, client).await;
    });
}

/// What one round measured.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    requests: u64,
    wall: Duration,
    cpu: Duration,
}

impl std::ops::AddAssign for Sample {
    fn add_assign(&mut self, other: Sample) {
        self.requests += other.requests;
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

impl Sample {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    fn cpu_ms_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / self.requests as f64
    }

    fn busy(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// `concurrency` connections at a time against `server` for `length`.
fn round(
    generator: &mut Generator,
    server: &mut ServerProcess,
    concurrency: usize,
    length: Duration,
) -> Sample {
    let cpu_before = server.cpu_time();
    let start = Instant::now();
    let requests = generator.run(server.addr, concurrency, length);
    let wall = start.elapsed();
    Sample {
        requests,
        wall,
        cpu: server.cpu_time() - cpu_before,
    }
}

fn print_figures(concurrency: usize, rounds: usize, length: Duration, totals: &[(&str, Sample)]) {
    println!(
        "== HTTPS /serverinfo, new TLS connection with client certificate per request, concurrency {concurrency} \
         ({rounds} interleaved rounds of {:.1} s per server)",
        length.as_secs_f64()
    );
    for (name, s) in totals {
        println!(
            "   {name:<16} {:8.1} req/s   server CPU {:6.3} ms/request   server CPU busy {:5.1} %   ({} requests)",
            s.rate(),
            s.cpu_ms_per_request(),
            s.busy() * 100.0,
            s.requests
        );
    }
    let bare = totals[0].1;
    for (name, s) in &totals[1..] {
        println!(
            "   ratio ({name} / bare): requests/s {:.3}, CPU per request (bare / {name}) {:.3}",
            s.rate() / bare.rate(),
            bare.cpu_ms_per_request() / s.cpu_ms_per_request()
        );
    }
}

/// The servers to compare, the bare one first, and the length of the `/serverinfo` body.
fn start_servers(
    generator: &mut Generator,
    client: &Client,
    cpu: Option<usize>,
    dirs: &[tempfile::TempDir],
) -> (Vec<(&'static str, ServerProcess)>, usize) {
    // Made as `direwolf serve` makes it on its first start.
    let identity = direwolf_moonlight::generate_identity().expect("a server identity");
    for dir in dirs {
        seed_data_dir(dir.path(), &identity, client);
    }
    let ours = ServerProcess::spawn(Kind::Ours, cpu, dirs[0].path(), 0);
    let body_len = generator.probe(ours.addr);
    let bare = ServerProcess::spawn(Kind::Bare, cpu, dirs[0].path(), body_len);
    let mut servers = vec![("bare rustls", bare), ("direwolf", ours)];
    if let Some(binary) = std::env::var_os("DW_BENCH_DIREWOLF") {
        let binary = ServerProcess::spawn_binary(binary.as_ref(), cpu, dirs[1].path());
        servers.push(("direwolf serve", binary));
    }
    if let Some(binary) = std::env::var_os("DW_BENCH_DIREWOLF_BEFORE") {
        let binary = ServerProcess::spawn_binary(binary.as_ref(), cpu, dirs[2].path());
        servers.push(("serve (before)", binary));
    }
    (servers, body_len)
}

/// Runs the comparison and prints its figures.
pub fn figures() {
    let length = Duration::from_secs_f64(env_or("DW_BENCH_SECS", 3.0));
    let rounds: usize = env_or("DW_BENCH_ROUNDS", 4);
    let concurrencies: Vec<usize> = std::env::var("DW_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    if concurrencies.is_empty() {
        return;
    }
    let cpus = allowed_cpus();
    let pin = std::env::var("DW_BENCH_PIN").map_or(true, |v| v != "0");
    let server_cpu = (pin && cpus.len() > 1).then(|| cpus[cpus.len() - 1]);
    let client = Client::serial_zero();
    let dirs = [(); 3].map(|()| tempfile::tempdir().expect("a temporary directory"));
    let client_cert = dirs[0].path().join("bench-client-cert.pem");
    std::fs::write(&client_cert, &client.cert_pem).expect("writing the client certificate");
    let mut generator = Generator::spawn(&client_cert);
    let (mut servers, body_len) = start_servers(&mut generator, &client, server_cpu, &dirs);
    println!(
        "HTTPS load: servers pinned to CPU {server_cpu:?}, load generator on CPUs {cpus:?} at nice {}, /serverinfo body {body_len} bytes",
        generator.niceness
    );
    for concurrency in concurrencies {
        for (_, server) in &mut servers {
            round(&mut generator, server, concurrency, Duration::from_millis(500));
        }
        let mut totals: Vec<(&str, Sample)> = servers
            .iter()
            .map(|(name, _)| (*name, Sample::default()))
            .collect();
        for i in 0..rounds {
            // Rotate which server goes first, so drift in the machine's load hits all alike.
            for k in 0..servers.len() {
                let j = (i + k) % servers.len();
                totals[j].1 += round(&mut generator, &mut servers[j].1, concurrency, length);
            }
        }
        print_figures(concurrency, rounds, length, &totals);
    }
}
