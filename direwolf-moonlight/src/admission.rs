//! Connection admission: which accepted connections the server serves, so that no single source
//! can take the slots every client shares.
//!
//! - Each [`Source`] (an IPv4 address and an IPv6 /64 by default) holds at most
//!   [`ConnectionLimits::per_source`] connections per port (HTTP and HTTPS counted apart);
//!   more from it are closed at once.
//! - Of [`ConnectionLimits::max_connections`], [`ConnectionLimits::reserved_for_known`] slots
//!   are kept for *known* sources: addresses from which a paired client completed a TLS
//!   handshake recently. A flood of strangers fills only the shared slots, and a paired client
//!   still gets in.
//!
//! Stalled connections give their slot back within the handshake and header timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::ConnectionLimits;
use crate::source::Source;

/// How long a source stays known after its last paired handshake.
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);
/// Known sources remembered at most (the least recently seen are forgotten first).
const KNOWN_MAX: usize = 4096;

/// The port a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Port {
    /// GameStream HTTP.
    Http,
    /// GameStream HTTPS.
    Https,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source already holds its share of this port's connections.
    SourceFull,
    /// Only slots reserved for known sources are free, and this source is not known.
    OnlyReservedFree,
}

/// The admission state of one server.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: ConnectionLimits,
    shared: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    open: Mutex<HashMap<(Port, Source), usize>>,
    known: Mutex<HashMap<Source, Instant>>,
}

/// An admitted connection: its slot is given back when this is dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    key: (Port, Source),
    _slot: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        let total = limits.max_connections.max(1);
        let reserved = limits.reserved_for_known.min(total - 1);
        Arc::new(Admission {
            limits,
            shared: Arc::new(Semaphore::new(total - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
            open: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The source of `ip` under this server's prefixes.
    pub(crate) fn source(&self, ip: IpAddr) -> Source {
        Source::of(ip, self.limits.prefixes)
    }

    /// Waits until a slot of any kind is free (so that a full server stops accepting and lets
    /// the kernel's backlog hold new connections).
    pub(crate) async fn any_slot_free(&self) {
        loop {
            if self.shared.available_permits() > 0 || self.reserved.available_permits() > 0 {
                return;
            }
            // Slots come back on connection ends; a short poll keeps this free of wake-up lists.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Admits a connection from `ip` on `port`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, port: Port, ip: IpAddr) -> Result<Ticket, Refusal> {
        let source = self.source(ip);
        let key = (port, source);
        let mut open = self.open.lock();
        let count = open.get(&key).copied().unwrap_or(0);
        if count >= self.limits.per_source.max(1) {
            return Err(Refusal::SourceFull);
        }
        let slot = match self.shared.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) if self.is_known(source) => self
                .reserved
                .clone()
                .try_acquire_owned()
                .map_err(|_| Refusal::OnlyReservedFree)?,
            Err(_) => return Err(Refusal::OnlyReservedFree),
        };
        open.insert(key, count + 1);
        Ok(Ticket {
            admission: self.clone(),
            key,
            _slot: slot,
        })
    }

    /// Remembers that a paired client completed a TLS handshake from `ip`.
    pub(crate) fn mark_known(&self, ip: IpAddr) {
        let source = self.source(ip);
        let now = Instant::now();
        let mut known = self.known.lock();
        if known.len() >= KNOWN_MAX && !known.contains_key(&source) {
            known.retain(|_, seen| now.duration_since(*seen) < KNOWN_FOR);
            if known.len() >= KNOWN_MAX
                && let Some(oldest) = known.iter().min_by_key(|(_, seen)| **seen).map(|(s, _)| *s)
            {
                known.remove(&oldest);
            }
        }
        known.insert(source, now);
    }

    fn is_known(&self, source: Source) -> bool {
        self.known
            .lock()
            .get(&source)
            .is_some_and(|seen| seen.elapsed() < KNOWN_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserved: usize, per_source: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            reserved_for_known: reserved,
            per_source,
            ..ConnectionLimits::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share_and_gets_it_back() {
        let admission = Admission::new(limits(100, 0, 2));
        let a = ip("127.0.0.2");
        let first = admission.admit(Port::Https, a).unwrap();
        let _second = admission.admit(Port::Https, a).unwrap();
        assert_eq!(admission.admit(Port::Https, a).unwrap_err(), Refusal::SourceFull);
        // The other port, and another source, are counted apart.
        assert!(admission.admit(Port::Http, a).is_ok());
        assert!(admission.admit(Port::Https, ip("127.0.0.3")).is_ok());
        drop(first);
        assert!(admission.admit(Port::Https, a).is_ok());
    }

    #[test]
    fn reserved_slots_are_only_for_known_sources() {
        let admission = Admission::new(limits(3, 1, 10));
        let stranger = ip("198.51.100.1");
        let _a = admission.admit(Port::Http, stranger).unwrap();
        let _b = admission.admit(Port::Http, stranger).unwrap();
        assert_eq!(
            admission.admit(Port::Http, stranger).unwrap_err(),
            Refusal::OnlyReservedFree
        );
        let paired = ip("203.0.113.5");
        assert_eq!(
            admission.admit(Port::Https, paired).unwrap_err(),
            Refusal::OnlyReservedFree
        );
        admission.mark_known(paired);
        let reserved = admission.admit(Port::Https, paired).unwrap();
        assert_eq!(
            admission.admit(Port::Https, paired).unwrap_err(),
            Refusal::OnlyReservedFree
        );
        drop(reserved);
        assert!(admission.admit(Port::Https, paired).is_ok());
    }

    #[test]
    fn the_known_table_stays_bounded() {
        let admission = Admission::new(limits(10, 1, 10));
        for i in 0..(KNOWN_MAX as u32 + 10) {
            admission.mark_known(IpAddr::V4((0x0a00_0000 + i).into()));
        }
        assert_eq!(admission.known.lock().len(), KNOWN_MAX);
        let last = IpAddr::V4((0x0a00_0000 + KNOWN_MAX as u32 + 9).into());
        assert!(admission.is_known(admission.source(last)));
    }
}
