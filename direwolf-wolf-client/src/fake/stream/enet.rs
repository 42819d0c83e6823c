//! Just enough of the ENet wire protocol (ENet 1.3, which Moonlight's fork keeps) for a client's
//! control connection to come up against the fake: a `CONNECT` is answered with an
//! `ACKNOWLEDGE` and a `VERIFY_CONNECT`, and every later command that asks for an acknowledgement
//! gets one, so the client's reliable traffic does not time the peer out. Payloads are ignored.
//!
//! Layout (all big-endian): protocol header `peerID:u16` (bits 0–11 peer id, 12–13 session id,
//! bit 14 compressed, bit 15 sent-time present), `sentTime:u16` when flagged; then commands, each
//! starting with `command:u8` (bits 0–3 type, bit 7 acknowledge, bit 6 unsequenced),
//! `channelID:u8`, `reliableSequenceNumber:u16`.

use std::collections::HashMap;
use std::net::SocketAddr;

const FLAG_SENT_TIME: u16 = 1 << 15;
const FLAG_COMPRESSED: u16 = 1 << 14;
const SESSION_SHIFT: u16 = 12;
const PEER_ID_MASK: u16 = 0x0FFF;
const CMD_ACK_FLAG: u8 = 1 << 7;

const ACKNOWLEDGE: u8 = 1;
const CONNECT: u8 = 2;
const DISCONNECT: u8 = 4;

/// The fake's bandwidth figures (0 = unlimited, as Wolf configures its host).
const BANDWIDTH: u32 = 0;

/// Size of a command of `kind` whose fixed part starts at `at` (including variable data).
fn command_len(kind: u8, packet: &[u8], at: usize) -> Option<usize> {
    let u16_at = |o: usize| {
        packet
            .get(at + o..at + o + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    Some(match kind {
        1 => 8,                    // ACKNOWLEDGE
        2 => 48,                   // CONNECT
        3 => 44,                   // VERIFY_CONNECT
        4 => 8,                    // DISCONNECT
        5 => 4,                    // PING
        6 => 6 + u16_at(4)?,       // SEND_RELIABLE
        7 => 8 + u16_at(6)?,       // SEND_UNRELIABLE
        8 | 12 => 24 + u16_at(6)?, // SEND_FRAGMENT, SEND_UNRELIABLE_FRAGMENT
        9 => 8 + u16_at(6)?,       // SEND_UNSEQUENCED
        10 => 12,                  // BANDWIDTH_LIMIT
        11 => 16,                  // THROTTLE_CONFIGURE
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    /// The client's own peer index (what our headers carry).
    client_peer_id: u16,
    /// Session id our headers carry.
    session: u8,
}

/// What to do after a datagram.
#[derive(Debug, Default)]
pub(super) struct Reply {
    /// Datagrams to send back to the source.
    pub(super) send: Vec<Vec<u8>>,
    /// Set when this datagram connected a peer: the `CONNECT` data.
    pub(super) connected_with: Option<u32>,
}

/// The fake's ENet peers, by client address.
#[derive(Debug, Default)]
pub(super) struct Peers {
    peers: HashMap<SocketAddr, Peer>,
    next_index: u16,
    started: Option<std::time::Instant>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or_default()
}

impl Peers {
    fn now16(&mut self) -> u16 {
        let start = *self.started.get_or_insert_with(std::time::Instant::now);
        (start.elapsed().as_millis() & 0xFFFF) as u16
    }

    /// Handles one datagram from `src`; `None` when there is nothing to answer.
    pub(super) fn handle(&mut self, packet: &[u8], src: SocketAddr) -> Option<Reply> {
        let (sent_time, mut at) = protocol_header(packet)?;
        let mut acks: Vec<(u8, u16)> = Vec::new();
        let mut reply = Reply::default();
        let mut verify = None;
        while at + 4 <= packet.len() {
            let command = packet[at];
            let kind = command & 0x0F;
            let channel = packet[at + 1];
            let seq = u16::from_be_bytes([packet[at + 2], packet[at + 3]]);
            let len = command_len(kind, packet, at)?;
            if at + len > packet.len() {
                return None;
            }
            if command & CMD_ACK_FLAG != 0 {
                acks.push((channel, seq));
            }
            match kind {
                CONNECT => {
                    let (verify_connect, data) = self.connect(&packet[at..at + len], src);
                    verify = Some(verify_connect);
                    reply.connected_with = Some(data);
                }
                DISCONNECT => {
                    self.peers.remove(&src);
                }
                ACKNOWLEDGE => {}
                _ => {}
            }
            at += len;
        }
        let peer = self.peers.get(&src).copied()?;
        if acks.is_empty() && verify.is_none() {
            return None;
        }
        reply.send.push(self.answer(peer, sent_time, &acks, verify));
        Some(reply)
    }

    /// Takes `src` as a fresh peer for its `CONNECT` command: the `VERIFY_CONNECT` command that
    /// answers it, and the connect data it carries.
    fn connect(&mut self, command: &[u8], src: SocketAddr) -> (Vec<u8>, u32) {
        let client_peer_id = u16::from_be_bytes([command[4], command[5]]);
        let in_session = command[6];
        let out_session = command[7];
        // Session ids as ENet's host derives them for a fresh peer.
        let next = |s: u8| if s == 0xFF { 0 } else { s.wrapping_add(1) & 3 };
        let (ours_out, ours_in) = (next(in_session), next(out_session));
        let index = self.next_index;
        self.next_index = (self.next_index + 1) & PEER_ID_MASK;
        self.peers.insert(
            src,
            Peer {
                client_peer_id,
                session: ours_out,
            },
        );
        let mut v = Vec::with_capacity(44);
        v.extend_from_slice(&[3 | CMD_ACK_FLAG, 0xFF]);
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&index.to_be_bytes());
        v.push(ours_out);
        v.push(ours_in);
        let mtu = be32(command, 8).clamp(576, 4096);
        let window = be32(command, 12).clamp(4096, 65536);
        let channels = be32(command, 16).clamp(1, 255);
        for value in [
            mtu,
            window,
            channels,
            BANDWIDTH,
            BANDWIDTH,
            be32(command, 28), // throttle interval, echoed
            be32(command, 32), // acceleration
            be32(command, 36), // deceleration
            be32(command, 40), // connect id
        ] {
            v.extend_from_slice(&value.to_be_bytes());
        }
        (v, be32(command, 44))
    }

    /// The datagram to `peer`: an `ACKNOWLEDGE` of each `(channel, sequence number)` in `acks`,
    /// echoing the sent time of the packet acknowledged, then the `VERIFY_CONNECT`, if any.
    fn answer(
        &mut self,
        peer: Peer,
        sent_time: Option<u16>,
        acks: &[(u8, u16)],
        verify: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let now = self.now16();
        let mut out = Vec::with_capacity(64);
        let header = peer.client_peer_id | (u16::from(peer.session) << SESSION_SHIFT) | FLAG_SENT_TIME;
        out.extend_from_slice(&header.to_be_bytes());
        out.extend_from_slice(&now.to_be_bytes());
        for (channel, seq) in acks {
            out.extend_from_slice(&[ACKNOWLEDGE, *channel]);
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&sent_time.unwrap_or_default().to_be_bytes());
        }
        if let Some(v) = verify {
            out.extend_from_slice(&v);
        }
        out
    }
}

/// The protocol header of `packet`: its sent time, when flagged, and where its commands start;
/// `None` for a packet too short or compressed.
fn protocol_header(packet: &[u8]) -> Option<(Option<u16>, usize)> {
    let header = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    if header & FLAG_COMPRESSED != 0 {
        return None;
    }
    if header & FLAG_SENT_TIME != 0 {
        Some((Some(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?])), 4))
    } else {
        Some((None, 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(data: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(0x0FFF | FLAG_SENT_TIME).to_be_bytes());
        p.extend_from_slice(&77u16.to_be_bytes());
        p.extend_from_slice(&[CONNECT | CMD_ACK_FLAG, 0xFF, 0, 1]);
        p.extend_from_slice(&5u16.to_be_bytes()); // client's peer id
        p.extend_from_slice(&[0xFF, 0xFF]);
        for v in [1392u32, 32768, 0x30, 0, 0, 5000, 2, 2, 0xABCD, data] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p
    }

    #[test]
    fn connect_is_acknowledged_and_verified() {
        let mut peers = Peers::default();
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let reply = peers.handle(&connect(42), src).unwrap();
        assert_eq!(reply.connected_with, Some(42));
        let out = &reply.send[0];
        // header: client's peer id 5, session 0, sent time flag
        assert_eq!(u16::from_be_bytes([out[0], out[1]]), 5 | FLAG_SENT_TIME);
        // ACK of (channel 0xFF, seq 1) echoing sent time 77
        assert_eq!(&out[4..12], &[ACKNOWLEDGE, 0xFF, 0, 0, 0, 1, 0, 77]);
        // VERIFY_CONNECT with the connect id echoed at the end
        assert_eq!(out[12], 3 | CMD_ACK_FLAG);
        assert_eq!(out.len(), 12 + 44);
        assert_eq!(be32(out, 12 + 40), 0xABCD);
        assert_eq!(be32(out, 12 + 16), 0x30);
    }

    #[test]
    fn reliable_sends_are_acknowledged_and_garbage_ignored() {
        let mut peers = Peers::default();
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        peers.handle(&connect(1), src).unwrap();
        let mut p = Vec::new();
        p.extend_from_slice(&(FLAG_SENT_TIME).to_be_bytes());
        p.extend_from_slice(&9u16.to_be_bytes());
        p.extend_from_slice(&[6 | CMD_ACK_FLAG, 0, 0, 2, 0, 3, 1, 2, 3]);
        let reply = peers.handle(&p, src).unwrap();
        assert_eq!(&reply.send[0][4..12], &[ACKNOWLEDGE, 0, 0, 0, 0, 2, 0, 9]);
        assert!(peers.handle(&[1, 2, 3], src).is_none());
        assert!(peers.handle(&[0, 0, 0, 0, 6, 0, 0, 1, 0, 200], src).is_none());
        let stranger: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert!(peers.handle(&p, stranger).is_none());
    }
}
