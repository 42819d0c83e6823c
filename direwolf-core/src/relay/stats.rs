//! Per-session relay counters: lock-free atomics updated on the packet path, read as plain
//! snapshot structs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::StreamPorts;

/// Which UDP stream of a session a socket carries (`docs/protocol/streaming-ports.md` § Port
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Video RTP (client pings in, RTP + FEC out).
    Video,
    /// Audio RTP (client pings in, Opus RTP out).
    Audio,
    /// The ENet control stream (bidirectional).
    Control,
}

impl StreamKind {
    /// All three, in the order video, audio, control.
    pub const ALL: [StreamKind; 3] = [StreamKind::Video, StreamKind::Audio, StreamKind::Control];

    /// A short lower-case name (`"video"`, `"audio"`, `"control"`), as in RTSP `streamid=`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Video => "video",
            StreamKind::Audio => "audio",
            StreamKind::Control => "control",
        }
    }
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct UdpCounters {
    pub(crate) to_wolf_packets: AtomicU64,
    pub(crate) to_wolf_bytes: AtomicU64,
    pub(crate) to_client_packets: AtomicU64,
    pub(crate) to_client_bytes: AtomicU64,
    pub(crate) mappings_created: AtomicU64,
    pub(crate) mappings_expired: AtomicU64,
    pub(crate) mappings_active: AtomicU64,
    pub(crate) drop_not_admitted: AtomicU64,
    pub(crate) drop_mapping_limit: AtomicU64,
    pub(crate) drop_send_to_wolf: AtomicU64,
    pub(crate) drop_send_to_client: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
    pub(crate) upstream_socket_errors: AtomicU64,
    pub(crate) drop_unknown_secret: AtomicU64,
    pub(crate) drop_unknown_source: AtomicU64,
    pub(crate) drop_ambiguous_source: AtomicU64,
    pub(crate) drop_queue_full: AtomicU64,
    pub(crate) admitted_client_ip: AtomicU64,
    pub(crate) admitted_ping_secret: AtomicU64,
    pub(crate) admitted_connect_data: AtomicU64,
    pub(crate) admitted_any_source: AtomicU64,
    pub(crate) kernel_flows: AtomicU64,
    pub(crate) kernel_refused: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct RtspCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) relayed: AtomicU64,
    pub(crate) rejected_requests: AtomicU64,
    pub(crate) rejected_connection_limit: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) bad_responses: AtomicU64,
    pub(crate) client_write_errors: AtomicU64,
    pub(crate) unrouted: AtomicU64,
}

/// The live counters of one session, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    pub(crate) rtsp: RtspCounters,
    pub(crate) video: UdpCounters,
    pub(crate) audio: UdpCounters,
    pub(crate) control: UdpCounters,
}

impl SessionCounters {
    pub(crate) fn udp(&self, kind: StreamKind) -> &UdpCounters {
        match kind {
            StreamKind::Video => &self.video,
            StreamKind::Audio => &self.audio,
            StreamKind::Control => &self.control,
        }
    }

    pub(crate) fn snapshot(&self, ports: StreamPorts) -> SessionStats {
        SessionStats {
            ports,
            rtsp: self.rtsp.snapshot(),
            video: self.video.snapshot(),
            audio: self.audio.snapshot(),
            control: self.control.snapshot(),
        }
    }
}

/// Add one to a counter (relaxed: counters are statistics, not synchronisation).
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Add `n` to a counter.
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl UdpCounters {
    fn snapshot(&self) -> UdpStats {
        UdpStats {
            to_wolf_packets: get(&self.to_wolf_packets),
            to_wolf_bytes: get(&self.to_wolf_bytes),
            to_client_packets: get(&self.to_client_packets),
            to_client_bytes: get(&self.to_client_bytes),
            mappings_created: get(&self.mappings_created),
            mappings_expired: get(&self.mappings_expired),
            mappings_active: get(&self.mappings_active),
            kernel_flows: get(&self.kernel_flows),
            kernel_refused: get(&self.kernel_refused),
            admissions: Admissions {
                client_ip: get(&self.admitted_client_ip),
                ping_secret: get(&self.admitted_ping_secret),
                connect_data: get(&self.admitted_connect_data),
                any_source: get(&self.admitted_any_source),
            },
            drops: UdpDrops {
                not_admitted: get(&self.drop_not_admitted),
                mapping_limit: get(&self.drop_mapping_limit),
                send_to_wolf: get(&self.drop_send_to_wolf),
                send_to_client: get(&self.drop_send_to_client),
                recv_errors: get(&self.recv_errors),
                upstream_socket_errors: get(&self.upstream_socket_errors),
                unknown_secret: get(&self.drop_unknown_secret),
                unknown_source: get(&self.drop_unknown_source),
                ambiguous_source: get(&self.drop_ambiguous_source),
                queue_full: get(&self.drop_queue_full),
            },
        }
    }
}

impl RtspCounters {
    fn snapshot(&self) -> RtspStats {
        RtspStats {
            connections: get(&self.connections),
            relayed: get(&self.relayed),
            rejected_requests: get(&self.rejected_requests),
            rejected_connection_limit: get(&self.rejected_connection_limit),
            upstream_errors: get(&self.upstream_errors),
            bad_responses: get(&self.bad_responses),
            client_write_errors: get(&self.client_write_errors),
            unrouted: get(&self.unrouted),
        }
    }
}

/// Counters of one session's relay at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStats {
    /// The session's public ports.
    pub ports: StreamPorts,
    /// The RTSP (TCP) relay.
    pub rtsp: RtspStats,
    /// The video UDP relay.
    pub video: UdpStats,
    /// The audio UDP relay.
    pub audio: UdpStats,
    /// The control (ENet) UDP relay.
    pub control: UdpStats,
}

impl SessionStats {
    /// The counters of one UDP stream.
    pub fn udp(&self, kind: StreamKind) -> &UdpStats {
        match kind {
            StreamKind::Video => &self.video,
            StreamKind::Audio => &self.audio,
            StreamKind::Control => &self.control,
        }
    }
}

/// Counters of the RTSP relay of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtspStats {
    /// Client TCP connections accepted.
    pub connections: u64,
    /// Requests relayed to Wolf and answered to the client.
    pub relayed: u64,
    /// Connections closed because the request was garbage, too large or too slow.
    pub rejected_requests: u64,
    /// Connections closed at once because the session already had its maximum open.
    pub rejected_connection_limit: u64,
    /// Requests that could not be delivered to Wolf or whose answer did not arrive in time.
    pub upstream_errors: u64,
    /// Wolf answers that were not parseable RTSP or too large (closed without an answer).
    pub bad_responses: u64,
    /// Answers that could not be written back to the client.
    pub client_write_errors: u64,
    /// Requests on the shared RTSP port that matched no session (closed unanswered).
    pub unrouted: u64,
}

/// Counters of one UDP stream of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams forwarded client → Wolf.
    pub to_wolf_packets: u64,
    /// Payload bytes forwarded client → Wolf.
    pub to_wolf_bytes: u64,
    /// Datagrams forwarded Wolf → client.
    pub to_client_packets: u64,
    /// Payload bytes forwarded Wolf → client.
    pub to_client_bytes: u64,
    /// Client endpoints admitted so far.
    pub mappings_created: u64,
    /// Client endpoints forgotten after the idle timeout.
    pub mappings_expired: u64,
    /// Client endpoints currently mapped.
    pub mappings_active: u64,
    /// Client endpoints whose datagrams (both ways) the kernel fast path took over.
    pub kernel_flows: u64,
    /// Client endpoints the kernel fast path gave back, their forwarded datagrams dropped by a
    /// host firewall.
    pub kernel_refused: u64,
    /// Client endpoints admitted so far, by the evidence that admitted them.
    pub admissions: Admissions,
    /// Datagrams dropped, by reason.
    pub drops: UdpDrops,
}

/// Client endpoints admitted, by the evidence ([`crate::relay::Admission`]). An admission by
/// ping payload or connect data is from an address that is not the session's client: a client
/// whose address changed, or someone who knows the session's secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admissions {
    /// The session's client address.
    pub client_ip: u64,
    /// The session's ping payload, from another address.
    pub ping_secret: u64,
    /// The session's ENet connect data, from another address.
    pub connect_data: u64,
    /// Any source (`RelayConfig::admit_any_source`).
    pub any_source: u64,
}

impl Admissions {
    /// Each kind of evidence with its count, named as in the metrics (`client_ip`, …).
    pub fn by_evidence(&self) -> [(&'static str, u64); 4] {
        [
            ("client_ip", self.client_ip),
            ("ping_secret", self.ping_secret),
            ("connect_data", self.connect_data),
            ("any_source", self.any_source),
        ]
    }

    fn add(&mut self, o: &Admissions) {
        self.client_ip += o.client_ip;
        self.ping_secret += o.ping_secret;
        self.connect_data += o.connect_data;
        self.any_source += o.any_source;
    }
}

/// Dropped datagrams of one UDP stream, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpDrops {
    /// From an unknown endpoint that the admission policy refused (wrong source IP and no valid
    /// ping secret / ENet connect data).
    pub not_admitted: u64,
    /// From an admissible new endpoint while the session already had its maximum of mappings.
    pub mapping_limit: u64,
    /// Sending to Wolf failed (e.g. ICMP port unreachable reported on the upstream socket).
    pub send_to_wolf: u64,
    /// Sending to the client failed.
    pub send_to_client: u64,
    /// Receive errors on the public socket.
    pub recv_errors: u64,
    /// New endpoints that could not get an upstream socket (bind/connect failed).
    pub upstream_socket_errors: u64,
    /// On the shared ports: carrying a ping payload or connect data that no session has.
    pub unknown_secret: u64,
    /// On the shared ports: carrying no secret, from an address that is no session's client.
    pub unknown_source: u64,
    /// On the shared ports: carrying no secret, from the address of several sessions' clients.
    pub ambiguous_source: u64,
    /// On the shared ports: the session's queue was full.
    pub queue_full: u64,
}

/// Counters summed over every session the relay ever carried: the closed ones kept, the open
/// ones as they are now. Every field but the `mappings_active` gauges only grows, so it can be
/// exported as a monitoring counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Sessions closed so far.
    pub sessions_closed: u64,
    /// The RTSP relays.
    pub rtsp: RtspStats,
    /// The video UDP relays.
    pub video: UdpStats,
    /// The audio UDP relays.
    pub audio: UdpStats,
    /// The control (ENet) UDP relays.
    pub control: UdpStats,
}

impl RelayTotals {
    /// The sums of one UDP stream kind.
    pub fn udp(&self, kind: StreamKind) -> &UdpStats {
        match kind {
            StreamKind::Video => &self.video,
            StreamKind::Audio => &self.audio,
            StreamKind::Control => &self.control,
        }
    }

    /// Adds one session's counters.
    pub(crate) fn add(&mut self, session: &SessionStats) {
        self.rtsp.add(&session.rtsp);
        self.video.add(&session.video);
        self.audio.add(&session.audio);
        self.control.add(&session.control);
    }

    /// Keeps a closed session's counters; it has no mapping left.
    pub(crate) fn retire(&mut self, mut session: SessionStats) {
        session.video.mappings_active = 0;
        session.audio.mappings_active = 0;
        session.control.mappings_active = 0;
        self.add(&session);
        self.sessions_closed += 1;
    }
}

impl RtspStats {
    fn add(&mut self, o: &RtspStats) {
        self.connections += o.connections;
        self.relayed += o.relayed;
        self.rejected_requests += o.rejected_requests;
        self.rejected_connection_limit += o.rejected_connection_limit;
        self.upstream_errors += o.upstream_errors;
        self.bad_responses += o.bad_responses;
        self.client_write_errors += o.client_write_errors;
        self.unrouted += o.unrouted;
    }
}

impl UdpStats {
    fn add(&mut self, o: &UdpStats) {
        self.to_wolf_packets += o.to_wolf_packets;
        self.to_wolf_bytes += o.to_wolf_bytes;
        self.to_client_packets += o.to_client_packets;
        self.to_client_bytes += o.to_client_bytes;
        self.mappings_created += o.mappings_created;
        self.mappings_expired += o.mappings_expired;
        self.mappings_active += o.mappings_active;
        self.kernel_flows += o.kernel_flows;
        self.kernel_refused += o.kernel_refused;
        self.admissions.add(&o.admissions);
        self.drops.add(&o.drops);
    }
}

impl UdpDrops {
    /// Each reason with its count, reasons named as in the metrics (`not_admitted`, …).
    pub fn by_reason(&self) -> [(&'static str, u64); 10] {
        [
            ("not_admitted", self.not_admitted),
            ("mapping_limit", self.mapping_limit),
            ("send_to_wolf", self.send_to_wolf),
            ("send_to_client", self.send_to_client),
            ("recv_error", self.recv_errors),
            ("upstream_socket_error", self.upstream_socket_errors),
            ("unknown_secret", self.unknown_secret),
            ("unknown_source", self.unknown_source),
            ("ambiguous_source", self.ambiguous_source),
            ("queue_full", self.queue_full),
        ]
    }

    fn add(&mut self, o: &UdpDrops) {
        self.not_admitted += o.not_admitted;
        self.mapping_limit += o.mapping_limit;
        self.send_to_wolf += o.send_to_wolf;
        self.send_to_client += o.send_to_client;
        self.recv_errors += o.recv_errors;
        self.upstream_socket_errors += o.upstream_socket_errors;
        self.unknown_secret += o.unknown_secret;
        self.unknown_source += o.unknown_source;
        self.ambiguous_source += o.ambiguous_source;
        self.queue_full += o.queue_full;
    }
}
