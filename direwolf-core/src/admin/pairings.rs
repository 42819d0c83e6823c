//! `/api/v1/pairings` (list, revoke) and `/api/v1/pending-pairings` (list, approve with a PIN).

use std::net::IpAddr;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminApi;
use super::reply::{ApiError, Handled, json, no_content};
use super::ui::Scope;
use crate::ids::{Fingerprint, PairSecret, Pin, UserName};
use crate::model::SessionPhase;
use crate::pin_broker::{PinError, PinSubmission};

/// A pairing as the API shows it (without the certificate).
#[derive(Debug, Serialize)]
pub struct PairingView {
    /// SHA-256 of the client certificate.
    pub fingerprint: Fingerprint,
    /// Its user.
    pub user: UserName,
    /// The client's device name.
    pub device_name: Option<String>,
    /// When it paired (Unix seconds).
    pub paired_at: u64,
}

/// A pairing waiting for its PIN.
#[derive(Debug, Serialize)]
pub struct PendingView {
    /// The secret naming it (also in the PIN page link).
    pub secret: String,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client's device name.
    pub device_name: Option<String>,
    /// When it started (Unix seconds).
    pub opened_at: u64,
}

/// The body of `POST /api/v1/pending-pairings/{secret}/approve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The four digits the client shows.
    pub pin: String,
    /// The user the pairing will belong to; default: the server's default user.
    #[serde(default)]
    pub user: Option<String>,
}

impl AdminApi {
    pub(super) async fn list_pairings(&self, scope: &Scope) -> Handled {
        let views: Vec<PairingView> = self
            .pairings
            .list()
            .await?
            .into_iter()
            .filter(|p| scope.covers(&p.user))
            .map(|p| PairingView {
                fingerprint: p.fingerprint,
                user: p.user,
                device_name: p.device_name,
                paired_at: p.paired_at,
            })
            .collect();
        Ok(json(StatusCode::OK, &views))
    }

    /// Revokes a pairing: its client is refused from its next request. With `stop_sessions`,
    /// the sessions it launched end too.
    pub(super) async fn revoke_pairing(
        &self,
        scope: &Scope,
        fingerprint: &str,
        stop_sessions: bool,
    ) -> Handled {
        let _change = self.change().await;
        let not_found = || ApiError::not_found(format!("no pairing {fingerprint:?}"));
        let fingerprint: Fingerprint = fingerprint.parse().map_err(|_| not_found())?;
        // Another person's pairing is not found, as if it did not exist.
        let Some(pairing) = self
            .pairings
            .get(&fingerprint)
            .await?
            .filter(|p| scope.covers(&p.user))
        else {
            return Err(not_found());
        };
        if stop_sessions {
            let launched = self
                .sessions
                .list()
                .await?
                .into_iter()
                .any(|s| s.pairing == fingerprint && s.phase != SessionPhase::Ended);
            if launched {
                self.launcher.cancel(&pairing.user).await.map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot end the pairing's session: {e}"),
                    )
                })?;
            }
        }
        if !self.pairings.delete(&fingerprint).await? {
            return Err(not_found());
        }
        Ok(no_content())
    }

    pub(super) async fn list_pending(&self) -> Handled {
        let views: Vec<PendingView> = self
            .broker
            .pending()
            .await?
            .into_iter()
            .map(|p| PendingView {
                secret: p.secret.as_str().to_owned(),
                client_ip: p.client_ip,
                device_name: p.device_name,
                opened_at: p.opened_at,
            })
            .collect();
        Ok(json(StatusCode::OK, &views))
    }

    /// Delivers a PIN to a pending pairing, through the same broker the PIN page submits to.
    /// A person (`Scope::Own`) approves for themselves: another `user` is refused with 403.
    pub(super) async fn approve(&self, scope: &Scope, secret: &str, approval: Approval) -> Handled {
        let _change = self.change().await;
        let not_found = || {
            ApiError::not_found("no pairing is waiting with this secret (it may have expired or been used)")
        };
        let secret: PairSecret = secret.parse().map_err(|_| not_found())?;
        let pin: Pin = approval
            .pin
            .parse()
            .map_err(|_| ApiError::bad_request("the PIN is exactly four digits"))?;
        let asked = match (scope, approval.user) {
            (Scope::All, user) => user,
            (Scope::Own(me), None) => Some(me.as_str().to_owned()),
            (Scope::Own(me), Some(user)) if user == me.as_str() => Some(user),
            (Scope::Own(_), Some(_)) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "only an administrator may approve a pairing for another user",
                ));
            }
        };
        let user = match asked.as_deref() {
            None => None,
            Some(name) => {
                let name = name
                    .parse::<UserName>()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                if self.users.get(&name).await?.is_none() {
                    return Err(ApiError::not_found(format!("no user {name}: create it first")));
                }
                Some(name)
            }
        };
        if !self.broker.pending().await?.iter().any(|p| p.secret == secret) {
            return Err(not_found());
        }
        match self.broker.submit(&secret, PinSubmission { pin, user }).await {
            Ok(()) => Ok(no_content()),
            Err(PinError::UnknownSecret | PinError::Closed | PinError::TimedOut) => Err(not_found()),
            Err(PinError::Backend(e)) => Err(e.into()),
        }
    }
}
