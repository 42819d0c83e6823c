//! The single-machine Wolf pool: a [`Launcher`] that places each session on one of several
//! streaming hosts (Wolf instances) and relays the session's stream ports to it.
//!
//! Moonlight clients send RTSP, pings and ENet to the address they used for HTTP
//! (`streaming-ports.md` §1), so every session gets a port set on direwolf's public address from
//! the [`Relay`], which forwards it to the chosen Wolf. A launch:
//!
//! 1. ends the user's previous session (one session per user, `moonlight-http.md` §5.6.3);
//! 2. picks the host with the lowest load that has room and is not marked down;
//! 3. registers the session there ([`StreamHost::add_session`]) with the client's keys, a unique
//!    `rtsp_fake_ip` from 198.18.0.0/15 (a range reserved for benchmarks, never routed) and, as
//!    `client_ip`, the relay's own address towards that host (what Wolf sees on RTSP);
//! 4. opens the relay and records the [`Session`];
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
//! [`HostError::Unreachable`] never got the request: nothing is watched. Launches keep running to
//! completion even if the client gives up, and are rolled back when nobody is left to answer.
//!
//! Launches and resumes of different users run concurrently. A placement holds a slot of its
//! host's capacity from the moment it picks the host until its session is live or the attempt
//! failed (a refused add gives it back; an unanswered one turns it into the watched late
//! session), and a session being stopped or re-added by a resume keeps its slot until that is
//! done, so two placements never share a host's last slot (on Wolf, two client-less sessions on
//! one instance share one id and end each other). The slot is given back when the placement's
//! hold is dropped, also when its future is dropped mid-await; a `sessions/add` in flight then is
//! watched for like an unanswered one.
//!
//! Each host's event stream ends direwolf sessions the host ended, and a [`HostEvent::Resync`]
//! (or a start-up) reconciles the stores with what each host reports: sessions the host lost are
//! ended, sessions of direwolf's fake-IP range that the store does not know are stopped.
//!
//! Wolf's API cannot re-key a running session, so a `/resume` re-registers the stream with the
//! new keys on the same host (the host restarts its app runner) and answers a fresh relay URL.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::ids::{AppId, UserName};
use crate::launcher::{LaunchError, LaunchOutcome, Launcher};
use crate::model::{LaunchRequest, ResumeRequest, Session, SessionPhase, StreamPlacement};
use crate::relay::{Relay, SessionRelay, SessionRelayConfig, WolfPorts};
use crate::store::{AppCatalog, SessionStore};
use crate::stream_host::{HostError, HostEvent, HostSessionInfo, HostSessionRequest, StreamHost};

/// One streaming host of the pool.
#[derive(Debug, Clone)]
pub struct PoolHost {
    /// The host's API.
    pub host: Arc<dyn StreamHost>,
    /// The address the host's stream ports (RTSP, UDP) are reached at.
    pub stream_ip: IpAddr,
    /// Its RTSP port (Wolf: 48010, `WOLF_RTSP_SETUP_PORT`).
    pub rtsp_port: u16,
    /// Its UDP ports (Wolf defaults 48100/48200/47999).
    pub udp_ports: WolfPorts,
    /// How many sessions it may run at once (at least 1).
    pub capacity: usize,
}

impl PoolHost {
    /// A host with Wolf's default ports at `stream_ip` and room for `capacity` sessions.
    pub fn new(host: Arc<dyn StreamHost>, stream_ip: IpAddr, capacity: usize) -> Self {
        PoolHost {
            host,
            stream_ip,
            rtsp_port: crate::model::StreamPorts::WOLF_DEFAULT.rtsp,
            udp_ports: WolfPorts::default(),
            capacity,
        }
    }
}

/// Tuning of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Deadline of a whole launch or resume; clients give up after ~55 s (`moonlight-http.md`
    /// §2.5). Default 45 s.
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

/// The first fake RTSP address (198.18.0.0/15 is reserved for network benchmarks, RFC 2544).
const FAKE_IP_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// How many fake addresses the range holds.
const FAKE_IP_COUNT: u32 = 1 << 17;

/// Whether `ip` is one of the fake RTSP addresses the pool hands out.
pub fn is_pool_fake_ip(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .map(|ip| u32::from(ip).wrapping_sub(FAKE_IP_BASE) < FAKE_IP_COUNT)
        .unwrap_or(false)
}

struct HostSlot {
    config: PoolHost,
    /// What the host sees as the client address on RTSP: the relay's address towards it.
    source_ip: IpAddr,
    down_until: Mutex<Option<Instant>>,
    /// Fake RTSP addresses of `sessions/add` calls that got no answer, each with the time until
    /// which the host may still create that session late ([`watch_host`] stops it). Each counts
    /// against the host's capacity while it is watched.
    unanswered: Mutex<Vec<(Ipv4Addr, Instant)>>,
}

/// A running session.
struct Live {
    session: Session,
    host: usize,
    fake_ip: Ipv4Addr,
    relay: Option<SessionRelay>,
}

struct Inner {
    hosts: Vec<HostSlot>,
    relay: Relay,
    sessions: Arc<dyn SessionStore>,
    apps: Arc<dyn AppCatalog>,
    config: PoolConfig,
    live: Mutex<HashMap<UserName, Live>>,
    user_locks: Mutex<HashMap<UserName, Arc<tokio::sync::Mutex<()>>>>,
    next_fake_ip: AtomicU32,
    /// Fake addresses handed to placements that are not live yet; the orphan sweep spares them.
    reserved_fake_ips: Mutex<std::collections::HashSet<Ipv4Addr>>,
    /// Per host, the capacity slots held by [`SlotHold`]s: placements in progress (from the
    /// choice of the host until the session is live or the attempt failed) and sessions being
    /// stopped. Each counts against the host's capacity. Taking a slot checks the host's load
    /// under this lock, so two concurrent placements cannot both take a host's last slot.
    /// Lock order: this lock before `live` and before a host's `unanswered`.
    held: Mutex<Vec<usize>>,
}

/// One capacity slot of a host, held by a placement in progress (or a session being stopped) and
/// given back when dropped, whichever way the placement ends (success, failure, or its future
/// dropped mid-await).
struct SlotHold<'a> {
    inner: &'a Inner,
    index: usize,
    /// The fake RTSP address of a `sessions/add` sent to the host whose session is not yet
    /// accounted for (unanswered, or answered but neither recorded as live nor stopped). If the
    /// hold is dropped then (the placement was abandoned mid-await), the host may have created or
    /// may still create that session: it is watched for and stopped like an unanswered add
    /// ([`Inner::note_unanswered`]), counting against the host's capacity meanwhile.
    unsettled: Option<Ipv4Addr>,
    /// Whether the slot is still counted in [`Inner::held`] (it no longer is once
    /// [`SlotHold::make_live`] handed it to a live session).
    counted: bool,
}

impl<'a> SlotHold<'a> {
    fn new(inner: &'a Inner, index: usize) -> Self {
        SlotHold {
            inner,
            index,
            unsettled: None,
            counted: true,
        }
    }

    /// Records `live` (placed on this hold's host) as the user's live session and hands the slot
    /// over to it in one step, so the host's load neither dips nor counts the session twice.
    fn make_live(&mut self, live: Live) {
        let mut held = self.inner.held.lock();
        self.inner.live.lock().insert(live.session.user.clone(), live);
        if self.counted {
            held[self.index] = held[self.index].saturating_sub(1);
            self.counted = false;
        }
        self.unsettled = None;
    }
}

impl Drop for SlotHold<'_> {
    fn drop(&mut self) {
        // Watch first, release second: the host's load never dips in between.
        if let Some(fake_ip) = self.unsettled.take() {
            warn!(host = self.inner.hosts[self.index].config.host.name(), %fake_ip, "a placement was abandoned while its host session was unaccounted for; watching for it");
            self.inner.note_unanswered(self.index, fake_ip);
        }
        if self.counted {
            let mut held = self.inner.held.lock();
            held[self.index] = held[self.index].saturating_sub(1);
        }
    }
}

/// A fake RTSP address reserved for a placement in progress (no other placement gets it and the
/// orphan sweep spares a host session with it); released when dropped.
struct FakeIpHold<'a> {
    inner: &'a Inner,
    ip: Ipv4Addr,
}

impl Drop for FakeIpHold<'_> {
    fn drop(&mut self) {
        self.inner.reserved_fake_ips.lock().remove(&self.ip);
    }
}

/// The Wolf pool launcher. Cheap to clone.
#[derive(Clone)]
pub struct WolfPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for WolfPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WolfPool")
            .field(
                "hosts",
                &self
                    .inner
                    .hosts
                    .iter()
                    .map(|h| h.config.host.name())
                    .collect::<Vec<_>>(),
            )
            .field("live", &self.inner.live.lock().len())
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
        if hosts.is_empty() {
            return Err(Error::invalid(
                "wolf pool",
                "at least one streaming host is needed",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for host in &hosts {
            if host.capacity == 0 {
                return Err(Error::invalid(
                    "wolf pool",
                    format!("host {} has capacity 0", host.host.name()),
                ));
            }
            if !names.insert(host.host.name().to_owned()) {
                return Err(Error::invalid(
                    "wolf pool",
                    format!("two hosts are named {}", host.host.name()),
                ));
            }
        }
        let hosts = hosts
            .into_iter()
            .map(|config| HostSlot {
                source_ip: source_ip_towards(SocketAddr::new(config.stream_ip, config.rtsp_port)),
                config,
                down_until: Mutex::new(None),
                unanswered: Mutex::new(Vec::new()),
            })
            .collect::<Vec<_>>();
        let host_count = hosts.len();
        let pool = WolfPool {
            inner: Arc::new(Inner {
                hosts,
                relay,
                sessions,
                apps,
                config,
                live: Mutex::new(HashMap::new()),
                user_locks: Mutex::new(HashMap::new()),
                next_fake_ip: AtomicU32::new(1),
                reserved_fake_ips: Mutex::new(std::collections::HashSet::new()),
                held: Mutex::new(vec![0; host_count]),
            }),
        };
        pool.restore().await?;
        for index in 0..pool.inner.hosts.len() {
            tokio::spawn(follow_events(Arc::downgrade(&pool.inner), index));
            tokio::spawn(watch_host(Arc::downgrade(&pool.inner), index));
        }
        Ok(pool)
    }

    /// The relay the pool opens session ports on.
    pub fn relay(&self) -> &Relay {
        &self.inner.relay
    }

    /// How many sessions run on each host, by host name.
    pub fn load(&self) -> Vec<(String, usize)> {
        let live = self.inner.live.lock();
        self.inner
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    h.config.host.name().to_owned(),
                    live.values().filter(|l| l.host == i).count(),
                )
            })
            .collect()
    }

    /// Rebuilds the live view from the session store after a restart: sessions whose host still
    /// runs them get their relay back on the same ports; the others are removed.
    async fn restore(&self) -> Result<(), Error> {
        let stored = self.inner.sessions.list().await?;
        let mut by_host: HashMap<usize, Vec<Session>> = HashMap::new();
        for session in stored {
            let host = session
                .placement
                .as_ref()
                .and_then(|p| self.inner.host_index(&p.host));
            match host {
                Some(index) => by_host.entry(index).or_default().push(session),
                None => {
                    info!(session = %session.id, "removing a stored session whose host is not in the pool");
                    self.inner.sessions.delete(&session.id).await?;
                }
            }
        }
        for index in 0..self.inner.hosts.len() {
            let sessions = by_host.remove(&index).unwrap_or_default();
            self.inner.reconcile_host(index, sessions).await;
        }
        Ok(())
    }
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

fn session_url(server_ip: IpAddr, port: u16) -> String {
    match server_ip {
        IpAddr::V4(ip) => format!("rtsp://{ip}:{port}"),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("rtsp://{v4}:{port}"),
            None => format!("rtsp://[{ip}]:{port}"),
        },
    }
}

fn host_error(error: HostError) -> LaunchError {
    LaunchError::Unavailable {
        message: format!("The streaming host could not start the session: {error}"),
    }
}

impl Inner {
    fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.config.host.name() == name)
    }

    fn user_lock(&self, user: &UserName) -> Arc<tokio::sync::Mutex<()>> {
        self.user_locks.lock().entry(user.clone()).or_default().clone()
    }

    fn mark_down(&self, index: usize) {
        *self.hosts[index].down_until.lock() = Some(Instant::now() + self.config.down_for);
    }

    fn is_down(&self, index: usize) -> bool {
        self.hosts[index]
            .down_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Each host's load: its live sessions, the late sessions it may still create and the slots
    /// held by placements in progress. `held` is the locked [`Inner::held`].
    fn loads(&self, held: &[usize]) -> Vec<usize> {
        let mut load: Vec<usize> = (0..self.hosts.len())
            .map(|i| self.pending_late(i) + held[i])
            .collect();
        let live = self.live.lock();
        for l in live.values() {
            load[l.host] += 1;
        }
        load
    }

    /// Hosts with room, least loaded first; hosts marked down come last (they may be back). A
    /// host's load is its live sessions, the late sessions it may still create and the
    /// placements in progress on it. Before placing on one, take a slot with
    /// [`Inner::take_slot`]: another placement may have taken the last one meanwhile.
    fn candidates(&self) -> Vec<usize> {
        let load = self.loads(&self.held.lock());
        let mut order: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| load[i] < self.hosts[i].config.capacity)
            .collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| {
                let ratio = load[i] as f64 / self.hosts[i].config.capacity as f64;
                (self.is_down(i), ratio)
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
        });
        order
    }

    /// Takes a slot of host `index` for a placement if the host has room now; `None` if it is
    /// full (counting live sessions, pending late ones and placements in progress).
    fn take_slot(&self, index: usize) -> Option<SlotHold<'_>> {
        let mut held = self.held.lock();
        if self.loads(&held)[index] >= self.hosts[index].config.capacity {
            return None;
        }
        held[index] += 1;
        Some(SlotHold::new(self, index))
    }

    /// Removes the user's live session and, in the same step, holds its slot on its host for
    /// whatever follows (stopping it, re-adding it): no other placement can take the slot while
    /// the old host session may still be there (on Wolf, client-less sessions of one instance
    /// share one id, so a stop could end the other session). Its fake RTSP address stays
    /// reserved as long as the returned [`FakeIpHold`] lives (a resume keeps it).
    fn take_live(&self, user: &UserName) -> Option<(Live, SlotHold<'_>, FakeIpHold<'_>)> {
        let mut held = self.held.lock();
        let live = {
            let mut live = self.live.lock();
            let taken = live.remove(user)?;
            // Under the live lock, as in `reserve_fake_ip`: no placement picks it meanwhile.
            self.reserved_fake_ips.lock().insert(taken.fake_ip);
            taken
        };
        held[live.host] += 1;
        let slot = SlotHold::new(self, live.host);
        let fake_ip = FakeIpHold {
            inner: self,
            ip: live.fake_ip,
        };
        Some((live, slot, fake_ip))
    }

    /// Reserves a fake RTSP address used by no live session and no other placement, until the
    /// returned hold is dropped (once the session is live or the attempt failed).
    fn reserve_fake_ip(&self) -> FakeIpHold<'_> {
        let live = self.live.lock();
        let mut reserved = self.reserved_fake_ips.lock();
        loop {
            let n = self.next_fake_ip.fetch_add(1, Ordering::Relaxed) % FAKE_IP_COUNT;
            let ip = Ipv4Addr::from(FAKE_IP_BASE + n);
            // Skip the network address, .255s, addresses in use and those of unanswered adds
            // (a late session with them gets stopped).
            if n != 0
                && ip.octets()[3] != 255
                && !reserved.contains(&ip)
                && !live.values().any(|l| l.fake_ip == ip)
                && !self
                    .hosts
                    .iter()
                    .any(|h| h.unanswered.lock().iter().any(|(u, _)| *u == ip))
            {
                reserved.insert(ip);
                return FakeIpHold { inner: self, ip };
            }
        }
    }

    async fn call<T>(
        &self,
        index: usize,
        what: &str,
        call: impl std::future::Future<Output = Result<T, HostError>>,
    ) -> Result<T, HostError> {
        let name = self.hosts[index].config.host.name();
        match tokio::time::timeout(self.config.host_call_timeout, call).await {
            Ok(result) => result,
            // The request may have been sent: the host may still carry it out.
            Err(_) => Err(HostError::NoAnswer {
                host: name.to_owned(),
                message: format!("{what} did not answer within {:?}", self.config.host_call_timeout),
            }),
        }
    }

    /// Places a session for `request` on the host of `slot_hold` (a slot taken for it): host
    /// session and relay. Undoes what it did when a later step fails.
    async fn place(
        &self,
        slot_hold: &mut SlotHold<'_>,
        session: &mut Session,
        server_ip: IpAddr,
        fake_ip: Ipv4Addr,
    ) -> Result<SessionRelay, LaunchError> {
        let index = slot_hold.index;
        let slot = &self.hosts[index];
        let host = &slot.config.host;
        let request = HostSessionRequest {
            client_ip: slot.source_ip,
            keys: session.keys,
            rtsp_fake_ip: fake_ip,
            mode: session.mode,
            audio_channels: (session.surround_audio_info & 0xFFFF) as u16,
            host_app_id: self.config.host_apps.get(&session.app).cloned(),
        };
        // From here until the outcome is known, an abandoned placement leaves a host session to
        // watch for.
        slot_hold.unsettled = Some(fake_ip);
        let added = self
            .call(index, "adding the session", host.add_session(&request))
            .await;
        if added.is_err() {
            // Failed adds are accounted for below (watched if unanswered).
            slot_hold.unsettled = None;
        }
        let host_id = added.map_err(|e| {
            match e {
                // Never delivered: nothing was created.
                HostError::Unreachable { .. } => self.mark_down(index),
                HostError::NoAnswer { .. } => {
                    self.mark_down(index);
                    // The request may have reached the host, which may still create the
                    // session: watch for it, and count it against the host's capacity.
                    self.note_unanswered(index, fake_ip);
                }
                _ => {}
            }
            host_error(e)
        })?;
        let relay_config = SessionRelayConfig {
            client_ip: session.client_ip,
            wolf_rtsp: SocketAddr::new(slot.config.stream_ip, slot.config.rtsp_port),
            wolf_udp_host: slot.config.stream_ip,
            wolf_ports: slot.config.udp_ports,
            fake_rtsp_ip: fake_ip,
        };
        let relay = match self.relay.open_session(relay_config).await {
            Ok(relay) => relay,
            Err(error) => {
                self.stop_on_host(index, &host_id).await;
                slot_hold.unsettled = None;
                return Err(LaunchError::Unavailable {
                    message: format!("No stream ports are free on this server: {error}"),
                });
            }
        };
        let ports = relay.ports();
        session.placement = Some(StreamPlacement {
            session_url: session_url(server_ip, ports.rtsp),
            host: host.name().to_owned(),
            host_session_id: host_id.clone(),
            ports: Some(ports),
        });
        session.phase = SessionPhase::WaitForPing;
        Ok(relay)
    }

    /// Remembers that `sessions/add` with `fake_ip` got no answer from host `index`.
    fn note_unanswered(&self, index: usize, fake_ip: Ipv4Addr) {
        let until = Instant::now() + self.config.launch_deadline;
        let mut unanswered = self.hosts[index].unanswered.lock();
        unanswered.retain(|(ip, _)| *ip != fake_ip);
        unanswered.push((fake_ip, until));
    }

    /// Forgets unanswered adds of host `index` that are too old to still show up; how many
    /// remain (late sessions the host may still create).
    fn pending_late(&self, index: usize) -> usize {
        let now = Instant::now();
        let mut unanswered = self.hosts[index].unanswered.lock();
        unanswered.retain(|(_, until)| now < *until);
        unanswered.len()
    }

    /// Stops the sessions in `reported` (host `index`'s list) that a host created after their
    /// `sessions/add` went unanswered: nobody uses them, and on Wolf (one client-less session id
    /// per instance) they would block the host's next session.
    async fn stop_late_sessions(&self, index: usize, reported: &[HostSessionInfo]) {
        let unanswered: Vec<Ipv4Addr> = self.hosts[index]
            .unanswered
            .lock()
            .iter()
            .map(|(ip, _)| *ip)
            .collect();
        for session in reported {
            let Some(ip) = session
                .rtsp_fake_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            // A resume keeps its address across attempts: never touch one in use again.
            let in_use = self.reserved_fake_ips.lock().contains(&ip)
                || self
                    .live
                    .lock()
                    .values()
                    .any(|l| l.host == index && l.fake_ip == ip);
            if !unanswered.contains(&ip) || in_use {
                continue;
            }
            let host = &self.hosts[index].config.host;
            info!(host = host.name(), id = %session.id, fake_ip = %ip, "stopping a session the host created after its launch attempt was given up");
            match self
                .call(index, "stopping a late session", host.stop_session(&session.id))
                .await
            {
                Ok(()) => self.hosts[index].unanswered.lock().retain(|(u, _)| *u != ip),
                // Kept: the next listing tells whether it is still there.
                Err(error) => warn!(host = host.name(), %error, "could not stop a late session"),
            }
        }
    }

    async fn stop_on_host(&self, index: usize, host_id: &str) {
        let host = &self.hosts[index].config.host;
        match self
            .call(index, "stopping the session", host.stop_session(host_id))
            .await
        {
            Ok(()) | Err(HostError::NoSuchSession { .. }) => {}
            Err(error) => warn!(host = host.name(), %error, "could not stop a session on its host"),
        }
    }

    /// Ends a live session: host session, relay, store entry.
    /// Ends every live session of a host that is gone (nothing is asked of the host).
    async fn end_host_sessions(&self, index: usize) {
        let lost: Vec<Live> = {
            let mut live = self.live.lock();
            let users: Vec<UserName> = live
                .iter()
                .filter(|(_, l)| l.host == index)
                .map(|(user, _)| user.clone())
                .collect();
            users.into_iter().filter_map(|u| live.remove(&u)).collect()
        };
        for live in lost {
            info!(session = %live.session.id, host = self.hosts[index].config.host.name(), "the host is gone; ending its session");
            if let Err(error) = self.end(live, false).await {
                warn!(%error, "could not remove an ended session from the store");
            }
        }
    }

    async fn end(&self, mut live: Live, stop_on_host: bool) -> Result<(), Error> {
        if stop_on_host && let Some(placement) = &live.session.placement {
            self.stop_on_host(live.host, &placement.host_session_id).await;
        }
        if let Some(relay) = live.relay.take() {
            relay.close().await;
        }
        self.sessions.delete(&live.session.id).await?;
        info!(session = %live.session.id, user = %live.session.user, "session ended");
        Ok(())
    }

    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        if self.apps.get(request.app).await?.is_none() {
            return Err(LaunchError::UnknownApp(request.app));
        }
        if let Some((previous, _slot, _fake_ip)) = self.take_live(&request.user) {
            info!(user = %request.user, session = %previous.session.id, "a new launch replaces the user's session");
            self.end(previous, true).await?;
        }
        let mut session = Session::from_launch(&request);
        let mut last_error = None;
        for index in self.candidates() {
            // Another placement may have taken the host's last slot since the list was made.
            let Some(mut slot) = self.take_slot(index) else {
                debug!(
                    host = self.hosts[index].config.host.name(),
                    "host filled up meanwhile; trying the next"
                );
                continue;
            };
            let fake_ip = self.reserve_fake_ip();
            let placed = match self
                .place(&mut slot, &mut session, request.server_ip, fake_ip.ip)
                .await
            {
                Ok(relay) => Ok(self.commit(&mut slot, session.clone(), fake_ip.ip, relay).await),
                Err(error) => Err(error),
            };
            drop(fake_ip);
            drop(slot);
            match placed {
                Ok(outcome) => return outcome,
                Err(error) => {
                    warn!(host = self.hosts[index].config.host.name(), %error, "launch attempt failed");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| LaunchError::Unavailable {
            message: "Every streaming host is busy; try again when a session ends.".to_owned(),
        }))
    }

    /// Records a session placed on the host of `slot`; on a store failure undoes the placement.
    async fn commit(
        &self,
        slot: &mut SlotHold<'_>,
        session: Session,
        fake_ip: Ipv4Addr,
        relay: SessionRelay,
    ) -> Result<LaunchOutcome, LaunchError> {
        let index = slot.index;
        let placement = session.placement.clone().ok_or_else(|| {
            LaunchError::Backend(Error::invalid("session", "placed session without a placement"))
        })?;
        let stored = match self.sessions.get(&session.id).await {
            Ok(Some(_)) => self.sessions.update(session.clone()).await,
            Ok(None) => self.sessions.create(session.clone()).await,
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            self.stop_on_host(index, &placement.host_session_id).await;
            slot.unsettled = None;
            relay.close().await;
            return Err(LaunchError::Backend(error));
        }
        info!(
            session = %session.id,
            user = %session.user,
            app = %session.app,
            host = %placement.host,
            url = %placement.session_url,
            "session placed"
        );
        let outcome = LaunchOutcome {
            session: session.id.clone(),
            session_url: placement.session_url,
        };
        slot.make_live(Live {
            session,
            host: index,
            fake_ip,
            relay: Some(relay),
        });
        Ok(outcome)
    }

    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        // The session's slot on its host stays held (not live, but held) while its host session
        // is stopped and re-added, so no other placement takes it meanwhile.
        // A resume keeps its address, reserved from other placements and the orphan sweep.
        let (live, own_slot, fake_ip) = self.take_live(&request.user).ok_or(LaunchError::NotRunning)?;
        let Live {
            mut session,
            host: index,
            fake_ip: _,
            relay,
        } = live;
        if let Some(relay) = relay {
            relay.close().await;
        }
        if let Some(placement) = session.placement.take() {
            self.stop_on_host(index, &placement.host_session_id).await;
        }
        session.keys = request.keys;
        session.client_ip = request.client_ip;
        session.pairing = request.pairing.clone();
        if let Some(info) = request.surround_audio_info {
            session.surround_audio_info = info;
        }
        // Same host first (the user's app state lives there; its slot is still held), then any
        // other with room.
        let mut last_error = None;
        let mut own_slot = Some(own_slot);
        let mut order = vec![index];
        order.extend(self.candidates().into_iter().filter(|&i| i != index));
        for index in order {
            let slot = match own_slot.take() {
                Some(own) => Some(own),
                None => self.take_slot(index),
            };
            let Some(mut slot) = slot else {
                debug!(
                    host = self.hosts[index].config.host.name(),
                    "host filled up meanwhile; trying the next"
                );
                continue;
            };
            match self
                .place(&mut slot, &mut session, request.server_ip, fake_ip.ip)
                .await
            {
                Ok(relay) => return self.commit(&mut slot, session, fake_ip.ip, relay).await,
                Err(error) => last_error = Some(error),
            }
        }
        drop(fake_ip);
        // Nothing could take it: the session is gone.
        self.sessions.delete(&session.id).await?;
        Err(last_error.unwrap_or_else(|| LaunchError::Unavailable {
            message: "Every streaming host is busy; try again when a session ends.".to_owned(),
        }))
    }

    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        // The slot stays held until the host session is stopped.
        if let Some((live, _slot, _fake_ip)) = self.take_live(user) {
            self.end(live, true).await?;
        }
        Ok(())
    }

    /// Makes the stores and the live view agree with what host `index` runs. `stored` are the
    /// stored sessions placed on it that are not live yet (start-up); live sessions of the host
    /// are checked too.
    async fn reconcile_host(&self, index: usize, stored: Vec<Session>) {
        let host = self.hosts[index].config.host.clone();
        let reported = match self.call(index, "listing sessions", host.list_sessions()).await {
            Ok(list) => list,
            Err(error) => {
                // Unknown state: keep what we have and retry at the next resync.
                warn!(host = host.name(), %error, "cannot reconcile sessions with an unreachable host");
                self.mark_down(index);
                return;
            }
        };
        let reported_ids: std::collections::HashSet<&str> = reported.iter().map(|s| s.id.as_str()).collect();
        // Live sessions the host no longer has.
        let lost: Vec<Live> = {
            let mut live = self.live.lock();
            let users: Vec<UserName> = live
                .iter()
                .filter(|(_, l)| l.host == index)
                .filter(|(_, l)| {
                    l.session
                        .placement
                        .as_ref()
                        .is_none_or(|p| !reported_ids.contains(p.host_session_id.as_str()))
                })
                .map(|(user, _)| user.clone())
                .collect();
            users.into_iter().filter_map(|u| live.remove(&u)).collect()
        };
        for live in lost {
            info!(session = %live.session.id, host = host.name(), "the host no longer runs this session");
            if let Err(error) = self.end(live, false).await {
                warn!(%error, "could not remove an ended session from the store");
            }
        }
        // Stored sessions (start-up): re-open their relay if the host still runs them.
        for session in stored {
            let Some(placement) = session.placement.clone() else {
                continue;
            };
            if !reported_ids.contains(placement.host_session_id.as_str()) {
                info!(session = %session.id, "a stored session ended while direwolf was down");
                if let Err(error) = self.sessions.delete(&session.id).await {
                    warn!(%error, "could not remove an ended session from the store");
                }
                continue;
            }
            let fake_ip = reported
                .iter()
                .find(|s| s.id == placement.host_session_id)
                .and_then(|s| s.rtsp_fake_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            let (Some(fake_ip), Some(ports)) = (fake_ip, placement.ports) else {
                self.stop_on_host(index, &placement.host_session_id).await;
                let _ = self.sessions.delete(&session.id).await;
                continue;
            };
            let slot = &self.hosts[index];
            let relay_config = SessionRelayConfig {
                client_ip: session.client_ip,
                wolf_rtsp: SocketAddr::new(slot.config.stream_ip, slot.config.rtsp_port),
                wolf_udp_host: slot.config.stream_ip,
                wolf_ports: slot.config.udp_ports,
                fake_rtsp_ip: fake_ip,
            };
            match self.relay.open_session_on(ports, relay_config).await {
                Ok(relay) => {
                    info!(session = %session.id, host = host.name(), "session restored after a restart");
                    let user = session.user.clone();
                    self.live.lock().insert(
                        user,
                        Live {
                            session,
                            host: index,
                            fake_ip,
                            relay: Some(relay),
                        },
                    );
                }
                Err(error) => {
                    warn!(session = %session.id, %error, "cannot re-open the relay of a stored session; ending it");
                    self.stop_on_host(index, &placement.host_session_id).await;
                    let _ = self.sessions.delete(&session.id).await;
                }
            }
        }
        // Host sessions in direwolf's fake-IP range that nobody knows: orphans of a crash.
        let known: std::collections::HashSet<String> = self
            .live
            .lock()
            .values()
            .filter(|l| l.host == index)
            .filter_map(|l| l.session.placement.as_ref().map(|p| p.host_session_id.clone()))
            .collect();
        let reserved: std::collections::HashSet<String> = self
            .reserved_fake_ips
            .lock()
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        for orphan in reported.iter().filter(|s| is_orphan(s, &known, &reserved)) {
            info!(host = host.name(), id = %orphan.id, "stopping an orphaned session");
            self.stop_on_host(index, &orphan.id).await;
        }
    }

    /// Applies one host event.
    async fn on_event(&self, index: usize, event: HostEvent) {
        let find = |id: &str| -> Option<UserName> {
            self.live
                .lock()
                .iter()
                .find(|(_, l)| {
                    l.host == index
                        && l.session
                            .placement
                            .as_ref()
                            .is_some_and(|p| p.host_session_id == id)
                })
                .map(|(user, _)| user.clone())
        };
        match event {
            HostEvent::SessionStopped { id } => {
                let Some(user) = find(&id) else { return };
                let lock_user = self.user_lock(&user);
                let _guard = lock_user.lock().await;
                // Re-check under the user's lock: a resume may have replaced the session.
                let matches = |l: &Live| {
                    l.session
                        .placement
                        .as_ref()
                        .is_some_and(|p| p.host_session_id == id)
                };
                let fake_ip = match self.live.lock().get(&user) {
                    Some(l) if matches(l) => l.fake_ip.to_string(),
                    _ => return,
                };
                // Wolf gives every client-less session the same id, so a late stop event of a
                // replaced session can carry the id of the live one: believe the host's list.
                let host = &self.hosts[index].config.host;
                let still_there = self
                    .call(index, "listing sessions", host.list_sessions())
                    .await
                    .map(|list| {
                        list.iter()
                            .any(|s| s.id == id && s.rtsp_fake_ip.as_deref() == Some(fake_ip.as_str()))
                    })
                    .unwrap_or(false);
                if still_there {
                    return;
                }
                let live = {
                    let mut live = self.live.lock();
                    match live.get(&user) {
                        Some(l) if matches(l) => live.remove(&user),
                        _ => None,
                    }
                };
                if let Some(live) = live {
                    info!(session = %live.session.id, "the host ended the session");
                    if let Err(error) = self.end(live, false).await {
                        warn!(%error, "could not remove an ended session from the store");
                    }
                }
            }
            HostEvent::SessionPaused { id } => self.set_phase(find(&id), SessionPhase::Paused).await,
            HostEvent::SessionResumed { id } => self.set_phase(find(&id), SessionPhase::Streaming).await,
            HostEvent::Resync => self.reconcile_host(index, Vec::new()).await,
        }
    }

    async fn set_phase(&self, user: Option<UserName>, phase: SessionPhase) {
        let Some(user) = user else { return };
        let session = {
            let mut live = self.live.lock();
            let Some(l) = live.get_mut(&user) else { return };
            if l.session.phase == phase {
                return;
            }
            l.session.phase = phase;
            l.session.clone()
        };
        debug!(session = %session.id, ?phase, "session phase");
        if let Err(error) = self.sessions.update(session).await {
            warn!(%error, "could not record a session phase");
        }
    }
}

fn is_orphan(
    session: &HostSessionInfo,
    known: &std::collections::HashSet<String>,
    reserved: &std::collections::HashSet<String>,
) -> bool {
    session
        .rtsp_fake_ip
        .as_deref()
        .is_some_and(|ip| is_pool_fake_ip(ip) && !reserved.contains(ip))
        && !known.contains(&session.id)
}

async fn follow_events(inner: Weak<Inner>, index: usize) {
    let mut events = match inner.upgrade() {
        Some(inner) => inner.hosts[index].config.host.events(),
        None => return,
    };
    while let Some(event) = events.next().await {
        let Some(inner) = inner.upgrade() else { return };
        inner.on_event(index, event).await;
    }
}

/// Ends the sessions of a host that stays unreachable for [`PoolConfig::host_lost_after`]: its
/// event stream only reports a resync once the host is back, which may be never. Also stops the
/// sessions a host creates late, after their `sessions/add` went unanswered.
async fn watch_host(inner: Weak<Inner>, index: usize) {
    let every = match inner.upgrade() {
        Some(inner) => {
            (inner.config.host_lost_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
        }
        None => return,
    };
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let has_live = inner.live.lock().values().any(|l| l.host == index);
        let watching = inner.pending_late(index) > 0;
        if !has_live {
            failing_since = None;
        }
        if !has_live && !watching {
            continue;
        }
        let host = inner.hosts[index].config.host.clone();
        match inner.call(index, "listing sessions", host.list_sessions()).await {
            Ok(reported) => {
                failing_since = None;
                if watching {
                    inner.stop_late_sessions(index, &reported).await;
                }
            }
            Err(_) if !has_live => {}
            Err(error) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= inner.config.host_lost_after {
                    warn!(host = host.name(), %error, "host unreachable for too long; ending its sessions");
                    inner.mark_down(index);
                    inner.end_host_sessions(index).await;
                    failing_since = None;
                }
            }
        }
    }
}

/// Runs `work` to completion in its own task even if the caller stops waiting, and rolls the
/// launch back (cancels the user's session) when its outcome can no longer be delivered.
async fn run_detached(
    inner: &Arc<Inner>,
    user: UserName,
    work: impl FnOnce(Arc<Inner>) -> futures::future::BoxFuture<'static, Result<LaunchOutcome, LaunchError>>
    + Send
    + 'static,
) -> Result<LaunchOutcome, LaunchError> {
    let (tx, rx) = oneshot::channel();
    let task_inner = inner.clone();
    let deadline = inner.config.launch_deadline;
    tokio::spawn(async move {
        let user_lock = task_inner.user_lock(&user);
        let guard = user_lock.lock().await;
        let outcome = work(task_inner.clone()).await;
        let succeeded = outcome.is_ok();
        if tx.send(outcome).is_err() && succeeded {
            // The client is gone (deadline passed or connection closed): undo the launch.
            warn!(user = %user, "nobody is waiting for this launch any more; rolling it back");
            if let Err(error) = task_inner.cancel(&user).await {
                warn!(%error, "rolling back a launch failed");
            }
        }
        drop(guard);
    });
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(LaunchError::Backend(Error::unavailable(
            "the launch task ended unexpectedly",
        ))),
        Err(_) => Err(LaunchError::Timeout),
    }
}

#[async_trait]
impl Launcher for WolfPool {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let user = request.user.clone();
        run_detached(&self.inner, user, move |inner| {
            Box::pin(async move { inner.launch(request).await })
        })
        .await
    }

    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let user = request.user.clone();
        run_detached(&self.inner, user, move |inner| {
            Box::pin(async move { inner.resume(request).await })
        })
        .await
    }

    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        let user_lock = self.inner.user_lock(user);
        let _guard = user_lock.lock().await;
        self.inner.cancel(user).await
    }

    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        self.inner.live.lock().get(user).map(|l| l.session.app)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicU16;

    use futures::stream;
    use tokio::sync::broadcast;

    use super::*;
    use crate::ids::{AesKey, Fingerprint, RiKeyId};
    use crate::memory::{InMemoryAppCatalog, InMemorySessionStore};
    use crate::model::{App, StreamKeys, VideoMode};
    use crate::relay::RelayConfig;

    /// What a [`TestHost`] does with the next calls.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Mode {
        Ok,
        Down,
        Refuse,
        Slow(Duration),
        /// `add_session` answers after this long and creates the session then even if the
        /// caller gave up (as a Wolf handler runs to its end); other calls are not delayed.
        Late(Duration),
        /// `add_session` fails at once with [`HostError::NoAnswer`] (the client's own timeout
        /// or a lost connection) and the host creates the session this much later; other calls
        /// work.
        NoAnswer(Duration),
        /// `add_session` fails at once with [`HostError::NoAnswer`] and no session ever appears
        /// (the host crashed on the request); other calls work.
        Lost,
    }

    /// A streaming host in memory: sessions, ids, events, failure modes.
    #[derive(Debug)]
    struct TestHost {
        name: String,
        mode: Mutex<Mode>,
        sessions: Arc<Mutex<BTreeMap<String, HostSessionRequest>>>,
        /// Sessions created by a [`Mode::Late`] or [`Mode::NoAnswer`] add.
        late: Arc<AtomicU32>,
        /// `add_session` calls received.
        adds: AtomicU32,
        /// `add_session` calls received, for tests waiting until one has arrived.
        add_calls: tokio::sync::watch::Sender<u32>,
        /// While set, each `add_session` waits for a permit of this gate once received (a Wolf
        /// still busy with the request), before doing anything else.
        add_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
        next: AtomicU32,
        events: broadcast::Sender<HostEvent>,
        /// Every session gets the same id, as Wolf does for client-less sessions.
        constant_ids: bool,
    }

    impl TestHost {
        fn new(name: &str) -> Arc<Self> {
            Self::build(name, false)
        }

        fn build(name: &str, constant_ids: bool) -> Arc<Self> {
            Arc::new(TestHost {
                name: name.to_owned(),
                mode: Mutex::new(Mode::Ok),
                sessions: Arc::default(),
                late: Arc::default(),
                adds: AtomicU32::new(0),
                add_calls: tokio::sync::watch::Sender::new(0),
                add_gate: Mutex::new(None),
                next: AtomicU32::new(1),
                events: broadcast::channel(64).0,
                constant_ids,
            })
        }

        fn set_mode(&self, mode: Mode) {
            *self.mode.lock() = mode;
        }

        /// Makes the next `add_session` calls wait; each returned permit lets one go on.
        fn block_adds(&self) -> Arc<tokio::sync::Semaphore> {
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            *self.add_gate.lock() = Some(gate.clone());
            gate
        }

        /// Lets later `add_session` calls through at once again (calls already waiting stay on
        /// their gate).
        fn unblock_adds(&self) {
            *self.add_gate.lock() = None;
        }

        fn adds(&self) -> u32 {
            self.adds.load(Ordering::Relaxed)
        }

        /// Waits until the host has received `n` `add_session` calls in all; fails the test
        /// after 5 s.
        async fn received_adds(&self, n: u32, what: &str) {
            let mut calls = self.add_calls.subscribe();
            within(what, calls.wait_for(|&seen| seen >= n))
                .await
                .expect("the sender lives in the host");
        }

        fn count(&self) -> usize {
            self.sessions.lock().len()
        }

        fn requests(&self) -> Vec<HostSessionRequest> {
            self.sessions.lock().values().cloned().collect()
        }

        /// The host ends a session by itself (runner exited).
        fn end(&self, id: &str) {
            self.sessions.lock().remove(id);
            let _ = self.events.send(HostEvent::SessionStopped { id: id.to_owned() });
        }

        async fn gate(&self) -> Result<(), HostError> {
            let mode = *self.mode.lock();
            match mode {
                Mode::Ok => Ok(()),
                Mode::Down => Err(HostError::Unreachable {
                    host: self.name.clone(),
                    message: "down".into(),
                }),
                Mode::Refuse => Err(HostError::Refused {
                    host: self.name.clone(),
                    message: "no".into(),
                }),
                Mode::Late(_) | Mode::NoAnswer(_) | Mode::Lost => Ok(()),
                Mode::Slow(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            }
        }
    }

    #[async_trait]
    impl StreamHost for TestHost {
        fn name(&self) -> &str {
            &self.name
        }

        async fn add_session(&self, request: &HostSessionRequest) -> Result<String, HostError> {
            self.adds.fetch_add(1, Ordering::Relaxed);
            self.add_calls.send_modify(|n| *n += 1);
            let add_gate = self.add_gate.lock().clone();
            if let Some(add_gate) = add_gate {
                add_gate
                    .acquire()
                    .await
                    .expect("test gates are never closed")
                    .forget();
            }
            self.gate().await?;
            let id = if self.constant_ids {
                "6142509188972423790".to_owned()
            } else {
                self.next.fetch_add(1, Ordering::Relaxed).to_string()
            };
            let mode = *self.mode.lock();
            let no_answer = HostError::NoAnswer {
                host: self.name.clone(),
                message: "timed out".into(),
            };
            if mode == Mode::Lost {
                return Err(no_answer);
            }
            if let Mode::NoAnswer(d) = mode {
                let (sessions, late) = (self.sessions.clone(), self.late.clone());
                let (late_id, request) = (id.clone(), request.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    sessions.lock().insert(late_id, request);
                    late.fetch_add(1, Ordering::Relaxed);
                });
                return Err(no_answer);
            }
            if let Mode::Late(d) = mode {
                let (sessions, late) = (self.sessions.clone(), self.late.clone());
                let (late_id, request) = (id.clone(), request.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    sessions.lock().insert(late_id, request);
                    late.fetch_add(1, Ordering::Relaxed);
                });
                tokio::time::sleep(d).await;
                return Ok(id);
            }
            self.sessions.lock().insert(id.clone(), request.clone());
            Ok(id)
        }

        async fn stop_session(&self, id: &str) -> Result<(), HostError> {
            self.gate().await?;
            if self.sessions.lock().remove(id).is_none() {
                return Err(HostError::NoSuchSession {
                    host: self.name.clone(),
                    id: id.to_owned(),
                });
            }
            let _ = self.events.send(HostEvent::SessionStopped { id: id.to_owned() });
            Ok(())
        }

        async fn list_sessions(&self) -> Result<Vec<HostSessionInfo>, HostError> {
            self.gate().await?;
            Ok(self
                .sessions
                .lock()
                .iter()
                .map(|(id, r)| HostSessionInfo {
                    id: id.clone(),
                    rtsp_fake_ip: Some(r.rtsp_fake_ip.to_string()),
                    client_ip: r.client_ip.to_string(),
                    aes_key_hex: Some(r.keys.aes_key.to_hex()),
                })
                .collect())
        }

        fn events(&self) -> crate::stream_host::HostEvents {
            let receiver = self.events.subscribe();
            Box::pin(stream::unfold(receiver, |mut receiver| async move {
                match receiver.recv().await {
                    Ok(event) => Some((event, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => Some((HostEvent::Resync, receiver)),
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }))
        }
    }

    /// A port range of its own for each test, so tests can run in parallel.
    fn port_range() -> std::ops::RangeInclusive<u16> {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let base =
            30_000 + NEXT.fetch_add(1, Ordering::Relaxed) * 200 + (std::process::id() % 50) as u16 * 40;
        base..=base + 39
    }

    fn app(id: u32) -> AppId {
        AppId::new(id).unwrap()
    }

    struct Fixture {
        pool: WolfPool,
        sessions: Arc<InMemorySessionStore>,
        apps: Arc<InMemoryAppCatalog>,
        relay: Relay,
    }

    async fn fixture(hosts: Vec<(Arc<TestHost>, usize)>, config: PoolConfig) -> Fixture {
        let sessions = Arc::new(InMemorySessionStore::default());
        let apps = Arc::new(InMemoryAppCatalog::with_apps([
            (App::new(app(1), "Desktop").unwrap(), None),
            (App::new(app(2), "Steam").unwrap(), None),
        ]));
        let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), port_range())).unwrap();
        let pool = start(hosts, relay.clone(), sessions.clone(), apps.clone(), config).await;
        Fixture {
            pool,
            sessions,
            apps,
            relay,
        }
    }

    async fn start(
        hosts: Vec<(Arc<TestHost>, usize)>,
        relay: Relay,
        sessions: Arc<InMemorySessionStore>,
        apps: Arc<InMemoryAppCatalog>,
        config: PoolConfig,
    ) -> WolfPool {
        let hosts = hosts
            .into_iter()
            .map(|(host, capacity)| PoolHost::new(host, "127.0.0.1".parse().unwrap(), capacity))
            .collect();
        WolfPool::start(hosts, relay, sessions, apps, config)
            .await
            .unwrap()
    }

    fn request(user: &str, app_id: u32) -> LaunchRequest {
        LaunchRequest {
            user: user.parse().unwrap(),
            pairing: Fingerprint::of_der(user.as_bytes()),
            app: app(app_id),
            client_ip: "127.0.0.1".parse().unwrap(),
            server_ip: "127.0.0.1".parse().unwrap(),
            mode: VideoMode::DEFAULT,
            surround_audio_info: 196_610,
            keys: StreamKeys {
                aes_key: AesKey::new([app_id as u8; 16]),
                aes_iv: RiKeyId::from_bits(app_id),
            },
            hdr: false,
            host_audio: false,
            gamepads: 0,
        }
    }

    fn resume_request(user: &str, key: u8) -> ResumeRequest {
        ResumeRequest {
            user: user.parse().unwrap(),
            pairing: Fingerprint::of_der(user.as_bytes()),
            client_ip: "127.0.0.1".parse().unwrap(),
            server_ip: "127.0.0.1".parse().unwrap(),
            keys: StreamKeys {
                aes_key: AesKey::new([key; 16]),
                aes_iv: RiKeyId::from_bits(99),
            },
            surround_audio_info: None,
        }
    }

    /// Polls `check` until it holds; fails the test after 5 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn user(name: &str) -> UserName {
        name.parse().unwrap()
    }

    /// Awaits `future`; fails the test after 5 s saying what did not happen.
    async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Slots of host `index` held by placements in progress or sessions being stopped.
    fn held(pool: &WolfPool, index: usize) -> usize {
        pool.inner.held.lock()[index]
    }

    #[tokio::test]
    async fn launch_places_on_the_least_loaded_host_and_relays() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        let f = fixture(vec![(a.clone(), 2), (b.clone(), 2)], PoolConfig::default()).await;
        let first = f.pool.launch(request("alice", 1)).await.unwrap();
        let second = f.pool.launch(request("bob", 2)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 1), "sessions spread over both hosts");
        assert!(
            first.session_url.starts_with("rtsp://127.0.0.1:"),
            "{}",
            first.session_url
        );
        assert_ne!(
            first.session_url, second.session_url,
            "each session has its own relay port"
        );
        assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
        assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(2)));
        assert_eq!(f.pool.current_app(&user("carol")).await, None);
        let stored = f.sessions.list().await.unwrap();
        assert_eq!(stored.len(), 2);
        assert!(
            stored
                .iter()
                .all(|s| s.phase == SessionPhase::WaitForPing && s.placement.is_some())
        );
        // The host got the keys, a fake IP from the pool's range and the relay's address.
        let sent = &a.requests()[0];
        assert!(is_pool_fake_ip(&sent.rtsp_fake_ip.to_string()));
        assert_eq!(sent.client_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(sent.audio_channels, 2);
        assert_ne!(a.requests()[0].rtsp_fake_ip, b.requests()[0].rtsp_fake_ip);
        assert_eq!(f.relay.allocator().in_use(), 2);
    }

    #[tokio::test]
    async fn a_new_launch_replaces_the_users_session() {
        let a = TestHost::new("a");
        let f = fixture(vec![(a.clone(), 4)], PoolConfig::default()).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        f.pool.launch(request("alice", 2)).await.unwrap();
        assert_eq!(a.count(), 1, "the old session was stopped on the host");
        assert_eq!(f.sessions.list().await.unwrap().len(), 1);
        assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(2)));
        assert_eq!(f.relay.allocator().in_use(), 1, "the old relay ports were freed");
    }

    #[tokio::test]
    async fn failing_hosts_are_skipped_and_full_pools_say_so() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        a.set_mode(Mode::Down);
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (0, 1), "the down host was skipped");
        // b is full and a is down: the client gets a message, nothing leaks.
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(f.relay.allocator().in_use(), 1);
        assert_eq!(f.sessions.list().await.unwrap().len(), 1);
        // A refusing host fails the launch with its message.
        b.set_mode(Mode::Refuse);
        a.set_mode(Mode::Refuse);
        f.pool.cancel(&user("alice")).await.unwrap();
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
        assert_eq!(f.relay.allocator().in_use(), 0);
    }

    #[tokio::test]
    async fn unknown_apps_are_refused() {
        let f = fixture(vec![(TestHost::new("a"), 1)], PoolConfig::default()).await;
        let error = f.pool.launch(request("alice", 9)).await.unwrap_err();
        assert!(matches!(error, LaunchError::UnknownApp(id) if id == app(9)));
        assert!(f.apps.get(app(1)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn cancel_frees_everything_at_once() {
        let a = TestHost::new("a");
        let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        f.pool.cancel(&user("alice")).await.unwrap();
        assert_eq!(
            f.pool.current_app(&user("alice")).await,
            None,
            "FREE as soon as cancel returns"
        );
        assert_eq!(a.count(), 0);
        assert!(f.sessions.list().await.unwrap().is_empty());
        assert_eq!(f.relay.allocator().in_use(), 0);
        // Cancelling with nothing running succeeds.
        f.pool.cancel(&user("alice")).await.unwrap();
    }

    #[tokio::test]
    async fn sessions_the_host_ends_are_ended() {
        let a = TestHost::new("a");
        let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        let id = a.sessions.lock().keys().next().cloned().unwrap();
        a.end(&id);
        let pool = f.pool.clone();
        eventually("the pool ends the session", || {
            pool.inner.live.lock().is_empty() && f.relay.allocator().in_use() == 0
        })
        .await;
        assert!(f.sessions.list().await.unwrap().is_empty());
        assert_eq!(f.pool.current_app(&user("alice")).await, None);
    }

    #[tokio::test]
    async fn resume_rekeys_on_the_same_host() {
        let (a, b) = (TestHost::build("a", true), TestHost::new("b"));
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
        assert!(matches!(
            f.pool.resume(resume_request("alice", 7)).await,
            Err(LaunchError::NotRunning)
        ));
        let launched = f.pool.launch(request("alice", 1)).await.unwrap();
        let resumed = f.pool.resume(resume_request("alice", 7)).await.unwrap();
        assert_eq!(launched.session, resumed.session, "the same direwolf session");
        assert_eq!((a.count(), b.count()), (1, 0), "still on the same host");
        assert_eq!(
            a.requests()[0].keys.aes_key,
            AesKey::new([7; 16]),
            "the host has the new keys"
        );
        // The stop event of the replaced host session carries the same (constant) id: it must not
        // end the resumed session.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
        assert_eq!(
            f.sessions
                .get(&resumed.session)
                .await
                .unwrap()
                .unwrap()
                .keys
                .aes_key,
            AesKey::new([7; 16])
        );
        assert_eq!(f.relay.allocator().in_use(), 1);
    }

    #[tokio::test]
    async fn a_restart_restores_live_sessions_and_drops_dead_ones() {
        let a = TestHost::new("a");
        let sessions = Arc::new(InMemorySessionStore::default());
        let apps = Arc::new(InMemoryAppCatalog::with_apps([(
            App::new(app(1), "Desktop").unwrap(),
            None,
        )]));
        let range = port_range();
        let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), range.clone())).unwrap();
        let pool = start(
            vec![(a.clone(), 4)],
            relay.clone(),
            sessions.clone(),
            apps.clone(),
            PoolConfig::default(),
        )
        .await;
        let kept = pool.launch(request("alice", 1)).await.unwrap();
        pool.launch(request("bob", 1)).await.unwrap();
        // direwolf "crashes": its relay goes away; meanwhile bob's session ends on the host and an
        // orphan appears (a session added but never recorded).
        relay.shutdown();
        drop(pool);
        // The aborted relay tasks close their sockets when they are next polled.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bob_id = a
            .requests()
            .iter()
            .zip(a.sessions.lock().keys())
            .map(|(_, id)| id.clone())
            .nth(1)
            .unwrap();
        a.sessions.lock().remove(&bob_id);
        let orphan = HostSessionRequest {
            rtsp_fake_ip: "198.18.200.1".parse().unwrap(),
            ..a.requests()[0].clone()
        };
        a.sessions.lock().insert("orphan".into(), orphan);
        // A foreign session (not in direwolf's fake-IP range) must be left alone.
        let foreign = HostSessionRequest {
            rtsp_fake_ip: "10.1.2.3".parse().unwrap(),
            ..a.requests()[0].clone()
        };
        a.sessions.lock().insert("foreign".into(), foreign);

        let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), range)).unwrap();
        let pool = start(
            vec![(a.clone(), 4)],
            relay.clone(),
            sessions.clone(),
            apps,
            PoolConfig::default(),
        )
        .await;
        assert_eq!(
            pool.current_app(&user("alice")).await,
            Some(app(1)),
            "alice's session is restored"
        );
        assert_eq!(
            pool.current_app(&user("bob")).await,
            None,
            "bob's ended while direwolf was down"
        );
        let stored = sessions.list().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, kept.session);
        let ids: Vec<String> = a.sessions.lock().keys().cloned().collect();
        assert!(
            !ids.contains(&"orphan".to_owned()),
            "the orphan was stopped: {ids:?}"
        );
        assert!(
            ids.contains(&"foreign".to_owned()),
            "foreign sessions are left alone: {ids:?}"
        );
        // The relay listens on the same RTSP port as before.
        let port: u16 = kept.session_url.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
            "port {port} is relayed again"
        );
    }

    #[tokio::test]
    async fn a_launch_nobody_waits_for_is_rolled_back() {
        let a = TestHost::new("a");
        a.set_mode(Mode::Slow(Duration::from_millis(300)));
        let config = PoolConfig {
            launch_deadline: Duration::from_millis(100),
            host_call_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 1)], config).await;
        let error = f.pool.launch(request("alice", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Timeout), "{error:?}");
        let pool = f.pool.clone();
        a.set_mode(Mode::Ok);
        eventually("the late launch is rolled back", || {
            a.count() == 0 && pool.inner.live.lock().is_empty() && f.relay.allocator().in_use() == 0
        })
        .await;
        assert!(f.sessions.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_session_created_after_its_add_was_given_up_is_stopped() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        let config = PoolConfig {
            host_call_timeout: Duration::from_millis(100),
            host_lost_after: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0));
        let fake_ip = a.requests()[0].rtsp_fake_ip;
        // The resume re-adds on a, which answers too late, then moves to b with the same address.
        a.set_mode(Mode::Late(Duration::from_millis(300)));
        f.pool.resume(resume_request("alice", 7)).await.unwrap();
        assert_eq!(
            b.requests()[0].rtsp_fake_ip,
            fake_ip,
            "a resume keeps its address"
        );
        let pool = f.pool.clone();
        eventually("a creates the late session and the pool stops it", || {
            a.late.load(Ordering::Relaxed) == 1 && a.count() == 0
        })
        .await;
        assert_eq!(b.count(), 1, "the resumed session on b is untouched");
        assert_eq!(pool.current_app(&user("alice")).await, Some(app(1)));
        assert_eq!(f.relay.allocator().in_use(), 1);
        // A new launch does not reuse an address the pool still watches for.
        let watched: Vec<Ipv4Addr> = pool.inner.hosts[0]
            .unanswered
            .lock()
            .iter()
            .map(|(ip, _)| *ip)
            .collect();
        assert!(
            watched.is_empty(),
            "the stopped session is forgotten: {watched:?}"
        );
        pool.inner.note_unanswered(0, Ipv4Addr::new(198, 18, 0, 250));
        pool.inner.next_fake_ip.store(250, Ordering::Relaxed);
        let next = pool.inner.reserve_fake_ip();
        assert_ne!(next.ip, Ipv4Addr::new(198, 18, 0, 250));
        drop(next);
    }

    /// The fake RTSP addresses the pool watches on host `index`.
    fn watched(pool: &WolfPool, index: usize) -> Vec<Ipv4Addr> {
        pool.inner.hosts[index]
            .unanswered
            .lock()
            .iter()
            .map(|(ip, _)| *ip)
            .collect()
    }

    #[tokio::test]
    async fn a_late_session_pending_on_a_host_counts_against_its_capacity() {
        let (a, b) = (TestHost::build("a", true), TestHost::new("b"));
        let config = PoolConfig {
            host_call_timeout: Duration::from_millis(100),
            host_lost_after: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
        // a gets sessions/add but does not answer (it creates the session 400 ms later); b is
        // down and never gets it.
        a.set_mode(Mode::NoAnswer(Duration::from_millis(400)));
        b.set_mode(Mode::Down);
        let error = f.pool.launch(request("alice", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(watched(&f.pool, 0).len(), 1, "a's late session is watched for");
        assert!(watched(&f.pool, 1).is_empty(), "b never got the request");
        // a answers quickly again, but its late session is still to come: with capacity 1 it
        // must get no other session (on Wolf the two would share one id).
        a.set_mode(Mode::Ok);
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(a.adds.load(Ordering::Relaxed), 1, "bob was not sent to a");
        assert_eq!(f.relay.allocator().in_use(), 0);
        assert!(f.sessions.list().await.unwrap().is_empty());
        // The late session shows up and is stopped: a takes launches again.
        let pool = f.pool.clone();
        eventually("a creates the late session and the pool stops it", || {
            a.late.load(Ordering::Relaxed) == 1 && a.count() == 0 && watched(&pool, 0).is_empty()
        })
        .await;
        f.pool.launch(request("bob", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0), "bob runs on a");
        assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(1)));
        // A resume of bob stays on a (its own slot) while b is still down.
        f.pool.resume(resume_request("bob", 7)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0));
    }

    #[tokio::test]
    async fn a_late_session_that_never_comes_holds_its_host_only_for_the_watch_window() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        let window = Duration::from_millis(600);
        let config = PoolConfig {
            launch_deadline: window,
            host_call_timeout: Duration::from_millis(100),
            host_lost_after: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
        a.set_mode(Mode::Lost);
        f.pool.launch(request("alice", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (0, 1), "alice fails over to b");
        let given_up = Instant::now();
        a.set_mode(Mode::Ok);
        // b is full and a may still create alice's first attempt.
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert!(error.to_string().contains("busy"), "{error}");
        assert_eq!(a.adds.load(Ordering::Relaxed), 1);
        // Once the window has passed, a has room again.
        tokio::time::sleep(window.saturating_sub(given_up.elapsed()) + Duration::from_millis(50)).await;
        f.pool.launch(request("bob", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 1));
        assert!(watched(&f.pool, 0).is_empty());
        // An unreachable host is not watched: the request never reached it.
        f.pool.cancel(&user("bob")).await.unwrap();
        a.set_mode(Mode::Down);
        f.pool.launch(request("carol", 1)).await.unwrap_err();
        assert_eq!(a.adds.load(Ordering::Relaxed), 3);
        assert!(watched(&f.pool, 0).is_empty());
    }

    #[tokio::test]
    async fn pending_late_sessions_and_live_ones_share_a_hosts_capacity() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        let config = PoolConfig {
            host_call_timeout: Duration::from_millis(100),
            host_lost_after: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 2), (b.clone(), 1)], config).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0));
        // carol's launch: b is down, a does not answer (and creates her session much later).
        b.set_mode(Mode::Down);
        a.set_mode(Mode::NoAnswer(Duration::from_secs(30)));
        f.pool.launch(request("carol", 1)).await.unwrap_err();
        a.set_mode(Mode::Ok);
        // alice's resume re-adds in her own slot on a.
        f.pool.resume(resume_request("alice", 7)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0));
        // a (capacity 2) now holds alice and carol's pending session: dave gets no slot there.
        let adds = a.adds.load(Ordering::Relaxed);
        let error = f.pool.launch(request("dave", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(a.adds.load(Ordering::Relaxed), adds, "a got no add for dave");
        assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
        assert_eq!(f.relay.allocator().in_use(), 1);
    }

    #[tokio::test]
    async fn a_placement_in_progress_holds_its_hosts_slot_against_a_concurrent_launch() {
        let (a, b) = (TestHost::new("a"), TestHost::new("b"));
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
        let gate = a.block_adds();
        let pool = f.pool.clone();
        let alice = tokio::spawn(async move { pool.launch(request("alice", 1)).await });
        a.received_adds(1, "a to get alice's sessions/add").await;
        assert_eq!(held(&f.pool, 0), 1, "alice's placement holds a's only slot");
        // a has not answered yet: bob must go to b, not wait on (and collide with alice on) a.
        let bob = within(
            "bob's launch, which must not go to a",
            f.pool.launch(request("bob", 1)),
        )
        .await
        .unwrap();
        assert_eq!((a.adds(), b.adds()), (1, 1), "bob was not sent to a");
        assert_eq!((a.count(), b.count()), (0, 1));
        gate.add_permits(1);
        let alice = within("alice's launch", alice)
            .await
            .expect("launch task")
            .unwrap();
        assert_eq!((a.count(), b.count()), (1, 1));
        assert_ne!(alice.session_url, bob.session_url);
        assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
        assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(1)));
        assert_eq!((held(&f.pool, 0), held(&f.pool, 1)), (0, 0), "slots given back");
        assert_eq!(f.relay.allocator().in_use(), 2);
    }

    #[tokio::test]
    async fn a_launch_finding_the_only_slot_taken_by_a_placement_in_progress_is_told_busy() {
        let a = TestHost::new("a");
        let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
        let gate = a.block_adds();
        let pool = f.pool.clone();
        let alice = tokio::spawn(async move { pool.launch(request("alice", 1)).await });
        a.received_adds(1, "a to get alice's sessions/add").await;
        let error = within("bob's launch", f.pool.launch(request("bob", 1)))
            .await
            .unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert!(error.to_string().contains("busy"), "{error}");
        assert_eq!(a.adds(), 1, "no second sessions/add on a");
        assert_eq!(f.relay.allocator().in_use(), 0, "bob got no relay ports");
        gate.add_permits(1);
        within("alice's launch", alice)
            .await
            .expect("launch task")
            .unwrap();
        assert_eq!(a.count(), 1);
        assert_eq!(
            f.sessions.list().await.unwrap().len(),
            1,
            "only alice's session is stored"
        );
        assert_eq!(f.pool.current_app(&user("bob")).await, None);
        assert_eq!(held(&f.pool, 0), 0);
    }

    #[tokio::test]
    async fn a_resume_keeps_its_hosts_slot_while_it_re_adds_there() {
        let (a, b) = (TestHost::build("a", true), TestHost::new("b"));
        let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
        f.pool.launch(request("alice", 1)).await.unwrap();
        assert_eq!((a.count(), b.count()), (1, 0));
        let gate = a.block_adds();
        let pool = f.pool.clone();
        let resume = tokio::spawn(async move { pool.resume(resume_request("alice", 7)).await });
        a.received_adds(2, "a to get the resume's sessions/add").await;
        assert_eq!(a.count(), 0, "the old host session was stopped");
        // alice's session is not live while it is re-added, but its slot on a is held: bob must
        // go to b (on a he would get the same client-less session id as alice).
        within(
            "bob's launch, which must not go to a",
            f.pool.launch(request("bob", 1)),
        )
        .await
        .unwrap();
        assert_eq!((a.adds(), b.adds()), (2, 1), "bob was not sent to a");
        gate.add_permits(1);
        within("alice's resume", resume)
            .await
            .expect("resume task")
            .unwrap();
        assert_eq!((a.count(), b.count()), (1, 1), "alice stays on a, bob runs on b");
        assert_eq!(a.requests()[0].keys.aes_key, AesKey::new([7; 16]));
        assert_eq!((held(&f.pool, 0), held(&f.pool, 1)), (0, 0));
        assert_eq!(f.relay.allocator().in_use(), 2);
    }

    #[tokio::test]
    async fn a_launch_the_client_gave_up_on_holds_the_slot_until_rolled_back() {
        let a = TestHost::new("a");
        let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
        let gate = a.block_adds();
        {
            let launch = f.pool.launch(request("alice", 1));
            tokio::pin!(launch);
            let mut calls = a.add_calls.subscribe();
            tokio::select! {
                biased;
                outcome = &mut launch => panic!("the launch ended while its add was blocked: {outcome:?}"),
                seen = within("a to get alice's sessions/add", calls.wait_for(|&n| n >= 1)) => {
                    seen.expect("the sender lives in the host");
                }
            }
            // The client gives up: its launch future is dropped here.
        }
        // The add is still in flight and may yet succeed: a stays taken.
        assert_eq!(held(&f.pool, 0), 1);
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(a.adds(), 1);
        // a answers: the launch completes, nobody takes the outcome, and it is rolled back.
        gate.add_permits(1);
        let pool = f.pool.clone();
        eventually(
            "the abandoned launch is rolled back and its slot given back",
            || {
                a.adds() == 1
                    && a.count() == 0
                    && pool.inner.live.lock().is_empty()
                    && f.relay.allocator().in_use() == 0
                    && held(&pool, 0) == 0
            },
        )
        .await;
        assert!(f.sessions.list().await.unwrap().is_empty());
        a.unblock_adds();
        f.pool.launch(request("bob", 1)).await.unwrap();
        assert_eq!(a.count(), 1, "bob runs on a");
    }

    #[tokio::test]
    async fn a_placement_dropped_mid_add_gives_its_slot_back_to_a_watched_late_session() {
        let a = TestHost::new("a");
        let config = PoolConfig {
            host_lost_after: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let f = fixture(vec![(a.clone(), 1)], config).await;
        let _gate = a.block_adds();
        let inner = f.pool.inner.clone();
        {
            // The placement's own future (the detached launch task's work), dropped mid-await,
            // as when its task is aborted.
            let launch = inner.launch(request("alice", 1));
            tokio::pin!(launch);
            let mut calls = a.add_calls.subscribe();
            tokio::select! {
                biased;
                outcome = &mut launch => panic!("the launch ended while its add was blocked: {outcome:?}"),
                seen = within("a to get alice's sessions/add", calls.wait_for(|&n| n >= 1)) => {
                    seen.expect("the sender lives in the host");
                }
            }
            assert_eq!(held(&f.pool, 0), 1);
            assert_eq!(f.pool.inner.reserved_fake_ips.lock().len(), 1);
        }
        assert_eq!(held(&f.pool, 0), 0, "the dropped placement's slot is given back");
        assert!(
            f.pool.inner.reserved_fake_ips.lock().is_empty(),
            "its address too"
        );
        // The add had been sent: a may still create the session, which is watched for and
        // counts against a's capacity meanwhile.
        let late = watched(&f.pool, 0);
        assert_eq!(late.len(), 1, "{late:?}");
        a.unblock_adds();
        let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
        assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
        assert_eq!(a.adds(), 1);
        // a creates it late: the pool stops it, and a has room again.
        a.sessions.lock().insert(
            "late".into(),
            HostSessionRequest {
                client_ip: "127.0.0.1".parse().unwrap(),
                keys: request("alice", 1).keys,
                rtsp_fake_ip: late[0],
                mode: VideoMode::DEFAULT,
                audio_channels: 2,
                host_app_id: None,
            },
        );
        let pool = f.pool.clone();
        eventually("the late session is stopped and no longer watched", || {
            a.count() == 0 && watched(&pool, 0).is_empty()
        })
        .await;
        f.pool.launch(request("bob", 1)).await.unwrap();
        assert_eq!(a.count(), 1, "bob runs on a");
        assert_eq!(held(&f.pool, 0), 0);
    }

    #[test]
    fn fake_ips_and_urls() {
        assert!(is_pool_fake_ip("198.18.0.1"));
        assert!(is_pool_fake_ip("198.19.255.254"));
        assert!(!is_pool_fake_ip("198.20.0.1"));
        assert!(!is_pool_fake_ip("10.0.0.1"));
        assert!(!is_pool_fake_ip("not an ip"));
        assert_eq!(
            session_url("192.0.2.1".parse().unwrap(), 40000),
            "rtsp://192.0.2.1:40000"
        );
        assert_eq!(
            session_url("::ffff:192.0.2.1".parse().unwrap(), 1),
            "rtsp://192.0.2.1:1"
        );
        assert_eq!(
            session_url("2001:db8::1".parse().unwrap(), 1),
            "rtsp://[2001:db8::1]:1"
        );
    }

    #[tokio::test]
    async fn invalid_pools_are_refused() {
        let sessions = Arc::new(InMemorySessionStore::default());
        let apps = Arc::new(InMemoryAppCatalog::default());
        let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), port_range())).unwrap();
        let none = WolfPool::start(
            vec![],
            relay.clone(),
            sessions.clone(),
            apps.clone(),
            PoolConfig::default(),
        );
        assert!(matches!(none.await, Err(Error::Invalid { .. })));
        let a = TestHost::new("a");
        let hosts = vec![
            PoolHost::new(a.clone(), "127.0.0.1".parse().unwrap(), 1),
            PoolHost::new(a, "127.0.0.1".parse().unwrap(), 1),
        ];
        let twice = WolfPool::start(hosts, relay, sessions, apps, PoolConfig::default());
        assert!(matches!(twice.await, Err(Error::Invalid { .. })));
    }
}
