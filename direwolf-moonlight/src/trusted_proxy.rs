//! Who entered a PIN: the user an authenticating reverse proxy names (oauth2-proxy style
//! `X-Forwarded-User`, else `X-Forwarded-Email`), believed only from configured proxy addresses.
//!
//! * Identity headers from any other address are refused (403) and logged: they are spoofed.
//! * From a trusted proxy, the named user owns the pairing, whatever the form says.
//! * Without identity headers, the submission is open ([`Attribution::Open`]) when no proxy is
//!   configured or [`TrustedProxies::allow_unauthenticated`] is set; once a proxy is configured
//!   it is refused (401), so a pairing always belongs to whoever logged in. The PIN page then
//!   accepts an open submission only with another login (a password, a pairing link, single
//!   sign-on) or when [`TrustedProxies::allow_unauthenticated`] is set
//!   (`crate::pin_page::PinEntry::submit_as`).
//!
//! Proxy user names become direwolf user names as [`crate::login_name`] maps them.

use std::net::IpAddr;

use direwolf_core::UserName;
use http::{HeaderMap, StatusCode};

use crate::login_name;
use ipnet::IpNet;

/// A refusal: HTTP status and a plain-text message (the PIN page's reply).
pub type Refusal = (StatusCode, String);

/// The header naming the logged-in user.
pub const USER_HEADER: &str = "x-forwarded-user";
/// The header naming the logged-in user's e-mail address (used when there is no user header).
pub const EMAIL_HEADER: &str = "x-forwarded-email";

/// Message for identity headers from an address that is not a trusted proxy.
pub const SPOOFED: &str = "Identity headers are accepted only from this server's trusted proxies";
/// Message for a submission without identity where one is required.
pub const LOGIN_REQUIRED: &str =
    "Log in first: open the PIN page through this server's login proxy, which tells it who you are";

/// Who a PIN submission says entered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// A trusted proxy named this user.
    Proxy(UserName),
    /// Nobody vouches for the submitter: another login must (the PIN page refuses it otherwise),
    /// unless unauthenticated PINs are allowed (then the form's user, else the default user).
    Open,
    /// Nobody vouches for the submitter and a PIN may not be entered that way: only a local
    /// account's password or a pairing link will do (`crate::pin_page::PinEntry::attribute`).
    LoginRequired,
    /// The browser carries a single sign-on login ([`crate::oidc`]); the PIN page checks it.
    SingleSignOn(crate::oidc::LoginToken),
}

/// The trusted proxies and whether a PIN may be entered without one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Addresses whose identity headers are believed.
    pub networks: Vec<IpNet>,
    /// Accept PINs entered without any login (a proxy's identity, a password, a pairing link,
    /// single sign-on): off by default, so a fresh install refuses them.
    pub allow_unauthenticated: bool,
}

impl TrustedProxies {
    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|net| net.contains(&peer))
    }

    /// Who entered a PIN sent by `peer` with `headers`.
    ///
    /// # Errors
    /// 403 [`SPOOFED`] for identity headers from an untrusted address or an unusable identity,
    /// 401 [`LOGIN_REQUIRED`] when identity is required and missing.
    pub fn attribute(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Attribution, Refusal> {
        let claimed = [USER_HEADER, EMAIL_HEADER]
            .into_iter()
            .find_map(|name| headers.get(name))
            .map(|value| value.to_str().unwrap_or(""));
        match claimed {
            Some(_) if !self.trusts(peer) => {
                tracing::warn!(
                    target: "direwolf::audit",
                    actor = "pin-page",
                    client = %peer,
                    action = "login",
                    outcome = "refused",
                    "PIN submission with identity headers from an untrusted address refused"
                );
                Err((StatusCode::FORBIDDEN, SPOOFED.into()))
            }
            Some(name) => match login_name::user_name(name) {
                Some(user) => Ok(Attribution::Proxy(user)),
                None => {
                    tracing::warn!(%peer, "the trusted proxy named a user that is not usable as a user name");
                    Err((
                        StatusCode::FORBIDDEN,
                        "The login proxy's user name cannot be used here".into(),
                    ))
                }
            },
            None if self.networks.is_empty() || self.allow_unauthenticated => Ok(Attribution::Open),
            None => Err((StatusCode::UNAUTHORIZED, LOGIN_REQUIRED.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn proxies(allow: bool) -> TrustedProxies {
        TrustedProxies {
            networks: vec![
                "10.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
            allow_unauthenticated: allow,
        }
    }

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));
    const OUTSIDER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

    #[test]
    fn a_trusted_proxy_names_the_user() {
        let user = |h| proxies(false).attribute(PROXY, &headers(h));
        assert_eq!(
            user(&[("X-Forwarded-User", "alice")]),
            Ok(Attribution::Proxy("alice".parse().expect("user")))
        );
        assert_eq!(
            user(&[("X-Forwarded-Email", "Bob.Smith@example.com")]),
            Ok(Attribution::Proxy("bob-smith".parse().expect("user")))
        );
        let mapped = proxies(false).attribute(
            "::ffff:10.9.9.9".parse().expect("ip"),
            &headers(&[("x-forwarded-user", "carol")]),
        );
        assert!(
            matches!(mapped, Ok(Attribution::Proxy(_))),
            "IPv4-mapped addresses are the IPv4 ones"
        );
        assert_eq!(
            user(&[("X-Forwarded-User", "@@@")]).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn identity_from_anyone_else_is_refused_even_without_proxies() {
        for config in [proxies(true), TrustedProxies::default()] {
            let refused = config.attribute(OUTSIDER, &headers(&[("X-Forwarded-User", "admin")]));
            assert_eq!(refused, Err((StatusCode::FORBIDDEN, SPOOFED.into())));
        }
    }

    /// A log sink for the audit test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_spoofing_attempt_is_an_audit_line_naming_the_address() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let refused = tracing::subscriber::with_default(subscriber, || {
            proxies(false).attribute(OUTSIDER, &headers(&[("X-Forwarded-User", "admin")]))
        });
        assert_eq!(refused.map_err(|e| e.0), Err(StatusCode::FORBIDDEN));
        let log = String::from_utf8(captured.0.lock().expect("sink").clone()).expect("utf-8");
        for needle in [
            "direwolf::audit",
            "client=192.0.2.9",
            "outcome=\"refused\"",
            "identity headers from an untrusted address refused",
        ] {
            assert!(log.contains(needle), "{needle} in {log}");
        }
    }

    #[test]
    fn without_identity_the_entry_is_open_only_where_allowed() {
        assert_eq!(
            TrustedProxies::default().attribute(OUTSIDER, &HeaderMap::new()),
            Ok(Attribution::Open)
        );
        assert_eq!(
            proxies(true).attribute(PROXY, &HeaderMap::new()),
            Ok(Attribution::Open)
        );
        assert_eq!(
            proxies(false).attribute(PROXY, &HeaderMap::new()),
            Err((StatusCode::UNAUTHORIZED, LOGIN_REQUIRED.into()))
        );
    }
}
