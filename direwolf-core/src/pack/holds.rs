//! Guards over the [`Ledger`] that give back what a placement took however it ends: success,
//! failure, or its future dropped mid-await.

use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::warn;

use super::Pack;
use super::ledger::Live;

/// One capacity slot of a host, held by a placement in progress (or a session being stopped or
/// re-added) and given back when dropped.
pub(super) struct SlotHold<'a> {
    pack: &'a Pack,
    host: usize,
    /// The fake RTSP address of a `sessions/add` sent to the host whose session is not yet
    /// accounted for (unanswered, or answered but neither recorded as live nor stopped). If the
    /// hold is dropped then (the placement was abandoned mid-await), the host may have created
    /// or may still create that session: it is watched for and stopped like an unanswered add,
    /// counting against the host's capacity meanwhile.
    unsettled: Option<Ipv4Addr>,
    /// Whether the slot is still held in the ledger (it no longer is once
    /// [`SlotHold::make_live`] handed it to a live session).
    counted: bool,
}

impl<'a> SlotHold<'a> {
    /// Takes a slot of `host` if it has room now.
    pub fn take(pack: &'a Pack, host: usize) -> Option<Self> {
        pack.ledger
            .lock()
            .take_slot(host, Instant::now())
            .then(|| Self::held(pack, host))
    }

    /// Wraps a slot already held in the ledger (by [`Ledger::take_live`]).
    ///
    /// [`Ledger::take_live`]: super::ledger::Ledger::take_live
    pub fn held(pack: &'a Pack, host: usize) -> Self {
        SlotHold {
            pack,
            host,
            unsettled: None,
            counted: true,
        }
    }

    /// The host this slot is on.
    pub fn host(&self) -> usize {
        self.host
    }

    /// Marks a `sessions/add` with `fake_ip` as sent and not yet accounted for.
    pub fn unsettled(&mut self, fake_ip: Ipv4Addr) {
        self.unsettled = Some(fake_ip);
    }

    /// The add's outcome is accounted for (failed, stopped or live).
    pub fn settled(&mut self) {
        self.unsettled = None;
    }

    /// Records `live` (placed on this slot's host) as its user's live session and hands the slot
    /// over to it in one step.
    pub fn make_live(&mut self, live: Live) {
        let mut ledger = self.pack.ledger.lock();
        if self.counted {
            ledger.make_live(live);
            self.counted = false;
        } else {
            ledger.restore_live(live);
        }
        self.unsettled = None;
    }
}

impl Drop for SlotHold<'_> {
    fn drop(&mut self) {
        let mut ledger = self.pack.ledger.lock();
        if let Some(fake_ip) = self.unsettled.take() {
            warn!(host = self.pack.name(self.host), %fake_ip, "a placement was abandoned while its host session was unaccounted for; watching for it");
            ledger.note_unanswered(
                self.host,
                fake_ip,
                Instant::now() + self.pack.config.launch_deadline,
            );
        }
        if self.counted {
            ledger.release_slot(self.host);
        }
    }
}

/// A fake RTSP address reserved for a placement or a resume in progress (no other placement
/// gets it and the orphan sweep spares a host session with it); released when dropped.
pub(super) struct FakeIpHold<'a> {
    pack: &'a Pack,
    ip: Ipv4Addr,
}

impl<'a> FakeIpHold<'a> {
    /// Reserves a free fake address.
    pub fn reserve(pack: &'a Pack) -> Self {
        let ip = pack.ledger.lock().reserve_fake_ip();
        FakeIpHold { pack, ip }
    }

    /// Wraps an address already reserved in the ledger (by [`Ledger::take_live`]).
    ///
    /// [`Ledger::take_live`]: super::ledger::Ledger::take_live
    pub fn reserved(pack: &'a Pack, ip: Ipv4Addr) -> Self {
        FakeIpHold { pack, ip }
    }

    /// The address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for FakeIpHold<'_> {
    fn drop(&mut self) {
        self.pack.ledger.lock().release_fake_ip(self.ip);
    }
}
