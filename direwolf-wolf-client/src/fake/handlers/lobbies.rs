//! The lobby endpoints (V5+, `docs/protocol/wolf-api.md` § Lobbies).

use serde::Serialize;

use super::{Emitted, FakeLobby, Reply, State, error, parse, settings_for, success, success_with, to_json};
use crate::events::names;
use crate::ids::{LobbyId, SessionId};
use crate::types::*;
use crate::version::WolfVersion;

/// The lobby list (endpoint 20).
pub(super) fn list_lobbies(st: &State) -> Reply {
    let lobbies: Vec<&Lobby> = st.lobbies.iter().map(|l| &l.lobby).collect();
    success_with("lobbies", &lobbies)
}

#[derive(Serialize)]
struct CreateLobbyOut<'a> {
    id: &'a LobbyId,
    profile_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_png_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a Vec<u8>>,
    multi_user: bool,
    stop_when_everyone_leaves: bool,
    video_settings: &'a VideoSettings,
    audio_settings: &'a AudioSettings,
    client_settings: ClientSettings,
    runner_state_folder: &'a str,
    runner: &'a Runner,
}

pub(super) fn create_lobby(
    version: WolfVersion,
    st: &mut State,
    body: &[u8],
    emit: &mut Vec<Emitted>,
) -> Reply {
    let required = [
        "profile_id",
        "name",
        "multi_user",
        "pin",
        "stop_when_everyone_leaves",
        "video_settings",
        "audio_settings",
        "client_settings",
        "runner_state_folder",
        "runner",
    ];
    let req: CreateLobbyRequest = match parse(body, &required) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let id = LobbyId::new(st.uuid());
    let mut settings = ClientSettings::default();
    if let Some(p) = &req.client_settings {
        p.apply_to(&mut settings);
    }
    let pin = req.pin.as_ref().map(|p| p.expose().clone());
    emit.push((
        names::CREATE_LOBBY,
        to_json(&CreateLobbyOut {
            id: &id,
            profile_id: &req.profile_id,
            name: &req.name,
            icon_png_path: req.icon_png_path.as_deref(),
            pin: pin.as_ref(),
            multi_user: req.multi_user,
            stop_when_everyone_leaves: req.stop_when_everyone_leaves,
            video_settings: &req.video_settings,
            audio_settings: &req.audio_settings,
            client_settings: settings_for(version, &settings),
            runner_state_folder: &req.runner_state_folder,
            runner: &req.runner,
        }),
    ));
    st.lobbies.push(FakeLobby {
        lobby: Lobby {
            id: id.clone(),
            name: req.name,
            icon_png_path: req.icon_png_path,
            multi_user: req.multi_user,
            started_by_profile_id: req.profile_id,
            pin_required: pin.is_some(),
            stop_when_everyone_leaves: req.stop_when_everyone_leaves,
            runner: req.runner,
            connected_sessions: Vec::new(),
        },
        pin,
    });
    Reply::Json(200, format!(r#"{{"success":true,"lobby_id":{}}}"#, to_json(&id)))
}

#[derive(Serialize)]
struct LobbySessionOut<'a> {
    lobby_id: &'a LobbyId,
    moonlight_session_id: SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a Vec<u8>>,
}

#[derive(Serialize)]
struct SwitchOut {
    session_id: SessionId,
    interpipe_src_id: String,
}

pub(super) fn join_lobby(st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let req: JoinLobbyRequest = match parse(body, &["lobby_id", "moonlight_session_id"]) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let session_known = st.matching(req.moonlight_session_id) > 0;
    let Some(lobby) = st.lobbies.iter_mut().find(|l| l.lobby.id == req.lobby_id) else {
        return error(500, "Invalid lobby ID");
    };
    let given = req.pin.as_ref().map(|p| p.expose().clone());
    if given != lobby.pin {
        return error(500, "Invalid PIN");
    }
    if !session_known {
        return error(500, "Lobby or session not found");
    }
    if !lobby.lobby.multi_user && !lobby.lobby.connected_sessions.is_empty() {
        return error(500, "Lobby is full");
    }
    if !lobby.lobby.connected_sessions.contains(&req.moonlight_session_id) {
        lobby.lobby.connected_sessions.push(req.moonlight_session_id);
    }
    emit.push((
        names::JOIN_LOBBY,
        to_json(&LobbySessionOut {
            lobby_id: &req.lobby_id,
            moonlight_session_id: req.moonlight_session_id,
            pin: given.as_ref(),
        }),
    ));
    emit.push((
        names::SWITCH_STREAM_PRODUCER,
        to_json(&SwitchOut {
            session_id: req.moonlight_session_id,
            interpipe_src_id: format!("{}_video", req.lobby_id),
        }),
    ));
    success()
}

pub(super) fn leave_lobby(st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let req: LeaveLobbyRequest = match parse(body, &["lobby_id", "moonlight_session_id"]) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(lobby) = st.lobbies.iter_mut().find(|l| l.lobby.id == req.lobby_id) {
        lobby
            .lobby
            .connected_sessions
            .retain(|s| *s != req.moonlight_session_id);
    }
    emit.push((
        names::LEAVE_LOBBY,
        to_json(&LobbySessionOut {
            lobby_id: &req.lobby_id,
            moonlight_session_id: req.moonlight_session_id,
            pin: None,
        }),
    ));
    success()
}

#[derive(Serialize)]
struct StopLobbyOut<'a> {
    lobby_id: &'a LobbyId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a Vec<u8>>,
}

pub(super) fn stop_lobby(st: &mut State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let req: StopLobbyRequest = match parse(body, &["lobby_id"]) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(i) = st.lobbies.iter().position(|l| l.lobby.id == req.lobby_id) else {
        return error(500, "Invalid lobby ID");
    };
    let given = req.pin.as_ref().map(|p| p.expose().clone());
    if given != st.lobbies[i].pin {
        return error(500, "Invalid PIN");
    }
    st.lobbies.remove(i);
    emit.push((
        names::STOP_LOBBY,
        to_json(&StopLobbyOut {
            lobby_id: &req.lobby_id,
            pin: given.as_ref(),
        }),
    ));
    success()
}
