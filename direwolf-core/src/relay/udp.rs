//! The UDP half of the relay: one task per session and stream (video, audio, control).
//!
//! Each task owns the stream's public socket and one *mapping* per admitted client endpoint
//! (client `ip:port` → a dedicated upstream socket `connect()`ed to Wolf's UDP port for that
//! stream, learned from the SETUP answer or the configured default). Client datagrams go out on
//! the mapping's upstream socket; datagrams Wolf sends to that upstream socket go back to the
//! client **from the public socket**, so the client sees the 5-tuple it pinged
//! (`docs/protocol/streaming-ports.md` § Pings and media, § UDP forwarding). The first mapping's
//! upstream socket sends from the public port itself, so that Wolf sees the same source after a
//! relay restart ([`super::source`]).
//!
//! # Batching
//!
//! Sockets are read in batches through `quinn-udp` (`recvmmsg`, and UDP GRO where the kernel
//! coalesces a flow's equal-size datagrams into one buffer with a `stride`), into one fixed set of
//! receive slots per task. Wolf→client, a GRO buffer leaves the public socket as it came, as one
//! UDP GSO send straight from its receive slot; the other runs of equal-size datagrams of a
//! batch (video RTP) are copied into one fixed 64 KiB buffer and leave as one GSO send. The
//! kernel splits a GSO send back into the original datagrams, in order; where GSO is unavailable or
//! rejected (`quinn-udp` then reports one segment) they are sent one by one. Client→Wolf traffic
//! (pings, ENet) is light and is forwarded datagram by datagram. Batching only groups what is
//! already queued in the kernel, with one exception that bounds itself: a read of Wolf's socket
//! that did not fill the batch yields once to the other ready streams before it sends, and then
//! takes what arrived meanwhile (see `wolf_to_client`). Alone, that is one empty poll; under load
//! from many sessions it turns a send per datagram into one GSO send per flow and round, which
//! took the relay from about 81% to 50–60% of a core at 8 × 150 Mbit/s and removed the
//! millisecond stalls that a near-saturated core turns interference into.
//!
//! Nothing is queued beyond the two fixed buffers: a full send buffer makes the task wait for
//! writability (back pressure); a failed send drops its datagrams and counts them. Sockets set
//! "don't fragment" (`quinn-udp` does, for GSO): a datagram larger than the outgoing interface's
//! MTU is dropped and counted, not fragmented.
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
//! carrier NAT, a VPN coming up) with exactly the evidence Wolf itself uses
//! (`docs/protocol/streaming-ports.md` § How Wolf matches traffic to a session). Everything else
//! is dropped and counted as `not_admitted`. At most `max_mappings` endpoints are mapped per
//! stream; further admissible endpoints are dropped (`mapping_limit`) until a mapping expires, so
//! spoofed sources cannot grow memory. A mapping expires after `idle_timeout` without a datagram
//! **from the client** (Moonlight pings every 500 ms and ENet keeps alive on its own; Wolf's traffic
//! does not keep a mapping alive, so a vanished client's stream stops being relayed).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::SessionShared;
use super::fast_path::{FlowSpec, KernelLease};
use super::socket::RelaySocket;
use super::source::bind_upstream;
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
    upstream: RelaySocket,
    /// The upstream socket sends from the stream's public port ([`super::source`]).
    stable_source: bool,
    last_from_client: Instant,
    /// The flow as offered to the kernel fast path.
    kernel: Option<KernelLease>,
}

impl Mapping {
    /// When the client last sent: to the relay, or through the kernel.
    fn last_active(&self) -> Instant {
        let kernel = self.kernel.as_ref().and_then(|k| k.flow().last_active());
        kernel.map_or(self.last_from_client, |k| k.max(self.last_from_client))
    }
}

/// The flow the kernel fast path could carry for a new mapping: IPv4 on both sides, and a Wolf
/// reached by forwarding (not on this host's loopback).
fn kernel_flow(client: SocketAddr, public_port: u16, upstream: &RelaySocket) -> Option<FlowSpec> {
    let (SocketAddr::V4(client), Ok(SocketAddr::V4(relay)), Ok(SocketAddr::V4(wolf))) =
        (client, upstream.local_addr(), upstream.io.peer_addr())
    else {
        return None;
    };
    (!wolf.ip().is_loopback() && !relay.ip().is_unspecified()).then_some(FlowSpec {
        client,
        public_port,
        wolf,
        relay,
    })
}

/// Receive buffers per socket read: one `recvmmsg` fills up to this many slots.
const BATCH: usize = if quinn_udp::BATCH_SIZE < 32 {
    quinn_udp::BATCH_SIZE
} else {
    32
};
/// Size of one receive slot: the largest UDP payload, or the largest GRO-coalesced run (the kernel
/// caps those at 64 KiB). A datagram filling the whole slot may have been cut short.
const SLOT: usize = 1 << 16;
/// Largest GSO send: the payload of one IPv4 UDP datagram (65,535 − 20 − 8).
const MAX_GSO_BYTES: usize = 65_507;

/// One fixed receive batch, reused for every read of a stream task. The memory is reserved once
/// (`BATCH` × 64 KiB of zeroed, lazily committed pages; only what datagrams touch becomes
/// resident).
pub(crate) struct RecvBatch {
    buf: Box<[u8]>,
    meta: [RecvMeta; BATCH],
    filled: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            meta: [RecvMeta::default(); BATCH],
            filled: 0,
        }
    }

    /// One non-blocking batched read; `WouldBlock` when nothing is queued. Tokio's read
    /// readiness is cleared when the read returns `WouldBlock` **or fills only part of the
    /// batch** (the queue is empty then too): the closure hands tokio a `WouldBlock` for a
    /// partial batch, and the count it read travels beside.
    fn read(&mut self, socket: &RelaySocket) -> io::Result<usize> {
        self.filled = 0;
        self.read_more(socket)
    }

    /// Like [`RecvBatch::read`], into the slots after the ones already filled; returns how many
    /// were added. After a partial read it reads nothing (`WouldBlock`, no syscall) until the
    /// reactor has reported new arrivals.
    fn read_more(&mut self, socket: &RelaySocket) -> io::Result<usize> {
        let from = self.filled;
        let room = BATCH - from;
        if room == 0 {
            return Ok(0);
        }
        let mut slots = self.buf[from * SLOT..]
            .chunks_exact_mut(SLOT)
            .map(IoSliceMut::new);
        let mut iovs: [IoSliceMut<'_>; BATCH] =
            std::array::from_fn(|_| slots.next().unwrap_or_else(|| IoSliceMut::new(&mut [])));
        let meta = &mut self.meta[from..];
        let mut partial = None;
        let full = socket.io.try_io(Interest::READABLE, || {
            let n = socket.state.recv(socket.sock_ref(), &mut iovs[..room], meta)?;
            if n < room {
                partial = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match (partial, full) {
            (Some(n), _) => n,
            (None, result) => result?,
        };
        self.filled = from + n;
        Ok(n)
    }

    /// How many slots the last reads filled.
    pub(crate) fn filled(&self) -> usize {
        self.filled
    }

    /// Whether the last read filled every slot, so that more may be queued.
    fn was_full(&self) -> bool {
        self.filled == BATCH
    }

    /// Wait until `socket` is readable and read one batch.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        socket: &RelaySocket,
    ) -> Poll<io::Result<usize>> {
        loop {
            match socket.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match self.read(socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// The source and the bytes of received message `i`; `None` if it filled its slot and may
    /// have been truncated.
    pub(crate) fn message(&self, i: usize) -> Option<(SocketAddr, &[u8], usize)> {
        let meta = &self.meta[i];
        if meta.len >= SLOT {
            return None;
        }
        let data = &self.buf[i * SLOT..i * SLOT + meta.len];
        Some((meta.addr, data, meta.stride))
    }
}

/// The datagrams in one received buffer: GRO coalesces equal-size datagrams of one flow and
/// reports their size as `stride` (the last one may be shorter). An empty datagram is one empty
/// segment.
pub(crate) fn segments(data: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let stride = if stride == 0 || stride > data.len() {
        data.len().max(1)
    } else {
        stride
    };
    let empty = data.is_empty().then_some(data);
    empty.into_iter().chain(data.chunks(stride))
}

/// Datagrams for one destination, coalesced into one GSO send: equal sizes, the last may be
/// shorter, at most `max_segments` and [`MAX_GSO_BYTES`]. The buffer is allocated once.
struct GsoBatch {
    buf: Vec<u8>,
    segment: usize,
    count: usize,
    /// A shorter (last) segment was appended; nothing more may follow.
    closed: bool,
}

impl GsoBatch {
    fn new() -> GsoBatch {
        GsoBatch {
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// Whether `datagram` can join the batch.
    fn accepts(&self, datagram: &[u8], max_segments: usize) -> bool {
        self.count == 0
            || (!self.closed
                && !datagram.is_empty()
                && datagram.len() <= self.segment
                && self.count < max_segments
                && self.buf.len() + datagram.len() <= MAX_GSO_BYTES)
    }

    /// Append; the caller checked [`GsoBatch::accepts`].
    fn push(&mut self, datagram: &[u8]) {
        if self.count == 0 {
            self.segment = datagram.len();
            self.closed = datagram.is_empty();
        } else if datagram.len() < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.closed = false;
    }
}

/// Send one transmit, waiting for buffer space only when the socket is full.
async fn send_transmit(socket: &RelaySocket, transmit: &Transmit<'_>) -> io::Result<()> {
    loop {
        match socket.io.try_io(Interest::WRITABLE, || {
            socket.state.try_send(socket.sock_ref(), transmit)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.io.writable().await?,
            other => return other,
        }
    }
}

fn transmit(destination: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
    Transmit {
        destination,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    }
}

/// Send the batch to `client` from the public socket and empty it; returns how many datagrams
/// (and bytes) left. If a GSO send fails, its datagrams are sent one by one (`quinn-udp` stops offering GSO on
/// sockets whose device rejects it; if the datagrams themselves are too large, GSO was not the
/// problem and the socket's state is probed afresh so that GSO comes back).
async fn flush_to_client(public: &mut Public, batch: &mut GsoBatch, client: SocketAddr) -> (usize, usize) {
    let whole = (batch.count, batch.buf.len());
    let sent = match batch.count {
        0 => (0, 0),
        1 => match send_transmit(public.socket(), &transmit(client, &batch.buf, None)).await {
            Ok(()) => whole,
            Err(_) => (0, 0),
        },
        count => {
            let gso = transmit(client, &batch.buf, Some(batch.segment));
            match send_transmit(public.socket(), &gso).await {
                Ok(()) => whole,
                Err(error) => {
                    tracing::debug!(%client, %error, segments = count, "gso send failed; sending one by one");
                    let (mut sent, mut too_big) = ((0, 0), false);
                    for datagram in batch.buf.chunks(batch.segment) {
                        match send_transmit(public.socket(), &transmit(client, datagram, None)).await {
                            Ok(()) => {
                                sent.0 += 1;
                                sent.1 += datagram.len();
                            }
                            Err(e) => too_big |= quinn_udp::is_msg_size_err(&e),
                        }
                    }
                    if too_big && public.socket().state.max_gso_segments() <= 1 {
                        public.reprobe();
                    }
                    sent
                }
            }
        }
    };
    batch.clear();
    sent
}

/// The public socket a stream task answers clients from: its own, or the one socket of the shared
/// ports that every session's task sends from (`super::shared`).
pub(crate) enum Public {
    /// The session's own socket, which its task also reads.
    Own(RelaySocket),
    /// The shared ports' socket of this stream; its dispatcher reads it.
    Shared(Arc<RelaySocket>),
}

impl Public {
    fn socket(&self) -> &RelaySocket {
        match self {
            Public::Own(socket) => socket,
            Public::Shared(socket) => socket,
        }
    }

    /// Probe GSO support afresh after a failure that was not GSO's fault. A shared socket keeps
    /// its state: other tasks send through it at the same time.
    fn reprobe(&mut self) {
        if let Public::Own(socket) = self
            && let Ok(state) = UdpSocketState::new(socket.sock_ref())
        {
            socket.state = state;
        }
    }
}

/// A client datagram the shared ports' dispatcher routed to a session.
#[derive(Debug)]
pub(crate) struct Routed {
    pub(crate) from: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// Where a stream task's client datagrams come from.
pub(crate) enum Clients {
    /// Read from the task's own public socket.
    Socket,
    /// Handed over by the shared ports' dispatcher; closed when the session is deregistered.
    Routed(mpsc::Receiver<Routed>),
}

enum Event {
    FromClient,
    Routed(Routed),
    InboxClosed,
    FromWolf { index: usize },
    PublicError,
    UpstreamError { index: usize, error: io::Error },
    Sweep,
}

fn poll_clients(
    cx: &mut Context<'_>,
    public: &Public,
    clients: &mut Clients,
    batch: &mut RecvBatch,
) -> Poll<Event> {
    match clients {
        Clients::Socket => match batch.poll_recv(cx, public.socket()) {
            Poll::Ready(Ok(_)) => Poll::Ready(Event::FromClient),
            Poll::Ready(Err(_)) => Poll::Ready(Event::PublicError),
            Poll::Pending => Poll::Pending,
        },
        Clients::Routed(inbox) => inbox.poll_recv(cx).map(|routed| match routed {
            Some(routed) => Event::Routed(routed),
            None => Event::InboxClosed,
        }),
    }
}

fn poll_event(
    cx: &mut Context<'_>,
    public: &Public,
    clients: &mut Clients,
    mappings: &[Mapping],
    sweep: &mut Interval,
    batch: &mut RecvBatch,
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
        if i == mappings.len() {
            if let Poll::Ready(event) = poll_clients(cx, public, clients, batch) {
                *rotate = i + 1;
                return Poll::Ready(event);
            }
        } else {
            match batch.poll_recv(cx, &mappings[i].upstream) {
                Poll::Ready(Ok(_)) => {
                    *rotate = i + 1;
                    return Poll::Ready(Event::FromWolf { index: i });
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Event::UpstreamError { index: i, error }),
                Poll::Pending => {}
            }
        }
    }
    Poll::Pending
}

fn sweep_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// Drop mappings idle for longer than `idle`.
fn expire(mappings: &mut Vec<Mapping>, idle: Duration, counters: &UdpCounters, kind: StreamKind) {
    let now = Instant::now();
    let before = mappings.len();
    mappings.retain(|m| {
        let keep = now.duration_since(m.last_active()) < idle;
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

/// Batched reads from one upstream socket before the other sources get a turn.
const DRAIN_READS: usize = 4;

/// Forward what Wolf sent to mapping `index`: the batch already read, then further batches while
/// they are queued (at most [`DRAIN_READS`] reads), coalescing runs of equal-size datagrams into
/// GSO sends from the public socket.
async fn wolf_to_client(
    public: &mut Public,
    mapping: &Mapping,
    batch: &mut RecvBatch,
    out: &mut GsoBatch,
    counters: &UdpCounters,
) {
    // (datagrams, bytes) sent and datagrams dropped.
    let (mut sent, mut failed) = ((0usize, 0usize), 0usize);
    // Coalescing under load: a read that did not fill the batch steps back once, behind the
    // other streams that are ready and whatever the reactor has seen arrive since, then takes
    // what has queued meanwhile. Alone on the runtime this costs one empty poll; with many
    // sessions busy it lets this flow's datagrams gather into one GSO send, where serving each
    // as it arrives would pay a send (and its share of wake-ups) per datagram.
    if !batch.was_full() {
        tokio::task::yield_now().await;
        match batch.read_more(&mapping.upstream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // An ICMP error for an earlier datagram to Wolf, as in `serve`.
            Err(_) => bump(&counters.drop_send_to_wolf),
        }
    }
    for read in 1..=DRAIN_READS {
        for i in 0..batch.filled {
            let Some((_, data, stride)) = batch.message(i) else {
                bump(&counters.recv_errors);
                continue;
            };
            // A GRO run leaves as it came, one GSO send straight from the receive slot, when
            // nothing is waiting to go before it; if the send fails, its datagrams take the
            // copying path below (which falls back to one by one).
            let runs = if stride > 0 {
                data.len().div_ceil(stride)
            } else {
                1
            };
            if out.count == 0
                && runs > 1
                && runs <= public.socket().state.max_gso_segments()
                && data.len() <= MAX_GSO_BYTES
            {
                let gso = transmit(mapping.client, data, Some(stride));
                if send_transmit(public.socket(), &gso).await.is_ok() {
                    (sent.0, sent.1) = (sent.0 + runs, sent.1 + data.len());
                    continue;
                }
            }
            for datagram in segments(data, stride) {
                if !out.accepts(datagram, public.socket().state.max_gso_segments()) {
                    let count = out.count;
                    let (p, b) = flush_to_client(public, out, mapping.client).await;
                    (sent.0, sent.1, failed) = (sent.0 + p, sent.1 + b, failed + count - p);
                }
                out.push(datagram);
            }
        }
        let count = out.count;
        let (p, b) = flush_to_client(public, out, mapping.client).await;
        (sent.0, sent.1, failed) = (sent.0 + p, sent.1 + b, failed + count - p);
        // A batch with free slots emptied the queue (and cleared readiness): what arrives next
        // is reported by the reactor, without a read that would find nothing.
        if read == DRAIN_READS || !batch.was_full() {
            break;
        }
        match batch.read(&mapping.upstream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                bump(&counters.drop_send_to_wolf);
                break;
            }
        }
    }
    add(&counters.to_client_packets, sent.0 as u64);
    add(&counters.to_client_bytes, sent.1 as u64);
    add(&counters.drop_send_to_client, failed as u64);
}

/// Relay one stream of one session until aborted (or, routed, until the session's inbox closes).
pub(crate) async fn serve(
    kind: StreamKind,
    mut public: Public,
    mut clients: Clients,
    shared: Arc<SessionShared>,
) {
    let counters = shared.counters.udp(kind);
    let config = &shared.config;
    let idle = config.udp_idle_timeout;
    let max_mappings = config.max_mappings_per_stream.max(1);
    let mut batch = RecvBatch::new();
    let mut out = GsoBatch::new();
    let mut mappings: Vec<Mapping> = Vec::with_capacity(max_mappings);
    let mut sweep = tokio::time::interval(sweep_period(idle));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rotate = 0usize;
    let public_port = public.socket().local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let event = std::future::poll_fn(|cx| {
            poll_event(
                cx,
                &public,
                &mut clients,
                &mappings,
                &mut sweep,
                &mut batch,
                &mut rotate,
            )
        })
        .await;
        match event {
            Event::FromWolf { index } => {
                wolf_to_client(&mut public, &mappings[index], &mut batch, &mut out, counters).await;
            }
            Event::FromClient => {
                for i in 0..batch.filled {
                    let Some((from, data, stride)) = batch.message(i) else {
                        bump(&counters.recv_errors);
                        continue;
                    };
                    for datagram in segments(data, stride) {
                        client_to_wolf(
                            kind,
                            datagram,
                            from,
                            public_port,
                            &mut mappings,
                            &shared,
                            counters,
                        )
                        .await;
                    }
                }
            }
            Event::Routed(routed) => {
                client_to_wolf(
                    kind,
                    &routed.data,
                    routed.from,
                    public_port,
                    &mut mappings,
                    &shared,
                    counters,
                )
                .await;
            }
            Event::InboxClosed => return,
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

/// Forward one client datagram to Wolf, creating the client's mapping if the admission policy
/// allows it.
async fn client_to_wolf(
    kind: StreamKind,
    datagram: &[u8],
    from: SocketAddr,
    public_port: u16,
    mappings: &mut Vec<Mapping>,
    shared: &Arc<SessionShared>,
    counters: &UdpCounters,
) {
    let config = &shared.config;
    let idle = config.udp_idle_timeout;
    let max_mappings = config.max_mappings_per_stream.max(1);
    let index = match mappings.iter().position(|m| m.client == from) {
        Some(i) => i,
        None => {
            let secrets = shared.secrets();
            let why = if config.admit_any_source {
                Some(Admission::AnySource)
            } else {
                admit(kind, from, datagram, shared.client_ip, &secrets)
            };
            let Some(why) = why else {
                bump(&counters.drop_not_admitted);
                return;
            };
            if mappings.len() >= max_mappings {
                expire(mappings, idle, counters, kind);
            }
            if mappings.len() >= max_mappings {
                bump(&counters.drop_mapping_limit);
                return;
            }
            let wolf = shared.wolf_udp_addr(kind);
            // On shared ports another session's upstream socket may hold the public port towards
            // the same Wolf: only a session's own ports give it a stable source.
            let stable_free = !shared.shared_udp && !mappings.iter().any(|m| m.stable_source);
            let (upstream, stable_source) =
                match bind_upstream(public_port, wolf, config.socket_options(), stable_free) {
                    Ok(s) => s,
                    Err(error) => {
                        bump(&counters.upstream_socket_errors);
                        tracing::warn!(stream = %kind, %error, "cannot open upstream socket");
                        return;
                    }
                };
            tracing::debug!(stream = %kind, client = %from, %wolf, admission = ?why, "udp mapping created");
            bump(&counters.mappings_created);
            bump(match why {
                Admission::ClientIp => &counters.admitted_client_ip,
                Admission::PingSecret => &counters.admitted_ping_secret,
                Admission::ConnectData => &counters.admitted_connect_data,
                Admission::AnySource => &counters.admitted_any_source,
            });
            bump(&counters.mappings_active);
            mappings.push(Mapping {
                client: from,
                upstream,
                stable_source,
                last_from_client: Instant::now(),
                kernel: None,
            });
            mappings.len() - 1
        }
    };
    let mapping = &mut mappings[index];
    mapping.last_from_client = Instant::now();
    match mapping.upstream.io.send(datagram).await {
        Ok(_) => {
            bump(&counters.to_wolf_packets);
            add(&counters.to_wolf_bytes, datagram.len() as u64);
        }
        Err(_) => bump(&counters.drop_send_to_wolf),
    }
    // Offered after the first datagram went the relay's way: Wolf has learnt the upstream
    // address the kernel path will keep using.
    if mapping.kernel.is_none()
        && let Some(fast) = &config.fast_path
        && let Some(flow) = kernel_flow(from, public_port, &mapping.upstream)
    {
        mapping.kernel = Some(fast.offer(flow, shared, kind));
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::relay::socket::{SocketOptions, udp_socket};

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
                upstream: udp_socket(addr("127.0.0.1:0"), None, SocketOptions::default(), false)
                    .expect("bind"),
                stable_source: false,
                last_from_client: Instant::now(),
                kernel: None,
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

    /// `read_more` appends after the slots already filled, in arrival order, and a full batch
    /// takes nothing more; `read` starts over.
    #[tokio::test]
    async fn read_more_appends_to_the_batch() {
        let rx = udp_socket(addr("127.0.0.1:0"), None, SocketOptions::default(), false).expect("bind");
        let to = rx.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let send = |payloads: &[&[u8]]| {
            for p in payloads {
                tx.send_to(p, to).expect("send");
            }
        };
        let mut batch = RecvBatch::new();
        let texts = |batch: &RecvBatch| -> Vec<Vec<u8>> {
            (0..batch.filled)
                .map(|i| batch.message(i).expect("not truncated").1.to_vec())
                .collect()
        };
        // Loopback delivers within `send_to`, so what was sent is queued when it returns.
        send(&[b"a", b"bb"]);
        tokio::time::timeout(Duration::from_secs(5), rx.io.readable())
            .await
            .expect("readable in time")
            .expect("readable");
        assert_eq!(batch.read(&rx).expect("read"), 2);
        send(&[b"ccc", b"dddd", b"eeeee"]);
        // The partial read cleared readiness: without the reactor's word nothing is read (no
        // syscall); after a yield the reactor has been polled, as in `wolf_to_client`.
        let e = batch.read_more(&rx).expect_err("readiness was cleared");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tokio::task::yield_now().await;
        assert_eq!(batch.read_more(&rx).expect("read more"), 3);
        assert_eq!(texts(&batch), [&b"a"[..], b"bb", b"ccc", b"dddd", b"eeeee"]);
        assert!(!batch.was_full());
        // Nothing queued: WouldBlock, and the batch keeps what it has.
        let e = batch.read_more(&rx).expect_err("nothing queued");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(batch.filled, 5);
        // Fill the batch to the last slot; a full batch reads nothing more.
        let more: Vec<Vec<u8>> = (0..BATCH + 2).map(|i| vec![b'x'; i + 1]).collect();
        send(&more.iter().map(Vec::as_slice).collect::<Vec<_>>());
        tokio::task::yield_now().await;
        assert_eq!(batch.read_more(&rx).expect("fill"), BATCH - 5);
        assert!(batch.was_full());
        assert_eq!(batch.read_more(&rx).expect("full"), 0);
        assert_eq!(texts(&batch)[5], vec![b'x'; 1]);
        // `read` starts over with what is still queued.
        assert_eq!(batch.read(&rx).expect("read again"), 7);
        assert_eq!(texts(&batch)[0], vec![b'x'; BATCH - 4]);
    }

    #[test]
    fn gro_buffers_split_at_the_stride() {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let parts: Vec<&[u8]> = segments(&data, 1000).collect();
        assert_eq!(parts, [&data[..1000], &data[1000..2000], &data[2000..]]);
        // No GRO: stride equals the length (or is 0 / larger on odd platforms): one datagram.
        for stride in [2500, 0, 4000] {
            assert_eq!(segments(&data, stride).collect::<Vec<_>>(), [&data[..]]);
        }
        let empty: Vec<&[u8]> = segments(&[], 0).collect();
        assert_eq!(empty, [&[] as &[u8]], "an empty datagram is forwarded, not lost");
    }

    #[test]
    fn gso_batches_hold_equal_sizes_then_one_shorter() {
        let mut b = GsoBatch::new();
        assert!(b.accepts(&[1; 1400], 3));
        b.push(&[1; 1400]);
        assert!(!b.accepts(&[2; 1401], 3), "a larger datagram starts a new send");
        assert!(!b.accepts(&[], 3), "an empty datagram starts a new send");
        assert!(b.accepts(&[2; 1400], 3));
        b.push(&[2; 1400]);
        assert!(b.accepts(&[3; 10], 3));
        b.push(&[3; 10]);
        assert!(
            !b.accepts(&[4; 10], 3),
            "nothing follows the shorter last segment"
        );
        assert_eq!((b.count, b.segment, b.buf.len()), (3, 1400, 2810));
        b.clear();
        b.push(&[5; 1400]);
        assert!(!b.accepts(&[5; 1400], 1), "max segments 1: no GSO");
        // The total stays within one UDP datagram's payload.
        let mut big = GsoBatch::new();
        let mut n = 0;
        while big.accepts(&[6; 9000], 64) {
            big.push(&[6; 9000]);
            n += 1;
        }
        assert_eq!(n, 7);
        assert!(big.buf.len() <= MAX_GSO_BYTES);
        // An empty datagram is sent on its own.
        let mut e = GsoBatch::new();
        e.push(&[]);
        assert!(!e.accepts(&[], 64) && !e.accepts(&[1], 64));
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
