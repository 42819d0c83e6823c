//! The storage traits: pairings, users, apps, sessions and the server identity.
//!
//! Each trait is object safe and `Send + Sync + Debug + 'static`, so callers hold
//! `Arc<dyn PairingStore>`. Backends: [`crate::memory`] (in memory), `crate::persistent`
//! (an embedded ACID database in a data directory) and `direwolf-k8s` (custom resources).
//! Every backend passes the suite in `crate::conformance`. [`MemoAppCatalog`] decorates any
//! [`AppCatalog`] whose reads are costly; [`LayeredAppCatalog`] puts a configuration file's
//! apps over a store's.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{AppId, Fingerprint, SessionId, UserName};
use crate::model::{App, AppAsset, Pairing, ServerIdentity, Session, User};

mod layered;
mod memo;

pub use layered::LayeredAppCatalog;
pub use memo::{DEFAULT_MEMO_TTL, MemoAppCatalog};

/// Trusted client certificates.
///
/// Reads must be fast (they run on every HTTPS request): backends serve them from memory.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PairingStore: Send + Sync + Debug + 'static {
    /// The pairing with this fingerprint, or `None`.
    async fn get(&self, fingerprint: &Fingerprint) -> Result<Option<Pairing>>;

    /// Creates or replaces the pairing with `pairing.fingerprint` (idempotent upsert).
    ///
    /// When this returns `Ok`, the pairing is durable (it survives a crash of this process) and
    /// visible to [`PairingStore::get`] on this instance: pairing phase 5 follows at once.
    async fn put(&self, pairing: Pairing) -> Result<()>;

    /// Removes a pairing. Returns whether it existed.
    async fn delete(&self, fingerprint: &Fingerprint) -> Result<bool>;

    /// Every pairing, in fingerprint order.
    async fn list(&self) -> Result<Vec<Pairing>>;
}

/// People.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync + Debug + 'static {
    /// The user with this name, or `None`.
    async fn get(&self, name: &UserName) -> Result<Option<User>>;

    /// Creates or replaces a user (idempotent upsert), durably.
    async fn put(&self, user: User) -> Result<()>;

    /// Removes a user. Returns whether it existed. Does not remove the user's pairings.
    async fn delete(&self, name: &UserName) -> Result<bool>;

    /// Every user, in name order.
    async fn list(&self) -> Result<Vec<User>>;
}

/// Shortcuts over [`UserStore`].
#[async_trait]
pub trait UserStoreExt: UserStore {
    /// Creates the user `name` with default settings unless it exists; an existing user is left
    /// as it is. Returns whether it was created.
    async fn ensure(&self, name: &UserName) -> Result<bool> {
        if self.get(name).await?.is_some() {
            return Ok(false);
        }
        self.put(User::new(name.clone())).await?;
        Ok(true)
    }
}

impl<T: UserStore + ?Sized> UserStoreExt for T {}

/// The apps users can launch, with their cover art.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AppCatalog: Send + Sync + Debug + 'static {
    /// Every app, in id order. Ids are unique in the result: where a backend holds two apps
    /// with the same id (possible in Kubernetes), it leaves both out and reports the clash.
    async fn list(&self) -> Result<Vec<App>>;

    /// The app with this id, or `None`.
    async fn get(&self, id: AppId) -> Result<Option<App>>;

    /// The app's cover art, or `None` if the app has none or does not exist.
    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>>;

    /// Creates or replaces the app with `app.id`, and its art (`None` removes the art).
    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()>;

    /// Removes an app. Returns whether it existed.
    async fn delete(&self, id: AppId) -> Result<bool>;
}

/// Stream sessions. At most one session per user is the model the Moonlight server assumes
/// (`docs/protocol/moonlight-http.md` § Launch), but the store itself does not enforce it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync + Debug + 'static {
    /// The session with this id, or `None`.
    async fn get(&self, id: &SessionId) -> Result<Option<Session>>;

    /// Every session, in id order.
    async fn list(&self) -> Result<Vec<Session>>;

    /// Records a new session, durably. `AlreadyExists` if the id is taken.
    async fn create(&self, session: Session) -> Result<()>;

    /// Replaces an existing session, durably. `NotFound` if it does not exist.
    async fn update(&self, session: Session) -> Result<()>;

    /// Removes a session; returns it if it existed.
    async fn delete(&self, id: &SessionId) -> Result<Option<Session>>;
}

/// Shortcuts over [`SessionStore`].
#[async_trait]
pub trait SessionStoreExt: SessionStore {
    /// The sessions of one user, in id order.
    async fn for_user(&self, user: &UserName) -> Result<Vec<Session>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|s| &s.user == user)
            .collect())
    }
}

impl<T: SessionStore + ?Sized> SessionStoreExt for T {}

/// Where the server identity (certificate and key) is kept.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait IdentityStore: Send + Sync + Debug + 'static {
    /// The stored identity, if one was created.
    async fn load(&self) -> Result<Option<ServerIdentity>>;

    /// Stores `identity` unless one exists already, and returns the one that is stored now.
    /// Several replicas racing to create an identity all end up with the same one.
    async fn create_if_absent(&self, identity: ServerIdentity) -> Result<ServerIdentity>;
}

/// The set of stores a Moonlight server or control plane runs on.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Pairings.
    pub pairings: Arc<dyn PairingStore>,
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Apps.
    pub apps: Arc<dyn AppCatalog>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// The server identity.
    pub identity: Arc<dyn IdentityStore>,
}

// The blanket impls below let an `Arc<T>` stand where a store is expected.
macro_rules! forward_arc {
    ($trait:ident { $($body:tt)* }) => {
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for Arc<T> { $($body)* }
    };
}

forward_arc!(PairingStore {
    async fn get(&self, fingerprint: &Fingerprint) -> Result<Option<Pairing>> { (**self).get(fingerprint).await }
    async fn put(&self, pairing: Pairing) -> Result<()> { (**self).put(pairing).await }
    async fn delete(&self, fingerprint: &Fingerprint) -> Result<bool> { (**self).delete(fingerprint).await }
    async fn list(&self) -> Result<Vec<Pairing>> { (**self).list().await }
});

forward_arc!(UserStore {
    async fn get(&self, name: &UserName) -> Result<Option<User>> { (**self).get(name).await }
    async fn put(&self, user: User) -> Result<()> { (**self).put(user).await }
    async fn delete(&self, name: &UserName) -> Result<bool> { (**self).delete(name).await }
    async fn list(&self) -> Result<Vec<User>> { (**self).list().await }
});

forward_arc!(AppCatalog {
    async fn list(&self) -> Result<Vec<App>> { (**self).list().await }
    async fn get(&self, id: AppId) -> Result<Option<App>> { (**self).get(id).await }
    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> { (**self).asset(id).await }
    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> { (**self).put(app, asset).await }
    async fn delete(&self, id: AppId) -> Result<bool> { (**self).delete(id).await }
});

forward_arc!(SessionStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> { (**self).get(id).await }
    async fn list(&self) -> Result<Vec<Session>> { (**self).list().await }
    async fn create(&self, session: Session) -> Result<()> { (**self).create(session).await }
    async fn update(&self, session: Session) -> Result<()> { (**self).update(session).await }
    async fn delete(&self, id: &SessionId) -> Result<Option<Session>> { (**self).delete(id).await }
});

forward_arc!(IdentityStore {
    async fn load(&self) -> Result<Option<ServerIdentity>> { (**self).load().await }
    async fn create_if_absent(&self, identity: ServerIdentity) -> Result<ServerIdentity> {
        (**self).create_if_absent(identity).await
    }
});
