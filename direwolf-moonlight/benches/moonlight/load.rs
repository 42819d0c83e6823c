//! The HTTPS load comparison: HTTPS `GET /serverinfo` from a paired client over a NEW TLS
//! connection with a client certificate (RSA-2048) per request, against our server and the bare
//! rustls server of [`crate::servers`], at each concurrency, in interleaved rounds.
//!
//! Each server process runs pinned to one CPU (the last this process may use); the load
//! generator's threads run on the other CPUs. Per round it reads the server process's CPU time
//! before and after, so it reports requests/s, server CPU per request and how busy the server's
//! CPU was (a server at ~100 % is saturated; one connection at a time cannot saturate it, since
//! the client's own signature sits in the middle of each handshake).
//!
//! `DW_BENCH_SECS` sets the length of a round (default 3 s), `DW_BENCH_ROUNDS` the rounds per
//! server and concurrency (default 4), `DW_BENCH_CONCURRENCY` the concurrencies (default `1,8`;
//! empty: skip this comparison);
//! `DW_BENCH_DIREWOLF=path/to/direwolf` adds that binary's `serve` as a third server;
//! `DW_BENCH_WRAP='valgrind --tool=callgrind'` runs the bench's server processes under a
//! profiler (the figures are then the profiler's, not the servers').

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{Pairing, ServerIdentity, User, UserName};
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

use crate::servers::{BARE_CERT_FILE, BARE_KEY_FILE, Kind, ServerProcess, pin_to};
use crate::support::{Client, client_config};

const REQUEST: &[u8] =
    b"GET /serverinfo?uniqueid=0123456789ABCDEF&uuid=0c9f HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

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
        let user = UserName::default_user();
        stores.users.put(User::new(user.clone())).await.expect("user");
        let pairing = Pairing {
            fingerprint: client.info().fingerprint(),
            cert_pem: client.cert_pem.clone(),
            user,
            device_name: None,
            paired_at: 0,
        };
        stores.pairings.put(pairing).await.expect("pairing");
    });
}

/// One request on a new TLS connection; returns the length of the reply body.
async fn one_request(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<usize> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(REQUEST).await?;
    let mut reply = Vec::with_capacity(4096);
    tls.read_to_end(&mut reply).await?;
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .filter(|_| reply.starts_with(b"HTTP/1.1 200 "))
        .ok_or_else(|| std::io::Error::other("not an HTTP 200 reply"))?;
    Ok(reply.len() - head_end - 4)
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
    rt: &Runtime,
    server: &mut ServerProcess,
    connector: &TlsConnector,
    concurrency: usize,
    length: Duration,
) -> Sample {
    let cpu_before = server.cpu_time();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + length;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (addr, connector, done) = (server.addr, connector.clone(), done.clone());
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    one_request(addr, &connector)
                        .await
                        .expect("a reply from the server");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("a load task");
        }
    });
    let wall = start.elapsed();
    Sample {
        requests: done.load(Ordering::Relaxed),
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
    rt: &Runtime,
    connector: &TlsConnector,
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
    let body_len = rt
        .block_on(one_request(ours.addr, connector))
        .expect("a /serverinfo reply");
    let bare = ServerProcess::spawn(Kind::Bare, cpu, dirs[0].path(), body_len);
    let mut servers = vec![("bare rustls", bare), ("direwolf", ours)];
    if let Some(binary) = std::env::var_os("DW_BENCH_DIREWOLF") {
        let binary = ServerProcess::spawn_binary(binary.as_ref(), cpu, dirs[1].path());
        servers.push(("direwolf serve", binary));
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
    let server_cpu = (cpus.len() > 1).then(|| cpus[cpus.len() - 1]);
    let client_cpus: Vec<usize> = cpus.iter().copied().filter(|c| Some(*c) != server_cpu).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_cpus.len().max(1))
        .on_thread_start({
            let client_cpus = client_cpus.clone();
            move || {
                if server_cpu.is_some() {
                    pin_to(&client_cpus);
                }
            }
        })
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let client = Client::serial_zero();
    let connector = TlsConnector::from(client_config(Some(&client)));
    let dirs = [(); 2].map(|()| tempfile::tempdir().expect("a temporary directory"));
    let (mut servers, body_len) = start_servers(&rt, &connector, &client, server_cpu, &dirs);
    println!(
        "HTTPS load: servers on CPU {server_cpu:?}, load generator on CPUs {client_cpus:?}, /serverinfo body {body_len} bytes"
    );
    for concurrency in concurrencies {
        for (_, server) in &mut servers {
            round(&rt, server, &connector, concurrency, Duration::from_millis(500));
        }
        let mut totals: Vec<(&str, Sample)> = servers
            .iter()
            .map(|(name, _)| (*name, Sample::default()))
            .collect();
        for i in 0..rounds {
            // Rotate which server goes first, so drift in the machine's load hits all alike.
            for k in 0..servers.len() {
                let j = (i + k) % servers.len();
                totals[j].1 += round(&rt, &mut servers[j].1, &connector, concurrency, length);
            }
        }
        print_figures(concurrency, rounds, length, &totals);
    }
}
