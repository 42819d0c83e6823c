//! The stream ports on the proxies' LoadBalancer Service: every Session's four public ports
//! (`status.ports`) published on the one Service clients pair with, so that the relay in each
//! proxy replica ([`crate::relays`]) is reachable from outside the cluster.
//!
//! One writer (the leading operator) applies the list with server-side apply under its own field
//! manager [`FIELD_MANAGER`]: it owns exactly the stream ports, and the Service's own ports
//! (HTTP 47989, HTTPS 47984, written by the installer) stay untouched. A port of a Session that
//! ended or went away is dropped from the next apply. Each port is named after its protocol
//! and number (`t40000`, `u40001`), unique on the Service, and forwarded to the same port of the
//! proxy pods.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use crate::crd;
use crate::retry::RetryPolicy;
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// The field manager that owns the stream ports on the proxies' Service.
pub const FIELD_MANAGER: &str = "direwolf-operator-stream-ports";

/// How often a failed apply is retried while nothing changes.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `(port, is_udp)` of every stream port that should be published now.
pub fn wanted_ports<'a>(sessions: impl IntoIterator<Item = &'a crd::Session>) -> BTreeSet<(u16, bool)> {
    let mut out = BTreeSet::new();
    for session in sessions {
        if session.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(status) = session.status.as_ref() else {
            continue;
        };
        if status.phase == Some(crd::SessionPhase::Ended) {
            continue;
        }
        if let Some(ports) = status.ports {
            out.insert((ports.rtsp.get(), false));
            out.insert((ports.control.get(), true));
            out.insert((ports.video_rtp.get(), true));
            out.insert((ports.audio_rtp.get(), true));
        }
    }
    out
}

/// The Service ports for `wanted`.
pub fn service_ports(wanted: &BTreeSet<(u16, bool)>) -> Vec<ServicePort> {
    wanted
        .iter()
        .map(|&(port, udp)| ServicePort {
            name: Some(format!("{}{port}", if udp { 'u' } else { 't' })),
            port: i32::from(port),
            protocol: Some(if udp { "UDP" } else { "TCP" }.to_owned()),
            target_port: Some(IntOrString::Int(i32::from(port))),
            ..ServicePort::default()
        })
        .collect()
}

/// Applies `wanted` as the stream ports of Service `name` (retried while transient).
///
/// # Errors
/// The API server's refusal (e.g. the Service does not exist), or the last transient error.
pub async fn apply(
    api: &Api<Service>,
    retry: &RetryPolicy,
    name: &str,
    wanted: &BTreeSet<(u16, bool)>,
) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name },
        "spec": { "ports": service_ports(wanted) },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&body);
    retry
        .run("apply the stream ports", || api.patch(name, &params, &patch))
        .await
        .map(drop)
}

/// Keeps the stream ports of Service `name` in step with the Sessions of `watches` until
/// `shutdown` resolves. Run it only while this process may write (the operator's leadership).
pub async fn run(watches: Watches, name: String, shutdown: impl Future<Output = ()>) {
    let sessions: Arc<Cache<crd::Session>> = watches.sessions();
    let api: Api<Service> = watches.api();
    let retry = RetryPolicy::default();
    let mut changes = sessions.reflector().changes().boxed();
    let mut tick = tokio::time::interval(RETRY_EVERY);
    let mut applied: Option<BTreeSet<(u16, bool)>> = None;
    tokio::pin!(shutdown);
    loop {
        if sessions.is_ready() {
            let listed = sessions.list();
            let wanted = wanted_ports(listed.iter().map(|s| s.as_ref()));
            if applied.as_ref() != Some(&wanted) {
                match apply(&api, &retry, &name, &wanted).await {
                    Ok(()) => {
                        info!(service = %name, ports = wanted.len(), "stream ports published");
                        applied = Some(wanted);
                    }
                    Err(error) => warn!(service = %name, %error, "cannot publish the stream ports"),
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            change = changes.next() => if change.is_none() { return },
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::crd::{SessionPorts, SessionStatus};

    fn session(base: u16, phase: crd::SessionPhase) -> crd::Session {
        let port = |n: u16| NonZeroU16::new(base + n).unwrap();
        let mut s: crd::Session = serde_json::from_value(json!({
            "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
            "kind": "Session",
            "metadata": {"name": format!("s{base}")},
            "spec": {
                "userReference": {"name": "alice"},
                "gameReference": {"name": "desktop"},
                "pairingReference": {"name": "f".repeat(64)},
                "config": {"videoWidth": 1280, "videoHeight": 720, "videoRefreshRate": 60}
            }
        }))
        .unwrap();
        s.status = Some(SessionStatus {
            phase: Some(phase),
            ports: Some(SessionPorts {
                rtsp: port(0),
                control: port(1),
                video_rtp: port(2),
                audio_rtp: port(3),
            }),
            ..SessionStatus::default()
        });
        s
    }

    #[test]
    fn live_sessions_publish_their_four_ports_named_by_protocol() {
        let sessions = [
            session(40000, crd::SessionPhase::Streaming),
            session(40004, crd::SessionPhase::Ended),
            session(40008, crd::SessionPhase::Initializing),
        ];
        let wanted = wanted_ports(&sessions);
        assert_eq!(wanted.len(), 8, "the ended session's ports are not published");
        let ports = service_ports(&wanted);
        let named: Vec<(String, i32, String)> = ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port, p.protocol.clone().unwrap()))
            .collect();
        assert_eq!(named[0], ("t40000".into(), 40000, "TCP".into()));
        assert_eq!(named[1], ("u40001".into(), 40001, "UDP".into()));
        assert!(
            ports
                .iter()
                .all(|p| p.target_port == Some(IntOrString::Int(p.port)))
        );
        assert!(named.iter().all(|(name, ..)| name.len() <= 15));
    }
}
