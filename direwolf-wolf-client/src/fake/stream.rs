//! The fake Wolf's streaming side (`docs/protocol/streaming-ports.md` § RTSP handshake to § ENet
//! control stream, Wolf V4…V6 behaviour): an RTSP server over TCP (one request per connection,
//! answer, close; module `rtsp`), the video and audio UDP ping sockets (a matching ping binds the
//! session's stream to the ping's source, which then receives RTP-looking packets from the same
//! socket; module `ping`), and the control (ENet) UDP port, whose datagrams are recorded and whose
//! ENet `CONNECT` is answered with a `VERIFY_CONNECT` (module `enet`).
//!
//! Enable it with [`FakeWolfBuilder::stream`](super::FakeWolfBuilder::stream); read what happened
//! with [`FakeWolf::stream_report`](super::FakeWolf::stream_report).
//!
//! What it does not do: encode media (packets carry a 12-byte RTP header and filler, so a real
//! client never decodes a frame; see [`StreamConfig::video_rtp_pings`]), decrypt or answer the
//! control stream's messages (ENet commands are only acknowledged), or send ENet pings itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::{FakeWolf, Shared};
use crate::events::names;
use crate::ids::SessionId;
use crate::types::StreamSession;

mod announce;
mod enet;
mod ping;
mod rtsp;

use self::ping::{Kind, ping_loop};
use self::rtsp::rtsp_loop;

/// Where the streaming side listens. Ports 0 are chosen by the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Address of every stream socket (Wolf binds IPv4 only; the fake takes what it is given).
    pub bind_ip: IpAddr,
    /// RTSP (TCP), Wolf `WOLF_RTSP_SETUP_PORT`, default 48010.
    pub rtsp_port: u16,
    /// Video ping/RTP (UDP), `WOLF_VIDEO_PING_PORT`, default 48100.
    pub video_port: u16,
    /// Audio ping/RTP (UDP), `WOLF_AUDIO_PING_PORT`, default 48200.
    pub audio_port: u16,
    /// Control/ENet (UDP), `WOLF_CONTROL_PORT`, default 47999.
    pub control_port: u16,
    /// RTP packets sent back for every matching ping (default 3).
    pub rtp_per_ping: u32,
    /// Answer only this many matching video pings per session with RTP (default: all). The
    /// filler never forms a video frame, and moonlight-common-c ends a stream whose video packets
    /// form no frame within 10 s of the first one (`ML_ERROR_NO_VIDEO_FRAME`), but only when a
    /// packet arrives: a few early packets keep a real client's stream up indefinitely.
    pub video_rtp_pings: Option<u64>,
}

impl StreamConfig {
    /// Wolf's default ports on `bind_ip`.
    pub fn new(bind_ip: IpAddr) -> Self {
        StreamConfig {
            bind_ip,
            rtsp_port: 48010,
            video_port: 48100,
            audio_port: 48200,
            control_port: 47999,
            rtp_per_ping: 3,
            video_rtp_pings: None,
        }
    }

    /// System-chosen ports on `bind_ip` (for tests on 127.0.0.1).
    pub fn ephemeral(bind_ip: IpAddr) -> Self {
        StreamConfig {
            rtsp_port: 0,
            video_port: 0,
            audio_port: 0,
            control_port: 0,
            ..Self::new(bind_ip)
        }
    }
}

/// The bound stream addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BoundStreamPorts {
    /// RTSP.
    pub rtsp: SocketAddr,
    /// Video.
    pub video: SocketAddr,
    /// Audio.
    pub audio: SocketAddr,
    /// Control.
    pub control: SocketAddr,
}

/// What the streaming side saw and did for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamRecord {
    /// The Wolf session id.
    pub session_id: String,
    /// The session's `rtsp_fake_ip`.
    pub rtsp_fake_ip: Option<String>,
    /// RTSP requests matched to the session, `METHOD target` in arrival order.
    pub rtsp_requests: Vec<String>,
    /// TCP sources of those requests.
    pub rtsp_sources: Vec<IpAddr>,
    /// Whether an `ANNOUNCE` fired `VideoSession`/`AudioSession`.
    pub announced: bool,
    /// Matching video pings.
    pub video_pings: u64,
    /// Matching audio pings.
    pub audio_pings: u64,
    /// Distinct sources of the matching video pings (the stream destinations).
    pub video_ping_sources: Vec<SocketAddr>,
    /// Distinct sources of the matching audio pings.
    pub audio_ping_sources: Vec<SocketAddr>,
    /// RTP packets sent on the video socket.
    pub video_rtp_sent: u64,
    /// RTP packets sent on the audio socket.
    pub audio_rtp_sent: u64,
    /// ENet peers whose `CONNECT` carried the session's connect data.
    pub enet_connects: Vec<SocketAddr>,
}

/// Everything the streaming side recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// Bound addresses.
    pub ports: Option<BoundStreamPorts>,
    /// Per session, in order of first RTSP contact.
    pub sessions: Vec<StreamRecord>,
    /// Pings (right size) that matched no session.
    pub unmatched_pings: u64,
    /// RTSP requests answered with an error, `STATUS METHOD target`.
    pub rtsp_rejected: Vec<String>,
    /// Datagrams on the control port per source address.
    pub control_datagrams: Vec<(SocketAddr, u64)>,
}

struct Entry {
    id: SessionId,
    fake_ip: Option<String>,
    ping: [u8; 16],
    connect_data: u32,
    record: StreamRecord,
}

#[derive(Default)]
struct StreamState {
    entries: Vec<Entry>,
    unmatched_pings: u64,
    rejected: Vec<String>,
    control: HashMap<SocketAddr, u64>,
    rtp_seq: u16,
}

impl StreamState {
    /// The entry of a session, created (with fresh secrets) on first contact.
    fn entry(&mut self, s: &StreamSession) -> &mut Entry {
        let pos = self
            .entries
            .iter()
            .position(|e| e.id == s.client_id && e.fake_ip == s.rtsp_fake_ip);
        let pos = match pos {
            Some(p) => p,
            None => {
                let mut ping = [0u8; 16];
                let mut bits = random_u64() as u128 | (u128::from(random_u64()) << 64);
                for b in &mut ping {
                    // printable ASCII 33..=126, as Wolf generates it
                    *b = 33 + (bits % 94) as u8;
                    bits /= 94;
                }
                self.entries.push(Entry {
                    id: s.client_id,
                    fake_ip: s.rtsp_fake_ip.clone(),
                    ping,
                    connect_data: random_u64() as u32,
                    record: StreamRecord {
                        session_id: s.client_id.to_string(),
                        rtsp_fake_ip: s.rtsp_fake_ip.clone(),
                        ..StreamRecord::default()
                    },
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[pos]
    }

    /// The live entry (its session still exists) whose predicate holds.
    fn live_entry(&mut self, live: &[StreamSession], pred: impl Fn(&Entry) -> bool) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| {
            live.iter()
                .any(|s| s.client_id == e.id && s.rtsp_fake_ip == e.fake_ip)
                && pred(e)
        })
    }

    /// The first live entry (in order of first contact) of a session in `live` whose predicate holds.
    fn session_entry(
        &mut self,
        live: &[StreamSession],
        pred: impl Fn(&StreamSession) -> bool,
    ) -> Option<&mut Entry> {
        let ids: Vec<_> = live
            .iter()
            .filter(|s| pred(s))
            .map(|s| (s.client_id, s.rtsp_fake_ip.clone()))
            .collect();
        self.live_entry(live, |e| ids.iter().any(|(id, f)| *id == e.id && *f == e.fake_ip))
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.finish()
}

/// The running streaming side of a fake Wolf.
pub(super) struct StreamSide {
    ports: BoundStreamPorts,
    state: Arc<Mutex<StreamState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for StreamSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSide")
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Drop for StreamSide {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    state: Arc<Mutex<StreamState>>,
    config: StreamConfig,
    video_port: Arc<AtomicU16>,
    audio_port: Arc<AtomicU16>,
    control_port: Arc<AtomicU16>,
}

impl Ctx {
    fn live_sessions(&self) -> Vec<StreamSession> {
        self.shared.state.lock().sessions.clone()
    }
}

impl StreamSide {
    pub(super) async fn start(shared: Arc<Shared>, config: StreamConfig) -> std::io::Result<Self> {
        let rtsp = TcpListener::bind((config.bind_ip, config.rtsp_port)).await?;
        let video = Arc::new(UdpSocket::bind((config.bind_ip, config.video_port)).await?);
        let audio = Arc::new(UdpSocket::bind((config.bind_ip, config.audio_port)).await?);
        let control = Arc::new(UdpSocket::bind((config.bind_ip, config.control_port)).await?);
        let ports = BoundStreamPorts {
            rtsp: rtsp.local_addr()?,
            video: video.local_addr()?,
            audio: audio.local_addr()?,
            control: control.local_addr()?,
        };
        let state = Arc::new(Mutex::new(StreamState::default()));
        let ctx = Ctx {
            shared,
            state: state.clone(),
            config,
            video_port: Arc::new(AtomicU16::new(ports.video.port())),
            audio_port: Arc::new(AtomicU16::new(ports.audio.port())),
            control_port: Arc::new(AtomicU16::new(ports.control.port())),
        };
        tracing::debug!(?ports, "fake wolf stream side listening");
        let tasks = vec![
            tokio::spawn(rtsp_loop(ctx.clone(), rtsp)),
            tokio::spawn(ping_loop(ctx.clone(), Kind::Video, video)),
            tokio::spawn(ping_loop(ctx.clone(), Kind::Audio, audio)),
            tokio::spawn(control_loop(ctx, control)),
        ];
        Ok(StreamSide { ports, state, tasks })
    }

    fn report(&self) -> StreamReport {
        let st = self.state.lock();
        let mut control: Vec<(SocketAddr, u64)> = st.control.iter().map(|(a, n)| (*a, *n)).collect();
        control.sort();
        StreamReport {
            ports: Some(self.ports),
            sessions: st.entries.iter().map(|e| e.record.clone()).collect(),
            unmatched_pings: st.unmatched_pings,
            rtsp_rejected: st.rejected.clone(),
            control_datagrams: control,
        }
    }
}

impl FakeWolf {
    /// The bound stream addresses, when the streaming side runs.
    pub fn stream_ports(&self) -> Option<BoundStreamPorts> {
        self.stream.as_ref().map(|s| s.ports)
    }

    /// What the streaming side recorded (empty without a streaming side).
    pub fn stream_report(&self) -> StreamReport {
        self.stream.as_ref().map(StreamSide::report).unwrap_or_default()
    }
}

/// The next datagram on `socket`, read into `buf`: its length and source. Errors are logged and
/// the read retried after 10 ms.
async fn recv(socket: &UdpSocket, buf: &mut [u8], what: &str) -> (usize, SocketAddr) {
    loop {
        match socket.recv_from(buf).await {
            Ok(r) => return r,
            Err(e) => {
                tracing::debug!(error = %e, "fake wolf {what} socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

// ----- control (ENet) -----

async fn control_loop(ctx: Ctx, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let mut peers = enet::Peers::default();
    loop {
        let (n, src) = recv(&socket, &mut buf, "control").await;
        *ctx.state.lock().control.entry(src).or_default() += 1;
        let Some(reply) = peers.handle(&buf[..n], src) else {
            continue;
        };
        if let Some(data) = reply.connected_with {
            let live = ctx.live_sessions();
            let id = {
                let mut st = ctx.state.lock();
                let src_ip = src.ip().to_string();
                let entry = match st.live_entry(&live, |e| e.connect_data == data) {
                    Some(e) => Some(e),
                    None => st.session_entry(&live, |s| s.client_ip == src_ip),
                };
                entry.map(|e| {
                    if !e.record.enet_connects.contains(&src) {
                        e.record.enet_connects.push(src);
                    }
                    e.id
                })
            };
            if let Some(id) = id {
                ctx.shared
                    .emit(names::RESUME_STREAM, &format!(r#"{{"session_id":"{id}"}}"#));
            }
        }
        for datagram in reply.send {
            let _ = socket.send_to(&datagram, src).await;
        }
    }
}
