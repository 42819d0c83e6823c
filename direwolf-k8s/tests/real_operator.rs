//! The Session operator on the real control plane (API server with RBAC, scheduler, garbage
//! collector, kwok playing two fake nodes with two `nvidia.com/gpu` each, marking the pods
//! placed on them Running): stream pods are created and, when their Session is deleted,
//! removed with the agent's account; the agent's account may touch exactly its Session, its
//! status and its keys Secret; a pod asking for more GPUs than any node has ends its Session
//! with the scheduler's message; an App whose pod template the API server refuses ends its
//! Session with the API server's reason; 20 Sessions get 20 pods and 20 distinct port sets, and all go.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use direwolf_k8s::crd::{self, Session, SessionPhase, reasons};
use direwolf_k8s::operator::{GpuResource, OperatorConfig};
use direwolf_k8s::stream;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::operator::{Running, create_session, ended, eventually, release, status_of};
use support::testenv::{self, ControlPlane};

const WAIT: Duration = Duration::from_secs(60);

/// A namespace with the CRDs, a User `bob` without device policies (the fake nodes have no
/// such devices) and an App `desk` with one small game container.
async fn setup(cp: &ControlPlane, prefix: &str) -> (Client, String) {
    support::desk_namespace(
        cp,
        prefix,
        json!({"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}),
        json!({}),
    )
    .await
}

fn config(ns: &str) -> OperatorConfig {
    let mut config = OperatorConfig::new(ns);
    // No agent publishes a stream URL here: keep the Sessions alive for the test's duration.
    config.start_deadline = Duration::from_secs(600);
    config.pod.node_selector = [("type".to_owned(), "kwok".to_owned())].into();
    config
}

async fn running_pod(client: &Client, ns: &str, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, "the stream pod Running", || async {
        let pod = pods.get_opt(name).await.expect("get pod")?;
        (pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).then_some(pod)
    })
    .await
}

async fn delete_and_wait_gone(client: &Client, ns: &str, name: &str) {
    let sessions: Api<Session> = Api::namespaced(client.clone(), ns);
    match sessions.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => panic!("delete session {name}: {err}"),
    }
    release(client, ns, name, WAIT).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, "the session and its pod gone", || async {
        let gone = sessions.get_opt(name).await.expect("get").is_none()
            && pods.get_opt(name).await.expect("get").is_none();
        gone.then_some(())
    })
    .await;
}

/// Waits for Session `name` to end with `reason`, with an Event of that reason on it whose note
/// contains `says`; returns the condition's message.
async fn ends_with_event(client: &Client, ns: &str, name: &str, reason: &str, says: &str) -> String {
    let (ended_with, message) = eventually(WAIT, "the Ended condition", || async {
        status_of(client, ns, name).await.as_ref().and_then(ended)
    })
    .await;
    assert_eq!(ended_with, reason, "{message}");
    assert!(message.contains(says), "{message}");
    // The operator publishes the Event after it wrote the condition.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(
        WAIT,
        &format!("a {reason} Event on the Session saying {says:?}"),
        || async {
            let events = events.list(&ListParams::default()).await.expect("events");
            events
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                        && e.note.as_deref().is_some_and(|n| n.contains(says))
                })
                .then_some(())
        },
    )
    .await;
    message
}

/// `kubectl auth can-i VERB RESOURCE` as the agent of `session`: whether it is allowed.
fn agent_can(cp: &ControlPlane, ns: &str, session: &str, args: &[&str]) -> bool {
    let subject = format!(
        "system:serviceaccount:{ns}:{}",
        stream::agent_account_name(session)
    );
    let output = Command::new(&cp.kubectl)
        .args(["auth", "can-i"])
        .args(args)
        .args(["--as", &subject, "-n", ns, "--request-timeout=30s"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("kubectl runs");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {args:?}: {answer:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_agent_accounts_come_and_go_with_their_sessions() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp, "operator-pods").await;
    let operator = Running::start(client.clone(), config(&ns), true);
    let name = "bob-desk-aaaaa";
    create_session(&client, &ns, name, "bob", "desk").await;
    let pod = running_pod(&client, &ns, name).await;
    assert!(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with("testenv-node-"))
    );
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("kwok gives an IP");
    let status = eventually(WAIT, "status.host and phase Initializing", || async {
        status_of(&client, &ns, name)
            .await
            .filter(|s| s.host.as_deref() == Some(ip.as_str()) && s.phase == Some(SessionPhase::Initializing))
    })
    .await;
    assert!(status.ports.is_some());

    // The agent's rights: its Session (by name), its status, its keys Secret; nothing more.
    let sessions = "sessions.direwolf.games-on-whales.github.io";
    let own = format!("{sessions}/{name}");
    let other = format!("{sessions}/bob-desk-zzzzz");
    let keys = format!("secrets/{}", stream::keys_secret_name(name));
    for (args, allowed) in [
        (vec!["get", own.as_str()], true),
        (vec!["watch", own.as_str()], true),
        (vec!["list", own.as_str()], true),
        (vec!["get", own.as_str(), "--subresource=status"], true),
        (vec!["patch", own.as_str(), "--subresource=status"], true),
        (vec!["get", keys.as_str()], true),
        (vec!["get", other.as_str()], false),
        (vec!["list", sessions], false),
        (vec!["patch", own.as_str()], false),
        (vec!["update", own.as_str()], false),
        (vec!["delete", own.as_str()], false),
        (vec!["patch", other.as_str(), "--subresource=status"], false),
        (vec!["get", "secrets/other"], false),
        (vec!["list", "secrets"], false),
        (vec!["create", "pods"], false),
        (vec!["get", "pods"], false),
    ] {
        assert_eq!(agent_can(cp, &ns, name, &args), allowed, "can-i {args:?}");
    }

    delete_and_wait_gone(&client, &ns, name).await;
    let account = stream::agent_account_name(name);
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get_opt(&account)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), &ns)
            .get_opt(&account)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .get_opt(&account)
            .await
            .expect("get")
            .is_none()
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_asking_for_more_gpus_than_any_node_has_ends_its_session() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp, "operator-gpu").await;
    let mut config = config(&ns);
    config.pod.gpu = Some(GpuResource {
        name: "nvidia.com/gpu".to_owned(),
        count: 3,
    });
    let operator = Running::start(client.clone(), config, true);
    let name = "bob-desk-bbbbb";
    create_session(&client, &ns, name, "bob", "desk").await;
    let gpu = "Insufficient nvidia.com/gpu";
    ends_with_event(&client, &ns, name, reasons::UNSCHEDULABLE, gpu).await;
    let status = status_of(&client, &ns, name).await.expect("held");
    assert_eq!(status.phase, Some(SessionPhase::Ended));
    delete_and_wait_gone(&client, &ns, name).await;
    operator.stop().await;
}

/// An App whose pod template the API server refuses (a mount of a volume the pod does not have):
/// the Session ends at once with the API server's reason, not at its start deadline, and
/// nothing of it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_an_invalid_pod_template_ends_its_session_with_the_reason() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp, "operator-invalid").await;
    let broken: crd::App = serde_json::from_value(json!({"metadata": {"name": "broken"}, "spec": {
        "title": "Broken", "id": 8,
        "template": {"spec": {"containers": [{"name": "game", "image": "example.invalid/game:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "volumeMounts": [{"name": "nowhere", "mountPath": "/data"}]}]}}}}))
    .expect("an app");
    testenv::within(
        "create app",
        Api::<crd::App>::namespaced(client.clone(), &ns).create(&PostParams::default(), &broken),
    )
    .await
    .expect("app created");
    let operator = Running::start(client.clone(), config(&ns), true);
    let name = "bob-broken-iiiii";
    create_session(&client, &ns, name, "bob", "broken").await;
    // The API server's reason: the missing volume's name.
    ends_with_event(&client, &ns, name, reasons::POD_CREATION_FAILED, "nowhere").await;
    delete_and_wait_gone(&client, &ns, name).await;
    let account = stream::agent_account_name(name);
    eventually(WAIT, "the agent's account gone", || async {
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
        sa.get_opt(&account).await.expect("get").is_none().then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_get_twenty_pods_and_port_sets_and_all_go() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp, "operator-twenty").await;
    let operator = Running::start(client.clone(), config(&ns), true);
    let names: Vec<String> = (0..20).map(|i| format!("bob-desk-t{i:04}")).collect();
    for name in &names {
        create_session(&client, &ns, name, "bob", "desk").await;
    }
    let mut ports = BTreeSet::new();
    for name in &names {
        running_pod(&client, &ns, name).await;
        let status = eventually(WAIT, "ports and host", || async {
            status_of(&client, &ns, name)
                .await
                .filter(|s| s.host.is_some() && s.ports.is_some())
        })
        .await;
        let block = status.ports.expect("ports");
        for port in [block.rtsp, block.control, block.video_rtp, block.audio_rtp] {
            assert!(ports.insert(port.get()), "port {port} handed out twice");
        }
    }
    assert_eq!(ports.len(), 80);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("pods");
    assert_eq!(pods.items.len(), 20);
    for name in &names {
        delete_and_wait_gone(&client, &ns, name).await;
    }
    let left = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(stream::SESSION_LABEL))
        .await
        .expect("accounts");
    assert!(left.items.is_empty(), "no agent account is left");
    operator.stop().await;
}
