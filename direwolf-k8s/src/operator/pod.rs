//! The stream pod of one Session (`docs/protocol/kubernetes.md` § The stream pod, changed by
//! [`crate::stream`]): the App's pod template with the game containers' environment and mounts
//! added, the injected `init`, `wolf`, `wolf-agent` and `pulseaudio` containers, the shared
//! volumes, the User's volumes, caps and sidecar policies, owned by the Session.
//!
//! Pure: [`build_pod`] reads the objects and returns the pod or why none can be built.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::caps::{CapViolation, check_caps, merge_resources, requests};
use super::config::{GpuResource, PodSettings};
use crate::crd::{App, RESERVED_VOLUME_NAMES, Session, SessionPorts, SidecarPolicy, User, labels};
use crate::stream::{self, containers};

/// The volume shared by the agent (which replays Wolf's udev events into it) and every game
/// container, at `/run/udev`.
pub const UDEV_VOLUME: &str = "wolf-udev";
const WOLF_CFG: &str = "wolf-cfg";
const WOLF_RUNTIME: &str = "wolf-runtime";
const WOLF_DATA: &str = "wolf-data";
const RUNTIME_DIR: &str = "/tmp/.X11-unix";

/// Why no pod can be built for a Session (the Session ends with `PodCreationFailed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// A game container is over the User's caps.
    #[error("the User's caps refuse the App's pod: {0}")]
    OverCaps(#[from] CapViolation),
    /// The App's template or the User declares a volume name the operator reserves.
    #[error("the {owner} declares volume {name:?}, a name reserved for the stream pod")]
    ReservedVolume {
        /// `App template` or `User`.
        owner: &'static str,
        /// The volume name.
        name: String,
    },
    /// The App's template and the User declare a volume of the same name.
    #[error("volume {0:?} is declared by both the App's template and the User")]
    DuplicateVolume(String),
    /// The App's template has a container named like an injected one.
    #[error("the App's template has a container named {0:?}, a name reserved for the stream pod")]
    ReservedContainer(String),
    /// A sidecar policy mounts a volume the User does not declare.
    #[error("the User's {container} policy mounts volume {volume:?}, which is not in the User's volumes")]
    UnknownPolicyVolume {
        /// The injected container.
        container: &'static str,
        /// The volume name.
        volume: String,
    },
    /// The Session has no uid yet (it was not read from the API server).
    #[error("the Session has no uid; it cannot own a pod")]
    NoOwner,
}

/// What a pod is built from.
#[derive(Debug, Clone, Copy)]
pub struct PodInputs<'a> {
    /// The Session the pod serves (names it and owns it).
    pub session: &'a Session,
    /// The App it runs.
    pub app: &'a App,
    /// The User who streams.
    pub user: &'a User,
    /// Images, GPU and node selector.
    pub settings: &'a PodSettings,
    /// The home claim, when the App has a claim template.
    pub home_claim: Option<&'a str>,
    /// The Session's public ports when Wolf must listen on them itself (every exposure mode
    /// but the relay); `None`: Wolf keeps its default ports.
    pub wolf_ports: Option<SessionPorts>,
}

/// The labels of every object made for `session`.
pub fn session_labels(session: &Session) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP.to_owned(), labels::APP_WORKER.to_owned()),
        (labels::USER.to_owned(), session.spec.user_reference.name.clone()),
        (
            labels::APP_NAME.to_owned(),
            session.spec.game_reference.name.clone(),
        ),
        (stream::SESSION_LABEL.to_owned(), session.name_any()),
    ])
}

/// The stream pod of a Session.
///
/// # Errors
/// A [`PodError`] when the App's template or the User's settings do not allow a pod.
pub fn build_pod(inputs: PodInputs<'_>) -> Result<Pod, PodError> {
    let PodInputs {
        session, app, user, ..
    } = inputs;
    let mut owner = session.controller_owner_ref(&()).ok_or(PodError::NoOwner)?;
    owner.block_owner_deletion = Some(true);
    let template = app.spec.template.clone().unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    check_names(&spec, user)?;
    let policies = user.spec.sidecar_policies.clone().unwrap_or_default();
    let caps = user.spec.resources.clone().unwrap_or_default();
    for container in &spec.containers {
        check_caps(container, &caps)?;
    }
    let gpu_hints = wants_nvidia(&inputs, &policies.wolf);
    for container in &mut spec.containers {
        add_game_env_and_mounts(container, &inputs, gpu_hints);
    }
    spec.init_containers = Some(
        std::iter::once(init_container(&inputs))
            .chain(spec.init_containers.take().unwrap_or_default())
            .collect(),
    );
    spec.containers.push(wolf_container(&inputs, &policies.wolf)?);
    spec.containers
        .push(agent_container(&inputs, &policies.wolf_agent)?);
    spec.containers
        .push(pulseaudio_container(&inputs, &policies.pulseaudio)?);
    let mut volumes = stream_volumes(inputs.home_claim);
    volumes.extend(spec.volumes.take().unwrap_or_default());
    volumes.extend(user.spec.volumes.iter().cloned());
    spec.volumes = Some(volumes);
    let host_ipc = [&policies.wolf, &policies.pulseaudio, &policies.wolf_agent]
        .iter()
        .any(|p| p.host_ipc == Some(true));
    if host_ipc {
        spec.host_ipc = Some(true);
    }
    spec.restart_policy = Some("Never".to_owned());
    spec.service_account_name = Some(stream::agent_account_name(&session.name_any()));
    if !inputs.settings.node_selector.is_empty() {
        let mut selector = spec.node_selector.take().unwrap_or_default();
        selector.extend(inputs.settings.node_selector.clone());
        spec.node_selector = Some(selector);
    }
    let mut pod_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    pod_labels.extend(session_labels(session));
    let mut annotations = template.metadata.and_then(|m| m.annotations).unwrap_or_default();
    // The agent's `/metrics` (Wolf API calls), for `prometheus.io/*` pod discovery; the App's
    // template may say otherwise.
    for (key, value) in [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", stream::AGENT_HEALTH_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ] {
        annotations.entry(key.to_owned()).or_insert(value);
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(session.name_any()),
            namespace: session.namespace(),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Reserved and duplicate volume and container names.
fn check_names(spec: &PodSpec, user: &User) -> Result<(), PodError> {
    let reserved: BTreeSet<&str> = RESERVED_VOLUME_NAMES
        .iter()
        .copied()
        .chain([UDEV_VOLUME])
        .collect();
    let template_volumes: BTreeSet<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    for (owner, names) in [
        ("App template", template_volumes.clone()),
        (
            "User",
            user.spec.volumes.iter().map(|v| v.name.as_str()).collect(),
        ),
    ] {
        if let Some(name) = names.iter().find(|n| reserved.contains(*n)) {
            return Err(PodError::ReservedVolume {
                owner,
                name: (*name).to_owned(),
            });
        }
    }
    if let Some(v) = user
        .spec
        .volumes
        .iter()
        .find(|v| template_volumes.contains(v.name.as_str()))
    {
        return Err(PodError::DuplicateVolume(v.name.clone()));
    }
    let injected = [
        containers::WOLF,
        containers::AGENT,
        containers::PULSEAUDIO,
        containers::INIT,
    ];
    let template_containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if let Some(c) = template_containers
        .into_iter()
        .find(|c| injected.contains(&c.name.as_str()))
    {
        return Err(PodError::ReservedContainer(c.name.clone()));
    }
    Ok(())
}

/// The GPU the `wolf` container asks for: the App's (none if its count is 0), else the
/// installation's.
fn gpu(inputs: &PodInputs<'_>) -> Option<GpuResource> {
    match &inputs.app.spec.gpu {
        Some(app) => u32::try_from(app.count)
            .ok()
            .filter(|count| *count > 0)
            .map(|count| GpuResource {
                name: app.resource.clone(),
                count,
            }),
        None => inputs.settings.gpu.clone(),
    }
}

/// Whether the GPU is an NVIDIA one (the GPU resource asked for or one in the User's wolf
/// policy is `nvidia.com/...`): only then do game containers get NVIDIA's environment.
fn wants_nvidia(inputs: &PodInputs<'_>, wolf_policy: &SidecarPolicy) -> bool {
    let configured = gpu(inputs).into_iter().map(|g| g.name);
    let resources = wolf_policy.resources.iter().flat_map(|r| {
        r.limits
            .iter()
            .chain(r.requests.iter())
            .flat_map(|m| m.keys().cloned())
            .collect::<Vec<_>>()
    });
    configured
        .chain(resources)
        .any(|name| name.starts_with("nvidia.com/"))
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(crate) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// `base` with `extra` appended; an entry of `extra` replaces the one of `base` with its name
/// (the list is keyed by name, so names must stay unique).
fn merge_env(base: Vec<EnvVar>, extra: &[EnvVar]) -> Vec<EnvVar> {
    let mut merged: Vec<EnvVar> = base
        .into_iter()
        .filter(|b| !extra.iter().any(|e| e.name == b.name))
        .collect();
    merged.extend(extra.iter().cloned());
    merged
}

/// The game environment and mounts added to a template container; what the template sets
/// itself (an env name, a mount path) wins.
fn add_game_env_and_mounts(container: &mut Container, inputs: &PodInputs<'_>, nvidia: bool) {
    let runtime = &inputs.app.spec.wolf_config.runtime_variables;
    let config = &inputs.session.spec.config;
    let mut ours = vec![
        env("DISPLAY", ":0"),
        env("WAYLAND_DISPLAY", "wayland-1"),
        env("TZ", runtime.time_zone.clone()),
        env("UNAME", "retro"),
        env("XDG_RUNTIME_DIR", RUNTIME_DIR),
        env("PULSE_SERVER", format!("unix:{RUNTIME_DIR}/pulse-socket")),
        env("GAMESCOPE_WIDTH", config.video_width.to_string()),
        env("GAMESCOPE_HEIGHT", config.video_height.to_string()),
        env("GAMESCOPE_REFRESH", config.video_refresh_rate.to_string()),
        env("GST_VAAPI_ALL_DRIVERS", "1"),
        env("GST_DEBUG", "2"),
    ];
    if nvidia {
        ours.extend([
            env("LIBVA_DRIVER_NAME", "nvidia"),
            env(
                "LD_LIBRARY_PATH",
                "/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/usr/local/lib",
            ),
            env("NVIDIA_DRIVER_CAPABILITIES", "all"),
            env("NVIDIA_VISIBLE_DEVICES", "all"),
        ]);
    }
    let own = container.env.take().unwrap_or_default();
    container.env = Some(merge_env(ours, &own));
    let mut mounts = container.volume_mounts.take().unwrap_or_default();
    let home = VolumeMount {
        sub_path: Some(format!("state/{}", inputs.app.name_any())),
        ..mount(WOLF_DATA, "/home/retro")
    };
    let udev = VolumeMount {
        read_only: Some(true),
        ..mount(UDEV_VOLUME, "/run/udev")
    };
    for extra in [mount(WOLF_RUNTIME, RUNTIME_DIR), home, udev] {
        if !mounts.iter().any(|m| m.mount_path == extra.mount_path) {
            mounts.push(extra);
        }
    }
    container.volume_mounts = Some(mounts);
}

/// Policy mounts, each of which must name a User volume.
fn policy_mounts(
    container: &'static str,
    policy: &SidecarPolicy,
    user: &User,
) -> Result<Vec<VolumeMount>, PodError> {
    for m in &policy.volume_mounts {
        if !user.spec.volumes.iter().any(|v| v.name == m.name) {
            return Err(PodError::UnknownPolicyVolume {
                container,
                volume: m.name.clone(),
            });
        }
    }
    Ok(policy.volume_mounts.clone())
}

/// An injected container: built-in env, mounts and default requests, with the policy applied.
fn sidecar(
    name: &'static str,
    image: &str,
    env: Vec<EnvVar>,
    mut mounts: Vec<VolumeMount>,
    defaults: k8s_openapi::api::core::v1::ResourceRequirements,
    policy: &SidecarPolicy,
    user: &User,
) -> Result<Container, PodError> {
    mounts.extend(policy_mounts(name, policy, user)?);
    Ok(Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        env: Some(merge_env(env, &policy.env)),
        volume_mounts: Some(mounts),
        resources: Some(merge_resources(defaults, policy.resources.as_ref())),
        security_context: policy.security_context.clone(),
        ..Container::default()
    })
}

/// Wolf's port variables and its container ports: the Session's public ports when Wolf
/// listens on them itself (`docs/protocol/streaming-ports.md` § Port table),
/// else only its default RTSP port.
pub fn wolf_ports(ports: Option<SessionPorts>) -> (Vec<EnvVar>, Vec<ContainerPort>) {
    let port = |name: &str, number: u16, protocol: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some(protocol.to_owned()),
        ..ContainerPort::default()
    };
    let Some(ports) = ports else {
        return (Vec::new(), vec![port("rtsp", stream::WOLF_RTSP_PORT, "TCP")]);
    };
    let env = vec![
        env(stream::env::WOLF_RTSP_SETUP_PORT, ports.rtsp.to_string()),
        env(stream::env::WOLF_CONTROL_PORT, ports.control.to_string()),
        env(stream::env::WOLF_VIDEO_PING_PORT, ports.video_rtp.to_string()),
        env(stream::env::WOLF_AUDIO_PING_PORT, ports.audio_rtp.to_string()),
    ];
    let container_ports = vec![
        port("rtsp", ports.rtsp.get(), "TCP"),
        port("control", ports.control.get(), "UDP"),
        port("video", ports.video_rtp.get(), "UDP"),
        port("audio", ports.audio_rtp.get(), "UDP"),
    ];
    (env, container_ports)
}

fn wolf_container(inputs: &PodInputs<'_>, policy: &SidecarPolicy) -> Result<Container, PodError> {
    let runtime = &inputs.app.spec.wolf_config.runtime_variables;
    let (port_env, container_ports) = wolf_ports(inputs.wolf_ports);
    let mut env = vec![
        env("PUID", "1000"),
        env("PGID", "1000"),
        env("UNAME", "ubuntu"),
        env("XDG_RUNTIME_DIR", RUNTIME_DIR),
        env("PULSE_SERVER", format!("unix:{RUNTIME_DIR}/pulse-socket")),
        env("HOST_APPS_STATE_FOLDER", "/mnt/data/wolf"),
        env(stream::env::WOLF_SOCKET_PATH, stream::WOLF_SOCKET_PATH),
        env("WOLF_LOG_LEVEL", runtime.log_level.as_str()),
        env("TZ", runtime.time_zone.clone()),
        env("WOLF_RENDER_NODE", runtime.render_node.clone()),
    ];
    // After the policy's env would be too late to win: the ports are the exposure's contract.
    env.extend(port_env);
    let mounts = vec![
        mount(WOLF_CFG, "/etc/wolf"),
        mount(WOLF_RUNTIME, RUNTIME_DIR),
        mount(WOLF_DATA, "/mnt/data/wolf"),
    ];
    let mut defaults = requests(&[("cpu", "100m"), ("memory", "100Mi")]);
    if let Some(gpu) = gpu(inputs) {
        defaults.limits = Some(BTreeMap::from([(gpu.name, Quantity(gpu.count.to_string()))]));
    }
    let mut wolf = sidecar(
        containers::WOLF,
        &inputs.settings.images.wolf,
        env,
        mounts,
        defaults,
        policy,
        inputs.user,
    )?;
    // The allocated ports win over a policy that names them too.
    if inputs.wolf_ports.is_some() {
        let ours: Vec<EnvVar> = wolf_ports(inputs.wolf_ports).0;
        let mut merged = wolf.env.take().unwrap_or_default();
        merged.retain(|e| !ours.iter().any(|o| o.name == e.name));
        merged.extend(ours);
        wolf.env = Some(merged);
    }
    wolf.ports = Some(container_ports);
    Ok(wolf)
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(stream::AGENT_HEALTH_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(2),
        ..Probe::default()
    }
}

fn agent_container(inputs: &PodInputs<'_>, policy: &SidecarPolicy) -> Result<Container, PodError> {
    let env = vec![
        env(stream::env::SESSION, inputs.session.name_any()),
        field_env(stream::env::POD_NAMESPACE, "metadata.namespace"),
        field_env(stream::env::POD_NAME, "metadata.name"),
        field_env(stream::env::POD_IP, "status.podIP"),
        env(stream::env::WOLF_SOCKET_PATH, stream::WOLF_SOCKET_PATH),
        env("XDG_RUNTIME_DIR", RUNTIME_DIR),
    ];
    let mounts = vec![
        mount(WOLF_CFG, "/etc/wolf"),
        mount(WOLF_RUNTIME, RUNTIME_DIR),
        mount(UDEV_VOLUME, "/run/udev"),
    ];
    let defaults = requests(&[("cpu", "10m"), ("memory", "32Mi")]);
    let mut agent = sidecar(
        containers::AGENT,
        &inputs.settings.images.agent,
        env,
        mounts,
        defaults,
        policy,
        inputs.user,
    )?;
    agent.args = Some(vec!["agent".to_owned()]);
    agent.ports = Some(vec![ContainerPort {
        name: Some("health".to_owned()),
        container_port: i32::from(stream::AGENT_HEALTH_PORT),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }]);
    agent.readiness_probe = Some(probe("/readyz"));
    agent.liveness_probe = Some(Probe {
        failure_threshold: Some(5),
        ..probe("/livez")
    });
    Ok(agent)
}

fn pulseaudio_container(inputs: &PodInputs<'_>, policy: &SidecarPolicy) -> Result<Container, PodError> {
    let runtime = &inputs.app.spec.wolf_config.runtime_variables;
    let env = vec![
        env("TZ", runtime.time_zone.clone()),
        env("UNAME", "retro"),
        env("XDG_RUNTIME_DIR", "/tmp/pulse"),
    ];
    sidecar(
        containers::PULSEAUDIO,
        &inputs.settings.images.pulseaudio,
        env,
        vec![mount(WOLF_RUNTIME, "/tmp/pulse")],
        requests(&[("cpu", "100m"), ("memory", "100Mi")]),
        policy,
        inputs.user,
    )
}

/// Prepares ownership and modes of the shared directories for Wolf (uid 1000) and the game
/// (`retro`, uid 1000), and the game's home below Wolf's state folder (`$APP_STATE`).
const INIT_SCRIPT: &str = "set -eu
mkdir -p /mnt/data/wolf/cfg /etc/wolf/cfg \"/mnt/data/wolf/state/$APP_STATE\"
chown 1000:1000 /mnt/data/wolf /mnt/data/wolf/cfg /mnt/data/wolf/state \"/mnt/data/wolf/state/$APP_STATE\" /etc/wolf /etc/wolf/cfg /tmp/.X11-unix
chmod 777 /mnt/data/wolf /mnt/data/wolf/cfg /etc/wolf
chmod 1777 /tmp/.X11-unix
";

fn init_container(inputs: &PodInputs<'_>) -> Container {
    Container {
        name: containers::INIT.to_owned(),
        image: Some(inputs.settings.images.init.clone()),
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            INIT_SCRIPT.to_owned(),
        ]),
        env: Some(vec![env("APP_STATE", inputs.app.name_any())]),
        volume_mounts: Some(vec![
            mount(WOLF_CFG, "/etc/wolf"),
            mount(WOLF_DATA, "/mnt/data/wolf"),
            mount(WOLF_RUNTIME, RUNTIME_DIR),
        ]),
        resources: Some(requests(&[("cpu", "10m"), ("memory", "16Mi")])),
        ..Container::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// `wolf-cfg`, `wolf-runtime`, `wolf-data` (the home claim or an emptyDir) and `wolf-udev`.
fn stream_volumes(home_claim: Option<&str>) -> Vec<Volume> {
    let data = match home_claim {
        Some(claim) => Volume {
            name: WOLF_DATA.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => empty_dir(WOLF_DATA),
    };
    vec![
        empty_dir(WOLF_CFG),
        empty_dir(WOLF_RUNTIME),
        data,
        empty_dir(UDEV_VOLUME),
    ]
}

/// The Session's user name as a `crd` reference (for callers that only hold the Session).
pub fn user_of(session: &Session) -> &str {
    &session.spec.user_reference.name
}

/// The Session's App object name.
pub fn app_of(session: &Session) -> &str {
    &session.spec.game_reference.name
}
