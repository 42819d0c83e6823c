//! The server: builder, listeners, connection handling.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::accounts::PairingLinks;
use direwolf_core::metrics::PairingMetrics;
use direwolf_core::{Fingerprint, InMemoryPinBroker, Launcher, NoStreamingHost, PinBroker, Stores, UserName};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Port, Ticket};
use crate::error::{Result, ServerError};
use crate::identity::{LoadedIdentity, generate_identity};
use crate::mdns::MdnsAdvertiser;
use crate::oidc::OidcLogin;
use crate::pairing::{PairingLimits, PairingManager, Phase1};
use crate::pin_page::{LocalAccounts, PinEntry, PinLimits};
use crate::serverinfo::{DEFAULT_CODEC_MODE_SUPPORT, DisplayMode, WOLF_DISPLAY_MODES};
use crate::service::{ConnInfo, Settings, Shared};
use crate::tls;
use crate::trusted_proxy::TrustedProxies;

pub use crate::limits::ConnectionLimits;

/// Default GameStream HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 47989;
/// Default GameStream HTTPS port.
pub const DEFAULT_HTTPS_PORT: u16 = 47984;

/// Builds a [`MoonlightServer`].
#[derive(Debug)]
pub struct MoonlightServerBuilder {
    stores: Stores,
    launcher: Arc<dyn Launcher>,
    broker: Arc<dyn PinBroker>,
    bind_addrs: Option<Vec<IpAddr>>,
    http_port: u16,
    https_port: u16,
    hostname: String,
    default_user: UserName,
    mdns: bool,
    pin_timeout: Duration,
    external_address: Option<IpAddr>,
    codec_mode_support: u32,
    display_modes: Vec<DisplayMode>,
    mac: String,
    connection_limits: ConnectionLimits,
    pairing_limits: PairingLimits,
    pin_limits: PinLimits,
    trusted_proxies: TrustedProxies,
    local_accounts: Option<PairingLinks>,
    oidc: Option<Arc<OidcLogin>>,
    pairing_metrics: PairingMetrics,
}

impl Default for MoonlightServerBuilder {
    fn default() -> Self {
        MoonlightServerBuilder {
            stores: Stores::in_memory(),
            launcher: Arc::new(NoStreamingHost),
            broker: Arc::new(InMemoryPinBroker::default()),
            bind_addrs: None,
            http_port: DEFAULT_HTTP_PORT,
            https_port: DEFAULT_HTTPS_PORT,
            hostname: "Direwolf".to_owned(),
            default_user: UserName::default_user(),
            mdns: true,
            pin_timeout: Duration::from_secs(300),
            external_address: None,
            codec_mode_support: DEFAULT_CODEC_MODE_SUPPORT,
            display_modes: WOLF_DISPLAY_MODES.to_vec(),
            mac: "00:00:00:00:00:00".to_owned(),
            connection_limits: ConnectionLimits::default(),
            pairing_limits: PairingLimits::default(),
            pin_limits: PinLimits::default(),
            trusted_proxies: TrustedProxies::default(),
            local_accounts: None,
            oidc: None,
            pairing_metrics: PairingMetrics::default(),
        }
    }
}

impl MoonlightServerBuilder {
    /// The stores (default: [`Stores::in_memory`]).
    pub fn with_stores(mut self, stores: Stores) -> Self {
        self.stores = stores;
        self
    }

    /// The launcher (default: [`NoStreamingHost`]).
    pub fn with_launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = launcher;
        self
    }

    /// The authenticating reverse proxies whose `X-Forwarded-User` names who enters a PIN
    /// (default: none, and PIN entry open to whoever has the link; [`crate::trusted_proxy`]).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Local accounts on the PIN page (default: none): once a user of the stores has a password,
    /// a PIN needs that user's password or a pairing link from `links`
    /// ([`crate::pin_page::PinEntry::with_local_accounts`]).
    pub fn with_local_accounts(mut self, links: PairingLinks) -> Self {
        self.local_accounts = Some(links);
        self
    }

    /// Single sign-on on the PIN page through an OpenID Connect provider (default: none;
    /// [`crate::oidc`]).
    pub fn with_oidc(mut self, oidc: Arc<OidcLogin>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// The PIN broker (default: an [`InMemoryPinBroker`]).
    pub fn with_pin_broker(mut self, broker: Arc<dyn PinBroker>) -> Self {
        self.broker = broker;
        self
    }

    /// Addresses to listen on (default `0.0.0.0` and `::`; `::` is skipped with a warning on a
    /// host without IPv6). Explicit addresses must all be bindable.
    pub fn with_bind_addrs(mut self, addrs: Vec<IpAddr>) -> Self {
        self.bind_addrs = Some(addrs);
        self
    }

    /// The HTTP port (default 47989; 0 picks a free one).
    pub fn with_http_port(mut self, port: u16) -> Self {
        self.http_port = port;
        self
    }

    /// The HTTPS port (default 47984; 0 picks a free one).
    pub fn with_https_port(mut self, port: u16) -> Self {
        self.https_port = port;
        self
    }

    /// `hostname` in `/serverinfo` and the mDNS instance name (default `Direwolf`).
    pub fn with_hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// The user a pairing belongs to when the PIN submission names none (default `default`).
    pub fn with_default_user(mut self, user: UserName) -> Self {
        self.default_user = user;
        self
    }

    /// Whether to advertise `_nvstream._tcp` over mDNS (default true).
    pub fn with_mdns(mut self, enabled: bool) -> Self {
        self.mdns = enabled;
        self
    }

    /// How long a pairing waits for its PIN (default 5 minutes).
    pub fn with_pin_timeout(mut self, timeout: Duration) -> Self {
        self.pin_timeout = timeout;
        self
    }

    /// The address clients reach the server on (`LocalIP` if IPv4, and the PIN URL host);
    /// default: the local address of each connection.
    pub fn with_external_address(mut self, ip: IpAddr) -> Self {
        self.external_address = Some(ip);
        self
    }

    /// `ServerCodecModeSupport` (default 257 = H.264 | HEVC). 0 is replaced by 1 (H.264): clients
    /// refuse to stream with 0.
    pub fn with_codec_mode_support(mut self, mask: u32) -> Self {
        self.codec_mode_support = mask.max(1);
        self
    }

    /// `SupportedDisplayMode` (default: Wolf's 15 modes).
    pub fn with_display_modes(mut self, modes: Vec<DisplayMode>) -> Self {
        self.display_modes = modes;
        self
    }

    /// `mac` (default all zeros).
    pub fn with_mac(mut self, mac: impl Into<String>) -> Self {
        self.mac = mac.into();
        self
    }

    /// Connection limits and timeouts.
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connection_limits = limits;
        self
    }

    /// Pairing limits.
    pub fn with_pairing_limits(mut self, limits: PairingLimits) -> Self {
        self.pairing_limits = limits;
        self
    }

    /// PIN page limits.
    pub fn with_pin_limits(mut self, limits: PinLimits) -> Self {
        self.pin_limits = limits;
        self
    }

    /// Where pairing attempts are counted by outcome (default: counted, exported nowhere).
    pub fn with_pairing_metrics(mut self, metrics: PairingMetrics) -> Self {
        self.pairing_metrics = metrics;
        self
    }

    /// Loads the identity from `stores.identity` (creating and storing one if there is none),
    /// builds the TLS configuration and binds the sockets.
    ///
    /// # Errors
    /// Identity store failures, an unusable stored identity, and sockets that cannot be bound.
    pub async fn build(self) -> Result<MoonlightServer> {
        let identity = load_identity(&self.stores).await?;
        let tls = TlsAcceptor::from(tls::server_config(&identity)?);
        let explicit = self.bind_addrs.is_some();
        let addrs = self.bind_addrs.clone().unwrap_or_else(|| {
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ]
        });
        let http = bind_all(&addrs, self.http_port, explicit)?;
        let https = bind_all(&addrs, self.https_port, explicit)?;
        let port = |listeners: &[TcpListener]| {
            listeners
                .first()
                .and_then(|l| l.local_addr().ok())
                .map_or(0, |a| a.port())
        };
        let (http_port, https_port) = (port(&http), port(&https));
        let identity = Arc::new(identity);
        let pairing = Arc::new(PairingManager::new(identity.clone(), self.pairing_limits));
        let phase1 = Phase1::new(
            pairing.clone(),
            self.broker.clone(),
            self.pin_timeout,
            self.default_user,
            http_port,
        );
        let mut pin = PinEntry::new(self.broker, self.pin_limits).with_trusted_proxies(self.trusted_proxies);
        if let Some(links) = self.local_accounts {
            pin = pin.with_local_accounts(LocalAccounts {
                users: self.stores.users.clone(),
                links,
            });
        }
        if let Some(oidc) = self.oidc {
            pin = pin.with_oidc(oidc);
        }
        let shared = Arc::new(Shared {
            stores: self.stores,
            launcher: self.launcher,
            identity,
            pairing,
            pairing_metrics: self.pairing_metrics,
            phase1,
            pin,
            settings: Settings {
                hostname: self.hostname,
                external_address: self.external_address,
                codec_mode_support: self.codec_mode_support,
                display_modes: self.display_modes,
                mac: self.mac,
                http_port,
                https_port,
                body_timeout: self.connection_limits.body_timeout,
            },
        });
        Ok(MoonlightServer {
            shared,
            http,
            https,
            tls,
            mdns: self.mdns,
            limits: self.connection_limits,
        })
    }
}

async fn load_identity(stores: &Stores) -> Result<LoadedIdentity> {
    let identity = match stores.identity.load().await.map_err(ServerError::IdentityStore)? {
        Some(identity) => identity,
        None => {
            let generated = tokio::task::spawn_blocking(generate_identity)
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??;
            let stored = stores
                .identity
                .create_if_absent(generated)
                .await
                .map_err(ServerError::IdentityStore)?;
            info!(server.uniqueid = %stored.unique_id, "created the server identity");
            stored
        }
    };
    Ok(LoadedIdentity::new(identity)?)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // Let 0.0.0.0 and :: share a port.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Binds `port` on every address; with port 0, the first address picks the port and the others
/// use the same one.
fn bind_all(addrs: &[IpAddr], port: u16, explicit: bool) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut port = port;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match bind_one(addr) {
            Ok(listener) => {
                if port == 0 {
                    port = listener
                        .local_addr()
                        .map_err(|source| ServerError::Bind { addr, source })?
                        .port();
                }
                listeners.push(listener);
            }
            Err(source) if !explicit && ip.is_ipv6() => {
                warn!(%addr, error = %source, "not listening on IPv6");
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
    if listeners.is_empty() {
        return Err(ServerError::NoBindAddress);
    }
    Ok(listeners)
}

/// An embeddable Moonlight (GameStream) server; see the crate documentation.
pub struct MoonlightServer {
    shared: Arc<Shared>,
    http: Vec<TcpListener>,
    https: Vec<TcpListener>,
    tls: TlsAcceptor,
    mdns: bool,
    limits: ConnectionLimits,
}

impl std::fmt::Debug for MoonlightServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoonlightServer")
            .field("http", &self.http_addrs())
            .field("https", &self.https_addrs())
            .field("fingerprint", &self.server_fingerprint())
            .finish_non_exhaustive()
    }
}

impl MoonlightServer {
    /// A builder with the defaults.
    pub fn builder() -> MoonlightServerBuilder {
        MoonlightServerBuilder::default()
    }

    /// The bound HTTP addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The bound HTTPS addresses.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Tells the PIN page where the web UI is (HTTPS `port` on the host the page was opened at):
    /// the page then points people about to type a password there, where it is encrypted.
    pub fn set_web_ui_port(&self, port: u16) {
        self.shared.pin.set_web_ui_port(port);
    }

    /// The fingerprint of the server certificate (what clients pin).
    pub fn server_fingerprint(&self) -> Fingerprint {
        self.shared.identity.fingerprint()
    }

    /// The server `uniqueid`.
    pub fn unique_id(&self) -> &str {
        &self.shared.identity.identity().unique_id
    }

    /// Serves until `shutdown` completes, then stops accepting, gives open requests
    /// [`ConnectionLimits::shutdown_grace`] to finish, and returns.
    ///
    /// # Errors
    /// [`ServerError::Task`] if a listener task panicked.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let mdns = if self.mdns {
            match MdnsAdvertiser::start(&self.shared.settings.hostname, self.shared.settings.http_port) {
                Ok(advertiser) => {
                    info!(
                        port = self.shared.settings.http_port,
                        "advertising _nvstream._tcp over mDNS"
                    );
                    Some(advertiser)
                }
                Err(e) => {
                    warn!(error = %e, "mDNS advertisement failed; clients must add this host by address");
                    None
                }
            }
        } else {
            None
        };
        let (stop_tx, stop) = watch::channel(false);
        let serving = Serving {
            shared: self.shared.clone(),
            stop,
            limits: self.limits,
            admission: Admission::new(self.limits),
        };
        let mut loops = JoinSet::new();
        for listener in self.http {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "GameStream HTTP listening");
            }
            loops.spawn(accept_loop(listener, None, serving.clone()));
        }
        for listener in self.https {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "GameStream HTTPS listening");
            }
            let tls = Some(self.tls.clone());
            loops.spawn(accept_loop(listener, tls, serving.clone()));
        }
        shutdown.await;
        info!("GameStream server shutting down");
        let _ = stop_tx.send(true);
        let mut result = Ok(());
        while let Some(joined) = loops.join_next().await {
            if let Err(e) = joined {
                result = Err(ServerError::Task(e.to_string()));
            }
        }
        if let Some(mdns) = mdns {
            mdns.stop();
        }
        result
    }
}

/// Completes once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What every connection of the server is served with.
#[derive(Clone)]
struct Serving {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    limits: ConnectionLimits,
    admission: Arc<Admission>,
}

/// Serves one listener until the server stops: accepts the connections [`Admission`] admits,
/// serves each on a task of its own, then gives them the shutdown grace to finish.
async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, serving: Serving) {
    let port = if tls.is_some() { Port::Https } else { Port::Http };
    // Connections to a listener bound to one address arrive on that address: no need to ask the
    // kernel for each one's local address.
    let bound = listener.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    let mut stop = serving.stop.clone();
    let mut connections = JoinSet::new();
    while let Some((stream, peer, ticket)) =
        next_connection(&listener, port, &serving.admission, &mut stop).await
    {
        while connections.try_join_next().is_some() {}
        let local = match bound {
            Some(local) => local,
            None => match stream.local_addr() {
                Ok(local) => local,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let (tls, serving) = (tls.clone(), serving.clone());
        connections.spawn(async move {
            let _ticket = ticket;
            connection(stream, peer, local, tls, serving).await;
        });
    }
    drop(listener);
    drain(connections, serving.limits.shutdown_grace).await;
}

/// Waits for a free connection slot and the next admitted connection; `None` once the server
/// stops. A connection that is not admitted is closed at once.
async fn next_connection(
    listener: &TcpListener,
    port: Port,
    admission: &Arc<Admission>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, Ticket)> {
    loop {
        tokio::select! {
            _ = stopped(stop) => return None,
            () = admission.any_slot_free() => {}
        }
        tokio::select! {
            _ = stopped(stop) => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match admission.admit(port, peer.ip()) {
                    Ok(ticket) => return Some((stream, peer, ticket)),
                    Err(refusal) => debug!(client = %peer, ?refusal, "connection not admitted"),
                },
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    crate::warn_throttled!("accept", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one connection: the TLS handshake on the HTTPS port, then HTTP.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    serving: Serving,
) {
    let Some(acceptor) = tls else {
        let conn = Arc::new(ConnInfo {
            peer,
            local,
            tls: None,
        });
        return serve(stream, conn, serving).await;
    };
    let handshake = tokio::time::timeout(serving.limits.tls_handshake_timeout, acceptor.accept(stream));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(client = %peer, "TLS handshake timed out");
            return;
        }
    };
    // Requests are authorised by the client's leaf certificate alone
    // (`docs/protocol/moonlight-http.md` § Client identity).
    let fingerprint = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Fingerprint::of_der(c));
    if let Some(fingerprint) = &fingerprint
        && matches!(serving.shared.stores.pairings.get(fingerprint).await, Ok(Some(_)))
    {
        serving.admission.mark_known(peer.ip());
    }
    let conn = Arc::new(ConnInfo {
        peer,
        local,
        tls: Some(fingerprint),
    });
    serve(stream, conn, serving).await;
}

/// Lets open connections finish within `grace`, then drops them (their drop guards clean up).
async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// HTTP/1.1 on one connection, until the client is done or the server stops.
async fn serve<S>(stream: S, conn: Arc<ConnInfo>, serving: Serving)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        shared,
        mut stop,
        limits,
        ..
    } = serving;
    let service = service_fn(move |request| shared.clone().handle(request, conn.clone()));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
