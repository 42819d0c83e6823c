//! The Session operator against the in-process API-server emulator, a test playing the
//! kubelet (pod status patches) and the agent (status writes): a Session gets its ports (before
//! its pod), home claim, agent account and pod; the pod's status drives the phase and the
//! endings; App deletion, caps, an exhausted port range and the start deadline end Sessions;
//! injected API failures are retried without a duplicate pod (and a failed reconcile is a
//! Warning Event); phase changes are Events; nothing is written while not leading; the
//! load-balancer exposure's Service comes and goes with its Session, and the gateway exposure
//! without the Gateway API ends a Session before its pod.
#![cfg(feature = "emulator")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use direwolf_k8s::crd::{self, App, Session, SessionPhase, conditions, field_managers, reasons};
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::operator::{OperatorConfig, PortRange};
use direwolf_k8s::stream;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::operator::{Running, create_session, ended, eventually, kubelet, running_ready, status_of};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

async fn emulator() -> ApiServerEmulator {
    support::emulator(WAIT, &["app-test-pattern.yaml", "app-firefox.yaml", "user.yaml"]).await
}

fn config() -> OperatorConfig {
    OperatorConfig::new(NS)
}

async fn pod(client: &Client, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .expect("get pod")
}

async fn wait_pod(client: &Client, name: &str) -> Pod {
    eventually(WAIT, "the stream pod", || pod(client, name)).await
}

async fn wait_gone(client: &Client, name: &str) {
    support::operator::release(client, NS, name, WAIT).await;
    let sessions: Api<Session> = Api::namespaced(client.clone(), NS);
    eventually(WAIT, "the session and its pod gone", || async {
        let session = sessions.get_opt(name).await.expect("get session");
        (session.is_none() && pod(client, name).await.is_none()).then_some(())
    })
    .await;
}

/// Waits for the Session's `Ended` condition and returns (reason, message).
async fn wait_ended(client: &Client, name: &str) -> (String, String) {
    eventually(WAIT, "the Ended condition", || async {
        status_of(client, NS, name).await.as_ref().and_then(ended)
    })
    .await
}

async fn events_for(client: &Client, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = events.list(&ListParams::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

#[tokio::test]
async fn a_session_gets_ports_home_account_and_pod_then_ends_when_wolf_exits() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), config(), true);
    let name = "alice-firefox-aaaaa";
    create_session(&client, NS, name, "alice", "firefox").await;
    let pod = wait_pod(&client, name).await;

    // Ports were in the status before the pod was created.
    let log = emulator.requests();
    let pod_create = log
        .iter()
        .position(|r| r.verb == "create" && r.path.ends_with("/pods"))
        .expect("pod created");
    let ports_write = log
        .iter()
        .position(|r| {
            r.verb == "patch" && r.path.ends_with(&format!("sessions/{name}/status")) && r.status == 200
        })
        .expect("status written");
    assert!(ports_write < pod_create, "status.ports is written before the pod");

    let status = eventually(WAIT, "phase Initializing", || async {
        status_of(&client, NS, name)
            .await
            .filter(|s| s.phase == Some(SessionPhase::Initializing))
    })
    .await;
    let ports = status.ports.expect("ports");
    assert_eq!(ports.rtsp.get(), 40000);
    assert_eq!(ports.audio_rtp.get(), 40003);
    for type_ in [
        conditions::PORTS_ALLOCATED,
        conditions::VOLUME_CREATED,
        conditions::DEPLOYMENT_CREATED,
    ] {
        let c = crd::find_condition(&status.conditions, type_).unwrap_or_else(|| panic!("{type_}"));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", reasons::SUCCESS),
            "{type_}"
        );
    }
    let sessions: Api<Session> = Api::namespaced(client.clone(), NS);
    let session = sessions.get(name).await.expect("session");
    assert!(session.finalizers().iter().any(|f| f == stream::FINALIZER));
    let owner = &pod.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(Some(&owner.uid), session.metadata.uid.as_ref());
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()),
        Some("alice-firefox-aaaaa-agent")
    );

    let account = stream::agent_account_name(name);
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get(&account)
        .await
        .expect("account");
    let role = Api::<Role>::namespaced(client.clone(), NS)
        .get(&account)
        .await
        .expect("role");
    assert_eq!(role.rules.as_ref().map(Vec::len), Some(3));
    Api::<RoleBinding>::namespaced(client.clone(), NS)
        .get(&account)
        .await
        .expect("binding");
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .get("alice-firefox")
        .await
        .expect("home claim");
    let users: Api<crd::User> = Api::namespaced(client.clone(), NS);
    let alice = users.get("alice").await.expect("alice");
    assert_eq!(
        claim.owner_references()[0].uid,
        alice.metadata.uid.expect("uid"),
        "the home belongs to the User"
    );

    // The kubelet runs the pod: the operator publishes its IP.
    kubelet(&client, NS, name, running_ready("10.1.2.3")).await;
    eventually(WAIT, "status.host", || async {
        status_of(&client, NS, name)
            .await
            .filter(|s| s.host.as_deref() == Some("10.1.2.3"))
    })
    .await;

    // The agent takes over the phase; the operator does not take it back.
    let agent = json!({"apiVersion": "direwolf.games-on-whales.github.io/v1alpha1", "kind": "Session",
        "status": {"phase": "WaitForPing", "streamURL": "rtsp://10.1.2.3:40000", "wolfSessionID": "42"}});
    sessions
        .patch_status(
            name,
            &PatchParams::apply(field_managers::AGENT_SESSION_STATUS).force(),
            &Patch::Apply(&agent),
        )
        .await
        .expect("agent status");
    // A pod change makes the operator look again.
    let ready_again = json!({"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}, {"type": "ContainersReady", "status": "True"}]});
    kubelet(&client, NS, name, ready_again).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = status_of(&client, NS, name).await.expect("status");
    assert_eq!(status.phase, Some(SessionPhase::WaitForPing));
    assert_eq!(status.stream_url.as_deref(), Some("rtsp://10.1.2.3:40000"));
    assert_eq!(status.host.as_deref(), Some("10.1.2.3"));
    // Each phase change, the operator's and the agent's, is an Event.
    eventually(WAIT, "the phase Events", || async {
        let notes: Vec<String> = events_for(&client, name)
            .await
            .into_iter()
            .filter(|e| e.action.as_deref() == Some("PhaseChange"))
            .filter_map(|e| Some(format!("{}: {}", e.reason?, e.note?)))
            .collect();
        (notes
            == [
                "Initializing: Pending → Initializing",
                "WaitForPing: Initializing → WaitForPing",
            ])
        .then_some(())
    })
    .await;

    // Wolf crashes: the Session ends with the exit code, an Event, and everything goes.
    let crashed = json!({"containerStatuses": [{"name": "wolf", "image": "wolf", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 139, "reason": "Error"}}}]});
    kubelet(&client, NS, name, crashed).await;
    let (reason, message) = wait_ended(&client, name).await;
    assert_eq!(reason, reasons::WOLF_EXITED);
    assert!(message.contains("139"), "{message}");
    wait_gone(&client, name).await;
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), NS)
            .get_opt(&account)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), NS)
            .get_opt(&account)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        events_for(&client, name)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some(reasons::WOLF_EXITED))
    );
    assert!(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
            .get_opt("alice-firefox")
            .await
            .expect("get")
            .is_some(),
        "the home stays"
    );
    operator.stop().await;
}

#[tokio::test]
async fn unschedulable_pods_end_their_session_with_the_schedulers_message() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), config(), true);
    let name = "alice-test-pattern-bbbbb";
    create_session(&client, NS, name, "alice", "test-pattern").await;
    wait_pod(&client, name).await;
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]});
    kubelet(&client, NS, name, unschedulable).await;
    let (reason, message) = wait_ended(&client, name).await;
    assert_eq!(reason, reasons::UNSCHEDULABLE);
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");
    wait_gone(&client, name).await;
    assert!(events_for(&client, name).await.iter().any(|e| {
        e.note
            .as_deref()
            .is_some_and(|n| n.contains("Insufficient nvidia.com/gpu"))
    }));
    operator.stop().await;
}

#[tokio::test]
async fn deleting_an_app_ends_its_sessions_only() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), config(), true);
    for name in ["alice-firefox-ccccc", "alice-firefox-ddddd"] {
        create_session(&client, NS, name, "alice", "firefox").await;
    }
    create_session(&client, NS, "alice-test-pattern-eeeee", "alice", "test-pattern").await;
    for name in [
        "alice-firefox-ccccc",
        "alice-firefox-ddddd",
        "alice-test-pattern-eeeee",
    ] {
        wait_pod(&client, name).await;
    }
    Api::<App>::namespaced(client.clone(), NS)
        .delete("firefox", &DeleteParams::default())
        .await
        .expect("delete app");
    for name in ["alice-firefox-ccccc", "alice-firefox-ddddd"] {
        wait_gone(&client, name).await;
        assert!(
            events_for(&client, name)
                .await
                .iter()
                .any(|e| e.reason.as_deref() == Some(reasons::APP_DELETED))
        );
    }
    assert!(
        pod(&client, "alice-test-pattern-eeeee").await.is_some(),
        "the other App's Session stays"
    );
    operator.stop().await;
}

#[tokio::test]
async fn caps_exhausted_ports_and_the_start_deadline_end_sessions() {
    let emulator = emulator().await;
    let client = emulator.client();
    let mut config = config();
    config.port_range = PortRange {
        first: 41000,
        last: 41003,
    };
    config.start_deadline = Duration::from_secs(3);
    let operator = Running::start(client.clone(), config, true);

    // A game container over the User's cpu cap: no pod, PodCreationFailed.
    let greedy = json!({"spec": {"template": {"spec": {"containers": [{"name": "game", "image": "g",
        "resources": {"limits": {"cpu": "64", "memory": "1Gi"}}}]}}}});
    Api::<App>::namespaced(client.clone(), NS)
        .patch("firefox", &PatchParams::default(), &Patch::Merge(&greedy))
        .await
        .expect("patch app");
    create_session(&client, NS, "alice-firefox-fffff", "alice", "firefox").await;
    let (reason, message) = wait_ended(&client, "alice-firefox-fffff").await;
    assert_eq!(reason, reasons::POD_CREATION_FAILED);
    assert!(message.contains("cpu=64"), "{message}");
    wait_gone(&client, "alice-firefox-fffff").await;
    assert!(
        !emulator
            .requests()
            .iter()
            .any(|r| r.verb == "create" && r.path.ends_with("/pods")),
        "no pod was created"
    );

    // One block of ports: the second Session ends PortsAllocationFailed.
    create_session(&client, NS, "alice-test-pattern-ggggg", "alice", "test-pattern").await;
    wait_pod(&client, "alice-test-pattern-ggggg").await;
    create_session(&client, NS, "alice-test-pattern-hhhhh", "alice", "test-pattern").await;
    let (reason, _) = wait_ended(&client, "alice-test-pattern-hhhhh").await;
    assert_eq!(reason, reasons::PORTS_ALLOCATION_FAILED);

    // The first never gets a stream URL: it ends at the start deadline, freeing its ports.
    let (reason, message) = wait_ended(&client, "alice-test-pattern-ggggg").await;
    assert_eq!(reason, reasons::START_DEADLINE_EXCEEDED);
    assert!(
        message.contains("no pod") || message.contains("not Ready"),
        "{message}"
    );
    wait_gone(&client, "alice-test-pattern-ggggg").await;
    create_session(&client, NS, "alice-test-pattern-iiiii", "alice", "test-pattern").await;
    wait_pod(&client, "alice-test-pattern-iiiii").await;
    let ports = status_of(&client, NS, "alice-test-pattern-iiiii")
        .await
        .and_then(|s| s.ports)
        .expect("ports");
    assert_eq!(ports.rtsp.get(), 41000, "the freed block is handed out again");
    operator.stop().await;
}

#[tokio::test]
async fn the_agents_ended_phase_deletes_the_session() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), config(), true);
    let name = "alice-test-pattern-jjjjj";
    create_session(&client, NS, name, "alice", "test-pattern").await;
    wait_pod(&client, name).await;
    let agent = json!({"apiVersion": "direwolf.games-on-whales.github.io/v1alpha1", "kind": "Session", "status": {"phase": "Ended"}});
    Api::<Session>::namespaced(client.clone(), NS)
        .patch_status(
            name,
            &PatchParams::apply(field_managers::AGENT_SESSION_STATUS).force(),
            &Patch::Apply(&agent),
        )
        .await
        .expect("agent ends");
    let (reason, _) = wait_ended(&client, name).await;
    assert_eq!(reason, reasons::STREAM_ENDED);
    wait_gone(&client, name).await;
    operator.stop().await;
}

#[tokio::test]
async fn api_failures_are_retried_without_duplicate_pods() {
    let emulator = emulator().await;
    let client = emulator.client();
    for code in [409, 429, 500] {
        emulator.inject(
            FaultRule::status(code)
                .with_verb("create")
                .with_path_prefix("/api/v1/namespaces/default/pods")
                .times(2),
        );
        emulator.inject(
            FaultRule::status(code)
                .with_verb("patch")
                .with_path_prefix("/apis/direwolf.games-on-whales.github.io")
                .times(2),
        );
    }
    emulator.inject(
        FaultRule::status(500)
            .with_verb("patch")
            .with_path_prefix("/apis/rbac.authorization.k8s.io")
            .times(2),
    );
    let operator = Running::start(client.clone(), config(), true);
    let names: Vec<String> = (0..5).map(|i| format!("alice-test-pattern-k{i:04}")).collect();
    for name in &names {
        create_session(&client, NS, name, "alice", "test-pattern").await;
    }
    for name in &names {
        wait_pod(&client, name).await;
        eventually(WAIT, "ports and phase", || async {
            status_of(&client, NS, name)
                .await
                .filter(|s| s.phase == Some(SessionPhase::Initializing) && s.ports.is_some())
        })
        .await;
    }
    assert!(
        emulator.requests().iter().any(|r| r.injected),
        "faults were injected"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("pods");
    assert_eq!(pods.items.len(), names.len(), "one pod per Session");
    let mut rtsp = BTreeSet::new();
    for name in &names {
        rtsp.insert(
            status_of(&client, NS, name)
                .await
                .and_then(|s| s.ports)
                .expect("ports")
                .rtsp,
        );
    }
    assert_eq!(rtsp.len(), names.len(), "distinct ports");
    // Deletion with faults on pod deletes still cleans up.
    emulator.inject(
        FaultRule::status(500)
            .with_verb("delete")
            .with_path_prefix("/api/v1/namespaces/default/pods")
            .times(2),
    );
    let sessions: Api<Session> = Api::namespaced(client.clone(), NS);
    for name in &names {
        sessions
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for name in &names {
        wait_gone(&client, name).await;
    }
    operator.stop().await;
}

#[tokio::test]
async fn nothing_is_written_while_not_leading() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), config(), false);
    let name = "alice-test-pattern-lllll";
    create_session(&client, NS, name, "alice", "test-pattern").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = |emulator: &ApiServerEmulator| {
        emulator
            .requests()
            .into_iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
            .count()
    };
    assert_eq!(
        writes(&emulator),
        1,
        "only the test's create: {:?}",
        emulator.requests_by_resource("create")
    );
    assert!(pod(&client, name).await.is_none());
    operator.leader.send(true).expect("lead");
    wait_pod(&client, name).await;
    // Losing leadership stops writing again.
    operator.leader.send(false).expect("stand by");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = writes(&emulator);
    kubelet(&client, NS, name, running_ready("10.9.9.9")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes(&emulator), before + 1, "only the kubelet's patch");
    assert_eq!(status_of(&client, NS, name).await.and_then(|s| s.host), None);
    operator.stop().await;
}

#[tokio::test]
async fn a_failing_reconcile_is_a_warning_event_and_is_retried_to_the_end() {
    let emulator = emulator().await;
    let client = emulator.client();
    // More failures than one reconcile's retries (6): the reconcile fails, then recovers.
    emulator.inject(
        FaultRule::status(500)
            .with_verb("patch")
            .with_path_prefix("/apis/rbac.authorization.k8s.io")
            .times(7),
    );
    let operator = Running::start(client.clone(), config(), true);
    let name = "alice-test-pattern-fail1";
    create_session(&client, NS, name, "alice", "test-pattern").await;
    wait_pod(&client, name).await;
    let warning = eventually(WAIT, "the ReconcileFailed Event", || async {
        events_for(&client, name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reasons::RECONCILE_FAILED))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.unwrap_or_default();
    assert!(note.contains("500") || note.contains("failure 1"), "{note}");
    operator.stop().await;
}

/// The load-balancer exposure, fast path: the Session's Service (its ports forwarded to the
/// same numbers, which Wolf is told to listen on) comes before the pod's Ready and goes with
/// the Session; the emulator gives no address, so the Session says so.
#[tokio::test]
async fn load_balancer_exposure_makes_a_service_per_session_and_removes_it() {
    use direwolf_k8s::operator::{Exposure, LoadBalancerExposure, expose};
    use k8s_openapi::api::core::v1::Service;
    let emulator = emulator().await;
    let client = emulator.client();
    let mut config = config();
    config.exposure = Exposure::LoadBalancer(LoadBalancerExposure {
        address_wait: Duration::from_millis(500),
        ..LoadBalancerExposure::default()
    });
    let operator = Running::start(client.clone(), config, true);
    let name = "alice-firefox-lbaaa";
    create_session(&client, NS, name, "alice", "firefox").await;
    let pod = wait_pod(&client, name).await;
    let ports = status_of(&client, NS, name)
        .await
        .and_then(|s| s.ports)
        .expect("ports before the pod");
    let wolf = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == stream::containers::WOLF))
        .expect("wolf");
    let rtsp = wolf
        .env
        .iter()
        .flatten()
        .find(|e| e.name == stream::env::WOLF_RTSP_SETUP_PORT)
        .and_then(|e| e.value.clone());
    assert_eq!(rtsp, Some(ports.rtsp.to_string()));
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let service = eventually(WAIT, "the stream Service", || async {
        services.get_opt(&expose::service_name(name)).await.expect("get")
    })
    .await;
    let published: Vec<i32> = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect();
    assert_eq!(
        published,
        expose::streams(ports).map(|(_, port, _)| i32::from(port))
    );
    let (reason, _) = eventually(WAIT, "no load-balancer address", || async {
        let status = status_of(&client, NS, name).await?;
        crd::find_condition(&status.conditions, conditions::LOAD_BALANCER_ADDRESS)
            .filter(|c| c.status == "False")
            .map(|c| (c.reason.clone(), c.message.clone()))
    })
    .await;
    assert_eq!(reason, reasons::NO_LOAD_BALANCER_ADDRESS);
    Api::<Session>::namespaced(client.clone(), NS)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&client, name).await;
    assert!(
        services
            .get_opt(&expose::service_name(name))
            .await
            .expect("get")
            .is_none(),
        "the finalizer deleted the Service"
    );
    operator.stop().await;
}

/// The gateway exposure where the Gateway API is not served: the Session ends at once with
/// `GatewayConfigurationFailed`, before any pod is made.
#[tokio::test]
async fn gateway_exposure_without_the_gateway_api_ends_the_session_before_its_pod() {
    use direwolf_k8s::operator::{Exposure, GatewayExposure};
    let emulator = emulator().await;
    let client = emulator.client();
    let mut config = config();
    config.exposure = Exposure::Gateway(GatewayExposure {
        namespace: NS.to_owned(),
        name: "public".to_owned(),
    });
    let operator = Running::start(client.clone(), config, true);
    let name = "alice-firefox-gwaaa";
    create_session(&client, NS, name, "alice", "firefox").await;
    let (reason, message) = wait_ended(&client, name).await;
    assert_eq!(reason, reasons::GATEWAY_CONFIGURATION_FAILED, "{message}");
    assert!(message.contains("public"), "{message}");
    assert!(pod(&client, name).await.is_none(), "no pod was made");
    wait_gone(&client, name).await;
    operator.stop().await;
}
