//! Kubernetes-backed implementations of the `direwolf-core` store traits.
//!
//! | Trait | Backend | Kept in |
//! |---|---|---|
//! | [`PairingStore`](direwolf_core::PairingStore) | [`KubePairingStore`] | `Pairing` objects named by fingerprint |
//! | [`UserStore`](direwolf_core::UserStore) | [`KubeUserStore`] | `User` objects |
//! | [`AppCatalog`](direwolf_core::AppCatalog) | [`KubeAppCatalog`] | `App` objects (WebP art served as PNG) |
//! | [`SessionStore`](direwolf_core::SessionStore) | [`KubeSessionStore`] | `Session` objects |
//! | [`IdentityStore`](direwolf_core::IdentityStore) | [`KubeIdentityStore`] | Secret `direwolf-identity` |
//!
//! Reads come from the shared watches of the namespace ([`Watches`]: one per kind, whoever reads
//! it) and wait for the initial list; writes use server-side apply (or create/merge-patch where
//! the trait needs "must not exist"/"must exist"), retry transient failures
//! ([`crate::retry::is_transient`]) with bounded exponential backoff, and are visible to reads
//! through the same [`Watches`] as soon as they return (a write-through overlay).
//!
//! ```no_run
//! # async fn demo() -> direwolf_core::Result<()> {
//! let client = kube::Client::try_default().await.map_err(|e| direwolf_core::Error::unavailable(e))?;
//! let stores = direwolf_k8s::stores::KubeStores::synced_stores(client, "games").await?;
//! let apps = stores.apps.list().await?;
//! # Ok(())
//! # }
//! ```

mod app;
mod convert;
mod error;
mod identity;
mod pairing;
mod session;
mod user;

use std::time::Duration;

use direwolf_core::Stores;
use kube::api::PatchParams;

use crate::watch::Watches;

pub use app::KubeAppCatalog;
pub use identity::KubeIdentityStore;
pub use pairing::KubePairingStore;
pub use session::KubeSessionStore;
pub use user::KubeUserStore;

pub(crate) use convert::session_object;
pub(crate) use session::create_session;

use crate::retry::RetryPolicy;

pub use crate::watch::DEFAULT_READY_TIMEOUT;

/// The name of the Secret holding the server identity.
pub const IDENTITY_SECRET: &str = "direwolf-identity";

/// Server-side apply, forcing ownership of the fields this store writes.
fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}

/// Settings shared by the stores.
#[derive(Debug, Clone, Copy)]
struct Settings {
    retry: RetryPolicy,
    ready_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry: RetryPolicy::default(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

/// Every Kubernetes store of one namespace, reading one shared set of [`Watches`].
#[derive(Debug, Clone)]
pub struct KubeStores {
    /// Pairings.
    pub pairings: KubePairingStore,
    /// Users.
    pub users: KubeUserStore,
    /// Apps.
    pub apps: KubeAppCatalog,
    /// Sessions.
    pub sessions: KubeSessionStore,
    /// The server identity.
    pub identity: KubeIdentityStore,
}

impl KubeStores {
    /// Starts the watches of every kind in `namespace` (a set of its own) and returns at once;
    /// reads wait for the initial lists (see [`KubeStores::ready`]). Must be called inside a
    /// Tokio runtime.
    pub fn start(client: kube::Client, namespace: &str) -> Self {
        Self::with_watches(&Watches::new(client, namespace))
    }

    /// The stores reading `watches` (starting the App, User, Pairing and Session watches if no
    /// other reader has). Must be called inside a Tokio runtime.
    pub fn with_watches(watches: &Watches) -> Self {
        let apps = KubeAppCatalog::with_watches(watches);
        KubeStores {
            pairings: KubePairingStore::with_watches(watches),
            users: KubeUserStore::with_watches(watches),
            sessions: KubeSessionStore::with_watches(watches, &apps),
            apps,
            identity: KubeIdentityStore::new(watches.client().clone(), watches.namespace(), IDENTITY_SECRET),
        }
    }

    /// Reports App id clashes as Kubernetes Events through `recorder` (see
    /// [`KubeAppCatalog::with_recorder`]).
    #[must_use]
    pub fn with_recorder(mut self, recorder: kube::runtime::events::Recorder) -> Self {
        self.apps = self.apps.with_recorder(recorder.clone());
        self.sessions.apps = self.sessions.apps.clone().with_recorder(recorder);
        self
    }

    /// Replaces the retry policy of every store (default: [`RetryPolicy::default`]).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.pairings.settings.retry = retry;
        self.users.settings.retry = retry;
        self.apps.settings.retry = retry;
        self.sessions.settings.retry = retry;
        self.sessions.apps.settings.retry = retry;
        self.identity.retry = retry;
        self
    }

    /// Starts the stores (watches of their own, [`KubeStores::start`]), waits until every cache
    /// has synced, and returns them as the core [`Stores`].
    ///
    /// # Errors
    /// `Unavailable` if a cache does not sync within [`DEFAULT_READY_TIMEOUT`] (API server down,
    /// CRDs not installed, or no permission to list).
    pub async fn synced_stores(client: kube::Client, namespace: &str) -> direwolf_core::Result<Stores> {
        let stores = Self::start(client, namespace);
        stores.wait_ready(DEFAULT_READY_TIMEOUT).await?;
        Ok(stores.stores())
    }

    /// Whether every cache of the stores has completed its initial list.
    pub fn ready(&self) -> bool {
        self.pairings.ready() && self.users.ready() && self.apps.ready() && self.sessions.ready()
    }

    /// Waits until every cache has synced.
    ///
    /// # Errors
    /// `Unavailable` if one does not sync within `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> direwolf_core::Result<()> {
        self.pairings.wait_ready(timeout).await?;
        self.users.wait_ready(timeout).await?;
        self.apps.wait_ready(timeout).await?;
        self.sessions.wait_ready(timeout).await?;
        Ok(())
    }

    /// The stores as the core trait objects.
    pub fn stores(&self) -> Stores {
        use std::sync::Arc;
        Stores {
            pairings: Arc::new(self.pairings.clone()),
            users: Arc::new(self.users.clone()),
            apps: Arc::new(self.apps.clone()),
            sessions: Arc::new(self.sessions.clone()),
            identity: Arc::new(self.identity.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
