//! A typed async client for the HTTP API of [Wolf](https://github.com/games-on-whales/wolf), the
//! Moonlight game-streaming server, plus (feature `fake`) a fake Wolf for tests.
//!
//! Wolf serves its API on a unix socket (this crate defaults to `/var/run/wolf/wolf.sock`, the path
//! Wolf's documentation recommends) with a minimal hand-written HTTP/1.0 server: one request per
//! connection, `Content-Length` bodies only, no authentication. [`WolfClient`] speaks exactly that
//! dialect (on hyper, one connection per call), covers all 28 endpoints, and:
//!
//! * refuses requests that would crash Wolf (ids `std::stoull` cannot parse, `sessions/start` for an
//!   unknown session, malformed `rtsp_fake_ip`, ...) with [`Error::Validation`] before sending;
//! * detects the Wolf version from its OpenAPI schema (cached) and answers [`Error::Unsupported`]
//!   for endpoints the running Wolf lacks;
//! * bounds every call by a timeout and every body by a size limit, with typed errors;
//! * streams events ([`WolfClient::events`]) with reconnection, back-off and a
//!   [`events::EventItem::Reconnected`] marker;
//! * keeps AES keys, PINs and pair secrets in [`Secret`]s that never show in `Debug` output.
//!
//! ```no_run
//! use direwolf_wolf_client::{WolfClient, types::AddSessionRequest};
//!
//! # async fn demo() -> direwolf_wolf_client::Result<()> {
//! let wolf = WolfClient::unix("/var/run/wolf/wolf.sock")?;
//! println!("Wolf {}", wolf.version().await?);
//! let id = wolf
//!     .add_session(&AddSessionRequest {
//!         client_ip: "203.0.113.7".into(),
//!         aes_key: "773448F67992470C5C62848D361E1025".into(),
//!         aes_iv: "1311662065".into(),
//!         rtsp_fake_ip: "10.96.12.34".into(),
//!         video_width: 1920,
//!         video_height: 1080,
//!         video_refresh_rate: 60,
//!         audio_channel_count: 2,
//!         app_id: None,
//!         client_id: None,
//!         client_settings: None,
//!     })
//!     .await?;
//! for session in wolf.sessions().await? {
//!     println!("{} app {}", session.session_id(), session.app_id);
//! }
//! wolf.stop_session(id).await?;
//! # Ok(()) }
//! ```
//!
//! Ids Wolf derives can be predicted: [`client_id_for_cert`] (libstdc++'s `std::hash` of the
//! certificate), [`CLIENTLESS_SESSION_ID`] and [`ids::app_id_for`].
//!
//! This crate deliberately does not depend on the rest of direwolf, so it can be used on its own.

#![warn(missing_docs)]

pub mod backoff;
pub mod client;
pub mod error;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod ids;
mod lines;
pub mod observe;
mod pull;
pub mod secret;
mod transport;
pub mod types;
pub mod version;

pub use client::{DEFAULT_SOCKET_PATH, WolfClient, WolfClientBuilder};
pub use error::{Error, Result, ValidationError, WolfErrorKind};
pub use events::{EventItem, EventsConfig, WolfEvent};
pub use ids::{CLIENTLESS_SESSION_ID, ClientId, SessionId, client_id_for_cert};
pub use observe::{CallObserver, CallOutcome};
pub use secret::Secret;
pub use transport::Target;
pub use version::WolfVersion;
