//! RTSP ports of their own, for launches the shared RTSP port could not tell apart: a client that
//! sends `0.0.0.0` from an address whose other session is still in its handshake. Leased one at a
//! time from a small range (the relay's `port_range` in shared mode) and freed with the session.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::relay::{RelayError, Result};

/// The range and the ports leased from it.
#[derive(Debug, Clone)]
pub(crate) struct RtspPorts {
    range: RangeInclusive<u16>,
    in_use: Arc<Mutex<BTreeSet<u16>>>,
}

/// One leased port; dropping it frees the port.
#[derive(Debug)]
pub(crate) struct RtspLease {
    port: u16,
    in_use: Arc<Mutex<BTreeSet<u16>>>,
}

impl RtspLease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RtspLease {
    fn drop(&mut self) {
        self.in_use.lock().remove(&self.port);
    }
}

impl RtspPorts {
    pub(crate) fn new(range: RangeInclusive<u16>) -> Self {
        RtspPorts {
            range,
            in_use: Arc::default(),
        }
    }

    /// Listen on the first free port of the range that binds.
    ///
    /// # Errors
    /// [`RelayError::Invalid`] when every port of the range is leased or held by another program.
    pub(crate) fn listen(&self, ip: IpAddr) -> Result<(TcpListener, RtspLease)> {
        for port in self.range.clone().filter(|p| *p != 0) {
            if !self.in_use.lock().insert(port) {
                continue;
            }
            let lease = RtspLease {
                port,
                in_use: self.in_use.clone(),
            };
            if let Ok(listener) = listen(SocketAddr::new(ip, port)) {
                return Ok((listener, lease));
            }
        }
        Err(RelayError::Invalid(format!(
            "no RTSP port of {}-{} is free for a launch the shared port cannot tell apart",
            self.range.start(),
            self.range.end()
        )))
    }
}

/// A TCP listener with `SO_REUSEADDR` (a just-closed session's port can be listened on at once).
pub(crate) fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(128)
}
