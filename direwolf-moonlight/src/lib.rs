//! The Moonlight (GameStream) HTTP/HTTPS server library.
#![warn(missing_docs)]

pub mod crypto;
pub mod error;
pub mod identity;
pub mod launch;
pub mod mdns;
pub mod pairing;
pub mod pin;
pub mod query;
pub mod server;
pub mod serverinfo;
mod service;
pub mod tls;
pub mod xml;

pub use error::ServerError;
pub use identity::{IdentityError, LoadedIdentity, generate_identity};
pub use server::{ConnectionLimits, MoonlightServer, MoonlightServerBuilder};
pub use service::NOT_AUTHORIZED;
