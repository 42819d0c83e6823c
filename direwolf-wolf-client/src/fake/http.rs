//! The hand-written HTTP/1.0 dialect of Wolf's API server (`docs/protocol/wolf-api.md` § HTTP
//! dialect, § The fake Wolf items 1–4).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest header block accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The plain-text body Wolf answers to chunked requests (52 bytes).
pub const CHUNKED_REJECTION: &str = "Chunked encoding not supported, use HTTP/1.0 instead";

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    /// `GET`, `POST`, `PUT` or `DELETE` (anything else is read as `GET`, like Wolf).
    pub(crate) method: &'static str,
    /// The path without the query.
    pub(crate) path: String,
    /// The raw query (no percent-decoding), if any.
    pub(crate) query: Option<String>,
    /// The body (`Content-Length` bytes; empty without the header).
    pub(crate) body: Vec<u8>,
}

/// What reading a request produced.
pub(crate) enum ReadOutcome {
    Request(HttpRequest),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Connection closed or unusable: answer nothing.
    Gone,
}

pub(crate) async fn read_request<I: AsyncRead + Unpin>(io: &mut I) -> ReadOutcome {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return ReadOutcome::Gone;
        }
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return ReadOutcome::Gone,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return ReadOutcome::Gone;
    };
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let method = match parts.next().unwrap_or("") {
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "GET",
    };
    let target = parts.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut content_length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked" {
            return ReadOutcome::Chunked;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => content_length = n,
                _ => return ReadOutcome::Gone,
            }
        }
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < content_length {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return ReadOutcome::Gone,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(content_length);
    ReadOutcome::Request(HttpRequest {
        method,
        path,
        query,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.0 <code> OK` + `Content-Length` (+ extra headers) + body, then shut the socket down.
pub(crate) async fn write_response<I: AsyncWrite + Unpin>(
    io: &mut I,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut out = format!("HTTP/1.0 {status} OK\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra_headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    write_all_and_close(io, &bytes).await;
}

pub(crate) async fn write_all_and_close<I: AsyncWrite + Unpin>(io: &mut I, bytes: &[u8]) {
    if io.write_all(bytes).await.is_ok() {
        let _ = io.flush().await;
    }
    let _ = io.shutdown().await;
}
