//! `Session`: one stream of one App for one User from one client (`docs/protocol/kubernetes.md`
//! § Session).
//!
//! Differences from the v1alpha1 schema of the proof of concept: `gateway` is optional (only a
//! Gateway data path uses it), the user and app references are immutable (a resume re-keys the
//! stream, so `config` and the pairing reference may change), stream parameters are validated,
//! and `status` has `phase`, `observedGeneration` and port numbers limited to 1..=65535.

use std::num::NonZeroU16;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AppReference, GatewayReference, PairingReference, UserReference};

/// One stream: who (user, pairing), what (App), and the client's stream parameters. The
/// operator provisions it and reports progress in `status`.
// `printcolumn(type_ = ..)` repeats by design; clippy reads it as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "direwolf.games-on-whales.github.io",
    version = "v1alpha1",
    kind = "Session",
    namespaced,
    status = "SessionStatus",
    shortname = "dwsess",
    category = "direwolf",
    doc = "One stream of one App for one User from one paired client.",
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userReference.name"),
    printcolumn(name = "App", type_ = "string", json_path = ".spec.gameReference.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.streamURL"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.userReference == oldSelf.userReference && self.gameReference.name == oldSelf.gameReference.name")
    .message("userReference and gameReference are immutable; create a new Session instead"))]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// The User who streams.
    pub user_reference: UserReference,
    /// The App object to run.
    pub game_reference: AppReference,
    /// The Pairing (client certificate) that launched or last resumed the stream.
    pub pairing_reference: PairingReference,
    /// A Gateway whose address equals the Moonlight server address (Gateway data path only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayReference>,
    /// The client's stream parameters.
    pub config: SessionConfig,
    /// The revision of the keys Secret the stream must use: a resume writes new keys with the
    /// next revision, then raises this; the agent re-registers the stream with them. Absent: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keys_revision: Option<i64>,
}

/// The client's stream parameters, from `/launch` or the last `/resume`.
///
/// The stream's AES key and IV are not here: anyone allowed to read Sessions could see them.
/// They live in the Session's keys Secret ([`crate::stream::keys_secret_name`], [`crate::keys`]),
/// which only the proxy, the operator and that Session's agent may read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionConfig {
    /// The client's address as seen by the proxy.
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("clientIP must be an IPv4 or IPv6 address"))]
    pub client_ip: Option<String>,
    /// Requested width in pixels.
    #[schemars(range(min = 1, max = 16384))]
    pub video_width: i32,
    /// Requested height in pixels.
    #[schemars(range(min = 1, max = 16384))]
    pub video_height: i32,
    /// Requested refresh rate in frames per second.
    #[schemars(range(min = 0, max = 1000))]
    pub video_refresh_rate: i32,
    /// Moonlight `surroundAudioInfo`: `(channelMask << 16) | channelCount`.
    #[serde(default = "default_surround_audio_flags")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub surround_audio_flags: i64,
}

fn default_surround_audio_flags() -> i64 {
    i64::from(direwolf_core::model::STEREO_SURROUND_AUDIO_INFO)
}

/// Where a Session is in its life (`docs/protocol/kubernetes.md` § Session phases).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SessionPhase {
    /// The Session exists and nothing is provisioned yet.
    Pending,
    /// Ports, home, Deployment and Service are being created; the pod is not Ready.
    Initializing,
    /// Wolf has the session and the stream URL is published; waiting for the client.
    WaitForPing,
    /// The client is connected.
    Streaming,
    /// The client went away; the game is kept for a resume.
    Paused,
    /// Over; resources are released and the Session is deleted.
    Ended,
}

impl From<direwolf_core::SessionPhase> for SessionPhase {
    fn from(phase: direwolf_core::SessionPhase) -> Self {
        use direwolf_core::SessionPhase as P;
        match phase {
            P::Pending => SessionPhase::Pending,
            P::Initializing => SessionPhase::Initializing,
            P::WaitForPing => SessionPhase::WaitForPing,
            P::Streaming => SessionPhase::Streaming,
            P::Paused => SessionPhase::Paused,
            P::Ended => SessionPhase::Ended,
        }
    }
}

impl From<SessionPhase> for direwolf_core::SessionPhase {
    fn from(phase: SessionPhase) -> Self {
        use direwolf_core::SessionPhase as P;
        match phase {
            SessionPhase::Pending => P::Pending,
            SessionPhase::Initializing => P::Initializing,
            SessionPhase::WaitForPing => P::WaitForPing,
            SessionPhase::Streaming => P::Streaming,
            SessionPhase::Paused => P::Paused,
            SessionPhase::Ended => P::Ended,
        }
    }
}

#[cfg(test)]
impl Session {
    /// A Session of alice's `desktop` App for unit tests: 1920×1080 at 60 Hz, stereo, from
    /// client `198.51.100.7`, no status.
    pub(crate) fn example(name: &str) -> Session {
        Session::new(
            name,
            SessionSpec {
                user_reference: UserReference { name: "alice".into() },
                game_reference: AppReference {
                    name: "desktop".into(),
                    app_id: None,
                },
                pairing_reference: PairingReference { name: "f".repeat(64) },
                gateway: None,
                keys_revision: None,
                config: SessionConfig {
                    client_ip: Some("198.51.100.7".into()),
                    video_width: 1920,
                    video_height: 1080,
                    video_refresh_rate: 60,
                    surround_audio_flags: 196610,
                },
            },
        )
    }
}

/// What the operator reports about a Session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,
    /// Standard conditions, one per `type` (see [`crate::crd::conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The stream's ports on the shared external address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<SessionPorts>,
    /// The id Wolf returned when the stream was registered.
    #[serde(default, rename = "wolfSessionID", skip_serializing_if = "Option::is_none")]
    pub wolf_session_id: Option<String>,
    /// The revision of the keys Secret that Wolf's session was registered with (the agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_revision: Option<i64>,
    /// `rtsp://<host>:<ports.rtsp>`, returned to the client as `sessionUrl0`.
    #[serde(default, rename = "streamURL", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^rtsp(enc)?://\\S+$"))]
    pub stream_url: Option<String>,
    /// The streaming host (Wolf instance) that carries the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The stream Deployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// The stream Service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// The four per-stream ports; RTSP is TCP, the others UDP.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPorts {
    /// RTSP (TCP).
    #[schemars(schema_with = "port_schema")]
    pub rtsp: NonZeroU16,
    /// Control / ENet (UDP).
    #[schemars(schema_with = "port_schema")]
    pub control: NonZeroU16,
    /// Video RTP (UDP).
    #[serde(rename = "videoRTP")]
    #[schemars(schema_with = "port_schema")]
    pub video_rtp: NonZeroU16,
    /// Audio RTP (UDP).
    #[serde(rename = "audioRTP")]
    #[schemars(schema_with = "port_schema")]
    pub audio_rtp: NonZeroU16,
}

/// A port: an integer of `format: int32` in 1..=65535. The `format: uint16` schemars gives a
/// `u16` is not one the API server knows, and it warned on every apply of the CRD (found on
/// the real control plane, issue 11).
fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 65535 })
}
