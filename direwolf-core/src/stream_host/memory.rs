//! [`InMemoryStreamHost`]: a streaming host in memory, with the failures of a real one on demand.
//!
//! It keeps sessions in a map, emits [`HostEvent`]s as Wolf does (a stopped session, whether by
//! the caller or by the host itself, is reported as [`HostEvent::SessionStopped`]) and can be
//! told to fail like a real host: down, refusing, slow, or leaving an add unanswered while the
//! session still appears later ([`HostBehaviour`]). With [`InMemoryStreamHost::with_shared_ids`]
//! every session gets the one id Wolf gives client-less sessions (`docs/protocol/wolf-api.md`
//! § Identifiers).
//!
//! ```
//! use std::net::Ipv4Addr;
//!
//! use direwolf_core::stream_host::{HostSessionRequest, InMemoryStreamHost, StreamHost};
//! use direwolf_core::{AesKey, RiKeyId, StreamKeys, VideoMode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), direwolf_core::stream_host::HostError> {
//! let host = InMemoryStreamHost::new("gpu-1");
//! let request = HostSessionRequest {
//!     client_ip: "192.0.2.7".parse().unwrap(),
//!     keys: StreamKeys { aes_key: AesKey::new([7; 16]), aes_iv: RiKeyId::from_bits(1) },
//!     rtsp_fake_ip: Ipv4Addr::new(198, 18, 0, 1),
//!     mode: VideoMode::DEFAULT,
//!     audio_channels: 2,
//!     host_app_id: None,
//! };
//! let id = host.add_session(&request).await?;
//! assert_eq!(host.list_sessions().await?[0].id, id);
//! host.stop_session(&id).await?;
//! assert_eq!(host.session_count(), 0);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast, watch};

use super::{HostError, HostEvent, HostEvents, HostSessionInfo, HostSessionRequest, StreamHost};

/// The id Wolf gives every session created without a client (`docs/protocol/wolf-api.md`
/// § Identifiers).
pub const WOLF_SHARED_SESSION_ID: &str = "6142509188972423790";

/// How an [`InMemoryStreamHost`] answers the calls that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostBehaviour {
    /// Every call works at once.
    Normal,
    /// Every call fails with [`HostError::Unreachable`].
    Down,
    /// Every call fails with [`HostError::Refused`].
    Refuse,
    /// Every call works after this delay.
    Slow(Duration),
    /// `add_session` answers after this long, and creates the session then even if the caller
    /// gave up meanwhile (a Wolf handler runs to its end); other calls are not delayed.
    Late(Duration),
    /// `add_session` fails at once with [`HostError::NoAnswer`] (the caller's own timeout, or a
    /// connection lost after the request went out) and the host creates the session this much
    /// later; other calls work.
    NoAnswer(Duration),
    /// `add_session` fails at once with [`HostError::NoAnswer`] and no session ever appears (the
    /// host crashed on the request); other calls work.
    Lost,
}

/// Sessions by id, shared with the tasks that create late sessions.
type Sessions = Arc<Mutex<BTreeMap<String, HostSessionRequest>>>;

/// A streaming host in memory: sessions in a map, events as Wolf sends them, and the failures of
/// a real host on demand ([`HostBehaviour`]).
#[derive(Debug)]
pub struct InMemoryStreamHost {
    name: String,
    behaviour: Mutex<HostBehaviour>,
    sessions: Sessions,
    /// Sessions created by a [`HostBehaviour::Late`] or [`HostBehaviour::NoAnswer`] add.
    late: Arc<AtomicU32>,
    /// `add_session` calls received so far.
    adds: watch::Sender<u32>,
    /// While set, each `add_session` waits for a permit of this gate once received.
    add_gate: Mutex<Option<Arc<Semaphore>>>,
    next_id: AtomicU32,
    events: broadcast::Sender<HostEvent>,
    shared_ids: bool,
}

impl InMemoryStreamHost {
    /// A host named `name` that works normally and gives each session its own id.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryStreamHost {
            name: name.into(),
            behaviour: Mutex::new(HostBehaviour::Normal),
            sessions: Arc::default(),
            late: Arc::default(),
            adds: watch::Sender::new(0),
            add_gate: Mutex::new(None),
            next_id: AtomicU32::new(1),
            events: broadcast::channel(64).0,
            shared_ids: false,
        }
    }

    /// Gives every session [`WOLF_SHARED_SESSION_ID`], as Wolf does for client-less sessions.
    #[must_use]
    pub fn with_shared_ids(mut self) -> Self {
        self.shared_ids = true;
        self
    }

    /// Changes how the following calls are answered.
    pub fn set_behaviour(&self, behaviour: HostBehaviour) {
        *self.behaviour.lock() = behaviour;
    }

    /// Makes the following `add_session` calls wait once received (a host still busy with
    /// them); each permit added to the returned gate lets one go on.
    pub fn hold_adds(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.add_gate.lock() = Some(gate.clone());
        gate
    }

    /// Lets later `add_session` calls through at once again (calls already waiting stay on
    /// their gate).
    pub fn release_adds(&self) {
        *self.add_gate.lock() = None;
    }

    /// How many `add_session` calls the host received.
    pub fn adds(&self) -> u32 {
        *self.adds.borrow()
    }

    /// The count of `add_session` calls received, to wait on.
    pub fn add_calls(&self) -> watch::Receiver<u32> {
        self.adds.subscribe()
    }

    /// How many sessions the host runs.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The requests of the sessions the host runs, in id order.
    pub fn requests(&self) -> Vec<HostSessionRequest> {
        self.sessions.lock().values().cloned().collect()
    }

    /// The ids of the sessions the host runs, in order.
    pub fn session_ids(&self) -> Vec<String> {
        self.sessions.lock().keys().cloned().collect()
    }

    /// Adds a session the host runs without having been asked through this API (one started
    /// before direwolf, or by someone else).
    pub fn insert_session(&self, id: impl Into<String>, request: HostSessionRequest) {
        self.sessions.lock().insert(id.into(), request);
    }

    /// How many sessions were created late (after an add that was not answered in time).
    pub fn late_sessions(&self) -> u32 {
        self.late.load(Ordering::Relaxed)
    }

    /// The host ends a session by itself (its app exited) and reports it.
    pub fn end_session(&self, id: &str) {
        self.sessions.lock().remove(id);
        let _ = self.events.send(HostEvent::SessionStopped { id: id.to_owned() });
    }

    /// Reports `event` to every event stream.
    pub fn send_event(&self, event: HostEvent) {
        let _ = self.events.send(event);
    }

    /// Applies the current behaviour to a call (delays, failures).
    async fn gate(&self) -> Result<(), HostError> {
        let behaviour = *self.behaviour.lock();
        match behaviour {
            HostBehaviour::Down => Err(HostError::Unreachable {
                host: self.name.clone(),
                message: "the in-memory host is down".into(),
            }),
            HostBehaviour::Refuse => Err(HostError::Refused {
                host: self.name.clone(),
                message: "the in-memory host refuses".into(),
            }),
            HostBehaviour::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Counts an add and waits at the gate, if one is set.
    async fn receive_add(&self) {
        self.adds.send_modify(|n| *n += 1);
        let gate = self.add_gate.lock().clone();
        if let Some(gate) = gate
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
    }

    fn next_id(&self) -> String {
        if self.shared_ids {
            WOLF_SHARED_SESSION_ID.to_owned()
        } else {
            self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
        }
    }

    /// Creates the session `id` after `delay`, whatever happens to the call meanwhile.
    fn create_later(&self, id: String, request: &HostSessionRequest, delay: Duration) {
        let (sessions, late, request) = (self.sessions.clone(), self.late.clone(), request.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sessions.lock().insert(id, request);
            late.fetch_add(1, Ordering::Relaxed);
        });
    }

    fn no_answer(&self) -> HostError {
        HostError::NoAnswer {
            host: self.name.clone(),
            message: "the in-memory host did not answer".into(),
        }
    }
}

#[async_trait]
impl StreamHost for InMemoryStreamHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn add_session(&self, request: &HostSessionRequest) -> Result<String, HostError> {
        self.receive_add().await;
        self.gate().await?;
        let id = self.next_id();
        let behaviour = *self.behaviour.lock();
        match behaviour {
            HostBehaviour::Lost => Err(self.no_answer()),
            HostBehaviour::NoAnswer(delay) => {
                self.create_later(id, request, delay);
                Err(self.no_answer())
            }
            HostBehaviour::Late(delay) => {
                self.create_later(id.clone(), request, delay);
                tokio::time::sleep(delay).await;
                Ok(id)
            }
            _ => {
                self.sessions.lock().insert(id.clone(), request.clone());
                Ok(id)
            }
        }
    }

    async fn stop_session(&self, id: &str) -> Result<(), HostError> {
        self.gate().await?;
        if self.sessions.lock().remove(id).is_none() {
            return Err(HostError::NoSuchSession {
                host: self.name.clone(),
                id: id.to_owned(),
            });
        }
        let _ = self.events.send(HostEvent::SessionStopped { id: id.to_owned() });
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<HostSessionInfo>, HostError> {
        self.gate().await?;
        Ok(self
            .sessions
            .lock()
            .iter()
            .map(|(id, request)| HostSessionInfo {
                id: id.clone(),
                rtsp_fake_ip: Some(request.rtsp_fake_ip.to_string()),
                client_ip: request.client_ip.to_string(),
                aes_key_hex: Some(request.keys.aes_key.to_hex()),
            })
            .collect())
    }

    fn events(&self) -> HostEvents {
        let receiver = self.events.subscribe();
        Box::pin(stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((event, receiver)),
                // Events were missed: the consumer must re-list, as after a reconnection.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((HostEvent::Resync, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }
}
