//! The dispatcher of one shared UDP port: reads every client datagram of the stream, finds its
//! session (once per client endpoint, through the [`Directory`]) and hands it to that session's
//! stream task, which forwards it to Wolf and sends Wolf's answers back through the same shared
//! socket.
//!
//! A route is kept per client endpoint while it sends (forgotten after the idle timeout, or when
//! its session ends) and each session gets at most `max_mappings_per_stream` routes, so a flood
//! from unknown sources creates nothing: it is read, counted by reason and dropped. A session's
//! inbox is bounded; a datagram that finds it full is dropped and counted (`queue_full`) instead
//! of delaying the other sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, MissedTickBehavior};

use super::directory::{Destination, Directory, Miss};
use crate::relay::socket::RelaySocket;
use crate::relay::stats::{StreamKind, UdpCounters, bump};
use crate::relay::udp::{RecvBatch, Routed, segments};

struct Route {
    destination: Destination,
    last: Instant,
}

/// The routes of one stream's client endpoints.
struct Routes {
    kind: StreamKind,
    by_client: HashMap<SocketAddr, Route>,
    per_session: HashMap<u64, usize>,
    max_per_session: usize,
}

impl Routes {
    fn forget(&mut self, client: &SocketAddr) {
        if let Some(route) = self.by_client.remove(client) {
            let id = route.destination.id;
            if let Some(n) = self.per_session.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.per_session.remove(&id);
                }
            }
        }
    }

    fn expire(&mut self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<SocketAddr> = self
            .by_client
            .iter()
            .filter(|(_, r)| now.duration_since(r.last) >= idle || r.destination.inbox.is_closed())
            .map(|(client, _)| *client)
            .collect();
        for client in stale {
            self.forget(&client);
        }
    }

    /// The destination of a datagram from `from`: its route, or a new one.
    fn destination(&mut self, directory: &Directory, from: SocketAddr, data: &[u8]) -> Option<&mut Route> {
        let live = self
            .by_client
            .get(&from)
            .is_some_and(|r| !r.destination.inbox.is_closed());
        if !live {
            self.forget(&from);
            let destination = match directory.route_udp(self.kind, from, data) {
                Ok(d) => d,
                Err(miss) => {
                    bump(miss_counter(directory.counters.udp(self.kind), miss));
                    return None;
                }
            };
            let taken = self.per_session.entry(destination.id).or_default();
            if *taken >= self.max_per_session {
                bump(&destination.shared.counters.udp(self.kind).drop_mapping_limit);
                return None;
            }
            *taken += 1;
            tracing::debug!(stream = %self.kind, client = %from, "shared-port route created");
            let last = Instant::now();
            self.by_client.insert(from, Route { destination, last });
        }
        self.by_client.get_mut(&from)
    }
}

fn miss_counter(counters: &UdpCounters, miss: Miss) -> &AtomicU64 {
    match miss {
        Miss::UnknownSecret => &counters.drop_unknown_secret,
        Miss::UnknownSource => &counters.drop_unknown_source,
        Miss::AmbiguousSource => &counters.drop_ambiguous_source,
    }
}

/// Serve one shared UDP port until aborted.
pub(crate) async fn serve(
    kind: StreamKind,
    public: Arc<RelaySocket>,
    directory: Arc<Directory>,
    idle: Duration,
    max_per_session: usize,
) {
    let counters = directory.counters.udp(kind);
    let mut routes = Routes {
        kind,
        by_client: HashMap::new(),
        per_session: HashMap::new(),
        max_per_session: max_per_session.max(1),
    };
    let mut batch = RecvBatch::new();
    let mut sweep =
        tokio::time::interval((idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let read = tokio::select! {
            read = std::future::poll_fn(|cx| batch.poll_recv(cx, &public)) => read,
            _ = sweep.tick() => {
                routes.expire(idle);
                continue;
            }
        };
        if read.is_err() {
            bump(&counters.recv_errors);
            continue;
        }
        for i in 0..batch.filled() {
            let Some((from, data, stride)) = batch.message(i) else {
                bump(&counters.recv_errors);
                continue;
            };
            for datagram in segments(data, stride) {
                let Some(route) = routes.destination(&directory, from, datagram) else {
                    continue;
                };
                route.last = Instant::now();
                let routed = Routed {
                    from,
                    data: datagram.to_vec(),
                };
                match route.destination.inbox.try_send(routed) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => bump(&counters.drop_queue_full),
                    // The session ended since the check; its route goes at the next datagram.
                    Err(TrySendError::Closed(_)) => bump(&counters.drop_unknown_source),
                }
            }
        }
    }
}
