//! Wolf API versions and detection from `GET /api/v1/openapi-schema` (`docs/protocol/wolf-api.md`
//! § Versions).

use std::fmt;

use serde_json::Value;

/// A Wolf API generation (§ Versions). Ordered oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WolfVersion {
    /// 2024-10: first API.
    V1,
    /// 2025-01: `sessions/start`, `sessions/input`, `session_id` returned by `sessions/add`.
    V2,
    /// 2025-02: `unpair/client`, `clients/settings`.
    V3,
    /// 2025-04: `aes_key`/`aes_iv`/`rtsp_fake_ip` on sessions.
    V4,
    /// 2025-11: profiles, lobbies, utils, Docker endpoints, 64-bit ids as strings everywhere.
    V5,
    /// 2025-12: `app_id`, `client_id`, `client_settings` optional in `sessions/add`.
    V5b,
    /// 2026-06: `motion_controller_override` in client settings.
    V6,
}

impl WolfVersion {
    /// Every version, oldest first.
    pub const ALL: [WolfVersion; 7] = [
        WolfVersion::V1,
        WolfVersion::V2,
        WolfVersion::V3,
        WolfVersion::V4,
        WolfVersion::V5,
        WolfVersion::V5b,
        WolfVersion::V6,
    ];

    /// Whether event payloads carry 64-bit ids as JSON strings (V5+) rather than numbers.
    pub fn ids_as_strings_in_events(self) -> bool {
        self >= WolfVersion::V5
    }

    /// Whether `sessions/add` requires `app_id`, `client_id` and `client_settings`.
    pub fn add_session_requires_client(self) -> bool {
        self < WolfVersion::V5b
    }

    /// The first version that serves `endpoint` (a path of `docs/protocol/wolf-api.md`
    /// § Endpoints), or `None` for an unknown path.
    pub fn first_with(endpoint: &str) -> Option<WolfVersion> {
        ENDPOINTS
            .iter()
            .find(|(p, _, _)| *p == endpoint)
            .map(|(_, _, v)| *v)
    }

    /// Whether this version serves `endpoint`.
    pub fn supports(self, endpoint: &str) -> bool {
        WolfVersion::first_with(endpoint).is_some_and(|v| v <= self)
    }
}

impl fmt::Display for WolfVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WolfVersion::V1 => "V1",
            WolfVersion::V2 => "V2",
            WolfVersion::V3 => "V3",
            WolfVersion::V4 => "V4",
            WolfVersion::V5 => "V5",
            WolfVersion::V5b => "V5b",
            WolfVersion::V6 => "V6",
        };
        f.write_str(s)
    }
}

/// HTTP method of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

/// The 28 endpoints of `docs/protocol/wolf-api.md` § Endpoints: path, method, first version.
pub const ENDPOINTS: [(&str, Method, WolfVersion); 28] = [
    (paths::EVENTS, Method::Get, WolfVersion::V1),
    (paths::PAIR_PENDING, Method::Get, WolfVersion::V1),
    (paths::PAIR_CLIENT, Method::Post, WolfVersion::V1),
    (paths::UNPAIR_CLIENT, Method::Post, WolfVersion::V3),
    (paths::CLIENTS, Method::Get, WolfVersion::V1),
    (paths::CLIENTS_SETTINGS, Method::Post, WolfVersion::V3),
    (paths::APPS, Method::Get, WolfVersion::V1),
    (paths::APPS_ADD, Method::Post, WolfVersion::V1),
    (paths::APPS_DELETE, Method::Post, WolfVersion::V1),
    (paths::PROFILES, Method::Get, WolfVersion::V5),
    (paths::PROFILES_ADD, Method::Post, WolfVersion::V5),
    (paths::PROFILES_REMOVE, Method::Post, WolfVersion::V5),
    (paths::SESSIONS, Method::Get, WolfVersion::V1),
    (paths::SESSIONS_ADD, Method::Post, WolfVersion::V1),
    (paths::SESSIONS_START, Method::Post, WolfVersion::V2),
    (paths::SESSIONS_PAUSE, Method::Post, WolfVersion::V1),
    (paths::SESSIONS_STOP, Method::Post, WolfVersion::V1),
    (paths::SESSIONS_INPUT, Method::Post, WolfVersion::V2),
    (paths::RUNNERS_START, Method::Post, WolfVersion::V1),
    (paths::LOBBIES, Method::Get, WolfVersion::V5),
    (paths::LOBBIES_CREATE, Method::Post, WolfVersion::V5),
    (paths::LOBBIES_JOIN, Method::Post, WolfVersion::V5),
    (paths::LOBBIES_LEAVE, Method::Post, WolfVersion::V5),
    (paths::LOBBIES_STOP, Method::Post, WolfVersion::V5),
    (paths::UTILS_GET_ICON, Method::Get, WolfVersion::V5),
    (paths::DOCKER_INSPECT, Method::Get, WolfVersion::V5),
    (paths::DOCKER_PULL, Method::Post, WolfVersion::V5),
    (paths::OPENAPI_SCHEMA, Method::Get, WolfVersion::V1),
];

/// Paths of Wolf's API.
pub mod paths {
    /// SSE stream of events.
    pub const EVENTS: &str = "/api/v1/events";
    /// Pending pair requests.
    pub const PAIR_PENDING: &str = "/api/v1/pair/pending";
    /// Give the PIN for a pending pair request.
    pub const PAIR_CLIENT: &str = "/api/v1/pair/client";
    /// Remove a paired client.
    pub const UNPAIR_CLIENT: &str = "/api/v1/unpair/client";
    /// Paired clients.
    pub const CLIENTS: &str = "/api/v1/clients";
    /// Update a paired client's settings.
    pub const CLIENTS_SETTINGS: &str = "/api/v1/clients/settings";
    /// Apps shown to Moonlight.
    pub const APPS: &str = "/api/v1/apps";
    /// Add an app.
    pub const APPS_ADD: &str = "/api/v1/apps/add";
    /// Delete an app.
    pub const APPS_DELETE: &str = "/api/v1/apps/delete";
    /// Profiles.
    pub const PROFILES: &str = "/api/v1/profiles";
    /// Add a profile.
    pub const PROFILES_ADD: &str = "/api/v1/profiles/add";
    /// Remove a profile.
    pub const PROFILES_REMOVE: &str = "/api/v1/profiles/remove";
    /// Stream sessions.
    pub const SESSIONS: &str = "/api/v1/sessions";
    /// Create a stream session.
    pub const SESSIONS_ADD: &str = "/api/v1/sessions/add";
    /// Start a session's streams without RTSP.
    pub const SESSIONS_START: &str = "/api/v1/sessions/start";
    /// Pause a session.
    pub const SESSIONS_PAUSE: &str = "/api/v1/sessions/pause";
    /// Stop a session.
    pub const SESSIONS_STOP: &str = "/api/v1/sessions/stop";
    /// Inject an input packet.
    pub const SESSIONS_INPUT: &str = "/api/v1/sessions/input";
    /// Start an extra runner in a session.
    pub const RUNNERS_START: &str = "/api/v1/runners/start";
    /// Lobbies.
    pub const LOBBIES: &str = "/api/v1/lobbies";
    /// Create a lobby.
    pub const LOBBIES_CREATE: &str = "/api/v1/lobbies/create";
    /// Join a lobby.
    pub const LOBBIES_JOIN: &str = "/api/v1/lobbies/join";
    /// Leave a lobby.
    pub const LOBBIES_LEAVE: &str = "/api/v1/lobbies/leave";
    /// Stop a lobby.
    pub const LOBBIES_STOP: &str = "/api/v1/lobbies/stop";
    /// Fetch an icon.
    pub const UTILS_GET_ICON: &str = "/api/v1/utils/get-icon";
    /// Inspect a Docker image.
    pub const DOCKER_INSPECT: &str = "/api/v1/docker/images/inspect";
    /// Pull a Docker image.
    pub const DOCKER_PULL: &str = "/api/v1/docker/images/pull";
    /// The OpenAPI document of the running Wolf.
    pub const OPENAPI_SCHEMA: &str = "/api/v1/openapi-schema";
}

/// Works out the version from Wolf's OpenAPI document: paths tell the generation (V1, V2, V3, V5),
/// the required list of the `StreamSession` schema tells V3/V4 and V5/V5b apart, and the presence of
/// `motion_controller_override` in the client-settings schema tells V6. When a schema is missing the
/// older candidate is chosen (it has the stricter request requirements).
pub fn detect_from_openapi(doc: &Value) -> WolfVersion {
    let paths = doc.get("paths").and_then(Value::as_object);
    let has = |p: &str| paths.is_some_and(|m| m.contains_key(p));
    let schemas = doc.pointer("/components/schemas").and_then(Value::as_object);
    let session_required: Option<Vec<&str>> = schemas.and_then(|m| {
        m.iter()
            .find(|(name, _)| name.contains("StreamSession") && !name.contains("Created"))
            .and_then(|(_, s)| s.get("required"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
    });
    let requires = |field: &str| session_required.as_ref().map(|r| r.contains(&field));
    let has_motion = schemas.is_some_and(|m| {
        m.iter().any(|(name, s)| {
            name.contains("ClientSettings") && s.pointer("/properties/motion_controller_override").is_some()
        })
    });

    if has(paths::PROFILES) || has(paths::LOBBIES) {
        match requires("app_id") {
            Some(false) if has_motion => WolfVersion::V6,
            Some(false) => WolfVersion::V5b,
            _ => WolfVersion::V5,
        }
    } else if has(paths::UNPAIR_CLIENT) {
        match requires("aes_key") {
            Some(true) => WolfVersion::V4,
            _ => WolfVersion::V3,
        }
    } else if has(paths::SESSIONS_START) {
        WolfVersion::V2
    } else {
        WolfVersion::V1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_table_is_complete_and_unique() {
        let mut paths: Vec<&str> = ENDPOINTS.iter().map(|(p, _, _)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), 28);
        assert!(WolfVersion::V4.supports(paths::SESSIONS_START));
        assert!(!WolfVersion::V4.supports(paths::LOBBIES));
        assert!(WolfVersion::V5.supports(paths::LOBBIES));
        assert!(!WolfVersion::V6.supports("/api/v1/nope"));
    }

    #[test]
    fn detection_without_schemas_is_conservative() {
        let doc = serde_json::json!({"paths": {"/api/v1/profiles": {}}});
        assert_eq!(detect_from_openapi(&doc), WolfVersion::V5);
        let doc = serde_json::json!({"paths": {"/api/v1/unpair/client": {}}});
        assert_eq!(detect_from_openapi(&doc), WolfVersion::V3);
        let doc = serde_json::json!({"paths": {"/api/v1/sessions/start": {}}});
        assert_eq!(detect_from_openapi(&doc), WolfVersion::V2);
        assert_eq!(detect_from_openapi(&serde_json::json!({})), WolfVersion::V1);
    }
}
