//! Phase 1 from request to reply (`docs/protocol/moonlight-http.md` § Phase 1): record the attempt,
//! open a PIN broker entry, log the PIN page URL, hold the request until the PIN arrives (or the
//! wait times out, or a newer attempt with the same key supersedes it), then reply with
//! `plaincert`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::{PairSecret, PendingPinRequest, PinBroker, PinError, PinSubmission, UserName};
use tokio::sync::oneshot;
use tracing::{debug, error, info};

use super::{EVICTED, PIN_TIMED_OUT, PairReject, PairingKey, PairingManager, SUPERSEDED};
use crate::log_throttle::Throttle;
use crate::source::Source;
use crate::xml::XmlReply;

/// PIN page links logged at INFO per source and minute; a source pairing faster than that (a
/// client in a loop) gets the rest at DEBUG.
const LINKS_PER_SOURCE_PER_MINUTE: u32 = 8;

/// Runs phase 1 of pairing: the in-flight entry in the [`PairingManager`], the pending entry in
/// the [`PinBroker`] that the PIN page delivers the PIN through, and the held request between.
#[derive(Debug)]
pub struct Phase1 {
    pairing: Arc<PairingManager>,
    broker: Arc<dyn PinBroker>,
    pin_timeout: Duration,
    default_user: UserName,
    pin_page_port: u16,
    links: Throttle<Source>,
}

/// One phase-1 request, as received.
#[derive(Debug, Clone)]
pub struct Phase1Request<'a> {
    /// The correlation key (client IP and `uniqueid`).
    pub key: PairingKey,
    /// `salt` (hex).
    pub salt: Option<&'a str>,
    /// `clientcert` (hex of the PEM text).
    pub client_cert: Option<&'a str>,
    /// `devicename`.
    pub device_name: Option<&'a str>,
    /// The host of the PIN page URL in the log line: the address clients reach the server on.
    pub pin_page_host: IpAddr,
}

impl Phase1 {
    /// Phase 1 on `pairing`'s in-flight entries with PINs from `broker`: a PIN waited for at
    /// most `pin_timeout`, the pairing's user `default_user` unless the PIN submission names
    /// one, and the PIN page on the HTTP port `pin_page_port`.
    pub fn new(
        pairing: Arc<PairingManager>,
        broker: Arc<dyn PinBroker>,
        pin_timeout: Duration,
        default_user: UserName,
        pin_page_port: u16,
    ) -> Self {
        Phase1 {
            pairing,
            broker,
            pin_timeout,
            default_user,
            pin_page_port,
            links: Throttle::new(Duration::from_secs(60), LINKS_PER_SOURCE_PER_MINUTE),
        }
    }

    /// Runs phase 1 to its reply. However the returned future ends (reply, error, or dropped
    /// because the client closed the connection), the broker entry is closed and, unless the PIN
    /// was used, the in-flight entry removed.
    ///
    /// # Errors
    /// A [`PairReject`]: bad inputs or limits ([`PairingManager::begin`]), a broker that cannot
    /// open an entry (503) or fails (500), [`SUPERSEDED`], [`PIN_TIMED_OUT`], or a cancelled
    /// entry.
    pub async fn run(&self, request: Phase1Request<'_>) -> Result<XmlReply, PairReject> {
        let held = self.pairing.begin(
            request.key.clone(),
            request.salt,
            request.client_cert,
            request.device_name,
        )?;
        let mut guard = HeldGuard {
            pairing: self.pairing.clone(),
            broker: self.broker.clone(),
            key: request.key.clone(),
            generation: held.generation,
            secret: None,
            armed: true,
        };
        for evicted in &held.evicted {
            self.broker.close(evicted).await;
        }
        let pending = PendingPinRequest {
            client_ip: request.key.ip(),
            device_name: request.device_name.map(str::to_owned),
        };
        let secret = self.broker.open(pending).await.map_err(|e| {
            crate::warn_throttled!("pin-broker-open", error = %e, "cannot open a pending PIN entry");
            PairReject::new(503, e.to_string())
        })?;
        let secret = guard.secret.insert(secret);
        if !self.pairing.attach_secret(&request.key, held.generation, secret) {
            return Err(PairReject::bad_request(SUPERSEDED));
        }
        let source = Source::of(request.key.ip(), self.pairing.limits().prefixes);
        let throttled = self.links.check(source);
        log_pin_page(
            request.pin_page_host,
            self.pin_page_port,
            secret,
            &request,
            throttled,
        );
        let submission = self.wait_for_pin(secret, held.superseded, &request.key).await?;
        let user = submission.user.unwrap_or_else(|| self.default_user.clone());
        let plaincert =
            self.pairing
                .pin_entered(&request.key, held.generation, &submission.pin, Some(user))?;
        guard.armed = false;
        Ok(XmlReply::ok().leaf("paired", 1).leaf("plaincert", plaincert))
    }

    /// The PIN, unless a newer attempt supersedes this one or the broker gives none.
    async fn wait_for_pin(
        &self,
        secret: &PairSecret,
        superseded: oneshot::Receiver<&'static str>,
        key: &PairingKey,
    ) -> Result<PinSubmission, PairReject> {
        // Superseded first: the newer attempt closes this one's broker entry right after telling
        // it, and the reason must win over the closed entry.
        let waited = tokio::select! {
            biased;
            reason = superseded => {
                let reason = reason.unwrap_or(SUPERSEDED);
                let status = if reason == EVICTED { 503 } else { 400 };
                return Err(PairReject::new(status, reason));
            }
            waited = self.broker.wait(secret, self.pin_timeout) => waited,
        };
        match waited {
            Ok(submission) => Ok(submission),
            Err(PinError::TimedOut) => {
                info!(client = %key.ip(), "PIN entry timed out");
                Err(PairReject::bad_request(PIN_TIMED_OUT))
            }
            Err(PinError::Closed | PinError::UnknownSecret) => {
                Err(PairReject::bad_request("The pairing attempt was cancelled"))
            }
            Err(e) => {
                error!(error = %e, "PIN broker failed");
                Err(PairReject::new(500, "PIN delivery failed; see the server log"))
            }
        }
    }
}

/// Logs where the PIN is to be typed (`docs/protocol/moonlight-http.md` § PIN page; the secret, not
/// the PIN), with the client's address and device name so that people pairing at once can tell
/// their links apart.
/// `throttled` is [`Throttle::check`]'s verdict for the client's source: `None` logs at DEBUG.
fn log_pin_page(
    host: IpAddr,
    port: u16,
    secret: &PairSecret,
    request: &Phase1Request<'_>,
    throttled: Option<u64>,
) {
    let host = match host {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let line = format!(
        "Insert pin at http://{host}:{port}/pin/#{} (client {}, device {})",
        secret.as_str(),
        request.key.ip(),
        device_label(request.device_name)
    );
    match throttled {
        Some(0) => info!("{line}"),
        Some(more_suppressed) => info!(more_suppressed, "{line}"),
        None => debug!("{line}"),
    }
}

/// The client's `devicename` fit for a log line: quoted, control characters escaped, at most 64
/// characters; `unnamed` if it sent none.
fn device_label(name: Option<&str>) -> String {
    match name {
        None | Some("") => "unnamed".to_owned(),
        Some(name) => {
            let short: String = name.chars().take(64).collect();
            format!("{short:?}")
        }
    }
}

/// Ends a held phase 1 cleanly however its future ends: closes the broker entry (once opened),
/// and unless the PIN was used, removes the in-flight entry.
struct HeldGuard {
    pairing: Arc<PairingManager>,
    broker: Arc<dyn PinBroker>,
    key: PairingKey,
    generation: u64,
    secret: Option<PairSecret>,
    armed: bool,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        if self.armed {
            self.pairing.abandon_held(&self.key, self.generation);
        }
        let (Some(secret), Ok(runtime)) = (self.secret.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let broker = self.broker.clone();
        runtime.spawn(async move { broker.close(&secret).await });
    }
}
