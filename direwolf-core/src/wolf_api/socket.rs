//! The Unix socket the Wolf API is served on, as Wolf serves its own (`docs/protocol/wolf-api.md`
//! § Transport): a stale socket file is replaced at start, the file is removed at the end.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{Reply, WolfApi};

/// The mode of the socket file: owner and group may connect, nobody else.
pub const SOCKET_MODE: u32 = 0o660;
/// The largest request body read (an app is well under 64 KiB).
const MAX_BODY: usize = 64 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request head, and its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound Wolf API socket. The file is removed when this is dropped (if it is still the one
/// bound here).
#[derive(Debug)]
pub struct WolfApiSocket {
    listener: UnixListener,
    file: SocketFile,
}

#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    /// `(device, inode)` of the socket created here, so that another process's socket at the
    /// same path is never removed.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            match std::fs::remove_file(&self.path) {
                Ok(()) => debug!(path = %self.path.display(), "wolf api socket removed"),
                Err(error) => warn!(path = %self.path.display(), %error, "cannot remove the wolf api socket"),
            }
        }
    }
}

impl WolfApiSocket {
    /// Creates the socket at `path` with mode 0660. A socket file already there that nobody
    /// serves (left by a crash) is replaced; one that accepts connections, or any other kind of
    /// file, is an error. The socket is created in a private directory and renamed into place,
    /// so nobody can connect before its mode is set.
    ///
    /// # Errors
    /// `path` is served by another process, is not a socket, or its directory is not writable.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if inspect(path)? {
            std::fs::remove_file(path)?;
            info!(path = %path.display(), "removed a stale wolf api socket");
        }
        let private = staging_dir(path)?;
        std::fs::DirBuilder::new().mode(0o700).create(&private)?;
        let staged = private.join("s");
        let bound = (|| {
            let listener = UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))?;
            std::fs::rename(&staged, path)?;
            Ok::<_, io::Error>(listener)
        })();
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir(&private);
        let listener = bound?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(WolfApiSocket {
            listener,
            file: SocketFile {
                path: path.to_owned(),
                id: (meta.dev(), meta.ino()),
            },
        })
    }

    /// Checks, without creating anything, that [`WolfApiSocket::bind`] would succeed at `path`:
    /// nothing is there, or a stale socket; and its directory is writable. Says which.
    ///
    /// # Errors
    /// What `bind` would fail with.
    pub fn check(path: &Path) -> io::Result<&'static str> {
        let stale = inspect(path)?;
        let private = staging_dir(path)?;
        std::fs::DirBuilder::new().mode(0o700).create(&private)?;
        std::fs::remove_dir(&private)?;
        Ok(if stale {
            "a stale socket is there and will be replaced"
        } else {
            "will be created"
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Serves `api` until `shutdown` completes, then removes the socket file. Requests being
    /// answered when `shutdown` completes are dropped.
    pub async fn serve(self, api: Arc<WolfApi>, shutdown: impl Future<Output = ()>) {
        info!(path = %self.file.path.display(), "wolf api listening");
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = tokio::task::JoinSet::new();
        let accept = async {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let stream = match self.listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        warn!(%error, "wolf api: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let api = api.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(respond(&api, request).await) }
                    });
                    // One request per connection, as Wolf does.
                    let served = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .timer(TokioTimer::new())
                        .header_read_timeout(READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(error) = served {
                        debug!(%error, "wolf api: connection ended with an error");
                    }
                    drop(slot);
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        };
        tokio::select! {
            () = accept => {}
            () = shutdown => {}
        }
        connections.abort_all();
        info!(path = %self.file.path.display(), "wolf api stopped");
        // `self.file` is dropped here: the socket file goes.
    }
}

/// What is at `path`: nothing (`false`) or a socket nobody serves (`true`).
///
/// # Errors
/// A socket that accepts connections, any other kind of file, or an unreadable path.
fn inspect(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by another process", path.display()),
                ));
            }
            Ok(true)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The private directory, beside `path`, the socket is created in before it is renamed into
/// place.
fn staging_dir(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the socket path has no file name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

async fn respond(api: &WolfApi, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    let reply = match body {
        Ok(Ok(body)) => {
            let path = parts.uri.path();
            api.handle(&parts.method, path, &body.to_bytes()).await
        }
        Ok(Err(_)) => Reply::error(
            413,
            format!("Request body larger than {MAX_BODY} bytes, or unreadable"),
        ),
        Err(_) => Reply::error(408, "Request body not received in time"),
    };
    let json = !reply.body.is_empty();
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if json {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}
