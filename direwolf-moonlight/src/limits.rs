//! [`ConnectionLimits`]: what the server's listeners and admission allow each connection and
//! each source.

use std::time::Duration;

use crate::source::PrefixLengths;

/// Connection-level limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once over all listeners; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Of `max_connections`, the slots kept for sources a paired client completed a TLS
    /// handshake from (in the last day): a flood from elsewhere cannot take them.
    pub reserved_for_known: usize,
    /// Connections one source may hold on each port (HTTP and HTTPS apart); more are closed at
    /// once.
    pub per_source: usize,
    /// The prefixes that make one source for `per_source` (default: each IPv4 address, and an
    /// IPv6 /64, a host's usual share).
    pub prefixes: PrefixLengths,
    /// Time a client has to send its request line and headers.
    pub header_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request body (`POST /pin/`).
    pub body_timeout: Duration,
    /// Read buffer, which bounds the request line plus headers (≥ 16 KiB: the phase-1 URL is
    /// long). Larger requests get HTTP 431 or 414.
    pub max_header_bytes: usize,
    /// On shutdown, how long open requests may take to finish before they are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            reserved_for_known: 256,
            per_source: 32,
            prefixes: PrefixLengths { ipv4: 32, ipv6: 64 },
            // Well inside a client's own timeouts (2-7 s), so a stalled socket frees its slot
            // before a waiting client gives up.
            header_read_timeout: Duration::from_secs(4),
            tls_handshake_timeout: Duration::from_secs(4),
            body_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
