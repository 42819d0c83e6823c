//! Helpers of the tests of this crate, on the emulator and on the real control plane
//! (`testenv`); each test file uses some of them.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

#[cfg(feature = "emulator")]
use direwolf_k8s::crd;
#[cfg(feature = "emulator")]
use direwolf_k8s::emulator::ApiServerEmulator;

pub mod cases;
pub mod gateway_api;
pub mod operator;
pub mod testenv;

/// Awaits `f`, failing the test with `what` if it takes longer than `wait` (a timeout means a
/// call hung: a cache never synced, a wait did not end at its own deadline, or a retry loop did
/// not end).
pub async fn within<F: Future>(wait: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(wait, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {wait:?} waiting for: {what}"))
}

/// An emulator with the direwolf CRDs installed and the `examples/` files named applied.
#[cfg(feature = "emulator")]
pub async fn emulator(wait: Duration, examples: &[&str]) -> ApiServerEmulator {
    let emulator = within(wait, "emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts");
    emulator
        .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
        .expect("CRDs install");
    for file in examples {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(&path).expect("example readable");
        emulator.apply_yaml(&yaml).expect("example applies");
    }
    emulator
}
