//! Waiting for Wolf's API socket (`docs/protocol/kubernetes.md` § The agent): polls until the path
//! is a unix socket that accepts a connection; anything else at that path is fatal.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tracing::debug;

use super::error::AgentError;

/// Why the socket is not usable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Nothing at the path yet.
    Missing,
    /// A socket that refused the connection (Wolf not listening yet).
    Refused(String),
}

/// One look at `path`: `Ok(Ok(()))` when a connection was accepted, `Ok(Err(_))` when not yet.
///
/// # Errors
/// [`AgentError::NotASocket`] when something else is at the path.
pub async fn probe(path: &Path) -> Result<Result<(), NotReady>, AgentError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(NotReady::Missing)),
        Err(e) => return Ok(Err(NotReady::Refused(e.to_string()))),
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_file() {
            "regular file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() || ft.is_block_device() {
            "device"
        } else {
            "other"
        };
        return Err(AgentError::NotASocket {
            path: path.to_owned(),
            kind,
        });
    }
    match UnixStream::connect(path).await {
        Ok(_) => Ok(Ok(())),
        Err(e) => Ok(Err(NotReady::Refused(e.to_string()))),
    }
}

/// Polls every `poll` until Wolf's socket accepts a connection or `deadline` passes.
///
/// # Errors
/// [`AgentError::NotASocket`] at once; `Ok(Err(last reason))` at the deadline.
pub async fn wait(
    path: &Path,
    poll: Duration,
    deadline: tokio::time::Instant,
) -> Result<Result<(), NotReady>, AgentError> {
    loop {
        let state = probe(path).await?;
        if state.is_ok() || tokio::time::Instant::now() + poll > deadline {
            return Ok(state);
        }
        debug!(path = %path.display(), state = ?state, "waiting for Wolf's socket");
        tokio::time::sleep(poll).await;
    }
}
