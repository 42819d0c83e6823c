//! The health port every direwolf component offers to its supervisor (systemd, Kubernetes
//! probes, a load balancer): plain HTTP/1.1 on an address of its own, never the GameStream
//! ports.
//!
//! | Path | Answer |
//! |---|---|
//! | `/livez` | `200 ok` while the process serves requests |
//! | `/readyz` | `200 ok` when the component's readiness check passes, else `503` with the reason |
//! | `/metrics` | the component's metrics in the Prometheus text format, when it has any; else `404` |
//!
//! Anything else is `404`; a method other than `GET` or `HEAD` is `405`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use direwolf_core::health::{HealthServer, Probes};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let synced = Arc::new(AtomicBool::new(false));
//! let flag = synced.clone();
//! let probes = Probes::new(move || {
//!     if flag.load(Ordering::SeqCst) { Ok(()) } else { Err("caches not synced".to_owned()) }
//! });
//! let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), probes).await?;
//! println!("probes on http://{}/readyz", server.local_addr());
//! synced.store(true, Ordering::SeqCst);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::metrics::{CONTENT_TYPE as METRICS_TYPE, Metrics};

/// Connections served at once; probes are rare, so more than this is a flood and waits.
const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

type Check = dyn Fn() -> Result<(), String> + Send + Sync;

/// What the health port reports: the readiness check and, optionally, the metrics.
#[derive(Clone)]
pub struct Probes {
    /// `None`: a metrics-only port, without `/livez` and `/readyz`.
    ready: Option<Arc<Check>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Probes whose `/readyz` runs `ready`: `Ok` is ready, `Err(reason)` is not, and the reason
    /// is the answer's body. `ready` runs on every probe, so it must be quick and not block.
    pub fn new(ready: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Probes {
            ready: Some(Arc::new(ready)),
            metrics: None,
        }
    }

    /// A port that serves only `/metrics` (a component's `--metrics-bind`).
    pub fn metrics_only(metrics: Arc<Metrics>) -> Self {
        Probes {
            ready: None,
            metrics: Some(metrics),
        }
    }

    /// Probes that are always ready.
    pub fn always_ready() -> Self {
        Self::new(|| Ok(()))
    }

    /// Adds `/metrics`: `metrics` rendered in the OpenMetrics text format on every scrape.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn answer(&self, method: &Method, path: &str) -> (StatusCode, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != Method::GET && method != Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n".into());
        }
        match (path, &self.ready, &self.metrics) {
            ("/livez", Some(_), _) => (StatusCode::OK, TEXT, "ok\n".into()),
            ("/readyz", Some(ready), _) => match ready() {
                Ok(()) => (StatusCode::OK, TEXT, "ok\n".into()),
                Err(reason) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {reason}\n"),
                ),
            },
            ("/metrics", _, Some(metrics)) => (StatusCode::OK, METRICS_TYPE, metrics.render()),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                match (&self.ready, &self.metrics) {
                    (Some(_), Some(_)) => "not found: /livez, /readyz, /metrics\n",
                    (Some(_), None) => "not found: /livez, /readyz\n",
                    (None, _) => "not found: /metrics\n",
                }
                .into(),
            ),
        }
    }
}

/// A bound health port, served until dropped.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Binds `addr` (port 0 picks a free one) and serves `probes` in the background.
    ///
    /// # Errors
    ///
    /// The address cannot be bound (in use, not local, no permission).
    pub async fn bind(addr: SocketAddr, probes: Probes) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        match probes.ready {
            Some(_) => info!(%addr, "health port (/livez, /readyz, /metrics)"),
            None => info!(%addr, "metrics port (/metrics)"),
        }
        let task = tokio::spawn(accept_loop(listener, probes));
        Ok(HealthServer { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (as dropping does).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, probes: Probes) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "health port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let probes = probes.clone();
                async move { Ok::<_, Infallible>(respond(&probes, &request)) }
            });
            // One request per connection: probes open a connection each, and a simple client
            // may read to the end of the stream.
            let served = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                debug!(%peer, %error, "health port: connection ended with an error");
            }
            drop(slot);
        });
    }
}

fn respond(probes: &Probes, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = probes.answer(request.method(), request.uri().path());
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await?;
            Ok::<_, io::Error>(reply)
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("the health port answers within 5 s")
            .expect("an answer")
    }

    /// A request without `Connection: close`: the server closes after one answer anyway.
    fn request(method: &str, path: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    #[tokio::test]
    async fn liveness_always_readiness_with_its_reason_and_metrics_when_given() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let probes = Probes::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no Wolf reachable".to_owned())
            }
        })
        .with_metrics({
            let metrics = Metrics::new();
            crate::metrics::PairingMetrics::register(&metrics).record(crate::metrics::PairingOutcome::Paired);
            metrics
        });
        let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), probes)
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(
            get(addr, &request("GET", "/livez"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        let not_ready = get(addr, &request("GET", "/readyz")).await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(
            not_ready.ends_with("not ready: no Wolf reachable\n"),
            "{not_ready}"
        );
        ready.store(true, Ordering::SeqCst);
        assert!(
            get(addr, &request("GET", "/readyz?verbose"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        let metrics = get(addr, &request("GET", "/metrics")).await;
        assert!(
            metrics.contains("application/openmetrics-text")
                && metrics.contains("direwolf_pairing_attempts_total{outcome=\"paired\"} 1\n")
                && metrics.ends_with("# EOF\n"),
            "{metrics}"
        );
        let head = get(addr, &request("HEAD", "/livez")).await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(
            get(addr, &request("POST", "/livez"))
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(addr, &request("GET", "/healthz"))
                .await
                .starts_with("HTTP/1.1 404")
        );
    }

    #[tokio::test]
    async fn without_metrics_the_path_is_not_found_and_garbage_is_refused() {
        let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), Probes::always_ready())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(
            get(addr, &request("GET", "/metrics"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(get(addr, "NOT HTTP\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        assert!(
            get(addr, &request("GET", "/readyz"))
                .await
                .starts_with("HTTP/1.1 200")
        );
    }

    #[tokio::test]
    async fn a_metrics_only_port_serves_metrics_and_nothing_else() {
        let probes = Probes::metrics_only(Metrics::new());
        let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), probes)
            .await
            .unwrap();
        let addr = server.local_addr();
        let metrics = get(addr, &request("GET", "/metrics")).await;
        assert!(
            metrics.starts_with("HTTP/1.1 200") && metrics.ends_with("# EOF\n"),
            "{metrics}"
        );
        for path in ["/livez", "/readyz"] {
            let answer = get(addr, &request("GET", path)).await;
            assert!(
                answer.starts_with("HTTP/1.1 404") && answer.ends_with("not found: /metrics\n"),
                "{answer}"
            );
        }
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_and_dropping_the_server_closes_it() {
        let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), Probes::always_ready())
            .await
            .unwrap();
        let addr = server.local_addr();
        let err = HealthServer::bind(addr, Probes::always_ready())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(server);
        tokio::task::yield_now().await;
        let rebound = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(s) = HealthServer::bind(addr, Probes::always_ready()).await {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            rebound.is_ok(),
            "the port is free again once the server is dropped"
        );
    }
}
