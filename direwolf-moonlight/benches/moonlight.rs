//! Benchmarks, each against a baseline measured in the same run:
//!
//! 1. HTTPS `/serverinfo` from a paired client over a NEW TLS connection per request (client
//!    certificate, full handshake) vs a bare rustls server with the same certificate and TLS
//!    policy that answers a fixed body of the same size: requests/s and p99 latency.
//! 2. Complete pairings (phase 1 with the PIN delivered at once, phases 2–4 over HTTP, phase 5
//!    over HTTPS) vs the bare cost of the RSA operations a pairing needs (4 private-key
//!    operations: server phase 3, client phase 4, and both TLS CertificateVerify signatures in
//!    phase 5; 4 public-key verifications of those).
//!
//! `cargo bench -p direwolf-moonlight` prints the figures and ratios first, then runs the same
//! comparisons through criterion.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use direwolf_core::{Pairing, User, UserName};
use direwolf_moonlight::crypto::{CertificateInfo, ServerSigner};
use direwolf_moonlight::{LoadedIdentity, tls};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const SERVERINFO: &str = "/serverinfo?uniqueid=0123456789ABCDEF&uuid=0c9f";

/// A bare rustls server: same certificate and TLS policy, fixed body, one request per connection.
async fn bare_server(body_len: usize) -> SocketAddr {
    let identity = LoadedIdentity::new(direwolf_core::ServerIdentity {
        cert_pem: SERVER_CERT.into(),
        key_pem: SERVER_KEY.into(),
        unique_id: "u".into(),
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&identity).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response: Arc<[u8]> = {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml; charset=utf-8\r\nconnection: close\r\ncontent-length: {body_len}\r\n\r\n"
        );
        let mut bytes = head.into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', body_len));
        bytes.into()
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn one_request(addr: SocketAddr, client: &Client) -> Response {
    let (stream, _) = tls_connect(addr, Some(client)).await;
    request(stream, "GET", SERVERINFO, None).await
}

async fn paired_harness(client: &Client) -> Harness {
    let h = Harness::start().await;
    let user = UserName::default_user();
    h.stores.users.put(User::new(user.clone())).await.unwrap();
    let pairing = Pairing {
        fingerprint: client.info().fingerprint(),
        cert_pem: client.cert_pem.clone(),
        user,
        device_name: None,
        paired_at: 0,
    };
    h.stores.pairings.put(pairing).await.unwrap();
    h
}

/// One complete pairing; returns when phase 5 answered `paired` 1.
async fn one_pairing(h: &Harness, client: &Client) {
    let phase1 = {
        let (addr, path) = (h.http, phase1_path(client));
        tokio::spawn(async move { request(connect(addr).await, "GET", &path, None).await })
    };
    let secret = h.pending_secret().await;
    let r = h
        .post_pin(&format!(r#"{{"pin":"1234","secret":"{secret}"}}"#))
        .await;
    assert_eq!(r.status, 200);
    let phase1 = phase1.await.unwrap();
    assert_eq!(phase1.element("paired").as_deref(), Some("1"));
    let (pin_ok, phase4) = ClientPairing::new(client.clone(), "1234")
        .phases_2_to_4(h, SERVER_CERT)
        .await;
    assert!(pin_ok);
    assert_eq!(phase4.element("paired").as_deref(), Some("1"));
    let (r, _) = h
        .get_tls(
            Some(client),
            "/pair?uniqueid=0123456789ABCDEF&phrase=pairchallenge",
        )
        .await;
    assert_eq!(r.element("paired").as_deref(), Some("1"));
}

/// The RSA operations of one pairing, done directly.
fn rsa_ops(
    server: &ServerSigner,
    client: &ServerSigner,
    server_cert: &CertificateInfo,
    client_cert: &CertificateInfo,
) {
    for i in 0..2u8 {
        let message = [i; 16];
        let s = server.sign(&message).unwrap();
        assert!(server_cert.verify(&message, &s));
        let c = client.sign(&message).unwrap();
        assert!(client_cert.verify(&message, &c));
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

fn figures(rt: &Runtime) {
    let client = Client::serial_zero();
    let (h, bare) = rt.block_on(async {
        let h = paired_harness(&client).await;
        let body_len = one_request(h.https, &client).await.body.len();
        (h, bare_server(body_len).await)
    });
    // Warm up, then alternate batches so drift hits both sides equally.
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..20 {
            one_request(h.https, &client).await;
            one_request(bare, &client).await;
        }
        for _ in 0..6 {
            for (addr, samples) in [(h.https, &mut ours), (bare, &mut base)] {
                for _ in 0..100 {
                    let start = Instant::now();
                    let r = one_request(addr, &client).await;
                    samples.push(start.elapsed());
                    assert_eq!(r.status, 200);
                }
            }
        }
    });
    let rate = |s: &[Duration]| s.len() as f64 / s.iter().sum::<Duration>().as_secs_f64();
    let (our_rate, base_rate) = (rate(&ours), rate(&base));
    let (our_p99, base_p99) = (percentile(&mut ours, 0.99), percentile(&mut base, 0.99));
    println!(
        "== HTTPS /serverinfo, new TLS connection with client certificate per request ({} requests each)",
        ours.len()
    );
    println!(
        "   direwolf:    {our_rate:8.1} req/s   p99 {:6.2} ms",
        our_p99.as_secs_f64() * 1e3
    );
    println!(
        "   bare rustls: {base_rate:8.1} req/s   p99 {:6.2} ms",
        base_p99.as_secs_f64() * 1e3
    );
    println!(
        "   ratio (direwolf / bare): throughput {:.3}, p99 latency {:.3} (bare p99 / direwolf p99)",
        our_rate / base_rate,
        base_p99.as_secs_f64() / our_p99.as_secs_f64()
    );
    rt.block_on(h.shutdown());

    // Pairings.
    let h = rt.block_on(Harness::start());
    let server = ServerSigner::from_pem(SERVER_KEY).unwrap();
    let client_signer = ServerSigner::from_pem(&client.key_pem).unwrap();
    let server_cert = CertificateInfo::from_pem(SERVER_CERT).unwrap();
    let client_cert = client.info();
    rt.block_on(one_pairing(&h, &client));
    let n = 60;
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            one_pairing(&h, &client).await;
        }
    });
    let pairing_time = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        rsa_ops(&server, &client_signer, &server_cert, &client_cert);
    }
    let rsa_time = start.elapsed() / n;
    println!("== complete pairings (phase 1 with immediate PIN, phases 2-5 over sockets), {n} each");
    println!(
        "   pairings:        {:8.1} /s   ({:.2} ms each)",
        1.0 / pairing_time.as_secs_f64(),
        pairing_time.as_secs_f64() * 1e3
    );
    println!(
        "   bare RSA ops:    {:8.1} /s   ({:.2} ms per pairing's 4 signs + 4 verifies)",
        1.0 / rsa_time.as_secs_f64(),
        rsa_time.as_secs_f64() * 1e3
    );
    println!(
        "   ratio (pairings/s / bare RSA sets/s): {:.3}",
        rsa_time.as_secs_f64() / pairing_time.as_secs_f64()
    );
    rt.block_on(h.shutdown());
}

fn criterion_benches(c: &mut Criterion, rt: &Runtime) {
    let client = Client::serial_zero();
    let (h, bare) = rt.block_on(async {
        let h = paired_harness(&client).await;
        let body_len = one_request(h.https, &client).await.body.len();
        (h, bare_server(body_len).await)
    });
    let mut group = c.benchmark_group("https_serverinfo_new_connection");
    group.bench_function("direwolf", |b| {
        b.to_async(rt).iter(|| one_request(h.https, &client))
    });
    group.bench_function("bare_rustls", |b| {
        b.to_async(rt).iter(|| one_request(bare, &client))
    });
    group.finish();
    rt.block_on(h.shutdown());

    let h = rt.block_on(Harness::start());
    let server = ServerSigner::from_pem(SERVER_KEY).unwrap();
    let client_signer = ServerSigner::from_pem(&client.key_pem).unwrap();
    let (server_cert, client_cert) = (CertificateInfo::from_pem(SERVER_CERT).unwrap(), client.info());
    let mut group = c.benchmark_group("pairing");
    group.sample_size(20);
    group.bench_function("complete_pairing", |b| {
        b.to_async(rt).iter(|| one_pairing(&h, &client))
    });
    group.bench_function("bare_rsa_ops", |b| {
        b.iter(|| rsa_ops(&server, &client_signer, &server_cert, &client_cert))
    });
    group.finish();
    rt.block_on(h.shutdown());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo test --benches` runs this binary without `--bench`: keep that quick.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    if benchmarking {
        figures(&rt);
    }
    let mut c = Criterion::default().configure_from_args();
    if benchmarking {
        criterion_benches(&mut c, &rt);
    }
    c.final_summary();
}
