//! The Kubernetes backends on the real control plane (`scripts/kube-testenv`, issue 11): the
//! store conformance suite on every kube store, and the PIN broker suites within one replica and
//! across two, each in a namespace of its own.

mod support;

use std::time::Duration;

use direwolf_k8s::crd;
use direwolf_k8s::pin_broker::{KubePinBroker, PinBrokerConfig};
use direwolf_k8s::stores::KubeStores;
use support::testenv;

/// The whole suite (a timeout means a call hung: a cache never synced or a retry did not end).
const SUITE: Duration = Duration::from_secs(180);
const SYNC: Duration = Duration::from_secs(30);

async fn suite<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(SUITE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {SUITE:?} (a call hung)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_every_kube_store() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    cp.install_crds(&crd::crds_yaml().expect("CRDs render")).await;
    let (client, namespace) = cp.namespace("stores").await;
    let stores = KubeStores::start(client, &namespace);
    testenv::within("caches sync", stores.wait_ready(SYNC))
        .await
        .expect("caches sync");
    suite(
        "the conformance suite",
        direwolf_core::conformance::all(&stores.stores()),
    )
    .await;
    // Twice on the same stores: the suite cleans up after itself and nothing lingers.
    suite(
        "the second conformance run",
        direwolf_core::conformance::all(&stores.stores()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_broker_suites_pass_within_one_replica_and_across_two() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, namespace) = cp.namespace("pins").await;
    let holder = KubePinBroker::with_config(client.clone(), &namespace, PinBrokerConfig::default());
    let page = KubePinBroker::with_config(
        cp.client(&namespace).await,
        &namespace,
        PinBrokerConfig::default(),
    );
    for broker in [&holder, &page] {
        testenv::within("broker watch syncs", broker.wait_ready(SYNC))
            .await
            .expect("watch syncs");
    }
    suite(
        "the PIN broker suite",
        direwolf_core::conformance::pin_broker(&holder),
    )
    .await;
    suite(
        "the PIN broker suite across replicas",
        direwolf_core::conformance::pin_broker_across(&holder, &page),
    )
    .await;
}
