//! Registering the stream with the pod's Wolf (`sessions/add`, `docs/protocol/wolf-api.md` § Stream
//! sessions, § How direwolf registers a stream), once: after an agent restart the session Wolf
//! already holds for these keys is found in its list and reused, so Wolf never gets a second one.
//!
//! The request: the keys, `rtsp_fake_ip` = the fake RTSP IP, `client_ip` = the Session's
//! `clientIP` (Wolf V4 and later match relayed traffic by the fake IP, the ping payload and the
//! ENet connect data, so it is only a fallback; `0.0.0.0` when the Session has none), the video
//! mode, the audio channel count from `surroundAudioFlags` (low 16 bits; 2 when 0), no app and
//! no client (Wolf V5b and later run a placeholder app: the game is its own container), and
//! Wolf's default client settings (uid/gid 1000, accelerations 1.0, automatic controller types).

use direwolf_wolf_client::types::{AddSessionRequest, ClientSettings, StreamSession};
use direwolf_wolf_client::{SessionId, WolfClient};
use tracing::info;

use super::inputs::StreamInputs;

/// The `sessions/add` request for `inputs`.
pub fn add_request(inputs: &StreamInputs) -> AddSessionRequest {
    let config = &inputs.config;
    let channels = (config.surround_audio_flags & 0xFFFF) as u32;
    AddSessionRequest {
        client_ip: config.client_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
        aes_key: inputs.keys.aes_key.clone(),
        aes_iv: inputs.keys.aes_iv.clone(),
        rtsp_fake_ip: inputs.fake_ip.to_string(),
        video_width: config.video_width.max(1) as u32,
        video_height: config.video_height.max(1) as u32,
        video_refresh_rate: config.video_refresh_rate.max(0) as u32,
        audio_channel_count: if channels == 0 { 2 } else { channels },
        app_id: None,
        client_id: None,
        client_settings: Some(ClientSettings::default()),
    }
}

/// Whether Wolf's session `s` is the one registered for `req` (same keys and fake IP).
fn same_stream(s: &StreamSession, req: &AddSessionRequest) -> bool {
    let key = s.aes_key.as_ref().map(|k| k.expose().as_str());
    let iv = s.aes_iv.as_ref().map(|k| k.expose().as_str());
    key.is_some_and(|k| k.eq_ignore_ascii_case(req.aes_key.expose()))
        && iv == Some(req.aes_iv.expose().as_str())
        && s.rtsp_fake_ip.as_deref() == Some(req.rtsp_fake_ip.as_str())
}

/// The session Wolf holds for `req`, if any.
///
/// # Errors
/// Listing failed.
pub async fn find(
    wolf: &WolfClient,
    req: &AddSessionRequest,
) -> direwolf_wolf_client::Result<Option<SessionId>> {
    Ok(wolf
        .sessions()
        .await?
        .iter()
        .find(|s| same_stream(s, req))
        .map(StreamSession::session_id))
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Wolf's API failed.
    #[error(transparent)]
    Wolf(#[from] direwolf_wolf_client::Error),
    /// Wolf has no apps: `sessions/add` without an app copies the first app's pipelines, and
    /// Wolf crashes on an empty list (`docs/protocol/wolf-api.md` § Crash hazards).
    #[error(
        "Wolf has no apps; registering a stream without an app would crash it (give Wolf's \
         configuration at least one app)"
    )]
    NoApps,
}

impl RegisterError {
    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegisterError::Wolf(e) if e.is_transient())
    }
}

/// Finds Wolf's session for `inputs`, or adds it; its id and whether it was found.
///
/// # Errors
/// Any error of Wolf's API; [`RegisterError::NoApps`].
pub async fn register(wolf: &WolfClient, inputs: &StreamInputs) -> Result<(SessionId, bool), RegisterError> {
    let req = add_request(inputs);
    if let Some(id) = find(wolf, &req).await? {
        info!(wolf_session_id = %id, "Wolf already has this stream (agent restarted); reusing it");
        return Ok((id, true));
    }
    if wolf.apps().await?.is_empty() {
        return Err(RegisterError::NoApps);
    }
    let id = wolf.add_session(&req).await?;
    info!(wolf_session_id = %id, fake_ip = %req.rtsp_fake_ip, "registered the stream with Wolf");
    Ok((id, false))
}
