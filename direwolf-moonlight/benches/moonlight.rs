//! Benchmarks, each against a baseline measured in the same run:
//!
//! 1. HTTPS `/serverinfo` from a paired client over a NEW TLS connection per request (client
//!    certificate, full handshake), under a load that saturates the server, vs a bare rustls
//!    server with the same certificate and key that answers a fixed body of the same size: each
//!    server in its own process pinned to one CPU, rounds interleaved, at concurrency 1 and 8;
//!    requests/s and server CPU per request (`load.rs`, `servers.rs`, `generator.rs`; the
//!    modules are in `benches/moonlight/`).
//! 2. Complete pairings (phase 1 with the PIN typed at once, phases 2–4 over HTTP, phase 5 over
//!    HTTPS) vs the bare cost of the RSA operations a pairing needs, done with ring (4
//!    private-key operations: server phase 3, client phase 4, and both TLS CertificateVerify
//!    signatures in phase 5; 4 verifications of those): wall and CPU time (`pairing.rs`).
//!
//! 3. A paired client's HTTPS `/serverinfo` p50 and p99, quiet vs under an idle-socket attack
//!    of 2,000 connections from another address, on the production connection limits
//!    (`attack.rs`).
//!
//! `cargo bench -p direwolf-moonlight` prints the figures and ratios first, then runs the
//! pairing comparison through criterion. The bench binary doubles as the server and load
//! generator processes of the first benchmark.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "moonlight/attack.rs"]
mod attack;
#[path = "moonlight/generator.rs"]
mod generator;
#[path = "moonlight/load.rs"]
mod load;
#[path = "moonlight/pairing.rs"]
mod pairing;
#[path = "moonlight/servers.rs"]
mod servers;

use criterion::Criterion;
use tokio::runtime::Runtime;

fn criterion_benches(c: &mut Criterion, rt: &Runtime) {
    let pairer = rt.block_on(pairing::Pairer::start());
    let bare = pairing::BareRsa::new(&support::Client::serial_zero());
    let client_rt = pairing::client_runtime();
    let mut group = c.benchmark_group("pairing");
    group.sample_size(20);
    group.bench_function("complete_pairing", |b| {
        b.to_async(&client_rt).iter(|| pairer.pair())
    });
    group.bench_function("bare_rsa_ops", |b| b.iter(|| bare.run()));
    group.finish();
    rt.block_on(pairer.harness.shutdown());
}

fn main() {
    if servers::run_if_server() || generator::run_if_generator() {
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
        attack::figures(&rt);
        // `DW_BENCH_ONLY=attack cargo bench -p direwolf-moonlight` stops after the attack figures.
        if std::env::var("DW_BENCH_ONLY").as_deref() == Ok("attack") {
            return;
        }
        load::figures();
        pairing::figures(&rt);
    }
    let mut c = Criterion::default().configure_from_args();
    if benchmarking {
        criterion_benches(&mut c, &rt);
    }
    c.final_summary();
}
