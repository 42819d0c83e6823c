//! The PIN entry page (`docs/protocol/moonlight-http.md` § PIN page), Wolf-compatible: `GET /pin/`
//! serves a page with four digit inputs whose script reads the pairing secret from the URL fragment
//! (`/pin/#SECRET`) and `POST`s `{"pin":"1234","secret":"SECRET"}` (optionally `"user"`) to
//! `/pin/`, which answers `OK` or a plain-text error.
//!
//! Guessing is bounded: failed submissions are counted per source address, and invalid
//! submissions per pending pairing (after too many the pairing is cancelled). A well-formed PIN
//! is delivered once per pairing; whether it was right is only known at pairing phase 4.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use direwolf_core::{PairSecret, Pin, PinBroker, PinError, PinSubmission, UserName};
use http::StatusCode;
use parking_lot::Mutex;
use serde::Deserialize;

/// The page served by `GET /pin/`.
pub const PIN_PAGE: &str = include_str!("pin.html");

/// The largest `POST /pin/` body accepted.
pub const MAX_BODY: usize = 4096;

/// Limits on PIN submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// Failed submissions (unknown secret, malformed body, PIN or user) per source address
    /// within [`PinLimits::window`] before the address is refused.
    pub max_failures_per_ip: usize,
    /// Invalid submissions for one pending pairing before it is cancelled.
    pub max_invalid_per_pairing: usize,
    /// The counting window.
    pub window: Duration,
}

impl Default for PinLimits {
    fn default() -> Self {
        PinLimits {
            max_failures_per_ip: 10,
            max_invalid_per_pairing: 5,
            window: Duration::from_secs(600),
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

#[derive(Default)]
struct Counters {
    by_ip: HashMap<IpAddr, VecDeque<Instant>>,
    by_secret: HashMap<PairSecret, usize>,
}

/// Handles PIN submissions.
pub struct PinEntry {
    broker: Arc<dyn PinBroker>,
    limits: PinLimits,
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
            counters: Mutex::default(),
        }
    }

    fn failures(&self, ip: IpAddr) -> usize {
        let now = Instant::now();
        let mut counters = self.counters.lock();
        let window = self.limits.window;
        counters.by_ip.retain(|_, times| {
            while times.front().is_some_and(|t| now.duration_since(*t) >= window) {
                times.pop_front();
            }
            !times.is_empty()
        });
        counters.by_ip.get(&ip).map_or(0, VecDeque::len)
    }

    fn fail(&self, ip: IpAddr, reply: PinReply) -> PinReply {
        let mut counters = self.counters.lock();
        if counters.by_ip.len() < 4096 || counters.by_ip.contains_key(&ip) {
            counters.by_ip.entry(ip).or_default().push_back(Instant::now());
        }
        reply
    }

    /// Handles `POST /pin/` from `ip` with `body`.
    pub async fn submit(&self, ip: IpAddr, body: &[u8]) -> PinReply {
        if self.failures(ip) >= self.limits.max_failures_per_ip {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed PIN submissions from this address; try again in a few minutes".into(),
            );
        }
        let Ok(body) = serde_json::from_slice::<Body>(body) else {
            return self.fail(ip, bad(r#"Expected a JSON body {"pin":"1234","secret":"..."}"#));
        };
        let Some(secret) = body.secret.as_deref().and_then(|s| s.parse::<PairSecret>().ok()) else {
            return self.fail(ip, bad("Missing or malformed pairing secret"));
        };
        let pin = body.pin.as_deref().unwrap_or("").parse::<Pin>();
        let user = match body.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(u) => u.parse::<UserName>().map(Some),
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
        match self.broker.submit(&secret, PinSubmission { pin, user }).await {
            Ok(()) => {
                self.counters.lock().by_secret.remove(&secret);
                tracing::info!(pairing.secret = ?secret, "PIN submitted");
                (StatusCode::OK, "OK".into())
            }
            Err(PinError::UnknownSecret | PinError::Closed | PinError::TimedOut) => self.fail(
                ip,
                bad("No pairing is waiting for this secret (it may have expired or been used)"),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "PIN broker failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The PIN could not be delivered; try again".into(),
                )
            }
        }
    }

    async fn invalid_for_pairing(&self, ip: IpAddr, secret: &PairSecret, message: String) -> PinReply {
        let pending = self
            .broker
            .pending()
            .await
            .map(|p| p.iter().any(|e| &e.secret == secret))
            .unwrap_or(false);
        if !pending {
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
            tracing::warn!(pairing.secret = ?secret, "pairing cancelled after repeated invalid PIN submissions");
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
        let secret = open(&broker).await;
        // Even the right secret is refused from this address now.
        assert_eq!(
            entry.submit(IP, &json("1234", secret.as_str())).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            entry.submit(other, &json("1234", secret.as_str())).await.0,
            StatusCode::OK
        );
    }

    #[test]
    fn page_posts_json_from_the_fragment() {
        assert!(PIN_PAGE.contains("location.hash"));
        assert!(PIN_PAGE.contains("application/json"));
        assert_eq!(PIN_PAGE.matches("class=\"digit\"").count(), 4);
    }
}
