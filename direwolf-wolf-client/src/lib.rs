//! WIP
#![allow(missing_docs)]
pub mod error;
pub mod ids;
pub mod secret;
pub mod types;
pub mod version;
