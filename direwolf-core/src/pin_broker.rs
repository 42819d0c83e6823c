//! PIN delivery: the bridge between a held pairing phase 1 and the person typing the PIN.
//!
//! The Moonlight client shows a PIN; the person types it into direwolf's PIN page
//! (`/pin/#SECRET`), usually from another device. Phase 1 of the pairing [opens](PinBroker::open)
//! a pending entry and [waits](PinBroker::wait) on it; the PIN page [submits](PinBroker::submit)
//! to it. With several proxy replicas the submission may reach another replica than the one
//! holding phase 1, so a Kubernetes broker delivers through shared state; the in-memory broker
//! here serves one process.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::unix_now;
use crate::error::{Error, Result};
use crate::ids::{PairSecret, Pin, UserName};

/// What is known about a pairing waiting for its PIN (shown to whoever enters PINs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPin {
    /// The secret naming this entry.
    pub secret: PairSecret,
    /// The address the pairing client connected from.
    pub client_ip: IpAddr,
    /// The client's `devicename`, if sent.
    pub device_name: Option<String>,
    /// When phase 1 arrived (Unix seconds).
    pub opened_at: u64,
}

/// A PIN as submitted on the PIN page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinSubmission {
    /// The four digits.
    pub pin: Pin,
    /// The user the pairing will belong to, if the page says (otherwise the server's default).
    pub user: Option<UserName>,
}

/// Why waiting for or submitting a PIN failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// No pending pairing has this secret (never existed, already used, or expired).
    #[error("no pairing is waiting for this secret")]
    UnknownSecret,
    /// Nobody entered a PIN in time.
    #[error("PIN entry timed out")]
    TimedOut,
    /// The entry was closed while waiting (a newer attempt replaced it, or it was cancelled).
    #[error("the pairing attempt was closed")]
    Closed,
    /// The broker's backend failed.
    #[error(transparent)]
    Backend(#[from] Error),
}

/// Delivers PINs from the PIN page to held pairing requests.
#[async_trait]
pub trait PinBroker: Send + Sync + Debug + 'static {
    /// Registers a pairing waiting for its PIN and returns its fresh secret.
    /// [`Error::Unavailable`] when too many pairings are pending.
    async fn open(&self, pending: PendingPinRequest) -> Result<PairSecret>;

    /// Waits until a PIN is submitted for `secret`, at most `timeout`. Cancel-safe: dropping the
    /// future leaves the entry open (call [`PinBroker::close`]).
    async fn wait(&self, secret: &PairSecret, timeout: Duration) -> Result<PinSubmission, PinError>;

    /// Delivers a PIN. Each entry takes one submission; a second one for the same secret gets
    /// [`PinError::UnknownSecret`].
    async fn submit(&self, secret: &PairSecret, submission: PinSubmission) -> Result<(), PinError>;

    /// Removes an entry; a pending [`PinBroker::wait`] on it ends with [`PinError::Closed`].
    async fn close(&self, secret: &PairSecret);

    /// The entries still waiting for a PIN.
    async fn pending(&self) -> Result<Vec<PendingPin>>;
}

/// What phase 1 knows when it opens an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPinRequest {
    /// The pairing client's address.
    pub client_ip: IpAddr,
    /// Its `devicename`, if sent.
    pub device_name: Option<String>,
}

#[derive(Debug)]
struct Entry {
    info: PendingPin,
    submitted: bool,
    slot: watch::Sender<Option<PinSubmission>>,
}

/// A [`PinBroker`] for one process.
#[derive(Debug, Clone)]
pub struct InMemoryPinBroker {
    entries: Arc<Mutex<HashMap<PairSecret, Entry>>>,
    max_pending: usize,
}

impl InMemoryPinBroker {
    /// The default bound on pending entries.
    pub const DEFAULT_MAX_PENDING: usize = 64;

    /// A broker holding at most `max_pending` entries at once.
    pub fn new(max_pending: usize) -> Self {
        InMemoryPinBroker {
            entries: Arc::default(),
            max_pending,
        }
    }
}

impl Default for InMemoryPinBroker {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_PENDING)
    }
}

#[async_trait]
impl PinBroker for InMemoryPinBroker {
    async fn open(&self, pending: PendingPinRequest) -> Result<PairSecret> {
        let mut entries = self.entries.lock();
        if entries.len() >= self.max_pending {
            return Err(Error::unavailable(format!(
                "too many pairings are waiting for a PIN ({}); try again later",
                self.max_pending
            )));
        }
        let secret = loop {
            let secret = PairSecret::generate();
            if !entries.contains_key(&secret) {
                break secret;
            }
        };
        let (slot, _) = watch::channel(None);
        let info = PendingPin {
            secret: secret.clone(),
            client_ip: pending.client_ip,
            device_name: pending.device_name,
            opened_at: unix_now(),
        };
        entries.insert(
            secret.clone(),
            Entry {
                info,
                submitted: false,
                slot,
            },
        );
        Ok(secret)
    }

    async fn wait(&self, secret: &PairSecret, timeout: Duration) -> Result<PinSubmission, PinError> {
        let mut receiver = match self.entries.lock().get(secret) {
            Some(entry) => entry.slot.subscribe(),
            None => return Err(PinError::UnknownSecret),
        };
        let outcome = tokio::time::timeout(timeout, receiver.wait_for(Option::is_some)).await;
        match outcome {
            Err(_) => Err(PinError::TimedOut),
            Ok(Err(_closed)) => Err(PinError::Closed),
            Ok(Ok(value)) => value.clone().ok_or(PinError::Closed),
        }
    }

    async fn submit(&self, secret: &PairSecret, submission: PinSubmission) -> Result<(), PinError> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(secret).ok_or(PinError::UnknownSecret)?;
        if entry.submitted {
            return Err(PinError::UnknownSecret);
        }
        entry.submitted = true;
        entry.slot.send_replace(Some(submission));
        Ok(())
    }

    async fn close(&self, secret: &PairSecret) {
        // Dropping the sender wakes every waiter with `Closed` (unless a PIN arrived first).
        self.entries.lock().remove(secret);
    }

    async fn pending(&self) -> Result<Vec<PendingPin>> {
        let entries = self.entries.lock();
        let mut list: Vec<PendingPin> = entries
            .values()
            .filter(|e| !e.submitted)
            .map(|e| e.info.clone())
            .collect();
        list.sort_by_key(|p| p.opened_at);
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PendingPinRequest {
        PendingPinRequest {
            client_ip: "192.0.2.1".parse().unwrap(),
            device_name: Some("roth".into()),
        }
    }

    fn submission() -> PinSubmission {
        PinSubmission {
            pin: "1234".parse().unwrap(),
            user: None,
        }
    }

    #[tokio::test]
    async fn submit_releases_waiter() {
        let broker = InMemoryPinBroker::default();
        let secret = broker.open(request()).await.unwrap();
        assert_eq!(broker.pending().await.unwrap().len(), 1);
        let waiter = {
            let broker = broker.clone();
            let secret = secret.clone();
            tokio::spawn(async move { broker.wait(&secret, Duration::from_secs(5)).await })
        };
        broker.submit(&secret, submission()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter should be released by the submission")
            .unwrap()
            .unwrap();
        assert_eq!(got.pin.expose(), "1234");
        assert!(matches!(
            broker.submit(&secret, submission()).await,
            Err(PinError::UnknownSecret)
        ));
        assert!(broker.pending().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn submission_before_wait_is_kept() {
        let broker = InMemoryPinBroker::default();
        let secret = broker.open(request()).await.unwrap();
        broker.submit(&secret, submission()).await.unwrap();
        assert!(broker.wait(&secret, Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn timeouts_close_and_unknown_secrets() {
        let broker = InMemoryPinBroker::default();
        let secret = broker.open(request()).await.unwrap();
        assert!(matches!(
            broker.wait(&secret, Duration::from_millis(10)).await,
            Err(PinError::TimedOut)
        ));
        let waiter = {
            let broker = broker.clone();
            let secret = secret.clone();
            tokio::spawn(async move { broker.wait(&secret, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        broker.close(&secret).await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("close should wake the waiter")
            .unwrap();
        assert!(matches!(
            outcome,
            Err(PinError::Closed) | Err(PinError::UnknownSecret)
        ));
        let unknown = PairSecret::generate();
        assert!(matches!(
            broker.submit(&unknown, submission()).await,
            Err(PinError::UnknownSecret)
        ));
        assert!(matches!(
            broker.wait(&unknown, Duration::from_millis(1)).await,
            Err(PinError::UnknownSecret)
        ));
    }

    #[tokio::test]
    async fn pending_entries_are_bounded() {
        let broker = InMemoryPinBroker::new(2);
        broker.open(request()).await.unwrap();
        let second = broker.open(request()).await.unwrap();
        assert!(matches!(
            broker.open(request()).await,
            Err(Error::Unavailable { .. })
        ));
        broker.close(&second).await;
        assert!(broker.open(request()).await.is_ok());
    }
}
