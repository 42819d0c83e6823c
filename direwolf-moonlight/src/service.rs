//! Request routing and the GameStream handlers.
//!
//! Every protocol outcome on a known path is an XML reply with HTTP 200
//! (`docs/protocol/moonlight-http.md` § HTTP status codes); only unknown paths get HTTP 404. HTTPS
//! requests are authorised by the SHA-256 of the TLS peer's leaf certificate alone (§ Client
//! identity); an unpaired certificate gets the XML 401 of § Unpaired certificates. Pairing is
//! routed to [`crate::pairing`] (phase 1 to [`crate::pairing::Phase1`]); phase 4's result is stored
//! here, before the reply.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use direwolf_core::metrics::{PairingMetrics, PairingOutcome};
use direwolf_core::model::unix_now;
use direwolf_core::{
    AppId, Fingerprint, LaunchError, Launcher, Pairing, Stores, User, UserName, UserStoreExt,
};
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, LOCATION, REFERRER_POLICY, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::{debug, error, info};

use crate::identity::LoadedIdentity;
use crate::launch::{self, Verb};
use crate::oidc;
use crate::pairing::{PIN_TIMED_OUT, PairReject, PairingKey, PairingManager, Phase1, Phase1Request, Phase4};
use crate::pin_page::{self, PinEntry};
use crate::query::Query;
use crate::serverinfo::{DisplayMode, ServerInfo};
use crate::xml::XmlReply;

/// The reply body type.
pub type Body = Full<Bytes>;

/// The `status_message` of the XML 401 (`docs/protocol/moonlight-http.md` § Unpaired certificates).
pub const NOT_AUTHORIZED: &str = "The client is not authorized. Certificate verification failed.";

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub hostname: String,
    pub external_address: Option<IpAddr>,
    pub codec_mode_support: u32,
    pub display_modes: Vec<DisplayMode>,
    pub mac: String,
    pub http_port: u16,
    pub https_port: u16,
    pub body_timeout: Duration,
}

/// The state every connection's handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub stores: Stores,
    pub launcher: Arc<dyn Launcher>,
    pub identity: Arc<LoadedIdentity>,
    pub pairing: Arc<PairingManager>,
    pub pairing_metrics: PairingMetrics,
    pub phase1: Phase1,
    pub pin: PinEntry,
    pub settings: Settings,
}

/// What is known about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `Some` on the HTTPS port: the peer leaf certificate's fingerprint, if it sent one.
    pub tls: Option<Option<Fingerprint>>,
}

impl ConnInfo {
    fn peer_ip(&self) -> IpAddr {
        self.peer.ip().to_canonical()
    }

    fn local_ip(&self) -> IpAddr {
        self.local.ip().to_canonical()
    }
}

/// Who an authorised HTTPS request acts for.
#[derive(Debug, Clone)]
struct Caller {
    user: UserName,
    fingerprint: Fingerprint,
    /// The user's record (which apps they may use).
    account: User,
}

impl Caller {
    fn may_use(&self, app: AppId) -> bool {
        self.account.may_use(app)
    }

    fn requester(&self, conn: &ConnInfo) -> launch::Requester {
        launch::Requester {
            user: self.user.clone(),
            pairing: self.fingerprint.clone(),
            client_ip: conn.peer_ip(),
            server_ip: conn.local_ip(),
        }
    }
}

fn xml(reply: &XmlReply) -> Response<Body> {
    xml_with_status(StatusCode::OK, reply)
}

fn xml_with_status(status: StatusCode, reply: &XmlReply) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(reply.render())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}

fn raw(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    raw(status, "text/plain; charset=utf-8", body)
}

/// A 302 to `location`, never cached, never leaking its address onwards, optionally setting
/// `cookie`.
fn redirect(location: &str, cookie: Option<&str>) -> Response<Body> {
    let mut response = raw(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    let headers = response.headers_mut();
    let mut set = |name: http::HeaderName, value: &str| {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(LOCATION, location);
    set(CACHE_CONTROL, "no-store");
    set(REFERRER_POLICY, "no-referrer");
    if let Some(cookie) = cookie {
        set(SET_COOKIE, cookie);
    }
    response
}

/// Paths of the GameStream protocol.
const GAMESTREAM_PATHS: [&str; 8] = [
    "/serverinfo",
    "/pair",
    "/unpair",
    "/applist",
    "/appasset",
    "/launch",
    "/resume",
    "/cancel",
];

impl Shared {
    /// Handles one request; never fails.
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<Body>, Infallible> {
        let path = request.uri().path().to_owned();
        let response = if path.starts_with("/pin/oidc/") {
            if conn.tls.is_some() {
                xml_with_status(StatusCode::NOT_FOUND, &XmlReply::status(404))
            } else {
                self.single_sign_on(&path, &request, &conn).await
            }
        } else if path == "/pin/" || path == "/pin" {
            if conn.tls.is_some() {
                xml_with_status(StatusCode::NOT_FOUND, &XmlReply::status(404))
            } else {
                self.pin_page(request, &conn).await
            }
        } else if GAMESTREAM_PATHS.contains(&path.as_str()) {
            match Query::parse(request.uri().query()) {
                Ok(query) => self.gamestream(&path, &query, &conn).await,
                Err(e) => xml(&XmlReply::error(400, format!("Bad query string: {e}"))),
            }
        } else {
            xml_with_status(StatusCode::NOT_FOUND, &XmlReply::status(404))
        };
        debug!(
            http.path = %path,
            http.status = response.status().as_u16(),
            client = %conn.peer,
            tls = conn.tls.is_some(),
            "request"
        );
        Ok(response)
    }

    async fn pin_page(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        match *request.method() {
            Method::GET | Method::HEAD => raw(
                StatusCode::OK,
                "text/html; charset=utf-8",
                match self.pin.page().await {
                    Cow::Borrowed(page) => Bytes::from_static(page.as_bytes()),
                    Cow::Owned(page) => Bytes::from(page),
                },
            ),
            Method::POST => {
                if let Err((status, message)) = pin_page::check_headers(request.headers()) {
                    debug!(client = %conn.peer_ip(), %status, "PIN submission refused: {message}");
                    return text(status, message);
                }
                let who = match self.pin.attribute(conn.peer_ip(), request.headers()) {
                    Ok(who) => who,
                    Err((status, message)) => return text(status, message),
                };
                let body = Limited::new(request.into_body(), pin_page::MAX_BODY);
                match tokio::time::timeout(self.settings.body_timeout, body.collect()).await {
                    Err(_) => text(
                        StatusCode::REQUEST_TIMEOUT,
                        "The request body did not arrive in time".into(),
                    ),
                    Ok(Err(_)) => text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "The request body is unreadable or larger than {} bytes",
                            pin_page::MAX_BODY
                        ),
                    ),
                    Ok(Ok(collected)) => {
                        let (status, message) = self
                            .pin
                            .submit_as(conn.peer_ip(), who, &collected.to_bytes())
                            .await;
                        text(status, message)
                    }
                }
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Use GET or POST".into()),
        }
    }

    /// `GET /pin/oidc/login` and `/pin/oidc/callback` ([`crate::oidc`]).
    async fn single_sign_on(
        &self,
        path: &str,
        request: &Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        let Some(oidc) = self.pin.oidc() else {
            return text(
                StatusCode::NOT_FOUND,
                "Single sign-on is not configured on this server".into(),
            );
        };
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Use GET".into());
        }
        let query = request.uri().query().unwrap_or("");
        let failed = |e: oidc::OidcError| {
            text(
                e.status(),
                format!(
                    "Single sign-on failed: {e}.\nThe PIN is still waiting: go back to the PIN page \
                     (the link in the server log) and try again."
                ),
            )
        };
        match path {
            oidc::LOGIN_PATH => {
                let secret = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(name, _)| name == "secret")
                    .map(|(_, value)| value.into_owned());
                let host = request.headers().get(HOST).and_then(|h| h.to_str().ok());
                match oidc.begin(conn.peer_ip(), secret.as_deref(), host).await {
                    Ok(location) => redirect(&location, None),
                    Err(e) => failed(e),
                }
            }
            oidc::CALLBACK_PATH => match oidc.finish(conn.peer_ip(), query).await {
                Ok(done) => {
                    let fragment = done
                        .secret
                        .as_ref()
                        .map_or(String::new(), |s| format!("#{}", s.as_str()));
                    let cookie = format!(
                        "{}={}; Path=/pin/; Max-Age={}; HttpOnly; SameSite=Lax",
                        oidc::COOKIE_NAME,
                        done.token.value(),
                        oidc::LOGIN_TTL.as_secs()
                    );
                    redirect(
                        &format!("/pin/?sso={}{fragment}", done.user.as_str()),
                        Some(&cookie),
                    )
                }
                Err(e) => failed(e),
            },
            _ => xml_with_status(StatusCode::NOT_FOUND, &XmlReply::status(404)),
        }
    }

    async fn gamestream(&self, path: &str, query: &Query, conn: &ConnInfo) -> Response<Body> {
        let caller = match &conn.tls {
            None => None,
            Some(fingerprint) => match self.authorise(fingerprint.as_ref()).await {
                Ok(Some(caller)) => Some(caller),
                Ok(None) => {
                    return xml(&XmlReply::error(401, NOT_AUTHORIZED).with_query(path));
                }
                Err(reply) => return xml(&reply),
            },
        };
        match (path, &caller) {
            ("/serverinfo", _) => self.serverinfo(conn, caller.as_ref()).await,
            ("/pair", _) => self.pair(query, conn, caller.as_ref()).await,
            ("/unpair", _) => {
                let key = PairingKey::new(conn.peer_ip(), query.get("uniqueid"));
                let pin_secret = self.pairing.pin_secret_of(&key);
                if self.pairing.unpair(&key) {
                    info!(client = %conn.peer_ip(), "in-flight pairing abandoned by /unpair");
                    // Clients give up with /unpair when they detect a wrong PIN.
                    if let Some(pin_secret) = &pin_secret {
                        self.pin.pairing_finished(pin_secret, false);
                    }
                }
                xml(&XmlReply::ok())
            }
            (_, None) => {
                // HTTPS-only endpoints over plain HTTP: there is no certificate to authorise.
                xml(&XmlReply::error(401, NOT_AUTHORIZED).with_query(path))
            }
            ("/applist", Some(caller)) => match self.stores.apps.list().await {
                Ok(mut apps) => {
                    apps.retain(|app| caller.may_use(app.id));
                    xml(&launch::applist(&apps))
                }
                Err(e) => {
                    error!(error = %e, "app catalog failed");
                    xml(&XmlReply::error(
                        500,
                        "The app list is unavailable; see the server log",
                    ))
                }
            },
            ("/appasset", Some(caller)) => self.appasset(query, caller).await,
            ("/launch", Some(caller)) => self.launch(query, conn, caller).await,
            ("/resume", Some(caller)) => self.resume(query, conn, caller).await,
            ("/cancel", Some(caller)) => self.cancel(caller).await,
            _ => xml_with_status(StatusCode::NOT_FOUND, &XmlReply::status(404)),
        }
    }

    /// `Ok(None)`: not paired (or the pairing's user is gone).
    async fn authorise(&self, fingerprint: Option<&Fingerprint>) -> Result<Option<Caller>, XmlReply> {
        let Some(fingerprint) = fingerprint else {
            return Ok(None);
        };
        let internal = |what: &str, e: direwolf_core::Error| {
            error!(error = %e, "{what} store failed while authorising");
            XmlReply::error(500, "Internal server error while checking the client certificate")
        };
        let Some(pairing) = self
            .stores
            .pairings
            .get(fingerprint)
            .await
            .map_err(|e| internal("pairing", e))?
        else {
            debug!(pairing.fingerprint = %fingerprint, "certificate not paired");
            return Ok(None);
        };
        let Some(user) = self
            .stores
            .users
            .get(&pairing.user)
            .await
            .map_err(|e| internal("user", e))?
        else {
            crate::warn_throttled!(
                "paired-user-missing",
                pairing.fingerprint = %fingerprint,
                user = %pairing.user,
                "paired certificate of a user that no longer exists"
            );
            return Ok(None);
        };
        Ok(Some(Caller {
            user: pairing.user,
            fingerprint: fingerprint.clone(),
            account: user,
        }))
    }

    async fn serverinfo(&self, conn: &ConnInfo, caller: Option<&Caller>) -> Response<Body> {
        let local_ip = match (self.settings.external_address, conn.local_ip()) {
            (Some(IpAddr::V4(v4)), _) => v4,
            (_, IpAddr::V4(v4)) => v4,
            _ => Ipv4Addr::LOCALHOST,
        };
        let current_game = match caller {
            Some(caller) => self.launcher.current_app(&caller.user).await,
            None => None,
        };
        let info = ServerInfo {
            hostname: &self.settings.hostname,
            unique_id: &self.identity.identity().unique_id,
            codec_mode_support: self.settings.codec_mode_support,
            https_port: self.settings.https_port,
            external_port: self.settings.http_port,
            mac: &self.settings.mac,
            local_ip,
            display_modes: &self.settings.display_modes,
            paired: caller.is_some(),
            current_game,
        };
        xml(&info.to_xml())
    }

    async fn pair(&self, query: &Query, conn: &ConnInfo, caller: Option<&Caller>) -> Response<Body> {
        let key = PairingKey::new(conn.peer_ip(), query.get("uniqueid"));
        let outcome = if query.get("phrase") == Some("getservercert")
            || (query.contains("salt") && query.contains("clientcert"))
        {
            let request = Phase1Request {
                key,
                salt: query.get("salt"),
                client_cert: query.get("clientcert"),
                device_name: query.get("devicename"),
                pin_page_host: self.settings.external_address.unwrap_or(conn.local_ip()),
            };
            self.phase1.run(request).await
        } else if let Some(challenge) = query.get("clientchallenge") {
            self.pairing
                .client_challenge(&key, challenge)
                .map(|r| XmlReply::ok().leaf("paired", 1).leaf("challengeresponse", r))
        } else if let Some(response) = query.get("serverchallengeresp") {
            self.pairing
                .server_challenge_response(&key, response)
                .map(|s| XmlReply::ok().leaf("pairingsecret", s).leaf("paired", 1))
        } else if let Some(secret) = query.get("clientpairingsecret") {
            self.pair_phase4(&key, secret).await
        } else if query.get("phrase") == Some("pairchallenge") {
            match caller {
                Some(_) => Ok(XmlReply::ok().leaf("paired", 1)),
                None => Err(PairReject::bad_request("pairchallenge must be sent over HTTPS")),
            }
        } else {
            Err(PairReject::bad_request("Invalid pairing request"))
        };
        match outcome {
            Ok(reply) => xml(&reply),
            Err(reject) => {
                debug!(client = %conn.peer_ip(), status = reject.status, message = %reject.message, "pairing request refused");
                self.pairing_metrics.record(refusal_outcome(&reject));
                xml(&reject.to_xml())
            }
        }
    }

    async fn pair_phase4(&self, key: &PairingKey, secret: &str) -> Result<XmlReply, PairReject> {
        let pin_secret = self.pairing.pin_secret_of(key);
        // How the pairing ended, for the PIN page (a pairing link is used up only by a success).
        let finished = |paired: bool| {
            if let Some(pin_secret) = &pin_secret {
                self.pin.pairing_finished(pin_secret, paired);
            }
        };
        let completed = match self.pairing.client_pairing_secret(key, secret)? {
            Phase4::Mismatch => {
                info!(client = %key.ip(), "pairing failed: wrong PIN or bad client signature");
                self.pairing_metrics.record(PairingOutcome::WrongPin);
                finished(false);
                return Ok(XmlReply::ok().leaf("paired", 0));
            }
            Phase4::Paired(completed) => completed,
        };
        let save_failed = |what: &str, e: direwolf_core::Error| {
            finished(false);
            error!(error = %e, "cannot save the {what} of a new pairing");
            PairReject {
                status: 500,
                message: "Failed to save pairing".into(),
            }
        };
        self.stores
            .users
            .ensure(&completed.user)
            .await
            .map_err(|e| save_failed("user", e))?;
        let pairing = Pairing {
            fingerprint: completed.fingerprint.clone(),
            cert_pem: completed.cert_pem,
            user: completed.user.clone(),
            device_name: completed.device_name,
            paired_at: unix_now(),
        };
        // Durable and visible to the HTTPS authoriser before the reply: phase 5 follows at once.
        self.stores
            .pairings
            .put(pairing)
            .await
            .map_err(|e| save_failed("pairing", e))?;
        finished(true);
        info!(pairing.fingerprint = %completed.fingerprint, user = %completed.user, "client paired");
        self.pairing_metrics.record(PairingOutcome::Paired);
        Ok(XmlReply::ok().leaf("paired", 1))
    }

    async fn appasset(&self, query: &Query, caller: &Caller) -> Response<Body> {
        let app: AppId = match query.get("appid").map(str::parse) {
            Some(Ok(app)) if !caller.may_use(app) => {
                return xml(&XmlReply::error(404, format!("No image for app {app}")));
            }
            Some(Ok(app)) => app,
            Some(Err(e)) => return xml(&XmlReply::error(400, format!("Invalid appid: {e}"))),
            None => return xml(&XmlReply::error(400, "Missing appid parameter")),
        };
        match self.stores.apps.asset(app).await {
            Ok(Some(asset)) => raw(StatusCode::OK, &asset.content_type, asset.bytes),
            Ok(None) => xml(&XmlReply::error(404, format!("No image for app {app}"))),
            Err(e) => {
                error!(error = %e, "app catalog failed");
                xml(&XmlReply::error(
                    500,
                    "The app image is unavailable; see the server log",
                ))
            }
        }
    }

    async fn launch(&self, query: &Query, conn: &ConnInfo, caller: &Caller) -> Response<Body> {
        let request = match launch::parse_launch(query, &caller.requester(conn)) {
            Ok(request) => request,
            Err(reply) => return xml(&reply),
        };
        info!(user = %caller.user, app = %request.app, mode = %request.mode, "launch");
        if !caller.may_use(request.app) {
            info!(user = %caller.user, app = %request.app, "launch refused: the app is not allowed to this user");
            return xml(&launch::not_allowed(request.app));
        }
        // The launcher checks the app, and carries the launch through if the client hangs up.
        match self.launcher.launch(request).await {
            Ok(outcome) => xml(&launch::launch_ok(&outcome.session_url)),
            Err(e) => {
                log_failure("launch", &e);
                xml(&launch::failure(Verb::Launch, &e))
            }
        }
    }

    async fn resume(&self, query: &Query, conn: &ConnInfo, caller: &Caller) -> Response<Body> {
        let request = match launch::parse_resume(query, &caller.requester(conn)) {
            Ok(request) => request,
            Err(reply) => return xml(&reply),
        };
        info!(user = %caller.user, "resume");
        match self.launcher.resume(request).await {
            Ok(outcome) => xml(&launch::resume_ok(&outcome.session_url)),
            Err(e) => {
                log_failure("resume", &e);
                xml(&launch::failure(Verb::Resume, &e))
            }
        }
    }

    async fn cancel(&self, caller: &Caller) -> Response<Body> {
        info!(user = %caller.user, "cancel");
        match self.launcher.cancel(&caller.user).await {
            Ok(()) => xml(&launch::cancel_ok()),
            Err(e) => {
                log_failure("cancel", &e);
                xml(&launch::failure(Verb::Cancel, &e))
            }
        }
    }
}

fn log_failure(verb: &str, e: &LaunchError) {
    match e {
        LaunchError::Backend(_) => error!(error = %e, "{verb} failed"),
        _ => info!(error = %e, "{verb} failed"),
    }
}

/// The outcome a refused pairing request counts as.
fn refusal_outcome(reject: &PairReject) -> PairingOutcome {
    if reject.status >= 500 && reject.status != 503 {
        PairingOutcome::Failed
    } else if reject.message == PIN_TIMED_OUT {
        PairingOutcome::PinTimeout
    } else {
        PairingOutcome::Refused
    }
}
