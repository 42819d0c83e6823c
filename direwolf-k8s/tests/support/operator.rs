//! Helpers of the operator tests (emulator and real control plane): Sessions as the proxy
//! writes them, an operator started in the background, and polling waits with timeouts.

use std::future::Future;
use std::time::Duration;

use direwolf_k8s::crd::{self, Session};
use direwolf_k8s::operator::{Operator, OperatorConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{oneshot, watch};

/// A Session of `user` for `app` named `name`, as the proxy creates it.
pub fn session(name: &str, user: &str, app: &str) -> Session {
    serde_json::from_value(json!({
        "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "labels": {"direwolf": "true", "direwolf/user": user, "direwolf/app": app}},
        "spec": {
            "userReference": {"name": user},
            "gameReference": {"name": app},
            "pairingReference": {"name": "f306f349418479a792c486f7662d29e0b332886876b4b75073d7eee82703e7cb"},
            "config": {"aesKey": "773448F67992470C5C62848D361E1025", "aesIV": "1311662065",
                       "videoWidth": 1920, "videoHeight": 1080, "videoRefreshRate": 60}
        }
    }))
    .expect("a session")
}

/// The test's own finalizer on the Sessions it creates: an ended Session stays readable
/// (Terminating) until [`release`] removes it, so its last status can be checked.
pub const HOLD: &str = "direwolf.test/hold";

/// Creates Session `name`, held by [`HOLD`].
pub async fn create_session(client: &Client, ns: &str, name: &str, user: &str, app: &str) {
    let api: Api<Session> = Api::namespaced(client.clone(), ns);
    let mut session = session(name, user, app);
    session.metadata.finalizers = Some(vec![HOLD.to_owned()]);
    api.create(&PostParams::default(), &session)
        .await
        .expect("create the session");
}

/// Removes [`HOLD`] from Session `name` once it is being deleted (waiting `wait` at most).
pub async fn release(client: &Client, ns: &str, name: &str, wait: Duration) {
    let api: Api<Session> = Api::namespaced(client.clone(), ns);
    let session = eventually(wait, "the session being deleted", || async {
        match api.get_opt(name).await.expect("get the session") {
            Some(s) if s.metadata.deletion_timestamp.is_none() => None,
            other => Some(other),
        }
    })
    .await;
    if session.is_none() {
        return;
    }
    // The operator removes its own finalizer concurrently: a patch carries the version it was
    // computed from, and a conflict is retried on a fresh read (never re-adding a removed one).
    for _ in 0..10 {
        let Some(session) = api.get_opt(name).await.expect("get the session") else {
            return;
        };
        let rest: Vec<String> = (session.metadata.finalizers.clone().unwrap_or_default())
            .into_iter()
            .filter(|f| f != HOLD)
            .collect();
        let version = session.metadata.resource_version.clone();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": version}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 404 => return,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => panic!("cannot release session {name}: {err}"),
        }
    }
    panic!("cannot release session {name}: 10 conflicts in a row");
}

/// An operator running in the background until [`Running::stop`], with leadership given by a
/// channel the test holds.
pub struct Running {
    /// The leadership the operator obeys.
    pub leader: watch::Sender<bool>,
    /// The operator (for its metrics).
    pub operator: Operator,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts an operator with `config`, leading from the start if `leading`.
    pub fn start(client: Client, config: OperatorConfig, leading: bool) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (leader, is_leader) = watch::channel(leading);
        let operator = Operator::new(client, config);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = operator.clone();
        let task = tokio::spawn(async move {
            running
                .run(is_leader, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("the operator runs");
        });
        Running {
            leader,
            operator,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the operator and waits (10 s at most) for it to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the operator stops on shutdown")
            .expect("the operator task ends cleanly");
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, failing after `wait` with `what`.
pub async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {wait:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of a Session, if it exists.
pub async fn status_of(client: &Client, ns: &str, name: &str) -> Option<crd::SessionStatus> {
    let api: Api<Session> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.expect("get the session")?.status
}

/// Patches a pod's status as a kubelet would.
pub async fn kubelet(client: &Client, ns: &str, pod: &str, status: serde_json::Value) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .expect("patch the pod status");
}

/// A pod status: Running with `ip`, every container ready.
pub fn running_ready(ip: &str) -> serde_json::Value {
    json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"}
        ],
        "containerStatuses": [
            {"name": "wolf", "image": "wolf", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}
        ]
    })
}

/// The reason and message of a Session's `Ended` condition.
pub fn ended(status: &crd::SessionStatus) -> Option<(String, String)> {
    crd::find_condition(&status.conditions, crd::conditions::ENDED)
        .map(|c| (c.reason.clone(), c.message.clone()))
}
