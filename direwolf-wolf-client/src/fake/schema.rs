//! The OpenAPI document the fake serves: paths and the schemas version detection reads. Schema
//! names follow the pattern Wolf's generator uses (`docs/protocol/wolf-api.md` § Versions); the
//! exact names for these two types are UNVERIFIED.

use serde_json::{Map, Value, json};

use crate::version::{ENDPOINTS, Method, WolfVersion};

/// The `StreamSession` fields a `sessions/add` body must carry in every version
/// (`docs/protocol/wolf-api.md` § Types).
pub(in crate::fake) const SESSION_FIELDS: &[&str] = &[
    "client_ip",
    "video_width",
    "video_height",
    "video_refresh_rate",
    "audio_channel_count",
];

/// The `StreamSession` fields required since V4.
pub(in crate::fake) const SESSION_FIELDS_V4: &[&str] = &["aes_key", "aes_iv", "rtsp_fake_ip"];

/// The `StreamSession` fields required before V5b and optional since.
pub(in crate::fake) const SESSION_CLIENT_FIELDS: &[&str] = &["app_id", "client_id", "client_settings"];

/// The `ClientSettings` fields (`docs/protocol/wolf-api.md` § Types) before V6, which adds
/// `motion_controller_override`.
pub(in crate::fake) const SETTINGS_FIELDS: &[&str] = &[
    "run_uid",
    "run_gid",
    "controllers_override",
    "mouse_acceleration",
    "v_scroll_acceleration",
    "h_scroll_acceleration",
];

pub(crate) fn openapi(version: WolfVersion) -> Value {
    let mut paths = Map::new();
    for (path, method, since) in ENDPOINTS {
        if since > version {
            continue;
        }
        let m = match method {
            Method::Get => "get",
            Method::Post => "post",
        };
        paths.insert(
            path.to_owned(),
            json!({ m: { "responses": { "200": { "description": "OK" } } } }),
        );
    }
    let mut session_props = [SESSION_FIELDS, SESSION_CLIENT_FIELDS].concat();
    if version >= WolfVersion::V4 {
        session_props.extend(SESSION_FIELDS_V4);
    }
    let required: Vec<&str> = session_props
        .iter()
        .copied()
        .filter(|f| version.add_session_requires_client() || !SESSION_CLIENT_FIELDS.contains(f))
        .collect();
    let string = json!({"type": "string"});
    let session_properties: Map<String, Value> = session_props
        .iter()
        .map(|p| ((*p).to_owned(), string.clone()))
        .collect();
    let mut settings_props: Map<String, Value> = SETTINGS_FIELDS
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "number"})))
        .collect();
    if version >= WolfVersion::V6 {
        settings_props.insert("motion_controller_override".into(), string.clone());
    }
    let settings_required: Vec<&String> = settings_props.keys().collect();
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Wolf API", "version": "0.1" },
        "servers": [ { "url": "http://localhost/" } ],
        "paths": paths,
        "components": { "schemas": {
            "rfl__Reflector_wolf__core__events__StreamSession___ReflType": {
                "type": "object", "properties": session_properties, "required": required,
            },
            "wolf__config__ClientSettings": {
                "type": "object", "properties": settings_props.clone(), "required": settings_required,
            },
            "wolf__api__StreamSessionCreated": {
                "type": "object", "properties": { "success": {"type": "boolean"}, "session_id": string },
                "required": ["success", "session_id"],
            },
        } },
    })
}
