//! The fake's RTSP server (`docs/protocol/streaming-ports.md` § RTSP handshake): one request per
//! connection, matched to a live session (§ How Wolf matches traffic to a session), answered and
//! closed; `ANNOUNCE` fires `VideoSession` and `AudioSession`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::announce::announce_events;
use super::{Ctx, Entry};
use crate::types::StreamSession;
use crate::version::WolfVersion;

/// Wolf's read deadline for a request (`rtsp/net.hpp`).
const RTSP_READ_DEADLINE: Duration = Duration::from_millis(2500);
/// Largest request the fake reads.
const RTSP_MAX_REQUEST: usize = 64 * 1024;

pub(super) async fn rtsp_loop(ctx: Ctx, listener: TcpListener) {
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

/// The answer to one request: `400` for a host Wolf's grammar rejects, `404` for a request that
/// matches no live session or that Wolf does not serve; every error is recorded.
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
    let session = request_session(ctx.shared.version, &live, host, req.header("Host"), peer);
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
            "SETUP" => setup_answer(ctx, entry, &req.target, cseq),
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

/// The live session a request from `peer` belongs to (`docs/protocol/streaming-ports.md` § How Wolf
/// matches traffic to a session): from V4, the first whose `rtsp_fake_ip` is the request-URI host
/// or the `Host` header, else, when `Host` is missing or `0.0.0.0`, the one whose `client_ip` is
/// the peer; before V4, always the latter.
fn request_session<'a>(
    version: WolfVersion,
    live: &'a [StreamSession],
    host: Option<&str>,
    host_header: Option<&str>,
    peer: IpAddr,
) -> Option<&'a StreamSession> {
    let by_peer = || live.iter().find(|s| s.client_ip == peer.to_string());
    if version < WolfVersion::V4 {
        return by_peer();
    }
    live.iter()
        .find(|s| {
            let fake = s.rtsp_fake_ip.as_deref().unwrap_or("");
            fake == host.unwrap_or("") || Some(fake) == host_header
        })
        .or_else(|| {
            (host_header.is_none() || host_header == Some("0.0.0.0"))
                .then(by_peer)
                .flatten()
        })
}

/// The answer to a `SETUP` of the audio, video or control stream: the stream's port and the
/// session's ping secret or connect data; `None` for any other target.
fn setup_answer(ctx: &Ctx, entry: &Entry, target: &str, cseq: Option<&str>) -> Option<String> {
    let ping = || {
        (
            "X-SS-Ping-Payload",
            String::from_utf8_lossy(&entry.ping).into_owned(),
        )
    };
    let (port, secret) = if target.contains("streamid=audio") {
        (&ctx.audio_port, ping())
    } else if target.contains("streamid=video") {
        (&ctx.video_port, ping())
    } else if target.contains("streamid=control") {
        (
            &ctx.control_port,
            ("X-SS-Connect-Data", entry.connect_data.to_string()),
        )
    } else {
        return None;
    };
    let headers = vec![
        ("Session", SESSION.to_owned()),
        (
            "Transport",
            format!("server_port={}", port.load(Ordering::Relaxed)),
        ),
        secret,
    ];
    Some(respond("200 OK", cseq, headers, ""))
}
