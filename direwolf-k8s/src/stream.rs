//! The stream workload contract: the names, environment and status fields that the proxy, the
//! operator, the wolf-agent and the relay agree on for one `Session`.
//!
//! One Session runs in one **pod named after the Session** (not a Deployment shared by a user's
//! Sessions, as the proof of concept did: its shared owner references left pods behind). Every
//! object made for a Session is owned by it with `controller: true`, so deleting the Session
//! removes them, and the operator's finalizer [`FINALIZER`] removes them itself first, so that
//! nothing waits for the garbage collector:
//!
//! | Object | Name | Written by | Read by |
//! |---|---|---|---|
//! | `Session` | `<user>-<app>-<5 random>` | proxy (spec), operator and agent (status) | all |
//! | Secret with the stream keys | [`keys_secret_name`] | proxy | that Session's agent |
//! | ServiceAccount, Role, RoleBinding | [`agent_account_name`] | operator | API server (the agent's rights: its Session, its status, its keys Secret) |
//! | Pod | the Session's name, or a claimed warm pod's own ([`warm_pod_prefix`]) | operator | kubelet, proxy relay |
//! | home PVC | `<user>-<app>` (owned by the User) | operator | pod |
//! | Service (load-balancer and gateway exposures) | `operator::expose::service_name` | operator | load balancer, Gateway |
//! | TCPRoute, UDPRoutes (gateway exposure) | `<session>-rtsp`, `-control`, `-video`, `-audio` | operator | Gateway |
//!
//! Status fields and who writes them (server-side apply, each writer its own field manager):
//!
//! * operator ([`crate::crd::field_managers::OPERATOR_SESSION_STATUS`]): `phase` Pending,
//!   Initializing and Ended, the conditions `PortsAllocated`, `VolumeCreated`,
//!   `DeploymentCreated` (the pod), `ports` (the public port set on the proxies' address, unique
//!   among the namespace's Sessions), `host` (the pod's IP, once it has one);
//! * agent ([`crate::crd::field_managers::AGENT_SESSION_STATUS`]): `wolfSessionID`, `streamURL`
//!   (`rtsp://<fake RTSP IP>:<ports.rtsp>`, see [`fake_rtsp_ip`]), `phase` WaitForPing, Streaming,
//!   Paused and Ended, the condition `StreamStarted`.
//!
//! In the relay exposure (the default) the relay in every proxy replica forwards `ports` on the
//! proxy's address to the pod: RTSP to `host:`[`WOLF_RTSP_PORT`], UDP to Wolf's default ports
//! on `host` (Wolf keeps its defaults inside its own pod), writing the fake RTSP IP (the host of
//! `streamURL`) into every RTSP request. In the load-balancer and gateway exposures
//! (`docs/protocol/kubernetes.md` § Exposure modes) Wolf listens on `ports` themselves (the
//! operator sets [`env::WOLF_RTSP_SETUP_PORT`] and the others in the `wolf` container), a
//! Service or Gateway route forwards each public port to the same port of the pod, and the
//! client echoes the fake IP itself; `streamURL` is the same in every mode.

use std::net::{IpAddr, Ipv4Addr};

/// The operator's finalizer on every Session it provisions.
pub const FINALIZER: &str = "direwolf.games-on-whales.github.io/stream";

/// Label on every object made for a Session (pod, Secret, account objects): the Session's name.
pub const SESSION_LABEL: &str = "direwolf/session";

/// The name prefix of an App's warm pods (`<app>-warm-<5 random>`). A claimed warm pod keeps
/// its name: a Session's pod is the one named after it or the one labelled [`SESSION_LABEL`]
/// with it and owned by it.
pub fn warm_pod_prefix(app: &str) -> String {
    format!("{app}-warm-")
}

/// The Secret holding a Session's stream keys (`aesKey`, `aesIV`).
pub fn keys_secret_name(session: &str) -> String {
    format!("{session}-keys")
}

/// Key of the AES key (32 hex digits, as the client sent `rikey`) in the keys Secret.
pub const KEYS_AES_KEY: &str = "aesKey";
/// Key of the AES IV (decimal, as the client sent `rikeyid`) in the keys Secret.
pub const KEYS_AES_IV: &str = "aesIV";
/// Annotation of the keys Secret: the revision of its keys, the Session's `spec.keysRevision`
/// when they were written (a resume raises it; absent: 0).
pub const KEYS_REVISION: &str = "direwolf.games-on-whales.github.io/keys-revision";

/// The ServiceAccount (and Role, RoleBinding) the Session's pod runs as.
pub fn agent_account_name(session: &str) -> String {
    format!("{session}-agent")
}

/// Container names in a stream pod.
pub mod containers {
    /// Wolf.
    pub const WOLF: &str = "wolf";
    /// The wolf-agent sidecar.
    pub const AGENT: &str = "wolf-agent";
    /// PulseAudio.
    pub const PULSEAUDIO: &str = "pulseaudio";
    /// The init container preparing the shared directories.
    pub const INIT: &str = "init";
}

/// Environment of the agent container.
pub mod env {
    /// The Session's name.
    pub const SESSION: &str = "DIREWOLF_SESSION";
    /// In a warm pod, instead of [`SESSION`]: the pod's own name (downward API
    /// `metadata.name`); the agent waits for the pod's [`super::SESSION_LABEL`].
    pub const WARM_POD: &str = "DIREWOLF_WARM_POD";
    /// The namespace (downward API `metadata.namespace`).
    pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
    /// The pod's name (downward API `metadata.name`).
    pub const POD_NAME: &str = "POD_NAME";
    /// The pod's IP (downward API `status.podIP`).
    pub const POD_IP: &str = "POD_IP";
    /// Wolf's API socket.
    pub const WOLF_SOCKET_PATH: &str = "WOLF_SOCKET_PATH";
    /// Wolf's RTSP port (set to `ports.rtsp` when Wolf listens on the public ports).
    pub const WOLF_RTSP_SETUP_PORT: &str = "WOLF_RTSP_SETUP_PORT";
    /// Wolf's control (ENet) port (`ports.control`).
    pub const WOLF_CONTROL_PORT: &str = "WOLF_CONTROL_PORT";
    /// Wolf's video port (`ports.videoRTP`).
    pub const WOLF_VIDEO_PING_PORT: &str = "WOLF_VIDEO_PING_PORT";
    /// Wolf's audio port (`ports.audioRTP`).
    pub const WOLF_AUDIO_PING_PORT: &str = "WOLF_AUDIO_PING_PORT";
}

/// Where Wolf's API socket is in the pod (volume `wolf-cfg` at `/etc/wolf`).
pub const WOLF_SOCKET_PATH: &str = "/etc/wolf/wolf.sock";

/// The agent's health port (`/livez`, `/readyz`; plain HTTP, never Wolf's API).
pub const AGENT_HEALTH_PORT: u16 = 8081;

/// Wolf's RTSP port inside its pod (its default).
pub const WOLF_RTSP_PORT: u16 = 48010;

/// The `rtsp_fake_ip` the agent gives Wolf: the pod's IPv4 address, or for an IPv6 pod a fixed
/// address from the shared range 100.64.0.0/10 (one Wolf serves one session, so it need only
/// be an IPv4 address the relay writes into RTSP requests).
pub fn fake_rtsp_ip(pod_ip: IpAddr) -> Ipv4Addr {
    match pod_ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::new(100, 64, 0, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_session() {
        assert_eq!(
            keys_secret_name("alice-desktop-x7k2p"),
            "alice-desktop-x7k2p-keys"
        );
        assert_eq!(
            agent_account_name("alice-desktop-x7k2p"),
            "alice-desktop-x7k2p-agent"
        );
    }

    #[test]
    fn fake_rtsp_ip_is_ipv4() {
        assert_eq!(
            fake_rtsp_ip("10.1.2.3".parse().unwrap()),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(
            fake_rtsp_ip("fd00::5".parse().unwrap()),
            Ipv4Addr::new(100, 64, 0, 1)
        );
    }
}
