//! Unit tests of the pure parts: the pod builder (template merge, caps, policies, reserved
//! names) and the decide step (endings, phase, status).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ObjectMeta;
use serde_json::json;

use super::config::{GpuResource, PodSettings};
use super::decide::{self, Observed, OperatorStatus};
use super::pod::{PodError, PodInputs, build_pod};
use crate::crd::{App, Session, SessionPhase, User, conditions, reasons};
use crate::stream;

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).expect("example parses")
}

fn with_uid<T: kube::Resource>(mut obj: T, uid: &str) -> T {
    obj.meta_mut().uid = Some(uid.to_owned());
    obj.meta_mut().namespace = Some("games".to_owned());
    obj
}

fn user() -> User {
    with_uid(from_yaml(include_str!("../../../examples/user.yaml")), "user-uid")
}

fn firefox() -> App {
    with_uid(
        from_yaml(include_str!("../../../examples/app-firefox.yaml")),
        "app-uid",
    )
}

fn session(created: Timestamp) -> Session {
    let mut session: Session = serde_json::from_value(json!({
        "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": "alice-firefox-x7k2p", "namespace": "games", "uid": "session-uid",
                     "creationTimestamp": created.to_string()},
        "spec": {
            "userReference": {"name": "alice"},
            "gameReference": {"name": "firefox"},
            "pairingReference": {"name": "0".repeat(64)},
            "config": {"aesKey": "0".repeat(32), "aesIV": "1", "videoWidth": 1920,
                       "videoHeight": 1080, "videoRefreshRate": 60}
        }
    }))
    .expect("a session");
    session.metadata.generation = Some(1);
    session
}

fn build(app: &App, user: &User, settings: &PodSettings) -> Result<Pod, PodError> {
    build_pod(PodInputs {
        session: &session(Timestamp::now()),
        app,
        user,
        settings,
        home_claim: Some("alice-firefox"),
        wolf_ports: None,
    })
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    pod.spec
        .as_ref()
        .expect("spec")
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn env_of(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

#[test]
fn the_pod_is_the_template_plus_the_stream_containers() {
    let pod = build(&firefox(), &user(), &PodSettings::default()).expect("a pod");
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("alice-firefox-x7k2p"));
    let owner = &meta.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Session", "session-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("8081"),
        "the agent's /metrics is discoverable"
    );
    let labels = meta.labels.as_ref().expect("labels");
    for (k, v) in [
        ("app", "direwolf-worker"),
        ("direwolf/user", "alice"),
        ("direwolf/app", "firefox"),
        (stream::SESSION_LABEL, "alice-firefox-x7k2p"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }
    let spec = pod.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["firefox", "wolf", "wolf-agent", "pulseaudio"]);
    assert_eq!(spec.init_containers.as_ref().expect("init")[0].name, "init");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("alice-firefox-x7k2p-agent")
    );
    assert_eq!(spec.host_ipc, Some(true), "the wolf policy asks for host IPC");
    let volumes: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(
        volumes,
        [
            "wolf-cfg",
            "wolf-runtime",
            "wolf-data",
            "wolf-udev",
            "dev-input",
            "dev-uinput",
            "run-udev"
        ]
    );
    let data = &spec.volumes.as_ref().expect("volumes")[2];
    assert_eq!(
        data.persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("alice-firefox")
    );

    let game = container(&pod, "firefox");
    assert_eq!(env_of(game, "GAMESCOPE_WIDTH").as_deref(), Some("1920"));
    assert_eq!(env_of(game, "TZ").as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        env_of(game, "NVIDIA_VISIBLE_DEVICES"),
        None,
        "no NVIDIA GPU configured"
    );
    let mounts: Vec<(&str, &str)> = game
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert!(mounts.contains(&("wolf-runtime", "/tmp/.X11-unix")));
    assert!(mounts.contains(&("wolf-data", "/home/retro")));
    assert!(mounts.contains(&("wolf-udev", "/run/udev")));

    let wolf = container(&pod, "wolf");
    assert_eq!(
        env_of(wolf, "WOLF_SOCKET_PATH").as_deref(),
        Some(stream::WOLF_SOCKET_PATH)
    );
    assert_eq!(
        env_of(wolf, "WOLF_LOG_LEVEL").as_deref(),
        Some("INFO"),
        "the policy env replaces the App's level"
    );
    assert_eq!(
        wolf.env
            .iter()
            .flatten()
            .filter(|e| e.name == "WOLF_LOG_LEVEL")
            .count(),
        1
    );
    let limits = wolf
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("policy limits");
    assert!(limits.contains_key("gpu.intel.com/i915"));
    assert!(wolf.security_context.is_some());
    assert!(wolf.volume_mounts.iter().flatten().any(|m| m.name == "dev-input"));

    let agent = container(&pod, "wolf-agent");
    assert_eq!(agent.args.as_deref(), Some(&["agent".to_owned()][..]));
    assert_eq!(
        env_of(agent, stream::env::SESSION).as_deref(),
        Some("alice-firefox-x7k2p")
    );
    let pod_ip = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == stream::env::POD_IP)
        .expect("POD_IP");
    assert_eq!(
        pod_ip
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("status.podIP")
    );
    let ready = agent
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    let ports: Vec<i32> = agent.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(
        ports,
        [i32::from(stream::AGENT_HEALTH_PORT)],
        "no port for Wolf's API"
    );
    assert!(
        agent
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "wolf-udev" && m.mount_path == "/run/udev")
    );
}

#[test]
fn gpu_flag_and_node_selector_apply() {
    let settings = PodSettings {
        gpu: Some(GpuResource {
            name: "nvidia.com/gpu".to_owned(),
            count: 2,
        }),
        node_selector: [("type".to_owned(), "kwok".to_owned())].into(),
        ..PodSettings::default()
    };
    let mut user = user();
    user.spec.sidecar_policies = None;
    let pod = build(&firefox(), &user, &settings).expect("a pod");
    let wolf = container(&pod, "wolf");
    let limits = wolf
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("2"));
    assert_eq!(
        env_of(container(&pod, "firefox"), "NVIDIA_VISIBLE_DEVICES").as_deref(),
        Some("all")
    );
    let selector = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .expect("selector");
    assert_eq!(selector.get("type").map(String::as_str), Some("kwok"));
    assert_eq!(pod.spec.as_ref().and_then(|s| s.host_ipc), None);
}

#[test]
fn an_apps_gpu_replaces_the_installations_and_count_0_asks_for_none() {
    use crate::crd::AppGpu;
    let settings = PodSettings {
        gpu: Some(GpuResource {
            name: "nvidia.com/gpu".to_owned(),
            count: 1,
        }),
        ..PodSettings::default()
    };
    let mut user = user();
    user.spec.sidecar_policies = None;
    let limits = |app: &App| {
        let pod = build(app, &user, &settings).expect("a pod");
        let wolf = container(&pod, "wolf").clone();
        let nvidia = env_of(container(&pod, "firefox"), "NVIDIA_VISIBLE_DEVICES");
        (wolf.resources.and_then(|r| r.limits).unwrap_or_default(), nvidia)
    };
    let mut amd = firefox();
    amd.spec.gpu = Some(AppGpu {
        resource: "amd.com/gpu".to_owned(),
        count: 1,
    });
    let (amd_limits, nvidia) = limits(&amd);
    assert_eq!(amd_limits.get("amd.com/gpu").map(|q| q.0.as_str()), Some("1"));
    assert!(!amd_limits.contains_key("nvidia.com/gpu"), "{amd_limits:?}");
    assert_eq!(nvidia, None, "no NVIDIA environment for an AMD GPU");
    let mut software = firefox();
    software.spec.gpu = Some(AppGpu {
        resource: "nvidia.com/gpu".to_owned(),
        count: 0,
    });
    let (none, _) = limits(&software);
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn caps_policies_and_reserved_names_refuse_a_pod() {
    let settings = PodSettings::default();
    let mut greedy = firefox();
    let game = &mut greedy
        .spec
        .template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .expect("spec")
        .containers[0];
    game.resources
        .as_mut()
        .and_then(|r| r.limits.as_mut())
        .expect("limits")
        .insert(
            "cpu".to_owned(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("16".to_owned()),
        );
    let err = build(&greedy, &user(), &settings).expect_err("over the cpu cap");
    assert!(matches!(err, PodError::OverCaps(_)), "{err}");
    assert!(err.to_string().contains("cpu=16"), "{err}");

    let mut reserved = firefox();
    let spec = reserved
        .spec
        .template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .expect("spec");
    spec.volumes = Some(vec![
        serde_json::from_value(json!({"name": "wolf-udev", "emptyDir": {}})).expect("volume"),
    ]);
    assert!(matches!(
        build(&reserved, &user(), &settings),
        Err(PodError::ReservedVolume { .. })
    ));

    let mut named_wolf = firefox();
    named_wolf
        .spec
        .template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .expect("spec")
        .containers[0]
        .name = "wolf".to_owned();
    assert_eq!(
        build(&named_wolf, &user(), &settings),
        Err(PodError::ReservedContainer("wolf".to_owned()))
    );

    let mut dangling = user();
    dangling.spec.volumes.retain(|v| v.name != "dev-input");
    assert!(matches!(
        build(&firefox(), &dangling, &settings),
        Err(PodError::UnknownPolicyVolume {
            container: "wolf",
            ..
        })
    ));

    let mut clash = firefox();
    clash
        .spec
        .template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .expect("spec")
        .volumes = Some(vec![
        serde_json::from_value(json!({"name": "dev-input", "emptyDir": {}})).expect("volume"),
    ]);
    assert_eq!(
        build(&clash, &user(), &settings),
        Err(PodError::DuplicateVolume("dev-input".to_owned()))
    );

    let mut no_uid = session(Timestamp::now());
    no_uid.metadata.uid = None;
    let inputs = PodInputs {
        session: &no_uid,
        app: &firefox(),
        user: &user(),
        settings: &settings,
        home_claim: None,
        wolf_ports: None,
    };
    assert_eq!(build_pod(inputs), Err(PodError::NoOwner));
}

#[test]
fn an_app_without_template_gets_only_the_stream_containers() {
    let mut app = firefox();
    app.spec.template = None;
    let pod = build_pod(PodInputs {
        session: &session(Timestamp::now()),
        app: &app,
        user: &User::new("alice", Default::default()),
        settings: &PodSettings::default(),
        home_claim: None,
        wolf_ports: None,
    })
    .expect("a pod");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.containers.len(), 3);
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "wolf-data" && v.empty_dir.is_some())
    );
}

fn pod_with_status(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "alice-firefox-x7k2p"}, "status": status}))
        .expect("a pod")
}

fn observed<'a>(session: &'a Session, app: &'a App, user: &'a User, pod: Option<&'a Pod>) -> Observed<'a> {
    Observed {
        session,
        app: Some(app),
        user: Some(user),
        pod,
    }
}

#[test]
fn endings_are_decided_from_what_is_observed() {
    let now = Timestamp::now();
    let deadline = Duration::from_secs(40);
    let (app, user) = (firefox(), user());
    let fresh = session(now);
    assert_eq!(
        decide::ending(observed(&fresh, &app, &user, None), now, deadline),
        None
    );

    let gone_app = Observed {
        app: None,
        ..observed(&fresh, &app, &user, None)
    };
    assert_eq!(
        decide::ending(gone_app, now, deadline).map(|e| e.reason),
        Some(reasons::APP_DELETED)
    );
    let gone_user = Observed {
        user: None,
        ..observed(&fresh, &app, &user, None)
    };
    assert_eq!(
        decide::ending(gone_user, now, deadline).map(|e| e.reason),
        Some(reasons::USER_DELETED)
    );

    let unschedulable = pod_with_status(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]}),
    );
    let ending =
        decide::ending(observed(&fresh, &app, &user, Some(&unschedulable)), now, deadline).expect("ends");
    assert_eq!(ending.reason, reasons::UNSCHEDULABLE);
    assert!(
        ending.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        ending.message
    );

    let crashed = pod_with_status(
        json!({"phase": "Running", "containerStatuses": [{"name": "wolf", "image": "w", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 139, "reason": "Error"}}}]}),
    );
    let ending = decide::ending(observed(&fresh, &app, &user, Some(&crashed)), now, deadline).expect("ends");
    assert_eq!(ending.reason, reasons::WOLF_EXITED);
    assert!(ending.message.contains("139"), "{}", ending.message);

    let failed = pod_with_status(json!({"phase": "Failed", "message": "evicted"}));
    assert_eq!(
        decide::ending(observed(&fresh, &app, &user, Some(&failed)), now, deadline).map(|e| e.reason),
        Some(reasons::POD_FAILED)
    );

    let running = pod_with_status(
        json!({"phase": "Running", "podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    let old = session(now - SignedDuration::from_secs(41));
    let late = decide::ending(observed(&old, &app, &user, Some(&running)), now, deadline).expect("deadline");
    assert_eq!(late.reason, reasons::START_DEADLINE_EXCEEDED);
    assert!(late.message.contains("stream URL"), "{}", late.message);
    let mut started = old.clone();
    started.status =
        Some(serde_json::from_value(json!({"streamURL": "rtsp://10.0.0.7:40000"})).expect("status"));
    assert_eq!(
        decide::ending(observed(&started, &app, &user, Some(&running)), now, deadline),
        None
    );
    started.status.as_mut().expect("status").phase = Some(SessionPhase::Ended);
    assert_eq!(
        decide::ending(observed(&started, &app, &user, Some(&running)), now, deadline).map(|e| e.reason),
        Some(reasons::STREAM_ENDED)
    );

    assert!(decide::pod_ready(&running));
    assert_eq!(decide::pod_ip(&running).as_deref(), Some("10.0.0.7"));
    assert!(!decide::pod_ready(&crashed));
}

#[test]
fn the_operator_never_takes_the_phase_back_from_the_agent() {
    let now = Timestamp::now();
    let mut status = OperatorStatus::current(None);
    status.advance_phase(None, SessionPhase::Pending);
    assert_eq!(status.phase, Some(SessionPhase::Pending));
    status.advance_phase(Some(SessionPhase::Pending), SessionPhase::Initializing);
    assert_eq!(status.phase, Some(SessionPhase::Initializing));
    status.advance_phase(Some(SessionPhase::Initializing), SessionPhase::Pending);
    assert_eq!(status.phase, Some(SessionPhase::Initializing), "never backwards");

    let mut agent: Session = session(now);
    agent.status = Some(serde_json::from_value(json!({"phase": "Streaming", "streamURL": "rtsp://x:1",
        "conditions": [{"type": "StreamStarted", "status": "True", "reason": "WaitForPing", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})).expect("status"));
    let mut mine = OperatorStatus::current(agent.status.as_ref());
    assert_eq!(mine.phase, None, "the agent owns the phase");
    assert!(mine.conditions.is_empty(), "StreamStarted is the agent's");
    mine.advance_phase(Some(SessionPhase::Streaming), SessionPhase::Initializing);
    assert_eq!(mine.phase, None);
    let body = mine.apply_body(&agent, Some("42"));
    assert!(body["status"].get("phase").is_none(), "{body}");
    assert!(body["status"].get("streamURL").is_none(), "{body}");
    assert_eq!(body["metadata"]["resourceVersion"], "42");

    // A condition keeps its transition time while its status holds.
    let earlier = now - SignedDuration::from_secs(60);
    mine.set_condition(
        conditions::PORTS_ALLOCATED,
        true,
        reasons::SUCCESS,
        "a",
        Some(1),
        earlier,
    );
    mine.set_condition(
        conditions::PORTS_ALLOCATED,
        true,
        reasons::SUCCESS,
        "b",
        Some(1),
        now,
    );
    assert_eq!(mine.conditions.len(), 1);
    assert_eq!(mine.conditions[0].last_transition_time.0, earlier);
    mine.set_condition(
        conditions::PORTS_ALLOCATED,
        false,
        reasons::PORTS_ALLOCATION_FAILED,
        "c",
        Some(1),
        now,
    );
    assert_eq!(mine.conditions[0].last_transition_time.0, now);
}

#[test]
fn an_ended_condition_means_only_deletion_is_left() {
    let mut s = session(Timestamp::now());
    assert!(!decide::already_ended(&s));
    s.status = Some(serde_json::from_value(json!({"phase": "Ended", "conditions": [{"type": "Ended", "status": "True", "reason": "WolfExited", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})).expect("status"));
    assert!(decide::already_ended(&s));
    let _ = ObjectMeta::default();
}
