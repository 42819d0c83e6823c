//! # direwolf-k8s
//!
//! The Kubernetes backends of direwolf: the custom resources ([`crd`]) and Kubernetes-backed
//! implementations of the `direwolf-core` store traits ([`stores`], entry point
//! [`stores::KubeStores`]).
#![warn(missing_docs)]

pub mod crd;
pub mod launcher;
pub mod pin_broker;
pub mod report;
pub mod retry;
pub mod stores;

#[cfg(feature = "emulator")]
pub mod emulator;
