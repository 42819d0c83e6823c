//! The agent's health port: `/livez` (200 while the process runs) and `/readyz` (200 once
//! Wolf's socket accepted a connection, 503 before), plain HTTP, nothing else. Wolf's API is
//! never served here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::error::AgentError;

/// Whether Wolf's socket has accepted a connection; shared by the agent and the listener.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the agent ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds `addr` and serves the probes until the task is aborted; the bound address.
///
/// # Errors
/// [`AgentError::Health`] if the port cannot be bound.
pub async fn serve(addr: SocketAddr, ready: Readiness) -> Result<(SocketAddr, JoinHandle<()>), AgentError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Health { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AgentError::Health { addr, source })?;
    info!(addr = %bound, "health listener (/livez, /readyz)");
    Ok((bound, tokio::spawn(accept_loop(listener, ready))))
}

async fn accept_loop(listener: TcpListener, ready: Readiness) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, ready.clone()));
            }
            Err(e) => {
                warn!(error = %e, "health listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the request head (at most 1 KiB, 5 s) and answers by path.
async fn answer(mut stream: tokio::net::TcpStream, ready: Readiness) {
    let mut head = [0u8; 1024];
    let mut len = 0;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut head[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head[..len].split(|b| *b == b'\n').next().unwrap_or_default();
    let path = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let (status, body) = match path {
        b"/livez" => ("200 OK", "ok\n"),
        b"/readyz" if ready.is_ready() => ("200 OK", "ok\n"),
        b"/readyz" => ("503 Service Unavailable", "wolf socket not ready\n"),
        _ => ("404 Not Found", "not found\n"),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
