//! One HTTP request per connection over a unix socket or TCP, on hyper's HTTP/1 client connection
//! (Wolf serves exactly one request per connection and closes it, `docs/protocol/wolf-api.md`
//! § HTTP dialect).

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::AbortHandle;

use crate::error::Error;

/// Where Wolf's API is reached.
#[derive(Clone)]
#[non_exhaustive]
pub enum Target {
    /// A unix domain socket path (Wolf itself).
    Unix(PathBuf),
    /// A `host:port` TCP address serving plain HTTP (a reverse proxy in front of the socket).
    Tcp(String),
    /// A `host:port` TCP address serving HTTPS (feature `tls`).
    #[cfg(feature = "tls")]
    Https {
        /// `host:port`.
        addr: String,
        /// The name the server certificate must be valid for.
        server_name: rustls::pki_types::ServerName<'static>,
        /// The TLS connector (from the caller's `rustls::ClientConfig`).
        connector: tokio_rustls::TlsConnector,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            #[cfg(feature = "tls")]
            Target::Https { addr, .. } => write!(f, "https:{addr}"),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Aborts the task driving a connection when dropped, so a call that timed out or was cancelled
/// never leaves a connection behind.
pub(crate) struct ConnGuard(AbortHandle);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens a connection to `target`, sends `req` and returns the response head with its streaming
/// body. Errors are mapped for `endpoint`.
pub(crate) async fn send(
    target: &Target,
    req: Request<Full<Bytes>>,
    endpoint: &'static str,
) -> Result<(Response<Incoming>, ConnGuard), Error> {
    match target {
        Target::Unix(path) => {
            let io = UnixStream::connect(path)
                .await
                .map_err(|e| connect_error(target, e))?;
            handshake_send(io, req, endpoint).await
        }
        Target::Tcp(addr) => {
            let io = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| connect_error(target, e))?;
            // Requests are small and one per connection: do not wait for Nagle.
            let _ = io.set_nodelay(true);
            handshake_send(io, req, endpoint).await
        }
        #[cfg(feature = "tls")]
        Target::Https {
            addr,
            server_name,
            connector,
        } => {
            let io = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| connect_error(target, e))?;
            let _ = io.set_nodelay(true);
            let tls = connector
                .connect(server_name.clone(), io)
                .await
                .map_err(|e| Error::Connect {
                    target: target.to_string(),
                    source: e,
                })?;
            handshake_send(tls, req, endpoint).await
        }
    }
}

fn connect_error(target: &Target, e: std::io::Error) -> Error {
    match (target, e.kind()) {
        (Target::Unix(path), std::io::ErrorKind::NotFound) => Error::SocketMissing { path: path.clone() },
        (_, std::io::ErrorKind::ConnectionRefused) => Error::ConnectionRefused {
            target: target.to_string(),
        },
        _ => Error::Connect {
            target: target.to_string(),
            source: e,
        },
    }
}

async fn handshake_send<I>(
    io: I,
    req: Request<Full<Bytes>>,
    endpoint: &'static str,
) -> Result<(Response<Incoming>, ConnGuard), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| head_error(endpoint, e))?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::trace!(
                error = &e as &dyn std::error::Error,
                "wolf connection ended with an error"
            );
        }
    });
    let guard = ConnGuard(task.abort_handle());
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| head_error(endpoint, e))?;
    Ok((resp, guard))
}

/// Maps an error that happened before the response head was complete.
fn head_error(endpoint: &'static str, e: hyper::Error) -> Error {
    // `is_parse` covers every malformed head, an oversized one included.
    if e.is_parse() || e.is_parse_status() {
        Error::Protocol { endpoint, source: e }
    } else {
        tracing::debug!(
            endpoint,
            error = &e as &dyn std::error::Error,
            "wolf closed without answering"
        );
        Error::ClosedWithoutResponse { endpoint }
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn collect_body(
    resp: Response<Incoming>,
    limit: usize,
    endpoint: &'static str,
) -> Result<(u16, Bytes), Error> {
    let status = resp.status().as_u16();
    let announced = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge { endpoint, limit });
    }
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Error::BodyTooLarge { endpoint, limit }
            } else {
                tracing::debug!(endpoint, error = %e, "wolf response body cut short");
                Error::Truncated { endpoint }
            }
        })?;
    Ok((status, body.to_bytes()))
}
