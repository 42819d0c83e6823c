//! # direwolf-core
//!
//! The Kubernetes-free heart of direwolf: domain types ([`User`], [`App`], [`Pairing`],
//! [`Session`]), the traits the Moonlight server and the control plane are written against
//! ([`PairingStore`], [`UserStore`], [`AppCatalog`], [`SessionStore`], [`IdentityStore`],
//! [`Launcher`], [`PinBroker`], [`StreamHost`](stream_host::StreamHost)) and their embedded
//! backends: in memory ([`memory`], [`InMemoryPinBroker`],
//! [`InMemoryStreamHost`](stream_host::InMemoryStreamHost)) and, with the `persistent`
//! feature, an ACID database in a data directory.
//!
//! The streaming plane is behind features, so a crate that needs only the model and the traits
//! compiles no socket code:
//!
//! | Feature | Module | What |
//! |---|---|---|
//! | `persistent` (default) | `persistent` | the redb backend of the stores |
//! | `relay` | `relay` | the stream relay engine (RTSP rewriting, batched UDP forwarding) |
//! | `pack` | `pack` | the single-machine pack: `WolfPool`, a [`Launcher`] over streaming hosts, with the relay |
//! | `wolf` | `pack::wolf_host` | `WolfHost`, a [`StreamHost`](stream_host::StreamHost) over Wolf's API |
//! | `health` | `health` | the health port: `/livez`, `/readyz`, `/metrics` |
//! | `wolf-api` | `wolf_api` | the subset of Wolf's API that Wolf's managers use, on a Unix socket |
//! | `admin` | `admin` | the admin HTTP API (users, apps, pairings, sessions) over HTTPS, with its token |
//! | `conformance` | `conformance` | the suites every backend of the traits passes |
//! | `mock` | | mockall mocks of the traits |
//!
//! ```
//! use direwolf_core::{App, AppCatalog, AppId, Stores};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> direwolf_core::Result<()> {
//! let stores = Stores::in_memory();
//! stores.apps.put(App::new(AppId::new(1)?, "Desktop")?, None).await?;
//! let titles: Vec<String> = stores.apps.list().await?.into_iter().map(|a| a.title).collect();
//! assert_eq!(titles, ["Desktop"]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod accounts;
mod clock;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
#[cfg(feature = "health")]
pub mod health;
pub mod ids;
pub mod launcher;
pub mod login_name;
pub mod memory;
pub mod metrics;
pub mod model;
#[cfg(feature = "pack")]
pub mod pack;
#[cfg(feature = "persistent")]
pub mod persistent;
pub mod pin_broker;
#[cfg(feature = "relay")]
pub mod relay;
pub mod store;
pub mod stream_host;
#[cfg(feature = "wolf-api")]
pub mod wolf_api;

pub use error::{Error, Result};
pub use ids::{AesKey, AppId, Fingerprint, PairSecret, Pin, RiKeyId, SessionId, UserName};
pub use launcher::{LaunchError, LaunchOutcome, Launcher, NoStreamingHost};
pub use model::{
    App, AppAsset, LaunchRequest, Pairing, ResumeRequest, ServerIdentity, Session, SessionPhase, StreamKeys,
    StreamPlacement, StreamPorts, User, VideoMode,
};
pub use pin_broker::{InMemoryPinBroker, PendingPin, PendingPinRequest, PinBroker, PinError, PinSubmission};
pub use store::{
    AppCatalog, IdentityStore, MemoAppCatalog, PairingStore, SessionStore, SessionStoreExt, Stores,
    UserStore, UserStoreExt,
};
