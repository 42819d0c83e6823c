//! The Kubernetes stores against the in-process API-server emulator: the core conformance
//! suite, write-through visibility, retries of injected failures, App id clashes, WebP art, and
//! the example CRs read through the stores.
#![cfg(feature = "emulator")]

mod support;

use std::future::Future;
use std::time::Duration;

use direwolf_core::{AppCatalog, AppId, Fingerprint, Pairing, PairingStore, SessionStore, UserName};
use direwolf_k8s::crd;
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::retry::RetryPolicy;
use direwolf_k8s::stores::{KubePairingStore, KubeStores};
use futures::FutureExt;

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "default";

/// Awaits `f`, failing the test with `what` if it takes longer than 20 s (a timeout means a
/// store call hung: a cache never synced or a retry loop did not end).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    support::within(WAIT, what, f).await
}

/// An emulator with the direwolf CRDs installed.
async fn emulator() -> ApiServerEmulator {
    support::emulator(WAIT, &[]).await
}

async fn stores(emulator: &ApiServerEmulator) -> KubeStores {
    let stores = KubeStores::start(emulator.client(), NS);
    within("caches sync", stores.wait_ready(WAIT))
        .await
        .expect("caches sync");
    assert!(stores.ready());
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_stores_answer_from_synced_caches() {
    let emulator = emulator().await;
    emulator
        .apply_yaml(&example("user.yaml"))
        .expect("the example User applies");
    let stores = within("synced stores", KubeStores::synced_stores(emulator.client(), NS))
        .await
        .expect("the caches sync");
    // Listed before returning: the User is there without waiting for a watch.
    let users = direwolf_core::UserStore::list(stores.users.as_ref());
    let users = users.now_or_never().expect("no wait").expect("list");
    assert_eq!(users.len(), 1, "{users:?}");
    emulator.shutdown().await;
}

fn pairing(n: u8) -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(&[n; 32]),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        user: "alice".parse().expect("a valid user"),
        device_name: None,
        paired_at: 1_790_000_000 + u64::from(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_every_kube_store() {
    let emulator = emulator().await;
    let stores = stores(&emulator).await;
    tokio::time::timeout(
        Duration::from_secs(120),
        direwolf_core::conformance::all(&stores.stores()),
    )
    .await
    .expect("the conformance suite finished within 120 s (a timeout means a store call hung)");
    // Twice on the same stores: the suite cleans up after itself and nothing lingers.
    tokio::time::timeout(
        Duration::from_secs(120),
        direwolf_core::conformance::all(&stores.stores()),
    )
    .await
    .expect("the second conformance run finished within 120 s");
    emulator.shutdown().await;
}

/// `docs/protocol/moonlight-http.md` § Phase 5: the pairing written in phase 4 must authorise
/// phase 5 at once. The watch is held back (every watch request delayed 5 s), so only the
/// write-through overlay can make the write visible; a second store on the same namespace, which
/// has no overlay entry, shows that the watch has indeed not delivered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_to_get_on_the_same_instance_immediately() {
    let emulator = emulator().await;
    emulator.inject(
        FaultRule::delay(Duration::from_secs(5))
            .with_verb("watch")
            .times(1000),
    );
    let writer = KubePairingStore::new(emulator.client(), NS);
    let observer = KubePairingStore::new(emulator.client(), NS);
    within("writer sync", writer.wait_ready(WAIT))
        .await
        .expect("writer syncs");
    within("observer sync", observer.wait_ready(WAIT))
        .await
        .expect("observer syncs");

    let p = pairing(1);
    within("put", writer.put(p.clone())).await.expect("put succeeds");
    assert_eq!(
        within("get", writer.get(&p.fingerprint)).await.expect("get"),
        Some(p.clone())
    );
    assert_eq!(
        within("observer get", observer.get(&p.fingerprint))
            .await
            .expect("get"),
        None,
        "the observer's watch delivered the pairing already: the test no longer proves write-through"
    );
    assert!(within("list", writer.list()).await.expect("list").contains(&p));

    // A delete is just as visible.
    assert!(
        within("delete", writer.delete(&p.fingerprint))
            .await
            .expect("delete")
    );
    assert_eq!(
        within("get after delete", writer.get(&p.fingerprint))
            .await
            .expect("get"),
        None
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429_and_500_are_retried_and_a_write_that_did_not_land_fails() {
    let emulator = emulator().await;
    // A short budget keeps the outage below quick (kube's own client retries 503s for minutes).
    let stores = stores(&emulator).await.with_retry(RetryPolicy {
        budget: Duration::from_secs(3),
        ..RetryPolicy::default()
    });
    let prefix = format!("/apis/{}/{}/namespaces/{NS}/pairings", crd::GROUP, crd::VERSION);

    emulator.clear_requests();
    emulator.inject(
        FaultRule::status(429)
            .with_verb("patch")
            .with_path_prefix(&prefix),
    );
    emulator.inject(
        FaultRule::status(500)
            .with_verb("patch")
            .with_path_prefix(&prefix),
    );
    let p = pairing(2);
    within("put through 429 and 500", stores.pairings.put(p.clone()))
        .await
        .expect("put is retried");
    let patches: Vec<u16> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch" && r.path.starts_with(&prefix))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        patches.len(),
        3,
        "two injected failures, then the retry that landed: {patches:?}"
    );
    assert_eq!(&patches[..2], [429, 500]);
    assert!(
        (200..300).contains(&patches[2]),
        "the third attempt landed: {patches:?}"
    );
    assert_eq!(
        within("get", stores.pairings.get(&p.fingerprint))
            .await
            .expect("get"),
        Some(p.clone())
    );

    // A dropped connection on delete is retried too.
    emulator.inject(FaultRule::refuse().with_verb("delete").with_path_prefix(&prefix));
    assert!(
        within(
            "delete through a dropped connection",
            stores.pairings.delete(&p.fingerprint)
        )
        .await
        .expect("delete")
    );

    // An outage longer than the retry budget: the write reports Unavailable and did not land.
    emulator.inject(
        FaultRule::status(503)
            .with_verb("patch")
            .with_path_prefix(&prefix)
            .times(100),
    );
    let q = pairing(3);
    match within("put during an outage", stores.pairings.put(q.clone())).await {
        Err(direwolf_core::Error::Unavailable { .. }) => {}
        other => panic!("a write during an outage must fail with Unavailable, got {other:?}"),
    }
    emulator.clear_faults();
    assert_eq!(
        within("get", stores.pairings.get(&q.fingerprint))
            .await
            .expect("get"),
        None
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_409s_on_create_are_resolved() {
    let emulator = emulator().await;
    let stores = stores(&emulator).await;

    // The identity: a conflicting create with nothing stored is retried; a real one returns the
    // stored identity.
    emulator.inject(
        FaultRule::status(409)
            .with_verb("create")
            .with_path_prefix("/api/v1/namespaces/default/secrets"),
    );
    let identity = direwolf_core::ServerIdentity {
        cert_pem: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n".into(),
        unique_id: "dd7c60f6-4b88-4ef1-be07-eeec72f96080".into(),
    };
    let stored = within(
        "identity",
        direwolf_core::IdentityStore::create_if_absent(&stores.identity, identity.clone()),
    )
    .await
    .expect("create_if_absent");
    assert_eq!(stored, identity);

    // A session create: an injected 409 with nothing stored is retried, not reported.
    let session_prefix = format!("/apis/{}/{}/namespaces/{NS}/sessions", crd::GROUP, crd::VERSION);
    emulator.inject(
        FaultRule::status(409)
            .with_verb("create")
            .with_path_prefix(&session_prefix),
    );
    let session = sample_session("alice-1-retry");
    within("create", stores.sessions.create(session.clone()))
        .await
        .expect("create after a spurious 409");
    assert_eq!(
        within("get", stores.sessions.get(&session.id))
            .await
            .expect("get"),
        Some(session.clone())
    );
    match within("second create", stores.sessions.create(session.clone())).await {
        Err(direwolf_core::Error::AlreadyExists { .. }) => {}
        other => panic!("a real clash must be AlreadyExists, got {other:?}"),
    }
    emulator.shutdown().await;
}

fn sample_session(id: &str) -> direwolf_core::Session {
    direwolf_core::Session {
        id: id.parse().expect("a valid id"),
        user: "alice".parse().expect("a valid user"),
        pairing: Fingerprint::of_der(b"cert"),
        app: AppId::new(1).expect("a valid id"),
        client_ip: "192.0.2.10".parse().expect("an address"),
        mode: direwolf_core::VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: direwolf_core::StreamKeys {
            aes_key: "773448F67992470C5C62848D361E1025".parse().expect("a key"),
            aes_iv: "1311662065".parse().expect("an iv"),
        },
        phase: direwolf_core::SessionPhase::Pending,
        placement: None,
        created_at: 1_790_000_000,
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("the example exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_crs_read_through_the_stores() {
    let emulator = emulator().await;
    for file in [
        "user.yaml",
        "app-test-pattern.yaml",
        "app-firefox.yaml",
        "pairing.yaml",
        "session.yaml",
    ] {
        emulator
            .apply_yaml(&example(file))
            .unwrap_or_else(|e| panic!("{file} is accepted: {e}"));
    }
    let stores = stores(&emulator).await;

    let alice: UserName = "alice".parse().expect("a valid user");
    let user = within("user", direwolf_core::UserStore::get(&stores.users, &alice))
        .await
        .expect("get");
    assert_eq!(user.and_then(|u| u.display_name).as_deref(), Some("Alice"));

    let apps = within("apps", stores.apps.list()).await.expect("list");
    let titles: Vec<(u32, &str)> = apps.iter().map(|a| (a.id.get(), a.title.as_str())).collect();
    assert_eq!(titles, [(1, "Test pattern"), (2, "Firefox")]);

    // WebP art is served as PNG; PNG art as is.
    let art = within("asset", stores.apps.asset(AppId::new(1).expect("id")))
        .await
        .expect("asset")
        .expect("art");
    assert_eq!(art.content_type, "image/png");
    let decoded = image::load_from_memory_with_format(&art.bytes, image::ImageFormat::Png).expect("a PNG");
    assert_eq!((decoded.width(), decoded.height()), (32, 48));
    let again = within("asset (cached)", stores.apps.asset(AppId::new(1).expect("id")))
        .await
        .expect("asset");
    assert_eq!(again.map(|a| a.bytes), Some(art.bytes));
    assert!(
        within("png asset", stores.apps.asset(AppId::new(2).expect("id")))
            .await
            .expect("asset")
            .is_some()
    );

    let pairings = within("pairings", stores.pairings.list()).await.expect("list");
    assert_eq!(pairings.len(), 1);
    assert_eq!(pairings[0].user, alice);
    assert_eq!(pairings[0].device_name.as_deref(), Some("roth"));

    // The example Session's keys live in its keys Secret, which the proxy writes beside it.
    let listed = within("unusable without keys", stores.sessions.list())
        .await
        .expect("list");
    assert!(listed.is_empty(), "a Session without its keys Secret is skipped");
    emulator
        .apply_yaml(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: alice-test-pattern-x7k2q-keys\n  \
             labels: {direwolf/session: alice-test-pattern-x7k2q}\n\
             stringData: {aesKey: 773448F67992470C5C62848D361E1025, aesIV: \"1311662065\"}\n",
        )
        .expect("the keys Secret");
    let sessions = within("sessions", stores.sessions.list()).await.expect("list");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].app.get(), 1);
    assert_eq!(sessions[0].mode, direwolf_core::VideoMode::DEFAULT);
    assert_eq!(sessions[0].keys.aes_iv.signed(), 1_311_662_065);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_sharing_an_id_are_left_out_and_put_refuses_to_pick_one() {
    let emulator = emulator().await;
    emulator
        .apply_yaml(&example("app-test-pattern.yaml"))
        .expect("accepted");
    let clash = example("app-firefox.yaml").replace("id: 2", "id: 1");
    emulator
        .apply_yaml(&clash)
        .expect("accepted (the API server cannot check uniqueness)");
    emulator
        .apply_yaml(
            &example("app-firefox.yaml")
                .replace("name: firefox", "name: other")
                .replace("id: 2", "id: 3"),
        )
        .expect("accepted");
    let reporter = kube::runtime::events::Reporter {
        controller: "direwolf-proxy".into(),
        instance: Some("test".into()),
    };
    let stores = stores(&emulator)
        .await
        .with_recorder(kube::runtime::events::Recorder::new(emulator.client(), reporter));

    let ids: Vec<u32> = within("list", stores.apps.list())
        .await
        .expect("list")
        .iter()
        .map(|a| a.id.get())
        .collect();
    assert_eq!(ids, [3], "both Apps with id 1 must be left out");
    // Each App involved gets a Warning Event naming the clash.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(emulator.client(), NS);
    let regarding = within("DuplicateAppID events", async {
        loop {
            let list = events.list(&Default::default()).await.expect("list events");
            let mut names: Vec<String> = list
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(crd::reasons::DUPLICATE_APP_ID))
                .filter_map(|e| e.regarding.as_ref().and_then(|r| r.name.clone()))
                .collect();
            names.sort();
            if names.len() >= 2 {
                break names;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(regarding, ["firefox", "test-pattern"]);

    let one = AppId::new(1).expect("id");
    assert_eq!(within("get", stores.apps.get(one)).await.expect("get"), None);
    assert_eq!(
        within("asset", stores.apps.asset(one)).await.expect("asset"),
        None
    );
    let app = direwolf_core::App::new(one, "Which one?").expect("valid");
    match within("put", stores.apps.put(app, None)).await {
        Err(direwolf_core::Error::Conflict { .. }) => {}
        other => panic!("put on a clashing id must be Conflict, got {other:?}"),
    }
    // Deleting the id removes both; the id is then free again.
    assert!(within("delete", stores.apps.delete(one)).await.expect("delete"));
    let app = direwolf_core::App::new(one, "Fresh").expect("valid");
    within("put", stores.apps.put(app.clone(), None))
        .await
        .expect("put");
    assert_eq!(within("get", stores.apps.get(one)).await.expect("get"), Some(app));
    emulator.shutdown().await;
}
