//! The stream relay: public ports forwarded to the Wolf that runs each session, four of them per
//! session or one set that every session shares ([`shared`]).
//!
//! Moonlight sends RTSP (TCP), the audio and video pings (UDP) and the ENet control stream (UDP) to
//! the address it used for HTTP (`docs/protocol/streaming-ports.md` § One address for
//! everything). A [`Relay`] owns a range of public ports; [`Relay::open_session`] leases four of
//! them ([`StreamPorts`]) and starts
//!
//! * an L7 RTSP relay ([`rtsp`]) that points every request at the session's fake RTSP IP and
//!   rewrites `Transport: server_port=` in SETUP answers to the public UDP ports, so every Wolf can
//!   keep its default ports 48100/48200/47999, and
//! * three UDP relays ([`udp`]) that map each admitted client endpoint to its own upstream socket
//!   and send Wolf's answers back from the public port the client pinged.
//!
//! Dropping (or [`SessionRelay::close`]-ing) the returned handle stops the session's tasks and
//! frees its ports; `close` also waits until the sockets are closed, drop only aborts the tasks.
//!
//! Wolf sees every stream coming from the relay's own address. That is enough for Wolf ≥ V4
//! (`docs/protocol/streaming-ports.md` § How Wolf matches traffic to a session): RTSP is matched
//! by the fake IP the relay writes into every request, pings by the ping secret, ENet by the
//! connect data, so Wolf's `client_ip` for the session need not be the client's address. Pre-V4
//! Wolf (matching by source IP) cannot be relayed this way.
//!
//! With [`RelayConfig::shared_ports`] every session shares one port set instead, told apart by
//! the fake IP its RTSP requests echo, its ping secret and its ENet connect data ([`shared`]).
//!
//! ```no_run
//! use direwolf_core::relay::{Relay, RelayConfig, SessionRelayConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let relay = Relay::new(RelayConfig::new("203.0.113.1".parse()?, 40000..=40999))?;
//! let session = relay
//!     .open_session(SessionRelayConfig::new(
//!         "198.51.100.7".parse()?,   // the client (the /launch caller)
//!         "10.0.0.5:48010".parse()?, // the Wolf's RTSP address
//!         "10.99.0.7".parse()?,      // the rtsp_fake_ip given to Wolf
//!     ))
//!     .await?;
//! let url = format!("rtsp://203.0.113.1:{}", session.ports().rtsp); // -> sessionUrl0
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

pub mod fast_path;
pub mod ports;
pub mod rtsp;
mod shared;
mod socket;
mod source;
pub mod stats;
pub mod udp;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use crate::StreamPorts;

pub use fast_path::{FastPath, FastPathError};
pub use ports::{PortAllocError, PortAllocator, PortLease};
pub use rtsp::{RtspError, RtspLimits};
pub use shared::SharedPorts;
pub use stats::{Admissions, RelayTotals, RtspStats, SessionStats, StreamKind, UdpDrops, UdpStats};
pub use udp::{Admission, SessionSecrets};
use udp::{Clients, Public};

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No port set is free.
    #[error(transparent)]
    Ports(#[from] PortAllocError),
    /// A public socket could not be opened.
    #[error("cannot listen on {address} for {what}: {source}")]
    Bind {
        /// `"rtsp"`, `"video"`, `"audio"` or `"control"`.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The configuration is not usable.
    #[error("invalid relay configuration: {0}")]
    Invalid(String),
    /// [`Relay::shutdown`] was called.
    #[error("the relay is shut down")]
    ShutDown,
}

/// Result of relay operations.
pub type Result<T, E = RelayError> = std::result::Result<T, E>;

/// Settings of a [`Relay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The address the public sockets bind to (the Moonlight endpoint's IP, or unspecified).
    pub public_ip: IpAddr,
    /// Ports handed out to sessions, cut into sets of four (see [`PortAllocator`]).
    pub port_range: RangeInclusive<u16>,
    /// A UDP mapping is forgotten after this long without a datagram from the client.
    pub udp_idle_timeout: Duration,
    /// Client endpoints mapped per stream and session at most.
    pub max_mappings_per_stream: usize,
    /// Requested `SO_RCVBUF`/`SO_SNDBUF` of every UDP socket, bytes (0: system default).
    pub socket_buffer_bytes: usize,
    /// RTSP sizes and timeouts.
    pub rtsp: RtspLimits,
    /// Admit new UDP endpoints from any source (still bounded by `max_mappings_per_stream`),
    /// instead of the admission policy of [`udp`]. Only for trusted networks and benchmarks.
    pub admit_any_source: bool,
    /// Serve every session on this one port set ([`shared`] mode); `port_range` then only holds
    /// the RTSP ports of launches the shared RTSP port cannot tell apart. `None`: four ports of
    /// `port_range` per session.
    pub shared_ports: Option<SharedPorts>,
    /// In shared-ports mode, give a launch that the shared RTSP port could not tell from another
    /// launch of the same address an RTSP port of its own from `port_range` (the default). Off
    /// where the relay does not write `sessionUrl0` itself (the Kubernetes proxy): such a
    /// launch's `0.0.0.0` requests are then refused as ambiguous.
    pub shared_rtsp_fallback: bool,
    /// Hand admitted IPv4 flows to the kernel ([`fast_path`]); `None`: the relay carries
    /// every datagram.
    pub fast_path: Option<FastPath>,
}

impl RelayConfig {
    /// Defaults (60 s idle timeout, 4 mappings per stream, 1 MiB socket buffers: about one
    /// frame burst at 150 Mbit/s without letting an overloaded relay queue for long) for an address
    /// and port range.
    pub fn new(public_ip: IpAddr, port_range: RangeInclusive<u16>) -> Self {
        RelayConfig {
            public_ip,
            port_range,
            udp_idle_timeout: Duration::from_secs(60),
            max_mappings_per_stream: 4,
            socket_buffer_bytes: 1024 * 1024,
            rtsp: RtspLimits::default(),
            admit_any_source: false,
            shared_ports: None,
            shared_rtsp_fallback: true,
            fast_path: None,
        }
    }

    /// How the relay's UDP sockets are set up: the buffers, and the fast path's mark.
    pub(crate) fn socket_options(&self) -> socket::SocketOptions {
        socket::SocketOptions {
            buffer: self.socket_buffer_bytes,
            mark: self.fast_path.as_ref().map(|_| fast_path::MARK),
        }
    }
}

/// Wolf's UDP ports, used until a SETUP answer names others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WolfPorts {
    /// Video (`WOLF_VIDEO_PING_PORT`).
    pub video: u16,
    /// Audio (`WOLF_AUDIO_PING_PORT`).
    pub audio: u16,
    /// Control (`WOLF_CONTROL_PORT`).
    pub control: u16,
}

impl Default for WolfPorts {
    /// Wolf's defaults ([`StreamPorts::WOLF_DEFAULT`]).
    fn default() -> Self {
        let StreamPorts {
            video,
            audio,
            control,
            ..
        } = StreamPorts::WOLF_DEFAULT;
        WolfPorts {
            video,
            audio,
            control,
        }
    }
}

/// What the relay must know about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRelayConfig {
    /// The client's IP (the `/launch` caller); new UDP endpoints from it are admitted.
    pub client_ip: IpAddr,
    /// Wolf's RTSP address.
    pub wolf_rtsp: SocketAddr,
    /// The host of Wolf's UDP ports.
    pub wolf_udp_host: IpAddr,
    /// Wolf's UDP ports until SETUP answers name them.
    pub wolf_ports: WolfPorts,
    /// The `rtsp_fake_ip` the control plane gave Wolf for this session.
    pub fake_rtsp_ip: Ipv4Addr,
}

impl SessionRelayConfig {
    /// A session on a Wolf with default UDP ports on the same host as its RTSP port.
    pub fn new(client_ip: IpAddr, wolf_rtsp: SocketAddr, fake_rtsp_ip: Ipv4Addr) -> Self {
        SessionRelayConfig {
            client_ip,
            wolf_rtsp,
            wolf_udp_host: wolf_rtsp.ip(),
            wolf_ports: WolfPorts::default(),
            fake_rtsp_ip,
        }
    }
}

/// Client datagrams queued for one stream task of a session on the shared ports.
const ROUTED_QUEUE: usize = 256;

/// State shared by one session's tasks.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) config: Arc<RelayConfig>,
    pub(crate) client_ip: IpAddr,
    pub(crate) wolf_rtsp: SocketAddr,
    pub(crate) wolf_udp_host: IpAddr,
    pub(crate) fake_rtsp_ip: Ipv4Addr,
    pub(crate) public: StreamPorts,
    /// The UDP streams run on the shared ports ([`shared`]).
    pub(crate) shared_udp: bool,
    /// The session's RTSP runs on the shared RTSP port (not a port of its own).
    pub(crate) shared_rtsp: bool,
    /// A `PLAY` was relayed: the RTSP handshake is complete.
    pub(crate) rtsp_played: AtomicBool,
    wolf_video: AtomicU16,
    wolf_audio: AtomicU16,
    wolf_control: AtomicU16,
    secrets: Mutex<SessionSecrets>,
    pub(crate) counters: stats::SessionCounters,
}

impl SessionShared {
    fn new(config: Arc<RelayConfig>, session: &SessionRelayConfig, public: StreamPorts) -> Self {
        SessionShared {
            config,
            client_ip: session.client_ip,
            wolf_rtsp: session.wolf_rtsp,
            wolf_udp_host: session.wolf_udp_host,
            fake_rtsp_ip: session.fake_rtsp_ip,
            public,
            shared_udp: false,
            shared_rtsp: false,
            rtsp_played: AtomicBool::new(false),
            wolf_video: AtomicU16::new(session.wolf_ports.video),
            wolf_audio: AtomicU16::new(session.wolf_ports.audio),
            wolf_control: AtomicU16::new(session.wolf_ports.control),
            secrets: Mutex::new(SessionSecrets::default()),
            counters: stats::SessionCounters::default(),
        }
    }

    pub(crate) fn public_port(&self, kind: StreamKind) -> u16 {
        match kind {
            StreamKind::Video => self.public.video,
            StreamKind::Audio => self.public.audio,
            StreamKind::Control => self.public.control,
        }
    }

    fn wolf_port(&self, kind: StreamKind) -> &AtomicU16 {
        match kind {
            StreamKind::Video => &self.wolf_video,
            StreamKind::Audio => &self.wolf_audio,
            StreamKind::Control => &self.wolf_control,
        }
    }

    pub(crate) fn wolf_udp_addr(&self, kind: StreamKind) -> SocketAddr {
        SocketAddr::new(self.wolf_udp_host, self.wolf_port(kind).load(Ordering::Relaxed))
    }

    pub(crate) fn secrets(&self) -> SessionSecrets {
        *self.secrets.lock()
    }

    /// Record what a relayed RTSP answer revealed.
    pub(crate) fn learn(&self, setup: Option<StreamKind>, answer: &rtsp::RewrittenResponse) {
        if let (Some(kind), Some(port)) = (setup, answer.wolf_port)
            && port != 0
        {
            self.wolf_port(kind).store(port, Ordering::Relaxed);
        }
        if answer.ping_payload.is_some() || answer.connect_data.is_some() {
            let mut secrets = self.secrets.lock();
            if let Some(p) = answer.ping_payload {
                secrets.ping_payload = Some(p);
            }
            if let Some(d) = answer.connect_data {
                secrets.connect_data = Some(d);
            }
        }
    }
}

#[derive(Debug)]
struct Registered {
    shared: Arc<SessionShared>,
    aborts: Vec<AbortHandle>,
}

#[derive(Debug)]
struct RelayInner {
    config: Arc<RelayConfig>,
    allocator: PortAllocator,
    sessions: Mutex<HashMap<u64, Registered>>,
    /// The counters of the sessions closed so far.
    retired: Mutex<RelayTotals>,
    next_id: AtomicU64,
    shut_down: AtomicBool,
    /// The shared ports, in shared-ports mode.
    front: Option<shared::Front>,
}

/// The relay engine: a port allocator and the tasks of every open session.
#[derive(Debug, Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

/// How many port sets [`Relay::open_session`] tries when ports are taken by other programs.
const BIND_ATTEMPTS: usize = 8;

struct Bound {
    rtsp: TcpListener,
    video: socket::RelaySocket,
    audio: socket::RelaySocket,
    control: socket::RelaySocket,
}

impl Bound {
    fn ports(&self) -> io::Result<StreamPorts> {
        Ok(StreamPorts {
            rtsp: self.rtsp.local_addr()?.port(),
            video: self.video.local_addr()?.port(),
            audio: self.audio.local_addr()?.port(),
            control: self.control.local_addr()?.port(),
        })
    }
}

fn bind_all(ip: IpAddr, ports: StreamPorts, options: socket::SocketOptions) -> Result<Bound> {
    let at = |port| SocketAddr::new(ip, port);
    let bind_err = |what, address, source| RelayError::Bind {
        what,
        address,
        source,
    };
    let rtsp = {
        let address = at(ports.rtsp);
        if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(address)?;
            s.listen(128)
        })
        .map_err(|e| bind_err("rtsp", address, e))?
    };
    let udp = |what, port| source::bind_public(at(port), options).map_err(|e| bind_err(what, at(port), e));
    Ok(Bound {
        rtsp,
        video: udp("video", ports.video)?,
        audio: udp("audio", ports.audio)?,
        control: udp("control", ports.control)?,
    })
}

impl Relay {
    /// A relay with no sessions. In shared-ports mode it binds the shared ports at once, and must
    /// be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`RelayError::Ports`] if the port range cannot hold a session; [`RelayError::Bind`] if a
    /// shared port cannot be bound, [`RelayError::Invalid`] for a shared port of 0 or no runtime.
    pub fn new(config: RelayConfig) -> Result<Self> {
        let allocator = PortAllocator::new(config.port_range.clone())?;
        let front = match config.shared_ports {
            Some(ports) => Some(shared::Front::start(&config, ports)?),
            None => None,
        };
        Ok(Relay {
            inner: Arc::new(RelayInner {
                config: Arc::new(config),
                allocator,
                sessions: Mutex::new(HashMap::new()),
                retired: Mutex::new(RelayTotals::default()),
                next_id: AtomicU64::new(1),
                shut_down: AtomicBool::new(false),
                front,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// The port allocator (for capacity figures).
    pub fn allocator(&self) -> &PortAllocator {
        &self.inner.allocator
    }

    /// Lease a port set, listen on it and start relaying to the session's Wolf. Port sets that
    /// another program holds are skipped (up to 8 attempts).
    ///
    /// # Errors
    /// [`RelayError::Ports`] when the range is exhausted, [`RelayError::Bind`] when no set could
    /// be bound, [`RelayError::Invalid`] for a config with port 0, [`RelayError::ShutDown`].
    pub async fn open_session(&self, session: SessionRelayConfig) -> Result<SessionRelay> {
        self.check_running()?;
        validate(&session)?;
        if let Some(front) = &self.inner.front {
            return front.join(self, session);
        }
        let mut skipped = Vec::new();
        let mut last_error = None;
        for _ in 0..BIND_ATTEMPTS {
            let lease = self.inner.allocator.allocate()?;
            match bind_all(
                self.inner.config.public_ip,
                lease.ports(),
                self.inner.config.socket_options(),
            ) {
                Ok(bound) => return self.start(session, bound, Some(lease)),
                Err(RelayError::Bind {
                    what,
                    address,
                    source,
                }) if source.kind() == io::ErrorKind::AddrInUse => {
                    tracing::warn!(%address, what, "public port taken by another program, trying the next set");
                    last_error = Some(RelayError::Bind {
                        what,
                        address,
                        source,
                    });
                    // Keep the lease until the loop ends so the same set is not handed out again.
                    skipped.push(lease);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| RelayError::Invalid("no port set could be bound".into())))
    }

    /// Relay a session on explicit public ports, outside the allocator (for `direwolf relay`).
    /// A port of 0 lets the system choose; [`SessionRelay::ports`] reports the real ones.
    ///
    /// # Errors
    /// As [`Relay::open_session`], without exhaustion.
    pub async fn open_session_on(
        &self,
        ports: StreamPorts,
        session: SessionRelayConfig,
    ) -> Result<SessionRelay> {
        self.check_running()?;
        validate(&session)?;
        let bound = bind_all(
            self.inner.config.public_ip,
            ports,
            self.inner.config.socket_options(),
        )?;
        self.start(session, bound, None)
    }

    fn start(
        &self,
        session: SessionRelayConfig,
        bound: Bound,
        lease: Option<PortLease>,
    ) -> Result<SessionRelay> {
        self.check_running()?;
        let public = bound
            .ports()
            .map_err(|e| RelayError::Invalid(format!("bound socket has no address: {e}")))?;
        let shared = Arc::new(SessionShared::new(self.inner.config.clone(), &session, public));
        let tasks = vec![
            tokio::spawn(rtsp::serve(bound.rtsp, shared.clone())),
            tokio::spawn(udp::serve(
                StreamKind::Video,
                Public::Own(bound.video),
                Clients::Socket,
                shared.clone(),
            )),
            tokio::spawn(udp::serve(
                StreamKind::Audio,
                Public::Own(bound.audio),
                Clients::Socket,
                shared.clone(),
            )),
            tokio::spawn(udp::serve(
                StreamKind::Control,
                Public::Own(bound.control),
                Clients::Socket,
                shared.clone(),
            )),
        ];
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(self.register(id, &session, shared, tasks, lease, None))
    }

    fn register(
        &self,
        id: u64,
        session: &SessionRelayConfig,
        shared: Arc<SessionShared>,
        tasks: Vec<JoinHandle<()>>,
        lease: Option<PortLease>,
        rtsp_lease: Option<shared::fallback::RtspLease>,
    ) -> SessionRelay {
        let public = shared.public;
        self.inner.sessions.lock().insert(
            id,
            Registered {
                shared: shared.clone(),
                aborts: tasks.iter().map(JoinHandle::abort_handle).collect(),
            },
        );
        tracing::info!(
            client = %session.client_ip, wolf = %session.wolf_rtsp, rtsp = public.rtsp, video = public.video,
            audio = public.audio, control = public.control, shared = shared.shared_udp, "relay session opened"
        );
        SessionRelay {
            id,
            ports: public,
            shared,
            tasks,
            lease,
            rtsp_lease,
            relay: Arc::downgrade(&self.inner),
        }
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.shut_down.load(Ordering::SeqCst) {
            return Err(RelayError::ShutDown);
        }
        Ok(())
    }

    /// Counters of every open session.
    pub fn stats(&self) -> Vec<SessionStats> {
        self.inner
            .sessions
            .lock()
            .values()
            .map(|r| r.shared.counters.snapshot(r.shared.public))
            .collect()
    }

    /// Counters summed over every session this relay carried, closed ones included: they only
    /// grow (but for the active-mapping gauges), as monitoring counters must.
    pub fn totals(&self) -> RelayTotals {
        // The same lock order as a closing session's: sessions, then retired.
        let sessions = self.inner.sessions.lock();
        let mut totals = *self.inner.retired.lock();
        if let Some(front) = &self.inner.front {
            totals.add(&front.directory.counters.snapshot(front.ports));
        }
        for registered in sessions.values() {
            totals.add(&registered.shared.counters.snapshot(registered.shared.public));
        }
        totals
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().len()
    }

    /// Stop every session's tasks and refuse new sessions. Port sets return to the allocator when
    /// their [`SessionRelay`] handles are dropped.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::SeqCst);
        if let Some(front) = &self.inner.front {
            front.stop();
        }
        for registered in self.inner.sessions.lock().values() {
            for abort in &registered.aborts {
                abort.abort();
            }
        }
        tracing::info!("relay shut down");
    }
}

fn validate(session: &SessionRelayConfig) -> Result<()> {
    let w = session.wolf_ports;
    if session.wolf_rtsp.port() == 0 || w.video == 0 || w.audio == 0 || w.control == 0 {
        return Err(RelayError::Invalid("Wolf ports must not be 0".into()));
    }
    if session.fake_rtsp_ip.is_unspecified() {
        return Err(RelayError::Invalid(
            "the fake RTSP IP must not be 0.0.0.0 (Wolf would fall back to matching by source IP)".into(),
        ));
    }
    Ok(())
}

/// One relayed session. Dropping it stops its tasks and frees its ports; [`SessionRelay::close`]
/// also waits until the sockets are closed.
#[derive(Debug)]
pub struct SessionRelay {
    id: u64,
    ports: StreamPorts,
    shared: Arc<SessionShared>,
    tasks: Vec<JoinHandle<()>>,
    lease: Option<PortLease>,
    /// The RTSP port of its own of a session on the shared ports.
    rtsp_lease: Option<shared::fallback::RtspLease>,
    relay: std::sync::Weak<RelayInner>,
}

impl SessionRelay {
    /// The public ports: RTSP goes into `sessionUrl0`.
    pub fn ports(&self) -> StreamPorts {
        self.ports
    }

    /// Whether the session is on the shared ports: `sessionUrl0` then names its fake RTSP IP as
    /// host, for the client to echo ([`shared`]).
    pub fn on_shared_ports(&self) -> bool {
        self.shared.shared_udp
    }

    /// The session's counters now.
    pub fn stats(&self) -> SessionStats {
        self.shared.counters.snapshot(self.ports)
    }

    /// The secrets learned from Wolf's SETUP answers so far.
    pub fn secrets(&self) -> SessionSecrets {
        self.shared.secrets()
    }

    /// Wolf's UDP address for a stream (the default, or the one the SETUP answer named).
    pub fn wolf_udp_addr(&self, kind: StreamKind) -> SocketAddr {
        self.shared.wolf_udp_addr(kind)
    }

    /// Stop relaying, wait until every public socket is closed, and free the ports.
    pub async fn close(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in std::mem::take(&mut self.tasks) {
            // The task was aborted: its error is the expected cancellation.
            let _ = task.await;
        }
        // Drop runs next: deregisters and releases the lease.
    }
}

impl Drop for SessionRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(relay) = self.relay.upgrade() {
            // Retired under the sessions lock, so a concurrent `totals` counts it exactly once.
            if let Some(front) = &relay.front {
                // Its stream tasks' inboxes close, and the dispatchers forget its routes.
                front.directory.remove(self.id);
            }
            let mut sessions = relay.sessions.lock();
            if sessions.remove(&self.id).is_some() {
                relay.retired.lock().retire(self.stats());
            }
        }
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
        drop(self.rtsp_lease.take());
        tracing::info!(rtsp = self.ports.rtsp, "relay session closed");
    }
}
