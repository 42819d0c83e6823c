//! The shared RTSP port: each connection's first (and only) request is read, its session found
//! by the fake IP the client echoed or by the client's address ([`Directory::route_rtsp`]), and
//! the request relayed to that session's Wolf exactly as on a session's own port.
//!
//! The port is known to everyone, so connections are bounded twice: in all (a session's
//! allowance, `RtspLimits::max_connections`, times [`SHARED_CONNECTION_FACTOR`]) and per source
//! address (one session's allowance), so that a few slow senders cannot hold every slot while
//! the clients of other addresses connect. Moonlight opens one connection at a time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::directory::{Directory, Miss};
use crate::relay::rtsp::{RtspLimits, echoed_host, read_in_time, relay_request};
use crate::relay::stats::bump;

/// Connections in flight on the shared port, per session's allowance (`RtspLimits::max_connections`).
const SHARED_CONNECTION_FACTOR: usize = 16;

/// Connections in flight per source address; a [`SourceSlot`] gives its place back when dropped.
#[derive(Debug, Default)]
struct PerSource {
    open: Mutex<HashMap<IpAddr, usize>>,
}

struct SourceSlot {
    sources: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<SourceSlot> {
        let mut open = self.open.lock();
        let count = open.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.sources.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Accept loop of the shared RTSP port. Runs until aborted.
pub(crate) async fn serve(listener: TcpListener, directory: Arc<Directory>, limits: RtspLimits) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.max(1) * SHARED_CONNECTION_FACTOR,
    ));
    let per_source = Arc::new(PerSource::default());
    let mut conns = JoinSet::new();
    let counters = &directory.counters.rtsp;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    bump(&counters.connections);
                    let source = per_source.take(peer.ip().to_canonical(), limits.max_connections.max(1));
                    let (Some(source), Ok(permit)) = (source, permits.clone().try_acquire_owned()) else {
                        bump(&counters.rejected_connection_limit);
                        tracing::debug!(%peer, "shared rtsp connection limit reached, closing");
                        continue;
                    };
                    let directory = directory.clone();
                    conns.spawn(async move {
                        route_one(stream, peer, &directory, &limits).await;
                        drop((permit, source));
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "shared rtsp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn route_one(
    mut client: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    directory: &Directory,
    limits: &RtspLimits,
) {
    let _ = client.set_nodelay(true);
    let raw = match read_in_time(&mut client, limits).await {
        Ok(raw) => raw,
        Err(error) => {
            bump(&directory.counters.rtsp.rejected_requests);
            tracing::debug!(%peer, %error, "rtsp request refused");
            return;
        }
    };
    let echoed = echoed_host(&raw);
    match directory.route_rtsp(echoed, peer.ip()) {
        Ok(session) => {
            let by = match echoed {
                Some(ip) if !ip.is_unspecified() => "fake_ip",
                _ => "address",
            };
            tracing::debug!(%peer, by, "rtsp request routed");
            bump(&session.counters.rtsp.connections);
            relay_request(client, &raw, &session).await;
        }
        Err(miss) => {
            bump(&directory.counters.rtsp.unrouted);
            let why = match miss {
                Miss::UnknownSecret => "no session has the fake IP it names",
                Miss::UnknownSource => "no session's client has its address",
                Miss::AmbiguousSource => "several sessions' clients have its address",
            };
            tracing::debug!(%peer, ?echoed, why, "rtsp request matches no session; closed");
        }
    }
}
