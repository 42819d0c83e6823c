//! A streaming host (a Wolf instance) as the control plane sees it.
//!
//! The single-machine pack places sessions on a set of [`StreamHost`]s. Backends:
//! `pack::WolfHost` (feature `wolf`: a Wolf over its HTTP API, through `direwolf-wolf-client`)
//! and [`InMemoryStreamHost`] (in memory, with a real host's failures on demand). Every backend
//! passes the suite in `conformance::stream_host` (feature `conformance`).

use std::fmt::{self, Debug};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::model::{StreamKeys, VideoMode};

mod memory;

pub use memory::{HostBehaviour, InMemoryStreamHost, WOLF_SHARED_SESSION_ID};

/// What the control plane asks a host to set up for one stream (Wolf `sessions/add`,
/// `docs/protocol/wolf-api.md` § Types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSessionRequest {
    /// The client address as the host will see it on RTSP (behind a relay: the relay's address
    /// towards the host).
    pub client_ip: IpAddr,
    /// Stream keys from the client's `/launch` or `/resume`.
    pub keys: StreamKeys,
    /// The unique dotted-decimal address the RTSP requests of this session carry as host
    /// (`rtsp_fake_ip`); the relay rewrites every request to it.
    pub rtsp_fake_ip: Ipv4Addr,
    /// Video mode.
    pub mode: VideoMode,
    /// Audio channels (2, 6 or 8).
    pub audio_channels: u16,
    /// The host-side app to run, if the host should run one (Wolf `app_id`); `None` runs the
    /// host's placeholder app (the game runs elsewhere).
    pub host_app_id: Option<String>,
}

/// A session a host reports.
#[derive(Clone, PartialEq, Eq)]
pub struct HostSessionInfo {
    /// The host's id for it.
    pub id: String,
    /// Its `rtsp_fake_ip`, if the host reports one.
    pub rtsp_fake_ip: Option<String>,
    /// Its client address.
    pub client_ip: String,
    /// Its AES key as hex, if the host reports it (Wolf does); used to tell sessions apart.
    pub aes_key_hex: Option<String>,
}

impl Debug for HostSessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSessionInfo")
            .field("id", &self.id)
            .field("rtsp_fake_ip", &self.rtsp_fake_ip)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// Something that happened on a host, as far as session lifecycle is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The host ended a session (Wolf `StopStreamEvent`).
    SessionStopped {
        /// The host's session id.
        id: String,
    },
    /// The client disconnected; the host keeps the session (Wolf `PauseStreamEvent`).
    SessionPaused {
        /// The host's session id.
        id: String,
    },
    /// The client (re)connected its control stream (Wolf `ResumeStreamEvent`).
    SessionResumed {
        /// The host's session id.
        id: String,
    },
    /// The event stream was interrupted and is back; events may have been missed, so the
    /// consumer must re-list the host's sessions.
    Resync,
}

/// Errors of a streaming host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The host cannot be reached and the request was not delivered (down, socket missing,
    /// connection refused or failing to open): the request had no effect.
    #[error("streaming host {host} is unreachable: {message}")]
    Unreachable {
        /// The host's name.
        host: String,
        /// What happened.
        message: String,
    },
    /// The request was sent, or may have been, but no usable answer came back (no answer in
    /// time, connection closed or answer cut short or unreadable). The host may still carry the
    /// request out: a slow host may, for example, create the session of an unanswered
    /// [`StreamHost::add_session`] after the caller gave up. Use this whenever the caller cannot
    /// tell whether the request reached the host.
    #[error("streaming host {host} did not answer: {message}")]
    NoAnswer {
        /// The host's name.
        host: String,
        /// What happened.
        message: String,
    },
    /// The host refused the request.
    #[error("streaming host {host} refused: {message}")]
    Refused {
        /// The host's name.
        host: String,
        /// What it said.
        message: String,
    },
    /// The host does not know this session.
    #[error("streaming host {host} has no session {id}")]
    NoSuchSession {
        /// The host's name.
        host: String,
        /// The session id.
        id: String,
    },
}

/// A stream of host events; ends only when the host handle is dropped.
pub type HostEvents = Pin<Box<dyn Stream<Item = HostEvent> + Send + 'static>>;

/// A streaming host.
#[async_trait]
pub trait StreamHost: Send + Sync + Debug + 'static {
    /// The host's name, unique in a pool (for logs and stored placements).
    fn name(&self) -> &str;

    /// Sets up a session and returns the host's id for it. The host starts the app at once.
    async fn add_session(&self, request: &HostSessionRequest) -> Result<String, HostError>;

    /// Ends a session. Ending a session the host no longer has is
    /// [`HostError::NoSuchSession`], which callers usually treat as success.
    async fn stop_session(&self, id: &str) -> Result<(), HostError>;

    /// The sessions the host runs now.
    async fn list_sessions(&self) -> Result<Vec<HostSessionInfo>, HostError>;

    /// Lifecycle events, reconnecting by itself; emits [`HostEvent::Resync`] after each
    /// reconnection.
    fn events(&self) -> HostEvents;
}
