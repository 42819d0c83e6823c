//! The RTSP (TCP) half of the relay: an L7 relay per `docs/protocol/streaming-ports.md` § RTSP
//! rewriting.
//!
//! Moonlight opens one TCP connection per RTSP request, writes the request and reads until the
//! server closes (§ RTSP handshake). For each accepted connection the relay reads one complete
//! request (header block up to the blank line, plus `Content-length` bytes of body), rewrites it,
//! sends it to Wolf in a single write, reads Wolf's complete answer (until Wolf closes, or until
//! the header block and `Content-length` bytes of body are in), rewrites it, writes it to the
//! client and closes.
//!
//! Request rewriting: the host of an absolute request-URI (`rtsp://<host>:<port>`) and the value
//! of `Host` become the session's fake RTSP IP, whatever the client sent (`0.0.0.0` below 15 Mbps,
//! otherwise the host of `sessionUrl0`), so Wolf (V4+) attributes the request to the session by
//! `rtsp_fake_ip` and never needs the `client_ip` fallback. A request without `Host` gets one. Header
//! order is kept except that `CSeq` is moved to the front if it was not there; lines end in CRLF;
//! the body is passed through untouched.
//!
//! Response rewriting: in the answer to `SETUP streamid=<audio|video|control>/…`, the port of
//! `Transport: server_port=<n>` becomes the relay's public port of that stream and `<n>` is
//! remembered as Wolf's UDP port for it. `X-SS-Ping-Payload` (16 characters) and
//! `X-SS-Connect-Data` (decimal u32) are remembered for the UDP admission policy.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::SessionShared;
use super::stats::{StreamKind, bump};

/// Sizes and timeouts of the RTSP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtspLimits {
    /// Largest request header block (request line + headers + blank line), bytes.
    pub max_request_header_bytes: usize,
    /// Largest request body (`Content-length`), bytes. ANNOUNCE's SDP is about 1.5 KiB.
    pub max_request_body_bytes: usize,
    /// Largest complete answer from Wolf, bytes. DESCRIBE's SDP is well below 4 KiB.
    pub max_response_bytes: usize,
    /// Time a client has to deliver its complete request after connecting.
    pub request_timeout: Duration,
    /// Time allowed to open the TCP connection to Wolf.
    pub connect_timeout: Duration,
    /// Time Wolf has to answer completely (Moonlight itself waits 15 s).
    pub response_timeout: Duration,
    /// Client connections handled at once per session; more are closed immediately.
    pub max_connections: usize,
}

impl Default for RtspLimits {
    fn default() -> Self {
        RtspLimits {
            max_request_header_bytes: 16 * 1024,
            max_request_body_bytes: 64 * 1024,
            max_response_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(14),
            max_connections: 8,
        }
    }
}

/// Why an RTSP message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    /// The header block exceeds the configured limit.
    #[error("RTSP header block larger than {limit} bytes")]
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The announced body exceeds the configured limit.
    #[error("RTSP body of {length} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        /// The announced length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The message ended before its header block or announced body was complete.
    #[error("RTSP message truncated")]
    Truncated,
    /// The message is not RTSP (bad start line, header without `:`, not UTF-8, bad length...).
    #[error("malformed RTSP message: {0}")]
    Malformed(&'static str),
}

/// A client request after rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenRequest {
    /// The bytes to send to Wolf.
    pub bytes: Vec<u8>,
    /// The method (`OPTIONS`, `SETUP`, ...).
    pub method: String,
    /// For `SETUP`, the stream named by `streamid=` in the request-URI.
    pub setup_stream: Option<StreamKind>,
}

/// A Wolf answer after rewriting, with what was learned from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenResponse {
    /// The bytes to send to the client.
    pub bytes: Vec<u8>,
    /// Wolf's UDP port from `Transport: server_port=` (only for SETUP answers).
    pub wolf_port: Option<u16>,
    /// The 16-byte ping secret from `X-SS-Ping-Payload`, if present and exactly 16 bytes.
    pub ping_payload: Option<[u8; 16]>,
    /// `X-SS-Connect-Data`, if present and a valid u32.
    pub connect_data: Option<u32>,
}

/// Where the header block ends: `(end of headers, length of the terminator)`.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn header_lines(head: &str) -> impl Iterator<Item = &str> {
    head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// The value of `Content-length` in a header block (case-insensitive name), if present.
fn content_length(head: &str) -> Result<Option<usize>, RtspError> {
    for line in header_lines(head).skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RtspError::Malformed("bad Content-length"));
        }
    }
    Ok(None)
}

/// If `buf` holds a complete request, its total length (header block + body). `Ok(None)` means
/// "read more".
///
/// # Errors
/// Limits exceeded or an unparseable header block.
pub fn request_len(buf: &[u8], limits: &RtspLimits) -> Result<Option<usize>, RtspError> {
    let Some((end, term)) = find_header_end(buf) else {
        if buf.len() > limits.max_request_header_bytes {
            return Err(RtspError::HeaderTooLarge {
                limit: limits.max_request_header_bytes,
            });
        }
        return Ok(None);
    };
    if end + term > limits.max_request_header_bytes {
        return Err(RtspError::HeaderTooLarge {
            limit: limits.max_request_header_bytes,
        });
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| RtspError::Malformed("header not UTF-8"))?;
    let body = content_length(head)?.unwrap_or(0);
    if body > limits.max_request_body_bytes {
        return Err(RtspError::BodyTooLarge {
            length: body,
            limit: limits.max_request_body_bytes,
        });
    }
    let total = end + term + body;
    Ok((buf.len() >= total).then_some(total))
}

/// If `buf` holds a complete answer, its total length. An answer without `Content-length` is
/// complete only when Wolf closes (`eof`).
///
/// # Errors
/// An unparseable header block, or one that never ends before EOF.
pub fn response_len(buf: &[u8], eof: bool) -> Result<Option<usize>, RtspError> {
    let Some((end, term)) = find_header_end(buf) else {
        return if eof && !buf.is_empty() {
            Ok(Some(buf.len()))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| RtspError::Malformed("header not UTF-8"))?;
    let Some(body) = content_length(head)? else {
        // No length announced: the answer ends when Wolf closes.
        return Ok(eof.then_some(buf.len()));
    };
    let total = end + term + body;
    if buf.len() >= total {
        Ok(Some(total))
    } else if eof {
        Err(RtspError::Truncated)
    } else {
        Ok(None)
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
}

/// Replace the host of an absolute URI (`scheme://host[:port][/path]`); other URIs are returned
/// unchanged.
fn rewrite_uri_host(uri: &str, host: Ipv4Addr) -> Result<String, RtspError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(uri.to_owned());
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let port = if let Some(stripped) = authority.strip_prefix('[') {
        let close = stripped
            .find(']')
            .ok_or(RtspError::Malformed("unterminated IPv6 host"))?;
        &stripped[close + 1..]
    } else {
        authority.find(':').map_or("", |i| &authority[i..])
    };
    if !(port.is_empty() || port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(RtspError::Malformed("bad port in request-URI"));
    }
    Ok(format!("{scheme}://{host}{port}{path}"))
}

fn setup_stream_of(uri: &str) -> Option<StreamKind> {
    let at = uri.find("streamid=")?;
    let id = &uri[at + "streamid=".len()..];
    let name = id.split(['/', ';', '?', ' ']).next().unwrap_or("");
    match name {
        "video" => Some(StreamKind::Video),
        "audio" => Some(StreamKind::Audio),
        "control" => Some(StreamKind::Control),
        _ => None,
    }
}

/// Rewrite one complete client request (see the module docs).
///
/// # Errors
/// [`RtspError::Malformed`] for anything that is not an RTSP request.
pub fn rewrite_request(raw: &[u8], fake_ip: Ipv4Addr) -> Result<RewrittenRequest, RtspError> {
    let (end, term) = find_header_end(raw).ok_or(RtspError::Truncated)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| RtspError::Malformed("header not UTF-8"))?;
    let body = &raw[end + term..];
    let mut lines = header_lines(head);
    let request_line = lines.next().ok_or(RtspError::Malformed("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RtspError::Malformed("request line is not `METHOD URI RTSP/x.y`"));
    };
    if !is_token(method) || uri.is_empty() || !version.starts_with("RTSP/") {
        return Err(RtspError::Malformed("request line is not `METHOD URI RTSP/x.y`"));
    }
    let new_uri = rewrite_uri_host(uri, fake_ip)?;
    let mut headers: Vec<String> = Vec::new();
    let mut cseq_at = None;
    let mut has_host = false;
    for line in lines {
        let (name, _value) = line
            .split_once(':')
            .ok_or(RtspError::Malformed("header line without `:`"))?;
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(RtspError::Malformed("bad header name"));
        }
        if name.eq_ignore_ascii_case("host") {
            has_host = true;
            headers.push(format!("{name}: {fake_ip}"));
            continue;
        }
        if name.eq_ignore_ascii_case("cseq") && cseq_at.is_none() {
            cseq_at = Some(headers.len());
        }
        headers.push(line.to_owned());
    }
    if let Some(i) = cseq_at
        && i != 0
    {
        let cseq = headers.remove(i);
        headers.insert(0, cseq);
    }
    if !has_host {
        headers.push(format!("Host: {fake_ip}"));
    }
    let mut bytes = Vec::with_capacity(raw.len() + 32);
    bytes.extend_from_slice(format!("{method} {new_uri} {version}\r\n").as_bytes());
    for h in &headers {
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    let setup_stream = if method == "SETUP" {
        setup_stream_of(uri)
    } else {
        None
    };
    Ok(RewrittenRequest {
        bytes,
        method: method.to_owned(),
        setup_stream,
    })
}

/// The address a client echoed in a request: the host of an absolute request-URI, else the
/// `Host` header (`docs/protocol/streaming-ports.md` § RTSP handshake). `0.0.0.0` when the client
/// sent that (below the high-quality audio conditions); `None` when neither names an IPv4
/// address (SETUP, ANNOUNCE and PLAY have relative URIs, so their `Host` decides).
pub fn echoed_host(raw: &[u8]) -> Option<Ipv4Addr> {
    let end = find_header_end(raw).map_or(raw.len(), |(end, _)| end);
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = header_lines(head);
    let uri = lines.next()?.split(' ').nth(1)?;
    let from_uri = uri.split_once("://").and_then(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or("");
        authority.split(':').next()?.parse().ok()
    });
    from_uri.or_else(|| {
        lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
            .and_then(|(_, value)| value.trim().parse().ok())
    })
}

/// Replace the number after `server_port=` in a `Transport` value; returns the new value and the
/// old port.
fn rewrite_transport(value: &str, public_port: u16) -> Option<(String, u16)> {
    let key = "server_port=";
    let at = value.find(key)?;
    let start = at + key.len();
    let digits = value[start..].bytes().take_while(u8::is_ascii_digit).count();
    let old: u16 = value[start..start + digits].parse().ok()?;
    let mut end = start + digits;
    // A `server_port=a-b` range is collapsed to the single public port.
    if value[end..].starts_with('-') {
        end += 1 + value[end + 1..].bytes().take_while(u8::is_ascii_digit).count();
    }
    Some((
        format!("{}{}{}", &value[..start], public_port, &value[end..]),
        old,
    ))
}

/// Rewrite one complete Wolf answer. `setup` is the stream the request's `SETUP` named (with the
/// relay's public port for it); other answers pass unchanged apart from line ends.
///
/// # Errors
/// [`RtspError::Malformed`] if the answer is not an RTSP response.
pub fn rewrite_response(
    raw: &[u8],
    setup: Option<(StreamKind, u16)>,
) -> Result<RewrittenResponse, RtspError> {
    let (end, term) = find_header_end(raw).unwrap_or((raw.len(), 0));
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| RtspError::Malformed("header not UTF-8"))?;
    let body = &raw[end + term..];
    let mut lines = header_lines(head);
    let status = lines.next().ok_or(RtspError::Malformed("empty response"))?;
    if !status.starts_with("RTSP/") {
        return Err(RtspError::Malformed("status line does not start with RTSP/"));
    }
    let mut out = RewrittenResponse {
        bytes: Vec::with_capacity(raw.len() + 8),
        wolf_port: None,
        ping_payload: None,
        connect_data: None,
    };
    out.bytes.extend_from_slice(status.as_bytes());
    out.bytes.extend_from_slice(b"\r\n");
    for line in lines {
        let mut owned = None;
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("transport")
                && let Some((_, public)) = setup
                && let Some((new_value, old)) = rewrite_transport(value, public)
            {
                out.wolf_port = Some(old);
                owned = Some(format!("{name}:{new_value}"));
            } else if name.eq_ignore_ascii_case("x-ss-ping-payload") {
                out.ping_payload = value.trim().as_bytes().try_into().ok();
            } else if name.eq_ignore_ascii_case("x-ss-connect-data") {
                out.connect_data = value.trim().parse().ok();
            }
        } else if !line.is_empty() {
            return Err(RtspError::Malformed("header line without `:`"));
        }
        out.bytes
            .extend_from_slice(owned.as_deref().unwrap_or(line).as_bytes());
        out.bytes.extend_from_slice(b"\r\n");
    }
    out.bytes.extend_from_slice(b"\r\n");
    out.bytes.extend_from_slice(body);
    Ok(out)
}

/// Accept loop of one session's RTSP listener. Runs until aborted; dropping it aborts the
/// connections in flight.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<SessionShared>) {
    let limits = shared.config.rtsp;
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    bump(&shared.counters.rtsp.connections);
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        bump(&shared.counters.rtsp.rejected_connection_limit);
                        tracing::debug!(%peer, "rtsp connection limit reached, closing");
                        continue;
                    };
                    let shared = shared.clone();
                    conns.spawn(async move {
                        relay_one(stream, &shared).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Typically EMFILE; back off briefly instead of spinning.
                    tracing::warn!(%error, "rtsp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn read_request(client: &mut TcpStream, limits: &RtspLimits) -> Result<Vec<u8>, RtspError> {
    let cap = limits.max_request_header_bytes + limits.max_request_body_bytes;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await.map_err(|_| RtspError::Truncated)?;
        if n == 0 {
            return Err(RtspError::Truncated);
        }
        if buf.len() + n > cap {
            return Err(RtspError::HeaderTooLarge { limit: cap });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(total) = request_len(&buf, limits)? {
            buf.truncate(total);
            return Ok(buf);
        }
    }
}

enum UpstreamError {
    Io,
    Bad,
}

async fn exchange(request: &[u8], shared: &SessionShared) -> Result<Vec<u8>, UpstreamError> {
    let limits = &shared.config.rtsp;
    let mut wolf = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(shared.wolf_rtsp))
        .await
        .map_err(|_| UpstreamError::Io)?
        .map_err(|_| UpstreamError::Io)?;
    let _ = wolf.set_nodelay(true);
    wolf.write_all(request).await.map_err(|_| UpstreamError::Io)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let read_all = async {
        loop {
            let n = wolf.read(&mut chunk).await.map_err(|_| UpstreamError::Io)?;
            if buf.len() + n > limits.max_response_bytes {
                return Err(UpstreamError::Bad);
            }
            buf.extend_from_slice(&chunk[..n]);
            match response_len(&buf, n == 0) {
                Ok(Some(total)) => {
                    buf.truncate(total);
                    return Ok(());
                }
                Ok(None) if n == 0 => return Err(UpstreamError::Io),
                Ok(None) => {}
                Err(_) => return Err(UpstreamError::Bad),
            }
        }
    };
    tokio::time::timeout(limits.response_timeout, read_all)
        .await
        .map_err(|_| UpstreamError::Io)??;
    Ok(buf)
}

async fn relay_one(mut client: TcpStream, shared: &SessionShared) {
    let limits = shared.config.rtsp;
    let _ = client.set_nodelay(true);
    match read_in_time(&mut client, &limits).await {
        Ok(raw) => relay_request(client, &raw, shared).await,
        Err(error) => {
            bump(&shared.counters.rtsp.rejected_requests);
            tracing::debug!(%error, "rtsp request refused");
        }
    }
}

/// Read one complete request within the request timeout.
pub(crate) async fn read_in_time(client: &mut TcpStream, limits: &RtspLimits) -> Result<Vec<u8>, RtspError> {
    match tokio::time::timeout(limits.request_timeout, read_request(client, limits)).await {
        Ok(result) => result,
        Err(_) => Err(RtspError::Truncated),
    }
}

/// Relay one request already read from `client` to the session's Wolf and answer the client.
pub(crate) async fn relay_request(mut client: TcpStream, raw: &[u8], shared: &SessionShared) {
    let counters = &shared.counters.rtsp;
    let request = match rewrite_request(raw, shared.fake_rtsp_ip) {
        Ok(r) => r,
        Err(error) => {
            bump(&counters.rejected_requests);
            tracing::debug!(%error, "rtsp request refused");
            return;
        }
    };
    let answer = match exchange(&request.bytes, shared).await {
        Ok(a) => a,
        Err(UpstreamError::Io) => {
            bump(&counters.upstream_errors);
            tracing::debug!(wolf = %shared.wolf_rtsp, method = %request.method, "rtsp upstream failed");
            return;
        }
        Err(UpstreamError::Bad) => {
            bump(&counters.bad_responses);
            return;
        }
    };
    let setup = request.setup_stream.map(|k| (k, shared.public_port(k)));
    let response = match rewrite_response(&answer, setup) {
        Ok(r) => r,
        Err(error) => {
            bump(&counters.bad_responses);
            tracing::debug!(%error, "rtsp answer unusable");
            return;
        }
    };
    shared.learn(request.setup_stream, &response);
    if client.write_all(&response.bytes).await.is_err() || client.shutdown().await.is_err() {
        bump(&counters.client_write_errors);
        return;
    }
    bump(&counters.relayed);
    if request.method == "PLAY" {
        shared
            .rtsp_played
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::debug!(method = %request.method, "rtsp request relayed");
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 7);

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn echoed_hosts_are_found_in_the_uri_or_host_header() {
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().expect("ip"));
        let options = b"OPTIONS rtsp://10.99.0.7:48010 RTSP/1.0\r\nCSeq: 1\r\nHost: 10.99.0.7\r\n\r\n";
        assert_eq!(echoed_host(options), ip("10.99.0.7"));
        let zero = b"OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nCSeq: 1\r\nHost: 0.0.0.0\r\n\r\n";
        assert_eq!(echoed_host(zero), ip("0.0.0.0"));
        let setup = b"SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 4\r\nhost:  10.99.0.9 \r\n\r\n";
        assert_eq!(echoed_host(setup), ip("10.99.0.9"));
        let play = b"PLAY / RTSP/1.0\r\nCSeq: 7\r\n\r\n";
        assert_eq!(echoed_host(play), None, "no host anywhere");
        assert_eq!(echoed_host(b"PLAY rtsp://name.lan/ RTSP/1.0\r\n\r\n"), None);
        assert_eq!(echoed_host(b"\xff\xfe"), None);
    }

    #[test]
    fn options_with_zero_host_is_rewritten() {
        let req = b"OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\n\r\n";
        let out = rewrite_request(req, FAKE).expect("valid request");
        assert_eq!(
            text(&out.bytes),
            "OPTIONS rtsp://10.99.0.7:48010 RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 10.99.0.7\r\n\r\n"
        );
        assert_eq!(out.method, "OPTIONS");
        assert_eq!(out.setup_stream, None);
    }

    #[test]
    fn describe_with_session_url_host_is_rewritten() {
        let req = b"DESCRIBE rtsp://203.0.113.9:40000 RTSP/1.0\r\nCSeq: 2\r\nX-GS-ClientVersion: 14\r\nHost: 203.0.113.9\r\nAccept: application/sdp\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n";
        let out = rewrite_request(req, FAKE).expect("valid request");
        let t = text(&out.bytes);
        assert!(
            t.starts_with("DESCRIBE rtsp://10.99.0.7:40000 RTSP/1.0\r\nCSeq: 2\r\n"),
            "{t}"
        );
        assert!(t.contains("\r\nHost: 10.99.0.7\r\n"));
        assert!(t.contains("\r\nAccept: application/sdp\r\n"));
        assert!(!t.contains("203.0.113.9"));
    }

    #[test]
    fn setup_requests_name_their_stream_and_keep_relative_uri() {
        for (id, kind) in [
            ("audio/0/0", StreamKind::Audio),
            ("video/0/0", StreamKind::Video),
            ("control/13/0", StreamKind::Control),
        ] {
            let req = format!(
                "SETUP streamid={id} RTSP/1.0\r\nCSeq: 3\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\nTransport: unicast;X-GS-ClientPort=50000-50001\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
            );
            let out = rewrite_request(req.as_bytes(), FAKE).expect("valid SETUP");
            assert_eq!(out.setup_stream, Some(kind));
            let t = text(&out.bytes);
            assert!(
                t.starts_with(&format!("SETUP streamid={id} RTSP/1.0\r\nCSeq: 3\r\n")),
                "{t}"
            );
            assert!(t.contains("Transport: unicast;X-GS-ClientPort=50000-50001\r\n"));
        }
    }

    #[test]
    fn announce_body_passes_untouched_and_cseq_moves_first() {
        let body = "v=0\r\no=android 0 14 IN IPv4 0.0.0.0\r\na=x-nv-video[0].clientViewportWd:1920 \r\na=x-ml-video.configuredBitrateKbps:20000 \r\n";
        let req = format!(
            "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nX-GS-ClientVersion: 14\r\nCSeq: 6\r\nHost: 0.0.0.0\r\nSession: DEADBEEFCAFE\r\nContent-type: application/sdp\r\nContent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let limits = RtspLimits::default();
        assert_eq!(request_len(req.as_bytes(), &limits), Ok(Some(req.len())));
        assert_eq!(
            request_len(&req.as_bytes()[..req.len() - 5], &limits),
            Ok(None),
            "body incomplete"
        );
        let out = rewrite_request(req.as_bytes(), FAKE).expect("valid ANNOUNCE");
        let t = text(&out.bytes);
        assert!(
            t.starts_with("ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nX-GS-ClientVersion: 14\r\n"),
            "{t}"
        );
        assert!(t.ends_with(&format!("\r\n\r\n{body}")));
        assert!(t.contains(&format!("Content-length: {}\r\n", body.len())));
    }

    #[test]
    fn missing_host_is_added() {
        let out = rewrite_request(
            b"PLAY / RTSP/1.0\r\nCSeq: 7\r\nSession: DEADBEEFCAFE\r\n\r\n",
            FAKE,
        )
        .expect("valid PLAY");
        assert_eq!(
            text(&out.bytes),
            "PLAY / RTSP/1.0\r\nCSeq: 7\r\nSession: DEADBEEFCAFE\r\nHost: 10.99.0.7\r\n\r\n"
        );
    }

    #[test]
    fn split_writes_are_reassembled() {
        let req = b"OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nCSeq: 1\r\nHost: 0.0.0.0\r\n\r\n";
        let limits = RtspLimits::default();
        for cut in 1..req.len() {
            assert_eq!(request_len(&req[..cut], &limits), Ok(None), "incomplete at {cut}");
        }
        assert_eq!(request_len(req, &limits), Ok(Some(req.len())));
    }

    #[test]
    fn garbage_and_oversize_are_refused() {
        let limits = RtspLimits {
            max_request_header_bytes: 64,
            max_request_body_bytes: 10,
            ..RtspLimits::default()
        };
        assert!(matches!(
            request_len(&[b'A'; 65], &limits),
            Err(RtspError::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            request_len(b"ANNOUNCE x RTSP/1.0\r\nContent-length: 11\r\n\r\n", &limits),
            Err(RtspError::BodyTooLarge { length: 11, .. })
        ));
        assert!(matches!(
            request_len(b"ANNOUNCE x RTSP/1.0\r\nContent-length: -1\r\n\r\n", &limits),
            Err(RtspError::Malformed(_))
        ));
        for bad in [
            &b"\x16\x03\x01\x00\xa5\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nno colon here\r\n\r\n",
            b"OPTIONS rtsp://0.0.0.0:x RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"OPTIONS  RTSP/1.0\r\n\r\n",
        ] {
            assert!(
                matches!(rewrite_request(bad, FAKE), Err(RtspError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    // Wolf V6 answers (headers alphabetical, CRLF), docs/protocol/streaming-ports.md § RTSP
    // handshake.
    const SETUP_AUDIO: &str = "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=48200\r\nX-SS-Ping-Payload: Ab3$x~Zq!9Lm#2Rt\r\n\r\n";

    #[test]
    fn setup_answers_get_public_ports_and_secrets_are_learned() {
        let out = rewrite_response(SETUP_AUDIO.as_bytes(), Some((StreamKind::Audio, 40002))).expect("valid");
        assert_eq!(
            text(&out.bytes),
            "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=40002\r\nX-SS-Ping-Payload: Ab3$x~Zq!9Lm#2Rt\r\n\r\n"
        );
        assert_eq!(out.wolf_port, Some(48200));
        assert_eq!(out.ping_payload, Some(*b"Ab3$x~Zq!9Lm#2Rt"));

        let video = "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=48100\r\nX-SS-Ping-Payload: Ab3$x~Zq!9Lm#2Rt\r\n\r\n";
        let out = rewrite_response(video.as_bytes(), Some((StreamKind::Video, 40001))).expect("valid");
        assert!(text(&out.bytes).contains("Transport: server_port=40001\r\n"));
        assert_eq!(out.wolf_port, Some(48100));

        let control = "RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=47999\r\nX-SS-Connect-Data: 3735928559\r\n\r\n";
        let out = rewrite_response(control.as_bytes(), Some((StreamKind::Control, 40003))).expect("valid");
        assert!(text(&out.bytes).contains("Transport: server_port=40003\r\n"));
        assert_eq!(out.wolf_port, Some(47999));
        assert_eq!(out.connect_data, Some(0xDEAD_BEEF));
    }

    #[test]
    fn non_setup_answers_pass_unchanged() {
        let sdp = "a=fmtp:97 surround-params=21101\r\na=x-ss-general.featureFlags: 3\r\n";
        let describe = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        assert_eq!(response_len(describe.as_bytes(), false), Ok(Some(describe.len())));
        let out = rewrite_response(describe.as_bytes(), None).expect("valid");
        assert_eq!(text(&out.bytes), describe);
        // Without a length the answer is complete only at EOF.
        assert_eq!(response_len(SETUP_AUDIO.as_bytes(), false), Ok(None));
        assert_eq!(
            response_len(SETUP_AUDIO.as_bytes(), true),
            Ok(Some(SETUP_AUDIO.len()))
        );
        // A transport header in a non-SETUP answer is left alone.
        let out = rewrite_response(SETUP_AUDIO.as_bytes(), None).expect("valid");
        assert_eq!(out.wolf_port, None);
        assert!(text(&out.bytes).contains("server_port=48200"));
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(rewrite_response(b"HTTP/1.1 200 OK\r\n\r\n", None).is_err());
        assert!(rewrite_response(b"RTSP/1.0 200 OK\r\nbroken\r\n\r\n", None).is_err());
        assert_eq!(
            response_len(b"RTSP/1.0 200 OK\r\nContent-length: 10\r\n\r\nabc", true),
            Err(RtspError::Truncated)
        );
        let short =
            rewrite_response(b"RTSP/1.0 200 OK\r\nX-SS-Ping-Payload: short\r\n\r\n", None).expect("valid");
        assert_eq!(short.ping_payload, None, "only a 16-byte secret is used");
    }

    #[test]
    fn server_port_ranges_collapse() {
        assert_eq!(
            rewrite_transport(" server_port=48100-48101;x=1", 5),
            Some((" server_port=5;x=1".into(), 48100))
        );
        assert_eq!(rewrite_transport(" unicast", 5), None);
        assert_eq!(rewrite_transport(" server_port=99999", 5), None);
    }
}
