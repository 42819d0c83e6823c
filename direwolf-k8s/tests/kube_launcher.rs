//! The Kubernetes launcher against the in-process API-server emulator: launch creates the Session
//! of `docs/protocol/kubernetes.md` § Launch, resume and cancel and returns the URL an operator
//! publishes, a launch that never starts times out and leaves nothing behind, resume re-keys,
//! cancel empties the cache before returning, and injected API failures are retried.
#![cfg(feature = "emulator")]

mod support;

use std::future::Future;
use std::time::Duration;

use direwolf_core::{
    AesKey, AppId, Fingerprint, LaunchError, LaunchRequest, Launcher, ResumeRequest, RiKeyId, StreamKeys,
    UserName, VideoMode,
};
use direwolf_k8s::crd::{self, labels};
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::launcher::{KubeLauncher, LauncherConfig};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "default";

/// Awaits `f`, failing the test with `what` if it takes longer than 30 s (a timeout means the
/// launcher hung: a cache never synced or a wait did not end at its own deadline).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    support::within(WAIT, what, f).await
}

async fn emulator() -> ApiServerEmulator {
    support::emulator(WAIT, &["app-test-pattern.yaml", "app-firefox.yaml", "user.yaml"]).await
}

async fn launcher(emulator: &ApiServerEmulator, launch_timeout: Duration) -> KubeLauncher {
    let config = LauncherConfig {
        launch_timeout,
        ..LauncherConfig::default()
    };
    let launcher = KubeLauncher::with_config(emulator.client(), NS, config);
    within("launcher caches sync", launcher.wait_ready(WAIT))
        .await
        .expect("caches sync");
    assert!(launcher.ready());
    launcher
}

/// Plays the operator: publishes a stream URL on every Session that has none (and records the
/// generation it saw).
fn fake_operator(client: kube::Client) -> tokio::task::JoinHandle<()> {
    slow_operator(client, Duration::ZERO)
}

/// [`fake_operator`] taking `delay` to start each stream, as a pod takes time to start.
fn slow_operator(client: kube::Client, delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<crd::Session> = Api::namespaced(client, NS);
        let mut events = std::pin::pin!(
            watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        let mut port = 48010;
        while let Some(event) = events.next().await {
            let Ok(session) = event else { continue };
            let generation = session.metadata.generation;
            let observed = session.status.as_ref().and_then(|s| s.observed_generation);
            if observed.is_some() && observed == generation {
                continue;
            }
            port += 1;
            tokio::time::sleep(delay).await;
            // The agent's acknowledgement of a resume's keys, too.
            let status = json!({ "status": {
                "streamURL": format!("rtsp://203.0.113.10:{port}"),
                "observedGeneration": generation,
                "keysRevision": session.spec.keys_revision.unwrap_or(0),
            }});
            let _ = api
                .patch_status(
                    &session.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
    })
}

fn alice() -> UserName {
    "alice".parse().expect("valid user")
}

fn keys(n: u8) -> StreamKeys {
    StreamKeys {
        aes_key: format!("{:032X}", u128::from(n) * 0x0101_0101)
            .parse::<AesKey>()
            .expect("valid key"),
        aes_iv: format!("-{n}").parse::<RiKeyId>().expect("valid rikeyid"),
    }
}

fn launch_request(app: u32, n: u8) -> LaunchRequest {
    LaunchRequest {
        user: alice(),
        pairing: Fingerprint::of_der(b"client cert"),
        app: AppId::new(app).expect("valid app id"),
        client_ip: "192.0.2.7".parse().expect("ip"),
        server_ip: "192.0.2.1".parse().expect("ip"),
        mode: VideoMode {
            width: 1920,
            height: 1080,
            fps: 60,
        },
        surround_audio_info: 196_610,
        keys: keys(n),
        hdr: false,
        host_audio: false,
        gamepads: 1,
    }
}

async fn sessions(emulator: &ApiServerEmulator) -> Vec<crd::Session> {
    let api: Api<crd::Session> = Api::namespaced(emulator.client(), NS);
    within("list sessions", api.list(&ListParams::default()))
        .await
        .expect("list sessions")
        .items
}

/// The keys in Session `name`'s keys Secret, which must be owned by the Session.
async fn stream_keys(emulator: &ApiServerEmulator, name: &str) -> (String, String) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(emulator.client(), NS);
    let secret = secrets
        .get(&direwolf_k8s::stream::keys_secret_name(name))
        .await
        .expect("keys Secret");
    let owner = &secret.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Session", name));
    direwolf_k8s::keys::read_keys(&secret).expect("both keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_resume_and_cancel_through_session_objects() {
    let emulator = emulator().await;
    let operator = fake_operator(emulator.client());
    let launcher = launcher(&emulator, Duration::from_secs(20)).await;
    assert_eq!(launcher.current_app(&alice()).await, None);

    let outcome = within("launch", launcher.launch(launch_request(2, 1)))
        .await
        .expect("launch succeeds once the operator publishes a URL");
    assert!(outcome.session_url.starts_with("rtsp://203.0.113.10:"));
    let listed = sessions(&emulator).await;
    assert_eq!(listed.len(), 1);
    let session = &listed[0];
    assert_eq!(session.name_any(), outcome.session.as_str());
    assert!(session.name_any().starts_with("alice-firefox-"));
    assert_eq!(
        session.labels().get(labels::USER).map(String::as_str),
        Some("alice")
    );
    assert_eq!(session.spec.game_reference.name, "firefox");
    assert_eq!(session.spec.config.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        stream_keys(&emulator, &session.name_any()).await,
        (keys(1).aes_key.to_hex(), "-1".to_owned()),
        "the agent's keys Secret is written"
    );
    assert_eq!(launcher.current_app(&alice()).await, AppId::new(2).ok());

    // A second launch replaces the first session.
    let second = within("second launch", launcher.launch(launch_request(1, 2)))
        .await
        .expect("second launch succeeds");
    let listed = sessions(&emulator).await;
    assert_eq!(listed.len(), 1, "the old session was deleted");
    assert_eq!(listed[0].name_any(), second.session.as_str());
    assert_eq!(launcher.current_app(&alice()).await, AppId::new(1).ok());

    // Resume re-keys the running session and waits for its agent to register the new keys.
    let resumed = within(
        "resume",
        launcher.resume(ResumeRequest {
            user: alice(),
            pairing: Fingerprint::of_der(b"client cert"),
            client_ip: "198.51.100.9".parse().expect("ip"),
            server_ip: "192.0.2.1".parse().expect("ip"),
            keys: keys(3),
            surround_audio_info: None,
        }),
    )
    .await
    .expect("resume succeeds");
    assert_eq!(resumed.session, second.session);
    let listed = sessions(&emulator).await;
    assert_eq!(listed[0].spec.config.client_ip.as_deref(), Some("198.51.100.9"));
    assert_eq!(
        stream_keys(&emulator, &listed[0].name_any()).await.0,
        keys(3).aes_key.to_hex(),
        "resume re-keys the Secret"
    );
    assert_ne!(
        resumed.session_url, second.session_url,
        "URL published after the re-key"
    );
    assert_eq!(listed[0].spec.keys_revision, Some(1));
    assert_eq!(
        listed[0].status.as_ref().and_then(|s| s.keys_revision),
        Some(1),
        "answered once the agent had revision 1"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(emulator.client(), NS);
    let secret = secrets
        .get(&direwolf_k8s::stream::keys_secret_name(&listed[0].name_any()))
        .await
        .expect("keys Secret");
    assert_eq!(direwolf_k8s::keys::keys_revision(&secret), 1);

    within("cancel", launcher.cancel(&alice()))
        .await
        .expect("cancel succeeds");
    assert_eq!(
        launcher.current_app(&alice()).await,
        None,
        "FREE as soon as cancel returns"
    );
    assert!(sessions(&emulator).await.is_empty());
    within("cancel with nothing running", launcher.cancel(&alice()))
        .await
        .expect("cancel without sessions succeeds");
    operator.abort();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_starts_times_out_and_is_deleted() {
    let emulator = emulator().await;
    let launcher = launcher(&emulator, Duration::from_millis(1500)).await;
    let started = std::time::Instant::now();
    let outcome = within("launch without operator", launcher.launch(launch_request(1, 1))).await;
    assert!(matches!(outcome, Err(LaunchError::Timeout)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(sessions(&emulator).await.is_empty(), "no Session is left behind");
    assert_eq!(launcher.current_app(&alice()).await, None);

    let unknown = within("unknown app", launcher.launch(launch_request(99, 1))).await;
    assert!(matches!(unknown, Err(LaunchError::UnknownApp(_))), "{unknown:?}");
    let resume = within(
        "resume without session",
        launcher.resume(ResumeRequest {
            user: alice(),
            pairing: Fingerprint::of_der(b"client cert"),
            client_ip: "192.0.2.7".parse().expect("ip"),
            server_ip: "192.0.2.1".parse().expect("ip"),
            keys: keys(1),
            surround_audio_info: Some(196_610),
        }),
    )
    .await;
    assert!(matches!(resume, Err(LaunchError::NotRunning)), "{resume:?}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_api_failures_are_retried() {
    let emulator = emulator().await;
    let operator = fake_operator(emulator.client());
    let launcher = launcher(&emulator, Duration::from_secs(20)).await;
    let sessions_path = format!("/apis/{}/{}/namespaces/{NS}/sessions", crd::GROUP, crd::VERSION);
    emulator.inject(
        FaultRule::status(500)
            .with_verb("create")
            .with_path_prefix(&sessions_path)
            .times(2),
    );
    // Then a conflict with nothing stored: the one Session create of the stores and the
    // launcher (issue 10) reads back, finds nothing and creates again.
    emulator.inject(
        FaultRule::status(409)
            .with_verb("create")
            .with_path_prefix(&sessions_path),
    );
    emulator.inject(
        FaultRule::status(429)
            .with_verb("list")
            .with_path_prefix(&sessions_path),
    );
    emulator.inject(
        FaultRule::status(503)
            .with_verb("watch")
            .with_path_prefix(&sessions_path),
    );
    let outcome = within("launch with failures", launcher.launch(launch_request(2, 1))).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        sessions(&emulator).await.len(),
        1,
        "exactly one Session despite retried creates"
    );
    let creates: Vec<u16> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create" && r.path.starts_with(&sessions_path))
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [500, 500, 409, 201], "two 5xx retried, a 409 resolved");

    emulator.inject(
        FaultRule::status(500)
            .with_verb("delete")
            .with_path_prefix(&sessions_path)
            .times(2),
    );
    within("cancel with failures", launcher.cancel(&alice()))
        .await
        .expect("cancel succeeds after retries");
    assert!(sessions(&emulator).await.is_empty());
    assert_eq!(launcher.current_app(&alice()).await, None);
    operator.abort();
    emulator.shutdown().await;
}

/// Issue 10: `current_app` right after a launch returned must see the launch, even when the
/// launcher's Session watch lags (it used to answer from the watch alone, and a `/serverinfo`
/// sent right after `/launch` could report the server free).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_is_visible_at_once_while_the_watch_lags() {
    let emulator = emulator().await;
    let sessions_path = format!("/apis/{}/{}/namespaces/{NS}/sessions", crd::GROUP, crd::VERSION);
    // The first Session watch is the launcher's cache: held back well past the launch below.
    emulator.inject(
        FaultRule::delay(Duration::from_secs(15))
            .with_verb("watch")
            .with_path_prefix(&sessions_path),
    );
    let launcher = launcher(&emulator, Duration::from_secs(10)).await;
    let launching = tokio::spawn({
        let launcher = launcher.clone();
        async move { launcher.launch(launch_request(2, 1)).await }
    });
    // Play the operator once the Session exists.
    let api: Api<crd::Session> = Api::namespaced(emulator.client(), NS);
    let name = within("the Session is created", async {
        loop {
            if let Some(session) = sessions(&emulator).await.first() {
                break session.name_any();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let status = json!({ "status": { "streamURL": "rtsp://203.0.113.10:48010" } });
    within(
        "publish the URL",
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)),
    )
    .await
    .expect("patch status");
    let outcome = within("launch", launching)
        .await
        .expect("the launch task ends")
        .expect("the launch succeeds");
    assert_eq!(outcome.session.as_str(), name);
    assert_eq!(
        launcher.current_app(&alice()).await,
        AppId::new(2).ok(),
        "busy as soon as the launch returned"
    );
    within("cancel", launcher.cancel(&alice())).await.expect("cancel");
    assert_eq!(launcher.current_app(&alice()).await, None);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_launcher_suite() {
    let emulator = emulator().await;
    // Streams start after a while, so the suite sees launches under way.
    let operator = slow_operator(emulator.client(), Duration::from_millis(300));
    let launcher = launcher(&emulator, Duration::from_secs(20)).await;
    let app = |id| AppId::new(id).expect("valid app id");
    let mut fixture = direwolf_core::conformance::LauncherFixture::streaming([app(1), app(2)], app(3));
    fixture.sessions_at_once = 4;
    within(
        "the launcher suite",
        direwolf_core::conformance::launcher(&launcher, &fixture),
    )
    .await;
    let api: Api<crd::Session> = Api::namespaced(emulator.client(), NS);
    let gone = async {
        while !api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within("the suite's sessions are deleted", gone).await;
    operator.abort();
}
