//! Probes run from the host against the pod, as a kubelet does: httpGet and tcpSocket to the
//! pod's IP, exec inside the container's namespaces.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::process;

/// Where a probe runs.
#[derive(Debug, Clone)]
pub struct ProbeTarget<'a> {
    /// The container (for named ports).
    pub container: &'a Container,
    /// The pod's IP.
    pub pod_ip: Ipv4Addr,
    /// The container's process (for exec).
    pub pid: u32,
    /// The container's environment (for exec).
    pub env: &'a HashMap<String, String>,
}

/// Timing of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Before the first run.
    pub initial_delay: Duration,
    /// Between runs.
    pub period: Duration,
    /// Of one run.
    pub timeout: Duration,
    /// Successes in a row to pass.
    pub success_threshold: u32,
    /// Failures in a row to fail.
    pub failure_threshold: u32,
}

impl Timing {
    /// The probe's timing, defaults filled in.
    pub fn of(p: &Probe) -> Self {
        let secs =
            |v: Option<i32>, d: u64| Duration::from_secs(v.map_or(d, |v| u64::try_from(v).unwrap_or(d)));
        let count = |v: Option<i32>, d: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(d)
        };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

/// Runs `probe` once; `Err` says why it failed.
pub async fn run(probe: &Probe, target: &ProbeTarget<'_>) -> Result<(), String> {
    let timeout = Timing::of(probe).timeout;
    match tokio::time::timeout(timeout, run_untimed(probe, target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

async fn run_untimed(probe: &Probe, t: &ProbeTarget<'_>) -> Result<(), String> {
    if let Some(http) = &probe.http_get {
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return Err("httpGet with scheme HTTPS is not supported by the stand-in".to_owned());
        }
        let port = port_of(&http.port, t.container)?;
        let host = http.host.clone().unwrap_or_else(|| t.pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
        return http_get(&host, port, &path).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port_of(&tcp.port, t.container)?;
        let host = tcp.host.clone().unwrap_or_else(|| t.pod_ip.to_string());
        return TcpStream::connect((host.as_str(), port))
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
    }
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        let (code, out) = process::exec_in(t.pid, &argv, t.env)
            .await
            .map_err(|e| format!("exec {argv:?}: {e}"))?;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!("exec {argv:?} exited {code}: {}", out.trim()))
        };
    }
    Err("probe has no handler the stand-in supports (httpGet, tcpSocket, exec)".to_owned())
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("no container port named {name}"))?,
    };
    u16::try_from(n).map_err(|_| format!("port {n} is out of range"))
}

/// GET `path` over HTTP/1.1; success on a status from 200 to 399, as Kubernetes.
async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: direwolf-kubelet-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {host}:{port}: {e}"))?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        let n = s
            .read(&mut head[len..])
            .await
            .map_err(|e| format!("read from {host}:{port}: {e}"))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response from {host}:{port}: {:?}",
                line.lines().next()
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_get_reads_the_status_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for answer in ["HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        let within = |f| tokio::time::timeout(Duration::from_secs(5), f);
        assert_eq!(
            within(http_get("127.0.0.1", port, "/")).await.expect("in time"),
            Ok(())
        );
        let failed = within(http_get("127.0.0.1", port, "/")).await.expect("in time");
        assert!(failed.is_err_and(|e| e.contains("503")));
        server.await.expect("server");
    }
}
