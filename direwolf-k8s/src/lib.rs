//! # direwolf-k8s
//!
//! The Kubernetes backends of direwolf: the custom resources ([`crd`]).
#![warn(missing_docs)]

pub mod crd;

#[cfg(feature = "emulator")]
pub mod emulator;
