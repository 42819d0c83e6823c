//! The typed client: [`WolfClient`] and its builder.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::Full;
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result, ValidationError, WolfErrorKind};
use crate::ids::{AppId, ClientId, SessionId};
use crate::observe::{CallObserver, CallOutcome};
use crate::transport::{self, Target};
use crate::types::*;
use crate::version::{WolfVersion, detect_from_openapi, paths};

/// The default socket path the Wolf documentation recommends (`WOLF_SOCKET_PATH`).
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/wolf/wolf.sock";
/// Default time limit of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit of a response body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Poll interval of [`WolfClient::wait_ready`].
const READY_POLL: Duration = Duration::from_millis(200);
/// `lobbies/create` blocks up to 20 s inside Wolf; its calls get at least this much time.
pub const LOBBY_CREATE_MIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Builder of a [`WolfClient`]. Defaults: unix socket [`DEFAULT_SOCKET_PATH`], [`DEFAULT_TIMEOUT`],
/// [`DEFAULT_MAX_BODY_BYTES`], version detected on first need.
#[derive(Debug, Clone)]
pub struct WolfClientBuilder {
    target: Target,
    timeout: Duration,
    max_body_bytes: usize,
    version: Option<WolfVersion>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl Default for WolfClientBuilder {
    fn default() -> Self {
        WolfClientBuilder {
            target: Target::Unix(PathBuf::from(DEFAULT_SOCKET_PATH)),
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            version: None,
            observer: None,
        }
    }
}

impl WolfClientBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Talk to Wolf's unix socket at `path`.
    pub fn with_unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.target = Target::Unix(path.into());
        self
    }

    /// Talk plain HTTP to `host:port` (a reverse proxy forwarding to Wolf's socket).
    pub fn with_tcp(mut self, addr: impl Into<String>) -> Self {
        self.target = Target::Tcp(addr.into());
        self
    }

    /// Talk HTTPS to `host:port` (a TLS-terminating proxy such as fenrir's wolf-agent), verifying the
    /// server as `server_name` with the caller's rustls configuration (bring the proxy's self-signed
    /// certificate as a root). Feature `tls`.
    ///
    /// # Errors
    /// [`Error::Config`] if `server_name` is not a valid DNS name or IP address.
    #[cfg(feature = "tls")]
    pub fn with_https(
        mut self,
        addr: impl Into<String>,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| Error::Config(format!("invalid TLS server name {server_name:?}: {e}")))?;
        self.target = Target::Https {
            addr: addr.into(),
            server_name,
            connector: tokio_rustls::TlsConnector::from(config),
        };
        Ok(self)
    }

    /// Time limit of each call (connect, request and whole response).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response body accepted.
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Assume this Wolf version instead of detecting it from the OpenAPI schema.
    pub fn with_version(mut self, version: WolfVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// Tells `observer` of every call's endpoint, duration and outcome (for metrics).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Validates the configuration and builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero timeout, a zero body limit, an empty socket path or a TCP
    /// address without a port.
    pub fn build(self) -> Result<WolfClient> {
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must not be zero".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(Error::Config("max_body_bytes must not be zero".into()));
        }
        let host = match &self.target {
            Target::Unix(p) if p.as_os_str().is_empty() => {
                return Err(Error::Config("socket path is empty".into()));
            }
            Target::Unix(_) => HeaderValue::from_static("localhost"),
            #[cfg(feature = "tls")]
            Target::Https { addr, .. } => {
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(Error::Config(format!("HTTPS address {addr:?} is not host:port")));
                }
                HeaderValue::from_str(addr)
                    .map_err(|_| Error::Config(format!("HTTPS address {addr:?} is not a valid Host")))?
            }
            Target::Tcp(addr) => {
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(Error::Config(format!("TCP address {addr:?} is not host:port")));
                }
                HeaderValue::from_str(addr)
                    .map_err(|_| Error::Config(format!("TCP address {addr:?} is not a valid Host")))?
            }
        };
        Ok(WolfClient {
            inner: Arc::new(Inner {
                target: self.target,
                host,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
                pinned_version: self.version,
                detected: RwLock::new(None),
                observer: self.observer,
            }),
        })
    }
}

/// An async client of Wolf's HTTP API. Cheap to clone (shared state behind an `Arc`).
///
/// Every call opens one connection, sends one request with `Content-Length` and reads the answer
/// within the configured timeout. Requests that would crash Wolf are refused with
/// [`Error::Validation`] before anything is sent; endpoints the detected Wolf does not have fail
/// with [`Error::Unsupported`].
#[derive(Debug, Clone)]
pub struct WolfClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) target: Target,
    host: HeaderValue,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: usize,
    pinned_version: Option<WolfVersion>,
    detected: RwLock<Option<WolfVersion>>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// Envelope of success responses that carry data.
trait Envelope: DeserializeOwned {
    fn success(&self) -> bool;
}

macro_rules! envelope {
    ($name:ident { $field:ident : $ty:ty }) => {
        #[derive(Deserialize)]
        struct $name {
            success: bool,
            $field: $ty,
        }
        impl Envelope for $name {
            fn success(&self) -> bool {
                self.success
            }
        }
    };
}

#[derive(Deserialize)]
struct Success {
    success: bool,
}
impl Envelope for Success {
    fn success(&self) -> bool {
        self.success
    }
}
envelope!(PendingResp { requests: Vec<PairRequest> });
envelope!(ClientsResp { clients: Vec<PairedClient> });
envelope!(AppsResp { apps: Vec<App> });
envelope!(ProfilesResp { profiles: Vec<Profile> });
envelope!(SessionsResp { sessions: Vec<StreamSession> });
envelope!(SessionCreatedResp {
    session_id: SessionId
});
envelope!(LobbiesResp { lobbies: Vec<Lobby> });
envelope!(LobbyCreatedResp {
    lobby_id: crate::ids::LobbyId
});

#[derive(Deserialize)]
struct ErrorBody {
    success: bool,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Serialize)]
struct IdBody<'a, T: Serialize> {
    id: &'a T,
}

#[derive(Serialize)]
struct SessionIdBody {
    session_id: SessionId,
}

#[derive(Serialize)]
struct ClientIdBody {
    client_id: ClientId,
}

#[derive(Serialize)]
struct InputBody<'a> {
    session_id: SessionId,
    input_packet_hex: &'a str,
}

#[derive(Serialize)]
struct ImageBody<'a> {
    image_name: &'a str,
}

/// A raw answer: status and body.
pub(crate) struct Raw {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Stream of `docker/images/pull` progress lines; ends after Wolf's final success line.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullProgress>> + Send>>;

impl WolfClient {
    /// A builder.
    pub fn builder() -> WolfClientBuilder {
        WolfClientBuilder::new()
    }

    /// A client of the Wolf socket at `path` with default settings.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty path.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Self> {
        WolfClientBuilder::new().with_unix_socket(path).build()
    }

    /// A client of a plain-HTTP proxy at `host:port` with default settings.
    ///
    /// # Errors
    /// [`Error::Config`] for an address that is not `host:port`.
    pub fn tcp(addr: impl Into<String>) -> Result<Self> {
        WolfClientBuilder::new().with_tcp(addr).build()
    }

    /// Where this client connects.
    pub fn target(&self) -> String {
        self.inner.target.to_string()
    }

    // ----- plumbing -----

    pub(crate) fn request(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.inner.host.clone());
        let body = match body {
            Some(body) => {
                b = b
                    .header(CONTENT_TYPE, "application/json")
                    .header(CONTENT_LENGTH, body.len());
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        b.body(Full::new(body))
            .map_err(|e| Error::Config(format!("cannot build request: {e}")))
    }

    /// Sends one request and reads the whole answer within `timeout`.
    async fn exchange(
        &self,
        endpoint: &'static str,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Raw> {
        let limit = self.inner.max_body_bytes;
        let target = &self.inner.target;
        let work = async {
            let (resp, _guard) = transport::send(target, req, endpoint).await?;
            let (status, body) = transport::collect_body(resp, limit, endpoint).await?;
            Ok(Raw { status, body })
        };
        let started = Instant::now();
        let raw = tokio::time::timeout(timeout, work).await;
        if let Some(observer) = &self.inner.observer {
            let outcome = match &raw {
                Ok(Ok(r)) if (200..300).contains(&r.status) => CallOutcome::Ok,
                Ok(Ok(r)) => CallOutcome::Status(r.status),
                Ok(Err(_)) => CallOutcome::Transport,
                Err(_) => CallOutcome::Timeout,
            };
            observer.call(endpoint, started.elapsed(), outcome);
        }
        let raw = raw.map_err(|_| Error::Timeout {
            endpoint,
            after: timeout,
        })?;
        if let Ok(r) = &raw {
            tracing::debug!(endpoint, status = r.status, bytes = r.body.len(), "wolf call");
        }
        raw
    }

    async fn get<T: Envelope>(&self, endpoint: &'static str) -> Result<T> {
        self.check_supported(endpoint).await?;
        let raw = self
            .exchange(
                endpoint,
                self.request(http::Method::GET, endpoint, None)?,
                self.inner.timeout,
            )
            .await?;
        decode(endpoint, raw)
    }

    async fn post<B: Serialize + ?Sized, T: Envelope>(&self, endpoint: &'static str, body: &B) -> Result<T> {
        self.post_with_timeout(endpoint, body, self.inner.timeout).await
    }

    async fn post_with_timeout<B: Serialize + ?Sized, T: Envelope>(
        &self,
        endpoint: &'static str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        self.check_supported(endpoint).await?;
        let body =
            serde_json::to_vec(body).map_err(|e| Error::Config(format!("cannot serialise request: {e}")))?;
        let raw = self
            .exchange(
                endpoint,
                self.request(http::Method::POST, endpoint, Some(body))?,
                timeout,
            )
            .await?;
        decode(endpoint, raw)
    }

    // ----- versions -----

    /// The version of the Wolf in front: the pinned one, or detected from `openapi-schema` once and
    /// cached until [`WolfClient::forget_version`].
    ///
    /// # Errors
    /// Any error of fetching the schema.
    pub async fn version(&self) -> Result<WolfVersion> {
        if let Some(v) = self.inner.pinned_version {
            return Ok(v);
        }
        if let Some(v) = *self.inner.detected.read() {
            return Ok(v);
        }
        let doc = self.openapi_schema().await?;
        let v = detect_from_openapi(&doc);
        tracing::debug!(version = %v, "detected wolf version");
        *self.inner.detected.write() = Some(v);
        Ok(v)
    }

    /// Waits until Wolf answers (it creates its socket at start-up; fenrir polls every 200 ms), then
    /// detects and caches its version. Retries only transient errors (socket missing, connection
    /// refused, timeouts, closed connections), every 200 ms, for at most `max_wait`.
    ///
    /// # Errors
    /// The last transient error once `max_wait` has passed, or the first non-transient error.
    pub async fn wait_ready(&self, max_wait: Duration) -> Result<WolfVersion> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            self.forget_version();
            match self.version().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && tokio::time::Instant::now() + READY_POLL < deadline => {
                    tracing::debug!(error = &e as &dyn std::error::Error, "waiting for wolf");
                    tokio::time::sleep(READY_POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the cached detected version (e.g. after Wolf restarted, maybe upgraded).
    pub fn forget_version(&self) {
        *self.inner.detected.write() = None;
    }

    async fn check_supported(&self, endpoint: &'static str) -> Result<()> {
        let required = WolfVersion::first_with(endpoint).unwrap_or(WolfVersion::V1);
        if required == WolfVersion::V1 {
            return Ok(());
        }
        let detected = self.version().await?;
        if detected < required {
            return Err(Error::Unsupported {
                endpoint,
                detected_version: detected,
                required,
            });
        }
        Ok(())
    }

    // ----- pairing -----

    /// `GET /api/v1/pair/pending`: Moonlight clients waiting for a PIN.
    ///
    /// # Errors
    /// Transport, timeout, Wolf and decoding errors.
    pub async fn pending_pair_requests(&self) -> Result<Vec<PairRequest>> {
        Ok(self.get::<PendingResp>(paths::PAIR_PENDING).await?.requests)
    }

    /// `POST /api/v1/pair/client`: gives the PIN for a pending request.
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidPairSecret`] if the secret is unknown; transport errors.
    pub async fn pair_client(&self, req: &PairClientRequest) -> Result<()> {
        self.post::<_, Success>(paths::PAIR_CLIENT, req).await.map(drop)
    }

    /// `POST /api/v1/unpair/client` (V3+).
    ///
    /// # Errors
    /// [`WolfErrorKind::ClientNotFound`]; [`Error::Unsupported`] before V3; transport errors.
    pub async fn unpair_client(&self, client_id: ClientId) -> Result<()> {
        self.post::<_, Success>(paths::UNPAIR_CLIENT, &ClientIdBody { client_id })
            .await
            .map(drop)
    }

    /// `GET /api/v1/clients`: paired clients.
    ///
    /// # Errors
    /// Transport, timeout, Wolf and decoding errors.
    pub async fn clients(&self) -> Result<Vec<PairedClient>> {
        Ok(self.get::<ClientsResp>(paths::CLIENTS).await?.clients)
    }

    /// `POST /api/v1/clients/settings` (V3+). `None` fields are sent as `null` and keep their value.
    ///
    /// # Errors
    /// [`WolfErrorKind::ClientNotFound`]; [`Error::Unsupported`] before V3; transport errors.
    pub async fn update_client_settings(&self, req: &UpdateClientSettingsRequest) -> Result<()> {
        self.post::<_, Success>(paths::CLIENTS_SETTINGS, req)
            .await
            .map(drop)
    }

    // ----- apps and profiles -----

    /// `GET /api/v1/apps`: the apps shown to Moonlight.
    ///
    /// # Errors
    /// Transport, timeout, Wolf and decoding errors.
    pub async fn apps(&self) -> Result<Vec<App>> {
        Ok(self.get::<AppsResp>(paths::APPS).await?.apps)
    }

    /// `POST /api/v1/apps/add` (see the caveats in `docs/protocol/wolf-api.md` § Types).
    ///
    /// # Errors
    /// Transport, timeout and Wolf errors.
    pub async fn add_app(&self, app: &App) -> Result<()> {
        self.post::<_, Success>(paths::APPS_ADD, app).await.map(drop)
    }

    /// `POST /api/v1/apps/delete` (succeeds even if no app has the id).
    ///
    /// # Errors
    /// Transport, timeout and Wolf errors.
    pub async fn delete_app(&self, id: &AppId) -> Result<()> {
        self.post::<_, Success>(paths::APPS_DELETE, &IdBody { id })
            .await
            .map(drop)
    }

    /// `GET /api/v1/profiles` (V5+): all profiles except the Moonlight one.
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; transport and decoding errors.
    pub async fn profiles(&self) -> Result<Vec<Profile>> {
        Ok(self.get::<ProfilesResp>(paths::PROFILES).await?.profiles)
    }

    /// `POST /api/v1/profiles/add` (V5+).
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; transport and Wolf errors.
    pub async fn add_profile(&self, profile: &Profile) -> Result<()> {
        self.post::<_, Success>(paths::PROFILES_ADD, profile)
            .await
            .map(drop)
    }

    /// `POST /api/v1/profiles/remove` (V5+; succeeds even if absent).
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; transport and Wolf errors.
    pub async fn remove_profile(&self, id: &str) -> Result<()> {
        self.post::<_, Success>(paths::PROFILES_REMOVE, &IdBody { id: &id })
            .await
            .map(drop)
    }

    // ----- sessions -----

    /// `GET /api/v1/sessions`. Note that the answer holds every session's AES key (kept in
    /// [`crate::Secret`]s).
    ///
    /// # Errors
    /// Transport, timeout, Wolf and decoding errors.
    pub async fn sessions(&self) -> Result<Vec<StreamSession>> {
        Ok(self.get::<SessionsResp>(paths::SESSIONS).await?.sessions)
    }

    /// `POST /api/v1/sessions/add`: creates a session (and starts its app's runner) and returns its
    /// id. Validates `rtsp_fake_ip`, `aes_key`, `aes_iv` and the fields the detected version requires.
    ///
    /// # Errors
    /// [`Error::Validation`]; [`WolfErrorKind::InvalidAppId`] / [`WolfErrorKind::InvalidClientId`];
    /// transport errors.
    pub async fn add_session(&self, req: &AddSessionRequest) -> Result<SessionId> {
        let endpoint = paths::SESSIONS_ADD;
        let invalid = |source| Error::Validation { endpoint, source };
        if req.rtsp_fake_ip.parse::<Ipv4Addr>().is_err() {
            return Err(invalid(ValidationError::InvalidRtspFakeIp(
                req.rtsp_fake_ip.clone(),
            )));
        }
        let key = req.aes_key.expose();
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(ValidationError::InvalidAesKey));
        }
        let iv = req.aes_iv.expose();
        if iv.is_empty()
            || iv.len() > 10
            || !iv.bytes().all(|b| b.is_ascii_digit())
            || iv.parse::<u32>().is_err()
        {
            return Err(invalid(ValidationError::InvalidAesIv));
        }
        let version = self.version().await?;
        if version.add_session_requires_client() {
            let missing = if req.app_id.is_none() {
                Some("app_id")
            } else if req.client_id.is_none() {
                Some("client_id")
            } else if req.client_settings.is_none() {
                Some("client_settings")
            } else {
                None
            };
            if let Some(field) = missing {
                return Err(invalid(ValidationError::MissingField { field, version }));
            }
        }
        if version >= WolfVersion::V6
            && req
                .client_settings
                .as_ref()
                .is_some_and(|s| s.motion_controller_override.is_none())
        {
            return Err(invalid(ValidationError::MissingField {
                field: "client_settings.motion_controller_override",
                version,
            }));
        }
        Ok(self
            .post::<_, SessionCreatedResp>(endpoint, req)
            .await?
            .session_id)
    }

    /// `POST /api/v1/sessions/start` (V2+): starts the video and audio streams of a session
    /// without RTSP. Checks first that the session exists (Wolf crashes otherwise).
    ///
    /// # Errors
    /// [`ValidationError::SessionNotFound`], [`ValidationError::MissingField`] for a V4+ request
    /// without `rtp_secret_payload`; [`Error::Unsupported`] before V2; transport errors.
    pub async fn start_session(&self, req: &StartSessionRequest) -> Result<()> {
        let endpoint = paths::SESSIONS_START;
        self.check_supported(endpoint).await?;
        let version = self.version().await?;
        if version >= WolfVersion::V4 {
            let field = if req.video_session.rtp_secret_payload.is_none() {
                Some("video_session.rtp_secret_payload")
            } else if req.audio_session.rtp_secret_payload.is_none() {
                Some("audio_session.rtp_secret_payload")
            } else {
                None
            };
            if let Some(field) = field {
                return Err(Error::Validation {
                    endpoint,
                    source: ValidationError::MissingField { field, version },
                });
            }
        }
        let sessions = self.sessions().await?;
        if !sessions.iter().any(|s| s.session_id() == req.session_id) {
            return Err(Error::Validation {
                endpoint,
                source: ValidationError::SessionNotFound(req.session_id),
            });
        }
        let mut body =
            serde_json::to_value(req).map_err(|e| Error::Config(format!("cannot serialise request: {e}")))?;
        if !version.ids_as_strings_in_events() {
            // Before V5 the nested VideoSession/AudioSession structs carry `size_t` ids as numbers.
            for part in ["video_session", "audio_session"] {
                if let Some(obj) = body.get_mut(part).and_then(Value::as_object_mut) {
                    obj.insert("session_id".into(), Value::from(req.session_id.get()));
                }
            }
        }
        self.post::<_, Success>(endpoint, &body).await.map(drop)
    }

    /// `POST /api/v1/sessions/pause`: ends the session's streams, keeps the session.
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidSessionId`]; transport errors.
    pub async fn pause_session(&self, session_id: SessionId) -> Result<()> {
        self.post::<_, Success>(paths::SESSIONS_PAUSE, &SessionIdBody { session_id })
            .await
            .map(drop)
    }

    /// `POST /api/v1/sessions/stop`: removes the session and stops its runner.
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidSessionId`]; transport errors.
    pub async fn stop_session(&self, session_id: SessionId) -> Result<()> {
        self.post::<_, Success>(paths::SESSIONS_STOP, &SessionIdBody { session_id })
            .await
            .map(drop)
    }

    /// `POST /api/v1/sessions/input` (V2+): injects a hex-encoded Moonlight input packet.
    ///
    /// # Errors
    /// [`ValidationError::InvalidHex`]; [`Error::Unsupported`] before V2; transport errors.
    pub async fn send_input(&self, session_id: SessionId, input_packet_hex: &str) -> Result<()> {
        let endpoint = paths::SESSIONS_INPUT;
        if input_packet_hex.is_empty()
            || !input_packet_hex.len().is_multiple_of(2)
            || !input_packet_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Error::Validation {
                endpoint,
                source: ValidationError::InvalidHex,
            });
        }
        self.post::<_, Success>(
            endpoint,
            &InputBody {
                session_id,
                input_packet_hex,
            },
        )
        .await
        .map(drop)
    }

    /// `POST /api/v1/runners/start`: starts an extra runner in a session. Wolf answers success by
    /// closing the connection without a byte, so that is reported as `Ok` — note that a Wolf that
    /// crashed on the request looks the same. Do not retry blindly.
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidSessionId`]; transport errors.
    pub async fn start_runner(&self, req: &StartRunnerRequest) -> Result<()> {
        match self.post::<_, Success>(paths::RUNNERS_START, req).await {
            Ok(_) | Err(Error::ClosedWithoutResponse { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- lobbies -----

    /// `GET /api/v1/lobbies` (V5+).
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; transport and decoding errors.
    pub async fn lobbies(&self) -> Result<Vec<Lobby>> {
        Ok(self.get::<LobbiesResp>(paths::LOBBIES).await?.lobbies)
    }

    /// `POST /api/v1/lobbies/create` (V5+). Wolf blocks up to 20 s; this call gets at least
    /// [`LOBBY_CREATE_MIN_TIMEOUT`].
    ///
    /// # Errors
    /// [`WolfErrorKind::LobbySetupTimeout`]; [`Error::Unsupported`] before V5; transport errors.
    pub async fn create_lobby(&self, req: &CreateLobbyRequest) -> Result<crate::ids::LobbyId> {
        let timeout = self.inner.timeout.max(LOBBY_CREATE_MIN_TIMEOUT);
        Ok(self
            .post_with_timeout::<_, LobbyCreatedResp>(paths::LOBBIES_CREATE, req, timeout)
            .await?
            .lobby_id)
    }

    /// `POST /api/v1/lobbies/join` (V5+).
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidLobbyId`], [`WolfErrorKind::InvalidPin`], [`WolfErrorKind::LobbyFull`],
    /// [`WolfErrorKind::LobbyOrSessionNotFound`]; transport errors.
    pub async fn join_lobby(&self, req: &JoinLobbyRequest) -> Result<()> {
        self.post::<_, Success>(paths::LOBBIES_JOIN, req).await.map(drop)
    }

    /// `POST /api/v1/lobbies/leave` (V5+).
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; transport errors.
    pub async fn leave_lobby(&self, req: &LeaveLobbyRequest) -> Result<()> {
        self.post::<_, Success>(paths::LOBBIES_LEAVE, req).await.map(drop)
    }

    /// `POST /api/v1/lobbies/stop` (V5+).
    ///
    /// # Errors
    /// [`WolfErrorKind::InvalidLobbyId`], [`WolfErrorKind::InvalidPin`]; transport errors.
    pub async fn stop_lobby(&self, req: &StopLobbyRequest) -> Result<()> {
        self.post::<_, Success>(paths::LOBBIES_STOP, req).await.map(drop)
    }

    // ----- utils, docker, schema -----

    async fn get_query(&self, endpoint: &'static str, field: &'static str, value: &str) -> Result<Raw> {
        let bad = || Error::Validation {
            endpoint,
            source: ValidationError::InvalidQueryValue {
                field,
                value: value.to_owned(),
            },
        };
        // Wolf splits the query on `=` and never percent-decodes: the value must be sent verbatim.
        if value.is_empty()
            || value
                .bytes()
                .any(|b| !b.is_ascii_graphic() || matches!(b, b'=' | b'&' | b'#'))
        {
            return Err(bad());
        }
        self.check_supported(endpoint).await?;
        let uri = format!("{endpoint}?{field}={value}");
        let req = self.request(http::Method::GET, &uri, None).map_err(|_| bad())?;
        self.exchange(endpoint, req, self.inner.timeout).await
    }

    /// `GET /api/v1/utils/get-icon?icon_path=...` (V5+): the PNG bytes. The value is sent verbatim
    /// (Wolf does not percent-decode), so it must not contain `=`, `&`, `#` or spaces.
    ///
    /// # Errors
    /// [`WolfErrorKind::IconNotFound`]; [`ValidationError::InvalidQueryValue`]; transport errors.
    pub async fn get_icon(&self, icon_path: &str) -> Result<Bytes> {
        let endpoint = paths::UTILS_GET_ICON;
        let raw = self.get_query(endpoint, "icon_path", icon_path).await?;
        if raw.status == 200 {
            return Ok(raw.body);
        }
        Err(error_from(endpoint, raw))
    }

    /// `GET /api/v1/docker/images/inspect?image_name=...` (V5+): Docker's image JSON, verbatim.
    ///
    /// # Errors
    /// [`WolfErrorKind::ImageNotFound`]; [`ValidationError::InvalidQueryValue`]; transport errors.
    pub async fn inspect_image(&self, image_name: &str) -> Result<Value> {
        let endpoint = paths::DOCKER_INSPECT;
        let raw = self.get_query(endpoint, "image_name", image_name).await?;
        if raw.status == 200 {
            return serde_json::from_slice(&raw.body)
                .map_err(|source| Error::InvalidJson { endpoint, source });
        }
        Err(error_from(endpoint, raw))
    }

    /// `POST /api/v1/docker/images/pull` (V5+): a stream of progress lines that ends when Wolf reports
    /// success, or yields [`WolfErrorKind::PullFailed`]. The configured timeout applies to the wait for
    /// the answer and then to each gap between lines.
    ///
    /// # Errors
    /// [`Error::Unsupported`] before V5; connection errors (later errors arrive in the stream).
    pub async fn pull_image(&self, image_name: &str) -> Result<PullStream> {
        let endpoint = paths::DOCKER_PULL;
        self.check_supported(endpoint).await?;
        let body = serde_json::to_vec(&ImageBody { image_name })
            .map_err(|e| Error::Config(format!("cannot serialise request: {e}")))?;
        let req = self.request(http::Method::POST, endpoint, Some(body))?;
        let timeout = self.inner.timeout;
        let (resp, guard) = tokio::time::timeout(timeout, transport::send(&self.inner.target, req, endpoint))
            .await
            .map_err(|_| Error::Timeout {
                endpoint,
                after: timeout,
            })??;
        if resp.status().as_u16() != 200 {
            let (status, body) = transport::collect_body(resp, self.inner.max_body_bytes, endpoint).await?;
            return Err(error_from(endpoint, Raw { status, body }));
        }
        Ok(crate::pull::pull_stream(
            resp,
            guard,
            timeout,
            self.inner.max_body_bytes,
        ))
    }

    /// `GET /api/v1/openapi-schema`: the OpenAPI document of the running Wolf.
    ///
    /// # Errors
    /// Transport, timeout and decoding errors.
    pub async fn openapi_schema(&self) -> Result<Value> {
        let endpoint = paths::OPENAPI_SCHEMA;
        let raw = self
            .exchange(
                endpoint,
                self.request(http::Method::GET, endpoint, None)?,
                self.inner.timeout,
            )
            .await?;
        if raw.status != 200 {
            return Err(error_from(endpoint, raw));
        }
        serde_json::from_slice(&raw.body).map_err(|source| Error::InvalidJson { endpoint, source })
    }
}

/// Decodes an answer: 200 → the envelope (checking `success`), otherwise the error.
fn decode<T: Envelope>(endpoint: &'static str, raw: Raw) -> Result<T> {
    if raw.status != 200 {
        return Err(error_from(endpoint, raw));
    }
    match serde_json::from_slice::<T>(&raw.body) {
        Ok(v) if v.success() => Ok(v),
        Ok(_) => Err(error_from(endpoint, raw)),
        Err(source) => match serde_json::from_slice::<ErrorBody>(&raw.body) {
            Ok(ErrorBody { success: false, .. }) => Err(error_from(endpoint, raw)),
            _ => Err(Error::InvalidJson { endpoint, source }),
        },
    }
}

/// Turns a non-success answer into the most precise error.
pub(crate) fn error_from(endpoint: &'static str, raw: Raw) -> Error {
    if raw.status == 404 && raw.body.is_empty() {
        return Error::RouteNotFound { endpoint };
    }
    if let Ok(ErrorBody {
        success: false,
        error,
    }) = serde_json::from_slice::<ErrorBody>(&raw.body)
    {
        let message = error.unwrap_or_default();
        return Error::Wolf {
            endpoint,
            status: raw.status,
            kind: WolfErrorKind::from_message(&message),
            message,
        };
    }
    let mut body = String::from_utf8_lossy(&raw.body).into_owned();
    if body.len() > 512 {
        let mut cut = 512;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    Error::UnexpectedResponse {
        endpoint,
        status: raw.status,
        body,
    }
}
