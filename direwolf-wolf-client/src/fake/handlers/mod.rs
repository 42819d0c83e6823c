//! The fake's in-memory Wolf state and its endpoint handlers (`docs/protocol/wolf-api.md`
//! § Endpoints), answering with Wolf's bodies, status codes, field order and quirks: here the
//! dispatch, the shared body parsing and replies, pairing and clients (§ Pairing and clients), apps
//! and profiles (§ Apps and profiles); the stream sessions (§ Stream sessions), lobbies (§ Lobbies)
//! and utilities (§ Utilities) in their own modules.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::http::HttpRequest;
use crate::ids::{ClientId, SessionId, client_id_for_cert, parse_wolf_u64};
use crate::types::*;
use crate::version::{ENDPOINTS, Method, WolfVersion, paths};

mod lobbies;
mod sessions;
mod utilities;

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

/// Handles one request: a route `version` lacks gets a bare 404, the others their handler. `emit`
/// collects events to broadcast.
pub(crate) fn handle(
    version: WolfVersion,
    st: &mut State,
    req: &HttpRequest,
    emit: &mut Vec<Emitted>,
) -> Reply {
    if !served(version, req) {
        return not_found();
    }
    let body = req.body.as_slice();
    match req.path.as_str() {
        paths::EVENTS => Reply::Events,
        paths::OPENAPI_SCHEMA => ok_json(&super::schema::openapi(version)),
        paths::PAIR_PENDING => success_with("requests", &st.pending),
        paths::PAIR_CLIENT => pair_client(version, st, body),
        paths::UNPAIR_CLIENT => unpair_client(st, body),
        paths::CLIENTS => list_clients(version, st),
        paths::CLIENTS_SETTINGS => client_settings(st, body),
        paths::APPS => success_with("apps", &st.apps),
        paths::APPS_ADD => add_app(st, body),
        paths::APPS_DELETE => delete_by_id(body, |id| st.apps.retain(|a| a.id.as_str() != id)),
        paths::PROFILES => success_with("profiles", &st.profiles),
        paths::PROFILES_ADD => add_profile(st, body),
        paths::PROFILES_REMOVE => delete_by_id(body, |id| st.profiles.retain(|p| p.id != id)),
        paths::SESSIONS => sessions::list(version, st),
        paths::SESSIONS_ADD => sessions::add(version, st, body, emit),
        paths::SESSIONS_START => sessions::start(version, st, body, emit),
        paths::SESSIONS_PAUSE | paths::SESSIONS_STOP | paths::SESSIONS_INPUT => {
            sessions::action(version, st, &req.path, body, emit)
        }
        paths::RUNNERS_START => sessions::start_runner(st, body, emit),
        paths::LOBBIES => lobbies::list_lobbies(st),
        paths::LOBBIES_CREATE => lobbies::create_lobby(version, st, body, emit),
        paths::LOBBIES_JOIN => lobbies::join_lobby(st, body, emit),
        paths::LOBBIES_LEAVE => lobbies::leave_lobby(st, body, emit),
        paths::LOBBIES_STOP => lobbies::stop_lobby(st, body, emit),
        paths::UTILS_GET_ICON => utilities::get_icon(st, req),
        paths::DOCKER_INSPECT => utilities::inspect_image(st, req),
        paths::DOCKER_PULL => utilities::pull_image(st, body, emit),
        _ => not_found(),
    }
}

/// Whether Wolf `version` has a route for the request's method and path.
fn served(version: WolfVersion, req: &HttpRequest) -> bool {
    ENDPOINTS.iter().any(|(p, m, since)| {
        *p == req.path
            && *since <= version
            && match m {
                Method::Get => req.method == "GET",
                Method::Post => req.method == "POST",
            }
    })
}

/// Wolf's answer to an unknown route: 404 with an empty body, not the JSON error shape
/// (`docs/protocol/wolf-api.md` § HTTP dialect).
fn not_found() -> Reply {
    Reply::Bytes {
        status: 404,
        content_type: None,
        body: Vec::new(),
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

#[derive(serde::Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Serialize)]
pub(crate) struct PullEndOut<'a> {
    pub(crate) image_name: &'a str,
    pub(crate) success: bool,
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

/// reflect-cpp's message for a missing required field (wording version-dependent,
/// `docs/protocol/wolf-api.md` § JSON conventions).
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
    // This handler catches stoull's exception and reports it (docs/protocol/wolf-api.md
    // § Pairing and clients).
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

fn list_clients(version: WolfVersion, st: &State) -> Reply {
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

fn add_app(st: &mut State, body: &[u8]) -> Reply {
    match parse::<App>(body, APP_FIELDS) {
        Ok(mut app) => {
            // Wolf does not copy `start_audio_server` from the request (docs/protocol/wolf-api.md
            // § Types).
            app.start_audio_server = false;
            st.apps.push(app);
            success()
        }
        Err(r) => r,
    }
}

fn add_profile(st: &mut State, body: &[u8]) -> Reply {
    match parse::<Profile>(body, &["name", "id", "icon_png_path", "apps"]) {
        Ok(p) => {
            st.profiles.push(p);
            success()
        }
        Err(r) => r,
    }
}

/// `apps/delete` and `profiles/remove`: `delete` the `id` of the body; success even when nothing
/// has that id.
fn delete_by_id(body: &[u8], delete: impl FnOnce(&str)) -> Reply {
    match parse::<IdBody>(body, &["id"]) {
        Ok(b) => {
            delete(&b.id);
            success()
        }
        Err(r) => r,
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
