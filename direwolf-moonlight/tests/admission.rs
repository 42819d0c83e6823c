//! Connection admission over real sockets: idle sockets from one loopback address (127.0.0.2)
//! cannot stall a pairing or a paired client on another (127.0.0.1), and the slots reserved for known
//! sources keep a paired client in when strangers fill the rest.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use direwolf_moonlight::ConnectionLimits;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use support::*;
use tokio::net::{TcpSocket, TcpStream};

/// The open-file limit raised so that the attacker's sockets fit in this process.
fn raise_open_files(needed: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed.min(hard), hard).unwrap();
    }
}

/// Up to `n` connections to `addr` from `source`, left idle; the ones the server closes at once
/// are kept too (an attacker does not care).
async fn idle_sockets(addr: SocketAddr, source: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(500), socket.connect(addr)).await {
            held.push(stream);
        }
    }
    held
}

/// The slowest of `rounds` HTTPS `/serverinfo` requests of `client`, each on a new connection.
async fn slowest_serverinfo(h: &Harness, client: &Client, rounds: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        let (response, _) = h
            .get_tls(Some(client), "/serverinfo?uniqueid=0123456789ABCDEF")
            .await;
        assert_eq!(
            response.element("PairStatus").as_deref(),
            Some("1"),
            "{}",
            response.text()
        );
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_from_one_address_do_not_stall_pairing_or_a_paired_client() {
    raise_open_files(16384);
    let h = Harness::start_with(|b| {
        b.with_connection_limits(ConnectionLimits {
            tls_handshake_timeout: Duration::from_secs(4),
            ..test_limits()
        })
    })
    .await;
    let client = Client::serial_zero();
    store_pairing(&h.stores, &client).await;
    let before = slowest_serverinfo(&h, &client, 5).await;
    let mut attack = idle_sockets(h.https, "127.0.0.2", 2000).await;
    attack.extend(idle_sockets(h.http, "127.0.0.2", 2000).await);
    assert!(attack.len() > 3000, "the attacker holds {} sockets", attack.len());
    // A new client pairs over HTTP meanwhile, then is served over HTTPS.
    let newcomer = Client::vector_c();
    let started = Instant::now();
    let phase4 = pair(&h, &newcomer, "4321", "4321", None).await;
    assert_eq!(
        phase4.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase4.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pairing took {:?}",
        started.elapsed()
    );
    slowest_serverinfo(&h, &newcomer, 1).await;
    let during = slowest_serverinfo(&h, &client, 20).await;
    let started = Instant::now();
    let (apps, _) = h.get_tls(Some(&client), "/applist").await;
    assert_eq!(apps.status, 200, "{}", apps.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "app list took {:?}",
        started.elapsed()
    );
    // Unprotected, every one of these waited for an idle socket's 10 s timeout.
    assert!(
        during < Duration::from_secs(1),
        "slowest {during:?} under attack (before: {before:?})"
    );
    drop(attack);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_slots_keep_a_known_client_in_when_strangers_fill_the_rest() {
    raise_open_files(4096);
    let limits = ConnectionLimits {
        max_connections: 24,
        reserved_for_known: 8,
        per_source: 8,
        tls_handshake_timeout: Duration::from_secs(30),
        ..test_limits()
    };
    let h = Harness::start_with(|b| b.with_connection_limits(limits)).await;
    let client = Client::serial_zero();
    store_pairing(&h.stores, &client).await;
    // A paired handshake from 127.0.0.1 makes it known.
    slowest_serverinfo(&h, &client, 1).await;
    // Two stranger addresses take the 16 shared slots with idle sockets.
    let mut strangers = idle_sockets(h.https, "127.0.0.2", 8).await;
    strangers.extend(idle_sockets(h.https, "127.0.0.3", 8).await);
    // A third stranger is turned away at once, once the server has taken the 16 in (on a busy
    // machine its accept loop may lag behind the test: a probe it still admitted is retried).
    let mut turned_away = false;
    for _ in 0..20 {
        let probe = idle_sockets(h.https, "127.0.0.4", 1).await;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), async {
            probe[0].readable().await.unwrap();
            probe[0].try_read(&mut buf)
        })
        .await;
        if let Ok(read) = read {
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            turned_away = true;
            break;
        }
    }
    assert!(turned_away, "the server closes a stranger's connection at once");
    // ...while the known client is served from the reserved slots.
    let slowest = slowest_serverinfo(&h, &client, 5).await;
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    drop(strangers);
    h.shutdown().await;
}
