//! The admin HTTP API: JSON over HTTPS for users, apps (with their images), pairings, pending
//! pairings and sessions, authenticated by a bearer token (`docs/admin-api.yaml` describes it).
//!
//! [`AdminApi`] answers requests over the core traits: [`UserStore`], [`AppCatalog`],
//! [`PairingStore`], [`SessionStore`], the [`PinBroker`] the PIN page submits to (approving a
//! pending pairing delivers its PIN the same way), and the [`Launcher`] that stops sessions.
//! [`AdminServer`] serves it on a TLS listener. Every refused request and every change is
//! logged on the `direwolf::audit` target ([`audit`]); the token never is.
//!
//! | Path under `/api/v1` | Methods |
//! |---|---|
//! | `/users`, `/users/{name}` | `GET`, `POST`; `DELETE` (`?force=true` ends live sessions) |
//! | `/users/{name}/password`, `/users/{name}/pairing-links` | `PUT {"password"}`; `POST {"ttl_seconds"}` |
//! | `/apps`, `/apps/{id}`, `/apps/{id}/image` | `GET`, `POST`; `DELETE`; `GET`, `PUT` (PNG) |
//! | `/pairings`, `/pairings/{fingerprint}` | `GET`; `DELETE` (`?stop_sessions=true`) |
//! | `/pending-pairings`, `/pending-pairings/{secret}/approve` | `GET`; `POST {"pin", "user"}` |
//! | `/sessions`, `/sessions/{id}` | `GET`; `DELETE` (stops it) |
//!
//! Outside `/api/v1` the same port serves the web UI ([`ui`]): a local account logs in (or
//! anyone through single sign-on, [`ui_sso`]) and the page calls this API with a session
//! cookie, as an administrator or for the person's own data. Identity headers
//! (`X-Forwarded-User`) from an address that is not a trusted proxy are refused as spoofed
//! ([`identity_headers`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::{Body, Bytes};
use hyper::header::{ALLOW, AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};

use crate::accounts::PairingLinks;
use crate::error::BoxError;
use crate::launcher::Launcher;
use crate::pin_broker::PinBroker;
use crate::store::{AppCatalog, PairingStore, SessionStore, Stores, UserStore};

pub mod apps;
pub mod audit;
pub mod body;
pub mod identity_headers;
pub mod image;
pub mod pairings;
pub mod reply;
pub mod route;
mod server;
pub mod sessions;
pub mod token;
pub mod ui;
mod ui_handlers;
mod ui_proxy;
pub mod ui_sso;
pub mod users;

pub use audit::Actor;
pub use reply::{ApiError, Reply};
pub use route::Route;
pub use server::AdminServer;
pub use token::AdminToken;

/// The file in the data directory where the server writes its certificate (PEM, public), so a
/// CLI on the same machine can trust exactly it.
pub const CERT_FILE: &str = "server-cert.pem";

/// Pairing links and the PIN page they point to.
#[derive(Clone)]
struct LinkIssuer {
    links: PairingLinks,
    http_port: u16,
}

/// The admin API over the core traits.
#[derive(Clone)]
pub struct AdminApi {
    users: Arc<dyn UserStore>,
    apps: Arc<dyn AppCatalog>,
    pairings: Arc<dyn PairingStore>,
    sessions: Arc<dyn SessionStore>,
    broker: Arc<dyn PinBroker>,
    launcher: Arc<dyn Launcher>,
    token: AdminToken,
    /// Where one-time pairing links are kept, and the PIN page they point to.
    links: Option<LinkIssuer>,
    /// Held by every change, so a check ("is the name free?") and the write it guards are not
    /// split by another request of this API.
    changes: Arc<tokio::sync::Mutex<()>>,
    /// The web UI's logged-in sessions.
    ui_sessions: ui::UiSessions,
    /// Wrong web UI passwords per network.
    ui_logins: ui::LoginThrottle,
    /// Whose identity headers are not refused as spoofed.
    proxies: identity_headers::TrustedProxies,
    /// The web UI's single sign-on and its configured redirect URL, if any.
    sso: Option<(Arc<dyn ui_sso::SingleSignOn>, Option<String>)>,
}

impl fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminApi").finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The API over `stores` (its identity store is not used), the PIN broker pending pairings
    /// wait in, the launcher that stops sessions, and the token requests must bear.
    pub fn new(
        stores: &Stores,
        broker: Arc<dyn PinBroker>,
        launcher: Arc<dyn Launcher>,
        token: AdminToken,
    ) -> Self {
        AdminApi {
            users: stores.users.clone(),
            apps: stores.apps.clone(),
            pairings: stores.pairings.clone(),
            sessions: stores.sessions.clone(),
            broker,
            launcher,
            token,
            links: None,
            changes: Arc::default(),
            ui_sessions: ui::UiSessions::default(),
            ui_logins: ui::LoginThrottle::default(),
            proxies: identity_headers::TrustedProxies::default(),
            sso: None,
        }
    }

    /// The server's trusted proxies: identity headers from anyone else are refused (403,
    /// audited); see [`identity_headers`]. Without it they are refused from everyone.
    pub fn with_trusted_proxies(mut self, proxies: identity_headers::TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Single sign-on on the web UI's login page ([`ui_sso`]), the provider coming back to
    /// `redirect_url` (default: `https://HOST/ui/oidc/callback`, HOST from the request).
    pub fn with_single_sign_on(
        mut self,
        sso: Arc<dyn ui_sso::SingleSignOn>,
        redirect_url: Option<String>,
    ) -> Self {
        self.sso = Some((sso, redirect_url));
        self
    }

    /// Local accounts (single-machine mode): users may be given passwords, and one-time pairing
    /// links are issued into `links`, pointing at the PIN page on `http_port` of the host the
    /// admin request was addressed to (its `Host` header): `http://HOST:PORT/pin/?link=TOKEN`.
    /// Without it both answer 501.
    pub fn with_local_accounts(mut self, links: PairingLinks, http_port: u16) -> Self {
        self.links = Some(LinkIssuer { links, http_port });
        self
    }

    /// Answers one request from `client`: the web UI's page and login ([`ui`]), or the API:
    /// authenticates (the bearer token, or a web UI session cookie with its CSRF checks),
    /// authorises, routes, audits.
    pub async fn handle<B>(&self, request: Request<B>, client: Option<IpAddr>) -> Reply
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let method = request.method().clone();
        let action = method.as_str().to_owned();
        let path = request.uri().path().to_owned();
        if let Err(refusal) = self.proxies.check(client, request.headers()) {
            let shown = Route::parse(&path).map_or_else(|| path.clone(), |r| r.to_string());
            audit::record(
                Actor::Anonymous,
                client,
                &action,
                &shown,
                refusal.status,
                Some(&refusal.message),
            );
            return refusal.reply();
        }
        if !path.starts_with(route::PREFIX) {
            return self.web_ui(request, client).await;
        }
        let shown = Route::parse(&path).map_or_else(|| "(unknown path)".to_owned(), |r| r.to_string());
        let principal = match self.authenticate(&method, request.headers(), client).await {
            Ok(principal) => principal,
            Err((actor, refusal)) => {
                audit::record(
                    actor,
                    client,
                    &action,
                    &shown,
                    refusal.status,
                    Some(&refusal.message),
                );
                let mut reply = refusal.reply();
                if refusal.status == StatusCode::UNAUTHORIZED {
                    reply
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return reply;
            }
        };
        let actor = match &principal {
            ui::Principal::Token => Actor::AdminToken,
            ui::Principal::User { name, .. } => Actor::User(name.clone()),
        };
        let outcome = self.route(request, &principal).await;
        let status = match &outcome {
            Ok(reply) => reply.status(),
            Err(e) => e.status,
        };
        // Every change and every refusal; successful reads are not audited.
        if method != Method::GET && method != Method::HEAD
            || status.is_client_error()
            || status.is_server_error()
        {
            let error = outcome.as_ref().err().map(|e| e.message.as_str());
            audit::record(actor, client, &action, &shown, status, error);
        }
        match outcome {
            Ok(reply) => reply,
            Err(error) => {
                let mut reply = error.reply();
                if error.status == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(route) = Route::parse(&path)
                {
                    let allowed: Vec<&str> = route.allowed().iter().map(Method::as_str).collect();
                    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                        reply.headers_mut().insert(ALLOW, value);
                    }
                }
                reply
            }
        }
    }

    /// Taken by every handler that changes something, after its body is read (a slow client
    /// holds no one up).
    async fn change(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Who sent a request: the bearer token when there is an `Authorization` header, else a
    /// web UI session cookie (a request changing something must pass [`ui::check_csrf`]; through
    /// a login proxy, the session must be the named user's), else the user a trusted proxy names
    /// ([`ui_proxy`], reads only).
    async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<ui::Principal, (Actor, ApiError)> {
        let unauthorized = |m: &str| (Actor::Anonymous, ApiError::new(StatusCode::UNAUTHORIZED, m));
        let header = headers.get(AUTHORIZATION);
        if header.is_none()
            && let Some(token) = ui::session_cookie(headers)
        {
            let Some(session) = self.ui_sessions.get(token, Instant::now()) else {
                return Err(unauthorized("the web UI session has expired: log in again"));
            };
            if let Some(refused) = self
                .proxy_principal(method, headers, client, Some(&session.user))
                .await
            {
                return refused;
            }
            let actor = Actor::User(session.user.clone());
            // Read at each request: a removed account is logged out, a demoted one loses its rights.
            let user = match self.users.get(&session.user).await {
                Ok(Some(user)) => user,
                Ok(None) => {
                    self.ui_sessions.close(token);
                    return Err(unauthorized("the web UI session's account was removed"));
                }
                Err(e) => return Err((actor, e.into())),
            };
            ui::check_csrf(&session, method, headers).map_err(|e| (actor, e))?;
            return Ok(ui::Principal::User {
                name: user.name,
                admin: user.admin,
            });
        }
        let Some(header) = header else {
            if let Some(vouched) = self.proxy_principal(method, headers, client, None).await {
                return vouched;
            }
            return Err(unauthorized("missing bearer token (Authorization: Bearer TOKEN)"));
        };
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(token) if self.token.matches(token) => Ok(ui::Principal::Token),
            Some(_) => Err(unauthorized("wrong bearer token")),
            None => Err(unauthorized(
                "the Authorization header must be \"Bearer\" and the admin token",
            )),
        }
    }

    async fn route<B>(&self, request: Request<B>, principal: &ui::Principal) -> reply::Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let Some(route) = Route::parse(parts.uri.path()) else {
            return Err(ApiError::not_found(format!(
                "no such resource {:?}: the API is under {}",
                parts.uri.path(),
                route::PREFIX
            )));
        };
        if !route.allowed().contains(&parts.method) {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed here", parts.method),
            ));
        }
        let scope = ui::authorize(principal, &parts.method, &route)?;
        let query = parts.uri.query().unwrap_or("");
        let headers = &parts.headers;
        match (&parts.method, route) {
            (&Method::GET, Route::Users) => self.list_users().await,
            (&Method::POST, Route::Users) => self.create_user(body::json(headers, body).await?).await,
            (_, Route::User(name)) => self.delete_user(&name, flag(query, "force")?).await,
            (_, Route::UserPassword(name)) => {
                self.set_password(&name, body::json(headers, body).await?).await
            }
            (_, Route::UserLinks(name)) => {
                let host = headers
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                self.issue_link(&name, host.as_deref(), body::json(headers, body).await?)
                    .await
            }
            (&Method::GET, Route::Apps) => self.list_apps(&scope).await,
            (&Method::POST, Route::Apps) => self.create_app(body::json(headers, body).await?).await,
            (_, Route::App(id)) => self.delete_app(&id).await,
            (&Method::GET, Route::AppImage(id)) => self.get_image(&id).await,
            (_, Route::AppImage(id)) => {
                self.require_app(&id).await?;
                let bytes = body::read(headers, body, image::MAX_IMAGE_BYTES, "image").await?;
                image::check_png(&bytes)?;
                self.put_image(&id, bytes.to_vec()).await
            }
            (_, Route::Pairings) => self.list_pairings(&scope).await,
            (_, Route::Pairing(fp)) => {
                self.revoke_pairing(&scope, &fp, flag(query, "stop_sessions")?)
                    .await
            }
            (_, Route::Pending) => self.list_pending().await,
            (_, Route::Approve(secret)) => {
                self.approve(&scope, &secret, body::json(headers, body).await?)
                    .await
            }
            (_, Route::Sessions) => self.list_sessions(&scope).await,
            (_, Route::Session(id)) => self.stop_session(&id).await,
            (method, route) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {route}"),
            )),
        }
    }
}

/// A boolean query parameter: absent is false; `true`/`false` (or `1`/`0`) otherwise 400.
fn flag(query: &str, name: &str) -> Result<bool, ApiError> {
    let mut value = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, v) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            continue;
        }
        value = match v {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "{name}={other:?}: expected true or false"
                )));
            }
        };
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
