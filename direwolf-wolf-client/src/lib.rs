//! WIP
#![allow(missing_docs)]
pub mod client;
pub mod error;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod ids;
mod lines;
mod pull;
pub mod secret;
mod transport;
pub mod types;
pub mod version;
pub use client::WolfClient;
pub use error::{Error, Result};
pub use version::WolfVersion;
