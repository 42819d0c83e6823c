//! The document `GET /api/v1/openapi-schema` answers. Wolf generates its own from the handlers
//! it registers (`docs/protocol/wolf-api.md` § Utilities), and clients read it
//! to tell Wolf's API generations apart (§ Versions; `direwolf_wolf_client::version`).
//!
//! `paths` lists exactly the routes direwolf serves. `components.schemas` carries, under the
//! names Wolf's generator uses, the two schemas generation detection reads: `ClientSettings`
//! (which direwolf serves, in `GET /api/v1/clients`, with V6's `motion_controller_override`) and
//! `StreamSession` with V6's required fields (direwolf serves no session route; the schema is
//! there, marked so in its description, so that a reader identifies the V6 shapes).

use serde_json::{Map, Value, json};

use super::ROUTES;

/// The OpenAPI document of direwolf's Wolf API.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in ROUTES {
        let method = method.as_str().to_ascii_lowercase();
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(method, json!({ "responses": { "200": { "description": "OK" } } }));
        }
    }
    let string = json!({"type": "string"});
    let number = json!({"type": "number"});
    let integer = json!({"type": "integer"});
    let controller = json!({"type": "string", "enum": ["XBOX", "PS", "NINTENDO", "AUTO"]});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Wolf API",
            "version": "0.1",
            "description": "The subset of Wolf's API served by direwolf: apps, clients and pending pairings.",
        },
        "servers": [ { "url": "http://localhost/" } ],
        "paths": paths,
        "components": { "schemas": {
            "wolf__config__ClientSettings": {
                "type": "object",
                "properties": {
                    "run_uid": integer, "run_gid": integer,
                    "controllers_override": { "type": "array", "items": controller },
                    "mouse_acceleration": number, "v_scroll_acceleration": number,
                    "h_scroll_acceleration": number, "motion_controller_override": controller,
                },
                "required": [
                    "run_uid", "run_gid", "controllers_override", "mouse_acceleration",
                    "v_scroll_acceleration", "h_scroll_acceleration", "motion_controller_override",
                ],
            },
            "rfl__Reflector_wolf__core__events__StreamSession___ReflType": {
                "description": "Wolf V6's session shape; direwolf serves no session route.",
                "type": "object",
                "properties": {
                    "client_ip": string, "aes_key": string, "aes_iv": string, "rtsp_fake_ip": string,
                    "video_width": integer, "video_height": integer, "video_refresh_rate": integer,
                    "audio_channel_count": integer, "app_id": string, "client_id": string,
                    "client_settings": { "$ref": "#/components/schemas/wolf__config__ClientSettings" },
                },
                "required": [
                    "client_ip", "aes_key", "aes_iv", "rtsp_fake_ip", "video_width", "video_height",
                    "video_refresh_rate", "audio_channel_count",
                ],
            },
        } },
    })
}

#[cfg(test)]
mod tests {
    use direwolf_wolf_client::version::{WolfVersion, detect_from_openapi};

    use super::*;

    #[test]
    fn detected_as_v6_and_lists_only_served_routes() {
        let doc = document();
        assert_eq!(detect_from_openapi(&doc), WolfVersion::V6);
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), ROUTES.len());
        assert!(paths["/api/v1/apps/add"].get("post").is_some());
        assert!(!paths.contains_key("/api/v1/sessions/add"));
        assert!(!paths.contains_key("/api/v1/lobbies"));
    }
}
