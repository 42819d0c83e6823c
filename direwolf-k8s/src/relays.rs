//! [`SessionRelays`]: the stream relay of every Session in the namespace, derived from the Session
//! objects alone (feature `relay`).
//!
//! Every proxy replica runs one. For each Session that the operator has given public ports
//! (`status.ports`) and whose pod has an IP (`status.host`), it relays those ports on the proxy's
//! address to the pod: RTSP to `host:`[`WOLF_RTSP_PORT`], video, audio and control to Wolf's
//! default UDP ports on `host`, writing the Session's fake RTSP IP ([`fake_rtsp_ip`] of the host)
//! into every RTSP request. No replica keeps state another needs: a client's RTSP, video, audio
//! and control flows may reach different replicas behind one load-balanced address, and a
//! restarted replica rebuilds every relay from the Sessions it lists. Its relays speak to Wolf from
//! the public ports, as before the restart, so Wolf's ENet peer of a running stream carries on
//! (`direwolf_core::relay`); a flow moved to another replica (another source IP) is a new peer
//! to Wolf, and its control stream ends.
//!
//! A relay opens as soon as `ports` and `host` are known, before the agent publishes the stream
//! URL, so the client's RTSP connection never meets a replica that has not opened it yet. It
//! closes when the Session ends, is being deleted or goes away, and is re-opened when its ports
//! or host change. A set that cannot be bound (another program holds a port) is retried every
//! [`RETRY_EVERY`].
//!
//! With a shared-ports relay (`direwolf proxy --shared-ports`, the operator run with
//! `--shared-ports` too) every Session's `status.ports` are the one shared set, and each replica
//! joins the Session to its shared ports instead: RTSP is told apart by the pod IP the client
//! echoes (the agent's `sessionUrl0` names it), media by ping payload, control by connect data (the
//! shared-ports mode of `direwolf_core::relay`). The extra RTSP port `direwolf serve` gives a
//! second simultaneous `0.0.0.0` launch of one address does not exist here (the agent's URL names
//! the shared port): such a launch's requests are refused as ambiguous.
//!
//! Each replica admits a new UDP endpoint from the Session's client address, or one that proves
//! the session's ping secret or connect data learned from the RTSP answers it relayed itself.
//! Behind a load balancer that does not keep client addresses, a flow must therefore reach the
//! replica that relayed that client's RTSP (session affinity by client address).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::StreamPorts;
use direwolf_core::relay::{Relay, SessionRelay, SessionRelayConfig, SharedPorts};
use futures::StreamExt;
use kube::ResourceExt;
use tracing::{info, warn};

use crate::crd;
use crate::stream::{WOLF_RTSP_PORT, fake_rtsp_ip};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// How often relays that could not be opened are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Where one Session's stream is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayTarget {
    /// The public ports (`status.ports`).
    pub ports: StreamPorts,
    /// The pod's IP (`status.host`).
    pub host: IpAddr,
    /// The client's address as the proxy saw it at launch (`spec.config.clientIP`).
    pub client_ip: Option<IpAddr>,
}

impl RelayTarget {
    /// The relay engine's view of it.
    pub fn session_config(&self) -> SessionRelayConfig {
        let mut config = SessionRelayConfig::new(
            self.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            SocketAddr::new(self.host, WOLF_RTSP_PORT),
            fake_rtsp_ip(self.host),
        );
        config.wolf_udp_host = self.host;
        config
    }
}

/// The shared port set as a Session's ports.
fn shared_set(shared: SharedPorts) -> StreamPorts {
    StreamPorts {
        rtsp: shared.rtsp,
        video: shared.video,
        audio: shared.audio,
        control: shared.control,
    }
}

/// The relay a Session should have now, if any.
pub fn target(session: &crd::Session) -> Option<RelayTarget> {
    if session.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = session.status.as_ref()?;
    if status.phase == Some(crd::SessionPhase::Ended) {
        return None;
    }
    let ports = status.ports?;
    let host = status.host.as_deref()?.parse().ok()?;
    Some(RelayTarget {
        ports: StreamPorts {
            rtsp: ports.rtsp.get(),
            control: ports.control.get(),
            video: ports.video_rtp.get(),
            audio: ports.audio_rtp.get(),
        },
        host,
        client_ip: session
            .spec
            .config
            .client_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok()),
    })
}

/// The relays of every Session of one namespace, kept in step with the Session watch.
#[derive(Debug)]
pub struct SessionRelays {
    relay: Relay,
    sessions: Arc<Cache<crd::Session>>,
    open: HashMap<String, (RelayTarget, SessionRelay)>,
}

impl SessionRelays {
    /// Relays the Sessions of `watches` through `relay` (its `public_ip` is the proxy's address;
    /// its port range is not used: the operator allocates the ports).
    pub fn new(watches: &Watches, relay: Relay) -> Self {
        SessionRelays {
            relay,
            sessions: watches.sessions(),
            open: HashMap::new(),
        }
    }

    /// The Sessions relayed now, by name.
    pub fn relayed(&self) -> impl Iterator<Item = (&str, &RelayTarget)> {
        self.open
            .iter()
            .map(|(name, (target, _))| (name.as_str(), target))
    }

    /// Opens, re-opens and closes relays until `shutdown` resolves, then closes them all.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut changes = self.sessions.reflector().changes().boxed();
        let mut retry = tokio::time::interval(RETRY_EVERY);
        tokio::pin!(shutdown);
        loop {
            if self.sessions.is_ready() {
                self.reconcile().await;
            }
            tokio::select! {
                () = &mut shutdown => break,
                change = changes.next() => if change.is_none() { break },
                _ = retry.tick() => {}
            }
        }
        for (_, (_, relay)) in self.open.drain() {
            relay.close().await;
        }
    }

    /// One round: the open relays become those the Sessions ask for.
    pub async fn reconcile(&mut self) {
        let wanted: HashMap<String, RelayTarget> = self
            .sessions
            .list()
            .iter()
            .filter_map(|s| Some((s.name_any(), target(s)?)))
            .collect();
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(name, (target, _))| wanted.get(*name) != Some(target))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, relay)) = self.open.remove(&name) {
                relay.close().await;
                info!(session = %name, "relay closed");
            }
        }
        for (name, target) in wanted {
            if self.open.contains_key(&name) {
                continue;
            }
            let opened = match self.relay.config().shared_ports {
                None => {
                    self.relay
                        .open_session_on(target.ports, target.session_config())
                        .await
                }
                Some(shared) if shared_set(shared) == target.ports => {
                    self.relay.open_session(target.session_config()).await
                }
                Some(_) => {
                    warn!(
                        session = %name, rtsp = target.ports.rtsp,
                        "the Session's ports are not the shared set this proxy relays: run the operator with --shared-ports too"
                    );
                    continue;
                }
            };
            match opened {
                Ok(relay) => {
                    info!(session = %name, host = %target.host, rtsp = target.ports.rtsp, "relay opened");
                    self.open.insert(name, (target, relay));
                }
                Err(error) => warn!(session = %name, %error, "cannot relay the session yet"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::crd::{SessionPorts, SessionStatus};

    fn session(status: Option<SessionStatus>) -> crd::Session {
        let mut s = crd::Session::example("alice-desktop-x7k2p");
        s.status = status;
        s
    }

    fn port(p: u16) -> NonZeroU16 {
        NonZeroU16::new(p).unwrap()
    }

    fn provisioned() -> SessionStatus {
        SessionStatus {
            phase: Some(crd::SessionPhase::Initializing),
            ports: Some(SessionPorts {
                rtsp: port(40000),
                control: port(40001),
                video_rtp: port(40002),
                audio_rtp: port(40003),
            }),
            host: Some("10.77.0.5".into()),
            ..SessionStatus::default()
        }
    }

    #[test]
    fn a_session_is_relayed_once_it_has_ports_and_a_host() {
        assert_eq!(target(&session(None)), None);
        let mut no_host = provisioned();
        no_host.host = None;
        assert_eq!(target(&session(Some(no_host))), None);
        let t = target(&session(Some(provisioned()))).unwrap();
        assert_eq!(t.ports.rtsp, 40000);
        assert_eq!(t.ports.control, 40001);
        assert_eq!(t.ports.video, 40002);
        assert_eq!(t.ports.audio, 40003);
        let config = t.session_config();
        assert_eq!(config.wolf_rtsp, "10.77.0.5:48010".parse().unwrap());
        assert_eq!(config.fake_rtsp_ip, Ipv4Addr::new(10, 77, 0, 5));
        assert_eq!(config.client_ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_ended_or_deleting_session_is_not_relayed() {
        let mut ended = provisioned();
        ended.phase = Some(crd::SessionPhase::Ended);
        assert_eq!(target(&session(Some(ended))), None);
        let mut deleting = session(Some(provisioned()));
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(target(&deleting), None);
    }
}
