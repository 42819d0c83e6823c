//! Single sign-on for the web UI: "Log in with single sign-on" on the login page when a
//! [`SingleSignOn`] provider is configured ([`super::AdminApi::with_single_sign_on`]).
//!
//! * `GET /ui/login-options` tells the page whether to offer it.
//! * `GET /ui/oidc/login` asks the provider for an authorization URL whose callback is the
//!   configured redirect URL, else `https://HOST/ui/oidc/callback` (`HOST` the request's `Host`
//!   header), redirects the browser there and binds the login's `state` to this browser with a
//!   cookie ([`STATE_COOKIE`]: HttpOnly, Secure, `SameSite=Lax` so that the provider's redirect
//!   back carries it, 10 minutes, path `/ui/oidc/`).
//! * `GET /ui/oidc/callback` refuses a state that is not the browser's (400), has the provider
//!   finish the login (the code exchanged, the ID token checked), creates the user if missing,
//!   opens a web UI session for them exactly as a password login does, and sends the browser to
//!   `/`. Administrators are the users marked `admin`, as with passwords.
//!
//! Failures answer a short page with the provider's status (502 provider down or garbage, 400 a
//! bad or replayed state, 401 a refused login or invalid token) and are audited.

use std::net::IpAddr;
use std::time::Instant;

use async_trait::async_trait;
use hyper::StatusCode;
use hyper::header::{HOST, HeaderMap, HeaderValue, LOCATION, SET_COOKIE};
use serde::Serialize;

use super::audit::{self, Actor};
use super::reply::{Reply, json, with_type};
use super::{AdminApi, ui};
use crate::ids::UserName;
use crate::store::UserStoreExt as _;

/// Where the login page's link starts a single sign-on.
pub const LOGIN_PATH: &str = "/ui/oidc/login";
/// Where the provider sends the browser back.
pub const CALLBACK_PATH: &str = "/ui/oidc/callback";
/// The cookie binding a login's `state` to the browser that started it.
pub const STATE_COOKIE: &str = "direwolf_ui_sso";
/// How long a started login may take.
const STATE_TTL_SECS: u64 = 600;

/// A login sent to the provider.
#[derive(Debug, Clone)]
pub struct SsoStart {
    /// The provider's authorization URL to send the browser to.
    pub location: String,
    /// The login's `state`, which the browser must bring back.
    pub state: String,
}

/// A failed single sign-on: the status the browser gets and why (never a token or code).
#[derive(Debug, Clone)]
pub struct SsoError {
    /// 502 (provider), 400 (request, state), 401 (refused, invalid token).
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

/// An OpenID Connect provider as the web UI uses it (implemented over the PIN page's login in
/// the binary).
#[async_trait]
pub trait SingleSignOn: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a login of `client` that comes back to `redirect_uri`.
    async fn begin(&self, client: IpAddr, redirect_uri: &str) -> Result<SsoStart, SsoError>;
    /// Finishes the login of `client` from the callback's query string: the user.
    async fn finish(&self, client: IpAddr, query: &str) -> Result<UserName, SsoError>;
}

#[derive(Serialize)]
struct LoginOptions {
    single_sign_on: bool,
}

/// Whether `host` (a `Host` header) is a plain host or address with an optional port.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// A short plain-text page with `status`.
fn failure(status: StatusCode, message: &str) -> Reply {
    let text = format!("Single sign-on failed: {message}.\nGo back to the web UI (/) and try again.\n");
    with_type(status, text.into_bytes(), "text/plain; charset=utf-8")
}

/// A redirect to `location`, setting `cookies`.
fn redirect(location: &str, cookies: &[String]) -> Reply {
    let mut reply = with_type(StatusCode::SEE_OTHER, Vec::new(), "text/plain; charset=utf-8");
    let headers = reply.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(SET_COOKIE, value);
        }
    }
    reply
}

impl AdminApi {
    /// `GET /ui/login-options`.
    pub(super) fn login_options(&self) -> Reply {
        json(
            StatusCode::OK,
            &LoginOptions {
                single_sign_on: self.sso.is_some(),
            },
        )
    }

    /// `GET /ui/oidc/login`.
    pub(super) async fn sso_login(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Reply {
        let Some((sso, configured)) = &self.sso else {
            return failure(
                StatusCode::NOT_FOUND,
                "single sign-on is not configured on this server",
            );
        };
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| plain_host(h));
        let redirect_uri = match (configured, host) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) => format!("https://{host}{CALLBACK_PATH}"),
            (None, None) => {
                let refused =
                    "no usable Host header to build the redirect URL from (set --oidc-admin-redirect-url)";
                audit::record(
                    Actor::Anonymous,
                    client,
                    "GET",
                    "ui/oidc/login",
                    StatusCode::BAD_REQUEST,
                    Some(refused),
                );
                return failure(StatusCode::BAD_REQUEST, refused);
            }
        };
        let peer = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        match sso.begin(peer, &redirect_uri).await {
            Ok(start) => {
                let state = format!(
                    "{STATE_COOKIE}={}; Path=/ui/oidc/; Max-Age={STATE_TTL_SECS}; HttpOnly; Secure; SameSite=Lax",
                    start.state
                );
                redirect(&start.location, &[state])
            }
            Err(e) => failure(e.status, &e.message),
        }
    }

    /// `GET /ui/oidc/callback?QUERY`.
    pub(super) async fn sso_callback(
        &self,
        headers: &HeaderMap,
        query: &str,
        client: Option<IpAddr>,
    ) -> Reply {
        let Some((sso, _)) = &self.sso else {
            return failure(
                StatusCode::NOT_FOUND,
                "single sign-on is not configured on this server",
            );
        };
        // States are URL-safe tokens: compared as sent.
        let state = query.split('&').find_map(|pair| pair.strip_prefix("state="));
        let ours = matches!((state, ui::cookie(headers, STATE_COOKIE)), (Some(s), Some(c)) if s == c);
        if !ours {
            let refused = "this login was not started in this browser, or it expired";
            audit::record(
                Actor::Anonymous,
                client,
                "GET",
                "ui/oidc/callback",
                StatusCode::BAD_REQUEST,
                Some(refused),
            );
            return failure(StatusCode::BAD_REQUEST, refused);
        }
        let peer = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let user = match sso.finish(peer, query).await {
            Ok(user) => user,
            Err(e) => {
                audit::record(
                    Actor::Anonymous,
                    client,
                    "GET",
                    "ui/oidc/callback",
                    e.status,
                    Some(&e.message),
                );
                return failure(e.status, &e.message);
            }
        };
        if let Err(e) = self.users.ensure(&user).await {
            let message = format!("cannot create the user {user}: {e}");
            audit::record(
                Actor::User(user),
                client,
                "GET",
                "ui/oidc/callback",
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&message),
            );
            return failure(StatusCode::SERVICE_UNAVAILABLE, &message);
        }
        let (token, _) = self.ui_sessions.open(user.clone(), Instant::now());
        audit::record(
            Actor::User(user),
            client,
            "GET",
            "ui/oidc/callback",
            StatusCode::OK,
            None,
        );
        let spent = format!("{STATE_COOKIE}=; Path=/ui/oidc/; Max-Age=0; HttpOnly; Secure; SameSite=Lax");
        redirect("/", &[ui::set_cookie(&token), spent])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::{BodyExt, Full};
    use hyper::Request;
    use hyper::body::Bytes;

    use super::*;
    use crate::admin::AdminToken;
    use crate::{InMemoryPinBroker, NoStreamingHost, Stores};

    /// A provider that vouches for ada when the callback carries `code=good`.
    #[derive(Debug)]
    struct Provider;

    #[async_trait]
    impl SingleSignOn for Provider {
        async fn begin(&self, _: IpAddr, redirect_uri: &str) -> Result<SsoStart, SsoError> {
            Ok(SsoStart {
                location: format!("https://id.example.com/auth?redirect_uri={redirect_uri}"),
                state: "s1".into(),
            })
        }

        async fn finish(&self, _: IpAddr, query: &str) -> Result<UserName, SsoError> {
            match query.contains("code=good") {
                true => Ok("ada".parse().expect("a user name")),
                false => Err(SsoError {
                    status: StatusCode::UNAUTHORIZED,
                    message: "the ID token is not valid".into(),
                }),
            }
        }
    }

    fn api(stores: &Stores) -> AdminApi {
        AdminApi::new(
            stores,
            Arc::new(InMemoryPinBroker::default()),
            Arc::new(NoStreamingHost),
            AdminToken::generate(),
        )
    }

    async fn get(api: &AdminApi, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().uri(path).header(HOST, "192.0.2.10:47990");
        if let Some(cookie) = cookie {
            request = request.header(hyper::header::COOKIE, cookie);
        }
        let request = request.body(Full::new(Bytes::new())).expect("a request");
        let reply = api.handle(request, Some(IpAddr::from([192, 0, 2, 1]))).await;
        let (parts, body) = reply.into_parts();
        let body = body.collect().await.expect("the body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn cookies(headers: &HeaderMap) -> Vec<String> {
        headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn a_login_belongs_to_the_browser_that_started_it_and_opens_a_session() {
        let stores = Stores::in_memory();
        let plain = api(&stores);
        assert_eq!(
            get(&plain, "/ui/login-options", None).await.2,
            r#"{"single_sign_on":false}"#
        );
        assert_eq!(get(&plain, LOGIN_PATH, None).await.0, StatusCode::NOT_FOUND);

        let api = api(&stores).with_single_sign_on(Arc::new(Provider), None);
        assert_eq!(
            get(&api, "/ui/login-options", None).await.2,
            r#"{"single_sign_on":true}"#
        );
        let (status, headers, _) = get(&api, LOGIN_PATH, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            headers.get(LOCATION).and_then(|l| l.to_str().ok()),
            Some("https://id.example.com/auth?redirect_uri=https://192.0.2.10:47990/ui/oidc/callback")
        );
        let state = cookies(&headers).join(";");
        assert!(
            state.starts_with("direwolf_ui_sso=s1;") && state.contains("SameSite=Lax"),
            "{state}"
        );

        // Without the browser's state cookie, or with another state: 400, nobody logged in.
        let callback = format!("{CALLBACK_PATH}?code=good&state=s1");
        assert_eq!(get(&api, &callback, None).await.0, StatusCode::BAD_REQUEST);
        let other = format!("{CALLBACK_PATH}?code=good&state=s2");
        assert_eq!(
            get(&api, &other, Some("direwolf_ui_sso=s1")).await.0,
            StatusCode::BAD_REQUEST
        );
        // The provider refuses the token: its status.
        let bad = format!("{CALLBACK_PATH}?code=bad&state=s1");
        assert_eq!(
            get(&api, &bad, Some("direwolf_ui_sso=s1")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert!(
            stores
                .users
                .get(&"ada".parse().expect("name"))
                .await
                .expect("users")
                .is_none()
        );

        // The right browser: ada is created and has a session, as after a password login.
        let (status, headers, _) = get(&api, &callback, Some("direwolf_ui_sso=s1")).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers.get(LOCATION).and_then(|l| l.to_str().ok()), Some("/"));
        let session = cookies(&headers)
            .into_iter()
            .find(|c| c.starts_with(ui::COOKIE_NAME))
            .expect("a session cookie");
        let session = session.split(';').next().expect("name=value");
        let (status, _, body) = get(&api, "/ui/session", Some(session)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains(r#""user":"ada""#) && body.contains(r#""admin":false"#),
            "{body}"
        );
        let ada = stores
            .users
            .get(&"ada".parse().expect("name"))
            .await
            .expect("users");
        assert!(ada.is_some_and(|u| !u.admin && u.password.is_none()));
    }
}
