//! The relay's UDP sockets: non-blocking, registered with tokio, with the relay's buffer sizes
//! and the batched-I/O state of `quinn-udp` (GRO, GSO, `recvmmsg`). The stream tasks
//! ([`super::udp`]) read and send through them; [`super::source`] decides which port an upstream
//! socket binds.

use std::io;
use std::net::SocketAddr;

use quinn_udp::{UdpSockRef, UdpSocketState};
use tokio::net::UdpSocket;

/// A UDP socket registered with tokio together with its batched-I/O state (`quinn-udp`: GRO,
/// GSO, `recvmmsg`).
///
/// Read readiness is cleared after a `recvmmsg` that returned fewer messages than it had room
/// for: that read emptied the queue, and tokio's edge-triggered registration reports the next
/// arrival, so the read that would only return `EAGAIN` is skipped (one syscall of about four
/// per datagram when datagrams arrive one at a time).
pub(crate) struct RelaySocket {
    pub(super) io: UdpSocket,
    pub(super) state: UdpSocketState,
}

impl std::fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySocket")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl RelaySocket {
    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub(super) fn sock_ref(&self) -> UdpSockRef<'_> {
        UdpSockRef::from(&self.io)
    }
}

/// How the relay's UDP sockets are set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    /// Requested `SO_RCVBUF`/`SO_SNDBUF`, bytes (0: the system's).
    pub(crate) buffer: usize,
    /// `SO_MARK`.
    pub(crate) mark: Option<u32>,
}

/// Whether the small-buffer warning was logged (once per process).
static BUFFER_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A UDP socket with the relay's buffer sizes, non-blocking, registered with tokio, set up for
/// batched I/O (GRO where the kernel offers it); `reuse_port` lets the public socket and one
/// upstream socket share a port ([`super::source`]). `options.mark` is its `SO_MARK` (the
/// kernel fast path's, [`super::fast_path`]).
pub(crate) fn udp_socket(
    bind: SocketAddr,
    connect: Option<SocketAddr>,
    options: SocketOptions,
    reuse_port: bool,
) -> io::Result<RelaySocket> {
    let buffer = options.buffer;
    let domain = if bind.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if buffer > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max (and reports twice what
        // it grants, for its bookkeeping).
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
        let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
        if granted < buffer && !BUFFER_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                requested = buffer,
                granted,
                "UDP receive buffers are smaller than configured: a video frame burst may overflow them \
                 and lose packets; raise the limit with `sysctl -w net.core.rmem_max={} net.core.wmem_max={}`",
                buffer,
                buffer
            );
        }
    }
    if let Some(mark) = options.mark {
        socket.set_mark(mark)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&bind.into())?;
    if let Some(peer) = connect {
        socket.connect(&peer.into())?;
    }
    let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
    Ok(RelaySocket {
        io: UdpSocket::from_std(socket.into())?,
        state,
    })
}
