//! The UDP half of the relay: one task per session and stream (video, audio, control).
//!
//! Each task owns the stream's public socket and one *mapping* per admitted client endpoint
//! (client `ip:port` → a dedicated upstream socket `connect()`ed to Wolf's UDP port for that
//! stream, learned from the SETUP answer or the configured default). Client datagrams go out on
//! the mapping's upstream socket; datagrams Wolf sends to that upstream socket go back to the
//! client **from the public socket**, so the client sees the 5-tuple it pinged
//! (`streaming-ports.md` §5, §8.4). Forwarding is per datagram (receive into one fixed buffer, send
//! from it); nothing is queued. A full send buffer makes the task wait for writability (back
//! pressure); a failed send drops the datagram and counts it.
//!
//! # Admission policy
//!
//! A datagram from an endpoint that already has a mapping is always forwarded. A datagram from a
//! new endpoint creates a mapping only if **one** of these holds:
//! 1. its source IP is the session's client IP (the address of the `/launch` caller);
//! 2. (video, audio) it is a 20-byte `SS_PING` whose first 16 bytes are the session's ping secret,
//!    learned from Wolf's `X-SS-Ping-Payload` as the SETUP answer passed through the RTSP relay;
//! 3. (control) it is an ENet `CONNECT` whose connect data equals the session's
//!    `X-SS-Connect-Data`, learned the same way.
//!
//! Rules 2 and 3 admit clients whose address changed between `/launch` and streaming (multi-IP
//! carrier NAT, a VPN coming up) with exactly the evidence Wolf itself uses (§4). Everything else
//! is dropped and counted as `not_admitted`. At most `max_mappings` endpoints are mapped per
//! stream; further admissible endpoints are dropped (`mapping_limit`) until a mapping expires, so
//! spoofed sources cannot grow memory. A mapping expires after `idle_timeout` without a datagram
//! **from the client** (Moonlight pings every 500 ms and ENet keeps alive on its own; Wolf's traffic
//! does not keep a mapping alive, so a vanished client's stream stops being relayed).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::SessionShared;
use super::stats::{StreamKind, UdpCounters, add, bump};

/// Size of the moonlight-common-c `SS_PING` (`Video.h`): 16-byte secret + big-endian u32 sequence.
pub const SS_PING_LEN: usize = 20;

/// Why a new endpoint was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its source IP is the session's client IP.
    ClientIp,
    /// It sent a ping carrying the session's ping secret.
    PingSecret,
    /// It sent an ENet CONNECT carrying the session's connect data.
    ConnectData,
    /// The relay admits every source (`RelayConfig::admit_any_source`).
    AnySource,
}

/// The secrets Wolf announced for a session, as far as the RTSP relay has seen them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSecrets {
    /// `X-SS-Ping-Payload`.
    pub ping_payload: Option<[u8; 16]>,
    /// `X-SS-Connect-Data`.
    pub connect_data: Option<u32>,
}

/// The data word of an ENet `CONNECT` command, if `packet` starts with one.
///
/// Layout (ENet `protocol.h`, big-endian): header `peerID` u16 (bit 15: a `sentTime` u16 follows,
/// bit 14: compressed) then the command header (`command` u8, `channelID` u8, reliable sequence
/// u16) and, for command 2 (CONNECT), `outgoingPeerID` u16, two session bytes and ten u32 of which
/// the last is the connect data.
pub fn enet_connect_data(packet: &[u8]) -> Option<u32> {
    const FLAG_COMPRESSED: u16 = 1 << 14;
    const FLAG_SENT_TIME: u16 = 1 << 15;
    const COMMAND_CONNECT: u8 = 2;
    const CONNECT_LEN: usize = 4 + 4 + 10 * 4;
    let header = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    if header & FLAG_COMPRESSED != 0 {
        return None;
    }
    let cmd_at = if header & FLAG_SENT_TIME != 0 { 4 } else { 2 };
    let command = packet.get(cmd_at..cmd_at + CONNECT_LEN)?;
    if command[0] & 0x0F != COMMAND_CONNECT {
        return None;
    }
    let data: [u8; 4] = command[CONNECT_LEN - 4..].try_into().ok()?;
    Some(u32::from_be_bytes(data))
}

/// Decide whether a datagram from a new endpoint may create a mapping (see the module docs).
pub fn admit(
    kind: StreamKind,
    source: SocketAddr,
    packet: &[u8],
    client_ip: IpAddr,
    secrets: &SessionSecrets,
) -> Option<Admission> {
    if source.ip().to_canonical() == client_ip.to_canonical() {
        return Some(Admission::ClientIp);
    }
    match kind {
        StreamKind::Video | StreamKind::Audio => {
            let secret = secrets.ping_payload?;
            (packet.len() == SS_PING_LEN && packet[..16] == secret).then_some(Admission::PingSecret)
        }
        StreamKind::Control => {
            let data = secrets.connect_data?;
            (enet_connect_data(packet) == Some(data)).then_some(Admission::ConnectData)
        }
    }
}

struct Mapping {
    client: SocketAddr,
    upstream: UdpSocket,
    last_from_client: Instant,
}

enum Event {
    FromClient { len: usize, from: SocketAddr },
    FromWolf { index: usize, len: usize },
    PublicError,
    UpstreamError { index: usize, error: io::Error },
    Sweep,
}

fn poll_event(
    cx: &mut Context<'_>,
    public: &UdpSocket,
    mappings: &[Mapping],
    sweep: &mut Interval,
    buf: &mut [u8],
    rotate: &mut usize,
) -> Poll<Event> {
    if sweep.poll_tick(cx).is_ready() {
        return Poll::Ready(Event::Sweep);
    }
    // Sources are polled round-robin starting after the one served last, so a flood on one socket
    // cannot starve the others.
    let n = mappings.len() + 1;
    let start = *rotate % n;
    for step in 0..n {
        let i = (start + step) % n;
        let mut rb = ReadBuf::new(buf);
        if i == mappings.len() {
            match public.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(from)) => {
                    *rotate = i + 1;
                    return Poll::Ready(Event::FromClient {
                        len: rb.filled().len(),
                        from,
                    });
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Event::PublicError),
                Poll::Pending => {}
            }
        } else {
            match mappings[i].upstream.poll_recv(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    *rotate = i + 1;
                    return Poll::Ready(Event::FromWolf {
                        index: i,
                        len: rb.filled().len(),
                    });
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Event::UpstreamError { index: i, error }),
                Poll::Pending => {}
            }
        }
    }
    Poll::Pending
}

/// A UDP socket with the relay's buffer sizes, non-blocking, registered with tokio.
pub(crate) fn udp_socket(
    bind: SocketAddr,
    connect: Option<SocketAddr>,
    buffer: usize,
) -> io::Result<UdpSocket> {
    let domain = if bind.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if buffer > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    if let Some(peer) = connect {
        socket.connect(&peer.into())?;
    }
    UdpSocket::from_std(socket.into())
}

fn unspecified_for(ip: IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn sweep_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// Drop mappings idle for longer than `idle`.
fn expire(mappings: &mut Vec<Mapping>, idle: Duration, counters: &UdpCounters, kind: StreamKind) {
    let now = Instant::now();
    let before = mappings.len();
    mappings.retain(|m| {
        let keep = now.duration_since(m.last_from_client) < idle;
        if !keep {
            tracing::debug!(stream = %kind, client = %m.client, "udp mapping expired");
        }
        keep
    });
    let gone = (before - mappings.len()) as u64;
    if gone > 0 {
        add(&counters.mappings_expired, gone);
        counters
            .mappings_active
            .fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Datagrams forwarded from one upstream socket before the other sources get a turn.
const DRAIN_BUDGET: usize = 32;

/// Send one datagram from the public socket; waits for buffer space only when the socket is
/// full. `false` if the datagram was dropped.
async fn send_to_client(public: &UdpSocket, packet: &[u8], client: SocketAddr) -> bool {
    match public.try_send_to(packet, client) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => public.send_to(packet, client).await.is_ok(),
        Err(_) => false,
    }
}

/// Relay one stream of one session until aborted.
pub(crate) async fn serve(kind: StreamKind, public: UdpSocket, shared: Arc<SessionShared>) {
    let counters = shared.counters.udp(kind);
    let config = &shared.config;
    let idle = config.udp_idle_timeout;
    let max_mappings = config.max_mappings_per_stream.max(1);
    let mut buf = vec![0u8; 65536].into_boxed_slice();
    let mut mappings: Vec<Mapping> = Vec::with_capacity(max_mappings);
    let mut sweep = tokio::time::interval(sweep_period(idle));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rotate = 0usize;
    loop {
        let event =
            std::future::poll_fn(|cx| poll_event(cx, &public, &mappings, &mut sweep, &mut buf, &mut rotate))
                .await;
        match event {
            Event::FromWolf { index, len } => {
                let mapping = &mappings[index];
                let (mut packets, mut bytes) = (0u64, 0u64);
                let mut len = len;
                // Forward this datagram, then keep draining the same upstream socket without
                // going back through the poll loop (bounded, for fairness between sources).
                for round in 1..=DRAIN_BUDGET {
                    if send_to_client(&public, &buf[..len], mapping.client).await {
                        packets += 1;
                        bytes += len as u64;
                    } else {
                        bump(&counters.drop_send_to_client);
                    }
                    if round == DRAIN_BUDGET {
                        break;
                    }
                    match mapping.upstream.try_recv(&mut buf) {
                        Ok(n) => len = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            bump(&counters.drop_send_to_wolf);
                            break;
                        }
                    }
                }
                add(&counters.to_client_packets, packets);
                add(&counters.to_client_bytes, bytes);
            }
            Event::FromClient { len, from } => {
                let index = match mappings.iter().position(|m| m.client == from) {
                    Some(i) => i,
                    None => {
                        let secrets = shared.secrets();
                        let why = if config.admit_any_source {
                            Some(Admission::AnySource)
                        } else {
                            admit(kind, from, &buf[..len], shared.client_ip, &secrets)
                        };
                        let Some(why) = why else {
                            bump(&counters.drop_not_admitted);
                            continue;
                        };
                        if mappings.len() >= max_mappings {
                            expire(&mut mappings, idle, counters, kind);
                        }
                        if mappings.len() >= max_mappings {
                            bump(&counters.drop_mapping_limit);
                            continue;
                        }
                        let wolf = shared.wolf_udp_addr(kind);
                        let upstream = match udp_socket(
                            unspecified_for(wolf.ip()),
                            Some(wolf),
                            config.socket_buffer_bytes,
                        ) {
                            Ok(s) => s,
                            Err(error) => {
                                bump(&counters.upstream_socket_errors);
                                tracing::warn!(stream = %kind, %error, "cannot open upstream socket");
                                continue;
                            }
                        };
                        tracing::debug!(stream = %kind, client = %from, %wolf, admission = ?why, "udp mapping created");
                        bump(&counters.mappings_created);
                        bump(&counters.mappings_active);
                        mappings.push(Mapping {
                            client: from,
                            upstream,
                            last_from_client: Instant::now(),
                        });
                        mappings.len() - 1
                    }
                };
                let mapping = &mut mappings[index];
                mapping.last_from_client = Instant::now();
                match mapping.upstream.send(&buf[..len]).await {
                    Ok(_) => {
                        bump(&counters.to_wolf_packets);
                        add(&counters.to_wolf_bytes, len as u64);
                    }
                    Err(_) => bump(&counters.drop_send_to_wolf),
                }
            }
            Event::UpstreamError { index, error } => {
                // An ICMP error for an earlier datagram (e.g. Wolf's port not open yet); the
                // datagram it reports was lost.
                tracing::trace!(stream = %kind, client = %mappings[index].client, %error, "upstream error");
                bump(&counters.drop_send_to_wolf);
            }
            Event::PublicError => bump(&counters.recv_errors),
            Event::Sweep => expire(&mut mappings, idle, counters, kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 16] = *b"Ab3$x~Zq!9Lm#2Rt";

    fn ping(secret: &[u8; 16], seq: u32) -> Vec<u8> {
        let mut p = secret.to_vec();
        p.extend_from_slice(&seq.to_be_bytes());
        p
    }

    /// An ENet CONNECT as `enet_host_connect` sends it (with sent time), carrying `data`.
    pub(crate) fn enet_connect(data: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(0x8000u16 | 0x0FFF).to_be_bytes()); // peerID + SENT_TIME
        p.extend_from_slice(&1234u16.to_be_bytes()); // sentTime
        p.extend_from_slice(&[0x82, 0xFF, 0, 1]); // CONNECT|ACK, channel 0xFF, seq 1
        p.extend_from_slice(&[0, 0, 0, 0]); // outgoingPeerID, session ids
        for v in [1392u32, 32768, 0x30, 0, 0, 5000, 2, 2, 0xABCD] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.extend_from_slice(&data.to_be_bytes());
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn enet_connect_data_is_parsed() {
        assert_eq!(enet_connect_data(&enet_connect(0xDEAD_BEEF)), Some(0xDEAD_BEEF));
        let mut no_time = enet_connect(7);
        no_time.drain(0..4);
        no_time.splice(0..0, 0x0FFFu16.to_be_bytes());
        assert_eq!(enet_connect_data(&no_time), Some(7));
        let mut compressed = enet_connect(7);
        compressed[0] |= 0x40;
        assert_eq!(enet_connect_data(&compressed), None);
        let mut ping_cmd = enet_connect(7);
        ping_cmd[4] = 0x85;
        assert_eq!(enet_connect_data(&ping_cmd), None);
        let full = enet_connect(7);
        assert_eq!(enet_connect_data(&full[..full.len() - 1]), None, "truncated");
        assert_eq!(enet_connect_data(&[]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_mappings_expire_and_active_ones_stay() {
        let counters = UdpCounters::default();
        let idle = Duration::from_secs(30);
        let mapping = |port: u16| async move {
            Mapping {
                client: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                upstream: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind"),
                last_from_client: Instant::now(),
            }
        };
        let mut mappings = vec![mapping(1).await, mapping(2).await];
        counters
            .mappings_active
            .store(2, std::sync::atomic::Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(20)).await;
        mappings[1].last_from_client = Instant::now(); // client 2 pinged
        expire(&mut mappings, idle, &counters, StreamKind::Video);
        assert_eq!(mappings.len(), 2, "nothing is idle for 30 s yet");
        tokio::time::advance(Duration::from_secs(11)).await;
        expire(&mut mappings, idle, &counters, StreamKind::Video);
        assert_eq!(mappings.iter().map(|m| m.client.port()).collect::<Vec<_>>(), [2]);
        assert_eq!(
            counters
                .mappings_expired
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            counters
                .mappings_active
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        expire(&mut mappings, idle, &counters, StreamKind::Video);
        assert!(mappings.is_empty());
    }

    #[test]
    fn sweep_period_is_bounded() {
        assert_eq!(sweep_period(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(sweep_period(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(sweep_period(Duration::from_millis(1)), Duration::from_millis(10));
    }

    #[test]
    fn admission_policy() {
        let client: IpAddr = "198.51.100.7".parse().expect("ip");
        let none = SessionSecrets::default();
        let known = SessionSecrets {
            ping_payload: Some(SECRET),
            connect_data: Some(42),
        };
        let stranger = addr("203.0.113.50:50000");
        // Rule 1: the client's IP, any payload, any stream (also as an IPv4-mapped IPv6 source).
        for kind in StreamKind::ALL {
            assert_eq!(
                admit(kind, addr("198.51.100.7:1"), b"x", client, &none),
                Some(Admission::ClientIp)
            );
            assert_eq!(
                admit(kind, addr("[::ffff:198.51.100.7]:1"), b"x", client, &none),
                Some(Admission::ClientIp)
            );
        }
        // Rule 2: a valid ping from elsewhere, only once the secret is known.
        for kind in [StreamKind::Video, StreamKind::Audio] {
            assert_eq!(
                admit(kind, stranger, &ping(&SECRET, 1), client, &known),
                Some(Admission::PingSecret)
            );
            assert_eq!(admit(kind, stranger, &ping(&SECRET, 1), client, &none), None);
            assert_eq!(
                admit(kind, stranger, &ping(b"0123456789abcdef", 1), client, &known),
                None
            );
            assert_eq!(
                admit(kind, stranger, &SECRET, client, &known),
                None,
                "secret without sequence"
            );
            assert_eq!(
                admit(kind, stranger, b"PING", client, &known),
                None,
                "legacy ping needs the client IP"
            );
            assert_eq!(admit(kind, stranger, &enet_connect(42), client, &known), None);
        }
        // Rule 3: an ENet CONNECT with the connect data, on control only.
        assert_eq!(
            admit(StreamKind::Control, stranger, &enet_connect(42), client, &known),
            Some(Admission::ConnectData)
        );
        assert_eq!(
            admit(StreamKind::Control, stranger, &enet_connect(43), client, &known),
            None
        );
        assert_eq!(
            admit(StreamKind::Control, stranger, &enet_connect(42), client, &none),
            None
        );
        assert_eq!(
            admit(StreamKind::Control, stranger, &ping(&SECRET, 1), client, &known),
            None
        );
    }
}
