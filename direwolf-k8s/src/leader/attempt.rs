//! One try to acquire or renew the Lease, and the release: the API calls of the elector, with
//! what this process has observed of the Lease and when.
//!
//! Expiry is judged by the observer's own monotonic clock, never by comparing the holder's
//! `renewTime` with local wall time: a record is valid for its `leaseDurationSeconds` after the
//! moment this process first saw it as it is (client-go does the same), so clock skew between
//! machines cannot shorten a lease. Every write replaces the Lease at the resourceVersion read,
//! so of two candidates only one can win (the other gets 409 Conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tracing::{debug, info};

use super::record;
use crate::retry::has_status;

/// The Lease as this process last saw it.
#[derive(Debug)]
struct Observed {
    lease: Lease,
    /// When its spec was first seen as it is now (the start of its validity for us).
    since: Instant,
    /// Whether this process wrote it (then its resourceVersion is ours and a renewal may skip
    /// the read).
    ours: bool,
}

/// What a try found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// This process holds the Lease: its write, sent at `sent`, was accepted.
    Holding {
        /// When the accepted write was sent: no other process can consider the Lease expired
        /// before `sent` plus the lease duration.
        sent: Instant,
    },
    /// Another process holds the Lease (`Some`), or won a race for it just now (`None`).
    NotHolding(Option<String>),
}

/// The Lease, the identity of this process, and what it has seen.
#[derive(Debug)]
pub(crate) struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The validity this process promises when it holds the Lease.
    duration: Duration,
    duration_secs: i32,
    observed: Option<Observed>,
    /// Since when the Lease has been missing, after this process saw another holder in it.
    gone_since: Option<Instant>,
}

impl LeaseLock {
    /// A lock on Lease `name` for `identity`, promising `duration` (whole seconds, as the Lease
    /// API carries them) on each renewal.
    pub(crate) fn new(api: Api<Lease>, name: String, identity: String, duration: Duration) -> Self {
        LeaseLock {
            api,
            name,
            identity,
            duration,
            duration_secs: i32::try_from(duration.as_secs()).unwrap_or(i32::MAX),
            observed: None,
            gone_since: None,
        }
    }

    /// The holder this process last saw, if any.
    pub(crate) fn observed_holder(&self) -> Option<&str> {
        record::holder(self.observed.as_ref().and_then(|o| o.lease.spec.as_ref()))
    }

    /// The `leaseTransitions` of the record this process last saw.
    pub(crate) fn observed_transitions(&self) -> Option<i32> {
        self.observed
            .as_ref()
            .and_then(|o| o.lease.spec.as_ref())
            .and_then(|s| s.lease_transitions)
    }

    fn observe(&mut self, lease: Lease, ours: bool) {
        let now = Instant::now();
        let since = match &self.observed {
            Some(old) if old.lease.spec == lease.spec => old.since,
            _ => now,
        };
        self.observed = Some(Observed { lease, since, ours });
    }

    /// Acquires the Lease if it is absent, free or expired, or renews it if this process holds
    /// it; reports who holds it otherwise.
    ///
    /// # Errors
    /// The API error of a read or write other than the 409 of a lost race.
    pub(crate) async fn try_acquire_or_renew(&mut self) -> Result<Outcome, kube::Error> {
        let sent = Instant::now();
        if let Some(outcome) = self.renew_fast(sent).await? {
            return Ok(outcome);
        }
        let Some(current) = self.api.get_opt(&self.name).await? else {
            return self.create_unless_recently_held(sent).await;
        };
        self.gone_since = None;
        self.observe(current, false);
        let observed = self.observed.as_ref().expect("observed just now");
        let spec = observed.lease.spec.as_ref();
        if let Some(holder) = record::holder(spec).filter(|h| *h != self.identity) {
            let valid_for = record::validity(spec, self.duration);
            if Instant::now() < observed.since + valid_for {
                return Ok(Outcome::NotHolding(Some(holder.to_owned())));
            }
            info!(lease = %self.name, identity = %self.identity, expired_holder = %holder,
                "the lease expired without renewal; taking it over");
        }
        let mut lease = observed.lease.clone();
        lease.spec = Some(record::claimed(
            spec,
            &self.identity,
            self.duration_secs,
            Timestamp::now(),
        ));
        self.write(lease, sent).await
    }

    /// A holder's renewal without a read, at the resourceVersion of its own last write; `None`
    /// when it does not apply (not the holder, or someone else wrote since: 409).
    async fn renew_fast(&mut self, sent: Instant) -> Result<Option<Outcome>, kube::Error> {
        let Some(observed) = self.observed.as_ref().filter(|o| o.ours) else {
            return Ok(None);
        };
        let mut lease = observed.lease.clone();
        lease.spec = Some(record::claimed(
            lease.spec.as_ref(),
            &self.identity,
            self.duration_secs,
            Timestamp::now(),
        ));
        match self.write(lease, sent).await {
            Ok(Outcome::NotHolding(_)) => {
                debug!(lease = %self.name, "the lease changed since our last renewal; reading it");
                Ok(None)
            }
            Err(err) if has_status(&err, 404) => {
                debug!(lease = %self.name, "the lease is gone; reading it");
                self.observed = None;
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Creates the missing Lease, unless another holder was seen in it: then its deletion counts
    /// as a change seen now, and the candidate waits a lease duration from it, as it would for
    /// a renewal (that holder may still be leading and re-create it at its next renewal).
    async fn create_unless_recently_held(&mut self, sent: Instant) -> Result<Outcome, kube::Error> {
        let last = self.observed.as_ref().and_then(|o| o.lease.spec.as_ref());
        if let Some(holder) = record::holder(last).filter(|h| *h != self.identity) {
            let valid_for = record::validity(last, self.duration);
            let gone_since = *self.gone_since.get_or_insert_with(Instant::now);
            if Instant::now() < gone_since + valid_for {
                debug!(lease = %self.name, last_holder = %holder, "the lease is missing; waiting before creating it");
                return Ok(Outcome::NotHolding(None));
            }
        }
        self.create(sent).await
    }

    async fn create(&mut self, sent: Instant) -> Result<Outcome, kube::Error> {
        let mut lease = Lease::default();
        lease.metadata.name = Some(self.name.clone());
        lease.spec = Some(record::claimed(
            None,
            &self.identity,
            self.duration_secs,
            Timestamp::now(),
        ));
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.gone_since = None;
                self.observe(created, true);
                Ok(Outcome::Holding { sent })
            }
            Err(err) if has_status(&err, 409) => Ok(Outcome::NotHolding(None)),
            Err(err) => Err(err),
        }
    }

    /// Replaces the Lease with `lease` at its resourceVersion; a 409 is a race lost.
    async fn write(&mut self, lease: Lease, sent: Instant) -> Result<Outcome, kube::Error> {
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observe(written, true);
                Ok(Outcome::Holding { sent })
            }
            Err(err) if has_status(&err, 409) => {
                if let Some(observed) = self.observed.as_mut() {
                    observed.ours = false;
                }
                Ok(Outcome::NotHolding(None))
            }
            Err(err) => Err(err),
        }
    }

    /// Lets go of the Lease if this process holds it: writes a record without holder, so that
    /// a candidate takes over at once. Returns whether a release was written (false: the Lease
    /// was not ours, or is gone).
    ///
    /// # Errors
    /// The API error of a read or write; a 409 is answered by reading the Lease again, a few
    /// times at most.
    pub(crate) async fn release(&mut self) -> Result<bool, kube::Error> {
        for _ in 0..3 {
            let lease = match self.observed.as_ref() {
                Some(observed) if observed.ours => observed.lease.clone(),
                _ => match self.api.get_opt(&self.name).await? {
                    Some(lease) => lease,
                    None => return Ok(false),
                },
            };
            if record::holder(lease.spec.as_ref()) != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let mut released = lease.clone();
            let spec = lease.spec.unwrap_or_default();
            released.spec = Some(record::released(&spec, Timestamp::now()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &released)
                .await
            {
                Ok(written) => {
                    self.observe(written, false);
                    return Ok(true);
                }
                Err(err) if has_status(&err, 409) => self.observed = None,
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }
}
