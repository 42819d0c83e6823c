//! Benchmarks, each against a baseline measured in the same run:
//!
//! 1. HTTPS `/serverinfo` from a paired client over a NEW TLS connection per request (client
//!    certificate, full handshake), under a load that saturates the server, vs a bare rustls
//!    server with the same certificate and key that answers a fixed body of the same size: each
//!    server in its own process pinned to one CPU, rounds interleaved, at concurrency 1 and 8;
//!    requests/s and server CPU per request (`load.rs`, `servers.rs` in `benches/moonlight/`).
//! 2. Complete pairings (phase 1 with the PIN delivered at once, phases 2–4 over HTTP, phase 5
//!    over HTTPS) vs the bare cost of the RSA operations a pairing needs (4 private-key
//!    operations: server phase 3, client phase 4, and both TLS CertificateVerify signatures in
//!    phase 5; 4 public-key verifications of those).
//!
//! `cargo bench -p direwolf-moonlight` prints the figures and ratios first, then runs the
//! pairing comparison through criterion. The bench binary doubles as the server processes of
//! the first benchmark (see `servers.rs`).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "moonlight/load.rs"]
mod load;
#[path = "moonlight/servers.rs"]
mod servers;

use std::time::Instant;

use criterion::Criterion;
use direwolf_moonlight::crypto::{CertificateInfo, ServerSigner};
use support::*;
use tokio::runtime::Runtime;

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

fn pairing_figures(rt: &Runtime) {
    let client = Client::serial_zero();
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
    if servers::run_if_server() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo test --benches` runs this binary without `--bench`: keep that quick.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    if benchmarking {
        load::figures();
        pairing_figures(&rt);
    }
    let mut c = Criterion::default().configure_from_args();
    if benchmarking {
        criterion_benches(&mut c, &rt);
    }
    c.final_summary();
}
