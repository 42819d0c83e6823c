//! # direwolf-moonlight
//!
//! An embeddable Moonlight (GameStream) server: the two web ports through which unmodified
//! Moonlight clients (qt, android, ios, embedded, python) discover a host, pair with it, list its
//! apps, and launch, resume and quit streams. It follows `docs/protocol/moonlight-http.md` byte for
//! byte: compact XML with a `status_code` on every reply and HTTP 200 for every protocol outcome,
//! pairing with the PIN typed on a Wolf-compatible PIN page (`/pin/#SECRET`), client certificates
//! requested but not validated in TLS, and HTTPS requests authorised only by the SHA-256 of the
//! client's certificate.
//!
//! The entry point is [`MoonlightServer::builder`]. The server runs on the traits of
//! [`direwolf_core`]: pairings, users and apps come from [`direwolf_core::Stores`], streams are
//! started by a [`direwolf_core::Launcher`], and PINs travel through a
//! [`direwolf_core::PinBroker`]. Its own certificate and `uniqueid` are loaded from (or created
//! once in) the identity store, so they survive restarts.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use direwolf_core::{App, AppCatalog, AppId, NoStreamingHost, Stores};
//! use direwolf_moonlight::MoonlightServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stores = Stores::in_memory();
//! stores.apps.put(App::new(AppId::new(1)?, "Desktop")?, None).await?;
//! let server = MoonlightServer::builder()
//!     .with_stores(stores)
//!     .with_launcher(Arc::new(NoStreamingHost))
//!     .with_hostname("My host")
//!     .build()
//!     .await?;
//! println!("pair with {:?}, certificate {}", server.http_addrs(), server.server_fingerprint());
//! server.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules, one concept each: [`crypto`] (pairing primitives: AES, SHA-256, RSA signatures
//! through ring), [`identity`] (server certificate), [`xml`] and [`query`] (wire formats),
//! [`pairing`] (the handshake state machine, and [`pairing::Phase1`], which holds phase 1 for
//! the PIN from the PIN broker), [`serverinfo`] and [`launch`] (endpoint bodies), [`pin_page`]
//! (PIN page), [`tls`], [`mdns`], [`server`] (listeners, connections, limits). The request
//! handlers (private `service` module) only route to these.
#![warn(missing_docs)]

mod admission;
pub mod client_cert;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod launch;
mod limits;
pub mod log_throttle;
pub use direwolf_core::login_name;
pub mod mdns;
pub mod oidc;
pub mod pairing;
pub mod pin_page;
pub mod query;
pub mod server;
pub mod serverinfo;
mod service;
pub mod source;
pub mod tls;
pub mod trusted_proxy;
pub mod xml;

pub use error::ServerError;
pub use identity::{IdentityError, LoadedIdentity, generate_identity};
pub use server::{ConnectionLimits, MoonlightServer, MoonlightServerBuilder};
pub use service::NOT_AUTHORIZED;
