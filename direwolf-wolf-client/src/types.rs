//! Request and response types of Wolf's API (`docs/protocol/wolf-api.md` § Types, § Endpoints).
//! Field order is Wolf's declaration order (it is also the order Wolf writes). Unknown fields are
//! ignored when reading.

use serde::{Deserialize, Serialize};

use crate::ids::{AppId, ClientId, LobbyId, SessionId};
use crate::secret::Secret;

/// Wolf writes `float` fields as the `double` expansion of the float (`10.2` → `10.199999809265137`);
/// these helpers do the same so output is byte-identical.
pub(crate) mod f32_wide {
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*v))
    }

    pub(crate) mod option {
        use serde::Serializer;

        // Serde's `serialize_with` hands over `&Option<f32>`.
        #[allow(clippy::ref_option)]
        pub(crate) fn serialize<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_f64(f64::from(*v)),
                None => s.serialize_none(),
            }
        }
    }
}

/// Controller type (`controllers_override`, `motion_controller_override`, V1 `joypad_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControllerType {
    /// Xbox controller.
    #[serde(rename = "XBOX")]
    Xbox,
    /// PlayStation controller.
    #[serde(rename = "PS")]
    Ps,
    /// Nintendo controller.
    #[serde(rename = "NINTENDO")]
    Nintendo,
    /// Whatever the client reports.
    #[serde(rename = "AUTO")]
    Auto,
}

/// Per-client settings (§ Types). When sent, every field is required by Wolf — including
/// `motion_controller_override` on V6 (the client checks this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSettings {
    /// User id the app runs as.
    pub run_uid: u32,
    /// Group id the app runs as.
    pub run_gid: u32,
    /// Controller type per slot.
    pub controllers_override: Vec<ControllerType>,
    /// Mouse acceleration.
    #[serde(serialize_with = "f32_wide::serialize")]
    pub mouse_acceleration: f32,
    /// Vertical scroll acceleration.
    #[serde(serialize_with = "f32_wide::serialize")]
    pub v_scroll_acceleration: f32,
    /// Horizontal scroll acceleration.
    #[serde(serialize_with = "f32_wide::serialize")]
    pub h_scroll_acceleration: f32,
    /// Motion controller type (V6 only; omitted when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion_controller_override: Option<ControllerType>,
}

impl Default for ClientSettings {
    /// Wolf's defaults (V6): uid/gid 1000, accelerations 1.0, motion controller `AUTO`.
    fn default() -> Self {
        ClientSettings {
            run_uid: 1000,
            run_gid: 1000,
            controllers_override: Vec::new(),
            mouse_acceleration: 1.0,
            v_scroll_acceleration: 1.0,
            h_scroll_acceleration: 1.0,
            motion_controller_override: Some(ControllerType::Auto),
        }
    }
}

/// Client settings where every field is optional: `None` keeps the current value (§ Types).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialClientSettings {
    /// User id the app runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_uid: Option<u32>,
    /// Group id the app runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_gid: Option<u32>,
    /// Controller type per slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers_override: Option<Vec<ControllerType>>,
    /// Mouse acceleration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "f32_wide::option::serialize"
    )]
    pub mouse_acceleration: Option<f32>,
    /// Vertical scroll acceleration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "f32_wide::option::serialize"
    )]
    pub v_scroll_acceleration: Option<f32>,
    /// Horizontal scroll acceleration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "f32_wide::option::serialize"
    )]
    pub h_scroll_acceleration: Option<f32>,
    /// Motion controller type (V6 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion_controller_override: Option<ControllerType>,
}

impl PartialClientSettings {
    /// Applies the given fields to `settings`.
    pub fn apply_to(&self, settings: &mut ClientSettings) {
        if let Some(v) = self.run_uid {
            settings.run_uid = v;
        }
        if let Some(v) = self.run_gid {
            settings.run_gid = v;
        }
        if let Some(v) = &self.controllers_override {
            settings.controllers_override.clone_from(v);
        }
        if let Some(v) = self.mouse_acceleration {
            settings.mouse_acceleration = v;
        }
        if let Some(v) = self.v_scroll_acceleration {
            settings.v_scroll_acceleration = v;
        }
        if let Some(v) = self.h_scroll_acceleration {
            settings.h_scroll_acceleration = v;
        }
        if let Some(v) = self.motion_controller_override {
            settings.motion_controller_override = Some(v);
        }
    }
}

/// A Docker runner (§ Types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerRunner {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// `host:container[:mode]` mounts.
    pub mounts: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Devices.
    pub devices: Vec<String>,
    /// Ports.
    pub ports: Vec<String>,
    /// JSON merged into the Docker create request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_create_json: Option<String>,
}

/// What Wolf runs for an app or session (a union tagged by `type`, § Types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Runner {
    /// A shell command line run by Wolf.
    #[serde(rename = "process", alias = "Process")]
    Process {
        /// The command line.
        run_cmd: String,
    },
    /// A Docker container.
    #[serde(rename = "docker", alias = "Docker")]
    Docker(DockerRunner),
    /// Join the display of another session (V1 to V4 only).
    #[serde(rename = "child_session")]
    ChildSession {
        /// The parent session.
        parent_session_id: String,
    },
}

/// An app (§ Types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Title shown in Moonlight.
    pub title: String,
    /// Id (numeric in practice).
    pub id: AppId,
    /// Whether HDR is supported.
    pub support_hdr: bool,
    /// Icon path or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_png_path: Option<String>,
    /// H.264 encoder pipeline.
    pub h264_gst_pipeline: String,
    /// HEVC encoder pipeline.
    pub hevc_gst_pipeline: String,
    /// AV1 encoder pipeline.
    pub av1_gst_pipeline: String,
    /// Render node.
    pub render_node: String,
    /// Opus encoder pipeline.
    pub opus_gst_pipeline: String,
    /// Whether Wolf starts a virtual compositor.
    pub start_virtual_compositor: bool,
    /// Whether Wolf starts an audio server (not copied by `apps/add`, § Types).
    pub start_audio_server: bool,
    /// What to run.
    pub runner: Runner,
}

/// A profile (V5+, § Types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// Icon path or URL.
    pub icon_png_path: String,
    /// PIN digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
    /// Apps of the profile.
    pub apps: Vec<App>,
}

/// A stream session as Wolf lists it (`GET /api/v1/sessions`, `StreamSession` event; § Types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSession {
    /// Moonlight client IP as Wolf sees it.
    pub client_ip: String,
    /// AES key (32 hex chars) — secret (V4+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aes_key: Option<Secret<String>>,
    /// AES IV (decimal u32) — secret (V4+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aes_iv: Option<Secret<String>>,
    /// RTSP host the session is matched with (V4+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_fake_ip: Option<String>,
    /// Width.
    pub video_width: u32,
    /// Height.
    pub video_height: u32,
    /// Refresh rate.
    pub video_refresh_rate: u32,
    /// Audio channels.
    pub audio_channel_count: u32,
    /// App.
    pub app_id: AppId,
    /// On output this is the **session id** (equal to the owning client's id).
    pub client_id: SessionId,
    /// Settings (V2+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_settings: Option<ClientSettings>,
}

impl StreamSession {
    /// The session id (Wolf writes it into `client_id`).
    pub fn session_id(&self) -> SessionId {
        self.client_id
    }
}

/// Body of `POST /api/v1/sessions/add` (§ Types, input form, V4+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddSessionRequest {
    /// Moonlight client IP as Wolf will see it.
    pub client_ip: String,
    /// The `rikey` of the launch: 32 hex chars.
    pub aes_key: Secret<String>,
    /// The `rikeyid` of the launch: a decimal u32.
    pub aes_iv: Secret<String>,
    /// Dotted-decimal RTSP host, unique per Wolf.
    pub rtsp_fake_ip: String,
    /// Width.
    pub video_width: u32,
    /// Height.
    pub video_height: u32,
    /// Refresh rate.
    pub video_refresh_rate: u32,
    /// Audio channels (2, 6 or 8).
    pub audio_channel_count: u32,
    /// App to run (required before V5b).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    /// Owning paired client (required before V5b); absent → [`SessionId::CLIENTLESS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// Settings for this session (required before V5b; every field required by Wolf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_settings: Option<ClientSettings>,
}

/// `display_mode` of a [`VideoSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayMode {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Refresh rate (camelCase on the wire).
    #[serde(rename = "refreshRate")]
    pub refresh_rate: u32,
}

/// Colour range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColorRange {
    /// Full range.
    #[serde(rename = "JPEG")]
    Jpeg,
    /// Limited range.
    #[serde(rename = "MPEG")]
    Mpeg,
}

/// Colour space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColorSpace {
    /// BT.601.
    #[serde(rename = "BT601")]
    Bt601,
    /// BT.709.
    #[serde(rename = "BT709")]
    Bt709,
    /// BT.2020.
    #[serde(rename = "BT2020")]
    Bt2020,
}

/// Video stream parameters (request part of `sessions/start`, `VideoSession` event; § Types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoSession {
    /// Resolution and refresh rate.
    pub display_mode: DisplayMode,
    /// Encoder pipeline template.
    pub gst_pipeline: String,
    /// Render node (V5+; empty → the app's).
    #[serde(default)]
    pub render_node: String,
    /// Session id (overwritten by Wolf from the request's `session_id`).
    pub session_id: SessionId,
    /// Wolf-side UDP port.
    pub port: u16,
    /// Timeout in ms.
    pub timeout_ms: u32,
    /// Ignored since V4.
    pub wait_for_ping: bool,
    /// Packet size.
    pub packet_size: u32,
    /// Frames with invalid ref threshold.
    pub frames_with_invalid_ref_threshold: i32,
    /// FEC percentage.
    pub fec_percentage: i32,
    /// Minimum FEC packets.
    pub min_required_fec_packets: i32,
    /// Bitrate.
    pub bitrate_kbps: i64,
    /// Slices per frame.
    pub slices_per_frame: i32,
    /// Colour range.
    pub color_range: ColorRange,
    /// Colour space.
    pub color_space: ColorSpace,
    /// Client IP.
    pub client_ip: String,
    /// 16-byte ping secret (V4+, required there) — secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_secret_payload: Option<Secret<[u8; 16]>>,
}

/// Speaker position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Speaker {
    FrontLeft,
    FrontRight,
    FrontCenter,
    LowFrequency,
    BackLeft,
    BackRight,
    SideLeft,
    SideRight,
    MaxSpeakers,
}

/// Opus multistream layout of an [`AudioSession`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioMode {
    /// Channels.
    pub channels: u32,
    /// Streams.
    pub streams: u32,
    /// Coupled streams.
    pub coupled_streams: u32,
    /// Speaker mapping.
    pub speakers: Vec<Speaker>,
    /// Bitrate.
    pub bitrate: u32,
    /// Sample rate.
    pub sample_rate: u32,
}

/// Audio stream parameters (request part of `sessions/start`, `AudioSession` event; § Types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioSession {
    /// Encoder pipeline template.
    pub gst_pipeline: String,
    /// Session id (overwritten by Wolf).
    pub session_id: SessionId,
    /// Whether audio is encrypted.
    pub encrypt_audio: bool,
    /// AES key (hex) — secret.
    pub aes_key: Secret<String>,
    /// AES IV (decimal) — secret.
    pub aes_iv: Secret<String>,
    /// Wolf-side UDP port.
    pub port: u16,
    /// Ignored since V4.
    pub wait_for_ping: bool,
    /// Client IP.
    pub client_ip: String,
    /// 16-byte ping secret (V4+) — secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_secret_payload: Option<Secret<[u8; 16]>>,
    /// Packet duration in ms.
    pub packet_duration: u32,
    /// Opus layout.
    pub audio_mode: AudioMode,
}

/// Body of `POST /api/v1/sessions/start` (V2+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSessionRequest {
    /// Session to start.
    pub session_id: SessionId,
    /// Video parameters.
    pub video_session: VideoSession,
    /// Audio parameters.
    pub audio_session: AudioSession,
}

/// Body of `POST /api/v1/runners/start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRunnerRequest {
    /// Stop the stream when the runner exits.
    pub stop_stream_when_over: bool,
    /// What to run.
    pub runner: Runner,
    /// Session to run it in.
    pub session_id: SessionId,
}

/// Lobby video settings (V5+, § Types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoSettings {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Refresh rate.
    pub refresh_rate: u32,
    /// Wayland render node.
    pub wayland_render_node: String,
    /// Runner render node.
    pub runner_render_node: String,
    /// Buffer caps.
    pub video_producer_buffer_caps: String,
}

/// Lobby audio settings (V5+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioSettings {
    /// Channels.
    pub channel_count: u32,
}

/// A lobby (V5+, § Types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lobby {
    /// Id.
    pub id: LobbyId,
    /// Name.
    pub name: String,
    /// Icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_png_path: Option<String>,
    /// Several sessions may join.
    pub multi_user: bool,
    /// Profile that created it.
    pub started_by_profile_id: String,
    /// Whether joining needs a PIN.
    pub pin_required: bool,
    /// Stop when the last session leaves.
    pub stop_when_everyone_leaves: bool,
    /// What runs.
    pub runner: Runner,
    /// Sessions in the lobby.
    pub connected_sessions: Vec<SessionId>,
}

/// Body of `POST /api/v1/lobbies/create` (V5+). `pin` and `client_settings` are always sent, as
/// `null` when `None` (they are `rfl::Description<optional>` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateLobbyRequest {
    /// Profile creating it.
    pub profile_id: String,
    /// Name.
    pub name: String,
    /// Icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_png_path: Option<String>,
    /// Several sessions may join.
    pub multi_user: bool,
    /// PIN digits; `None` = open lobby.
    pub pin: Option<Secret<Vec<u8>>>,
    /// Stop when the last session leaves.
    pub stop_when_everyone_leaves: bool,
    /// Video settings.
    pub video_settings: VideoSettings,
    /// Audio settings.
    pub audio_settings: AudioSettings,
    /// Client settings overrides.
    pub client_settings: Option<PartialClientSettings>,
    /// Runner state folder.
    pub runner_state_folder: String,
    /// What runs.
    pub runner: Runner,
}

/// Body of `POST /api/v1/lobbies/join` (V5+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinLobbyRequest {
    /// Lobby.
    pub lobby_id: LobbyId,
    /// Session joining.
    pub moonlight_session_id: SessionId,
    /// PIN digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
}

/// Body of `POST /api/v1/lobbies/leave` (V5+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveLobbyRequest {
    /// Lobby.
    pub lobby_id: LobbyId,
    /// Session leaving.
    pub moonlight_session_id: SessionId,
}

/// Body of `POST /api/v1/lobbies/stop` (V5+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopLobbyRequest {
    /// Lobby.
    pub lobby_id: LobbyId,
    /// PIN digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
}

/// A Moonlight client waiting for its PIN (`GET /api/v1/pair/pending`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest {
    /// Secret to answer with (16 hex chars) — secret.
    pub pair_secret: Secret<String>,
    /// Client IP (V1/V2 wrote it under the key `pin`).
    #[serde(alias = "pin")]
    pub client_ip: String,
}

/// Body of `POST /api/v1/pair/client`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairClientRequest {
    /// From [`PairRequest::pair_secret`].
    pub pair_secret: Secret<String>,
    /// The 4-digit PIN Moonlight shows.
    pub pin: Secret<String>,
}

/// A paired client (`GET /api/v1/clients`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedClient {
    /// Id.
    pub client_id: ClientId,
    /// State folder.
    pub app_state_folder: String,
    /// Settings (absent in V1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ClientSettings>,
}

/// Body of `POST /api/v1/clients/settings` (V3+). `None` fields are sent as `null` (keep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateClientSettingsRequest {
    /// Client to update.
    pub client_id: ClientId,
    /// New state folder.
    pub app_state_folder: Option<String>,
    /// Settings to change.
    pub settings: Option<PartialClientSettings>,
}

/// One line of a `docker/images/pull` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Layer.
    pub layer_id: String,
    /// Bytes done.
    pub current_progress: i64,
    /// Bytes total.
    pub total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_like_wolf() {
        let s = ClientSettings {
            h_scroll_acceleration: 10.2,
            mouse_acceleration: 2.5,
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"run_uid":1000,"run_gid":1000,"controllers_override":[],"mouse_acceleration":2.5,"v_scroll_acceleration":1.0,"h_scroll_acceleration":10.199999809265137,"motion_controller_override":"AUTO"}"#
        );
        let back: ClientSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn runner_accepts_capitalised_tags_and_writes_lowercase() {
        let r: Runner = serde_json::from_str(r#"{"type":"Process","run_cmd":"sh"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"type":"process","run_cmd":"sh"}"#
        );
        let d: Runner = serde_json::from_str(
            r#"{"type":"Docker","name":"n","image":"i","mounts":[],"env":[],"devices":[],"ports":[],"extra":1}"#,
        )
        .unwrap();
        assert!(matches!(d, Runner::Docker(DockerRunner { ref name, .. }) if name == "n"));
        let c: Runner = serde_json::from_str(r#"{"type":"child_session","parent_session_id":"1"}"#).unwrap();
        assert!(matches!(c, Runner::ChildSession { .. }));
    }

    #[test]
    fn description_optional_fields_are_sent_as_null() {
        let r = UpdateClientSettingsRequest {
            client_id: ClientId::new(7),
            app_state_folder: None,
            settings: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"client_id":"7","app_state_folder":null,"settings":null}"#
        );
    }

    #[test]
    fn lobby_pin_and_client_settings_are_sent_as_null() {
        let r = StopLobbyRequest {
            lobby_id: "l".into(),
            pin: None,
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"lobby_id":"l"}"#);
        let v = serde_json::to_value(CreateLobbyRequest {
            profile_id: "p".into(),
            name: "n".into(),
            icon_png_path: None,
            multi_user: true,
            pin: None,
            stop_when_everyone_leaves: false,
            video_settings: VideoSettings {
                width: 1,
                height: 1,
                refresh_rate: 1,
                wayland_render_node: String::new(),
                runner_render_node: String::new(),
                video_producer_buffer_caps: String::new(),
            },
            audio_settings: AudioSettings { channel_count: 2 },
            client_settings: None,
            runner_state_folder: String::new(),
            runner: Runner::Process {
                run_cmd: String::new(),
            },
        })
        .unwrap();
        assert!(v["pin"].is_null() && v.as_object().unwrap().contains_key("pin"));
        assert!(v["client_settings"].is_null() && v.as_object().unwrap().contains_key("client_settings"));
        assert!(!v.as_object().unwrap().contains_key("icon_png_path"));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let r = PairClientRequest {
            pair_secret: "ABCDEF0123456789".into(),
            pin: "1234".into(),
        };
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("1234") && !dbg.contains("ABCDEF"), "{dbg}");
    }

    #[test]
    fn pending_pair_reads_v1_quirk() {
        let p: PairRequest = serde_json::from_str(r#"{"pair_secret":"AB","pin":"10.0.0.1"}"#).unwrap();
        assert_eq!(p.client_ip, "10.0.0.1");
    }
}
