//! The web UI on the admin port: a page (HTML, CSS and JavaScript embedded in the binary, no
//! CDN) that logs a local account in and then calls the JSON API with a session cookie.
//!
//! * `POST /ui/login` (`{"user", "password"}`) checks a local account's password and opens a
//!   [`UiSessions`] entry: a random token in a cookie (`HttpOnly; Secure; SameSite=Strict`,
//!   [`SESSION_TTL`]) and a per-session CSRF token given to the page. `GET /ui/session` gives the
//!   page both back after a reload; `POST /ui/logout` ends the session.
//! * A request authenticated by the cookie that changes something must carry the CSRF token in
//!   [`CSRF_HEADER`], and its `Origin`, when sent, must be this server's (`https://` and the
//!   `Host` header): otherwise 403 ([`check_csrf`]).
//! * Wrong passwords are counted per network ([`LoginThrottle`]): after [`MAX_WRONG_LOGINS`]
//!   within [`LOGIN_WINDOW`], logins from it are refused (429) for the rest of the window.
//! * What a user may do is [`authorize`]d per route: an administrator everything the admin
//!   token may; anyone else only their own data ([`Scope::Own`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::{COOKIE, HOST, HeaderMap, ORIGIN};
use hyper::{Method, StatusCode};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::reply::ApiError;
use super::route::Route;
use crate::ids::UserName;

/// How long a web UI session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The cookie carrying the session token.
pub const COOKIE_NAME: &str = "direwolf_session";
/// The header a state-changing request authenticated by the cookie carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The page and its assets.
pub const INDEX_HTML: &str = include_str!("ui/index.html");
/// The page's style sheet.
pub const STYLE_CSS: &str = include_str!("ui/style.css");
/// The page's script.
pub const APP_JS: &str = include_str!("ui/app.js");

/// Who a request is from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of the admin token.
    Token,
    /// A local account logged in to the web UI.
    User {
        /// The account.
        name: UserName,
        /// Whether it administers this direwolf (read at each request).
        admin: bool,
    },
}

/// What a request may see and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything (the admin token, an administrator).
    All,
    /// Only this user's pairings, sessions and apps; approvals are for this user.
    Own(UserName),
}

impl Scope {
    /// Whether data belonging to `user` is in this scope.
    pub fn covers(&self, user: &UserName) -> bool {
        match self {
            Scope::All => true,
            Scope::Own(me) => me == user,
        }
    }
}

/// What `principal` may do with `method` on `route`: [`Scope::All`] for the token and
/// administrators; for anyone else [`Scope::Own`] on the person's routes (apps and their images,
/// pairings and revoking one, pending pairings and approving one, sessions: all reads except
/// the revocation and the approval), 403 on the rest.
pub fn authorize(principal: &Principal, method: &Method, route: &Route) -> Result<Scope, ApiError> {
    let name = match principal {
        Principal::Token | Principal::User { admin: true, .. } => return Ok(Scope::All),
        Principal::User { name, .. } => name,
    };
    let person = matches!(
        (method, route),
        (
            &Method::GET,
            Route::Apps | Route::AppImage(_) | Route::Pairings | Route::Pending | Route::Sessions
        ) | (&Method::DELETE, Route::Pairing(_))
            | (&Method::POST, Route::Approve(_))
    );
    if person {
        Ok(Scope::Own(name.clone()))
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only an administrator may {method} {route}"),
        ))
    }
}

/// One logged-in web UI session.
#[derive(Debug, Clone)]
pub struct UiSession {
    /// The account.
    pub user: UserName,
    /// The token state-changing requests must carry in [`CSRF_HEADER`].
    pub csrf: String,
    expires: Instant,
}

/// The web UI's sessions, in memory (a restart logs everyone out). Only the SHA-256 of a
/// session token is kept.
#[derive(Debug, Clone, Default)]
pub struct UiSessions {
    inner: Arc<Mutex<HashMap<[u8; 32], UiSession>>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl UiSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], UiSession>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `user` at `now`, lasting [`SESSION_TTL`]; its cookie token and the
    /// session (with its CSRF token). Expired sessions are dropped.
    pub fn open(&self, user: UserName, now: Instant) -> (String, UiSession) {
        let token = random_token();
        let session = UiSession {
            user,
            csrf: random_token(),
            expires: now + SESSION_TTL,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The live session of `token` at `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<UiSession> {
        let mut sessions = self.lock();
        let key = digest(token);
        match sessions.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub fn close(&self, token: &str) {
        self.lock().remove(&digest(token));
    }
}

/// Wrong passwords from one network (an IPv4 /24, an IPv6 /64) within [`LOGIN_WINDOW`] before
/// its logins are refused (429) for the rest of the window, as on the PIN page.
pub const MAX_WRONG_LOGINS: u32 = 5;
/// The window [`MAX_WRONG_LOGINS`] is counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Networks tracked at once; a full table starts over.
const MAX_TRACKED_NETWORKS: usize = 4096;

/// Wrong web UI logins per network, in memory.
#[derive(Debug, Clone, Default)]
pub struct LoginThrottle {
    inner: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

/// The network an address is counted in: its /24 (IPv4) or /64 (IPv6).
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether logins from `client`'s network are refused at `now`.
    pub fn blocked(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let Some(client) = client else { return false };
        self.lock()
            .get(&network(client))
            .is_some_and(|(start, wrong)| now < *start + LOGIN_WINDOW && *wrong >= MAX_WRONG_LOGINS)
    }

    /// Counts a wrong password from `client` at `now`.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) {
        let Some(client) = client else { return };
        let mut table = self.lock();
        table.retain(|_, (start, _)| now < *start + LOGIN_WINDOW);
        if table.len() >= MAX_TRACKED_NETWORKS {
            table.clear();
        }
        let entry = table.entry(network(client)).or_insert((now, 0));
        entry.1 += 1;
    }
}

/// The session token in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE_NAME)
}

/// The value of cookie `name` in `headers`, if any and not empty.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value opening a session.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE_NAME}={token}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value ending a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// Refuses (403) a request from another site: an `Origin`, when sent, must be `https://` and
/// the request's `Host`.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let same = match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin.strip_prefix("https://") == Some(host),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: its Origin is not this server",
        ))
    }
}

/// Refuses (403) a request authenticated by the cookie of `session` that changes something
/// (any method but `GET` and `HEAD`) unless it carries the session's CSRF token in
/// [`CSRF_HEADER`] and passes [`check_origin`].
pub fn check_csrf(session: &UiSession, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let matches = presented.is_some_and(|p| digest(p) == digest(&session.csrf));
    if !matches {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: missing or wrong CSRF token",
        ));
    }
    check_origin(headers)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn user(name: &str, admin: bool) -> Principal {
        Principal::User {
            name: name.parse().unwrap(),
            admin,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_person_may_only_do_the_person_operations_on_their_own_data() {
        let bob = user("bob", false);
        let own = Ok(Scope::Own("bob".parse().unwrap()));
        assert_eq!(authorize(&bob, &Method::GET, &Route::Pairings), own);
        assert_eq!(
            authorize(&bob, &Method::DELETE, &Route::Pairing("ab".into())),
            own
        );
        assert_eq!(authorize(&bob, &Method::POST, &Route::Approve("s".into())), own);
        assert_eq!(authorize(&bob, &Method::GET, &Route::Sessions), own);
        assert_eq!(authorize(&bob, &Method::GET, &Route::Apps), own);
        assert_eq!(authorize(&bob, &Method::GET, &Route::Pending), own);
        for (method, route) in [
            (Method::GET, Route::Users),
            (Method::POST, Route::Users),
            (Method::PUT, Route::UserPassword("bob".into())),
            (Method::POST, Route::Apps),
            (Method::PUT, Route::AppImage("1".into())),
            (Method::DELETE, Route::App("1".into())),
            (Method::DELETE, Route::Session("x".into())),
            (Method::POST, Route::UserLinks("bob".into())),
        ] {
            let refused = authorize(&bob, &method, &route).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {route}");
        }
        for everything in [Principal::Token, user("alice", true)] {
            assert_eq!(
                authorize(&everything, &Method::POST, &Route::Users),
                Ok(Scope::All)
            );
            assert_eq!(
                authorize(&everything, &Method::GET, &Route::Pairings),
                Ok(Scope::All)
            );
        }
    }

    #[test]
    fn a_change_needs_the_csrf_token_and_this_origin() {
        let sessions = UiSessions::default();
        let (_, session) = sessions.open("bob".parse().unwrap(), Instant::now());
        let host = ("host", "127.0.0.1:47990");
        let csrf = ("x-csrf-token", session.csrf.as_str());
        assert!(check_csrf(&session, &Method::GET, &headers(&[host])).is_ok());
        assert!(check_csrf(&session, &Method::DELETE, &headers(&[host, csrf])).is_ok());
        let same_origin = ("origin", "https://127.0.0.1:47990");
        assert!(check_csrf(&session, &Method::POST, &headers(&[host, csrf, same_origin])).is_ok());
        for refused in [
            headers(&[host]),
            headers(&[host, ("x-csrf-token", "0123")]),
            headers(&[host, ("x-csrf-token", "")]),
            headers(&[host, csrf, ("origin", "https://evil.example")]),
            headers(&[host, csrf, ("origin", "http://127.0.0.1:47990")]),
            headers(&[host, csrf, ("origin", "null")]),
            headers(&[csrf, same_origin]),
        ] {
            let error = check_csrf(&session, &Method::POST, &refused).unwrap_err();
            assert_eq!(error.status, StatusCode::FORBIDDEN, "{refused:?}");
        }
        let other = sessions.open("bob".parse().unwrap(), Instant::now()).1;
        let theirs = headers(&[host, ("x-csrf-token", other.csrf.as_str())]);
        assert!(
            check_csrf(&session, &Method::POST, &theirs).is_err(),
            "another session's token"
        );
    }

    #[test]
    fn wrong_logins_from_one_network_are_throttled_for_the_window() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for _ in 0..MAX_WRONG_LOGINS - 1 {
            throttle.failed(ip("192.0.2.7"), now);
        }
        assert!(!throttle.blocked(ip("192.0.2.7"), now));
        throttle.failed(ip("192.0.2.8"), now);
        assert!(throttle.blocked(ip("192.0.2.200"), now), "the same /24");
        assert!(!throttle.blocked(ip("198.51.100.7"), now), "another network");
        assert!(
            !throttle.blocked(ip("192.0.2.7"), now + LOGIN_WINDOW),
            "the window is over"
        );
        for _ in 0..MAX_WRONG_LOGINS {
            throttle.failed(ip("2001:db8::1"), now);
        }
        assert!(throttle.blocked(ip("2001:db8::ffff:1"), now), "the same /64");
        assert!(!throttle.blocked(ip("2001:db8:0:1::1"), now));
    }

    #[test]
    fn sessions_are_random_found_by_cookie_expire_and_close() {
        let sessions = UiSessions::default();
        let now = Instant::now();
        let (token, session) = sessions.open("bob".parse().unwrap(), now);
        let (token2, session2) = sessions.open("bob".parse().unwrap(), now);
        assert_ne!(token, token2);
        assert_ne!(session.csrf, session2.csrf);
        assert_eq!(token.len(), 64);
        let cookies = headers(&[("cookie", &format!("theme=dark; {COOKIE_NAME}={token}"))]);
        let found = session_cookie(&cookies).unwrap();
        assert_eq!(sessions.get(found, now).unwrap().user.as_str(), "bob");
        assert!(sessions.get("not-a-token", now).is_none());
        assert!(
            sessions
                .get(&token, now + SESSION_TTL + Duration::from_secs(1))
                .is_none(),
            "expired after 12 h"
        );
        assert!(sessions.get(&token, now).is_none(), "an expired session is gone");
        sessions.close(&token2);
        assert!(sessions.get(&token2, now).is_none());
        let cookie = set_cookie(&token);
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert_eq!(session_cookie(&headers(&[("cookie", "theme=dark")])), None);
    }
}
