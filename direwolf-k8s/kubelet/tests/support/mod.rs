//! Support of the stand-in's tests: the real control plane (shared with the other test crates)
//! and a running `direwolf-kubelet`.
#![allow(dead_code)]

#[path = "../../../tests/support/testenv.rs"]
pub mod testenv;

pub mod http;
pub mod stand_in;
