//! The fake Wolf's streaming side (spec `streaming-ports.md` §3–§6, Wolf V4…V6 behaviour): an RTSP
//! server over TCP (one request per connection, answer, close), the video and audio UDP ping
//! sockets (a matching ping binds the session's stream to the ping's source, which then receives
//! RTP-looking packets from the same socket), and the control (ENet) UDP port, whose datagrams are
//! recorded and whose ENet `CONNECT` is answered with a `VERIFY_CONNECT` (module `enet`).
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
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::{FakeWolf, Shared, handlers};
use crate::events::names;
use crate::ids::SessionId;
use crate::secret::Secret;
use crate::types::{
    AudioMode, AudioSession, ColorRange, ColorSpace, DisplayMode, Speaker, StreamSession, VideoSession,
};
use crate::version::WolfVersion;

mod enet;

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

// ----- RTSP -----

/// Wolf's read deadline for a request (`rtsp/net.hpp`).
const RTSP_READ_DEADLINE: Duration = Duration::from_millis(2500);
/// Largest request the fake reads.
const RTSP_MAX_REQUEST: usize = 64 * 1024;

async fn rtsp_loop(ctx: Ctx, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(rtsp_connection(ctx.clone(), stream, peer));
            }
            Err(e) => {
                tracing::debug!(error = %e, "fake wolf rtsp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct RtspRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RtspRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_rtsp(stream: &mut TcpStream) -> Option<RtspRequest> {
    let deadline = tokio::time::Instant::now() + RTSP_READ_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > RTSP_MAX_REQUEST {
            return None;
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut req = RtspRequest {
        method,
        target,
        headers,
        body: buf[head_end..].to_vec(),
    };
    if let Some(len) = req.header("Content-length").and_then(|v| v.parse::<usize>().ok()) {
        let len = len.min(RTSP_MAX_REQUEST);
        while req.body.len() < len {
            let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await else {
                break;
            };
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(req)
}

/// `Some(host)` of an `rtsp://host:port` target; `Err` when the host is not `[0-9.]+` (Wolf's
/// grammar fails: 400).
fn uri_host(target: &str) -> Result<Option<&str>, ()> {
    let Some(rest) = target.split_once("://").map(|(_, r)| r) else {
        return Ok(None);
    };
    let host = rest.split([':', '/']).next().unwrap_or_default();
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(());
    }
    Ok(Some(host))
}

fn respond(status: &str, cseq: Option<&str>, mut headers: Vec<(&str, String)>, payload: &str) -> String {
    if let Some(c) = cseq {
        headers.push(("CSeq", c.to_owned()));
    }
    if !payload.is_empty() {
        headers.push(("Content-length", payload.len().to_string()));
    }
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = format!("RTSP/1.0 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(payload);
    out
}

const DESCRIBE_PAYLOAD: &str = "a=fmtp:97 surround-params=21101\r\n\
a=fmtp:97 surround-params=642012345\r\n\
a=fmtp:97 surround-params=85301234567\r\n\
a=x-ss-general.featureFlags: 3\r\n";

const SESSION: &str = "DEADBEEFCAFE;timeout = 90";

async fn rtsp_connection(ctx: Ctx, mut stream: TcpStream, peer: SocketAddr) {
    let Some(req) = read_rtsp(&mut stream).await else {
        return;
    };
    let answer = rtsp_answer(&ctx, &req, peer.ip());
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn rtsp_answer(ctx: &Ctx, req: &RtspRequest, peer: IpAddr) -> String {
    let cseq = req.header("CSeq");
    let what = format!("{} {}", req.method, req.target);
    let reject = |status: &str| {
        ctx.state.lock().rejected.push(format!("{status} {what}"));
        respond(status, cseq, Vec::new(), "")
    };
    let Ok(host) = uri_host(&req.target) else {
        return reject("400 BAD REQUEST");
    };
    let live = ctx.live_sessions();
    let host_header = req.header("Host");
    let session = if ctx.shared.version >= WolfVersion::V4 {
        live.iter()
            .find(|s| {
                let fake = s.rtsp_fake_ip.as_deref().unwrap_or("");
                fake == host.unwrap_or("") || Some(fake) == host_header
            })
            .or_else(|| {
                (host_header.is_none() || host_header == Some("0.0.0.0"))
                    .then(|| live.iter().find(|s| s.client_ip == peer.to_string()))
                    .flatten()
            })
    } else {
        live.iter().find(|s| s.client_ip == peer.to_string())
    };
    // UNVERIFIED: the status Wolf answers when no session matches.
    let Some(session) = session else {
        return reject("404 NOT FOUND");
    };
    let mut events = Vec::new();
    let answer = {
        let mut st = ctx.state.lock();
        let entry = st.entry(session);
        entry.record.rtsp_requests.push(what.clone());
        entry.record.rtsp_sources.push(peer);
        match req.method.as_str() {
            "OPTIONS" | "PLAY" => Some(respond("200 OK", cseq, Vec::new(), "")),
            "DESCRIBE" => Some(respond("200 OK", cseq, Vec::new(), DESCRIBE_PAYLOAD)),
            "SETUP" => {
                let ping = String::from_utf8_lossy(&entry.ping).into_owned();
                let port = |p: &AtomicU16| format!("server_port={}", p.load(Ordering::Relaxed));
                let session_hdr = ("Session", SESSION.to_owned());
                if req.target.contains("streamid=audio") {
                    Some(respond(
                        "200 OK",
                        cseq,
                        vec![
                            session_hdr,
                            ("Transport", port(&ctx.audio_port)),
                            ("X-SS-Ping-Payload", ping),
                        ],
                        "",
                    ))
                } else if req.target.contains("streamid=video") {
                    Some(respond(
                        "200 OK",
                        cseq,
                        vec![
                            session_hdr,
                            ("Transport", port(&ctx.video_port)),
                            ("X-SS-Ping-Payload", ping),
                        ],
                        "",
                    ))
                } else if req.target.contains("streamid=control") {
                    Some(respond(
                        "200 OK",
                        cseq,
                        vec![
                            session_hdr,
                            ("Transport", port(&ctx.control_port)),
                            ("X-SS-Connect-Data", entry.connect_data.to_string()),
                        ],
                        "",
                    ))
                } else {
                    None
                }
            }
            "ANNOUNCE" => {
                entry.record.announced = true;
                let body = String::from_utf8_lossy(&req.body).into_owned();
                events = announce_events(ctx, session, entry.ping, &body);
                Some(respond("200 OK", cseq, Vec::new(), ""))
            }
            _ => None,
        }
    };
    for (name, data) in events {
        ctx.shared.emit(name, &data);
    }
    answer.unwrap_or_else(|| reject("404 NOT FOUND"))
}

/// `VideoSession` and `AudioSession` events for an `ANNOUNCE` body.
fn announce_events(ctx: &Ctx, s: &StreamSession, ping: [u8; 16], body: &str) -> Vec<(&'static str, String)> {
    let mut values = HashMap::new();
    for line in body.lines() {
        if let Some((k, v)) = line.trim().strip_prefix("a=").and_then(|l| l.split_once(':')) {
            values.insert(k.trim(), v.trim());
        }
    }
    let num = |k: &str, default: i64| {
        values
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let width = num("x-nv-video[0].clientViewportWd", i64::from(s.video_width));
    let height = num("x-nv-video[0].clientViewportHt", i64::from(s.video_height));
    let fps = num("x-nv-video[0].maxFPS", i64::from(s.video_refresh_rate));
    let channels = num(
        "x-nv-audio.surround.numChannels",
        i64::from(s.audio_channel_count),
    );
    let flags = num("x-nv-general.featureFlags", 0);
    let codec = num("x-nv-vqos[0].bitStreamFormat", 0);
    let video = VideoSession {
        display_mode: DisplayMode {
            width: u32::try_from(width).unwrap_or(s.video_width),
            height: u32::try_from(height).unwrap_or(s.video_height),
            refresh_rate: u32::try_from(fps).unwrap_or(s.video_refresh_rate),
        },
        gst_pipeline: match codec {
            1 => "hevc",
            2 => "av1",
            _ => "h264",
        }
        .into(),
        render_node: "/dev/dri/renderD128".into(),
        session_id: s.client_id,
        port: ctx.video_port.load(Ordering::Relaxed),
        timeout_ms: u32::try_from(num("x-nv-video[0].timeoutLengthMs", 7000)).unwrap_or(7000),
        wait_for_ping: true,
        packet_size: u32::try_from(num("x-nv-video[0].packetSize", 1024)).unwrap_or(1024),
        frames_with_invalid_ref_threshold: i32::try_from(num(
            "x-nv-video[0].framesWithInvalidRefThreshold",
            0,
        ))
        .unwrap_or(0),
        fec_percentage: 20,
        min_required_fec_packets: i32::try_from(num("x-nv-vqos[0].fec.minRequiredFecPackets", 0))
            .unwrap_or(0),
        bitrate_kbps: num(
            "x-ml-video.configuredBitrateKbps",
            num("x-nv-vqos[0].bw.maximumBitrateKbps", 15000),
        ),
        slices_per_frame: i32::try_from(num("x-nv-video[0].videoEncoderSlicesPerFrame", 1)).unwrap_or(1),
        color_range: ColorRange::Mpeg,
        color_space: ColorSpace::Bt709,
        client_ip: s.client_ip.clone(),
        rtp_secret_payload: Some(Secret::new(ping)),
    };
    let channels = u32::try_from(channels).unwrap_or(2);
    let audio = AudioSession {
        gst_pipeline: "opus".into(),
        session_id: s.client_id,
        encrypt_audio: flags & 0x20 != 0,
        aes_key: Secret::new(s.aes_key.as_ref().map(|k| k.expose().clone()).unwrap_or_default()),
        aes_iv: Secret::new(s.aes_iv.as_ref().map(|k| k.expose().clone()).unwrap_or_default()),
        port: ctx.audio_port.load(Ordering::Relaxed),
        wait_for_ping: true,
        client_ip: s.client_ip.clone(),
        rtp_secret_payload: Some(Secret::new(ping)),
        packet_duration: u32::try_from(num("x-nv-aqos.packetDuration", 5)).unwrap_or(5),
        audio_mode: AudioMode {
            channels,
            streams: if channels > 2 { channels - 2 } else { 1 },
            coupled_streams: if channels > 2 { 2 } else { 1 },
            speakers: [
                Speaker::FrontLeft,
                Speaker::FrontRight,
                Speaker::FrontCenter,
                Speaker::LowFrequency,
                Speaker::BackLeft,
                Speaker::BackRight,
                Speaker::SideLeft,
                Speaker::SideRight,
            ]
            .into_iter()
            .take(channels as usize)
            .collect(),
            bitrate: 96000 * channels / 2,
            sample_rate: 48000,
        },
    };
    vec![
        (names::VIDEO_SESSION, handlers::to_json(&video)),
        (names::AUDIO_SESSION, handlers::to_json(&audio)),
    ]
}

// ----- UDP pings and RTP -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

#[derive(Serialize)]
struct PingOut<'a> {
    client_ip: String,
    client_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a [u8]>,
}

async fn ping_loop(ctx: Ctx, kind: Kind, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    let server_port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "fake wolf ping socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if n != 4 && n < 20 {
            continue;
        }
        let payload = (n >= 20).then(|| &buf[..16]);
        let event = if kind == Kind::Video {
            names::RTP_VIDEO_PING
        } else {
            names::RTP_AUDIO_PING
        };
        ctx.shared.emit(
            event,
            &handlers::to_json(&PingOut {
                client_ip: src.ip().to_string(),
                client_port: src.port(),
                payload,
            }),
        );
        let live = ctx.live_sessions();
        let sends = {
            let mut st = ctx.state.lock();
            let src_ip = src.ip().to_string();
            let matched = match payload {
                Some(p) => st.live_entry(&live, |e| e.ping == p),
                None => {
                    let ids: Vec<_> = live
                        .iter()
                        .filter(|s| s.client_ip == src_ip && src.port() == server_port)
                        .map(|s| (s.client_id, s.rtsp_fake_ip.clone()))
                        .collect();
                    st.live_entry(&live, |e| {
                        ids.iter().any(|(id, f)| *id == e.id && *f == e.fake_ip)
                    })
                }
            };
            match matched {
                Some(e) => {
                    let r = &mut e.record;
                    let (pings, sources, sent) = match kind {
                        Kind::Video => (
                            &mut r.video_pings,
                            &mut r.video_ping_sources,
                            &mut r.video_rtp_sent,
                        ),
                        Kind::Audio => (
                            &mut r.audio_pings,
                            &mut r.audio_ping_sources,
                            &mut r.audio_rtp_sent,
                        ),
                    };
                    *pings += 1;
                    if !sources.contains(&src) {
                        sources.push(src);
                    }
                    let quiet = kind == Kind::Video && ctx.config.video_rtp_pings.is_some_and(|n| *pings > n);
                    if quiet {
                        continue;
                    }
                    *sent += u64::from(ctx.config.rtp_per_ping);
                    let first = st.rtp_seq;
                    st.rtp_seq = st.rtp_seq.wrapping_add(ctx.config.rtp_per_ping as u16);
                    Some(first)
                }
                None => {
                    st.unmatched_pings += 1;
                    None
                }
            }
        };
        if let Some(first) = sends {
            for i in 0..ctx.config.rtp_per_ping {
                let packet = rtp_packet(kind, first.wrapping_add(i as u16));
                if let Err(e) = socket.send_to(&packet, src).await {
                    tracing::debug!(error = %e, %src, "fake wolf cannot send rtp");
                }
            }
        }
    }
}

/// A 12-byte RTP header (version 2, payload type 97 audio / 96 video) and 100 bytes of filler.
fn rtp_packet(kind: Kind, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(112);
    p.push(0x80);
    p.push(if kind == Kind::Audio { 97 } else { 96 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 240).to_be_bytes());
    p.extend_from_slice(&0x5746_4f4c_u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0u8, 100));
    p
}

// ----- control (ENet) -----

async fn control_loop(ctx: Ctx, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let mut peers = enet::Peers::default();
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "fake wolf control socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        *ctx.state.lock().control.entry(src).or_default() += 1;
        let Some(reply) = peers.handle(&buf[..n], src) else {
            continue;
        };
        if let Some(data) = reply.connected_with {
            let live = ctx.live_sessions();
            let id = {
                let mut st = ctx.state.lock();
                let src_ip = src.ip().to_string();
                let ips: Vec<_> = live
                    .iter()
                    .filter(|s| s.client_ip == src_ip)
                    .map(|s| (s.client_id, s.rtsp_fake_ip.clone()))
                    .collect();
                let entry = match st.live_entry(&live, |e| e.connect_data == data) {
                    Some(e) => Some(e),
                    None => st.live_entry(&live, |e| {
                        ips.iter().any(|(id, f)| *id == e.id && *f == e.fake_ip)
                    }),
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
