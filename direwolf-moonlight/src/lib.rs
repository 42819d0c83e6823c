//! The Moonlight (GameStream) HTTP/HTTPS server library.
#![warn(missing_docs)]

pub mod crypto;
pub mod identity;
pub mod launch;
pub mod pairing;
pub mod query;
pub mod serverinfo;
pub mod tls;
pub mod xml;

pub use identity::{IdentityError, LoadedIdentity, generate_identity};
