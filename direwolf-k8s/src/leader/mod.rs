//! Leader election over a `coordination.k8s.io/v1` Lease: of the replicas of `direwolf operator`
//! one leads and writes, the others wait (`docs/protocol/kubernetes.md` § Leader election: Lease
//! [`LEASE_NAME`], lease 15 s, renew deadline 10 s, retry 2 s, identity `--holder-identity`).
//!
//! [`LeaderElector::spawn`] runs the election on a task of its own and hands back a
//! [`Leadership`], whose `watch` channel says `true` while this process holds the Lease and may
//! write. The semantics are client-go's:
//!
//! * **Acquire** when the Lease is absent, free (no holder) or expired. Expired is judged by
//!   this process's own monotonic clock: the record is valid for its `leaseDurationSeconds`
//!   after the moment this process first saw it as it is, whatever its `renewTime` says, so
//!   clock skew between machines plays no part. Every write is a replace at the
//!   resourceVersion read: a 409 means another candidate won. A Lease deleted by hand is
//!   re-created by its holder at its next renewal; a candidate that saw another holder in it
//!   waits a lease duration after it found it missing, as after a renewal.
//! * **Renew** every retry period. When no renewal succeeded within the renew deadline (counted
//!   from when the last accepted renewal was *sent*), step down: the channel says `false`
//!   before any other process can see the Lease expire (they wait the whole lease duration
//!   after they saw that renewal, which came after it was sent), so two leaders never overlap
//!   as long as the leader's work stops within `lease_duration - renew_deadline` of the
//!   channel turning `false`. A renewal that finds another holder steps down at once.
//! * **Release** on a clean stop ([`Leadership::release`], or dropping the [`Leadership`]): step
//!   down, then write a record without holder, so that a candidate takes over at its next try
//!   rather than after the lease duration.
//! * The record's `holderIdentity`, `acquireTime` (kept across renewals), `renewTime`,
//!   `leaseDurationSeconds` and `leaseTransitions` (one more per change of holder) are kept as
//!   client-go keeps them, so `kubectl get lease` reads the same for both.
//! * API errors are retried at the retry period (transient ones logged as warnings, others —
//!   RBAC, a bad name — as errors); each try is bounded by the renew deadline. Becoming
//!   leader, stepping down and a new holder are logged at info with the identities.
//!
//! A stepped-down elector stays a candidate and may lead again later; a caller that prefers to
//! exit on losing the Lease (as the reference does) ends on the first `false` after a `true`.
//!
//! RBAC: `get`, `create` and `update` on `leases` (group `coordination.k8s.io`) in the
//! namespace; `get` and `update` may be limited to `resourceNames: [direwolf-controller]`
//! (`create` cannot be).
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), direwolf_k8s::leader::LeaderError> {
//! use direwolf_k8s::leader::{LEASE_NAME, LeaderElector, LeaseTiming};
//!
//! let elector = LeaderElector::new(client, "games", LEASE_NAME, "operator-0", LeaseTiming::default())?;
//! let leadership = elector.spawn();
//! let mut leading = leadership.subscribe();
//! // Wait to lead, then reconcile until the channel says false.
//! let _ = leading.wait_for(|leading| *leading).await;
//! // ... run the reconciler while `*leading.borrow()` ...
//! leadership.release().await;
//! # Ok(())
//! # }
//! ```

mod attempt;
mod elect;
mod record;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use self::attempt::LeaseLock;

/// The Lease the replicas of `direwolf operator` elect their leader on.
pub const LEASE_NAME: &str = "direwolf-controller";

/// The clocks of an election (client-go's `LeaseDuration`, `RenewDeadline`, `RetryPeriod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long candidates wait, after they saw the holder's last renewal, before taking the
    /// Lease over. Whole seconds (the Lease API carries seconds), at least 1 s.
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal; shorter than the lease
    /// duration, and the difference is the time the leader's writes have to stop after it steps
    /// down.
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates try (candidates with up to 20 % jitter).
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    /// The reference's: lease 15 s, renew deadline 10 s, retry 2 s.
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// Checks `retry period × 1.2 < renew deadline < lease duration`, the lease duration a whole
    /// number of seconds ≥ 1.
    ///
    /// # Errors
    /// [`LeaderError::InvalidTiming`] saying which rule is broken.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| Err(LeaderError::InvalidTiming { reason });
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return invalid(format!(
                "the lease duration ({:?}) must be a whole number of seconds, at least 1 s",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return invalid(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f64(elect::JITTER) >= self.renew_deadline {
            return invalid(format!(
                "the retry period ({:?}) must be above zero and, with 20 % jitter, shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// Why an elector cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timing breaks a rule of [`LeaseTiming::validate`].
    #[error("invalid leader election timing: {reason}")]
    InvalidTiming {
        /// Which rule, with the values.
        reason: String,
    },
    /// The holder identity is empty (an empty holder means "free" in a Lease).
    #[error("the leader election identity is empty (set --holder-identity or POD_NAME)")]
    EmptyIdentity,
    /// The Lease name is empty.
    #[error("the leader election Lease name is empty")]
    EmptyLeaseName,
}

/// A candidate for one Lease in one namespace (see the [module docs](self)).
#[derive(Debug)]
pub struct LeaderElector {
    lock: LeaseLock,
    lease_name: String,
    identity: String,
    timing: LeaseTiming,
}

impl LeaderElector {
    /// A candidate `identity` for Lease `lease_name` in `namespace`.
    ///
    /// # Errors
    /// [`LeaderError`] for an invalid timing, an empty identity or an empty Lease name.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Result<Self, LeaderError> {
        timing.validate()?;
        if identity.is_empty() {
            return Err(LeaderError::EmptyIdentity);
        }
        if lease_name.is_empty() {
            return Err(LeaderError::EmptyLeaseName);
        }
        let api: Api<Lease> = Api::namespaced(client, namespace);
        Ok(LeaderElector {
            lock: LeaseLock::new(
                api,
                lease_name.to_owned(),
                identity.to_owned(),
                timing.lease_duration,
            ),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            timing,
        })
    }

    /// Runs the election on a task of its own until the returned [`Leadership`] is released,
    /// dropped or aborted.
    pub fn spawn(self) -> Leadership {
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(
            async move {
                // A send or a dropped sender both mean: stop.
                let _ = stopped.await;
            },
            leading_tx,
        ));
        Leadership {
            leading,
            stop: Some(stop),
            task,
        }
    }

    /// Runs the election until `shutdown` completes, publishing on `leading` whether this
    /// process leads; on shutdown it steps down and releases the Lease if it held it. If this
    /// future is dropped instead, `leading` turns `false` and the Lease is left to expire.
    pub async fn run<F>(mut self, shutdown: F, leading: watch::Sender<bool>)
    where
        F: Future<Output = ()>,
    {
        self.elect(shutdown, leading).await;
    }
}

/// A running election (from [`LeaderElector::spawn`]).
///
/// Dropping it stops the election cleanly in the background (step down, release); use
/// [`release`](Self::release) to wait for that.
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// A receiver of the leading flag: `true` while this process holds the Lease and may write.
    /// It turns `false` when the election ends in any way, an abort or a panic included.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Whether this process leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Steps down and releases the Lease if held (a candidate takes over at its next try),
    /// waiting until that is written or has failed (it is bounded by the renew deadline).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops the election at once without releasing, as a crash would: the channel says
    /// `false` and the other candidates take over once the lease duration has passed.
    pub fn abort(self) {
        self.task.abort();
    }
}
