//! The fake's in-memory Wolf state and its endpoint handlers (spec §4), answering with Wolf's
//! bodies, status codes, field order and quirks.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::http::HttpRequest;
use crate::events::names;
use crate::ids::{AppId, CLIENTLESS_SESSION_ID, ClientId, SessionId, client_id_for_cert, parse_wolf_u64};
use crate::secret::Secret;
use crate::types::*;
use crate::version::{ENDPOINTS, Method, WolfVersion, paths};

mod lobbies;

/// What the connection handler does with a request.
pub(crate) enum Reply {
    /// `HTTP/1.0 <status> OK` with `Content-Length` and a JSON body.
    Json(u16, String),
    /// A non-JSON answer with extra headers.
    Bytes {
        status: u16,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    },
    /// Close the connection without writing anything (e.g. `runners/start` success).
    Close,
    /// Wolf would have crashed: close without answering and record why.
    Crash(String),
    /// Serve the SSE stream.
    Events,
    /// Stream a Docker pull.
    Pull(PullPlan, String),
}

/// How a fake `docker/images/pull` of one image goes.
#[derive(Debug, Clone, Default)]
pub struct PullPlan {
    /// Progress lines to send.
    pub layers: Vec<PullProgress>,
    /// Fail (with Wolf's mid-stream `HTTP/1.0 500 OK`) after this many lines.
    pub fail_after: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeClient {
    pub(crate) id: ClientId,
    pub(crate) app_state_folder: String,
    pub(crate) settings: ClientSettings,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeLobby {
    pub(crate) lobby: Lobby,
    pub(crate) pin: Option<Vec<u8>>,
}

/// Everything the fake Wolf keeps.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) pending: Vec<PairRequest>,
    pub(crate) clients: Vec<FakeClient>,
    pub(crate) apps: Vec<App>,
    pub(crate) profiles: Vec<Profile>,
    pub(crate) sessions: Vec<StreamSession>,
    pub(crate) lobbies: Vec<FakeLobby>,
    pub(crate) images: HashMap<String, Value>,
    pub(crate) icons: HashMap<String, Vec<u8>>,
    pub(crate) pulls: HashMap<String, PullPlan>,
    pub(crate) counter: u64,
}

impl State {
    pub(crate) fn new(version: WolfVersion) -> Self {
        let mut s = State::default();
        if version >= WolfVersion::V5 {
            s.profiles.push(Profile {
                name: "User".into(),
                id: "user".into(),
                icon_png_path: String::new(),
                pin: None,
                apps: Vec::new(),
            });
        }
        s
    }

    pub(crate) fn add_client(&mut self, cert: &str) -> ClientId {
        let id = ClientId::new(client_id_for_cert(cert));
        if !self.clients.iter().any(|c| c.id == id) {
            self.counter += 1;
            self.clients.push(FakeClient {
                id,
                app_state_folder: format!("state/{}", self.counter),
                settings: ClientSettings::default(),
            });
        }
        id
    }

    fn uuid(&mut self) -> String {
        self.counter += 1;
        let n = self.counter;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t >> 32) as u32,
            (t >> 16) as u16,
            (n >> 12) & 0xfff,
            n & 0xfff,
            t & 0xffff_ffff_ffff
        )
    }

    fn matching(&self, id: SessionId) -> usize {
        self.sessions.iter().filter(|s| s.client_id == id).count()
    }
}

/// An event to broadcast: `event:` name and compact JSON `data:`.
pub(crate) type Emitted = (&'static str, String);

/// Handles one request. `emit` collects events to broadcast.
pub(crate) fn handle(
    version: WolfVersion,
    st: &mut State,
    req: &HttpRequest,
    emit: &mut Vec<Emitted>,
) -> Reply {
    let known = ENDPOINTS.iter().find(|(p, m, since)| {
        *p == req.path
            && *since <= version
            && match m {
                Method::Get => req.method == "GET",
                Method::Post => req.method == "POST",
            }
    });
    if known.is_none() {
        return Reply::Bytes {
            status: 404,
            content_type: None,
            body: Vec::new(),
        };
    }
    let body = req.body.as_slice();
    match req.path.as_str() {
        paths::EVENTS => Reply::Events,
        paths::OPENAPI_SCHEMA => ok_json(&super::schema::openapi(version)),
        paths::PAIR_PENDING => success_with("requests", &st.pending),
        paths::PAIR_CLIENT => pair_client(version, st, body),
        paths::UNPAIR_CLIENT => unpair_client(st, body),
        paths::CLIENTS => {
            let clients: Vec<PairedClient> = st
                .clients
                .iter()
                .map(|c| PairedClient {
                    client_id: c.id,
                    app_state_folder: c.app_state_folder.clone(),
                    settings: Some(settings_for(version, &c.settings)),
                })
                .collect();
            success_with("clients", &clients)
        }
        paths::CLIENTS_SETTINGS => client_settings(st, body),
        paths::APPS => success_with("apps", &st.apps),
        paths::APPS_ADD => match parse::<App>(body, APP_FIELDS) {
            Ok(mut app) => {
                // Wolf does not copy `start_audio_server` from the request (spec §3.4).
                app.start_audio_server = false;
                st.apps.push(app);
                success()
            }
            Err(r) => r,
        },
        paths::APPS_DELETE => match parse::<IdBody>(body, &["id"]) {
            Ok(b) => {
                st.apps.retain(|a| a.id.as_str() != b.id);
                success()
            }
            Err(r) => r,
        },
        paths::PROFILES => success_with("profiles", &st.profiles),
        paths::PROFILES_ADD => match parse::<Profile>(body, &["name", "id", "icon_png_path", "apps"]) {
            Ok(p) => {
                st.profiles.push(p);
                success()
            }
            Err(r) => r,
        },
        paths::PROFILES_REMOVE => match parse::<IdBody>(body, &["id"]) {
            Ok(b) => {
                st.profiles.retain(|p| p.id != b.id);
                success()
            }
            Err(r) => r,
        },
        paths::SESSIONS => sessions_list(version, st),
        paths::SESSIONS_ADD => add_session(version, st, body, emit),
        paths::SESSIONS_START => start_session(version, st, body, emit),
        paths::SESSIONS_PAUSE | paths::SESSIONS_STOP | paths::SESSIONS_INPUT => {
            session_action(version, st, &req.path, body, emit)
        }
        paths::RUNNERS_START => start_runner(st, body, emit),
        paths::LOBBIES => {
            let lobbies: Vec<&Lobby> = st.lobbies.iter().map(|l| &l.lobby).collect();
            success_with("lobbies", &lobbies)
        }
        paths::LOBBIES_CREATE => lobbies::create_lobby(version, st, body, emit),
        paths::LOBBIES_JOIN => lobbies::join_lobby(st, body, emit),
        paths::LOBBIES_LEAVE => lobbies::leave_lobby(st, body, emit),
        paths::LOBBIES_STOP => lobbies::stop_lobby(st, body, emit),
        paths::UTILS_GET_ICON => match query_value(req, "icon_path") {
            Some(p) => match st.icons.get(&p) {
                Some(png) => Reply::Bytes {
                    status: 200,
                    content_type: Some("image/png"),
                    body: png.clone(),
                },
                None => error(404, "Icon not found"),
            },
            None => error(
                400,
                "Invalid request format, expects 'icon_path' as a query parameter",
            ),
        },
        paths::DOCKER_INSPECT => match query_value(req, "image_name") {
            Some(name) => match st.images.get(&name) {
                Some(v) => ok_json(v),
                None => error(404, "Image not found"),
            },
            None => error(
                400,
                "Invalid request format, expects 'image_name' as a query parameter",
            ),
        },
        paths::DOCKER_PULL => match parse::<ImageBody>(body, &["image_name"]) {
            // An unparsable pull request gets no answer at all (spec endpoint 27); not a crash.
            Err(_) => Reply::Close,
            Ok(b) => {
                emit.push((
                    names::DOCKER_PULL_START,
                    to_json(&PullStartOut {
                        image_name: &b.image_name,
                    }),
                ));
                match st.pulls.get(&b.image_name) {
                    Some(plan) => Reply::Pull(plan.clone(), b.image_name),
                    None => {
                        emit.push((
                            names::DOCKER_PULL_END,
                            to_json(&PullEndOut {
                                image_name: &b.image_name,
                                success: false,
                            }),
                        ));
                        error(500, "Failed to pull image")
                    }
                }
            }
        },
        _ => Reply::Bytes {
            status: 404,
            content_type: None,
            body: Vec::new(),
        },
    }
}

const APP_FIELDS: &[&str] = &[
    "title",
    "id",
    "support_hdr",
    "h264_gst_pipeline",
    "hevc_gst_pipeline",
    "av1_gst_pipeline",
    "render_node",
    "opus_gst_pipeline",
    "start_virtual_compositor",
    "start_audio_server",
    "runner",
];

const SETTINGS_FIELDS: &[&str] = &[
    "run_uid",
    "run_gid",
    "controllers_override",
    "mouse_acceleration",
    "v_scroll_acceleration",
    "h_scroll_acceleration",
];

const VIDEO_FIELDS: &[&str] = &[
    "display_mode",
    "gst_pipeline",
    "session_id",
    "port",
    "timeout_ms",
    "wait_for_ping",
    "packet_size",
    "frames_with_invalid_ref_threshold",
    "fec_percentage",
    "min_required_fec_packets",
    "bitrate_kbps",
    "slices_per_frame",
    "color_range",
    "color_space",
    "client_ip",
];

const AUDIO_FIELDS: &[&str] = &[
    "gst_pipeline",
    "session_id",
    "encrypt_audio",
    "aes_key",
    "aes_iv",
    "port",
    "wait_for_ping",
    "client_ip",
    "packet_duration",
    "audio_mode",
];

#[derive(serde::Deserialize)]
struct IdBody {
    id: String,
}

#[derive(serde::Deserialize)]
struct ImageBody {
    image_name: String,
}

#[derive(Serialize)]
struct PullStartOut<'a> {
    image_name: &'a str,
}

#[derive(Serialize)]
pub(crate) struct PullEndOut<'a> {
    pub(crate) image_name: &'a str,
    pub(crate) success: bool,
}

#[derive(Serialize)]
struct SessionIdOut {
    session_id: SessionId,
}

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"serialisation_error\":\"{e}\"}}"))
}

fn ok_json<T: Serialize + ?Sized>(v: &T) -> Reply {
    Reply::Json(200, to_json(v))
}

fn success() -> Reply {
    Reply::Json(200, r#"{"success":true}"#.to_owned())
}

fn success_with<T: Serialize + ?Sized>(key: &str, v: &T) -> Reply {
    Reply::Json(200, format!(r#"{{"success":true,"{key}":{}}}"#, to_json(v)))
}

pub(crate) fn error(status: u16, message: &str) -> Reply {
    #[derive(Serialize)]
    struct E<'a> {
        success: bool,
        error: &'a str,
    }
    Reply::Json(
        status,
        to_json(&E {
            success: false,
            error: message,
        }),
    )
}

/// reflect-cpp's message for a missing required field (wording version-dependent, spec §1.4).
fn missing(field: &str) -> String {
    format!("Field named '{field}' not found.")
}

/// Checks required keys (at the top level of `obj`).
fn require(obj: &Map<String, Value>, fields: &[&str]) -> Result<(), String> {
    match fields.iter().find(|f| !obj.contains_key(**f)) {
        Some(f) => Err(missing(f)),
        None => Ok(()),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("Expected an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// reflect-cpp-like parsing: every field in `required` must be present, then the typed parse.
/// Failure → 500 with the error text.
fn parse<T: DeserializeOwned>(body: &[u8], required: &[&str]) -> Result<T, Reply> {
    let obj = object(body).map_err(|e| error(500, &e))?;
    require(&obj, required).map_err(|e| error(500, &e))?;
    serde_json::from_value(Value::Object(obj)).map_err(|e| error(500, &e.to_string()))
}

/// The id string of field `key`, which handlers pass to `std::stoull`.
fn id_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn settings_for(version: WolfVersion, s: &ClientSettings) -> ClientSettings {
    let mut s = s.clone();
    if version < WolfVersion::V6 {
        s.motion_controller_override = None;
    } else if s.motion_controller_override.is_none() {
        s.motion_controller_override = Some(ControllerType::Auto);
    }
    s
}

fn check_settings(version: WolfVersion, v: &Value) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err("Expected an object".into());
    };
    require(obj, SETTINGS_FIELDS)?;
    if version >= WolfVersion::V6 {
        require(obj, &["motion_controller_override"])?;
    }
    Ok(())
}

fn query_value(req: &HttpRequest, key: &str) -> Option<String> {
    // Wolf: exactly one `key=value` pair, split on `=`, no percent-decoding.
    let q = req.query.as_deref()?;
    let parts: Vec<&str> = q.split('=').collect();
    match parts.as_slice() {
        [k, v] if *k == key && !v.is_empty() => Some((*v).to_owned()),
        _ => None,
    }
}

fn pair_client(version: WolfVersion, st: &mut State, body: &[u8]) -> Reply {
    let req = match parse::<PairClientRequest>(body, &["pair_secret", "pin"]) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match st
        .pending
        .iter()
        .position(|p| p.pair_secret.expose() == req.pair_secret.expose())
    {
        Some(i) => {
            // Since 2025-11-18 the pending entry is removed on success.
            if version >= WolfVersion::V5b {
                st.pending.remove(i);
            }
            success()
        }
        None => error(500, "Invalid pair secret"),
    }
}

fn unpair_client(st: &mut State, body: &[u8]) -> Reply {
    let Some(id) = object(body).ok().and_then(|o| id_field(&o, "client_id")) else {
        return error(400, "Invalid request format");
    };
    // This handler catches stoull's exception and reports it (spec §4.1, endpoint 4).
    let Some(id) = parse_wolf_u64(&id) else {
        return error(500, "stoull");
    };
    match st.clients.iter().position(|c| c.id.get() == id) {
        Some(i) => {
            st.clients.remove(i);
            success()
        }
        None => error(404, "Client not found"),
    }
}

fn client_settings(st: &mut State, body: &[u8]) -> Reply {
    let Ok(obj) = object(body) else {
        return error(400, "Invalid request format");
    };
    let Some(id) = id_field(&obj, "client_id") else {
        return error(400, "Invalid request format");
    };
    let settings = match obj.get("settings") {
        None | Some(Value::Null) => None,
        Some(v) => match serde_json::from_value::<PartialClientSettings>(v.clone()) {
            Ok(s) => Some(s),
            Err(_) => return error(400, "Invalid request format"),
        },
    };
    let folder = match obj.get("app_state_folder") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return error(400, "Invalid request format"),
    };
    let Some(id) = parse_wolf_u64(&id) else {
        return Reply::Crash(format!(
            "clients/settings: stoull({id:?}) throws outside any try block"
        ));
    };
    let Some(client) = st.clients.iter_mut().find(|c| c.id.get() == id) else {
        return error(404, "Client not found");
    };
    if let Some(f) = folder {
        client.app_state_folder = f;
    }
    if let Some(s) = settings {
        s.apply_to(&mut client.settings);
    }
    success()
}

/// Session list item in V3/V4/V5 field order (`app_id, client_id, client_ip, aes_*, ...`).
#[derive(Serialize)]
struct SessionOutV4<'a> {
    app_id: &'a AppId,
    client_id: SessionId,
    client_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aes_key: Option<&'a Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aes_iv: Option<&'a Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtsp_fake_ip: Option<&'a str>,
    video_width: u32,
    video_height: u32,
    video_refresh_rate: u32,
    audio_channel_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_settings: Option<&'a ClientSettings>,
}

pub(crate) fn session_json(version: WolfVersion, s: &StreamSession) -> String {
    if version >= WolfVersion::V5b {
        return to_json(s);
    }
    to_json(&SessionOutV4 {
        app_id: &s.app_id,
        client_id: s.client_id,
        client_ip: &s.client_ip,
        aes_key: s.aes_key.as_ref(),
        aes_iv: s.aes_iv.as_ref(),
        rtsp_fake_ip: s.rtsp_fake_ip.as_deref(),
        video_width: s.video_width,
        video_height: s.video_height,
        video_refresh_rate: s.video_refresh_rate,
        audio_channel_count: s.audio_channel_count,
        client_settings: s.client_settings.as_ref(),
    })
}

fn sessions_list(version: WolfVersion, st: &State) -> Reply {
    let items: Vec<String> = st.sessions.iter().map(|s| session_json(version, s)).collect();
    Reply::Json(
        200,
        format!(r#"{{"success":true,"sessions":[{}]}}"#, items.join(",")),
    )
}

fn add_session(version: WolfVersion, st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let obj = match object(body) {
        Ok(o) => o,
        Err(e) => return error(500, &e),
    };
    let mut required = vec![
        "client_ip",
        "video_width",
        "video_height",
        "video_refresh_rate",
        "audio_channel_count",
    ];
    if version >= WolfVersion::V4 {
        required.extend(["aes_key", "aes_iv", "rtsp_fake_ip"]);
    }
    if version.add_session_requires_client() {
        required.extend(["app_id", "client_id", "client_settings"]);
    }
    if let Err(e) = require(&obj, &required) {
        return error(500, &e);
    }
    if let Some(v) = obj.get("client_settings").filter(|v| !v.is_null())
        && let Err(e) = check_settings(version, v)
    {
        return error(500, &e);
    }
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let num = |k: &str| {
        obj.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let (Some(client_ip), Some(w), Some(h), Some(r), Some(ch)) = (
        text("client_ip"),
        num("video_width"),
        num("video_height"),
        num("video_refresh_rate"),
        num("audio_channel_count"),
    ) else {
        return error(500, "Failed to parse StreamSession: wrong field type");
    };
    let client_settings = match obj.get("client_settings").filter(|v| !v.is_null()) {
        Some(v) => match serde_json::from_value::<ClientSettings>(v.clone()) {
            Ok(s) => Some(s),
            Err(e) => return error(500, &e.to_string()),
        },
        None => None,
    };
    let client_id = match obj.get("client_id").filter(|v| !v.is_null()) {
        Some(v) => {
            let raw = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            match parse_wolf_u64(&raw) {
                Some(id) => Some(id),
                None => return Reply::Crash(format!("sessions/add: stoull({raw:?}) on client_id")),
            }
        }
        None => None,
    };
    let app_id = match obj.get("app_id").and_then(Value::as_str) {
        Some(id) => {
            if !st.apps.iter().any(|a| a.id.as_str() == id) {
                return error(500, "Invalid app_id");
            }
            AppId::new(id)
        }
        None => {
            if st.apps.is_empty() {
                return Reply::Crash(
                    "sessions/add without app_id and no Moonlight apps: front() of an empty vector".into(),
                );
            }
            AppId::new(st.uuid())
        }
    };
    let session_id = match client_id {
        Some(id) => {
            if !st.clients.iter().any(|c| c.id.get() == id) {
                return error(500, "Invalid client_id");
            }
            SessionId::new(id)
        }
        None => SessionId::new(CLIENTLESS_SESSION_ID),
    };
    let settings = client_settings.unwrap_or_default();
    let v4 = version >= WolfVersion::V4;
    let session = StreamSession {
        client_ip,
        aes_key: text("aes_key").filter(|_| v4).map(Secret::new),
        aes_iv: text("aes_iv").filter(|_| v4).map(Secret::new),
        rtsp_fake_ip: text("rtsp_fake_ip").filter(|_| v4),
        video_width: w,
        video_height: h,
        video_refresh_rate: r,
        audio_channel_count: ch,
        app_id,
        client_id: session_id,
        client_settings: Some(settings_for(version, &settings)),
    };
    emit.push((names::STREAM_SESSION, session_json(version, &session)));
    st.sessions.push(session);
    Reply::Json(200, format!(r#"{{"success":true,"session_id":"{session_id}"}}"#))
}

fn start_session(version: WolfVersion, st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let obj = match object(body) {
        Ok(o) => o,
        Err(e) => return error(500, &e),
    };
    if let Err(e) = require(&obj, &["session_id", "video_session", "audio_session"]) {
        return error(500, &e);
    }
    let mut video_fields = VIDEO_FIELDS.to_vec();
    let mut audio_fields = AUDIO_FIELDS.to_vec();
    if version >= WolfVersion::V4 {
        video_fields.push("rtp_secret_payload");
        audio_fields.push("rtp_secret_payload");
    }
    if version >= WolfVersion::V5 {
        video_fields.push("render_node");
    }
    for (part, fields) in [("video_session", &video_fields), ("audio_session", &audio_fields)] {
        match obj.get(part).and_then(Value::as_object) {
            Some(o) => {
                if let Err(e) = require(o, fields) {
                    return error(500, &e);
                }
            }
            None => return error(500, "Expected an object"),
        }
    }
    let video: Result<VideoSession, _> = serde_json::from_value(obj["video_session"].clone());
    let audio: Result<AudioSession, _> = serde_json::from_value(obj["audio_session"].clone());
    let (mut video, mut audio) = match (video, audio) {
        (Ok(v), Ok(a)) => (v, a),
        (Err(e), _) | (_, Err(e)) => return error(500, &e.to_string()),
    };
    let raw = id_field(&obj, "session_id").unwrap_or_default();
    let Some(id) = parse_wolf_u64(&raw) else {
        return Reply::Crash(format!("sessions/start: stoull({raw:?}) on session_id"));
    };
    let id = SessionId::new(id);
    if st.matching(id) != 1 {
        return Reply::Crash(format!(
            "sessions/start: session {id} not found, empty optional dereferenced"
        ));
    }
    video.session_id = id;
    audio.session_id = id;
    emit.push((names::VIDEO_SESSION, to_json(&video)));
    emit.push((names::AUDIO_SESSION, to_json(&audio)));
    success()
}

fn session_action(
    version: WolfVersion,
    st: &mut State,
    path: &str,
    body: &[u8],
    emit: &mut Vec<Emitted>,
) -> Reply {
    let _ = version;
    let obj = match object(body) {
        Ok(o) => o,
        Err(e) => return error(500, &e),
    };
    let mut required = vec!["session_id"];
    if path == paths::SESSIONS_INPUT {
        required.push("input_packet_hex");
    }
    if let Err(e) = require(&obj, &required) {
        return error(500, &e);
    }
    let Some(raw) = id_field(&obj, "session_id") else {
        return error(500, "Field 'session_id' must be a string");
    };
    let Some(id) = parse_wolf_u64(&raw) else {
        return Reply::Crash(format!("{path}: stoull({raw:?}) on session_id"));
    };
    let id = SessionId::new(id);
    if st.matching(id) != 1 {
        return error(500, "Invalid session_id");
    }
    let ev = to_json(&SessionIdOut { session_id: id });
    match path {
        paths::SESSIONS_PAUSE => emit.push((names::PAUSE_STREAM, ev)),
        paths::SESSIONS_STOP => {
            emit.push((names::STOP_STREAM, ev));
            st.sessions.retain(|s| s.client_id != id);
            for l in &mut st.lobbies {
                l.lobby.connected_sessions.retain(|s| *s != id);
            }
        }
        _ => {}
    }
    success()
}

fn start_runner(st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let obj = match object(body) {
        Ok(o) => o,
        Err(e) => return error(500, &e),
    };
    if let Err(e) = require(&obj, &["stop_stream_when_over", "runner", "session_id"]) {
        return error(500, &e);
    }
    let raw = id_field(&obj, "session_id").unwrap_or_default();
    let Some(id) = parse_wolf_u64(&raw) else {
        return Reply::Crash(format!("runners/start: stoull({raw:?}) on session_id"));
    };
    let req: StartRunnerRequest = match serde_json::from_value(Value::Object(obj)) {
        Ok(r) => r,
        Err(e) => return error(500, &e.to_string()),
    };
    if st.matching(SessionId::new(id)) != 1 {
        return error(500, "Invalid session_id");
    }
    emit.push((names::START_RUNNER, to_json(&req_to_event(&req))));
    Reply::Close
}

#[derive(Serialize)]
struct StartRunnerOut<'a> {
    stop_stream_when_over: bool,
    runner: &'a Runner,
    session_id: SessionId,
}

fn req_to_event(r: &StartRunnerRequest) -> StartRunnerOut<'_> {
    StartRunnerOut {
        stop_stream_when_over: r.stop_stream_when_over,
        runner: &r.runner,
        session_id: r.session_id,
    }
}

/// Before V5, `size_t` ids in event payloads are JSON numbers: rewrites `"session_id":"<digits>"`
/// to `"session_id":<digits>` in compact JSON (a string value can never contain the unescaped
/// pattern, so only keys are touched).
pub(crate) fn numeric_session_ids(json: &str) -> String {
    const KEY: &str = "\"session_id\":\"";
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(pos) = rest.find(KEY) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + KEY.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b'"') {
            out.push_str("\"session_id\":");
            out.push_str(&after[..digits]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(KEY);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_rewrite_only_session_id_keys() {
        assert_eq!(
            numeric_session_ids(r#"{"session_id":"42"}"#),
            r#"{"session_id":42}"#
        );
        assert_eq!(
            numeric_session_ids(r#"{"a":"\"session_id\":\"1\"","session_id":"18446744073709551615","x":1}"#),
            r#"{"a":"\"session_id\":\"1\"","session_id":18446744073709551615,"x":1}"#
        );
        assert_eq!(
            numeric_session_ids(r#"{"session_id":"ab"}"#),
            r#"{"session_id":"ab"}"#
        );
    }
}
