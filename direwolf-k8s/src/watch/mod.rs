//! [`Watches`]: the one set of watches of a namespace, shared by every reader in the process.
//!
//! `direwolf proxy` reads Apps, Users, Pairings, Sessions and pending-PIN Secrets from caches.
//! Each kind is watched once, whoever reads it: the stores ([`KubeStores`]), the launcher
//! ([`KubeLauncher`]), the PIN broker ([`KubePinBroker`]) and the status reporter
//! ([`report::run`]) are all built from one [`Watches`] and read the same reflector of a kind.
//!
//! | Kind | Watched for | Readers |
//! |---|---|---|
//! | `App` | the app list, launch, id clashes | app catalog, session store, launcher, reporter |
//! | `User` | authorisation, `UserFound` | user store, reporter |
//! | `Pairing` | authorisation, `UserFound` | pairing store, reporter |
//! | `Session` | busy state, resume, cancel | session store, launcher |
//! | `Secret` labelled [`PIN_LABEL`]`=pending` | PIN delivery across replicas | PIN broker |
//!
//! A kind's watch starts the first time a reader asks for it (so a launcher alone watches only
//! Sessions and Apps) and stops when the last reader and every clone of the [`Watches`] are
//! gone. Readiness ([`Watches::ready`], [`Watches::wait_ready`]) covers every watch started so
//! far: each has completed its initial list.
//!
//! The stores, the launcher and the PIN broker add a write-through overlay on top (a write by
//! this process is visible to its own reads at once; see `cache.rs`); it belongs to the shared
//! set too, so every reader built from one [`Watches`] sees the others' writes. The reporter
//! reads what the watch delivered.
//!
//! [`KubeStores`]: crate::stores::KubeStores
//! [`KubeLauncher`]: crate::launcher::KubeLauncher
//! [`KubePinBroker`]: crate::pin_broker::KubePinBroker
//! [`report::run`]: crate::report::run
//! [`PIN_LABEL`]: crate::pin_broker::PIN_LABEL
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> direwolf_core::Result<()> {
//! use direwolf_k8s::launcher::{KubeLauncher, LauncherConfig};
//! use direwolf_k8s::stores::KubeStores;
//! use direwolf_k8s::watch::Watches;
//!
//! let watches = Watches::new(client, "games");
//! let stores = KubeStores::with_watches(&watches);
//! let launcher = KubeLauncher::with_watches(&watches, LauncherConfig::default());
//! watches.wait_ready(std::time::Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```

pub(crate) mod cache;
pub(crate) mod reflector;

/// How long a read waits for a watch's initial list before failing with `Unavailable`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A watch did not finish its initial list in time.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} cache is not synced after {waited:?}")]
pub struct NotReady {
    /// The kind whose watch is not ready.
    pub kind: &'static str,
    /// How long the caller waited.
    pub waited: Duration,
}

impl From<NotReady> for direwolf_core::Error {
    /// The API server may be down, the CRDs missing or listing forbidden: the caller may retry.
    fn from(err: NotReady) -> Self {
        direwolf_core::Error::unavailable(err.to_string())
    }
}

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use self::cache::Cache;
use self::reflector::{Readiness, reflect};
use crate::crd;
use crate::crd::labels::PIN as PIN_LABEL;

struct Inner {
    client: Client,
    namespace: String,
    apps: OnceLock<Arc<Cache<crd::App>>>,
    users: OnceLock<Arc<Cache<crd::User>>>,
    pairings: OnceLock<Arc<Cache<crd::Pairing>>>,
    sessions: OnceLock<Arc<Cache<crd::Session>>>,
    pending_pins: OnceLock<Arc<Cache<Secret>>>,
}

/// One watch per kind in one namespace, shared by every reader built from it; see the
/// [module docs](self). Cloning shares the set.
#[derive(Clone)]
pub struct Watches {
    inner: Arc<Inner>,
}

impl fmt::Debug for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watches")
            .field("namespace", &self.inner.namespace)
            .field("started", &self.started())
            .finish_non_exhaustive()
    }
}

impl Watches {
    /// The watches of `namespace`, none started yet: each starts when a reader first needs it.
    /// Readers must be built inside a Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        Watches {
            inner: Arc::new(Inner {
                client,
                namespace: namespace.to_owned(),
                apps: OnceLock::new(),
                users: OnceLock::new(),
                pairings: OnceLock::new(),
                sessions: OnceLock::new(),
                pending_pins: OnceLock::new(),
            }),
        }
    }

    /// The client the watches (and their readers' writes) use.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The namespace watched.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The kinds watched so far (`"app"`, `"user"`, `"pairing"`, `"session"`,
    /// `"pending-PIN secret"`).
    pub fn started(&self) -> Vec<&'static str> {
        self.each_started().iter().map(|r| r.kind()).collect()
    }

    /// Whether every watch started so far has completed its initial list (what `/readyz`
    /// reports).
    pub fn ready(&self) -> bool {
        self.each_started().iter().all(|r| r.is_ready())
    }

    /// Waits until every watch started so far has completed its initial list.
    ///
    /// # Errors
    /// `Unavailable` naming the first kind that did not sync within `timeout` (API server down,
    /// CRDs not installed, or no permission to list and watch).
    pub async fn wait_ready(&self, timeout: Duration) -> direwolf_core::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for reflector in self.each_started() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            reflector.wait_ready(left).await?;
        }
        Ok(())
    }

    /// An API handle of kind `K` in the watched namespace.
    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.inner.client.clone(), &self.inner.namespace)
    }

    /// The App cache.
    pub(crate) fn apps(&self) -> Arc<Cache<crd::App>> {
        self.cache(&self.inner.apps, "app")
    }

    /// The User cache.
    pub(crate) fn users(&self) -> Arc<Cache<crd::User>> {
        self.cache(&self.inner.users, "user")
    }

    /// The Pairing cache.
    pub(crate) fn pairings(&self) -> Arc<Cache<crd::Pairing>> {
        self.cache(&self.inner.pairings, "pairing")
    }

    /// The Session cache.
    /// The phase of every Session in the cache (one without a status is `Pending`), starting the
    /// Session watch if no other reader has.
    pub fn session_phases(&self) -> Vec<direwolf_core::SessionPhase> {
        self.sessions()
            .list()
            .iter()
            .map(|s| {
                s.status
                    .as_ref()
                    .and_then(|status| status.phase)
                    .map_or(direwolf_core::SessionPhase::Pending, Into::into)
            })
            .collect()
    }

    pub(crate) fn sessions(&self) -> Arc<Cache<crd::Session>> {
        self.cache(&self.inner.sessions, "session")
    }

    /// The pending-PIN Secrets (label [`PIN_LABEL`]`=pending`).
    pub(crate) fn pending_pins(&self) -> Arc<Cache<Secret>> {
        let selector = format!("{PIN_LABEL}=pending");
        let config = watcher::Config::default().labels(&selector);
        self.inner
            .pending_pins
            .get_or_init(|| {
                Cache::new(reflect(
                    "pending-PIN secret",
                    self.namespace(),
                    self.api(),
                    config,
                ))
            })
            .clone()
    }

    fn cache<K>(&self, slot: &OnceLock<Arc<Cache<K>>>, kind: &'static str) -> Arc<Cache<K>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        slot.get_or_init(|| {
            let reflector = reflect(kind, self.namespace(), self.api(), watcher::Config::default());
            Cache::new(reflector)
        })
        .clone()
    }

    fn each_started(&self) -> Vec<Arc<dyn Readiness>> {
        fn of<K>(slot: &OnceLock<Arc<Cache<K>>>) -> Option<Arc<dyn Readiness>>
        where
            K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
        {
            slot.get()
                .map(|cache| cache.reflector().clone() as Arc<dyn Readiness>)
        }
        let inner = &self.inner;
        [
            of(&inner.apps),
            of(&inner.users),
            of(&inner.pairings),
            of(&inner.sessions),
            of(&inner.pending_pins),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
