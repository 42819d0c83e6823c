//! Reopening the database after an I/O error.
//!
//! After one failed read or write (a full disk, `EPERM`, `EIO`), redb refuses every later call
//! with "Previous I/O error occurred. Please close and re-open the database". So the call that
//! met the error is answered with it, the database is closed (dropped, which releases the file
//! and its lock), and it is reopened, with redb's crash recovery and the pairing and user copies
//! reloaded, by the next call that needs it; without calls, a thread retries every
//! [`RETRY`], so that readiness ([`Inner::health`]) comes back by itself once the disk is fine.
//! While it is closed, calls fail with [`PersistentError::Closed`] after trying to reopen it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLockReadGuard;

use super::{Inner, Open, PersistentError, open_database};

/// How often a closed database is retried without calls.
const RETRY: Duration = Duration::from_secs(2);

impl PersistentError {
    /// An error after which redb refuses every call until the database is reopened.
    fn is_io(&self) -> bool {
        matches!(
            self,
            PersistentError::Redb(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

impl Inner {
    /// Runs `f` on the open database, reopening it first if it is closed; closes it if `f`
    /// meets an I/O error (which `f`'s caller then receives).
    pub(super) fn with_db<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&Open<'_>) -> Result<T, PersistentError>,
    ) -> Result<T, PersistentError> {
        let (generation, result) = {
            let db = self.open_db()?;
            let generation = self.generation.load(Ordering::SeqCst);
            (generation, f(&Open { db: &db, inner: self }))
        };
        if let Err(e) = &result
            && e.is_io()
        {
            self.close(e, generation);
        }
        result
    }

    /// The open database, reopened if an I/O error closed it.
    pub(super) fn open_db(
        &self,
    ) -> Result<parking_lot::MappedRwLockReadGuard<'_, redb::Database>, PersistentError> {
        if let Ok(db) = RwLockReadGuard::try_map(self.db.read(), Option::as_ref) {
            return Ok(db);
        }
        self.reopen()?;
        RwLockReadGuard::try_map(self.db.read(), Option::as_ref)
            .map_err(|_| self.closed("it failed again".to_owned()))
    }

    /// Reopens the database if it is closed.
    pub(super) fn reopen(&self) -> Result<(), PersistentError> {
        let mut slot = self.db.write();
        if slot.is_some() {
            return Ok(());
        }
        // A database that went away meanwhile is not replaced by an empty one (a new identity).
        let (db, pairings, users) =
            open_database(&self.path, false).map_err(|e| self.closed(e.to_string()))?;
        *self.pairings.write() = pairings;
        *self.users.write() = users;
        *slot = Some(db);
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.fault.lock() = None;
        tracing::info!(path = %self.path.display(), "reopened the database after an I/O error");
        Ok(())
    }

    /// Closes the database after the I/O error `e` met in its opening `generation` (not a
    /// database reopened since), and starts retrying to reopen it.
    fn close(self: &Arc<Self>, e: &PersistentError, generation: u64) {
        let mut slot = self.db.write();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let Some(db) = slot.take() else {
            return;
        };
        // Both under the lock, so that a reopening neither meets the file still locked by this
        // handle nor runs before the fault is recorded (and then sees it cleared). redb writes
        // nothing more after an I/O error: dropping only releases the file.
        drop(db);
        *self.fault.lock() = Some(e.to_string());
        drop(slot);
        tracing::error!(
            path = %self.path.display(),
            error = %e,
            "database I/O error: closed the database; it is reopened on the next request and \
             retried every {} s",
            RETRY.as_secs()
        );
        if !self.healing.swap(true, Ordering::SeqCst) {
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("direwolf-db-reopen".to_owned())
                .spawn(move || retry(&weak));
            if let Err(e) = spawned {
                self.healing.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "cannot start the thread that reopens the database");
            }
        }
    }

    /// `Ok` while the database is open, else why it is closed.
    pub(super) fn health(&self) -> Result<(), String> {
        match self.fault.lock().as_deref() {
            None => Ok(()),
            Some(fault) => Err(format!(
                "the database {} is closed after an I/O error ({fault}); reopening it is retried",
                self.path.display()
            )),
        }
    }

    fn closed(&self, reopen: String) -> PersistentError {
        PersistentError::Closed {
            path: self.path.clone(),
            fault: self.fault.lock().clone().unwrap_or_default(),
            reopen,
        }
    }
}

/// Retries reopening until the database is open or the stores are dropped.
fn retry(weak: &Weak<Inner>) {
    loop {
        std::thread::sleep(RETRY);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match inner.reopen() {
            Ok(()) => {
                inner.healing.store(false, Ordering::SeqCst);
                // A fault between the reopen and the store above saw `healing` set and started
                // no thread: this one goes on.
                if inner.db.read().is_some() || inner.healing.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "the database cannot be reopened yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent::PersistentStores;
    use crate::{Fingerprint, Pairing, PairingStore, UserName};

    fn pairing(n: u8) -> Pairing {
        Pairing {
            fingerprint: Fingerprint::of_der(&[n; 32]),
            cert_pem: "pem".into(),
            user: UserName::default_user(),
            device_name: None,
            paired_at: 1_700_000_000,
        }
    }

    /// Closes the database as an I/O error in a call would.
    fn fail(stores: &PersistentStores) {
        let generation = stores.inner.generation.load(Ordering::SeqCst);
        stores
            .inner
            .close(&PersistentError::Redb(redb::Error::PreviousIo), generation);
    }

    #[tokio::test]
    async fn the_next_call_reopens_a_closed_database() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = PersistentStores::open(tmp.path()).unwrap();
        let pairings = stores.pairing_store();
        pairings.put(pairing(1)).await.unwrap();
        fail(&stores);
        let why = stores.health().unwrap_err();
        assert!(why.contains("closed after an I/O error"), "{why}");
        pairings.put(pairing(2)).await.unwrap();
        assert_eq!(stores.health(), Ok(()));
        assert_eq!(pairings.list().await.unwrap(), vec![pairing(1), pairing(2)]);
    }

    #[tokio::test]
    async fn an_error_met_before_a_reopening_does_not_close_the_new_database() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = PersistentStores::open(tmp.path()).unwrap();
        let stale = stores.inner.generation.load(Ordering::SeqCst);
        fail(&stores);
        stores.inner.reopen().unwrap();
        stores
            .inner
            .close(&PersistentError::Redb(redb::Error::PreviousIo), stale);
        assert_eq!(stores.health(), Ok(()));
    }

    #[tokio::test]
    async fn a_database_gone_while_closed_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = PersistentStores::open(tmp.path()).unwrap();
        fail(&stores);
        std::fs::remove_file(stores.path()).unwrap();
        let err = stores.pairing_store().put(pairing(1)).await.unwrap_err();
        assert!(matches!(err, crate::Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot be reopened yet"), "{err}");
        assert!(!stores.path().exists(), "a new database was created");
        assert!(stores.health().is_err());
    }
}
