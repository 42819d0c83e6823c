//! The Moonlight (GameStream) HTTP/HTTPS server library.
#![warn(missing_docs)]

pub mod crypto;
pub mod identity;
pub mod pairing;
pub mod query;
pub mod xml;

pub use identity::{IdentityError, LoadedIdentity, generate_identity};
