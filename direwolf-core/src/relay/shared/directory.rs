//! The sessions on the shared ports, and which of them a datagram or an RTSP request belongs to
//! (`docs/protocol/streaming-ports.md` § How Wolf matches traffic to a session; this relay asks
//! for the same evidence Wolf does, but never guesses).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::relay::SessionShared;
use crate::relay::stats::{SessionCounters, StreamKind};
use crate::relay::udp::{Routed, SS_PING_LEN, enet_connect_data};

/// Why traffic on the shared ports belongs to no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// It carries a secret (ping payload, ENet connect data, fake RTSP IP) that no session has.
    UnknownSecret,
    /// It carries no secret and its source address is no session's client.
    UnknownSource,
    /// It carries no secret and its source address is the client of several sessions.
    AmbiguousSource,
}

/// One session on the shared ports.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) shared: Arc<SessionShared>,
    /// The inboxes of its video, audio and control tasks (in [`StreamKind::ALL`] order).
    pub(crate) inboxes: [mpsc::Sender<Routed>; 3],
}

impl Member {
    pub(crate) fn inbox(&self, kind: StreamKind) -> &mpsc::Sender<Routed> {
        match kind {
            StreamKind::Video => &self.inboxes[0],
            StreamKind::Audio => &self.inboxes[1],
            StreamKind::Control => &self.inboxes[2],
        }
    }
}

/// The sessions on the shared ports, by relay session id, and the counters of traffic that
/// reached the shared ports but no session.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    members: RwLock<HashMap<u64, Member>>,
    pub(crate) counters: SessionCounters,
}

/// Where a new client endpoint's datagram goes.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) id: u64,
    pub(crate) inbox: mpsc::Sender<Routed>,
    pub(crate) shared: Arc<SessionShared>,
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The one candidate, or why there is none.
fn only_one<T>(mut candidates: impl Iterator<Item = T>, none: Miss) -> Result<T, Miss> {
    match (candidates.next(), candidates.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(none),
        (Some(_), Some(_)) => Err(Miss::AmbiguousSource),
    }
}

impl Directory {
    pub(crate) fn insert(&self, id: u64, member: Member) {
        self.members.write().insert(id, member);
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Member> {
        self.members.write().remove(&id)
    }

    /// The session a datagram from a new client endpoint belongs to: by the ping payload
    /// (video, audio) or the ENet connect data (control) when it carries one, else by its
    /// source address if exactly one session's client has it.
    pub(crate) fn route_udp(
        &self,
        kind: StreamKind,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Destination, Miss> {
        let members = self.members.read();
        let secret_of = |m: &&Member| {
            let secrets = m.shared.secrets();
            match kind {
                StreamKind::Video | StreamKind::Audio => {
                    secrets.ping_payload.is_some_and(|p| p[..] == datagram[..16])
                }
                StreamKind::Control => secrets.connect_data == enet_connect_data(datagram),
            }
        };
        let carries_secret = match kind {
            StreamKind::Video | StreamKind::Audio => datagram.len() == SS_PING_LEN,
            StreamKind::Control => enet_connect_data(datagram).is_some(),
        };
        let (id, member) = if carries_secret {
            members
                .iter()
                .find(|(_, m)| secret_of(m))
                .ok_or(Miss::UnknownSecret)?
        } else {
            let from_client = members
                .iter()
                .filter(|(_, m)| same_ip(m.shared.client_ip, from.ip()));
            only_one(from_client, Miss::UnknownSource)?
        };
        Ok(Destination {
            id: *id,
            inbox: member.inbox(kind).clone(),
            shared: member.shared.clone(),
        })
    }

    /// The session an RTSP request on the shared port belongs to: by the fake IP the client
    /// echoed; for `0.0.0.0` (or no host), by the client's address: the one session from it still
    /// in its RTSP handshake, else the one session from it.
    pub(crate) fn route_rtsp(
        &self,
        echoed: Option<Ipv4Addr>,
        peer: IpAddr,
    ) -> Result<Arc<SessionShared>, Miss> {
        let members = self.members.read();
        let on_port = || members.values().filter(|m| m.shared.shared_rtsp);
        if let Some(fake) = echoed.filter(|ip| !ip.is_unspecified()) {
            return on_port()
                .find(|m| m.shared.fake_rtsp_ip == fake)
                .map(|m| m.shared.clone())
                .ok_or(Miss::UnknownSecret);
        }
        let from_peer = || on_port().filter(|m| same_ip(m.shared.client_ip, peer));
        let waiting = from_peer().filter(|m| !m.shared.rtsp_played.load(Ordering::Relaxed));
        match only_one(waiting, Miss::UnknownSource) {
            Err(Miss::UnknownSource) => only_one(from_peer(), Miss::UnknownSource),
            found => found,
        }
        .map(|m| m.shared.clone())
    }

    /// Whether a session of `client` on the shared RTSP port has not finished its handshake:
    /// a second launch from that address could not be told apart by address alone.
    pub(crate) fn awaits_rtsp_from(&self, client: IpAddr) -> bool {
        self.members.read().values().any(|m| {
            m.shared.shared_rtsp
                && same_ip(m.shared.client_ip, client)
                && !m.shared.rtsp_played.load(Ordering::Relaxed)
        })
    }
}
