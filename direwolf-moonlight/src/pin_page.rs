//! The PIN entry page (`docs/protocol/moonlight-http.md` § PIN page), Wolf-compatible: `GET /pin/`
//! serves a page with four digit inputs whose script reads the pairing secret from the URL fragment
//! (`/pin/#SECRET`) and `POST`s `{"pin":"1234","secret":"SECRET"}` (optionally `"user"`) to
//! `/pin/`, which answers `OK` or a plain-text error.
//!
//! Only the page's own script may post: a submission must be `Content-Type: application/json`
//! (which a cross-site page cannot send without a CORS preflight, and the preflight is refused)
//! and, when it carries an `Origin`, come from the page's own origin ([`check_headers`]).
//!
//! Guessing is bounded: failed submissions are counted per source network (an address's /24 or
//! /64), and invalid submissions per pending pairing (after too many the pairing is cancelled).
//! A network over its limit may still submit for a pairing that is waiting (a correct secret
//! goes through), so nobody can lock the administrator out by failing on purpose. A well-formed
//! PIN is delivered once per pairing; whether it was right is only known at pairing phase 4.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use direwolf_core::{PairSecret, Pin, PinBroker, PinError, PinSubmission, UserName};
use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::source::{FailureTable, PrefixLengths, Source};
use crate::trusted_proxy::{Attribution, TrustedProxies};

/// The page served by `GET /pin/`.
pub const PIN_PAGE: &str = include_str!("pin.html");

/// The largest `POST /pin/` body accepted.
pub const MAX_BODY: usize = 4096;

/// Limits on PIN submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// Failed submissions (unknown secret, malformed body, PIN or user) per source network
    /// ([`PinLimits::prefixes`]) within [`PinLimits::window`] before the network is refused
    /// (except for submissions to a pairing that is waiting).
    pub max_failures_per_ip: usize,
    /// Invalid submissions for one pending pairing before it is cancelled.
    pub max_invalid_per_pairing: usize,
    /// The counting window.
    pub window: Duration,
    /// How addresses group into one source (IPv4 /24, IPv6 /64).
    pub prefixes: PrefixLengths,
}

impl Default for PinLimits {
    fn default() -> Self {
        PinLimits {
            max_failures_per_ip: 10,
            max_invalid_per_pairing: 5,
            window: Duration::from_secs(600),
            prefixes: PrefixLengths::default(),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    pin: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

struct Counters {
    by_source: FailureTable,
    by_secret: HashMap<PairSecret, usize>,
}

/// Sources kept in the failure table; past it, failures are counted together (never ignored).
const MAX_FAILURE_SOURCES: usize = 4096;

/// Message for a submission that is not JSON.
pub const NOT_JSON: &str = "The PIN must be posted as JSON (Content-Type: application/json)";
/// Message for a submission from another origin than the page.
pub const CROSS_ORIGIN: &str =
    "PIN submissions from other web pages are refused: open the PIN page link from the server log";

/// Checks that a `POST /pin/` can only come from the page's own script: `Content-Type:
/// application/json` (a cross-site page cannot send it without a preflight, which is refused), and
/// an `Origin`, if present, equal to `http://` plus the request's `Host` (browsers send `Origin`
/// with every cross-origin POST; tools such as curl send none).
///
/// # Errors
/// 415 [`NOT_JSON`] or 403 [`CROSS_ORIGIN`].
pub fn check_headers(headers: &HeaderMap) -> Result<(), PinReply> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.into()));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        let same = match (origin.to_str(), host) {
            (Ok(origin), Some(host)) => origin
                .strip_prefix("http://")
                .is_some_and(|o| o.eq_ignore_ascii_case(host)),
            _ => false,
        };
        if !same {
            return Err((StatusCode::FORBIDDEN, CROSS_ORIGIN.into()));
        }
    }
    Ok(())
}

/// Handles PIN submissions.
pub struct PinEntry {
    broker: Arc<dyn PinBroker>,
    limits: PinLimits,
    proxies: TrustedProxies,
    counters: Mutex<Counters>,
}

impl fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinEntry")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The answer to a submission: HTTP status and a plain-text body.
pub type PinReply = (StatusCode, String);

fn bad(text: impl Into<String>) -> PinReply {
    (StatusCode::BAD_REQUEST, text.into())
}

impl PinEntry {
    /// PIN entry over `broker`.
    pub fn new(broker: Arc<dyn PinBroker>, limits: PinLimits) -> Self {
        PinEntry {
            broker,
            limits,
            proxies: TrustedProxies::default(),
            counters: Mutex::new(Counters {
                by_source: FailureTable::new(limits.window, MAX_FAILURE_SOURCES, limits.max_failures_per_ip),
                by_secret: HashMap::new(),
            }),
        }
    }

    /// Believe these proxies' identity headers ([`crate::trusted_proxy`]).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Who entered a PIN posted by `ip` with `headers`; a refusal counts as a failed submission.
    ///
    /// # Errors
    /// As [`TrustedProxies::attribute`].
    pub fn attribute(&self, ip: IpAddr, headers: &HeaderMap) -> Result<Attribution, PinReply> {
        self.proxies
            .attribute(ip, headers)
            .map_err(|reply| self.fail(ip, reply))
    }

    fn locked_out(&self, ip: IpAddr) -> bool {
        let source = Source::of(ip, self.limits.prefixes);
        self.counters.lock().by_source.count(source, Instant::now()) >= self.limits.max_failures_per_ip
    }

    fn fail(&self, ip: IpAddr, reply: PinReply) -> PinReply {
        let source = Source::of(ip, self.limits.prefixes);
        self.counters.lock().by_source.record(source, Instant::now());
        reply
    }

    async fn is_pending(&self, secret: &PairSecret) -> bool {
        self.broker
            .pending()
            .await
            .map(|p| p.iter().any(|e| &e.secret == secret))
            .unwrap_or(false)
    }

    /// Handles `POST /pin/` from `ip` with `body` (headers checked by [`check_headers`]), open to
    /// whoever sends it: the form's user, else the default user.
    pub async fn submit(&self, ip: IpAddr, body: &[u8]) -> PinReply {
        self.submit_as(ip, Attribution::Open, body).await
    }

    /// Handles `POST /pin/` from `ip` with `body`, entered by `who` ([`PinEntry::attribute`]): a
    /// user named by a trusted proxy owns the pairing whatever the form says.
    pub async fn submit_as(&self, ip: IpAddr, who: Attribution, body: &[u8]) -> PinReply {
        let locked_out = self.locked_out(ip);
        let too_many = || {
            (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed PIN submissions from this network; try again in a few minutes".to_owned(),
            )
        };
        let parsed = serde_json::from_slice::<Body>(body);
        let secret = parsed
            .as_ref()
            .ok()
            .and_then(|b| b.secret.as_deref())
            .and_then(|s| s.parse::<PairSecret>().ok());
        // Over the limit, only submissions for a waiting pairing go on (they are bounded per
        // pairing); guesses at secrets do not.
        if locked_out && !matches!(&secret, Some(s) if self.is_pending(s).await) {
            return too_many();
        }
        let Ok(body) = parsed else {
            return self.fail(ip, bad(r#"Expected a JSON body {"pin":"1234","secret":"..."}"#));
        };
        let Some(secret) = secret else {
            return self.fail(ip, bad("Missing or malformed pairing secret"));
        };
        let pin = body.pin.as_deref().unwrap_or("").parse::<Pin>();
        let user = match (who, body.user.as_deref().map(str::trim).filter(|u| !u.is_empty())) {
            (Attribution::Proxy(user), _) => Ok(Some(user)),
            (Attribution::Open, None) => Ok(None),
            (Attribution::Open, Some(u)) => u.parse::<UserName>().map(Some),
        };
        let (pin, user) = match (pin, user) {
            (Ok(pin), Ok(user)) => (pin, user),
            (pin, user) => {
                let message = if pin.is_err() {
                    "The PIN must be exactly four digits".to_owned()
                } else {
                    format!(
                        "Invalid user name: {}",
                        user.err().map(|e| e.to_string()).unwrap_or_default()
                    )
                };
                return self.invalid_for_pairing(ip, &secret, message).await;
            }
        };
        let owner = user.as_ref().map_or("(default)", UserName::as_str).to_owned();
        match self.broker.submit(&secret, PinSubmission { pin, user }).await {
            Ok(()) => {
                self.counters.lock().by_secret.remove(&secret);
                tracing::info!(pairing.secret = ?secret, user = %owner, "PIN submitted");
                (StatusCode::OK, "OK".into())
            }
            Err(PinError::UnknownSecret | PinError::Closed | PinError::TimedOut) => self.fail(
                ip,
                bad("No pairing is waiting for this secret (it may have expired or been used)"),
            ),
            Err(e) => {
                crate::warn_throttled!("pin-broker-submit", error = %e, "PIN broker failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The PIN could not be delivered; try again".into(),
                )
            }
        }
    }

    async fn invalid_for_pairing(&self, ip: IpAddr, secret: &PairSecret, message: String) -> PinReply {
        if !self.is_pending(secret).await {
            return self.fail(ip, bad(message));
        }
        let count = {
            let mut counters = self.counters.lock();
            if counters.by_secret.len() >= 1024 {
                counters.by_secret.clear();
            }
            let count = counters.by_secret.entry(secret.clone()).or_insert(0);
            *count += 1;
            *count
        };
        if count >= self.limits.max_invalid_per_pairing {
            self.counters.lock().by_secret.remove(secret);
            self.broker.close(secret).await;
            crate::warn_throttled!(
                "pin-invalid-cancel",
                pairing.secret = ?secret,
                "pairing cancelled after repeated invalid PIN submissions"
            );
            return self.fail(
                ip,
                bad("Too many invalid PIN submissions; this pairing attempt was cancelled"),
            );
        }
        self.fail(ip, bad(message))
    }
}

#[cfg(test)]
mod tests {
    use direwolf_core::{InMemoryPinBroker, PendingPinRequest};

    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    async fn open(broker: &InMemoryPinBroker) -> PairSecret {
        broker
            .open(PendingPinRequest {
                client_ip: IP,
                device_name: None,
            })
            .await
            .unwrap()
    }

    fn json(pin: &str, secret: &str) -> Vec<u8> {
        format!(r#"{{"pin":"{pin}","secret":"{secret}"}}"#).into_bytes()
    }

    #[tokio::test]
    async fn delivers_a_valid_pin_once() {
        let broker = InMemoryPinBroker::default();
        let entry = PinEntry::new(Arc::new(broker.clone()), PinLimits::default());
        let secret = open(&broker).await;
        let body = format!(
            r#"{{"pin":"1234","secret":"{}","user":"alice"}}"#,
            secret.as_str().to_lowercase()
        );
        assert_eq!(
            entry.submit(IP, body.as_bytes()).await,
            (StatusCode::OK, "OK".into())
        );
        let got = broker.wait(&secret, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.pin.expose(), "1234");
        assert_eq!(got.user.unwrap().as_str(), "alice");
        let (status, _) = entry.submit(IP, &json("1234", secret.as_str())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn malformed_submissions() {
        let broker = InMemoryPinBroker::default();
        let entry = PinEntry::new(Arc::new(broker.clone()), PinLimits::default());
        let secret = open(&broker).await;
        for (body, expected) in [
            (b"not json".to_vec(), "Expected a JSON body"),
            (json("1234", "nothex"), "Missing or malformed pairing secret"),
            (json("12a4", secret.as_str()), "four digits"),
            (json("12345", secret.as_str()), "four digits"),
            (
                format!(
                    r#"{{"pin":"1234","secret":"{}","user":"Bad User"}}"#,
                    secret.as_str()
                )
                .into_bytes(),
                "Invalid user name",
            ),
        ] {
            let (status, text) = entry.submit(IP, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(text.contains(expected), "{text}");
        }
    }

    #[tokio::test]
    async fn invalid_submissions_cancel_the_pairing() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_invalid_per_pairing: 2,
            ..Default::default()
        };
        let entry = PinEntry::new(Arc::new(broker.clone()), limits);
        let secret = open(&broker).await;
        entry.submit(IP, &json("x", secret.as_str())).await;
        let (_, text) = entry.submit(IP, &json("y", secret.as_str())).await;
        assert!(text.contains("cancelled"), "{text}");
        assert!(broker.pending().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_per_address_are_bounded() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 3,
            ..Default::default()
        };
        let entry = PinEntry::new(Arc::new(broker.clone()), limits);
        for _ in 0..3 {
            let guess = PairSecret::generate();
            assert_eq!(
                entry.submit(IP, &json("1234", guess.as_str())).await.0,
                StatusCode::BAD_REQUEST
            );
        }
        // Further guesses are refused, from the whole network (/24).
        let neighbour: IpAddr = "192.0.2.2".parse().unwrap();
        for ip in [IP, neighbour] {
            let (status, text) = entry
                .submit(ip, &json("1234", PairSecret::generate().as_str()))
                .await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert!(text.contains("this network"), "{text}");
        }
        // Another network is not affected.
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let (status, _) = entry
            .submit(other, &json("1234", PairSecret::generate().as_str()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_correct_secret_goes_through_a_locked_out_address() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 3,
            ..Default::default()
        };
        let entry = PinEntry::new(Arc::new(broker.clone()), limits);
        // Someone (a cross-site page, a neighbour) fails on purpose from the admin's address.
        for _ in 0..5 {
            entry.submit(IP, b"x").await;
        }
        assert_eq!(
            entry
                .submit(IP, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let secret = open(&broker).await;
        assert_eq!(
            entry.submit(IP, &json("1234", secret.as_str())).await,
            (StatusCode::OK, "OK".into())
        );
        assert_eq!(
            broker
                .wait(&secret, Duration::from_secs(1))
                .await
                .unwrap()
                .pin
                .expose(),
            "1234"
        );
    }

    #[tokio::test]
    async fn the_failure_table_overflowing_keeps_the_limit() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 2,
            ..Default::default()
        };
        let entry = PinEntry::new(Arc::new(broker.clone()), limits);
        // Fill the table with one failure from each of MAX_FAILURE_SOURCES networks.
        for i in 0..MAX_FAILURE_SOURCES {
            let ip = IpAddr::from([10, (i >> 8) as u8, i as u8, 1]);
            entry.submit(ip, b"x").await;
        }
        // A network past the table is still limited.
        let late: IpAddr = "2001:db8:7::1".parse().unwrap();
        for _ in 0..2 {
            entry.submit(late, b"x").await;
        }
        assert_eq!(
            entry
                .submit(late, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
        // IPv6 counts per /64: another address of the same /64 is refused too.
        let same_64: IpAddr = "2001:db8:7::2:3".parse().unwrap();
        assert_eq!(
            entry
                .submit(same_64, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_json_from_the_page_origin_is_accepted() {
        let host = (HOST, "192.0.2.10:47989");
        let json = (CONTENT_TYPE, "application/json");
        assert!(check_headers(&headers(&[host.clone(), json.clone()])).is_ok());
        assert!(check_headers(&headers(&[(CONTENT_TYPE, "Application/JSON; charset=utf-8")])).is_ok());
        assert!(
            check_headers(&headers(&[
                host.clone(),
                json.clone(),
                (ORIGIN, "http://192.0.2.10:47989")
            ]))
            .is_ok()
        );
        // A cross-site form or fetch without a preflight can only send text/plain and the like.
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let refused = check_headers(&headers(&[host.clone(), (CONTENT_TYPE, content_type)]));
            assert_eq!(
                refused,
                Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.into()))
            );
        }
        assert!(check_headers(&headers(std::slice::from_ref(&host))).is_err());
        // Another origin, an opaque one, or HTTPS for this plain-HTTP page.
        for origin in [
            "http://evil.example",
            "null",
            "https://192.0.2.10:47989",
            "http://192.0.2.10",
        ] {
            let refused = check_headers(&headers(&[host.clone(), json.clone(), (ORIGIN, origin)]));
            assert_eq!(
                refused,
                Err((StatusCode::FORBIDDEN, CROSS_ORIGIN.into())),
                "{origin}"
            );
        }
        assert!(check_headers(&headers(&[json, (ORIGIN, "http://192.0.2.10:47989")])).is_err());
    }

    #[test]
    fn page_posts_json_from_the_fragment() {
        assert!(PIN_PAGE.contains("location.hash"));
        assert!(PIN_PAGE.contains("application/json"));
        assert_eq!(PIN_PAGE.matches("class=\"digit\"").count(), 4);
    }
}
