//! OpenID Connect login for the PIN page: the authorization code flow with PKCE (OpenID Connect
//! Core 1.0 section 3.1, RFC 7636) against any provider that publishes
//! `/.well-known/openid-configuration`.
//!
//! 1. `GET /pin/oidc/login?secret=SECRET` ([`OidcLogin::begin`]): discovery (cached), then a
//!    redirect to the provider's authorization endpoint with a PKCE S256 challenge and a random
//!    `state` and `nonce`, kept here for [`PENDING_TTL`] and usable once; the pending PIN's secret
//!    rides along server-side.
//! 2. `GET /pin/oidc/callback?code&state` ([`OidcLogin::finish`]): the state is taken (a replay
//!    finds nothing), the code exchanged with the verifier, the ID token verified (signature
//!    against the provider's JWKS, `iss`, `aud`, `exp`, `nonce`), its user claim mapped to a
//!    direwolf user ([`user_from_claims`]). The browser gets an HttpOnly, `SameSite=Lax` cookie
//!    holding a one-time login ([`LOGIN_TTL`]) and goes back to the PIN page, where that user
//!    enters the PIN ([`crate::pin_page::PinEntry`]); the pairing belongs to them.
//!
//! The admin port's web UI logs in at the same provider ([`OidcLogin::begin_web_ui`],
//! [`OidcLogin::finish_web_ui`]): the same discovery, PKCE, state, nonce and ID token checks,
//! with its own redirect URL; a login started for one cannot finish at the other.
//!
//! A provider that is down or answers garbage is a 502, a bad or replayed callback a 400, a
//! refused login or an ID token that fails verification a 401; each is an audit line, and the
//! PIN stays pending. Tokens, codes and secrets are never logged.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use direwolf_core::{PairSecret, UserName};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::login_name;

/// Where the PIN page's "Log in with single sign-on" link points.
pub const LOGIN_PATH: &str = "/pin/oidc/login";
/// The redirect URL's path.
pub const CALLBACK_PATH: &str = "/pin/oidc/callback";
/// The cookie holding a finished login.
pub const COOKIE_NAME: &str = "direwolf_sso";
/// How long a login started at the provider may take to come back.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long a finished login may be used to enter a PIN.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The default claim naming the user.
pub const DEFAULT_USER_CLAIM: &str = "preferred_username";

/// How long one request to the provider may take (connecting, answering, sending the body).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
const MAX_RESPONSE: usize = 1 << 20;
/// How long a discovery document is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Logins kept at most (pending and finished, each); past it the oldest go.
const MAX_LOGINS: usize = 1024;
/// Clock skew allowed on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// How direwolf is registered at the provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL (`https://id.example.com/realms/games`).
    pub issuer: String,
    /// The client ID.
    pub client_id: String,
    /// The client secret (`None`: a public client, PKCE only).
    pub client_secret: Option<String>,
    /// The redirect URL registered at the provider (`None`: `http://HOST/pin/oidc/callback`,
    /// `HOST` being the address the PIN page was reached at).
    pub redirect_url: Option<String>,
    /// The ID token claim naming the user ([`DEFAULT_USER_CLAIM`]).
    pub user_claim: String,
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "(hidden)"))
            .field("redirect_url", &self.redirect_url)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

/// Why a login failed. The messages name no token, code or secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The provider could not be reached (refused, timed out).
    #[error("the single sign-on provider is unreachable ({what}): {reason}")]
    Unreachable {
        /// What was asked.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The provider answered something unusable.
    #[error("the single sign-on provider answered something unusable ({what}): {reason}")]
    Garbage {
        /// What was asked.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The callback's state is unknown, expired or already used.
    #[error("this login is unknown, expired or was already used")]
    UnknownState,
    /// The callback or login request is malformed.
    #[error("malformed single sign-on request: {0}")]
    BadRequest(String),
    /// The provider refused the login or the code.
    #[error("the single sign-on provider refused the login: {0}")]
    Refused(String),
    /// The ID token failed verification.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
    /// The ID token names no usable user.
    #[error("the ID token names no usable user (claim {claim:?}, else the e-mail address)")]
    NoUser {
        /// The claim looked at first.
        claim: String,
    },
    /// The configuration cannot be used ([`OidcLogin::new`]).
    #[error("unusable single sign-on configuration: {0}")]
    Config(String),
}

impl OidcError {
    /// The HTTP status the browser gets.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::Unreachable { .. } | OidcError::Garbage { .. } => StatusCode::BAD_GATEWAY,
            OidcError::UnknownState | OidcError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OidcError::Refused(_) | OidcError::InvalidToken(_) | OidcError::NoUser { .. } => {
                StatusCode::UNAUTHORIZED
            }
            OidcError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A random URL-safe token of 256 bits (state, nonce, PKCE verifier, login).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 section 4.2).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The direwolf user an ID token's `claims` name: `claim`, else (when it is missing) the local
/// part of `email`, mapped as a trusted proxy's user name ([`login_name::user_name`]).
pub fn user_from_claims(claims: &Map<String, Value>, claim: &str) -> Option<UserName> {
    let named = claims
        .get(claim)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty());
    let named = named.or_else(|| claims.get("email").and_then(Value::as_str));
    named.and_then(login_name::user_name)
}

/// A finished login's cookie value; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginToken(String);

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginToken(..)")
    }
}

impl LoginToken {
    /// The cookie value.
    pub fn value(&self) -> &str {
        &self.0
    }

    /// The login cookie of `headers`, if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<LoginToken> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .map(|value| LoginToken(value.to_owned()))
    }
}

/// A login sent to the provider, waiting for its callback.
#[derive(Debug, Clone)]
struct Pending {
    nonce: String,
    verifier: String,
    redirect_uri: String,
    secret: Option<PairSecret>,
    started: Instant,
    purpose: Purpose,
}

/// Which page a login was started from, and may finish at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    PinPage,
    WebUi,
}

impl Purpose {
    /// The `actor` of its audit lines.
    fn actor(self) -> &'static str {
        match self {
            Purpose::PinPage => "pin-page",
            Purpose::WebUi => "web-ui",
        }
    }
}

/// A web UI login sent to the provider: where to send the browser, and the `state` the browser
/// must bring back (the web UI binds it to a cookie).
#[derive(Debug)]
pub struct WebUiStart {
    /// The provider's authorization URL.
    pub location: String,
    /// The login's `state`.
    pub state: String,
}

/// Entries that expire after a time to live and are used once.
#[derive(Debug)]
struct Expiring<T> {
    ttl: Duration,
    entries: HashMap<String, (T, Instant)>,
}

impl<T> Expiring<T> {
    fn new(ttl: Duration) -> Self {
        Expiring {
            ttl,
            entries: HashMap::new(),
        }
    }

    fn insert(&mut self, key: String, value: T, now: Instant) {
        self.entries
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
        if self.entries.len() >= MAX_LOGINS
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key, (value, now));
    }

    /// The entry under `key` if it has not expired, removed (used once).
    fn take(&mut self, key: &str, now: Instant) -> Option<T> {
        let (value, at) = self.entries.remove(key)?;
        (now.saturating_duration_since(at) < self.ttl).then_some(value)
    }

    /// The entry under `key` if it has not expired, left in place.
    fn peek(&self, key: &str, now: Instant) -> Option<&T> {
        let (value, at) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then_some(value)
    }

    /// Puts back an entry taken at `at`.
    fn restore(&mut self, key: String, value: T, at: Instant) {
        self.entries.insert(key, (value, at));
    }
}

/// The fields of the discovery document direwolf uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A finished login: who, the cookie for the PIN page, and the pending PIN's secret.
#[derive(Debug)]
pub struct Finished {
    /// The user the provider vouched for.
    pub user: UserName,
    /// The cookie value of the login ([`COOKIE_NAME`]).
    pub token: LoginToken,
    /// The secret of the PIN the login was started for.
    pub secret: Option<PairSecret>,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// OpenID Connect logins for the PIN page.
pub struct OidcLogin {
    config: OidcConfig,
    http: HttpClient,
    discovery: Mutex<Option<(Arc<Discovery>, Instant)>>,
    jwks: Mutex<Option<Arc<JwkSet>>>,
    pending: Mutex<Expiring<Pending>>,
    logins: Mutex<Expiring<UserName>>,
}

impl fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLogin")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An audit line about a single sign-on of the PIN page (never a token, code or secret).
fn audit(client: IpAddr, user: &str, outcome: &str, what: &str) {
    audit_as(Purpose::PinPage, client, user, outcome, what);
}

/// An audit line about a single sign-on started for `purpose`.
fn audit_as(purpose: Purpose, client: IpAddr, user: &str, outcome: &str, what: &str) {
    let actor = purpose.actor();
    if outcome == "ok" {
        tracing::info!(target: "direwolf::audit", actor, client = %client, user = %user, action = "oidc-login", outcome, "{what}");
    } else {
        tracing::warn!(target: "direwolf::audit", actor, client = %client, user = %user, action = "oidc-login", outcome, "{what}");
    }
}

/// The causes of `e`, joined (hyper's own message is only "client error (Connect)").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `host` (a `Host` header) is a plain host or address with an optional port.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

impl OidcLogin {
    /// Logins against the provider of `config`.
    ///
    /// # Errors
    /// [`OidcError::Config`]: an issuer or redirect URL that is not an absolute `http`/`https`
    /// URL, an empty client ID or user claim.
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let invalid = OidcError::Config;
        for (what, url) in [
            ("issuer", Some(&config.issuer)),
            ("redirect URL", config.redirect_url.as_ref()),
        ] {
            if let Some(url) = url {
                let parsed = url::Url::parse(url).map_err(|e| invalid(format!("the {what} {url:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid(format!("the {what} {url:?} is not an http(s) URL")));
                }
            }
        }
        if config.client_id.trim().is_empty() {
            return Err(invalid("the client ID is empty".into()));
        }
        if config.user_claim.trim().is_empty() {
            return Err(invalid("the user claim is empty".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 && config.issuer.starts_with("https:") {
            tracing::warn!(
                "no CA certificates found on this system: the OIDC provider's certificate cannot be verified"
            );
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(format!("TLS client configuration: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(OidcLogin {
            config,
            http: Client::builder(TokioExecutor::new()).build(https),
            discovery: Mutex::new(None),
            jwks: Mutex::new(None),
            pending: Mutex::new(Expiring::new(PENDING_TTL)),
            logins: Mutex::new(Expiring::new(LOGIN_TTL)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Starts a login for `client`, who came to the PIN page at `host` (the `Host` header) for
    /// the pending PIN `secret`: the provider's authorization URL to redirect to.
    ///
    /// # Errors
    /// 502 when discovery fails, 400 for a malformed secret or host. Nothing is kept then.
    pub async fn begin(
        &self,
        client: IpAddr,
        secret: Option<&str>,
        host: Option<&str>,
    ) -> Result<String, OidcError> {
        let result = self.try_begin(secret, host).await;
        if let Err(e) = &result {
            audit(
                client,
                "-",
                "refused",
                &format!("single sign-on not started: {e}"),
            );
        }
        result
    }

    async fn try_begin(&self, secret: Option<&str>, host: Option<&str>) -> Result<String, OidcError> {
        let secret = match secret.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                PairSecret::from_str(s)
                    .map_err(|_| OidcError::BadRequest("malformed pairing secret".into()))?,
            ),
        };
        let redirect_uri = match (&self.config.redirect_url, host) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) if plain_host(host) => format!("http://{host}{CALLBACK_PATH}"),
            (None, _) => {
                return Err(OidcError::BadRequest(
                    "no usable Host header to build the redirect URL from (set --oidc-redirect-url)".into(),
                ));
            }
        };
        let (url, _) = self.authorize(redirect_uri, secret, Purpose::PinPage).await?;
        Ok(url)
    }

    /// Starts a web UI login for `client`, the provider to come back to `redirect_uri` (the
    /// admin port's callback, registered at the provider).
    ///
    /// # Errors
    /// 502 when discovery fails, 400 for a redirect URL that is not an absolute http(s) URL.
    /// Nothing is kept then.
    pub async fn begin_web_ui(&self, client: IpAddr, redirect_uri: &str) -> Result<WebUiStart, OidcError> {
        let parsed = url::Url::parse(redirect_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let result = match parsed {
            None => Err(OidcError::BadRequest(format!(
                "the redirect URL {redirect_uri:?} is not an http(s) URL"
            ))),
            Some(_) => self
                .authorize(redirect_uri.to_owned(), None, Purpose::WebUi)
                .await
                .map(|(location, state)| WebUiStart { location, state }),
        };
        if let Err(e) = &result {
            let what = format!("single sign-on not started: {e}");
            audit_as(Purpose::WebUi, client, "-", "refused", &what);
        }
        result
    }

    /// The provider's authorization URL for a new login, kept under its state; and the state.
    async fn authorize(
        &self,
        redirect_uri: String,
        secret: Option<PairSecret>,
        purpose: Purpose,
    ) -> Result<(String, String), OidcError> {
        let discovery = self.discovery().await?;
        let mut url = url::Url::parse(&discovery.authorization_endpoint).map_err(|e| OidcError::Garbage {
            what: "discovery",
            reason: format!("authorization_endpoint: {e}"),
        })?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", "openid profile email")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &code_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        self.pending.lock().insert(
            state.clone(),
            Pending {
                nonce,
                verifier,
                redirect_uri,
                secret,
                started: Instant::now(),
                purpose,
            },
            Instant::now(),
        );
        Ok((url.into(), state))
    }

    /// Finishes the login of `client` whose provider redirected back with `query` (the
    /// callback's query string).
    ///
    /// # Errors
    /// [`OidcError`], each with its status; the state is used up either way.
    pub async fn finish(&self, client: IpAddr, query: &str) -> Result<Finished, OidcError> {
        let result = self
            .try_finish(query, Purpose::PinPage)
            .await
            .map(|(user, pending)| {
                let token = random_token();
                self.logins
                    .lock()
                    .insert(token.clone(), user.clone(), Instant::now());
                Finished {
                    user,
                    token: LoginToken(token),
                    secret: pending.secret,
                }
            });
        match result {
            Ok(finished) => {
                audit(
                    client,
                    finished.user.as_str(),
                    "ok",
                    "single sign-on: the user may enter a PIN",
                );
                Ok(finished)
            }
            Err(e) => {
                audit(client, "-", "refused", &format!("single sign-on refused: {e}"));
                Err(e)
            }
        }
    }

    /// Finishes a web UI login of `client` (started by [`OidcLogin::begin_web_ui`]) whose
    /// provider redirected back with `query`: the user the provider vouched for.
    ///
    /// # Errors
    /// As [`OidcLogin::finish`]; a state started for the PIN page is unknown here.
    pub async fn finish_web_ui(&self, client: IpAddr, query: &str) -> Result<UserName, OidcError> {
        match self.try_finish(query, Purpose::WebUi).await {
            Ok((user, _)) => {
                audit_as(
                    Purpose::WebUi,
                    client,
                    user.as_str(),
                    "ok",
                    "single sign-on: web UI login",
                );
                Ok(user)
            }
            Err(e) => {
                let what = format!("single sign-on refused: {e}");
                audit_as(Purpose::WebUi, client, "-", "refused", &what);
                Err(e)
            }
        }
    }

    async fn try_finish(&self, query: &str, purpose: Purpose) -> Result<(UserName, Pending), OidcError> {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let state = params
            .get("state")
            .ok_or_else(|| OidcError::BadRequest("the callback has no state".into()))?;
        let pending = self.pending.lock().take(state, Instant::now());
        let pending = pending
            .filter(|p| p.purpose == purpose)
            .ok_or(OidcError::UnknownState)?;
        if let Some(error) = params.get("error") {
            let description = params.get("error_description").map(String::as_str).unwrap_or("");
            return Err(OidcError::Refused(
                format!("{error} {description}").trim().to_owned(),
            ));
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OidcError::BadRequest("the callback has no code".into()))?;
        let discovery = self.discovery().await?;
        let id_token = self.exchange(&discovery, code, &pending).await?;
        let claims = self.verify(&discovery, &id_token, &pending.nonce).await?;
        let user = user_from_claims(&claims, &self.config.user_claim).ok_or_else(|| OidcError::NoUser {
            claim: self.config.user_claim.clone(),
        })?;
        tracing::debug!(
            started.secs = pending.started.elapsed().as_secs(),
            "single sign-on came back"
        );
        Ok((user, pending))
    }

    /// A finished login for `user`, as if the provider had vouched for them (tests only).
    #[cfg(test)]
    pub(crate) fn log_in_for_test(&self, user: UserName) -> LoginToken {
        let token = random_token();
        self.logins.lock().insert(token.clone(), user, Instant::now());
        LoginToken(token)
    }

    /// The user of a finished login, if it is still valid (not used up).
    pub fn user_of(&self, token: &LoginToken) -> Option<UserName> {
        self.logins.lock().peek(&token.0, Instant::now()).cloned()
    }

    /// Uses up a finished login: its user, or `None` if it expired or was used; give it back with
    /// [`OidcLogin::restore`] if the PIN could not be delivered.
    pub fn take(&self, token: &LoginToken) -> Option<(UserName, Instant)> {
        let now = Instant::now();
        let mut logins = self.logins.lock();
        let at = logins.entries.get(&token.0).map(|(_, at)| *at)?;
        logins.take(&token.0, now).map(|user| (user, at))
    }

    /// Gives back a login taken with [`OidcLogin::take`].
    pub fn restore(&self, token: &LoginToken, taken: (UserName, Instant)) {
        self.logins.lock().restore(token.0.clone(), taken.0, taken.1);
    }

    /// The discovery document, fetched once an hour at most.
    async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        if let Some((doc, at)) = self.discovery.lock().as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(doc.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self.get(&url, "discovery").await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| OidcError::Garbage {
            what: "discovery",
            reason: format!("not an OpenID Connect discovery document: {e}"),
        })?;
        if doc.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(OidcError::Garbage {
                what: "discovery",
                reason: format!(
                    "it names the issuer {:?}, not {:?}",
                    doc.issuer, self.config.issuer
                ),
            });
        }
        let doc = Arc::new(doc);
        *self.discovery.lock() = Some((doc.clone(), Instant::now()));
        Ok(doc)
    }

    /// The provider's keys; fetched again when `refresh` (a key ID was not found).
    async fn jwks(&self, discovery: &Discovery, refresh: bool) -> Result<Arc<JwkSet>, OidcError> {
        if !refresh && let Some(keys) = self.jwks.lock().as_ref() {
            return Ok(keys.clone());
        }
        let body = self.get(&discovery.jwks_uri, "keys").await?;
        let keys: JwkSet = serde_json::from_slice(&body).map_err(|e| OidcError::Garbage {
            what: "keys",
            reason: format!("not a JSON Web Key Set: {e}"),
        })?;
        let keys = Arc::new(keys);
        *self.jwks.lock() = Some(keys.clone());
        Ok(keys)
    }

    /// Exchanges `code` for an ID token (the token endpoint, with the PKCE verifier).
    async fn exchange(
        &self,
        discovery: &Discovery,
        code: &str,
        pending: &Pending,
    ) -> Result<String, OidcError> {
        const WHAT: &str = "token";
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &pending.redirect_uri)
            .append_pair("code_verifier", &pending.verifier)
            .append_pair("client_id", &self.config.client_id)
            .finish();
        let uri = uri(&discovery.token_endpoint, WHAT)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(secret) = &self.config.client_secret {
            // client_secret_basic: both parts form-encoded first (RFC 6749 section 2.3.1).
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(&self.config.client_id),
                encode(secret)
            ));
            request = request.header(AUTHORIZATION, format!("Basic {basic}"));
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| OidcError::Garbage {
                what: WHAT,
                reason: e.to_string(),
            })?;
        let (status, body) = self.send(request, WHAT).await?;
        if !status.is_success() {
            // A code the provider refuses (used, expired, wrong verifier) is the callback's fault.
            return match serde_json::from_slice::<TokenError>(&body) {
                Ok(e) if status.is_client_error() => Err(OidcError::Refused(
                    format!("{} {}", e.error, e.error_description.unwrap_or_default())
                        .trim()
                        .to_owned(),
                )),
                _ => Err(OidcError::Garbage {
                    what: WHAT,
                    reason: format!("HTTP {status}"),
                }),
            };
        }
        // Never echo the body: it holds tokens.
        let response: TokenResponse = serde_json::from_slice(&body).map_err(|_| OidcError::Garbage {
            what: WHAT,
            reason: "the answer is not a JSON token response".into(),
        })?;
        response.id_token.ok_or_else(|| OidcError::Garbage {
            what: WHAT,
            reason: "the answer has no id_token".into(),
        })
    }

    /// Verifies `id_token` (OpenID Connect Core 1.0 section 3.1.3.7): its claims.
    async fn verify(
        &self,
        discovery: &Discovery,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| OidcError::InvalidToken(format!("malformed: {e}")))?;
        if !asymmetric(header.alg) {
            return Err(OidcError::InvalidToken(format!(
                "signed with {:?}; only public-key signatures are accepted",
                header.alg
            )));
        }
        let mut keys = self.jwks(discovery, false).await?;
        let find = |keys: &JwkSet| match &header.kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        };
        let jwk = match find(&keys) {
            Some(jwk) => jwk,
            None => {
                // The provider may have rotated its keys.
                keys = self.jwks(discovery, true).await?;
                find(&keys).ok_or_else(|| {
                    OidcError::InvalidToken("signed with a key the provider does not publish".into())
                })?
            }
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OidcError::InvalidToken(format!("the provider's key is unusable: {e}")))?;
        verify_claims(
            id_token,
            &key,
            header.alg,
            discovery,
            &self.config.client_id,
            nonce,
        )
    }

    async fn get(&self, url: &str, what: &'static str) -> Result<Bytes, OidcError> {
        let request = Request::builder()
            .uri(uri(url, what)?)
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| OidcError::Garbage {
                what,
                reason: e.to_string(),
            })?;
        let (status, body) = self.send(request, what).await?;
        if status != StatusCode::OK {
            return Err(OidcError::Garbage {
                what,
                reason: format!("HTTP {status} from {url}"),
            });
        }
        Ok(body)
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        what: &'static str,
    ) -> Result<(StatusCode, Bytes), OidcError> {
        let unreachable = |reason: String| OidcError::Unreachable { what, reason };
        let response = tokio::time::timeout(HTTP_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {HTTP_TIMEOUT:?}")))?
            .map_err(|e| unreachable(causes(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE);
        let body = tokio::time::timeout(HTTP_TIMEOUT, body.collect())
            .await
            .map_err(|_| unreachable(format!("the answer did not arrive within {HTTP_TIMEOUT:?}")))?
            .map_err(|e| OidcError::Garbage {
                what,
                reason: format!("unreadable or larger than {MAX_RESPONSE} bytes: {e}"),
            })?;
        Ok((status, body.to_bytes()))
    }
}

/// Checks an ID token's signature with `key` and its `iss`, `aud`, `exp` and `nonce`.
fn verify_claims(
    id_token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    discovery: &Discovery,
    client_id: &str,
    nonce: &str,
) -> Result<Map<String, Value>, OidcError> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&discovery.issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        OidcError::InvalidToken(match e.kind() {
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::InvalidAudience => "issued for another client".into(),
            ErrorKind::InvalidIssuer => "issued by another issuer".into(),
            other => format!("{other:?}"),
        })
    })?;
    if data.claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(OidcError::InvalidToken("its nonce is not this login's".into()));
    }
    Ok(data.claims)
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn uri(url: &str, what: &'static str) -> Result<http::Uri, OidcError> {
    url.parse::<http::Uri>().map_err(|e| OidcError::Garbage {
        what,
        reason: format!("bad URL {url:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;

    use super::*;

    #[test]
    fn pkce_challenge_is_rfc_7636s() {
        // RFC 7636 Appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        // 43 characters: the shortest verifier RFC 7636 allows, 256 bits.
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn a_state_is_used_once_and_expires() {
        let mut pending = Expiring::new(Duration::from_secs(600));
        let t0 = Instant::now();
        pending.insert("s1".into(), 1, t0);
        pending.insert("s2".into(), 2, t0);
        assert_eq!(pending.take("s1", t0 + Duration::from_secs(10)), Some(1));
        assert_eq!(pending.take("s1", t0 + Duration::from_secs(10)), None, "replayed");
        assert_eq!(pending.take("s2", t0 + Duration::from_secs(600)), None, "expired");
        assert_eq!(pending.take("unknown", t0), None);
        // Expired entries go when new ones come; the table stays bounded.
        pending.insert("s3".into(), 3, t0);
        for i in 0..(MAX_LOGINS + 10) {
            pending.insert(format!("n{i}"), 0, t0 + Duration::from_secs(601));
        }
        assert_eq!(pending.entries.len(), MAX_LOGINS);
        assert!(pending.peek("s3", t0).is_none());
    }

    #[test]
    fn the_user_claim_else_the_email_names_the_user() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let user =
            |c: &Map<String, Value>, claim: &str| user_from_claims(c, claim).map(|u| u.as_str().to_owned());
        let both = claims(json!({"preferred_username": "Ada.Lovelace", "email": "countess@example.com"}));
        assert_eq!(user(&both, "preferred_username").as_deref(), Some("ada-lovelace"));
        assert_eq!(user(&both, "email").as_deref(), Some("countess"));
        let email_only = claims(json!({"email": "John.Doe@example.com", "preferred_username": ""}));
        assert_eq!(
            user(&email_only, "preferred_username").as_deref(),
            Some("john-doe")
        );
        assert_eq!(user(&claims(json!({"sub": "x"})), "preferred_username"), None);
        assert_eq!(
            user(
                &claims(json!({"preferred_username": "..."})),
                "preferred_username"
            ),
            None
        );
        assert_eq!(
            user(&claims(json!({"preferred_username": 7})), "preferred_username"),
            None
        );
    }

    #[test]
    fn the_login_cookie_is_read_and_never_shown() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=b; direwolf_sso=tok123 ; c=d".parse().unwrap());
        let token = LoginToken::from_headers(&headers).unwrap();
        assert_eq!(token, LoginToken("tok123".into()));
        assert_eq!(format!("{token:?}"), "LoginToken(..)");
        headers.insert(COOKIE, "direwolf_sso=".parse().unwrap());
        assert_eq!(LoginToken::from_headers(&headers), None);
        let config = OidcConfig {
            issuer: "https://id.example.com".into(),
            client_id: "direwolf".into(),
            client_secret: Some("s3cr3t-value".into()),
            redirect_url: None,
            user_claim: DEFAULT_USER_CLAIM.into(),
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused() {
        let good = OidcConfig {
            issuer: "https://id.example.com/realms/games".into(),
            client_id: "direwolf".into(),
            client_secret: None,
            redirect_url: Some("http://games.example.com:47989/pin/oidc/callback".into()),
            user_claim: DEFAULT_USER_CLAIM.into(),
        };
        assert!(OidcLogin::new(good.clone()).is_ok());
        let bad = [
            OidcConfig {
                issuer: "id.example.com".into(),
                ..good.clone()
            },
            OidcConfig {
                issuer: "ftp://id.example.com".into(),
                ..good.clone()
            },
            OidcConfig {
                redirect_url: Some("/pin/oidc/callback".into()),
                ..good.clone()
            },
            OidcConfig {
                client_id: " ".into(),
                ..good.clone()
            },
            OidcConfig {
                user_claim: String::new(),
                ..good
            },
        ];
        for config in bad {
            let e = OidcLogin::new(config.clone()).unwrap_err();
            assert!(matches!(e, OidcError::Config(_)), "{config:?}: {e}");
        }
    }

    #[test]
    fn host_headers_are_checked_before_becoming_a_redirect_url() {
        assert!(plain_host("192.0.2.10:47989"));
        assert!(plain_host("[2001:db8::1]:47989"));
        assert!(plain_host("games.example.com"));
        assert!(!plain_host(""));
        assert!(!plain_host("evil.example/x?"));
        assert!(!plain_host("a@b"));
    }

    /// An RSA key pair as a JWS signing key and a JWK.
    fn keys(kid: &str) -> (EncodingKey, DecodingKey) {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }))
        .unwrap();
        (encoding, DecodingKey::from_jwk(&jwk).unwrap())
    }

    #[test]
    fn id_tokens_are_checked_for_signature_issuer_audience_expiry_and_nonce() {
        let discovery = Discovery {
            issuer: "https://id.example.com".into(),
            authorization_endpoint: "https://id.example.com/auth".into(),
            token_endpoint: "https://id.example.com/token".into(),
            jwks_uri: "https://id.example.com/jwks".into(),
        };
        let (signing, verifying) = keys("k1");
        let (other_signing, _) = keys("k2");
        let now = jsonwebtoken::get_current_timestamp();
        let good = json!({
            "iss": "https://id.example.com", "aud": "direwolf", "sub": "42",
            "exp": now + 300, "iat": now, "nonce": "n0nce", "preferred_username": "ada",
        });
        let sign = |claims: &Value, key: &EncodingKey| {
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, key).unwrap()
        };
        let check = |token: &str| {
            verify_claims(
                token,
                &verifying,
                Algorithm::RS256,
                &discovery,
                "direwolf",
                "n0nce",
            )
        };
        let claims = check(&sign(&good, &signing)).unwrap();
        assert_eq!(claims["preferred_username"], "ada");
        let with = |field: &str, value: Value| {
            let mut claims = good.clone();
            claims[field] = value;
            sign(&claims, &signing)
        };
        for (token, why) in [
            (sign(&good, &other_signing), "bad signature"),
            (with("aud", json!("another-client")), "issued for another client"),
            (
                with("iss", json!("https://evil.example.com")),
                "issued by another issuer",
            ),
            (with("exp", json!(now - 3600)), "expired"),
            (with("nonce", json!("replayed")), "its nonce is not this login's"),
        ] {
            match check(&token) {
                Err(OidcError::InvalidToken(reason)) => assert_eq!(reason, why),
                other => panic!("{why}: {other:?}"),
            }
        }
        let mut no_nonce = good.clone();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(check(&sign(&no_nonce, &signing)).is_err());
        assert_eq!(
            OidcError::InvalidToken(String::new()).status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(!asymmetric(Algorithm::HS256));
    }

    /// A stand-in provider on 127.0.0.1 for the token answers a real provider will not give on
    /// demand: discovery and keys as published, the token endpoint's status and body set by the
    /// test. (The real provider runs in `bins/tests/oidc_login.rs`.)
    struct FakeProvider {
        issuer: String,
        token_reply: Arc<Mutex<(u16, String)>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FakeProvider {
        async fn start(jwks: Value) -> FakeProvider {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let issuer = format!("http://{}", listener.local_addr().unwrap());
            let token_reply = Arc::new(Mutex::new((500, String::new())));
            let (reply, base) = (token_reply.clone(), issuer.clone());
            let task = tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 8192];
                    // The head and, for the token request, its short form body.
                    while let Ok(n) = stream.read(&mut buf).await {
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request);
                        if n == 0
                            || text.contains("\r\n\r\n")
                                && (text.starts_with("GET") || text.contains("grant_type"))
                        {
                            break;
                        }
                    }
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("");
                    let (status, body) = match path {
                        "/.well-known/openid-configuration" => (
                            200,
                            json!({
                                "issuer": base, "authorization_endpoint": format!("{base}/auth"),
                                "token_endpoint": format!("{base}/token"), "jwks_uri": format!("{base}/jwks"),
                            })
                            .to_string(),
                        ),
                        "/jwks" => (200, jwks.to_string()),
                        "/token" => reply.lock().clone(),
                        _ => (404, String::new()),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                }
            });
            FakeProvider {
                issuer,
                token_reply,
                task,
            }
        }
    }

    #[tokio::test]
    async fn bad_token_answers_and_id_tokens_are_refused_and_a_state_works_once() {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let signing = EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes());
        let (other, _) = keys("k1");
        let jwks = json!({"keys": [{
            "kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }]});
        let mut provider = FakeProvider::start(jwks).await;
        let login = OidcLogin::new(OidcConfig {
            issuer: provider.issuer.clone(),
            client_id: "direwolf".into(),
            client_secret: None,
            redirect_url: None,
            user_claim: DEFAULT_USER_CLAIM.into(),
        })
        .unwrap();
        let ip = IpAddr::from([192, 0, 2, 1]);
        let secret = PairSecret::generate();
        // Starts a login; the state and nonce the provider would see.
        let begin = || async {
            let url = login
                .begin(ip, Some(secret.as_str()), Some("192.0.2.10:47989"))
                .await
                .unwrap();
            let url = url::Url::parse(&url).unwrap();
            let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).unwrap().1.into_owned();
            assert_eq!(param("code_challenge_method"), "S256");
            assert_eq!(param("redirect_uri"), "http://192.0.2.10:47989/pin/oidc/callback");
            (param("state"), param("nonce"))
        };
        let now = jsonwebtoken::get_current_timestamp();
        let id_token = |nonce: &str, change: &dyn Fn(&mut Value), key: &EncodingKey| {
            let mut claims = json!({
                "iss": provider.issuer, "aud": "direwolf", "sub": "42", "exp": now + 300,
                "iat": now, "nonce": nonce, "preferred_username": "Ada.Lovelace",
            });
            change(&mut claims);
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("k1".into());
            jsonwebtoken::encode(&header, &claims, key).unwrap()
        };
        let answer = |status: u16, body: String| *provider.token_reply.lock() = (status, body);
        let finish = |state: String| {
            let login = &login;
            async move { login.finish(ip, &format!("code=the-code&state={state}")).await }
        };
        let keep = |_: &mut Value| {};

        // Garbage from the token endpoint: 502.
        for (status, body) in [
            (200, "<html>oops</html>".to_owned()),
            (500, String::new()),
            (200, "{}".to_owned()),
        ] {
            let (state, _) = begin().await;
            answer(status, body.clone());
            let e = finish(state).await.unwrap_err();
            assert!(
                matches!(e, OidcError::Garbage { what: "token", .. }),
                "{body}: {e}"
            );
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        }
        // The provider refuses the code: 401.
        let (state, _) = begin().await;
        answer(
            400,
            json!({"error": "invalid_grant", "error_description": "grant request is invalid"}).to_string(),
        );
        let e = finish(state).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(e.to_string().contains("invalid_grant"), "{e}");
        // ID tokens that fail a check: 401.
        type Change<'a> = &'a dyn Fn(&mut Value);
        let cases: [(Change, &EncodingKey, &str); 5] = [
            (&keep, &other, "bad signature"),
            (
                &|c| c["aud"] = json!("another-client"),
                &signing,
                "issued for another client",
            ),
            (&|c| c["exp"] = json!(now - 3600), &signing, "expired"),
            (
                &|c| c["nonce"] = json!("another login's"),
                &signing,
                "its nonce is not this login's",
            ),
            (
                &|c| c["preferred_username"] = json!("!!!"),
                &signing,
                "names no usable user",
            ),
        ];
        for (change, key, why) in cases {
            let (state, nonce) = begin().await;
            answer(
                200,
                json!({"id_token": id_token(&nonce, change, key), "token_type": "Bearer"}).to_string(),
            );
            let e = finish(state).await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{why}: {e}");
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // A good one: the user, a login, the PIN's secret; the same state again is a 400.
        let (state, nonce) = begin().await;
        answer(
            200,
            json!({"id_token": id_token(&nonce, &keep, &signing)}).to_string(),
        );
        let done = finish(state.clone()).await.unwrap();
        assert_eq!(done.user.as_str(), "ada-lovelace");
        assert_eq!(done.secret, Some(secret.clone()));
        assert_eq!(login.user_of(&done.token).unwrap().as_str(), "ada-lovelace");
        let e = finish(state).await.unwrap_err();
        assert!(matches!(e, OidcError::UnknownState), "{e}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // The provider said no at its login page: 401, and the state is used up.
        let (state, _) = begin().await;
        let e = login
            .finish(ip, &format!("error=access_denied&state={state}"))
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(
            login.pending.lock().entries.is_empty(),
            "every state was used once"
        );
        // The web UI: its own redirect URL; its login finishes only there, and the PIN page's
        // only on the PIN page.
        let admin_callback = "https://192.0.2.10:47990/ui/oidc/callback";
        let web = login.begin_web_ui(ip, admin_callback).await.unwrap();
        let url = url::Url::parse(&web.location).unwrap();
        assert!(
            url.query_pairs()
                .any(|(k, v)| k == "redirect_uri" && v == admin_callback)
        );
        assert!(
            url.query_pairs()
                .any(|(k, v)| k == "state" && v == web.state.as_str())
        );
        let nonce = url
            .query_pairs()
            .find(|(k, _)| k == "nonce")
            .unwrap()
            .1
            .into_owned();
        let e = finish(web.state.clone()).await.unwrap_err();
        assert!(
            matches!(e, OidcError::UnknownState),
            "a web UI login at the PIN page: {e}"
        );
        let web = login.begin_web_ui(ip, admin_callback).await.unwrap();
        let url = url::Url::parse(&web.location).unwrap();
        let nonce_2 = url
            .query_pairs()
            .find(|(k, _)| k == "nonce")
            .unwrap()
            .1
            .into_owned();
        assert_ne!(nonce, nonce_2);
        answer(
            200,
            json!({"id_token": id_token(&nonce_2, &keep, &signing)}).to_string(),
        );
        let query = format!("code=the-code&state={}", web.state);
        assert_eq!(
            login.finish_web_ui(ip, &query).await.unwrap().as_str(),
            "ada-lovelace"
        );
        assert!(matches!(
            login.finish_web_ui(ip, &query).await.unwrap_err(),
            OidcError::UnknownState
        ));
        let (state, _) = begin().await;
        let e = login
            .finish_web_ui(ip, &format!("code=the-code&state={state}"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, OidcError::UnknownState),
            "a PIN page login at the web UI: {e}"
        );
        assert!(matches!(
            login.begin_web_ui(ip, "/ui/oidc/callback").await.unwrap_err(),
            OidcError::BadRequest(_)
        ));
        // The provider goes down between the redirect and the callback (discovery is cached):
        // 502, and no login is made.
        let (state, _) = begin().await;
        provider.task.abort();
        let _ = (&mut provider.task).await;
        let e = finish(state).await.unwrap_err();
        assert!(matches!(e, OidcError::Unreachable { what: "token", .. }), "{e}");
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(login.logins.lock().entries.len(), 1, "only the good login");
    }

    #[tokio::test]
    async fn a_provider_that_is_down_or_answers_garbage_is_a_502_and_keeps_nothing() {
        // Down: a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = |issuer: String| OidcConfig {
            issuer,
            client_id: "direwolf".into(),
            client_secret: None,
            redirect_url: None,
            user_claim: DEFAULT_USER_CLAIM.into(),
        };
        let ip = IpAddr::from([192, 0, 2, 1]);
        let down = OidcLogin::new(config(format!("http://127.0.0.1:{port}"))).unwrap();
        let e = down.begin(ip, None, Some("192.0.2.10:47989")).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY, "{e}");
        assert!(matches!(e, OidcError::Unreachable { .. }), "{e}");
        assert!(down.pending.lock().entries.is_empty());
        // Garbage: a server answering HTML to everything.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "<html>It works!</html>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        let garbage = OidcLogin::new(config(format!("http://{addr}"))).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(30), garbage.begin(ip, None, Some("h:1")))
            .await
            .expect("an answer within 30 s")
            .unwrap_err();
        assert!(
            matches!(
                e,
                OidcError::Garbage {
                    what: "discovery",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(garbage.pending.lock().entries.is_empty());
        // A callback for a state never issued (or replayed): 400, before any request.
        let e = garbage.finish(ip, "code=abc&state=made-up").await.unwrap_err();
        assert!(matches!(e, OidcError::UnknownState));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = garbage.finish(ip, "code=abc").await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
