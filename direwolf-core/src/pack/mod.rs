//! The single-machine pack (feature `pack`): [`WolfPool`], a [`Launcher`] that places each
//! session on one of several streaming hosts (Wolf instances) and relays the session's stream
//! ports to it.
//!
//! Moonlight clients send RTSP, pings and ENet to the address they used for HTTP
//! (`docs/protocol/streaming-ports.md` § One address for everything), so every session gets a
//! port set on direwolf's public address from the [`Relay`], which forwards it to the chosen
//! Wolf. A launch, run on its own task so that a client hanging up cannot stop it halfway
//! (`placement.rs`):
//!
//! 1. checks the app against the catalog and ends the user's previous session (one session per
//!    user, `docs/protocol/moonlight-http.md` § Launch);
//! 2. picks the host with the lowest load that has room and is not marked down;
//! 3. registers the session there ([`StreamHost::add_session`]) with the client's keys, a unique
//!    `rtsp_fake_ip` from 198.18.0.0/15 (a range reserved for benchmarks, never routed) and, as
//!    `client_ip`, the relay's own address towards that host (what Wolf sees on RTSP);
//! 4. opens the relay and records the [`Session`](crate::Session);
//! 5. answers `rtsp://<address the client used>:<relay RTSP port>`.
//!
//! A host that fails is marked down for a while and the next one is tried; whatever a failed
//! attempt created (host session, relay ports, store entry) is removed. A `sessions/add` that got
//! no answer ([`HostError::NoAnswer`]: timeout, connection lost after the request was sent) may
//! still take effect: a slow Wolf finishes the request after the pool gave up and creates the
//! session. The pool remembers the fake RTSP address of such a call and, for
//! [`PoolConfig::launch_deadline`] after it, stops a session with that address whenever the host
//! reports one; meanwhile that pending late session counts against the host's capacity, so a Wolf
//! of capacity 1 gets no other session that its late one would collide with. A host that was
//! [`HostError::Unreachable`] never got the request: nothing is watched. A launch whose outcome
//! nobody waits for any more (deadline passed, client gone) is rolled back.
//!
//! Launches and resumes of different users run concurrently; those of one user one after the
//! other. What each host runs and may still be asked to run is kept in one ledger (`ledger.rs`)
//! behind one lock: a placement holds a slot of its host's capacity from the moment it picks the
//! host until its session is live or the attempt failed (`holds.rs`), and a session being stopped
//! or re-added by a resume keeps its slot until that is done, so two placements never share a
//! host's last slot (on Wolf, two client-less sessions on one instance share one id and end each
//! other).
//!
//! Each host's event stream ends direwolf sessions the host ended, and a
//! [`HostEvent::Resync`](crate::stream_host::HostEvent::Resync) (or a start-up) reconciles the
//! stores with what each host reports (`reconcile.rs`): sessions the host lost are ended, sessions of direwolf's fake-IP range that the store does not know are
//! stopped. A host unreachable for [`PoolConfig::host_lost_after`] loses its sessions
//! (`events.rs`).
//!
//! Wolf's API cannot re-key a running session, so a `/resume` re-registers the stream with the
//! new keys on the same host (the host restarts its app runner) and answers a fresh relay URL.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Error;
use crate::ids::{AppId, UserName};
use crate::launcher::{LaunchError, LaunchOutcome, Launcher, UserLocks};
use crate::model::{LaunchRequest, ResumeRequest, StreamPorts};
use crate::relay::{Relay, SessionRelayConfig, WolfPorts};
use crate::store::{AppCatalog, SessionStore};
use crate::stream_host::{HostError, StreamHost};

mod events;
mod holds;
mod ledger;
mod placement;
mod reconcile;
#[cfg(feature = "wolf")]
pub mod wolf_host;

pub use ledger::is_pool_fake_ip;
#[cfg(feature = "wolf")]
pub use wolf_host::WolfHost;

use self::ledger::Ledger;

/// One streaming host of the pool.
#[derive(Debug, Clone)]
pub struct PoolHost {
    /// The host's API.
    pub host: Arc<dyn StreamHost>,
    /// The address the host's stream ports (RTSP, UDP) are reached at.
    pub stream_ip: IpAddr,
    /// Its RTSP port (Wolf: `WOLF_RTSP_SETUP_PORT`).
    pub rtsp_port: u16,
    /// Its UDP ports.
    pub udp_ports: WolfPorts,
    /// How many sessions it may run at once (at least 1).
    pub capacity: usize,
}

impl PoolHost {
    /// A host with Wolf's default ports ([`StreamPorts::WOLF_DEFAULT`]) at `stream_ip` and room
    /// for `capacity` sessions.
    pub fn new(host: Arc<dyn StreamHost>, stream_ip: IpAddr, capacity: usize) -> Self {
        PoolHost {
            host,
            stream_ip,
            rtsp_port: StreamPorts::WOLF_DEFAULT.rtsp,
            udp_ports: WolfPorts::default(),
            capacity,
        }
    }
}

/// Tuning of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Deadline of a whole launch or resume; clients give up after ~55 s
    /// (`docs/protocol/moonlight-http.md` § Client timeouts). Default 45 s.
    pub launch_deadline: Duration,
    /// Deadline of one call to a host. Default 10 s.
    pub host_call_timeout: Duration,
    /// How long a host that failed is skipped. Default 15 s.
    pub down_for: Duration,
    /// Host-side app id per direwolf app (Wolf `app_id`); apps without an entry run the host's
    /// placeholder app (`app_id` omitted).
    pub host_apps: HashMap<AppId, String>,
    /// A host that runs sessions and cannot be reached for this long is taken to have lost them
    /// (Wolf keeps sessions in memory only, and a crashed Wolf may never come back): they are
    /// ended, freeing their relay ports and the users' busy state. Default 20 s.
    pub host_lost_after: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            launch_deadline: Duration::from_secs(45),
            host_call_timeout: Duration::from_secs(10),
            down_for: Duration::from_secs(15),
            host_apps: HashMap::new(),
            host_lost_after: Duration::from_secs(20),
        }
    }
}

/// A host of the pack as the pack uses it.
struct Member {
    config: PoolHost,
    /// What the host sees as the client address on RTSP: the relay's address towards it.
    source_ip: IpAddr,
}

/// The state of a pool, shared by its launches and its background tasks.
struct Pack {
    members: Vec<Member>,
    relay: Relay,
    sessions: Arc<dyn SessionStore>,
    apps: Arc<dyn AppCatalog>,
    config: PoolConfig,
    ledger: Mutex<Ledger>,
    /// One lock per user: launches, resumes and cancels of one user run one after the other.
    user_locks: UserLocks,
}

impl Pack {
    fn host(&self, index: usize) -> &Arc<dyn StreamHost> {
        &self.members[index].config.host
    }

    fn name(&self, index: usize) -> &str {
        self.host(index).name()
    }

    fn host_index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.config.host.name() == name)
    }

    fn mark_down(&self, index: usize) {
        self.ledger
            .lock()
            .mark_down(index, Instant::now() + self.config.down_for);
    }

    /// What the relay of a session of `client_ip` on host `index` with `fake_ip` must know.
    fn relay_config(&self, index: usize, client_ip: IpAddr, fake_ip: Ipv4Addr) -> SessionRelayConfig {
        let member = &self.members[index].config;
        SessionRelayConfig {
            client_ip,
            wolf_rtsp: SocketAddr::new(member.stream_ip, member.rtsp_port),
            wolf_udp_host: member.stream_ip,
            wolf_ports: member.udp_ports,
            fake_rtsp_ip: fake_ip,
        }
    }

    /// Calls host `index` within [`PoolConfig::host_call_timeout`]; a call that does not answer
    /// in time is [`HostError::NoAnswer`] (the request may have been sent).
    async fn call<T>(
        &self,
        index: usize,
        what: &str,
        call: impl Future<Output = Result<T, HostError>>,
    ) -> Result<T, HostError> {
        match tokio::time::timeout(self.config.host_call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(HostError::NoAnswer {
                host: self.name(index).to_owned(),
                message: format!("{what} did not answer within {:?}", self.config.host_call_timeout),
            }),
        }
    }

    /// Stops a host session; one the host no longer has is fine, other failures are logged.
    async fn stop_on_host(&self, index: usize, host_id: &str) {
        let host = self.host(index);
        match self
            .call(index, "stopping the session", host.stop_session(host_id))
            .await
        {
            Ok(()) | Err(HostError::NoSuchSession { .. }) => {}
            Err(error) => tracing::warn!(host = host.name(), %error, "could not stop a session on its host"),
        }
    }
}

/// The Wolf pool launcher. Cheap to clone.
#[derive(Clone)]
pub struct WolfPool {
    pack: Arc<Pack>,
}

impl fmt::Debug for WolfPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = (0..self.pack.members.len()).map(|i| self.pack.name(i)).collect();
        f.debug_struct("WolfPool")
            .field("hosts", &hosts)
            .field("load", &self.pack.ledger.lock().live_per_host())
            .finish_non_exhaustive()
    }
}

impl WolfPool {
    /// Builds the pool, reconciles the stored sessions with what the hosts report, and starts
    /// following every host's events. Call inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Invalid`] without hosts or with a host of capacity 0 or duplicate names; a store
    /// error while reading the stored sessions.
    pub async fn start(
        hosts: Vec<PoolHost>,
        relay: Relay,
        sessions: Arc<dyn SessionStore>,
        apps: Arc<dyn AppCatalog>,
        config: PoolConfig,
    ) -> Result<Self, Error> {
        validate(&hosts)?;
        let ledger = Ledger::new(hosts.iter().map(|h| h.capacity));
        let members = hosts
            .into_iter()
            .map(|config| Member {
                source_ip: source_ip_towards(SocketAddr::new(config.stream_ip, config.rtsp_port)),
                config,
            })
            .collect();
        let pack = Arc::new(Pack {
            members,
            relay,
            sessions,
            apps,
            config,
            ledger: Mutex::new(ledger),
            user_locks: UserLocks::default(),
        });
        reconcile::restore(&pack).await?;
        for index in 0..pack.members.len() {
            tokio::spawn(events::follow_events(Arc::downgrade(&pack), index));
            tokio::spawn(events::watch_host(Arc::downgrade(&pack), index));
        }
        Ok(WolfPool { pack })
    }

    /// The relay the pool opens session ports on.
    pub fn relay(&self) -> &Relay {
        &self.pack.relay
    }

    /// How many sessions run on each host, by host name.
    pub fn load(&self) -> Vec<(String, usize)> {
        let live = self.pack.ledger.lock().live_per_host();
        live.into_iter()
            .enumerate()
            .map(|(i, n)| (self.pack.name(i).to_owned(), n))
            .collect()
    }
}

/// At least one host, each of capacity 1 or more, names unique.
fn validate(hosts: &[PoolHost]) -> Result<(), Error> {
    if hosts.is_empty() {
        return Err(Error::invalid(
            "wolf pool",
            "at least one streaming host is needed",
        ));
    }
    let mut names = HashSet::new();
    for host in hosts {
        let name = host.host.name();
        if host.capacity == 0 {
            return Err(Error::invalid("wolf pool", format!("host {name} has capacity 0")));
        }
        if !names.insert(name) {
            return Err(Error::invalid("wolf pool", format!("two hosts are named {name}")));
        }
    }
    Ok(())
}

/// The local address the system would use to reach `target` (no packet is sent).
fn source_ip_towards(target: SocketAddr) -> IpAddr {
    let unspecified: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(unspecified)
        .and_then(|socket| {
            socket.connect(target)?;
            socket.local_addr()
        })
        .map(|addr| addr.ip())
        .unwrap_or(target.ip())
}

#[async_trait]
impl Launcher for WolfPool {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let user = request.user.clone();
        placement::run_detached(&self.pack, user, move |pack| {
            Box::pin(async move { pack.launch(request).await })
        })
        .await
    }

    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let user = request.user.clone();
        placement::run_detached(&self.pack, user, move |pack| {
            Box::pin(async move { pack.resume(request).await })
        })
        .await
    }

    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        let user_lock = self.pack.user_locks.of(user);
        let _guard = user_lock.lock().await;
        self.pack.cancel(user).await
    }

    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        self.pack.ledger.lock().live(user).map(|l| l.session.app)
    }
}

#[cfg(test)]
mod tests;
