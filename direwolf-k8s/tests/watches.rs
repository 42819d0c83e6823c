//! The shared watches against the in-process API-server emulator: the stores, the launcher, the
//! PIN broker and the status reporter built from one `Watches` open exactly one watch per kind
//! (issue 10), readiness waits for every started watch, and a write through one store is seen
//! by another store of the same set.
#![cfg(feature = "emulator")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use direwolf_core::{Fingerprint, Pairing, PairingStore};
use direwolf_k8s::crd;
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::launcher::{KubeLauncher, LauncherConfig};
use direwolf_k8s::pin_broker::{KubePinBroker, PinBrokerConfig};
use direwolf_k8s::stores::KubeStores;
use direwolf_k8s::watch::Watches;

/// How long a test waits for anything (a timeout means a watch never synced).
const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "default";

fn once_each(resources: &[&str]) -> BTreeMap<String, usize> {
    resources.iter().map(|r| ((*r).to_owned(), 1)).collect()
}

/// Waits until the emulator has served one watch request for each of `resources` and none of
/// any other (a watch starts just after its initial list, so it may still be on its way), and
/// fails after 20 s with the counts it saw.
async fn one_watch_each(emulator: &ApiServerEmulator, resources: &[&str]) {
    let expected = once_each(resources);
    let settled = tokio::time::timeout(WAIT, async {
        while emulator.requests_by_resource("watch") != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "watch requests per resource: {:?}, expected {expected:?}",
        emulator.requests_by_resource("watch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reader_of_the_proxy_shares_one_watch_per_kind() {
    let emulator = support::emulator(WAIT, &[]).await;
    emulator.clear_requests();
    let watches = Watches::new(emulator.client(), NS);
    let stores = KubeStores::with_watches(&watches);
    let launcher = KubeLauncher::with_watches(&watches, LauncherConfig::default());
    let broker = KubePinBroker::with_watches(&watches, PinBrokerConfig::default());
    let reporter = tokio::spawn(direwolf_k8s::report::run(watches.clone()));
    support::within(WAIT, "the shared watches sync", watches.wait_ready(WAIT))
        .await
        .expect("every watch syncs");
    assert!(watches.ready() && stores.ready() && launcher.ready() && broker.ready());
    assert_eq!(
        watches.started(),
        ["app", "user", "pairing", "session", "pending-PIN secret"]
    );
    // The reporter's first round runs once the watches have listed; let it run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kinds = ["apps", "pairings", "secrets", "sessions", "users"];
    one_watch_each(&emulator, &kinds).await;
    assert_eq!(
        emulator.requests_by_resource("list"),
        once_each(&kinds),
        "initial lists per resource"
    );
    reporter.abort();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_covers_every_started_watch_and_only_those() {
    let emulator = support::emulator(WAIT, &[]).await;
    let watches = Watches::new(emulator.client(), NS);
    assert!(watches.started().is_empty());
    assert!(watches.ready(), "nothing started, nothing to wait for");
    // A launcher alone watches Sessions and Apps only.
    let apps = format!("/apis/{}/{}/namespaces/{NS}/apps", crd::GROUP, crd::VERSION);
    emulator.inject(
        FaultRule::delay(Duration::from_millis(800))
            .with_verb("list")
            .with_path_prefix(&apps),
    );
    let launcher = KubeLauncher::with_watches(&watches, LauncherConfig::default());
    assert_eq!(watches.started(), ["app", "session"]);
    assert!(
        !watches.ready(),
        "the App list is held back, so the set is not ready"
    );
    support::within(WAIT, "the launcher's watches sync", watches.wait_ready(WAIT))
        .await
        .expect("the watches sync");
    assert!(watches.ready() && launcher.ready());
    one_watch_each(&emulator, &["apps", "sessions"]).await;

    // A watch that cannot list (here: a kind that is not served) keeps the set unready.
    let broken = Watches::new(emulator.client(), NS);
    emulator.inject(
        FaultRule::status(403)
            .with_verb("list")
            .with_path_prefix(&format!("/api/v1/namespaces/{NS}/secrets"))
            .times(1000),
    );
    let _broker = KubePinBroker::with_watches(&broken, PinBrokerConfig::default());
    match broken.wait_ready(Duration::from_millis(500)).await {
        Err(direwolf_core::Error::Unavailable { message }) => {
            assert!(message.contains("pending-PIN secret"), "{message}");
        }
        other => panic!("a watch that cannot list is not ready: {other:?}"),
    }
    assert!(!broken.ready());
    emulator.clear_faults();
    emulator.shutdown().await;
}

/// `/readyz` probes readiness while start-up waits for it. kube's `Store::wait_until_ready`
/// keeps one waker, so a probe used to steal the waiter's and the wait ran into its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_does_not_hold_up_a_waiter() {
    let emulator = support::emulator(WAIT, &[]).await;
    let apps = format!("/apis/{}/{}/namespaces/{NS}/apps", crd::GROUP, crd::VERSION);
    emulator.inject(
        FaultRule::delay(Duration::from_millis(500))
            .with_verb("list")
            .with_path_prefix(&apps),
    );
    let watches = Watches::new(emulator.client(), NS);
    let stores = KubeStores::with_watches(&watches);
    let probe = tokio::spawn({
        let watches = watches.clone();
        async move {
            while !watches.ready() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let started = std::time::Instant::now();
    support::within(WAIT, "the watches sync", watches.wait_ready(WAIT))
        .await
        .expect("the watches sync");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait took {:?} for a list held back 0.5 s",
        started.elapsed()
    );
    assert!(stores.ready());
    support::within(WAIT, "the probe sees it", probe)
        .await
        .expect("the probe ends");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_of_one_set_share_the_write_through_overlay() {
    let emulator = support::emulator(WAIT, &[]).await;
    // Every watch request is held back, so only the overlay can show a write at once.
    emulator.inject(
        FaultRule::delay(Duration::from_secs(5))
            .with_verb("watch")
            .times(1000),
    );
    let watches = Watches::new(emulator.client(), NS);
    let writer = KubeStores::with_watches(&watches);
    let reader = KubeStores::with_watches(&watches);
    support::within(WAIT, "sync", watches.wait_ready(WAIT))
        .await
        .expect("the watches sync");
    let pairing = Pairing {
        fingerprint: Fingerprint::of_der(&[7; 32]),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        user: "alice".parse().expect("a valid user"),
        device_name: None,
        paired_at: 1_790_000_000,
    };
    support::within(WAIT, "put", writer.pairings.put(pairing.clone()))
        .await
        .expect("put");
    assert_eq!(
        support::within(
            WAIT,
            "get through the other store",
            reader.pairings.get(&pairing.fingerprint)
        )
        .await
        .expect("get"),
        Some(pairing),
        "a write by this process is visible to every store of the set at once"
    );
    emulator.shutdown().await;
}
