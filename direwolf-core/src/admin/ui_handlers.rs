//! The web UI's own paths on the admin port: the page and its assets, login, the session, logout.

use std::net::IpAddr;
use std::time::Instant;

use hyper::body::{Body, Bytes};
use hyper::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::audit::{self, Actor};
use super::reply::{ApiError, Reply, json, no_content, with_type};
use super::{AdminApi, body, ui};
use crate::error::BoxError;
use crate::ids::UserName;

/// The page's security policy: only this server's scripts, styles and images (and images the
/// page previews from a chosen file); never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The body of `POST /ui/login` (no `Debug`: it holds a password).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

/// What the page learns at login and from `GET /ui/session`.
#[derive(Serialize)]
struct SessionView<'a> {
    user: &'a UserName,
    admin: bool,
    csrf: &'a str,
}

fn page(body: &'static str, content_type: &'static str) -> Reply {
    let mut reply = with_type(StatusCode::OK, body.as_bytes().to_vec(), content_type);
    let headers = reply.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

impl AdminApi {
    /// Answers a request outside `/api/v1`.
    pub(super) async fn web_ui<B>(&self, request: Request<B>, client: Option<IpAddr>) -> Reply
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let method = &parts.method;
        match (method, path) {
            (&Method::GET, "/") => page(ui::INDEX_HTML, "text/html; charset=utf-8"),
            (&Method::GET, "/ui/style.css") => page(ui::STYLE_CSS, "text/css; charset=utf-8"),
            (&Method::GET, "/ui/app.js") => page(ui::APP_JS, "text/javascript; charset=utf-8"),
            (&Method::POST, "/ui/login") => {
                let (actor, outcome) = self.login(&parts.headers, body, client).await;
                let status = outcome.as_ref().map_or_else(|e| e.status, Reply::status);
                let error = outcome.as_ref().err().map(|e| e.message.as_str());
                audit::record(actor, client, "POST", "ui/login", status, error);
                outcome.unwrap_or_else(|e| e.reply())
            }
            (&Method::GET, "/ui/login-options") => self.login_options(),
            (&Method::GET, super::ui_sso::LOGIN_PATH) => self.sso_login(&parts.headers, client).await,
            (&Method::GET, super::ui_sso::CALLBACK_PATH) => {
                let query = parts.uri.query().unwrap_or("");
                self.sso_callback(&parts.headers, query, client).await
            }
            (&Method::GET, "/ui/session") => self.session_route(&parts.headers, client).await,
            (&Method::POST, "/ui/logout") => self.logout(&parts.headers, client),
            _ => ApiError::not_found(format!(
                "no such page {path:?}: the web UI is at /, the API under /api/v1"
            ))
            .reply(),
        }
    }

    /// `POST /ui/logout`: ends the cookie's session. Through a trusted proxy with a sign-out
    /// address, the answer names it (`{"sign_out": ...}`) and the page goes there, since the
    /// proxy would otherwise log the person in again at the next request.
    fn logout(&self, headers: &hyper::HeaderMap, client: Option<IpAddr>) -> Reply {
        let Some((token, session)) = self.ui_session(headers) else {
            return ApiError::new(StatusCode::UNAUTHORIZED, "not logged in").reply();
        };
        let actor = Actor::User(session.user.clone());
        if let Err(refused) = ui::check_csrf(&session, &Method::POST, headers) {
            audit::record(
                actor,
                client,
                "POST",
                "ui/logout",
                refused.status,
                Some(&refused.message),
            );
            return refused.reply();
        }
        self.ui_sessions.close(&token);
        let mut reply = match self.proxies.sign_out(client, headers) {
            Some(sign_out) => json(StatusCode::OK, &serde_json::json!({ "sign_out": sign_out })),
            None => no_content(),
        };
        audit::record(actor, client, "POST", "ui/logout", reply.status(), None);
        if let Ok(cookie) = HeaderValue::from_str(&ui::clear_cookie()) {
            reply.headers_mut().insert(SET_COOKIE, cookie);
        }
        reply
    }

    /// The live web UI session of the request's cookie, and its token.
    pub(super) fn ui_session(&self, headers: &hyper::HeaderMap) -> Option<(String, ui::UiSession)> {
        let token = ui::session_cookie(headers)?;
        let session = self.ui_sessions.get(token, Instant::now())?;
        Some((token.to_owned(), session))
    }

    pub(super) async fn session_reply(&self, session: &ui::UiSession) -> Reply {
        let admin = matches!(self.users.get(&session.user).await, Ok(Some(u)) if u.admin);
        json(
            StatusCode::OK,
            &SessionView {
                user: &session.user,
                admin,
                csrf: &session.csrf,
            },
        )
    }

    /// Checks a local account's password (same-origin requests only; 429 while `client`'s
    /// network has sent too many wrong ones) and opens a session.
    async fn login<B>(
        &self,
        headers: &hyper::HeaderMap,
        body: B,
        client: Option<IpAddr>,
    ) -> (Actor, Result<Reply, ApiError>)
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if let Err(refused) = ui::check_origin(headers) {
            return (Actor::Anonymous, Err(refused));
        }
        let login: Login = match body::json(headers, body).await {
            Ok(login) => login,
            Err(e) => return (Actor::Anonymous, Err(e)),
        };
        if self.ui_logins.blocked(client, Instant::now()) {
            let refused = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords from your network: wait a minute",
            );
            return (Actor::Anonymous, Err(refused));
        }
        let wrong = || {
            self.ui_logins.failed(client, Instant::now());
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password")
        };
        let Ok(name) = login.user.trim().parse::<UserName>() else {
            return (Actor::Anonymous, Err(wrong()));
        };
        let actor = Actor::User(name.clone());
        let user = match self.users.get(&name).await {
            Ok(user) => user,
            Err(e) => return (actor, Err(e.into())),
        };
        let Some(hash) = user.as_ref().and_then(|u| u.password.clone()) else {
            return (actor, Err(wrong()));
        };
        if !hash.verify_blocking(login.password).await {
            return (actor, Err(wrong()));
        }
        let (token, session) = self.ui_sessions.open(name, Instant::now());
        let mut reply = self.session_reply(&session).await;
        match HeaderValue::from_str(&ui::set_cookie(&token)) {
            Ok(cookie) => {
                reply.headers_mut().insert(SET_COOKIE, cookie);
                (actor, Ok(reply))
            }
            Err(_) => (
                actor,
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad cookie")),
            ),
        }
    }
}
