//! A fake Wolf for tests (cargo feature `fake`): serves Wolf's HTTP API over a unix socket or TCP
//! and answers exactly as `docs/protocol/wolf-api.md` § The fake Wolf says Wolf does: a
//! hand-written HTTP/1.0 server, one request per connection, `HTTP/1.0 <code> OK`, only
//! `Content-Length`, 404 with an empty body, chunked requests refused with the 52-byte text,
//! compact JSON in Wolf's field order, floats as widened `f32`, reflect-cpp-like required-field
//! errors, SSE with keepalives, and the crash behaviour of Wolf (ids `stoull` cannot parse →
//! connection closed without a response, recorded in [`FakeWolf::crashes`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use direwolf_wolf_client::fake::{Failure, FakeWolf};
//! use direwolf_wolf_client::WolfVersion;
//!
//! let dir = tempfile::tempdir()?;
//! let wolf = FakeWolf::builder().version(WolfVersion::V6).unix(dir.path().join("wolf.sock")).start().await?;
//! let client = wolf.client()?;
//! assert!(client.sessions().await?.is_empty());
//! wolf.set_failure(Failure::Slow(std::time::Duration::from_secs(5)));
//! wolf.restart().await?;
//! assert!(!wolf.would_have_crashed());
//! # Ok(()) }
//! ```
//!
//! With [`FakeWolfBuilder::stream`] it also runs Wolf's streaming side (RTSP, the UDP ping/RTP
//! sockets and the ENet control port, module [`stream`]).

mod handlers;
mod http;
mod schema;
pub mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use self::handlers::PullPlan;
use self::handlers::{Reply, State};
pub use self::http::CHUNKED_REJECTION;
use self::http::{ReadOutcome, read_request, write_all_and_close, write_response};
use crate::client::{WolfClient, WolfClientBuilder};
use crate::events::names;
use crate::ids::{AppId, ClientId, SessionId};
use crate::types::{App, Lobby, PairRequest, PairedClient, Profile, PullProgress, Runner, StreamSession};
use crate::version::WolfVersion;

/// The SSE response head Wolf writes (`docs/protocol/wolf-api.md` § Events).
pub const SSE_HEAD: &str = "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\n\r\n";

/// A failure the fake injects into its answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Close the connection without answering (as if Wolf crashed on the request).
    CloseWithoutResponse,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Announce a `Content-Length` larger than the body and close early.
    Truncated,
    /// Answer 200 with a well-formed JSON body of about this many bytes.
    Oversized(usize),
    /// Answer 200 with valid JSON of an unexpected shape.
    WrongShape,
    /// Answer normally (the request takes effect and its events fire), then stop serving as
    /// [`FakeWolf::stop`] does: the listener closes and every open connection, SSE streams
    /// included, is dropped; the socket file stays, so clients then get "connection refused".
    /// This is Wolf crashing right after it answered (e.g. a `sessions/add` whose session
    /// exists, then a dead API). The state is kept, so [`FakeWolf::restart`] brings back a Wolf
    /// that still holds its sessions, like one that was only hung; the failure stays set (and
    /// stops the fake again on the next such request) until cleared. On the SSE stream it takes
    /// effect when the stream ends.
    CrashAfterAnswer,
}

/// Where the fake listens.
#[derive(Debug, Clone)]
enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Builder of a [`FakeWolf`]. Defaults: [`WolfVersion::V6`], keepalive every 15 s.
#[derive(Debug, Clone)]
pub struct FakeWolfBuilder {
    version: WolfVersion,
    listen: Option<Listen>,
    keepalive: Duration,
    tls: TlsOption,
    stream: Option<stream::StreamConfig>,
}

impl FakeWolfBuilder {
    /// The version profile to imitate (V3, V4, V5, V5b or V6; older ones behave like V3).
    pub fn version(mut self, version: WolfVersion) -> Self {
        self.version = version;
        self
    }

    /// Listen on a unix socket at `path` (an existing file there is removed first, like Wolf does).
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.listen = Some(Listen::Unix(path.into()));
        self
    }

    /// Listen on TCP at `addr` (use `127.0.0.1:0` in tests; [`FakeWolf::addr`] gives the port).
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(Listen::Tcp(addr));
        self
    }

    /// Serve HTTPS on the TCP listener with this rustls configuration (imitates a TLS-terminating
    /// proxy such as fenrir's wolf-agent; Wolf itself only speaks plain HTTP on its socket).
    /// Feature `tls`. [`FakeWolf::client_builder`] knows nothing of TLS: build the client with
    /// [`WolfClientBuilder::with_https`] and a configuration trusting the certificate.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = TlsOption(Some(tokio_rustls::TlsAcceptor::from(config)));
        self
    }

    /// Interval of the SSE `:keepalive` comments (Wolf: 15 s).
    pub fn keepalive_interval(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }

    /// Also run the streaming side (RTSP, video/audio pings and RTP, ENet control) as configured.
    pub fn stream(mut self, config: stream::StreamConfig) -> Self {
        self.stream = Some(config);
        self
    }

    /// Binds and starts serving.
    ///
    /// # Errors
    /// No listen address given, or binding fails.
    pub async fn start(self) -> std::io::Result<FakeWolf> {
        let listen = self.listen.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "FakeWolf needs .unix(path) or .tcp(addr)",
            )
        })?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            version: self.version,
            keepalive: self.keepalive,
            state: Mutex::new(State::new(self.version)),
            events,
            failures: Mutex::new(Failures::default()),
            crashes: Mutex::new(Vec::new()),
            subscribers: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
        });
        let tls = self.tls;
        let stream = match self.stream {
            Some(config) => Some(stream::StreamSide::start(shared.clone(), config).await?),
            None => None,
        };
        let (listen, server) = serve(shared.clone(), listen, tls.clone()).await?;
        Ok(FakeWolf {
            stream,
            tls,
            shared,
            listen,
            server: tokio::sync::Mutex::new(Some(server)),
        })
    }
}

#[derive(Debug, Default)]
struct Failures {
    all: Option<Failure>,
    by_path: HashMap<String, Failure>,
}

#[derive(Debug)]
struct Shared {
    version: WolfVersion,
    keepalive: Duration,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<str>>,
    failures: Mutex<Failures>,
    crashes: Mutex<Vec<String>>,
    subscribers: AtomicUsize,
    served: AtomicUsize,
}

impl Shared {
    fn emit(&self, name: &str, data: &str) {
        // Before V5, `size_t` ids in event payloads are numbers (StartRunner's is always a string).
        let data = if !self.version.ids_as_strings_in_events() && name != names::START_RUNNER {
            handlers::numeric_session_ids(data)
        } else {
            data.to_owned()
        };
        let frame: Arc<str> = format!("event: {name}\ndata: {data}\n\n").into();
        let _ = self.events.send(frame);
    }
}

struct Server {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running fake Wolf. Dropping it stops it.
#[derive(Debug)]
pub struct FakeWolf {
    shared: Arc<Shared>,
    listen: Listen,
    tls: TlsOption,
    server: tokio::sync::Mutex<Option<Server>>,
    stream: Option<stream::StreamSide>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server")
    }
}

impl FakeWolf {
    /// A builder (version V6, no address yet).
    pub fn builder() -> FakeWolfBuilder {
        FakeWolfBuilder {
            version: WolfVersion::V6,
            listen: None,
            keepalive: Duration::from_secs(15),
            tls: TlsOption::default(),
            stream: None,
        }
    }

    /// The version profile.
    pub fn version(&self) -> WolfVersion {
        self.shared.version
    }

    /// The unix socket path, when listening on one.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.listen {
            Listen::Unix(p) => Some(p),
            Listen::Tcp(_) => None,
        }
    }

    /// The bound TCP address, when listening on TCP.
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.listen {
            Listen::Tcp(a) => Some(*a),
            Listen::Unix(_) => None,
        }
    }

    /// A client builder pointed at this fake (5 s timeout).
    pub fn client_builder(&self) -> WolfClientBuilder {
        let b = WolfClient::builder().with_timeout(Duration::from_secs(5));
        match &self.listen {
            Listen::Unix(p) => b.with_unix_socket(p.clone()),
            Listen::Tcp(a) => b.with_tcp(a.to_string()),
        }
    }

    /// A client of this fake (5 s timeout, version detected).
    ///
    /// # Errors
    /// Never in practice (the configuration is valid).
    pub fn client(&self) -> crate::Result<WolfClient> {
        self.client_builder().build()
    }

    // ----- state -----

    /// Sessions as Wolf would list them.
    pub fn sessions(&self) -> Vec<StreamSession> {
        self.shared.state.lock().sessions.clone()
    }

    /// Apps of the Moonlight profile.
    pub fn apps(&self) -> Vec<App> {
        self.shared.state.lock().apps.clone()
    }

    /// Profiles (except the Moonlight one).
    pub fn profiles(&self) -> Vec<Profile> {
        self.shared.state.lock().profiles.clone()
    }

    /// Lobbies.
    pub fn lobbies(&self) -> Vec<Lobby> {
        self.shared
            .state
            .lock()
            .lobbies
            .iter()
            .map(|l| l.lobby.clone())
            .collect()
    }

    /// Paired clients.
    pub fn clients(&self) -> Vec<PairedClient> {
        self.shared
            .state
            .lock()
            .clients
            .iter()
            .map(|c| PairedClient {
                client_id: c.id,
                app_state_folder: c.app_state_folder.clone(),
                settings: Some(c.settings.clone()),
            })
            .collect()
    }

    /// Pending pair requests.
    pub fn pending_pairs(&self) -> Vec<PairRequest> {
        self.shared.state.lock().pending.clone()
    }

    /// Pairs a client with this certificate (as if Moonlight had completed pairing) and returns its id.
    pub fn add_paired_client(&self, cert_pem: &str) -> ClientId {
        self.shared.state.lock().add_client(cert_pem)
    }

    /// Simulates pairing phase 1 from a Moonlight client: adds a pending request (replacing one from
    /// the same IP) and fires `PairSignal`.
    pub fn add_pending_pair(&self, pair_secret: &str, client_ip: &str) {
        {
            let mut st = self.shared.state.lock();
            st.pending.retain(|p| p.client_ip != client_ip);
            st.pending.push(PairRequest {
                pair_secret: pair_secret.into(),
                client_ip: client_ip.to_owned(),
            });
        }
        #[derive(Serialize)]
        struct PairSignalOut<'a> {
            client_ip: &'a str,
            host_ip: &'a str,
        }
        self.shared.emit(
            names::PAIR_SIGNAL,
            &handlers::to_json(&PairSignalOut {
                client_ip,
                host_ip: "127.0.0.1",
            }),
        );
    }

    /// Adds an app to the Moonlight profile (as if configured in `config.toml`).
    pub fn add_app(&self, app: App) {
        self.shared.state.lock().apps.push(app);
    }

    /// A plain process app with the given id and title, for tests.
    pub fn sample_app(id: impl Into<AppId>, title: &str) -> App {
        App {
            title: title.to_owned(),
            id: id.into(),
            support_hdr: false,
            icon_png_path: None,
            h264_gst_pipeline: "h264".into(),
            hevc_gst_pipeline: "hevc".into(),
            av1_gst_pipeline: "av1".into(),
            render_node: "/dev/dri/renderD128".into(),
            opus_gst_pipeline: "opus".into(),
            start_virtual_compositor: true,
            start_audio_server: true,
            runner: Runner::Process {
                run_cmd: "sleep infinity".into(),
            },
        }
    }

    /// Makes `docker/images/inspect` find `name`.
    pub fn add_image(&self, name: &str, inspect: Value) {
        self.shared.state.lock().images.insert(name.to_owned(), inspect);
    }

    /// Makes `utils/get-icon` serve `png` for `path`.
    pub fn add_icon(&self, path: &str, png: Vec<u8>) {
        self.shared.state.lock().icons.insert(path.to_owned(), png);
    }

    /// Makes `docker/images/pull` of `name` go as planned (unknown images fail).
    pub fn add_pull(&self, name: &str, plan: PullPlan) {
        self.shared.state.lock().pulls.insert(name.to_owned(), plan);
    }

    /// Simulates Wolf ending a session by itself (runner exited, Moonlight `/cancel`): fires
    /// `StopStreamEvent` and removes every session with that id.
    pub fn end_session(&self, id: SessionId) {
        self.shared.state.lock().sessions.retain(|s| s.client_id != id);
        self.shared
            .emit(names::STOP_STREAM, &format!(r#"{{"session_id":"{id}"}}"#));
    }

    // ----- events -----

    /// Broadcasts an arbitrary event to SSE subscribers (`data` serialised compactly; ids given as
    /// strings are turned into numbers for pre-V5 profiles).
    pub fn inject_event<T: Serialize + ?Sized>(&self, name: &str, data: &T) {
        self.shared.emit(name, &handlers::to_json(data));
    }

    /// Fires `PlugDeviceEvent` as Wolf does when it creates a virtual input device for a session
    /// (mouse, keyboard, a joypad; `docs/protocol/wolf-api.md` § Event names, § One session's
    /// events): the device's uevents and udev database entries, for a test to replay as Wolf's
    /// runners do.
    pub fn plug_device(&self, event: &crate::events::DeviceEvent) {
        self.inject_event(names::PLUG_DEVICE, event);
    }

    /// Fires `UnplugDeviceEvent` as Wolf does when a virtual input device goes (the same
    /// payload as its plug).
    pub fn unplug_device(&self, event: &crate::events::DeviceEvent) {
        self.inject_event(names::UNPLUG_DEVICE, event);
    }

    /// Broadcasts an event whose `data:` line is exactly `data`.
    pub fn inject_raw_event(&self, name: &str, data: &str) {
        let frame: Arc<str> = format!("event: {name}\ndata: {data}\n\n").into();
        let _ = self.shared.events.send(frame);
    }

    /// Number of connected SSE subscribers.
    pub fn subscribers(&self) -> usize {
        self.shared.subscribers.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` SSE subscribers are connected.
    ///
    /// # Errors
    /// `Err(())` if that did not happen within `timeout`.
    pub async fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.subscribers() < n {
            if tokio::time::Instant::now() >= deadline {
                return Err(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    // ----- failures -----

    /// Injects `failure` into every answer (including the SSE stream) until cleared.
    pub fn set_failure(&self, failure: Failure) {
        self.shared.failures.lock().all = Some(failure);
    }

    /// Injects `failure` into answers for `path` only.
    pub fn set_failure_on(&self, path: &str, failure: Failure) {
        self.shared
            .failures
            .lock()
            .by_path
            .insert(path.to_owned(), failure);
    }

    /// Removes all injected failures.
    pub fn clear_failures(&self) {
        let mut f = self.shared.failures.lock();
        f.all = None;
        f.by_path.clear();
    }

    /// Whether a request arrived that would have crashed a real Wolf.
    pub fn would_have_crashed(&self) -> bool {
        !self.shared.crashes.lock().is_empty()
    }

    /// Why a real Wolf would have crashed, one entry per such request.
    pub fn crashes(&self) -> Vec<String> {
        self.shared.crashes.lock().clone()
    }

    /// Number of requests read so far.
    pub fn requests_served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    // ----- lifecycle -----

    /// Stops listening and closes every open connection (SSE included). The socket file is left in
    /// place, as after a Wolf crash, so clients get "connection refused". State is kept.
    pub async fn stop(&self) {
        if let Some(server) = self.server.lock().await.take() {
            let _ = server.shutdown.send(true);
            let _ = server.task.await;
        }
    }

    /// Stops (if running) and listens again on the same path or address, keeping the state.
    ///
    /// # Errors
    /// Binding fails.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop().await;
        let (_, server) = serve(self.shared.clone(), self.listen.clone(), self.tls.clone()).await?;
        *self.server.lock().await = Some(server);
        Ok(())
    }
}

impl Drop for FakeWolf {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.server.try_lock()
            && let Some(server) = guard.take()
        {
            let _ = server.shutdown.send(true);
            server.task.abort();
        }
        if let Listen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The TLS acceptor of the TCP listener, if any (always none without the `tls` feature).
#[derive(Clone, Default)]
struct TlsOption(#[cfg(feature = "tls")] Option<tokio_rustls::TlsAcceptor>);

impl std::fmt::Debug for TlsOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsOption")
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener, TlsOption),
}

async fn serve(shared: Arc<Shared>, listen: Listen, tls: TlsOption) -> std::io::Result<(Listen, Server)> {
    let (shutdown, rx) = watch::channel(false);
    let (listen, listener) = match listen {
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)?;
            (Listen::Unix(path), Listener::Unix(listener))
        }
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await?;
            (Listen::Tcp(listener.local_addr()?), Listener::Tcp(listener, tls))
        }
    };
    let task = tokio::spawn(accept_loop(rx, shared, listener));
    Ok((listen, Server { shutdown, task }))
}

async fn accept_loop(mut shutdown: watch::Receiver<bool>, shared: Arc<Shared>, listener: Listener) {
    let mut conns = tokio::task::JoinSet::new();
    // Notified by a connection that answered under `Failure::CrashAfterAnswer`.
    let crash = Arc::new(tokio::sync::Notify::new());
    loop {
        let accepted = async {
            match &listener {
                Listener::Unix(l) => l.accept().await.map(|(s, _)| Either::Unix(s)),
                Listener::Tcp(l, tls) => l.accept().await.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Either::Tcp(s, tls.clone())
                }),
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            () = crash.notified() => break,
            accepted = accepted => match accepted {
                Ok(stream) => {
                    let shared = shared.clone();
                    let crash = crash.clone();
                    let mut rx = shutdown.clone();
                    conns.spawn(async move {
                        tokio::select! {
                            _ = rx.changed() => {}
                            () = async {
                                let crashes = match stream {
                                    Either::Unix(s) => connection(shared, s).await,
                                    #[cfg(feature = "tls")]
                                    Either::Tcp(s, TlsOption(Some(acceptor))) => match acceptor.accept(s).await {
                                        Ok(tls) => connection(shared, tls).await,
                                        Err(_) => false,
                                    },
                                    #[cfg(feature = "tls")]
                                    Either::Tcp(s, TlsOption(None)) => connection(shared, s).await,
                                    #[cfg(not(feature = "tls"))]
                                    Either::Tcp(s, TlsOption()) => connection(shared, s).await,
                                };
                                if crashes {
                                    crash.notify_one();
                                }
                            } => {}
                        }
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fake wolf accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

enum Either {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, TlsOption),
}

/// Serves one connection; true when the fake must stop serving afterwards
/// ([`Failure::CrashAfterAnswer`]).
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send>(shared: Arc<Shared>, mut io: S) -> bool {
    let req = match read_request(&mut io).await {
        ReadOutcome::Gone => return false,
        ReadOutcome::Chunked => {
            write_response(&mut io, 500, &[], CHUNKED_REJECTION.as_bytes()).await;
            return false;
        }
        ReadOutcome::Request(r) => r,
    };
    shared.served.fetch_add(1, Ordering::SeqCst);
    let failure = {
        let f = shared.failures.lock();
        f.by_path.get(&req.path).cloned().or_else(|| f.all.clone())
    };
    if let Some(failure) = &failure {
        match failure {
            Failure::Slow(d) => tokio::time::sleep(*d).await,
            Failure::CloseWithoutResponse => return false,
            Failure::Garbage => {
                write_response(&mut io, 200, &[], b"<html>this is not json").await;
                return false;
            }
            Failure::Truncated => {
                write_all_and_close(
                    &mut io,
                    b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n{\"success\":tr",
                )
                .await;
                return false;
            }
            Failure::Oversized(n) => {
                let mut body = String::with_capacity(n + 40);
                body.push_str("{\"success\":true,\"sessions\":[],\"pad\":\"");
                body.extend(std::iter::repeat_n('x', *n));
                body.push_str("\"}");
                write_response(&mut io, 200, &[], body.as_bytes()).await;
                return false;
            }
            Failure::CrashAfterAnswer => {}
            Failure::WrongShape => {
                write_response(&mut io, 200, &[], br#"{"success":true,"sessions":{"not":"a list"},"session_id":[1],"apps":7,"clients":null,"requests":"x","lobbies":1,"profiles":1,"lobby_id":3}"#).await;
                return false;
            }
        }
    }
    let mut emitted = Vec::new();
    let reply = {
        let mut st = shared.state.lock();
        handlers::handle(shared.version, &mut st, &req, &mut emitted)
    };
    for (name, data) in &emitted {
        shared.emit(name, data);
    }
    match reply {
        Reply::Json(status, body) => write_response(&mut io, status, &[], body.as_bytes()).await,
        Reply::Bytes {
            status,
            content_type,
            body,
        } => {
            let headers: Vec<(&str, &str)> = content_type.map(|t| ("Content-Type", t)).into_iter().collect();
            write_response(&mut io, status, &headers, &body).await;
        }
        Reply::Close => {
            let _ = io.shutdown().await;
        }
        Reply::Crash(why) => {
            tracing::warn!(reason = %why, "fake wolf: this request would have crashed Wolf");
            shared.crashes.lock().push(why);
            let _ = io.shutdown().await;
        }
        Reply::Events => sse(&shared, io).await,
        Reply::Pull(plan, image) => pull(&shared, io, plan, &image).await,
    }
    failure == Some(Failure::CrashAfterAnswer)
}

struct SubscriberGuard<'a>(&'a AtomicUsize);

impl Drop for SubscriberGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn sse<S: AsyncWrite + Unpin>(shared: &Shared, mut io: S) {
    let mut rx = shared.events.subscribe();
    if io.write_all(SSE_HEAD.as_bytes()).await.is_err() {
        return;
    }
    shared.subscribers.fetch_add(1, Ordering::SeqCst);
    let _guard = SubscriberGuard(&shared.subscribers);
    let mut keepalive = tokio::time::interval(shared.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        let frame: Arc<str> = tokio::select! {
            r = rx.recv() => match r {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keepalive.tick() => Arc::from(":keepalive\n\n"),
        };
        if io.write_all(frame.as_bytes()).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
}

async fn pull<S: AsyncWrite + Unpin>(shared: &Shared, mut io: S, plan: PullPlan, image: &str) {
    let mut out = String::from("HTTP/1.0 200 OK\r\n\r\n");
    let mut failed = false;
    for (i, layer) in plan.layers.iter().enumerate() {
        if plan.fail_after == Some(i) {
            failed = true;
            break;
        }
        out.push_str(&handlers::to_json::<PullProgress>(layer));
        out.push_str("\r\n");
    }
    if plan.fail_after.is_some_and(|n| n >= plan.layers.len()) {
        failed = true;
    }
    if failed {
        let body = r#"{"success":false,"error":"Failed to pull image"}"#;
        out.push_str(&format!(
            "HTTP/1.0 500 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        out.push_str("{\"success\":true}\r\n");
    }
    write_all_and_close(&mut io, out.as_bytes()).await;
    shared.emit(
        names::DOCKER_PULL_END,
        &handlers::to_json(&handlers::PullEndOut {
            image_name: image,
            success: !failed,
        }),
    );
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::Secret;
    use crate::events::EventItem;
    use crate::types::AddSessionRequest;

    const T: Duration = Duration::from_secs(5);

    fn add_request() -> AddSessionRequest {
        AddSessionRequest {
            client_ip: "203.0.113.7".into(),
            aes_key: Secret::new("773448F67992470C5C62848D361E1025".into()),
            aes_iv: Secret::new("1311662065".into()),
            rtsp_fake_ip: "198.18.0.5".into(),
            video_width: 1920,
            video_height: 1080,
            video_refresh_rate: 60,
            audio_channel_count: 2,
            app_id: None,
            client_id: None,
            client_settings: None,
        }
    }

    #[tokio::test]
    async fn crash_after_answer_answers_then_stops_serving_and_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let wolf = FakeWolf::builder()
            .unix(dir.path().join("wolf.sock"))
            .start()
            .await
            .unwrap();
        wolf.add_app(FakeWolf::sample_app("1", "Desktop"));
        let client = wolf.client().unwrap();
        // The event stream connects when polled: follow it in a task.
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let mut stream = client.events();
        let follower = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        wolf.wait_for_subscribers(1, T)
            .await
            .expect("the event stream did not connect within 5 s");
        wolf.set_failure_on("/api/v1/sessions/add", Failure::CrashAfterAnswer);

        // The request is answered exactly as without the failure, and takes effect.
        let id = tokio::time::timeout(T, client.add_session(&add_request()))
            .await
            .expect("sessions/add was not answered within 5 s")
            .unwrap();
        assert_eq!(id.get(), crate::CLIENTLESS_SESSION_ID);
        assert_eq!(wolf.sessions().len(), 1, "the session exists");

        // Then the API is gone: the SSE stream is dropped and new connections are refused.
        let dropped = async {
            while wolf.subscribers() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(T, dropped)
            .await
            .expect("the SSE stream was not dropped within 5 s of the crash");
        let error = tokio::time::timeout(T, client.sessions())
            .await
            .expect("listing a crashed fake did not fail within 5 s")
            .unwrap_err();
        assert!(
            matches!(error, crate::Error::ConnectionRefused { .. }),
            "{error:?}"
        );

        // A restart brings the state back; the failure stays until cleared.
        wolf.restart().await.unwrap();
        let listed = tokio::time::timeout(T, client.sessions())
            .await
            .expect("listing the restarted fake took over 5 s")
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].rtsp_fake_ip.as_deref(), Some("198.18.0.5"));
        let reconnected = async {
            loop {
                match events.recv().await {
                    Some(Ok(EventItem::Reconnected)) => return,
                    Some(_) => {}
                    None => panic!("the event stream ended"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reconnected)
            .await
            .expect("the event stream did not reconnect to the restarted fake within 10 s");
        wolf.clear_failures();
        tokio::time::timeout(T, client.stop_session(id))
            .await
            .expect("sessions/stop was not answered within 5 s")
            .unwrap();
        let other = AddSessionRequest {
            rtsp_fake_ip: "198.18.0.6".into(),
            ..add_request()
        };
        tokio::time::timeout(T, client.add_session(&other))
            .await
            .expect("sessions/add was not answered within 5 s")
            .unwrap();
        let listed = tokio::time::timeout(T, client.sessions())
            .await
            .expect("the fake did not answer within 5 s after a cleared failure")
            .expect("without the failure the fake keeps serving");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].rtsp_fake_ip.as_deref(), Some("198.18.0.6"));
        assert!(!wolf.would_have_crashed(), "{:?}", wolf.crashes());
        follower.abort();
    }
}
