//! # direwolf-core
//!
//! The Kubernetes-free heart of direwolf: domain types ([`User`], [`App`], [`Pairing`],
//! [`Session`]), the traits the Moonlight server and the control plane are written against
//! ([`PairingStore`], [`UserStore`], [`AppCatalog`], [`SessionStore`], [`IdentityStore`],
//! [`Launcher`], [`PinBroker`]) and their embedded backends: in memory ([`memory`]) and, with
//! the `persistent` feature, an ACID database in a data directory.
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

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
pub mod ids;
pub mod launcher;
pub mod memory;
pub mod model;
#[cfg(feature = "persistent")]
pub mod persistent;
pub mod pin_broker;
pub mod pool;
pub mod relay;
pub mod store;
pub mod stream_host;
#[cfg(feature = "wolf")]
pub mod wolf_host;

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
