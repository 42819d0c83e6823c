//! The address Wolf sees a relayed stream come from, kept across relay restarts.
//!
//! Wolf keys its ENet peers by source address (`docs/protocol/streaming-ports.md` § ENet control
//! stream): once the control stream is connected, a datagram from any other address is a stranger's
//! and is ignored. A relay that restarts (a proxy container restarted in its pod, `direwolf serve`
//! restarted) would reopen its upstream sockets on new ephemeral ports, and moonlight-common-c
//! would end the stream about 10 s later for want of an answer.
//!
//! So a stream's first mapping speaks to Wolf from the stream's own public port: its upstream
//! socket binds that port too (`SO_REUSEPORT` on both) and is `connect()`ed to Wolf. The kernel
//! gives a connected socket the datagrams from its peer and the unconnected public socket the
//! rest, so nothing changes for the client; and a restarted relay on the same address and ports
//! presents the same source to Wolf, whose peer carries on. Further mappings of the stream (a
//! client whose address changed, say) use ephemeral ports.
//!
//! Sharing a port must not let a second relay share the public ports unnoticed: before a public
//! socket binds with `SO_REUSEPORT`, a plain bind of the same address proves the port free, so a
//! port in use is still "Address already in use".
//!
//! Limits: a relay on another address (a replacement pod with a new IP) is a stranger to Wolf's
//! ENet host however its ports are chosen. Two relays in one network namespace that use the same
//! port numbers on different public addresses would share their upstream ports (both bind the
//! unspecified address): give them distinct port ranges.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::socket::{RelaySocket, SocketOptions, udp_socket};

/// Bind a stream's public socket, refusing a port another socket holds.
pub(crate) fn bind_public(address: SocketAddr, options: SocketOptions) -> io::Result<RelaySocket> {
    if address.port() != 0 {
        drop(std::net::UdpSocket::bind(address)?);
    }
    udp_socket(address, None, options, true)
}

/// An upstream socket `connect()`ed to `wolf`: from the public port when `stable` (see the module
/// docs), else from an ephemeral one. Returns whether the public port was used.
pub(crate) fn bind_upstream(
    public_port: u16,
    wolf: SocketAddr,
    options: SocketOptions,
    stable: bool,
) -> io::Result<(RelaySocket, bool)> {
    let any = unspecified(wolf.ip());
    if stable {
        match udp_socket(SocketAddr::new(any, public_port), Some(wolf), options, true) {
            Ok(socket) => return Ok((socket, true)),
            Err(error) => {
                tracing::debug!(port = public_port, %wolf, %error, "upstream socket on the public port refused; using an ephemeral one");
            }
        }
    }
    let socket = udp_socket(SocketAddr::new(any, 0), Some(wolf), options, false)?;
    Ok((socket, false))
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    #[tokio::test]
    async fn a_public_port_in_use_is_refused() {
        let taken = std::net::UdpSocket::bind(local(0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let error = bind_public(local(port), SocketOptions::default()).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn a_second_relay_cannot_share_a_bound_public_port() {
        let first = bind_public(local(0), SocketOptions::default()).expect("bind");
        let port = first.local_addr().expect("addr").port();
        assert!(
            bind_public(local(port), SocketOptions::default()).is_err(),
            "the port is held"
        );
    }

    /// Wolf sees the public port as the source, before and after the relay's sockets are
    /// replaced, and its answers reach the upstream socket, not the public one.
    #[tokio::test]
    async fn the_upstream_source_is_the_public_port_and_outlives_a_restart() {
        let wolf = tokio::net::UdpSocket::bind(local(0)).await.expect("wolf");
        let wolf_addr = wolf.local_addr().expect("addr");
        let public = bind_public(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketOptions::default(),
        )
        .expect("public");
        let port = public.local_addr().expect("addr").port();
        for round in 0..2u8 {
            let (upstream, stable) =
                bind_upstream(port, wolf_addr, SocketOptions::default(), true).expect("upstream");
            assert!(stable, "round {round}: the public port is free for one upstream");
            upstream.io.send(&[round]).await.expect("send");
            let mut buf = [0u8; 8];
            let (_, from) = wolf.recv_from(&mut buf).await.expect("wolf receives");
            assert_eq!(from.port(), port, "round {round}: Wolf sees the public port");
            wolf.send_to(b"answer", local(port)).await.expect("answer");
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), upstream.io.recv(&mut buf))
                .await
                .expect("the answer arrives in time")
                .expect("recv");
            assert_eq!(&buf[..n], b"answer");
            let (second, stable) =
                bind_upstream(port, wolf_addr, SocketOptions::default(), false).expect("second");
            assert!(!stable);
            assert_ne!(second.local_addr().expect("addr").port(), port);
        }
        drop(public);
    }
}
