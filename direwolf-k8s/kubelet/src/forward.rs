//! The API forwarder: pods cannot reach the API server on the root namespace's loopback, so a
//! TCP forwarder on the bridge address passes their connections (TLS and all) to it.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Listens on `listen` and forwards every connection to `upstream` until aborted.
pub async fn start(listen: SocketAddr, upstream: String) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("API forwarder cannot listen on {listen}: {e}"))
    })?;
    Ok(tokio::spawn(async move {
        loop {
            let (mut inbound, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "API forwarder accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut outbound = match TcpStream::connect(&upstream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%peer, %upstream, error = %e, "API server unreachable");
                        return;
                    }
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    }))
}

/// `host:port` of an API server URL (`https://127.0.0.1:6443` → `127.0.0.1:6443`).
pub fn upstream_of(url: &http::Uri) -> Option<String> {
    let host = url.host()?;
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("http") { 80 } else { 443 });
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::upstream_of;

    #[test]
    fn upstream_keeps_host_and_port() {
        let url: http::Uri = "https://127.0.0.1:6443".parse().expect("a url");
        assert_eq!(upstream_of(&url).as_deref(), Some("127.0.0.1:6443"));
        let url: http::Uri = "http://localhost".parse().expect("a url");
        assert_eq!(upstream_of(&url).as_deref(), Some("localhost:80"));
    }
}
