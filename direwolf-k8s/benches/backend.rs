//! Throughput of the Kubernetes backend (through the in-process API-server emulator) as a ratio to
//! the embedded backends, measured in the same run.
//!
//! `cargo bench -p direwolf-k8s --features emulator --bench backend`
//!
//! * **pairings/s**: the store writes one pairing needs — `PairingStore::put`, `PairingStore::get`
//!   (phase 5 authorises from it at once) and `UserStore::put` — against the persistent (redb,
//!   fsync per commit) and in-memory backends. Every Kubernetes write is an HTTP round trip to
//!   the API server, so no target applies beyond "measured"; the figure says how many pairings
//!   per second one proxy replica can persist.
//! * **app lists/s**: `AppCatalog::list` plus `AppCatalog::asset` of every app (what a client
//!   fetches when it shows the app grid), against the in-memory catalog `direwolf serve` uses.
//!   Target: at least 0.8 of embedded. Measured as `direwolf proxy` serves it (the Kubernetes
//!   catalog behind [`MemoAppCatalog`]) and, for reference, without the memo.
//!
//! Each figure is the median of [`ROUNDS`] rounds of [`ROUND`] each.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use direwolf_core::MemoAppCatalog;
use direwolf_core::persistent::PersistentStores;
use direwolf_core::store::DEFAULT_MEMO_TTL as DEFAULT_TTL;
use direwolf_core::{AppCatalog, Fingerprint, Pairing, PairingStore, Stores, User, UserName, UserStore};
use direwolf_k8s::crd;
use direwolf_k8s::emulator::ApiServerEmulator;
use direwolf_k8s::stores::KubeStores;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(600);

fn pairing(n: u64) -> Pairing {
    let mut der = n.to_be_bytes().to_vec();
    der.extend_from_slice(b"bench");
    Pairing {
        fingerprint: Fingerprint::of_der(&der),
        cert_pem: "-----BEGIN CERTIFICATE-----\n".to_owned()
            + &"A".repeat(1200)
            + "\n-----END CERTIFICATE-----\n",
        user: "alice".parse().expect("valid user"),
        device_name: Some("roth".into()),
        paired_at: 1_790_000_000,
    }
}

/// Operations per second of `op` (called with a running counter): median of the rounds.
async fn rate<F, Fut>(mut op: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut counter = 0u64;
    let mut rates = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < ROUND {
            op(counter).await;
            counter += 1;
            done += 1;
        }
        rates.push(done as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

async fn pairings_per_second(pairings: Arc<dyn PairingStore>, users: Arc<dyn UserStore>, base: u64) -> f64 {
    rate(|n| {
        let (pairings, users) = (pairings.clone(), users.clone());
        async move {
            let p = pairing(base + n);
            let fingerprint = p.fingerprint.clone();
            pairings.put(p).await.expect("pairing put");
            let got = pairings.get(&fingerprint).await.expect("pairing get");
            assert!(got.is_some(), "a written pairing is readable at once");
            let mut user = User::new("alice".parse::<UserName>().expect("valid user"));
            user.display_name = Some(format!("Alice {}", n % 4));
            users.put(user).await.expect("user put");
        }
    })
    .await
}

async fn app_lists_per_second(apps: Arc<dyn AppCatalog>) -> f64 {
    rate(|_| {
        let apps = apps.clone();
        async move {
            let listed = apps.list().await.expect("app list");
            assert!(!listed.is_empty());
            for app in &listed {
                let asset = apps.asset(app.id).await.expect("asset");
                std::hint::black_box(asset);
            }
        }
    })
    .await
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let emulator = tokio::time::timeout(Duration::from_secs(30), ApiServerEmulator::start())
            .await
            .expect("the emulator starts within 30 s")
            .expect("emulator");
        emulator
            .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
            .expect("CRDs install");
        for file in ["app-test-pattern.yaml", "app-firefox.yaml", "user.yaml"] {
            let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
            let yaml = std::fs::read_to_string(&path).expect("example readable");
            emulator.apply_yaml(&yaml).expect("example applies");
        }
        let kube = KubeStores::start(emulator.client(), "default");
        kube.wait_ready(Duration::from_secs(30))
            .await
            .expect("caches sync");
        let kube = kube.stores();

        // The embedded catalog holds the same apps and art.
        let memory = Stores::in_memory();
        for app in kube.apps.list().await.expect("kube app list") {
            let asset = kube.apps.asset(app.id).await.expect("kube asset");
            memory.apps.put(app, asset).await.expect("memory app put");
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let redb = PersistentStores::open(dir.path()).expect("open redb").stores();

        let kube_pairings = pairings_per_second(kube.pairings.clone(), kube.users.clone(), 0).await;
        let redb_pairings = pairings_per_second(redb.pairings.clone(), redb.users.clone(), 0).await;
        let memory_pairings =
            pairings_per_second(memory.pairings.clone(), memory.users.clone(), 0).await;
        let raw_lists = app_lists_per_second(kube.apps.clone()).await;
        // What `direwolf proxy` serves: the catalog behind the memo decorator.
        let memoised: Arc<dyn AppCatalog> = Arc::new(MemoAppCatalog::new(kube.apps.clone(), DEFAULT_TTL));
        let kube_lists = app_lists_per_second(memoised).await;
        let memory_lists = app_lists_per_second(memory.apps.clone()).await;

        println!("backend throughput (median of {ROUNDS} rounds of {ROUND:?})");
        println!(
            "pairings/s   kubernetes {kube_pairings:>10.0}   redb {redb_pairings:>10.0}   memory {memory_pairings:>10.0}   ratio kube/redb {:.3}   kube/memory {:.4}",
            kube_pairings / redb_pairings,
            kube_pairings / memory_pairings
        );
        let ratio = kube_lists / memory_lists;
        println!(
            "app lists/s  kubernetes {kube_lists:>10.0}   memory {memory_lists:>10.0}   ratio kube/memory {ratio:.3} (target >= 0.8: {})",
            if ratio >= 0.8 { "met" } else { "NOT met" }
        );
        println!(
            "app lists/s  kubernetes without memo {raw_lists:>10.0}   ratio kube/memory {:.3}",
            raw_lists / memory_lists
        );
        emulator.shutdown().await;
    });
}
