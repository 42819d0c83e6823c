//! Wolf's server-sent events (`GET /api/v1/events`, `docs/protocol/wolf-api.md` § Events) as a
//! typed, reconnecting stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backoff::Backoff;
use crate::client::WolfClient;
use crate::error::{Error, Result};
use crate::ids::{LobbyId, SessionId};
use crate::lines::{LineError, LineReader};
use crate::secret::Secret;
use crate::transport::{self, ConnGuard};
use crate::types::{
    AudioSession, AudioSettings, ClientSettings, Runner, StreamSession, VideoSession, VideoSettings,
};
use crate::version::paths;

/// Event names (the `event:` line) Wolf uses.
pub mod names {
    /// Pairing phase 1 started.
    pub const PAIR_SIGNAL: &str = "wolf::core::events::PairSignal";
    /// Virtual device created.
    pub const PLUG_DEVICE: &str = "wolf::core::events::PlugDeviceEvent";
    /// Virtual device removed.
    pub const UNPLUG_DEVICE: &str = "wolf::core::events::UnplugDeviceEvent";
    /// Session created.
    pub const STREAM_SESSION: &str = "wolf::core::events::StreamSession";
    /// Video stream parameters set.
    pub const VIDEO_SESSION: &str = "wolf::core::events::VideoSession";
    /// Audio stream parameters set.
    pub const AUDIO_SESSION: &str = "wolf::core::events::AudioSession";
    /// Key frame requested.
    pub const IDR_REQUEST: &str = "wolf::core::events::IDRRequestEvent";
    /// Streams paused (Moonlight disconnected).
    pub const PAUSE_STREAM: &str = "wolf::core::events::PauseStreamEvent";
    /// ENet client connected.
    pub const RESUME_STREAM: &str = "wolf::core::events::ResumeStreamEvent";
    /// Session stopped.
    pub const STOP_STREAM: &str = "wolf::core::events::StopStreamEvent";
    /// Hot-key back to Wolf UI.
    pub const CLIENT_WOLF_UI_COMBO: &str = "wolf::core::events::ClientWolfUIComboEvent";
    /// A UDP packet on the video ping port.
    pub const RTP_VIDEO_PING: &str = "wolf::core::events::RTPVideoPingEvent";
    /// A UDP packet on the audio ping port.
    pub const RTP_AUDIO_PING: &str = "wolf::core::events::RTPAudioPingEvent";
    /// Runner started.
    pub const START_RUNNER: &str = "wolf::core::events::StartRunner";
    /// Lobby created.
    pub const CREATE_LOBBY: &str = "wolf::core::events::CreateLobbyEvent";
    /// Session joined a lobby.
    pub const JOIN_LOBBY: &str = "wolf::core::events::JoinLobbyEvent";
    /// Session left a lobby.
    pub const LEAVE_LOBBY: &str = "wolf::core::events::LeaveLobbyEvent";
    /// Lobby stopped.
    pub const STOP_LOBBY: &str = "wolf::core::events::StopLobbyEvent";
    /// Stream source switched.
    pub const SWITCH_STREAM_PRODUCER: &str = "wolf::core::events::SwitchStreamProducerEvents";
    /// Docker runner created its container.
    pub const DOCKER_CONTAINER_CREATED: &str = "wolf::core::events::DockerContainerCreated";
    /// Docker container stopped.
    pub const DOCKER_CONTAINER_STOPPED: &str = "wolf::core::events::DockerContainerStopped";
    /// Image pull started (bare name).
    pub const DOCKER_PULL_START: &str = "DockerPullImageStartEvent";
    /// Image pull finished (bare name).
    pub const DOCKER_PULL_END: &str = "DockerPullImageEndEvent";
}

/// `PairSignal` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSignal {
    /// Moonlight client IP.
    pub client_ip: String,
    /// Wolf IP the client used.
    pub host_ip: String,
}

/// Payload of the events that only carry a session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// The session (a string from V5, a number before).
    pub session_id: SessionId,
}

/// `PlugDeviceEvent` / `UnplugDeviceEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// The session.
    pub session_id: SessionId,
    /// udev events.
    #[serde(default)]
    pub udev_events: Vec<HashMap<String, String>>,
    /// hwdb entries (`[name, [lines]]`).
    #[serde(default)]
    pub udev_hw_db_entries: Vec<(String, Vec<String>)>,
}

/// `RTPVideoPingEvent` / `RTPAudioPingEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpPing {
    /// Source IP.
    pub client_ip: String,
    /// Source port.
    pub client_port: u16,
    /// 16-byte ping secret (absent for legacy 4-byte pings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Secret<[u8; 16]>>,
}

/// `StartRunner` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRunnerEvent {
    /// Stop the stream when the runner exits.
    pub stop_stream_when_over: bool,
    /// The runner.
    pub runner: Runner,
    /// The session.
    pub session_id: SessionId,
}

/// `CreateLobbyEvent` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateLobbyEvent {
    /// Lobby id.
    pub id: LobbyId,
    /// Profile.
    pub profile_id: String,
    /// Name.
    pub name: String,
    /// Icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_png_path: Option<String>,
    /// PIN — secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
    /// Several sessions may join.
    pub multi_user: bool,
    /// Stop when the last session leaves.
    pub stop_when_everyone_leaves: bool,
    /// Video settings.
    pub video_settings: VideoSettings,
    /// Audio settings.
    pub audio_settings: AudioSettings,
    /// Full client settings.
    pub client_settings: ClientSettings,
    /// Runner state folder.
    pub runner_state_folder: String,
    /// Runner.
    pub runner: Runner,
}

/// `JoinLobbyEvent` / `LeaveLobbyEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbySessionEvent {
    /// Lobby.
    pub lobby_id: LobbyId,
    /// Session.
    pub moonlight_session_id: SessionId,
    /// PIN (join only) — secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
}

/// `StopLobbyEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopLobbyEvent {
    /// Lobby.
    pub lobby_id: LobbyId,
    /// PIN — secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Secret<Vec<u8>>>,
}

/// `SwitchStreamProducerEvents` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStreamProducer {
    /// Session.
    pub session_id: SessionId,
    /// New source.
    pub interpipe_src_id: String,
}

/// `DockerContainerCreated` / `DockerContainerStopped` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerContainerEvent {
    /// Container.
    pub container_id: String,
    /// Hostname.
    pub hostname: String,
    /// Session.
    pub session_id: SessionId,
}

/// `DockerPullImageStartEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullStart {
    /// Image.
    pub image_name: String,
}

/// `DockerPullImageEndEvent` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullEnd {
    /// Image.
    pub image_name: String,
    /// Whether it worked.
    pub success: bool,
}

/// One event from Wolf. Events this crate does not know — or whose payload does not match the
/// expected shape — arrive as [`WolfEvent::Other`], never dropped.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum WolfEvent {
    PairSignal(PairSignal),
    PlugDevice(DeviceEvent),
    UnplugDevice(DeviceEvent),
    StreamSession(Box<StreamSession>),
    VideoSession(Box<VideoSession>),
    AudioSession(Box<AudioSession>),
    IdrRequest(SessionEvent),
    PauseStream(SessionEvent),
    ResumeStream(SessionEvent),
    StopStream(SessionEvent),
    ClientWolfUiCombo(SessionEvent),
    RtpVideoPing(RtpPing),
    RtpAudioPing(RtpPing),
    StartRunner(StartRunnerEvent),
    CreateLobby(Box<CreateLobbyEvent>),
    JoinLobby(LobbySessionEvent),
    LeaveLobby(LobbySessionEvent),
    StopLobby(StopLobbyEvent),
    SwitchStreamProducer(SwitchStreamProducer),
    DockerContainerCreated(DockerContainerEvent),
    DockerContainerStopped(DockerContainerEvent),
    DockerPullStart(PullStart),
    DockerPullEnd(PullEnd),
    /// An event not known to this crate, or with an unexpected payload: the `event:` name and the
    /// `data:` JSON (or a JSON string holding the raw text if it was not JSON).
    Other {
        name: String,
        data: Value,
    },
}

impl WolfEvent {
    /// Parses one SSE event.
    pub fn parse(name: &str, data: &str) -> WolfEvent {
        fn typed<'a, T: Deserialize<'a>>(data: &'a str) -> Option<T> {
            serde_json::from_str(data).ok()
        }
        use names::*;
        let parsed = match name {
            PAIR_SIGNAL => typed(data).map(WolfEvent::PairSignal),
            PLUG_DEVICE => typed(data).map(WolfEvent::PlugDevice),
            UNPLUG_DEVICE => typed(data).map(WolfEvent::UnplugDevice),
            STREAM_SESSION => typed(data).map(|s| WolfEvent::StreamSession(Box::new(s))),
            VIDEO_SESSION => typed(data).map(|s| WolfEvent::VideoSession(Box::new(s))),
            AUDIO_SESSION => typed(data).map(|s| WolfEvent::AudioSession(Box::new(s))),
            IDR_REQUEST => typed(data).map(WolfEvent::IdrRequest),
            PAUSE_STREAM => typed(data).map(WolfEvent::PauseStream),
            RESUME_STREAM => typed(data).map(WolfEvent::ResumeStream),
            STOP_STREAM => typed(data).map(WolfEvent::StopStream),
            CLIENT_WOLF_UI_COMBO => typed(data).map(WolfEvent::ClientWolfUiCombo),
            RTP_VIDEO_PING => typed(data).map(WolfEvent::RtpVideoPing),
            RTP_AUDIO_PING => typed(data).map(WolfEvent::RtpAudioPing),
            START_RUNNER => typed(data).map(WolfEvent::StartRunner),
            CREATE_LOBBY => typed(data).map(|e| WolfEvent::CreateLobby(Box::new(e))),
            JOIN_LOBBY => typed(data).map(WolfEvent::JoinLobby),
            LEAVE_LOBBY => typed(data).map(WolfEvent::LeaveLobby),
            STOP_LOBBY => typed(data).map(WolfEvent::StopLobby),
            SWITCH_STREAM_PRODUCER => typed(data).map(WolfEvent::SwitchStreamProducer),
            DOCKER_CONTAINER_CREATED => typed(data).map(WolfEvent::DockerContainerCreated),
            DOCKER_CONTAINER_STOPPED => typed(data).map(WolfEvent::DockerContainerStopped),
            DOCKER_PULL_START => typed(data).map(WolfEvent::DockerPullStart),
            DOCKER_PULL_END => typed(data).map(WolfEvent::DockerPullEnd),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            let data = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()));
            WolfEvent::Other {
                name: name.to_owned(),
                data,
            }
        })
    }

    /// The session this event is about, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            WolfEvent::PlugDevice(e) | WolfEvent::UnplugDevice(e) => Some(e.session_id),
            WolfEvent::StreamSession(s) => Some(s.session_id()),
            WolfEvent::VideoSession(s) => Some(s.session_id),
            WolfEvent::AudioSession(s) => Some(s.session_id),
            WolfEvent::IdrRequest(e)
            | WolfEvent::PauseStream(e)
            | WolfEvent::ResumeStream(e)
            | WolfEvent::StopStream(e)
            | WolfEvent::ClientWolfUiCombo(e) => Some(e.session_id),
            WolfEvent::StartRunner(e) => Some(e.session_id),
            WolfEvent::JoinLobby(e) | WolfEvent::LeaveLobby(e) => Some(e.moonlight_session_id),
            WolfEvent::SwitchStreamProducer(e) => Some(e.session_id),
            WolfEvent::DockerContainerCreated(e) | WolfEvent::DockerContainerStopped(e) => Some(e.session_id),
            _ => None,
        }
    }
}

/// An item of the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// An event.
    Event(WolfEvent),
    /// The stream was lost and is connected again. Wolf does not replay events: re-list the state
    /// you track (sessions, lobbies, ...). The cached Wolf version is forgotten too.
    Reconnected,
}

/// How the event stream behaves.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Drop `RTPVideoPingEvent` / `RTPAudioPingEvent` before parsing them (they arrive every 500 ms
    /// per stream). Default `true`.
    pub filter_pings: bool,
    /// First wait before reconnecting. Default 100 ms. Every wait is drawn in [½, 1½) of its
    /// nominal value, so that clients that lost one Wolf together do not retry in step.
    pub initial_backoff: Duration,
    /// Longest nominal wait between reconnection attempts. Default 10 s.
    pub max_backoff: Duration,
    /// Reconnect when nothing (not even a keepalive, sent every 15 s) arrived for this long.
    /// Default 45 s.
    pub idle_timeout: Duration,
    /// Give up after this many failed connection attempts in a row (the stream then yields the last
    /// error and ends). Default `None`: retry forever.
    pub max_retries: Option<u32>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            filter_pings: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            max_retries: None,
        }
    }
}

/// The stream returned by [`WolfClient::events`].
pub type EventStream = Pin<Box<dyn Stream<Item = Result<EventItem>> + Send>>;

struct State {
    client: WolfClient,
    cfg: EventsConfig,
    conn: Option<(LineReader, ConnGuard)>,
    connected_before: bool,
    failures: u32,
    backoff: Backoff,
    name: Option<String>,
    data: Option<String>,
    ended: bool,
}

impl WolfClient {
    /// Wolf's events with the default [`EventsConfig`] (pings filtered, reconnect forever).
    pub fn events(&self) -> EventStream {
        self.events_with(EventsConfig::default())
    }

    /// Wolf's events as a typed stream that reconnects with exponential back-off and yields
    /// [`EventItem::Reconnected`] after each reconnection. Keepalive comments are skipped.
    pub fn events_with(&self, cfg: EventsConfig) -> EventStream {
        let state = State {
            client: self.clone(),
            backoff: Backoff::new(cfg.initial_backoff, cfg.max_backoff),
            cfg,
            conn: None,
            connected_before: false,
            failures: 0,
            name: None,
            data: None,
            ended: false,
        };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            if st.ended {
                return None;
            }
            let item = st.next().await;
            Some((item, st))
        }))
    }
}

impl State {
    async fn next(&mut self) -> Result<EventItem> {
        loop {
            if self.conn.is_none() {
                if self.failures > 0 {
                    self.backoff.wait().await;
                }
                match self.open().await {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        let failed = std::mem::take(&mut self.failures);
                        self.backoff.reset();
                        self.name = None;
                        self.data = None;
                        if self.connected_before {
                            tracing::info!(
                                target = %self.client.inner.target,
                                failed_attempts = failed.saturating_sub(1),
                                "wolf event stream reconnected"
                            );
                            self.client.forget_version();
                            return Ok(EventItem::Reconnected);
                        }
                        self.connected_before = true;
                        tracing::debug!("wolf event stream connected");
                    }
                    Err(e) => {
                        self.failures += 1;
                        if self.cfg.max_retries.is_some_and(|m| self.failures > m) {
                            self.ended = true;
                            return Err(e);
                        }
                        self.log_failure(&e);
                    }
                }
                continue;
            }
            let Some((lines, _)) = self.conn.as_mut() else {
                continue;
            };
            match lines.next_line(self.cfg.idle_timeout).await {
                Ok(Some(line)) => {
                    if let Some(event) = self.feed(&line) {
                        return Ok(EventItem::Event(event));
                    }
                }
                Ok(None) => self.lost("closed by Wolf"),
                Err(LineError::Idle) => self.lost("idle timeout"),
                Err(LineError::TooLong) => self.lost("line too long"),
                Err(LineError::Broken(e)) => {
                    tracing::debug!(error = &e as &dyn std::error::Error, "wolf event stream broken");
                    self.lost("connection broken");
                }
            }
        }
    }

    /// A failed connection attempt: a warning for the 1st, 2nd, 4th, 8th… in a row (a Wolf that
    /// stays down is reported ever more rarely), a debug line for the others.
    fn log_failure(&self, error: &Error) {
        let error = error as &dyn std::error::Error;
        let target = &self.client.inner.target;
        if self.failures.is_power_of_two() {
            tracing::warn!(%target, error, attempt = self.failures, "wolf event stream: cannot connect, will retry");
        } else {
            tracing::debug!(%target, error, attempt = self.failures, "wolf event stream: cannot connect, will retry");
        }
    }

    fn lost(&mut self, why: &'static str) {
        tracing::warn!(target = %self.client.inner.target, reason = why, "wolf event stream lost, reconnecting");
        self.conn = None;
        self.failures = 1;
    }

    /// Handles one line; returns an event when a blank line completes one.
    fn feed(&mut self, line: &[u8]) -> Option<WolfEvent> {
        if line.is_empty() {
            let name = self.name.take();
            let data = self.data.take();
            let name = name?;
            if self.cfg.filter_pings && (name == names::RTP_VIDEO_PING || name == names::RTP_AUDIO_PING) {
                return None;
            }
            return Some(WolfEvent::parse(&name, data.as_deref().unwrap_or("")));
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }

    async fn open(&self) -> Result<(LineReader, ConnGuard)> {
        let endpoint = paths::EVENTS;
        let inner = &self.client.inner;
        let req = self.client.request(http::Method::GET, endpoint, None)?;
        let (resp, guard) =
            tokio::time::timeout(inner.timeout, transport::send(&inner.target, req, endpoint))
                .await
                .map_err(|_| Error::Timeout {
                    endpoint,
                    after: inner.timeout,
                })??;
        let status = resp.status().as_u16();
        if status != 200 {
            let (status, body) = transport::collect_body(resp, inner.max_body_bytes, endpoint).await?;
            return Err(crate::client::error_from(
                endpoint,
                crate::client::Raw { status, body },
            ));
        }
        Ok((LineReader::new(resp.into_body(), inner.max_body_bytes), guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_unknown_and_mismatched_events() {
        let e = WolfEvent::parse(names::IDR_REQUEST, r#"{"session_id":"42"}"#);
        assert_eq!(
            e,
            WolfEvent::IdrRequest(SessionEvent {
                session_id: SessionId::new(42)
            })
        );
        let e = WolfEvent::parse(names::PAUSE_STREAM, r#"{"session_id":18446744073709551615}"#);
        assert_eq!(e.session_id(), Some(SessionId::new(u64::MAX)));
        let e = WolfEvent::parse("wolf::core::events::Future", r#"{"x":1}"#);
        assert!(
            matches!(e, WolfEvent::Other { ref name, ref data } if name.ends_with("Future") && data["x"] == 1)
        );
        let e = WolfEvent::parse(names::STOP_STREAM, r#"{"unexpected":true}"#);
        assert!(matches!(e, WolfEvent::Other { .. }));
        let e = WolfEvent::parse("x", "not json");
        assert!(matches!(e, WolfEvent::Other { data: Value::String(ref s), .. } if s == "not json"));
    }
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    fn state(filter_pings: bool) -> State {
        let client = WolfClient::unix("/nonexistent").expect("valid path");
        State {
            client,
            cfg: EventsConfig {
                filter_pings,
                ..Default::default()
            },
            conn: None,
            connected_before: false,
            failures: 0,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
            name: None,
            data: None,
            ended: false,
        }
    }

    fn feed_all(st: &mut State, text: &str) -> Vec<WolfEvent> {
        text.split('\n')
            .filter_map(|l| st.feed(l.trim_end_matches('\r').as_bytes()))
            .collect()
    }

    #[test]
    fn sse_lines_comments_multiline_data_and_pings() {
        let mut st = state(true);
        let got = feed_all(
            &mut st,
            ":keepalive\n\nevent: wolf::core::events::IDRRequestEvent\ndata: {\"session_id\":\"42\"}\n\n\
             event:wolf::core::events::RTPVideoPingEvent\ndata:{\"client_ip\":\"1.2.3.4\",\"client_port\":1}\n\n\
             event: x\ndata: {\"a\":\ndata: 1}\n\n",
        );
        assert_eq!(
            got,
            vec![
                WolfEvent::IdrRequest(SessionEvent {
                    session_id: SessionId::new(42)
                }),
                WolfEvent::Other {
                    name: "x".into(),
                    data: serde_json::json!({"a": 1})
                },
            ]
        );
        let mut st = state(false);
        let got = feed_all(
            &mut st,
            "event: wolf::core::events::RTPAudioPingEvent\r\ndata: {\"client_ip\":\"1.2.3.4\",\"client_port\":1,\"payload\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}\r\n\r\n",
        );
        assert!(matches!(&got[..], [WolfEvent::RtpAudioPing(p)] if p.payload.is_some()));
        assert!(
            !format!("{got:?}").contains("13, 14"),
            "ping secret must not show in Debug"
        );
    }
}
