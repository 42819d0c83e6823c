//! The conformance suites every backend of the core traits must pass (feature `conformance`).
//!
//! | Trait | Suite | Backends that run it |
//! |---|---|---|
//! | the five stores | [`all`] and one function per store | in memory, persistent, Kubernetes |
//! | [`Launcher`](crate::Launcher) | [`launcher`] | `NoStreamingHost`, `WolfPool`, `KubeLauncher` |
//! | [`PinBroker`](crate::PinBroker) | [`pin_broker`], [`pin_broker_across`] | `InMemoryPinBroker`, `KubePinBroker` |
//! | [`StreamHost`](crate::stream_host::StreamHost) | [`stream_host`] | `InMemoryStreamHost`, `WolfHost` over the fake Wolf |
//!
//! Each function exercises the guarantees documented on its trait and panics with a message
//! naming the broken guarantee. The functions do **not** need an empty backend: every key they
//! use carries a fresh random tag, they check only their own objects (plus properties that hold
//! whatever else is stored, such as list order), and they remove what they created. So they can
//! run against a shared Kubernetes API server or a real data directory.
//!
//! [`identity_store`] is the exception to "remove what they created": an identity cannot be
//! removed through the trait. On a store without an identity it leaves the one it created.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use direwolf_core::conformance::{self, LauncherFixture};
//!
//! conformance::all(&direwolf_core::Stores::in_memory()).await;
//! conformance::launcher(&direwolf_core::NoStreamingHost, &LauncherFixture::without_streaming()).await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::Result;
use crate::ids::UserName;
use crate::store::Stores;

mod launcher;
mod pin_broker;
mod stores;
mod stream_host;

pub use launcher::{LauncherFixture, launcher};
pub use pin_broker::{pin_broker, pin_broker_across};
pub use stores::{app_catalog, identity_store, pairing_store, session_store, user_store};
pub use stream_host::stream_host;

/// How many tasks the concurrency checks run at once.
const CONCURRENCY: usize = 16;

/// How long the suites wait for anything that should happen at once (a wait, an event).
const PROMPTLY: Duration = Duration::from_secs(10);

/// Runs every store suite against `stores`.
pub async fn all(stores: &Stores) {
    pairing_store(stores.pairings.as_ref()).await;
    user_store(stores.users.as_ref()).await;
    app_catalog(stores.apps.as_ref()).await;
    session_store(stores.sessions.as_ref()).await;
    identity_store(stores.identity.as_ref()).await;
}

/// Unwraps a store call, panicking with the operation's name and the error.
fn ok<T>(result: Result<T>, operation: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{operation} failed: {e} ({e:?})"),
    }
}

/// A fresh tag of 8 lower-case letters and digits: keeps this run's keys apart from any other
/// data in the backend and from concurrent runs.
fn run_tag() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn name(text: String) -> UserName {
    text.parse()
        .unwrap_or_else(|e| panic!("test user name {text:?} is invalid: {e}"))
}

/// Awaits `future`, panicking with `what` if it takes longer than [`PROMPTLY`] (the backend
/// hangs).
async fn promptly<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PROMPTLY, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PROMPTLY:?}"))
}

#[cfg(test)]
mod tests;
