//! The capacity ledger: everything the pack knows about which host runs what and what it may
//! still be asked to run, in one plain structure that the pack keeps behind one lock.
//!
//! A host's load is its live sessions, the slots held by placements in progress (from the choice
//! of the host until the session is live or the attempt failed) and by sessions being stopped or
//! re-added, and the late sessions it may still create (a `sessions/add` that got no answer, for
//! as long as it is watched). A host has room while its load is below its capacity. Every method
//! is synchronous and takes the current time where time matters, so each decision is one step
//! under the lock and the rules are unit-tested without a runtime.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use crate::ids::UserName;
use crate::model::Session;
use crate::relay::SessionRelay;

/// The first fake RTSP address (198.18.0.0/15 is reserved for network benchmarks, RFC 2544).
const FAKE_IP_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// How many fake addresses the range holds.
const FAKE_IP_COUNT: u32 = 1 << 17;

/// Whether `ip` is one of the fake RTSP addresses the pack hands out.
pub fn is_pool_fake_ip(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .is_ok_and(|ip| u32::from(ip).wrapping_sub(FAKE_IP_BASE) < FAKE_IP_COUNT)
}

/// A running session.
#[derive(Debug)]
pub(super) struct Live {
    pub session: Session,
    /// The index of its host.
    pub host: usize,
    /// Its `rtsp_fake_ip`.
    pub fake_ip: Ipv4Addr,
    /// Its relay; `None` only while it is being ended.
    pub relay: Option<SessionRelay>,
}

/// One host's side of the ledger.
#[derive(Debug)]
struct HostLoad {
    capacity: usize,
    /// Slots held by placements in progress and by sessions being stopped or re-added.
    held: usize,
    /// Fake RTSP addresses of `sessions/add` calls that got no answer, each with the time until
    /// which the host may still create that session (it is stopped when it shows up).
    unanswered: Vec<(Ipv4Addr, Instant)>,
    /// Skipped for placements until then (it failed).
    down_until: Option<Instant>,
}

/// The capacity ledger; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Ledger {
    hosts: Vec<HostLoad>,
    live: HashMap<UserName, Live>,
    /// Fake addresses handed to placements that are not live yet (and kept by resumes).
    reserved: HashSet<Ipv4Addr>,
    next_fake_ip: u32,
}

impl Ledger {
    /// A ledger for hosts of these capacities, in pool order.
    pub fn new(capacities: impl IntoIterator<Item = usize>) -> Self {
        Ledger {
            hosts: capacities
                .into_iter()
                .map(|capacity| HostLoad {
                    capacity,
                    held: 0,
                    unanswered: Vec::new(),
                    down_until: None,
                })
                .collect(),
            live: HashMap::new(),
            reserved: HashSet::new(),
            next_fake_ip: 1,
        }
    }

    /// Host `host`'s load at `now`: live sessions, held slots and late sessions still watched
    /// (those no longer watched are forgotten).
    pub fn load(&mut self, host: usize, now: Instant) -> usize {
        self.pending_late(host, now) + self.hosts[host].held + self.live_count(host)
    }

    fn live_count(&self, host: usize) -> usize {
        self.live.values().filter(|l| l.host == host).count()
    }

    /// Hosts with room, least loaded (relative to capacity) first; hosts marked down come last
    /// (they may be back). Take a slot with [`Ledger::take_slot`] before placing on one: another
    /// placement may take the last one meanwhile.
    pub fn candidates(&mut self, now: Instant) -> Vec<usize> {
        let loads: Vec<usize> = (0..self.hosts.len()).map(|i| self.load(i, now)).collect();
        let mut order: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| loads[i] < self.hosts[i].capacity)
            .collect();
        let key = |i: usize| {
            (
                self.is_down(i, now),
                loads[i] as f64 / self.hosts[i].capacity as f64,
            )
        };
        order.sort_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
        });
        order
    }

    /// Holds a slot of `host` if it has room at `now`; whether it did.
    pub fn take_slot(&mut self, host: usize, now: Instant) -> bool {
        if self.load(host, now) >= self.hosts[host].capacity {
            return false;
        }
        self.hosts[host].held += 1;
        true
    }

    /// Gives back a slot taken with [`Ledger::take_slot`] or [`Ledger::take_live`].
    pub fn release_slot(&mut self, host: usize) {
        self.hosts[host].held = self.hosts[host].held.saturating_sub(1);
    }

    /// Records `live` as its user's live session, turning a slot held on its host into the
    /// session (the host's load neither dips nor counts it twice).
    pub fn make_live(&mut self, live: Live) {
        self.release_slot(live.host);
        self.live.insert(live.session.user.clone(), live);
    }

    /// Removes the user's live session and holds its slot on its host for whatever follows
    /// (stopping it, re-adding it): no other placement can take the slot while the old host
    /// session may still be there. Its fake address stays reserved until released.
    pub fn take_live(&mut self, user: &UserName) -> Option<Live> {
        let live = self.live.remove(user)?;
        self.reserved.insert(live.fake_ip);
        self.hosts[live.host].held += 1;
        Some(live)
    }

    /// Removes the live sessions of `host` that `lost` selects, without holding their slots (the
    /// host no longer runs them).
    pub fn remove_live(&mut self, host: usize, lost: impl Fn(&Live) -> bool) -> Vec<Live> {
        let users: Vec<UserName> = self
            .live
            .iter()
            .filter(|(_, l)| l.host == host && lost(l))
            .map(|(user, _)| user.clone())
            .collect();
        users.into_iter().filter_map(|u| self.live.remove(&u)).collect()
    }

    /// Adds a session that runs already (restored after a restart).
    pub fn restore_live(&mut self, live: Live) {
        self.live.insert(live.session.user.clone(), live);
    }

    /// The user's live session.
    pub fn live(&self, user: &UserName) -> Option<&Live> {
        self.live.get(user)
    }

    /// The user's live session, to change its phase.
    pub fn live_mut(&mut self, user: &UserName) -> Option<&mut Live> {
        self.live.get_mut(user)
    }

    /// The user whose live session on `host` has the host id `host_session_id`.
    pub fn user_of(&self, host: usize, host_session_id: &str) -> Option<UserName> {
        self.live
            .iter()
            .find(|(_, l)| l.host == host && l.host_session_id() == Some(host_session_id))
            .map(|(user, _)| user.clone())
    }

    /// Live sessions per host, in pool order.
    pub fn live_per_host(&self) -> Vec<usize> {
        (0..self.hosts.len()).map(|i| self.live_count(i)).collect()
    }

    /// The host ids of the live sessions of `host`.
    pub fn known_ids(&self, host: usize) -> HashSet<String> {
        self.live
            .values()
            .filter(|l| l.host == host)
            .filter_map(|l| l.host_session_id().map(str::to_owned))
            .collect()
    }

    /// Reserves a fake RTSP address used by no live session, no placement and no watched late
    /// session, until [`Ledger::release_fake_ip`].
    pub fn reserve_fake_ip(&mut self) -> Ipv4Addr {
        loop {
            let n = self.next_fake_ip % FAKE_IP_COUNT;
            self.next_fake_ip = self.next_fake_ip.wrapping_add(1);
            let ip = Ipv4Addr::from(FAKE_IP_BASE + n);
            // Skip the network address and .255s too.
            if n != 0 && ip.octets()[3] != 255 && !self.fake_ip_taken(ip) {
                self.reserved.insert(ip);
                return ip;
            }
        }
    }

    fn fake_ip_taken(&self, ip: Ipv4Addr) -> bool {
        self.reserved.contains(&ip)
            || self.live.values().any(|l| l.fake_ip == ip)
            || self
                .hosts
                .iter()
                .any(|h| h.unanswered.iter().any(|(u, _)| *u == ip))
    }

    /// Ends a reservation.
    pub fn release_fake_ip(&mut self, ip: Ipv4Addr) {
        self.reserved.remove(&ip);
    }

    /// Whether `ip` is reserved for a placement or a resume in progress.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.reserved.contains(&ip)
    }

    /// Whether `ip` belongs to a placement in progress or a live session of `host`: a session
    /// with it is in use, never a late one to stop.
    pub fn in_use(&self, host: usize, ip: Ipv4Addr) -> bool {
        self.is_reserved(ip) || self.live.values().any(|l| l.host == host && l.fake_ip == ip)
    }

    /// Remembers that `sessions/add` with `fake_ip` got no answer from `host`: the host may
    /// create it until `until`.
    pub fn note_unanswered(&mut self, host: usize, fake_ip: Ipv4Addr, until: Instant) {
        let unanswered = &mut self.hosts[host].unanswered;
        unanswered.retain(|(ip, _)| *ip != fake_ip);
        unanswered.push((fake_ip, until));
    }

    /// Stops watching for the late session with `fake_ip` on `host` (it was stopped).
    pub fn forget_unanswered(&mut self, host: usize, fake_ip: Ipv4Addr) {
        self.hosts[host].unanswered.retain(|(ip, _)| *ip != fake_ip);
    }

    /// The fake addresses of the late sessions watched on `host` at `now`.
    pub fn unanswered(&mut self, host: usize, now: Instant) -> Vec<Ipv4Addr> {
        self.pending_late(host, now);
        self.hosts[host].unanswered.iter().map(|(ip, _)| *ip).collect()
    }

    /// Forgets the unanswered adds of `host` too old to still show up; how many remain.
    pub fn pending_late(&mut self, host: usize, now: Instant) -> usize {
        let unanswered = &mut self.hosts[host].unanswered;
        unanswered.retain(|(_, until)| now < *until);
        unanswered.len()
    }

    /// Skips `host` for placements until `until`.
    pub fn mark_down(&mut self, host: usize, until: Instant) {
        self.hosts[host].down_until = Some(until);
    }

    /// Whether `host` is marked down at `now`.
    pub fn is_down(&self, host: usize, now: Instant) -> bool {
        self.hosts[host].down_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
impl Ledger {
    /// How many slots of `host` are held.
    pub fn held(&self, host: usize) -> usize {
        self.hosts[host].held
    }

    /// Whether no session is live.
    pub fn is_idle(&self) -> bool {
        self.live.is_empty()
    }

    /// Sets the counter the next fake address is derived from.
    pub fn set_next_fake_ip(&mut self, next: u32) {
        self.next_fake_ip = next;
    }

    /// How many fake addresses are reserved.
    pub fn reserved_count(&self) -> usize {
        self.reserved.len()
    }
}

impl Live {
    /// The host's id of the session, once placed.
    pub fn host_session_id(&self) -> Option<&str> {
        self.session
            .placement
            .as_ref()
            .map(|p| p.host_session_id.as_str())
    }
}

#[cfg(test)]
mod tests;
