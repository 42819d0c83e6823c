//! A paired client's HTTPS `/serverinfo` latency (a new TLS connection per request, as clients
//! poll) without and then under an idle-socket attack from another loopback address: 2,000
//! connections from 127.0.0.2 that never send a byte, every one the server closes replaced at
//! once. The server runs with its production limits. Rounds alternate quiet and attack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use direwolf_moonlight::ConnectionLimits;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Runtime;

use crate::support::{Client, Harness, store_pairing};

const ATTACK_SOCKETS: usize = 2000;
const REQUESTS_PER_ROUND: usize = 100;
const ROUNDS: usize = 3;

/// An attacker on a thread of its own holding [`ATTACK_SOCKETS`] idle connections.
struct Attacker {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attacker {
    fn start(target: SocketAddr) -> Attacker {
        let (stop, held, opened) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, h, o) = (stop.clone(), held.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(hold(target, s, h, o));
        });
        Attacker {
            stop,
            held,
            opened,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.opened.load(Ordering::SeqCst)
    }
}

async fn connect_from(source: &str, target: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().ok()?).ok()?;
    tokio::time::timeout(Duration::from_millis(200), socket.connect(target))
        .await
        .ok()?
        .ok()
}

/// Keeps [`ATTACK_SOCKETS`] connections open: one task per socket that reconnects as soon as
/// the server closes its connection (as fast as the server refuses: a saturating attack that
/// spends no CPU polling).
async fn hold(target: SocketAddr, stop: Arc<AtomicBool>, held: Arc<AtomicUsize>, opened: Arc<AtomicUsize>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ATTACK_SOCKETS {
        let (stop, held, opened) = (stop.clone(), held.clone(), opened.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Some(stream) = connect_from("127.0.0.2", target).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                held.fetch_add(1, Ordering::Relaxed);
                // Held until the server closes it (EOF or reset) or the attack ends.
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(()) = tokio::time::timeout(Duration::from_secs(1), closed(&stream)).await {
                        break;
                    }
                }
                held.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Completes when the server has closed `stream`.
async fn closed(stream: &TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

/// The latency of each of `n` requests.
async fn serverinfo_latencies(h: &Harness, client: &Client, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (response, _) = h
            .get_tls(Some(client), "/serverinfo?uniqueid=0123456789ABCDEF")
            .await;
        assert_eq!(response.status, 200);
        latencies.push(started.elapsed());
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Prints p50 and p99 of the paired client, quiet and under attack, and their ratio.
pub fn figures(rt: &Runtime) {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(16384), hard).unwrap();
    let h = rt.block_on(Harness::start_with(|b| {
        b.with_connection_limits(ConnectionLimits::default())
    }));
    let client = Client::serial_zero();
    rt.block_on(store_pairing(&h.stores, &client));
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut quiet, mut attacked, mut held, mut opened) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..ROUNDS {
        quiet.extend(client_rt.block_on(serverinfo_latencies(&h, &client, REQUESTS_PER_ROUND)));
        let attacker = Attacker::start(h.https);
        let deadline = Instant::now() + Duration::from_secs(20);
        while attacker.held.load(Ordering::Relaxed) < ATTACK_SOCKETS && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        held = held.max(attacker.held.load(Ordering::Relaxed));
        attacked.extend(client_rt.block_on(serverinfo_latencies(&h, &client, REQUESTS_PER_ROUND)));
        opened += attacker.stop();
    }
    quiet.sort_unstable();
    attacked.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (a50, a99) = (percentile(&attacked, 0.5), percentile(&attacked, 0.99));
    println!(
        "== paired HTTPS /serverinfo (new TLS connection each), {} requests quiet vs {} under an idle-socket \
         attack ({held} sockets held from 127.0.0.2, {opened} opened in all), rounds interleaved",
        quiet.len(),
        attacked.len()
    );
    println!("quiet:        p50 {:.2} ms, p99 {:.2} ms", ms(q50), ms(q99));
    println!("under attack: p50 {:.2} ms, p99 {:.2} ms", ms(a50), ms(a99));
    println!(
        "p99 ratio (attack / quiet): {:.2}",
        a99.as_secs_f64() / q99.as_secs_f64()
    );
    rt.block_on(h.shutdown());
}
