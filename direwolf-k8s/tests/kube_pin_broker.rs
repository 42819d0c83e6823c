//! The Kubernetes PIN broker against the in-process API-server emulator, with two broker
//! instances on two clients standing for two proxy replicas (`docs/protocol/moonlight-http.md`
//! § Several proxy replicas: the PIN page may be served by another replica than the one holding
//! phase 1).
#![cfg(feature = "emulator")]

mod support;

use std::future::Future;
use std::time::Duration;

use direwolf_core::{PairSecret, PendingPinRequest, PinBroker, PinError, PinSubmission};
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::pin_broker::{KubePinBroker, PinBrokerConfig, secret_name};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "default";

/// Awaits `f`, failing the test with `what` after 30 s (a timeout means a broker call hung).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    support::within(WAIT, what, f).await
}

async fn broker(emulator: &ApiServerEmulator, config: PinBrokerConfig) -> KubePinBroker {
    let broker = KubePinBroker::with_config(emulator.client(), NS, config);
    within("broker watch syncs", broker.wait_ready(WAIT))
        .await
        .expect("watch syncs");
    broker
}

fn request() -> PendingPinRequest {
    PendingPinRequest {
        client_ip: "192.0.2.7".parse().expect("ip"),
        device_name: Some("roth".into()),
    }
}

fn submission(pin: &str) -> PinSubmission {
    PinSubmission {
        pin: pin.parse().expect("valid pin"),
        user: Some("alice".parse().expect("valid user")),
    }
}

async fn secrets(emulator: &ApiServerEmulator) -> Vec<Secret> {
    let api: Api<Secret> = Api::namespaced(emulator.client(), NS);
    within("list secrets", api.list(&ListParams::default()))
        .await
        .expect("list secrets")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_submitted_on_another_replica_releases_the_waiter() {
    let emulator = within("emulator", ApiServerEmulator::start())
        .await
        .expect("emulator");
    let holder = broker(&emulator, PinBrokerConfig::default()).await;
    let page = broker(&emulator, PinBrokerConfig::default()).await;

    let secret = within("open", holder.open(request())).await.expect("open");
    let stored = secrets(&emulator).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].metadata.name.as_deref(),
        Some(secret_name(&secret).as_str())
    );

    // The other replica lists it as pending once its watch delivers it.
    within("pending on the other replica", async {
        loop {
            let pending = page.pending().await.expect("pending");
            if pending.iter().any(|p| p.secret == secret) {
                assert_eq!(pending[0].device_name.as_deref(), Some("roth"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let waiter = {
        let holder = holder.clone();
        let secret = secret.clone();
        tokio::spawn(async move { holder.wait(&secret, Duration::from_secs(20)).await })
    };
    within("submit", page.submit(&secret, submission("4321")))
        .await
        .expect("submit on the other replica");
    let got = within("waiter released", waiter)
        .await
        .expect("waiter task")
        .expect("a PIN arrives");
    assert_eq!(got.pin.expose(), "4321");
    assert_eq!(got.user.as_ref().map(|u| u.as_str()), Some("alice"));

    let again = within("second submit", holder.submit(&secret, submission("1111"))).await;
    assert!(matches!(again, Err(PinError::UnknownSecret)), "{again:?}");
    within("close", holder.close(&secret)).await;
    assert!(secrets(&emulator).await.is_empty(), "close deletes the Secret");
    let gone = within("submit after close", page.submit(&secret, submission("1234"))).await;
    assert!(matches!(gone, Err(PinError::UnknownSecret)), "{gone:?}");
    let unknown = PairSecret::generate();
    let waited = within("wait on unknown", holder.wait(&unknown, Duration::from_secs(1))).await;
    assert!(matches!(waited, Err(PinError::UnknownSecret)), "{waited:?}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_timeout_bound_and_expiry() {
    let emulator = within("emulator", ApiServerEmulator::start())
        .await
        .expect("emulator");
    let config = PinBrokerConfig {
        max_pending: 2,
        ..PinBrokerConfig::default()
    };
    let holder = broker(&emulator, config).await;
    let other = broker(&emulator, config).await;

    let first = within("open", holder.open(request())).await.expect("open");
    let timed_out = within("short wait", holder.wait(&first, Duration::from_millis(200))).await;
    assert!(matches!(timed_out, Err(PinError::TimedOut)), "{timed_out:?}");

    // Closing on another replica ends the wait with Closed.
    let waiter = {
        let holder = holder.clone();
        let first = first.clone();
        tokio::spawn(async move { holder.wait(&first, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    within("close elsewhere", other.close(&first)).await;
    let closed = within("waiter ends", waiter).await.expect("waiter task");
    assert!(matches!(closed, Err(PinError::Closed)), "{closed:?}");

    // At most two pending, counted across replicas.
    let a = within("open a", holder.open(request())).await.expect("open a");
    within("open b", other.open(request())).await.expect("open b");
    within("b visible to the holder", async {
        while holder.pending().await.expect("pending").len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let full = within("open c", holder.open(request())).await;
    assert!(
        matches!(full, Err(direwolf_core::Error::Unavailable { .. })),
        "{full:?}"
    );
    within("close a", holder.close(&a)).await;

    // An entry a dead replica left long ago is expired by the next open.
    let api: Api<Secret> = Api::namespaced(emulator.client(), NS);
    let stale: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "direwolf-pin-00000000000000aa", "labels": { "direwolf/pin": "pending" } },
        "data": { "clientIP": "MTkyLjAuMi45", "openedAt": "MTAwMA==" }
    }))
    .expect("stale secret");
    within("create stale", api.create(&PostParams::default(), &stale))
        .await
        .expect("create stale");
    // Once the holder's watch has delivered it, its next open deletes it.
    within("the stale entry is deleted by an open", async {
        loop {
            let opened = holder
                .open(request())
                .await
                .expect("the stale entry does not count");
            holder.close(&opened).await;
            let stale = api.get_opt("direwolf-pin-00000000000000aa").await.expect("get");
            if stale.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        holder
            .pending()
            .await
            .expect("pending")
            .iter()
            .all(|p| p.opened_at > 1000),
        "expired entries are never listed"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_api_failures_are_retried() {
    let emulator = within("emulator", ApiServerEmulator::start())
        .await
        .expect("emulator");
    let holder = broker(&emulator, PinBrokerConfig::default()).await;
    let page = broker(&emulator, PinBrokerConfig::default()).await;
    let path = format!("/api/v1/namespaces/{NS}/secrets");
    emulator.inject(
        FaultRule::status(503)
            .with_verb("create")
            .with_path_prefix(&path)
            .times(2),
    );
    let secret = within("open with failures", holder.open(request()))
        .await
        .expect("open survives 503s");
    emulator.inject(
        FaultRule::status(500)
            .with_verb("patch")
            .with_path_prefix(&path)
            .times(2),
    );
    emulator.inject(FaultRule::status(429).with_verb("get").with_path_prefix(&path));
    within("submit with failures", page.submit(&secret, submission("2468")))
        .await
        .expect("submit survives 500s and a 429");
    let got = within("wait", holder.wait(&secret, Duration::from_secs(20)))
        .await
        .expect("the PIN that was accepted is delivered");
    assert_eq!(got.pin.expose(), "2468");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_pin_broker_suite() {
    let emulator = within("emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts");
    let holder = broker(&emulator, PinBrokerConfig::default()).await;
    let page = broker(&emulator, PinBrokerConfig::default()).await;
    within(
        "the PIN broker suite",
        direwolf_core::conformance::pin_broker(&holder),
    )
    .await;
    within(
        "the PIN broker suite across replicas",
        direwolf_core::conformance::pin_broker_across(&holder, &page),
    )
    .await;
    assert!(
        secrets(&emulator).await.is_empty(),
        "the suite closes its entries"
    );
}

/// Found by the conformance suite: `pending` read only the watch, so an entry this replica had
/// just opened (or answered, or closed) was missing (or still listed) until the watch caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_replicas_own_writes_are_pending_at_once_while_the_watch_lags() {
    let emulator = within("emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts");
    // The broker's watch of Secrets is held back well past everything below (its list is not).
    emulator.inject(
        FaultRule::delay(Duration::from_secs(15))
            .with_verb("watch")
            .with_path_prefix(&format!("/api/v1/namespaces/{NS}/secrets")),
    );
    let broker = broker(&emulator, PinBrokerConfig::default()).await;
    let listed = |pending: Vec<direwolf_core::PendingPin>, secret: &PairSecret| {
        pending.iter().any(|p| &p.secret == secret)
    };
    let secret = within("open", broker.open(request())).await.expect("open");
    let pending = within("pending", broker.pending()).await.expect("pending");
    assert!(
        listed(pending, &secret),
        "an entry opened here is pending at once"
    );
    within("submit", broker.submit(&secret, submission("1234")))
        .await
        .expect("submit");
    let pending = within("pending", broker.pending()).await.expect("pending");
    assert!(
        !listed(pending, &secret),
        "an answered entry is no longer pending"
    );
    let second = within("open", broker.open(request())).await.expect("open");
    within("close", broker.close(&second)).await;
    let pending = within("pending", broker.pending()).await.expect("pending");
    assert!(!listed(pending, &second), "a closed entry is no longer pending");
    within("close", broker.close(&secret)).await;
    emulator.shutdown().await;
}
