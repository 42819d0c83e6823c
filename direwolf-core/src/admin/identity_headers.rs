//! Identity headers on the admin port (oauth2-proxy style `X-Forwarded-User` and
//! `X-Forwarded-Email`): from one of the server's trusted proxies (`--trusted-proxy`) they name
//! the person the web UI logs in ([`super::ui_proxy`]); from any other address they are refused,
//! as the PIN page refuses them, so that a spoofing attempt is answered and audited as one
//! instead of passing unnoticed.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::HeaderMap;
use ipnet::IpNet;

use super::reply::ApiError;
use crate::ids::UserName;
use crate::login_name;

/// The headers an authenticating proxy names the user in.
pub const HEADERS: [&str; 2] = ["x-forwarded-user", "x-forwarded-email"];

/// Why a request carrying identity headers from an untrusted address is refused.
pub const SPOOFED: &str = "identity headers are accepted only from this server's trusted proxies";

/// The addresses whose identity headers are not refused, and where the proxy signs a person out.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Arc<[IpNet]>,
    sign_out: Option<Arc<str>>,
}

impl TrustedProxies {
    /// Trusts `networks` (none: identity headers are refused from everyone).
    pub fn new(networks: &[IpNet]) -> Self {
        TrustedProxies {
            networks: networks.into(),
            sign_out: None,
        }
    }

    /// The proxy's sign-out address (oauth2-proxy: `/oauth2/sign_out`), where the web UI sends a
    /// person who logs out of a session the proxy opened: logging out of direwolf alone would
    /// be undone by the proxy's next request, which names them again. A path on the web UI's
    /// origin or an `http(s)` URL.
    ///
    /// # Errors
    /// Any other address (a `javascript:` URL, a bare host name), with a message saying so.
    pub fn with_sign_out(mut self, sign_out: &str) -> Result<Self, String> {
        let path = sign_out.starts_with('/') && !sign_out.starts_with("//");
        let url = ["https://", "http://"]
            .iter()
            .any(|scheme| sign_out.len() > scheme.len() && sign_out.starts_with(scheme));
        // A browser reads `/\host` as `//host`, another site.
        let odd = |c: char| c.is_whitespace() || c.is_control() || c == '\\';
        if !(path || url) || sign_out.chars().any(odd) {
            return Err(format!(
                "the login proxy's sign-out address {sign_out:?} is neither a path on the web UI's \
                 origin (/oauth2/sign_out) nor an http(s) URL"
            ));
        }
        self.sign_out = Some(sign_out.into());
        Ok(self)
    }

    /// Where a person the proxy logged in signs out, for a request from `client` carrying
    /// `headers`: the configured address, when a trusted proxy names a user in them.
    pub fn sign_out(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Option<&str> {
        let through_proxy = matches!(self.named_user(client, headers), Some(Ok(_)));
        self.sign_out.as_deref().filter(|_| through_proxy)
    }

    /// Refuses (403, [`SPOOFED`]) a request from `client` carrying identity headers unless
    /// `client` is a trusted proxy; an unknown client is not trusted.
    ///
    /// # Errors
    /// The refusal.
    pub fn check(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
        if !HEADERS.iter().any(|name| headers.contains_key(*name)) {
            return Ok(());
        }
        let trusted = client
            .map(|ip| ip.to_canonical())
            .is_some_and(|ip| self.networks.iter().any(|net| net.contains(&ip)));
        if trusted {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, SPOOFED))
        }
    }

    /// The user a trusted proxy names in `headers` (`X-Forwarded-User`, else
    /// `X-Forwarded-Email`) for a request from `client`, made a user name as the PIN page makes
    /// it ([`login_name`]): `None` without identity headers or when `client` is not a trusted
    /// proxy (which [`Self::check`] refuses); a 400 when the header names no usable user.
    pub fn named_user(
        &self,
        client: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Option<Result<UserName, ApiError>> {
        let value = HEADERS.iter().find_map(|name| headers.get(*name))?;
        if self.check(client, headers).is_err() {
            return None;
        }
        let name = value.to_str().ok().and_then(login_name::user_name);
        Some(name.ok_or_else(|| {
            ApiError::bad_request("the login proxy's identity header names no usable user name")
        }))
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn with(name: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static("admin"));
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    #[test]
    fn identity_headers_pass_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".parse().expect("a network")]);
        for name in HEADERS {
            assert!(proxies.check(ip("10.1.2.3"), &with(name)).is_ok(), "{name}");
            assert!(
                proxies.check(ip("::ffff:10.1.2.3"), &with(name)).is_ok(),
                "{name}"
            );
            for outsider in [ip("192.0.2.9"), None] {
                let refused = proxies.check(outsider, &with(name)).expect_err(name);
                assert_eq!(
                    (refused.status, refused.message.as_str()),
                    (StatusCode::FORBIDDEN, SPOOFED)
                );
            }
        }
        assert!(
            TrustedProxies::default()
                .check(ip("10.1.2.3"), &with("X-Forwarded-User"))
                .is_err(),
            "without proxies nobody is trusted"
        );
        assert!(
            TrustedProxies::default()
                .check(ip("192.0.2.9"), &HeaderMap::new())
                .is_ok(),
            "a request without identity headers is not concerned"
        );
    }

    #[test]
    fn the_sign_out_address_is_a_path_or_an_http_url_and_only_for_the_proxys_people() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".parse().expect("a network")]);
        for bad in [
            "javascript:alert(1)",
            "//evil.example/x",
            "sign_out",
            "https://",
            "/a b",
            "/\\evil.example/x",
            "/a\u{7f}",
            "",
        ] {
            let refused = proxies.clone().with_sign_out(bad).expect_err(bad);
            assert!(refused.contains("neither a path"), "{refused}");
        }
        let proxies = proxies.with_sign_out("/oauth2/sign_out?rd=%2F").expect("a path");
        assert_eq!(
            proxies.sign_out(ip("10.1.2.3"), &with("x-forwarded-user")),
            Some("/oauth2/sign_out?rd=%2F")
        );
        assert_eq!(
            proxies.sign_out(ip("10.1.2.3"), &HeaderMap::new()),
            None,
            "not logged in by the proxy"
        );
        assert_eq!(
            proxies.sign_out(ip("192.0.2.9"), &with("x-forwarded-user")),
            None,
            "not through the proxy"
        );
        assert!(
            TrustedProxies::default()
                .with_sign_out("https://login.example.com/oauth2/sign_out")
                .is_ok()
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_user_as_the_pin_page_makes_it() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".parse().expect("a network")]);
        let named = |client: &str, pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            proxies
                .named_user(ip(client), &headers)
                .map(|r| r.map(|u| u.as_str().to_owned()).map_err(|e| e.status))
        };
        let user = "x-forwarded-user";
        let email = "x-forwarded-email";
        assert_eq!(named("10.1.2.3", &[(user, "Ada.L")]), Some(Ok("ada-l".into())));
        assert_eq!(
            named("10.1.2.3", &[(email, "grace@example.com")]),
            Some(Ok("grace".into()))
        );
        assert_eq!(
            named("10.1.2.3", &[(user, "ada"), (email, "grace@example.com")]),
            Some(Ok("ada".into())),
            "the user header first"
        );
        assert_eq!(
            named("10.1.2.3", &[(user, "...")]),
            Some(Err(StatusCode::BAD_REQUEST))
        );
        assert_eq!(named("192.0.2.9", &[(user, "ada")]), None, "not a trusted proxy");
        assert_eq!(named("10.1.2.3", &[]), None, "no identity header");
    }
}
