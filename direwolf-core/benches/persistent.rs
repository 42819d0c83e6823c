//! Latency of the persistent (redb) backend against the in-memory backend, in the same run.
//!
//! `cargo bench -p direwolf-core --bench persistent`. Pairing reads run on every HTTPS request and
//! are served from the write-through cache, so `pairing_get` should match memory; a `put`
//! commits durably (fsync), so `pairing_put` measures the disk; `user_get` is a redb read
//! transaction on the blocking pool.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use direwolf_core::persistent::PersistentStores;
use direwolf_core::{Fingerprint, Pairing, PairingStore, Stores, User, UserName, UserStore};

/// A backend's name and its pairing and user stores.
type Backend = (&'static str, Arc<dyn PairingStore>, Arc<dyn UserStore>);

fn pairing(n: u32) -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(&n.to_be_bytes()),
        cert_pem: "-----BEGIN CERTIFICATE-----\n".to_owned()
            + &"A".repeat(1200)
            + "\n-----END CERTIFICATE-----\n",
        user: UserName::default_user(),
        device_name: Some("roth".into()),
        paired_at: 1_700_000_000,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("temporary directory");
    let persistent = PersistentStores::open(dir.path()).expect("open").stores();
    let memory = Stores::in_memory();
    let backends: [Backend; 2] = [
        ("memory", memory.pairings.clone(), memory.users.clone()),
        ("redb", persistent.pairings.clone(), persistent.users.clone()),
    ];
    runtime.block_on(async {
        for (_, pairings, users) in &backends {
            for n in 0..100 {
                pairings.put(pairing(n)).await.expect("seed pairing");
            }
            users
                .put(User::new(UserName::default_user()))
                .await
                .expect("seed user");
        }
    });

    let probe = pairing(42).fingerprint;
    let mut group = c.benchmark_group("pairing_get");
    for (name, pairings, _) in &backends {
        group.bench_with_input(BenchmarkId::from_parameter(name), pairings, |b, store| {
            b.to_async(&runtime)
                .iter(|| async { store.get(&probe).await.expect("get").expect("present") })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pairing_put");
    group.sample_size(20);
    for (name, pairings, _) in &backends {
        group.bench_with_input(BenchmarkId::from_parameter(name), pairings, |b, store| {
            b.to_async(&runtime)
                .iter(|| async { store.put(pairing(7)).await.expect("put") })
        });
    }
    group.finish();

    let user = UserName::default_user();
    let mut group = c.benchmark_group("user_get");
    for (name, _, users) in &backends {
        group.bench_with_input(BenchmarkId::from_parameter(name), users, |b, store| {
            b.to_async(&runtime)
                .iter(|| async { store.get(&user).await.expect("get").expect("present") })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
