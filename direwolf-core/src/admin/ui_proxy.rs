//! The web UI behind an authenticating reverse proxy (`--trusted-proxy`, oauth2-proxy and the
//! like): the person the proxy names ([`TrustedProxies::named_user`]) is logged in without a
//! password.
//!
//! * `GET /ui/session` from a trusted proxy naming a user opens a web UI session for that user
//!   (the cookie and CSRF token a password login gives; the user created if missing, as the PIN
//!   page does). A session of someone else in that browser is closed first: the person behind
//!   the proxy changed.
//! * A request with a session cookie that comes through the proxy must be for the user the proxy
//!   names, else 401 (the page then asks `/ui/session` again).
//! * An API request the proxy alone vouches for (no cookie, no token) may read as that user;
//!   a change is refused (403): it needs the page's session and CSRF token, which a cross-site
//!   form sent through the proxy cannot carry.
//! * Logging out of such a session (`POST /ui/logout`) also names the proxy's sign-out address,
//!   when one is configured ([`TrustedProxies::sign_out`]), for the page to go to: else the
//!   proxy's next request would log the person in again.
//!
//! [`TrustedProxies::named_user`]: super::identity_headers::TrustedProxies::named_user
//! [`TrustedProxies::sign_out`]: super::identity_headers::TrustedProxies::sign_out

use std::net::IpAddr;
use std::time::Instant;

use hyper::header::{HeaderMap, HeaderValue, SET_COOKIE};
use hyper::{Method, StatusCode};

use super::audit::{self, Actor};
use super::reply::{ApiError, Reply};
use super::{AdminApi, ui};
use crate::ids::UserName;
use crate::store::UserStoreExt as _;

impl AdminApi {
    /// `GET /ui/session`: the cookie's session, or one opened for the user a trusted proxy names.
    pub(super) async fn session_route(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Reply {
        let current = self.ui_session(headers);
        let named = match self.proxies.named_user(client, headers) {
            None => {
                return match current {
                    Some((_, session)) => self.session_reply(&session).await,
                    None => ApiError::new(StatusCode::UNAUTHORIZED, "not logged in").reply(),
                };
            }
            Some(Err(refused)) => {
                let message = refused.message.clone();
                audit::record(
                    Actor::Anonymous,
                    client,
                    "GET",
                    "ui/proxy-login",
                    refused.status,
                    Some(&message),
                );
                return refused.reply();
            }
            Some(Ok(user)) => user,
        };
        if let Some((token, session)) = current {
            if session.user == named {
                return self.session_reply(&session).await;
            }
            self.ui_sessions.close(&token);
        }
        self.proxy_login(named, client).await
    }

    /// Opens a web UI session for `user`, whom a trusted proxy named.
    async fn proxy_login(&self, user: UserName, client: Option<IpAddr>) -> Reply {
        let actor = Actor::User(user.clone());
        if let Err(e) = self.users.ensure(&user).await {
            let refused = ApiError::from(e);
            audit::record(
                actor,
                client,
                "GET",
                "ui/proxy-login",
                refused.status,
                Some(&refused.message),
            );
            return refused.reply();
        }
        let (token, session) = self.ui_sessions.open(user, Instant::now());
        audit::record(actor, client, "GET", "ui/proxy-login", StatusCode::OK, None);
        let mut reply = self.session_reply(&session).await;
        if let Ok(cookie) = HeaderValue::from_str(&ui::set_cookie(&token)) {
            reply.headers_mut().insert(SET_COOKIE, cookie);
        }
        reply
    }

    /// Who a request without a bearer token is, when a trusted proxy names someone: `None` when
    /// no proxy names anyone; with a web UI session (`session_user`), that session's user must
    /// be the one named; without one, a read as the named user, and a change is refused.
    pub(super) async fn proxy_principal(
        &self,
        method: &Method,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        session_user: Option<&UserName>,
    ) -> Option<Result<ui::Principal, (Actor, ApiError)>> {
        let named = match self.proxies.named_user(client, headers)? {
            Ok(named) => named,
            Err(refused) => return Some(Err((Actor::Anonymous, refused))),
        };
        let actor = Actor::User(named.clone());
        if let Some(user) = session_user {
            if *user == named {
                return None;
            }
            let refused = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the login proxy names another user than this web UI session: reload the page",
            );
            return Some(Err((actor, refused)));
        }
        if method != Method::GET && method != Method::HEAD {
            let refused = ApiError::new(
                StatusCode::FORBIDDEN,
                "a change through the login proxy needs the web UI's session: open the web UI (/)",
            );
            return Some(Err((actor, refused)));
        }
        let admin = match self.users.get(&named).await {
            Ok(user) => user.is_some_and(|u| u.admin),
            Err(e) => return Some(Err((actor, e.into()))),
        };
        Some(Ok(ui::Principal::User { name: named, admin }))
    }
}
