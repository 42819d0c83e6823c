//! [`KubePinBroker`]: PIN delivery across proxy replicas through Secrets
//! (`docs/protocol/moonlight-http.md` § PIN page, § Several proxy replicas).
//!
//! The replica holding a pairing's phase 1 opens one Secret per pending pairing, named
//! `direwolf-pin-<secret>` (lower case) and labelled [`PIN_LABEL`]`=pending`, holding the client
//! address, device name and opening time. The PIN page, on whichever replica it is served,
//! writes the PIN and the user into that Secret with a merge patch guarded by the Secret's
//! resourceVersion (one submission wins). The holding replica sees the PIN through the watch of
//! the labelled Secrets in the shared [`Watches`] set (and, should the watch stall, by reading the Secret every
//! [`POLL_INTERVAL`]), and deletes the Secret when the pairing attempt ends. Entries older than
//! [`PinBrokerConfig::entry_ttl`] are deleted by the next `open` on any replica; at most
//! [`PinBrokerConfig::max_pending`] entries wait at once.
//!
//! PINs exist only in these Secrets: never in logs, events or custom resources. Logs show the
//! pair secret only as its redacted `Debug` form (the Secret name would reveal it).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use direwolf_core::model::unix_now;
use direwolf_core::{
    Error, PairSecret, PendingPin, PendingPinRequest, Pin, PinBroker, PinError, PinSubmission, Result,
    UserName,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::crd::labels;
use crate::retry::{RetryPolicy, has_status, is_transient};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// The label every pending-PIN Secret carries (value `pending`).
pub const PIN_LABEL: &str = labels::PIN;

/// The prefix of a pending-PIN Secret's name; the lower-case pair secret follows.
pub const SECRET_PREFIX: &str = "direwolf-pin-";

/// How often a waiting replica also reads its Secret directly, in case the watch stalls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

const KEY_CLIENT_IP: &str = "clientIP";
const KEY_DEVICE: &str = "deviceName";
const KEY_OPENED_AT: &str = "openedAt";
const KEY_PIN: &str = "pin";
const KEY_USER: &str = "user";

/// Settings of a [`KubePinBroker`].
#[derive(Debug, Clone, Copy)]
pub struct PinBrokerConfig {
    /// At most this many pairings wait for a PIN at once (across replicas).
    pub max_pending: usize,
    /// Entries older than this are deleted (a replica that died while holding one).
    pub entry_ttl: Duration,
    /// How transient API failures ([`is_transient`]) are retried.
    pub retry: RetryPolicy,
}

impl Default for PinBrokerConfig {
    fn default() -> Self {
        PinBrokerConfig {
            max_pending: 64,
            entry_ttl: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

struct Inner {
    namespace: String,
    api: Api<Secret>,
    /// The pending-PIN Secrets: the shared watch, with this process's own writes on top.
    pending: Arc<Cache<Secret>>,
    config: PinBrokerConfig,
}

/// A [`PinBroker`] shared by every replica through Secrets; see the [module docs](self).
#[derive(Clone)]
pub struct KubePinBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for KubePinBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubePinBroker")
            .field("namespace", &self.inner.namespace)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A kube error as a core error: `Unavailable` for what retrying may fix, `Backend` otherwise.
/// The message never names the Secret (its name is the pair secret).
fn backend(what: &str, err: kube::Error) -> Error {
    if is_transient(&err) {
        Error::unavailable(format!("the Kubernetes API server did not answer ({what})"))
    } else {
        Error::backend("kubernetes", format!("{what}: {err}"))
    }
}

/// The Secret name of a pending pairing.
pub fn secret_name(secret: &PairSecret) -> String {
    format!("{SECRET_PREFIX}{}", secret.as_str().to_ascii_lowercase())
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The submission recorded in a Secret, if any. A malformed one is treated as none.
fn submission_of(secret: &Secret) -> Option<PinSubmission> {
    let pin: Pin = text(secret, KEY_PIN)?.parse().ok()?;
    let user = text(secret, KEY_USER).and_then(|u| u.parse::<UserName>().ok());
    Some(PinSubmission { pin, user })
}

fn pending_of(object: &Secret) -> Option<PendingPin> {
    let secret: PairSecret = object.name_any().strip_prefix(SECRET_PREFIX)?.parse().ok()?;
    Some(PendingPin {
        secret,
        client_ip: text(object, KEY_CLIENT_IP)?.parse::<IpAddr>().ok()?,
        device_name: text(object, KEY_DEVICE),
        opened_at: text(object, KEY_OPENED_AT)?.parse().ok()?,
    })
}

impl KubePinBroker {
    /// Starts watching the pending-PIN Secrets of `namespace` (a watch of its own) with default
    /// settings. Must be called inside a Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_config(client, namespace, PinBrokerConfig::default())
    }

    /// Like [`KubePinBroker::new`] with explicit settings.
    pub fn with_config(client: Client, namespace: &str, config: PinBrokerConfig) -> Self {
        Self::with_watches(&Watches::new(client, namespace), config)
    }

    /// A broker reading the pending-PIN watch of `watches` (starting it if no other reader
    /// has). Must be called inside a Tokio runtime.
    pub fn with_watches(watches: &Watches, config: PinBrokerConfig) -> Self {
        KubePinBroker {
            inner: Arc::new(Inner {
                namespace: watches.namespace().to_owned(),
                api: watches.api(),
                pending: watches.pending_pins(),
                config,
            }),
        }
    }

    /// Whether the watch has completed its initial list.
    pub fn ready(&self) -> bool {
        self.inner.pending.is_ready()
    }

    /// Waits up to `timeout` for the initial list.
    ///
    /// # Errors
    /// `Unavailable` on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        match self.inner.pending.reflector().wait_ready(timeout).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::unavailable(format!(
                "the pending-PIN Secrets could not be listed within {timeout:?}"
            ))),
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<Secret>> {
        self.inner.pending.get(name)
    }

    async fn read(&self, name: &str) -> Result<Option<Secret>> {
        self.inner
            .config
            .retry
            .run("get pending PIN", || self.inner.api.get_opt(name))
            .await
            .map_err(|e| backend("reading a pending PIN", e))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let params = DeleteParams::background();
        let known = self.inner.pending.get(name).and_then(|s| s.resource_version());
        let deleted = self
            .inner
            .config
            .retry
            .run("delete pending PIN", || self.inner.api.delete(name, &params))
            .await;
        match deleted {
            Ok(_) => {}
            Err(e) if has_status(&e, 404) => {}
            Err(e) => return Err(backend("deleting a pending PIN", e)),
        }
        self.inner.pending.deleted(name, known);
        Ok(())
    }

    /// Deletes entries past their lifetime and returns how many remain.
    async fn expire(&self) -> Result<usize> {
        let now = unix_now();
        let ttl = self.inner.config.entry_ttl.as_secs();
        let mut live = 0;
        for object in self.inner.pending.list() {
            let opened = text(&object, KEY_OPENED_AT).and_then(|t| t.parse::<u64>().ok());
            match opened {
                Some(opened) if now.saturating_sub(opened) <= ttl => live += 1,
                _ => {
                    info!("deleting an expired pending PIN entry");
                    self.delete(&object.name_any()).await?;
                }
            }
        }
        Ok(live)
    }
}

#[async_trait]
impl PinBroker for KubePinBroker {
    async fn open(&self, pending: PendingPinRequest) -> Result<PairSecret> {
        self.wait_ready(crate::watch::DEFAULT_READY_TIMEOUT).await?;
        let live = self.expire().await?;
        if live >= self.inner.config.max_pending {
            return Err(Error::unavailable(format!(
                "too many pairings are waiting for a PIN ({live}); try again later"
            )));
        }
        let mut data = BTreeMap::from([
            (
                KEY_CLIENT_IP.to_owned(),
                ByteString(pending.client_ip.to_string().into_bytes()),
            ),
            (
                KEY_OPENED_AT.to_owned(),
                ByteString(unix_now().to_string().into_bytes()),
            ),
        ]);
        if let Some(device) = pending.device_name {
            data.insert(KEY_DEVICE.to_owned(), ByteString(device.into_bytes()));
        }
        let params = PostParams::default();
        for _ in 0..3 {
            let secret = PairSecret::generate();
            let name = secret_name(&secret);
            let object = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        (PIN_LABEL.to_owned(), "pending".to_owned()),
                        (labels::MANAGED_BY.to_owned(), labels::DIREWOLF.to_owned()),
                    ])),
                    ..ObjectMeta::default()
                },
                type_: Some("Opaque".to_owned()),
                data: Some(data.clone()),
                ..Secret::default()
            };
            let created = self
                .inner
                .config
                .retry
                .run("create pending PIN", || self.inner.api.create(&params, &object))
                .await;
            match created {
                Ok(created) => {
                    self.inner.pending.wrote(created);
                    debug!(secret = ?secret, "pending PIN entry opened");
                    return Ok(secret);
                }
                // A retried create whose first attempt landed meets its own Secret: the fields
                // are ours, so it is ours.
                Err(e) if has_status(&e, 409) => match self.read(&name).await? {
                    Some(existing) if existing.data.as_ref() == Some(&data) => return Ok(secret),
                    _ => continue,
                },
                Err(e) => return Err(backend("opening a pending PIN", e)),
            }
        }
        Err(Error::unavailable("could not create a pending PIN entry"))
    }

    async fn wait(&self, secret: &PairSecret, timeout: Duration) -> Result<PinSubmission, PinError> {
        let name = secret_name(secret);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = self.cached(&name).is_some();
        if !seen {
            match self.read(&name).await? {
                Some(object) => {
                    if let Some(submission) = submission_of(&object) {
                        return Ok(submission);
                    }
                    seen = true;
                }
                None => return Err(PinError::UnknownSecret),
            }
        }
        let mut next_poll = tokio::time::Instant::now() + POLL_INTERVAL;
        loop {
            match self.cached(&name) {
                Some(object) => {
                    seen = true;
                    if let Some(submission) = submission_of(&object) {
                        return Ok(submission);
                    }
                }
                None if seen && self.ready() => {
                    // Gone from the watch: closed (or the watch lost it; confirm).
                    match self.read(&name).await {
                        Ok(None) => return Err(PinError::Closed),
                        Ok(Some(object)) => {
                            if let Some(submission) = submission_of(&object) {
                                return Ok(submission);
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot read a pending PIN entry; still waiting"),
                    }
                }
                None => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(PinError::TimedOut);
            }
            if now >= next_poll {
                next_poll = now + POLL_INTERVAL;
                match self.read(&name).await {
                    Ok(Some(object)) => {
                        if let Some(submission) = submission_of(&object) {
                            return Ok(submission);
                        }
                    }
                    Ok(None) => return Err(PinError::Closed),
                    Err(e) => warn!(error = %e, "cannot read a pending PIN entry; still waiting"),
                }
            }
            tokio::time::sleep(Duration::from_millis(25).min(deadline - now)).await;
        }
    }

    async fn submit(&self, secret: &PairSecret, submission: PinSubmission) -> Result<(), PinError> {
        let name = secret_name(secret);
        for _ in 0..5 {
            let Some(object) = self.read(&name).await? else {
                return Err(PinError::UnknownSecret);
            };
            if text(&object, KEY_PIN).is_some() {
                return Err(PinError::UnknownSecret);
            }
            let mut data = serde_json::Map::new();
            data.insert(KEY_PIN.to_owned(), json!(BASE64.encode(submission.pin.expose())));
            if let Some(user) = &submission.user {
                data.insert(KEY_USER.to_owned(), json!(BASE64.encode(user.as_str())));
            }
            // The resourceVersion makes the patch conditional: of two submissions, one wins.
            let patch = json!({
                "metadata": { "resourceVersion": object.resource_version() },
                "data": data,
            });
            let params = PatchParams::default();
            let merge = Patch::Merge(&patch);
            let patched = self
                .inner
                .config
                .retry
                .run("submit PIN", || self.inner.api.patch(&name, &params, &merge))
                .await;
            match patched {
                Ok(patched) => {
                    self.inner.pending.wrote(patched);
                    info!(secret = ?secret, "PIN submitted");
                    return Ok(());
                }
                Err(e) if has_status(&e, 404) => return Err(PinError::UnknownSecret),
                // Changed meanwhile (another submission, or a retried patch of ours that landed
                // before its answer was lost): read again and decide.
                Err(e) if has_status(&e, 409) => {
                    if let Some(now) = self.read(&name).await?
                        && let Some(stored) = submission_of(&now)
                    {
                        return if stored == submission {
                            Ok(())
                        } else {
                            Err(PinError::UnknownSecret)
                        };
                    }
                }
                Err(e) => return Err(backend("submitting a PIN", e).into()),
            }
        }
        Err(PinError::Backend(Error::unavailable(
            "the pending PIN entry kept changing; try again",
        )))
    }

    async fn close(&self, secret: &PairSecret) {
        let name = secret_name(secret);
        if let Err(e) = self.delete(&name).await {
            // It expires anyway (entry_ttl).
            warn!(secret = ?secret, error = %e, "could not delete a pending PIN entry");
        }
    }

    async fn pending(&self) -> Result<Vec<PendingPin>> {
        self.wait_ready(crate::watch::DEFAULT_READY_TIMEOUT).await?;
        let now = unix_now();
        let ttl = self.inner.config.entry_ttl.as_secs();
        let mut list: Vec<PendingPin> = self
            .inner
            .pending
            .list()
            .iter()
            .filter(|o| text(o, KEY_PIN).is_none())
            .filter_map(|o| pending_of(o))
            .filter(|p| now.saturating_sub(p.opened_at) <= ttl)
            .collect();
        list.sort_by_key(|p| p.opened_at);
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_lower_case_and_round_trip() {
        let secret: PairSecret = "0123456789ABCDEF".parse().unwrap();
        assert_eq!(secret_name(&secret), "direwolf-pin-0123456789abcdef");
        let object = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name(&secret)),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (KEY_CLIENT_IP.to_owned(), ByteString(b"192.0.2.1".to_vec())),
                (KEY_OPENED_AT.to_owned(), ByteString(b"1790000000".to_vec())),
                (KEY_PIN.to_owned(), ByteString(b"12345".to_vec())),
            ])),
            ..Secret::default()
        };
        let pending = pending_of(&object).unwrap();
        assert_eq!(pending.secret, secret);
        assert_eq!(pending.opened_at, 1_790_000_000);
        assert!(
            submission_of(&object).is_none(),
            "a malformed PIN is no submission"
        );
    }
}
