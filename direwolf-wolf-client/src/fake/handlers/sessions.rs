//! The stream-session endpoints (`docs/protocol/wolf-api.md` § Stream sessions): list, add, start,
//! pause/stop/input, and `runners/start`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Emitted, Reply, State, error, id_field, object, require, settings_for, success, to_json};
use crate::events::names;
use crate::fake::schema::{SESSION_CLIENT_FIELDS, SESSION_FIELDS, SESSION_FIELDS_V4, SETTINGS_FIELDS};
use crate::ids::{AppId, CLIENTLESS_SESSION_ID, SessionId, parse_wolf_u64};
use crate::secret::Secret;
use crate::types::*;
use crate::version::{WolfVersion, paths};

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

#[derive(Serialize)]
struct SessionIdOut {
    session_id: SessionId,
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

/// The session list (endpoint 13), in the version's field order.
pub(super) fn list(version: WolfVersion, st: &State) -> Reply {
    let items: Vec<String> = st.sessions.iter().map(|s| session_json(version, s)).collect();
    Reply::Json(
        200,
        format!(r#"{{"success":true,"sessions":[{}]}}"#, items.join(",")),
    )
}

/// `sessions/add` (endpoint 14): checks the body as Wolf does, in Wolf's order, then records the
/// session and broadcasts it.
pub(super) fn add(version: WolfVersion, st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let obj = match object(body) {
        Ok(o) => o,
        Err(e) => return error(500, &e),
    };
    if let Err(e) = check_session_fields(version, &obj) {
        return error(500, &e);
    }
    let session = match new_session(version, st, &obj) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let session_id = session.client_id;
    emit.push((names::STREAM_SESSION, session_json(version, &session)));
    st.sessions.push(session);
    Reply::Json(200, format!(r#"{{"success":true,"session_id":"{session_id}"}}"#))
}

/// The fields `sessions/add` requires in `version`, and those of its `client_settings`.
fn check_session_fields(version: WolfVersion, obj: &Map<String, Value>) -> Result<(), String> {
    let mut required = SESSION_FIELDS.to_vec();
    if version >= WolfVersion::V4 {
        required.extend(SESSION_FIELDS_V4);
    }
    if version.add_session_requires_client() {
        required.extend(SESSION_CLIENT_FIELDS);
    }
    require(obj, &required)?;
    if let Some(v) = obj.get("client_settings").filter(|v| !v.is_null()) {
        check_settings(version, v)?;
    }
    Ok(())
}

/// The fields a `client_settings` object must carry in `version`.
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

/// The session a checked `sessions/add` body describes: the typed parse, then the client id, the
/// app and the client, each failing as Wolf does.
fn new_session(
    version: WolfVersion,
    st: &mut State,
    obj: &Map<String, Value>,
) -> Result<StreamSession, Reply> {
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
        return Err(error(500, "Failed to parse StreamSession: wrong field type"));
    };
    let client_settings = match obj.get("client_settings").filter(|v| !v.is_null()) {
        Some(v) => match serde_json::from_value::<ClientSettings>(v.clone()) {
            Ok(s) => Some(s),
            Err(e) => return Err(error(500, &e.to_string())),
        },
        None => None,
    };
    let client_id = requested_client_id(obj)?;
    let app_id = session_app(st, obj)?;
    let session_id = session_owner(st, client_id)?;
    let settings = client_settings.unwrap_or_default();
    let v4 = version >= WolfVersion::V4;
    Ok(StreamSession {
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
    })
}

/// The body's `client_id`, string or number, which Wolf passes to `std::stoull` unguarded.
fn requested_client_id(obj: &Map<String, Value>) -> Result<Option<u64>, Reply> {
    let Some(v) = obj.get("client_id").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let raw = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    match parse_wolf_u64(&raw) {
        Some(id) => Ok(Some(id)),
        None => Err(Reply::Crash(format!(
            "sessions/add: stoull({raw:?}) on client_id"
        ))),
    }
}

/// The body's `app_id`, which must name a known app; without one, Wolf synthesises a `dummy` app
/// with a random UUID id from its first Moonlight app (and crashes when there is none).
fn session_app(st: &mut State, obj: &Map<String, Value>) -> Result<AppId, Reply> {
    match obj.get("app_id").and_then(Value::as_str) {
        Some(id) if st.apps.iter().any(|a| a.id.as_str() == id) => Ok(AppId::new(id)),
        Some(_) => Err(error(500, "Invalid app_id")),
        None if st.apps.is_empty() => Err(Reply::Crash(
            "sessions/add without app_id and no Moonlight apps: front() of an empty vector".into(),
        )),
        None => Ok(AppId::new(st.uuid())),
    }
}

/// The session's id: the paired client's id, or the clientless id without a client.
fn session_owner(st: &State, client_id: Option<u64>) -> Result<SessionId, Reply> {
    match client_id {
        Some(id) if st.clients.iter().any(|c| c.id.get() == id) => Ok(SessionId::new(id)),
        Some(_) => Err(error(500, "Invalid client_id")),
        None => Ok(SessionId::new(CLIENTLESS_SESSION_ID)),
    }
}

/// `sessions/start` (endpoint 15): fires `VideoSession` and `AudioSession`, as an RTSP `ANNOUNCE` does.
pub(super) fn start(version: WolfVersion, st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
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

/// `sessions/pause`, `sessions/stop` and `sessions/input` (endpoints 16–18).
pub(super) fn action(
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

/// `runners/start` (endpoint 19): success closes the connection without an answer.
pub(super) fn start_runner(st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
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
