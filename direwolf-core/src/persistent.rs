//! The embedded, ACID, on-disk backend of every store trait: one [redb] database file in a data
//! directory, used by `direwolf serve`.
//!
//! * **Durable writes.** Every `put`/`create`/`update`/`delete` commits its own write
//!   transaction with [`redb::Durability::Immediate`] before it returns, so a crash (even
//!   `kill -9`) right after a write returned loses nothing.
//! * **Non-blocking.** Database calls run on tokio's blocking pool, never on the async workers.
//! * **Fast pairing and user reads.** Every HTTPS request reads its pairing and that pairing's
//!   user, so pairings and users are served from in-memory copies loaded when the database opens
//!   and updated (write-through) after each commit; the file is locked to this process, so the
//!   copies cannot go stale. A user name missing from the copy is looked up in the file (a stored
//!   user that does not decode is left out of the copy and reported when read, as before).
//! * **Versioned schema.** A `meta` table records [`SCHEMA_VERSION`]; a database written by a newer
//!   direwolf is refused with an error saying so, an older one is migrated when it opens.
//! * **One process.** The file is locked while open; a second process gets
//!   [`Error::Unavailable`] naming the file.
//! * **Heals after I/O errors.** After a failed read or write (a full disk, `EPERM`), redb
//!   refuses every later call until the database is reopened; the call that failed is answered
//!   with its error, the database is closed and reopened by the next call (or a background retry),
//!   and [`PersistentStores::health`] reports it meanwhile (see `heal`).
//! * **Refuses damaged and unsafe data.** An empty, truncated or unreadable database is refused
//!   as damaged, never replaced, also where redb would panic on it (see `contain`); a data
//!   directory other users can write or that another user owns, a database that is a symbolic
//!   link or another user's, are refused; the file's mode is narrowed to 0600 (see `safety`).
//!
//! Values are stored as JSON (app art as raw bytes), keyed by fingerprint, user name, app id and
//! session id, so every `list` comes back in key order.
//!
//! ```
//! use direwolf_core::{PairingStore, persistent::PersistentStores};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> direwolf_core::Result<()> {
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let stores = PersistentStores::open(dir.path())?.stores();
//! assert!(stores.pairings.list().await?.is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::ids::{AppId, Fingerprint, SessionId, UserName};
use crate::model::{App, AppAsset, Pairing, ServerIdentity, Session, User};
use crate::store::{AppCatalog, IdentityStore, PairingStore, SessionStore, Stores, UserStore};

mod contain;
mod heal;
mod safety;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "direwolf.redb";

/// The backend name in [`Error::Backend`].
const BACKEND: &str = "redb";

/// Page cache of the database. The data is small (pairings, users, apps, sessions); a small
/// cache keeps the idle footprint of `direwolf serve` low.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PAIRINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("pairings");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const APPS: TableDefinition<u32, &[u8]> = TableDefinition::new("apps");
/// App art: `(content type, bytes)`, kept out of JSON so a 1 MiB image stays 1 MiB.
const ASSETS: TableDefinition<u32, (&str, &[u8])> = TableDefinition::new("app_assets");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity");

const SCHEMA_VERSION_KEY: &str = "schema_version";
const IDENTITY_KEY: &str = "server";

/// A step that upgrades a database by one schema version, inside the opening transaction.
type Migration = fn(&WriteTransaction) -> Result<(), PersistentError>;

/// `MIGRATIONS[n]` upgrades a database from schema version `n + 1` to `n + 2`. When
/// [`SCHEMA_VERSION`] is raised, append the step that brings the previous version up to it.
const MIGRATIONS: [Migration; (SCHEMA_VERSION - 1) as usize] = [];

/// Failures of this backend; mapped into [`Error`] (mostly [`Error::Backend`] with backend
/// `"redb"`).
#[derive(Debug, thiserror::Error)]
enum PersistentError {
    /// The data directory could not be created or the database file could not be opened.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// Another process (or another [`PersistentStores`] in this process) has the database open.
    #[error(
        "the database {path} is in use by another process (is another `direwolf serve` running \
         with the same data directory?)"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// The data directory or the database file is unsafe to use (see [`safety`]).
    #[error("refusing {path}: it {reason}")]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The database file is damaged: empty, truncated, or not readable as a database.
    #[error(
        "{path}: database damaged: restore it from a backup or move it away to start afresh \
         ({detail})"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// An I/O error closed the database and reopening it failed.
    #[error(
        "the database {path} is closed after an I/O error ({fault}) and cannot be reopened yet: \
         {reopen}"
    )]
    Closed {
        /// The database file.
        path: PathBuf,
        /// The I/O error that closed it.
        fault: String,
        /// Why reopening failed.
        reopen: String,
    },

    /// redb refused to open the file.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        source: redb::DatabaseError,
    },

    /// The database was written by a newer direwolf.
    #[error(
        "the database {path} has schema version {found}, newer than version {supported} which this \
         direwolf understands; run a newer direwolf (or restore a backup of the data directory)"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// [`SCHEMA_VERSION`].
        supported: u64,
    },

    /// The meta table holds a version no direwolf ever wrote.
    #[error("the database {path} has an invalid schema version {found}")]
    InvalidSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },

    /// Any error of redb while reading or writing.
    #[error(transparent)]
    Redb(#[from] redb::Error),

    /// A value could not be encoded.
    #[error("cannot encode {kind} {key:?}: {source}")]
    Encode {
        /// What kind of object.
        kind: &'static str,
        /// Its key.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },

    /// A stored value could not be decoded (written by a buggy or foreign program).
    #[error("stored {kind} {key:?} cannot be decoded: {source}")]
    Decode {
        /// What kind of object.
        kind: &'static str,
        /// Its key.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },

    /// The blocking task running a database call panicked or was cancelled.
    #[error("a database task failed: {0}")]
    Task(String),

    /// A semantic answer (`NotFound`, `AlreadyExists`) produced inside a transaction.
    #[error(transparent)]
    Rejected(Error),
}

macro_rules! redb_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for PersistentError {
            fn from(e: $ty) -> Self {
                PersistentError::Redb(e.into())
            }
        }
    )*};
}

redb_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<PersistentError> for Error {
    fn from(e: PersistentError) -> Self {
        match e {
            PersistentError::Rejected(e) => e,
            e @ (PersistentError::Locked { .. } | PersistentError::Closed { .. }) => Error::unavailable(e),
            e => Error::backend(BACKEND, e),
        }
    }
}

fn encode<T: Serialize>(kind: &'static str, key: &str, value: &T) -> Result<Vec<u8>, PersistentError> {
    serde_json::to_vec(value).map_err(|source| PersistentError::Encode {
        kind,
        key: key.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(kind: &'static str, key: &str, bytes: &[u8]) -> Result<T, PersistentError> {
    serde_json::from_slice(bytes).map_err(|source| PersistentError::Decode {
        kind,
        key: key.to_owned(),
        source,
    })
}

/// Begins a write transaction that is durable on commit.
fn begin_write(db: &Database) -> Result<WriteTransaction, PersistentError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    // Persist allocator state with each commit, so reopening after a crash needs no full scan.
    txn.set_quick_repair(true);
    Ok(txn)
}

#[derive(Debug)]
struct Inner {
    /// The open database; `None` after an I/O error closed it, until it is reopened.
    db: RwLock<Option<Database>>,
    /// Why the database is closed, while it is.
    fault: Mutex<Option<String>>,
    /// Set while a thread retries reopening the database.
    healing: AtomicBool,
    /// Counts the reopenings, so that an I/O error met before one does not close the database
    /// reopened since.
    generation: AtomicU64,
    path: PathBuf,
    /// Every pairing, as committed.
    pairings: RwLock<BTreeMap<Fingerprint, Pairing>>,
    /// Held across a pairing write's commit and its cache update, so the cache applies writes in
    /// commit order.
    pairing_writes: Mutex<()>,
    /// Every user that decodes, as committed.
    users: RwLock<BTreeMap<UserName, User>>,
    /// As `pairing_writes`, for users.
    user_writes: Mutex<()>,
}

/// What a database call sees: the open database, and (through `Deref`) the rest of [`Inner`].
struct Open<'a> {
    db: &'a Database,
    inner: &'a Inner,
}

impl std::ops::Deref for Open<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        self.inner
    }
}

/// Runs a database call on the blocking pool, on the open database (reopened first if an I/O
/// error closed it).
async fn blocking<T, F>(inner: &Arc<Inner>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Open<'_>) -> Result<T, PersistentError> + Send + 'static,
{
    let inner = Arc::clone(inner);
    match tokio::task::spawn_blocking(move || Inner::with_db(&inner, f)).await {
        Ok(result) => result.map_err(Error::from),
        Err(join) => Err(PersistentError::Task(join.to_string()).into()),
    }
}

/// The open database of a data directory; hands out the stores.
///
/// Cloning is cheap and shares the database. The file stays locked until every clone and every
/// store handed out is dropped.
#[derive(Debug, Clone)]
pub struct PersistentStores {
    inner: Arc<Inner>,
}

impl PersistentStores {
    /// Opens (creating if needed) the database in `dir`: creates the directory with mode 0700 if
    /// it does not exist, checks that it is safe, creates [`DB_FILE_NAME`] with mode 0600 (or
    /// narrows an existing one's mode to 0600), recovers it after a crash, checks and migrates
    /// the schema, and loads the pairings and users into memory.
    ///
    /// This does blocking I/O; from async code call it in `spawn_blocking` or before serving.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if another process has the database open; [`Error::Backend`] if
    /// the directory or file cannot be created or opened, the directory is writable by others or
    /// owned by another user, the file is a symbolic link or another user's, the file is empty,
    /// damaged or not a direwolf database ("database damaged: restore it from a backup or move it
    /// away to start afresh"), its schema is newer than [`SCHEMA_VERSION`], or a stored pairing
    /// cannot be decoded.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self::open_inner(dir)?)
    }

    fn open_inner(dir: &Path) -> Result<Self, PersistentError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PersistentError::Io {
                path: dir.to_owned(),
                source,
            })?;
        safety::check_dir(dir)?;
        let path = dir.join(DB_FILE_NAME);
        let (db, pairings, users) = open_database(&path, true)?;
        tracing::debug!(path = %path.display(), pairings = pairings.len(), users = users.len(), "opened the database");
        Ok(PersistentStores {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                fault: Mutex::new(None),
                healing: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                path,
                pairings: RwLock::new(pairings),
                pairing_writes: Mutex::new(()),
                users: RwLock::new(users),
                user_writes: Mutex::new(()),
            }),
        })
    }

    /// Whether the database is usable: `Err(why)` after an I/O error (a full disk, a failing
    /// one) closed it, until it is reopened. It is reopened by the next call that needs it and,
    /// without calls, retried every few seconds. Quick and non-blocking, for a readiness probe.
    ///
    /// # Errors
    ///
    /// The I/O error that closed the database, with its path.
    pub fn health(&self) -> std::result::Result<(), String> {
        self.inner.health()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every store, backed by this database.
    pub fn stores(&self) -> Stores {
        Stores {
            pairings: Arc::new(self.pairing_store()),
            users: Arc::new(self.user_store()),
            apps: Arc::new(self.app_catalog()),
            sessions: Arc::new(self.session_store()),
            identity: Arc::new(self.identity_store()),
        }
    }

    /// The pairing store.
    pub fn pairing_store(&self) -> PersistentPairingStore {
        PersistentPairingStore {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The user store.
    pub fn user_store(&self) -> PersistentUserStore {
        PersistentUserStore {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The app catalog.
    pub fn app_catalog(&self) -> PersistentAppCatalog {
        PersistentAppCatalog {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The session store.
    pub fn session_store(&self) -> PersistentSessionStore {
        PersistentSessionStore {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The identity store.
    pub fn identity_store(&self) -> PersistentIdentityStore {
        PersistentIdentityStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Opens the database in `dir` (see [`PersistentStores::open`]) and returns its stores.
///
/// # Errors
///
/// As [`PersistentStores::open`].
pub fn open(dir: &Path) -> Result<Stores> {
    Ok(PersistentStores::open(dir)?.stores())
}

/// Checks the data directory `dir` and its database file as [`PersistentStores::open`] does
/// before it opens the database (ownership, modes, a symbolic link, an empty file), creating,
/// changing and opening nothing, so that it can run beside a server using the directory. A
/// missing directory or file passes (they would be created). Damage inside a non-empty file is
/// found only by opening it.
///
/// # Errors
///
/// [`Error::Backend`] with what is wrong and the command that fixes it, as `open` would fail.
pub fn check_data_dir(dir: &Path) -> Result<()> {
    Ok(safety::check_without_opening(dir, &dir.join(DB_FILE_NAME))?)
}

/// What [`open_database`] returns: the database and its pairings and (decodable) users.
type Opened = (Database, BTreeMap<Fingerprint, Pairing>, BTreeMap<UserName, User>);

/// Opens the database file at `path` (creating it if there is none and `create` is set) with
/// the checks of [`safety`], checks and migrates its schema and loads the pairings and users; a
/// damaged file is refused with [`PersistentError::Damaged`], even when redb panics on it.
fn open_database(path: &Path, create: bool) -> Result<Opened, PersistentError> {
    if create && safety::open_existing(path)?.is_none() {
        safety::create_new(path, |file| {
            builder()
                .create_file(file)
                .map(drop)
                .map_err(|e| open_error(path, e))
        })?;
    }
    let file = safety::open_existing(path)?.ok_or_else(|| PersistentError::Io {
        path: path.to_owned(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    let opened = contain::contain(|| -> Result<Opened, PersistentError> {
        let db = builder().create_file(file).map_err(|e| open_error(path, e))?;
        prepare_schema(&db, path)?;
        let pairings = load_pairings(&db)?;
        let users = load_users(&db)?;
        Ok((db, pairings, users))
    });
    match opened {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(PersistentError::Redb(redb::Error::Corrupted(detail)))) => Err(PersistentError::Damaged {
            path: path.to_owned(),
            detail,
        }),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(PersistentError::Damaged {
            path: path.to_owned(),
            detail: format!("redb stopped on it: {panic}"),
        }),
    }
}

/// redb's settings for the database.
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// The error of redb refusing to open `path`.
fn open_error(path: &Path, e: redb::DatabaseError) -> PersistentError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => PersistentError::Locked {
            path: path.to_owned(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => PersistentError::Damaged {
            path: path.to_owned(),
            detail,
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            PersistentError::Damaged {
                path: path.to_owned(),
                detail: e.to_string(),
            }
        }
        source => PersistentError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// Creates the tables, records or checks the schema version, and runs migrations.
fn prepare_schema(db: &Database, path: &Path) -> Result<(), PersistentError> {
    let txn = begin_write(db)?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
        match found {
            None => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(PersistentError::NewerSchema {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(0) => {
                return Err(PersistentError::InvalidSchema {
                    path: path.to_owned(),
                    found: 0,
                });
            }
            Some(found) => {
                for (index, migration) in MIGRATIONS.iter().enumerate().skip((found - 1) as usize) {
                    let from = index as u64 + 1;
                    tracing::info!(path = %path.display(), from, to = from + 1, "migrating the database");
                    migration(&txn)?;
                }
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            }
        }
    }
    // Create every table, so readers never meet a missing one.
    txn.open_table(PAIRINGS)?;
    txn.open_table(USERS)?;
    txn.open_table(APPS)?;
    txn.open_table(ASSETS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(IDENTITY)?;
    txn.commit()?;
    Ok(())
}

fn load_pairings(db: &Database) -> Result<BTreeMap<Fingerprint, Pairing>, PersistentError> {
    decode_all::<Pairing>(db, PAIRINGS, "pairing")?
        .into_iter()
        .map(|pairing| pairing.map(|p| (p.fingerprint.clone(), p)))
        .collect()
}

/// The users that decode (the others are reported when read).
fn load_users(db: &Database) -> Result<BTreeMap<UserName, User>, PersistentError> {
    Ok(decode_all::<User>(db, USERS, "user")?
        .into_iter()
        .flatten()
        .map(|user| (user.name.clone(), user))
        .collect())
}

/// Reads every value of a string-keyed JSON table, in key order.
fn list_json<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    kind: &'static str,
) -> Result<Vec<T>, PersistentError> {
    decode_all(db, table, kind)?.into_iter().collect()
}

/// Every value of a string-keyed JSON table in key order, each decoded or its decoding error.
fn decode_all<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    kind: &'static str,
) -> Result<Vec<Result<T, PersistentError>>, PersistentError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(table)?;
    let mut out = Vec::with_capacity(table.len()? as usize);
    for entry in table.iter()? {
        let (key, value) = entry?;
        out.push(decode(kind, key.value(), value.value()));
    }
    Ok(out)
}

/// Reads one value of a string-keyed JSON table.
fn get_json<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    kind: &'static str,
    key: &str,
) -> Result<Option<T>, PersistentError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(table)?;
    let value = table.get(key)?;
    value.map(|v| decode(kind, key, v.value())).transpose()
}

/// Inserts or replaces one value of a string-keyed JSON table, durably.
fn put_json(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    bytes: &[u8],
) -> Result<(), PersistentError> {
    let txn = begin_write(db)?;
    txn.open_table(table)?.insert(key, bytes)?;
    txn.commit()?;
    Ok(())
}

/// Removes one value of a string-keyed JSON table, durably; returns the removed bytes.
fn delete_json(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, PersistentError> {
    let txn = begin_write(db)?;
    let removed = txn.open_table(table)?.remove(key)?.map(|v| v.value().to_vec());
    txn.commit()?;
    Ok(removed)
}

/// Pairings in the database, read from an in-memory copy.
#[derive(Debug, Clone)]
pub struct PersistentPairingStore {
    inner: Arc<Inner>,
}

#[async_trait]
impl PairingStore for PersistentPairingStore {
    async fn get(&self, fingerprint: &Fingerprint) -> Result<Option<Pairing>> {
        Ok(self.inner.pairings.read().get(fingerprint).cloned())
    }

    async fn put(&self, pairing: Pairing) -> Result<()> {
        let key = pairing.fingerprint.as_str().to_owned();
        let bytes = encode("pairing", &key, &pairing)?;
        blocking(&self.inner, move |inner| {
            let _order = inner.pairing_writes.lock();
            put_json(inner.db, PAIRINGS, &key, &bytes)?;
            inner
                .pairings
                .write()
                .insert(pairing.fingerprint.clone(), pairing);
            Ok(())
        })
        .await
    }

    async fn delete(&self, fingerprint: &Fingerprint) -> Result<bool> {
        let fingerprint = fingerprint.clone();
        blocking(&self.inner, move |inner| {
            let _order = inner.pairing_writes.lock();
            let removed = delete_json(inner.db, PAIRINGS, fingerprint.as_str())?;
            inner.pairings.write().remove(&fingerprint);
            Ok(removed.is_some())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Pairing>> {
        Ok(self.inner.pairings.read().values().cloned().collect())
    }
}

/// Users in the database; `get` reads an in-memory copy.
#[derive(Debug, Clone)]
pub struct PersistentUserStore {
    inner: Arc<Inner>,
}

#[async_trait]
impl UserStore for PersistentUserStore {
    async fn get(&self, name: &UserName) -> Result<Option<User>> {
        if let Some(user) = self.inner.users.read().get(name) {
            return Ok(Some(user.clone()));
        }
        let name = name.clone();
        blocking(&self.inner, move |inner| {
            get_json(inner.db, USERS, "user", name.as_str())
        })
        .await
    }

    async fn put(&self, user: User) -> Result<()> {
        let bytes = encode("user", user.name.as_str(), &user)?;
        blocking(&self.inner, move |inner| {
            let _order = inner.user_writes.lock();
            put_json(inner.db, USERS, user.name.as_str(), &bytes)?;
            inner.users.write().insert(user.name.clone(), user);
            Ok(())
        })
        .await
    }

    async fn delete(&self, name: &UserName) -> Result<bool> {
        let name = name.clone();
        blocking(&self.inner, move |inner| {
            let _order = inner.user_writes.lock();
            let removed = delete_json(inner.db, USERS, name.as_str())?;
            inner.users.write().remove(&name);
            Ok(removed.is_some())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<User>> {
        blocking(&self.inner, |inner| list_json(inner.db, USERS, "user")).await
    }
}

/// Apps and their art in the database.
#[derive(Debug, Clone)]
pub struct PersistentAppCatalog {
    inner: Arc<Inner>,
}

#[async_trait]
impl AppCatalog for PersistentAppCatalog {
    async fn list(&self) -> Result<Vec<App>> {
        blocking(&self.inner, |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(APPS)?;
            let mut out = Vec::with_capacity(table.len()? as usize);
            for entry in table.iter()? {
                let (key, value) = entry?;
                out.push(decode("app", &key.value().to_string(), value.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn get(&self, id: AppId) -> Result<Option<App>> {
        blocking(&self.inner, move |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(APPS)?;
            let value = table.get(id.get())?;
            value
                .map(|v| decode("app", &id.to_string(), v.value()))
                .transpose()
        })
        .await
    }

    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> {
        blocking(&self.inner, move |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(ASSETS)?;
            let value = table.get(id.get())?;
            Ok(value.map(|v| {
                let (content_type, bytes) = v.value();
                AppAsset {
                    content_type: content_type.to_owned(),
                    bytes: bytes.to_vec(),
                }
            }))
        })
        .await
    }

    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> {
        let bytes = encode("app", &app.id.to_string(), &app)?;
        blocking(&self.inner, move |inner| {
            let txn = begin_write(inner.db)?;
            txn.open_table(APPS)?.insert(app.id.get(), bytes.as_slice())?;
            {
                let mut assets = txn.open_table(ASSETS)?;
                match &asset {
                    Some(asset) => {
                        assets.insert(
                            app.id.get(),
                            (asset.content_type.as_str(), asset.bytes.as_slice()),
                        )?;
                    }
                    None => {
                        assets.remove(app.id.get())?;
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: AppId) -> Result<bool> {
        blocking(&self.inner, move |inner| {
            let txn = begin_write(inner.db)?;
            let existed = txn.open_table(APPS)?.remove(id.get())?.is_some();
            txn.open_table(ASSETS)?.remove(id.get())?;
            txn.commit()?;
            Ok(existed)
        })
        .await
    }
}

/// Sessions in the database.
#[derive(Debug, Clone)]
pub struct PersistentSessionStore {
    inner: Arc<Inner>,
}

#[async_trait]
impl SessionStore for PersistentSessionStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        let id = id.clone();
        blocking(&self.inner, move |inner| {
            get_json(inner.db, SESSIONS, "session", id.as_str())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Session>> {
        blocking(&self.inner, |inner| list_json(inner.db, SESSIONS, "session")).await
    }

    async fn create(&self, session: Session) -> Result<()> {
        let bytes = encode("session", session.id.as_str(), &session)?;
        blocking(&self.inner, move |inner| {
            let txn = begin_write(inner.db)?;
            {
                let mut table = txn.open_table(SESSIONS)?;
                if table.get(session.id.as_str())?.is_some() {
                    return Err(PersistentError::Rejected(Error::AlreadyExists {
                        kind: "session",
                        key: session.id.to_string(),
                    }));
                }
                table.insert(session.id.as_str(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn update(&self, session: Session) -> Result<()> {
        let bytes = encode("session", session.id.as_str(), &session)?;
        blocking(&self.inner, move |inner| {
            let txn = begin_write(inner.db)?;
            {
                let mut table = txn.open_table(SESSIONS)?;
                if table.get(session.id.as_str())?.is_none() {
                    return Err(PersistentError::Rejected(Error::not_found(
                        "session",
                        &session.id,
                    )));
                }
                table.insert(session.id.as_str(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Session>> {
        let id = id.clone();
        blocking(&self.inner, move |inner| {
            let removed = delete_json(inner.db, SESSIONS, id.as_str())?;
            removed
                .map(|bytes| decode("session", id.as_str(), &bytes))
                .transpose()
        })
        .await
    }
}

/// The server identity in the database.
#[derive(Debug, Clone)]
pub struct PersistentIdentityStore {
    inner: Arc<Inner>,
}

#[async_trait]
impl IdentityStore for PersistentIdentityStore {
    async fn load(&self) -> Result<Option<ServerIdentity>> {
        blocking(&self.inner, |inner| {
            get_json(inner.db, IDENTITY, "identity", IDENTITY_KEY)
        })
        .await
    }

    async fn create_if_absent(&self, identity: ServerIdentity) -> Result<ServerIdentity> {
        let bytes = encode("identity", IDENTITY_KEY, &identity)?;
        blocking(&self.inner, move |inner| {
            // Write transactions are serialised, so the check and the insert are atomic.
            let txn = begin_write(inner.db)?;
            {
                let mut table = txn.open_table(IDENTITY)?;
                if let Some(existing) = table.get(IDENTITY_KEY)? {
                    return decode("identity", IDENTITY_KEY, existing.value());
                }
                table.insert(IDENTITY_KEY, bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(identity)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn pairing(n: u8) -> Pairing {
        Pairing {
            fingerprint: Fingerprint::of_der(&[n; 32]),
            cert_pem: format!("-----BEGIN CERTIFICATE-----\n{n}\n-----END CERTIFICATE-----\n"),
            user: UserName::default_user(),
            device_name: Some("roth".into()),
            // Fixed, so that two calls give equal pairings whenever they run.
            paired_at: 1_700_000_000 + u64::from(n),
        }
    }

    #[tokio::test]
    async fn creates_private_directory_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/direwolf");
        let stores = PersistentStores::open(&dir).unwrap();
        assert_eq!(stores.path(), dir.join(DB_FILE_NAME));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE_NAME)), 0o600);
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let stores = open(tmp.path()).unwrap();
            stores.pairings.put(pairing(1)).await.unwrap();
            stores.pairings.put(pairing(2)).await.unwrap();
            assert!(stores.pairings.delete(&pairing(2).fingerprint).await.unwrap());
            stores
                .users
                .put(User::new("alice".parse().unwrap()))
                .await
                .unwrap();
            let app = App::new(AppId::new(7).unwrap(), "Ωmega").unwrap();
            let png = AppAsset::png(b"\x89PNG\r\n\x1a\nart".to_vec()).unwrap();
            stores.apps.put(app, Some(png)).await.unwrap();
        }
        let stores = open(tmp.path()).unwrap();
        assert_eq!(stores.pairings.list().await.unwrap(), vec![pairing(1)]);
        assert_eq!(stores.users.list().await.unwrap().len(), 1);
        let asset = stores.apps.asset(AppId::new(7).unwrap()).await.unwrap().unwrap();
        assert_eq!(asset.bytes, b"\x89PNG\r\n\x1a\nart");
        assert_eq!(stores.apps.list().await.unwrap()[0].title, "Ωmega");
    }

    #[tokio::test]
    async fn second_open_is_refused_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = PersistentStores::open(tmp.path()).unwrap();
        let err = PersistentStores::open(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains(DB_FILE_NAME), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(PersistentStores::open(tmp.path()).unwrap());
        {
            let db = Database::create(tmp.path().join(DB_FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = PersistentStores::open(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::Backend { backend: "redb", .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("schema version 2") && text.contains("newer"),
            "{text}"
        );
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DB_FILE_NAME), vec![b'x'; 8192]).unwrap();
        let err = PersistentStores::open(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::Backend { backend: "redb", .. }), "{err:?}");
    }

    #[test]
    fn schema_version_is_recorded_and_every_old_version_has_a_migration() {
        assert_eq!(MIGRATIONS.len() as u64, SCHEMA_VERSION - 1);
        let tmp = tempfile::tempdir().unwrap();
        let stores = PersistentStores::open(tmp.path()).unwrap();
        let db = stores.inner.open_db().unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(
            meta.get(SCHEMA_VERSION_KEY).unwrap().unwrap().value(),
            SCHEMA_VERSION
        );
    }

    #[tokio::test]
    async fn undecodable_values_are_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = PersistentStores::open(tmp.path()).unwrap();
        put_json(&stores.inner.open_db().unwrap(), USERS, "bob", b"{not json").unwrap();
        let err = stores
            .user_store()
            .get(&"bob".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot be decoded"), "{err}");
    }

    /// A paired client's user is read on every HTTPS request: from memory, without the blocking
    /// pool (this test runs outside any tokio runtime, where `spawn_blocking` panics). A stored
    /// user that does not decode neither stops the database from opening nor goes unreported.
    #[test]
    fn users_are_read_from_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let alice: UserName = "alice".parse().unwrap();
        {
            let stores = PersistentStores::open(tmp.path()).unwrap();
            rt.block_on(stores.user_store().put(User::new(alice.clone())))
                .unwrap();
            put_json(&stores.inner.open_db().unwrap(), USERS, "bob", b"{not json").unwrap();
        }
        let stores = PersistentStores::open(tmp.path()).unwrap();
        let users = stores.user_store();
        let got = futures::executor::block_on(users.get(&alice)).unwrap();
        assert_eq!(got, Some(User::new(alice.clone())));
        let err = rt.block_on(users.get(&"bob".parse().unwrap())).unwrap_err();
        assert!(err.to_string().contains("cannot be decoded"), "{err}");
        assert!(rt.block_on(users.delete(&alice)).unwrap());
        assert_eq!(rt.block_on(users.get(&alice)).unwrap(), None);
        let carol: UserName = "carol".parse().unwrap();
        rt.block_on(users.put(User::new(carol.clone()))).unwrap();
        let got = futures::executor::block_on(users.get(&carol)).unwrap();
        assert_eq!(got, Some(User::new(carol)));
    }
}
