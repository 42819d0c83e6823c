//! In-memory backends of every store trait. Nothing survives the process; use them in tests,
//! in examples, and where state is rebuilt on start (e.g. an app catalog loaded from a file).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::ids::{AppId, Fingerprint, SessionId, UserName};
use crate::model::{App, AppAsset, Pairing, ServerIdentity, Session, User};
use crate::store::{AppCatalog, IdentityStore, PairingStore, SessionStore, Stores, UserStore};

impl Stores {
    /// All stores in memory (nothing survives the process).
    pub fn in_memory() -> Self {
        Stores {
            pairings: Arc::new(InMemoryPairingStore::default()),
            users: Arc::new(InMemoryUserStore::default()),
            apps: Arc::new(InMemoryAppCatalog::default()),
            sessions: Arc::new(InMemorySessionStore::default()),
            identity: Arc::new(InMemoryIdentityStore::default()),
        }
    }
}

/// A map behind a lock.
type Table<K, V> = RwLock<BTreeMap<K, V>>;

/// Pairings in memory.
#[derive(Debug, Default, Clone)]
pub struct InMemoryPairingStore(Arc<Table<Fingerprint, Pairing>>);

#[async_trait]
impl PairingStore for InMemoryPairingStore {
    async fn get(&self, fingerprint: &Fingerprint) -> Result<Option<Pairing>> {
        Ok(self.0.read().get(fingerprint).cloned())
    }

    async fn put(&self, pairing: Pairing) -> Result<()> {
        self.0.write().insert(pairing.fingerprint.clone(), pairing);
        Ok(())
    }

    async fn delete(&self, fingerprint: &Fingerprint) -> Result<bool> {
        Ok(self.0.write().remove(fingerprint).is_some())
    }

    async fn list(&self) -> Result<Vec<Pairing>> {
        Ok(self.0.read().values().cloned().collect())
    }
}

/// Users in memory.
#[derive(Debug, Default, Clone)]
pub struct InMemoryUserStore(Arc<Table<UserName, User>>);

#[async_trait]
impl UserStore for InMemoryUserStore {
    async fn get(&self, name: &UserName) -> Result<Option<User>> {
        Ok(self.0.read().get(name).cloned())
    }

    async fn put(&self, user: User) -> Result<()> {
        self.0.write().insert(user.name.clone(), user);
        Ok(())
    }

    async fn delete(&self, name: &UserName) -> Result<bool> {
        Ok(self.0.write().remove(name).is_some())
    }

    async fn list(&self) -> Result<Vec<User>> {
        Ok(self.0.read().values().cloned().collect())
    }
}

/// Apps in memory.
#[derive(Debug, Default, Clone)]
pub struct InMemoryAppCatalog(Arc<Table<AppId, (App, Option<AppAsset>)>>);

impl InMemoryAppCatalog {
    /// A catalog holding these apps (later entries replace earlier ones with the same id).
    pub fn with_apps(apps: impl IntoIterator<Item = (App, Option<AppAsset>)>) -> Self {
        let catalog = Self::default();
        {
            let mut table = catalog.0.write();
            for (app, asset) in apps {
                table.insert(app.id, (app, asset));
            }
        }
        catalog
    }
}

#[async_trait]
impl AppCatalog for InMemoryAppCatalog {
    async fn list(&self) -> Result<Vec<App>> {
        Ok(self.0.read().values().map(|(app, _)| app.clone()).collect())
    }

    async fn get(&self, id: AppId) -> Result<Option<App>> {
        Ok(self.0.read().get(&id).map(|(app, _)| app.clone()))
    }

    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> {
        Ok(self.0.read().get(&id).and_then(|(_, asset)| asset.clone()))
    }

    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> {
        self.0.write().insert(app.id, (app, asset));
        Ok(())
    }

    async fn delete(&self, id: AppId) -> Result<bool> {
        Ok(self.0.write().remove(&id).is_some())
    }
}

/// Sessions in memory.
#[derive(Debug, Default, Clone)]
pub struct InMemorySessionStore(Arc<Table<SessionId, Session>>);

#[async_trait]
impl SessionStore for InMemorySessionStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        Ok(self.0.read().get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<Session>> {
        Ok(self.0.read().values().cloned().collect())
    }

    async fn create(&self, session: Session) -> Result<()> {
        let mut table = self.0.write();
        if table.contains_key(&session.id) {
            return Err(Error::AlreadyExists {
                kind: "session",
                key: session.id.to_string(),
            });
        }
        table.insert(session.id.clone(), session);
        Ok(())
    }

    async fn update(&self, session: Session) -> Result<()> {
        let mut table = self.0.write();
        match table.get_mut(&session.id) {
            Some(slot) => {
                *slot = session;
                Ok(())
            }
            None => Err(Error::not_found("session", &session.id)),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Session>> {
        Ok(self.0.write().remove(id))
    }
}

/// The server identity in memory.
#[derive(Debug, Default, Clone)]
pub struct InMemoryIdentityStore(Arc<RwLock<Option<ServerIdentity>>>);

#[async_trait]
impl IdentityStore for InMemoryIdentityStore {
    async fn load(&self) -> Result<Option<ServerIdentity>> {
        Ok(self.0.read().clone())
    }

    async fn create_if_absent(&self, identity: ServerIdentity) -> Result<ServerIdentity> {
        let mut slot = self.0.write();
        Ok(slot.get_or_insert(identity).clone())
    }
}
