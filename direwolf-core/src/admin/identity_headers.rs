//! Identity headers on the admin port (oauth2-proxy style `X-Forwarded-User` and
//! `X-Forwarded-Email`): the admin API logs nobody in by them, and refuses them from any address
//! that is not one of the server's trusted proxies (`--trusted-proxy`), as the PIN page does, so
//! that a spoofing attempt is answered and audited as one instead of passing unnoticed.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::HeaderMap;
use ipnet::IpNet;

use super::reply::ApiError;

/// The headers an authenticating proxy names the user in.
pub const HEADERS: [&str; 2] = ["x-forwarded-user", "x-forwarded-email"];

/// Why a request carrying identity headers from an untrusted address is refused.
pub const SPOOFED: &str = "identity headers are accepted only from this server's trusted proxies";

/// The addresses whose identity headers are not refused.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Trusts `networks` (none: identity headers are refused from everyone).
    pub fn new(networks: &[IpNet]) -> Self {
        TrustedProxies(networks.into())
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
            .is_some_and(|ip| self.0.iter().any(|net| net.contains(&ip)));
        if trusted {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, SPOOFED))
        }
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
}
