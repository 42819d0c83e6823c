//! The election loop: follow (try to acquire every retry period) until this process holds the
//! Lease, lead (renew every retry period) until a renewal is overdue, the Lease is lost or the
//! election stops, and back.

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::{Pin, pin};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, error, info, warn};

use super::LeaderElector;
use super::attempt::Outcome;
use crate::retry::is_transient;

/// Candidates space their tries by the retry period times up to this factor (client-go's
/// `JitterFactor`), so that they do not all ask at once.
pub(crate) const JITTER: f64 = 1.2;

/// Why a leader stopped leading.
#[derive(Debug)]
enum Ended {
    /// The election is stopping: release the Lease.
    Shutdown,
    /// No renewal succeeded within the renew deadline.
    Overdue,
    /// A renewal found another holder.
    Lost(String),
}

/// The leading flag, with the log line of each change; says `false` when dropped, so that an
/// aborted or panicking election never leaves a stale `true` behind.
struct Signal<'a> {
    tx: watch::Sender<bool>,
    lease: &'a str,
    identity: &'a str,
}

impl Signal<'_> {
    fn lead(&self, transitions: Option<i32>) {
        self.tx.send_replace(true);
        info!(lease = %self.lease, identity = %self.identity, transitions, "became the leader");
    }

    fn step_down(&self, why: &str) {
        self.tx.send_replace(false);
        info!(lease = %self.lease, identity = %self.identity, reason = why, "stepped down as leader");
    }
}

impl Drop for Signal<'_> {
    fn drop(&mut self) {
        self.tx.send_replace(false);
    }
}

/// The retry period with up to 20 % added at random.
fn jittered(period: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now().into_std());
    let fraction = (random % 1000) as f64 / 1000.0;
    period.mul_f64(1.0 + (JITTER - 1.0) * fraction)
}

impl LeaderElector {
    pub(super) async fn elect<F: Future<Output = ()>>(&mut self, shutdown: F, leading: watch::Sender<bool>) {
        let mut shutdown = pin!(shutdown);
        let lease = self.lease_name.clone();
        let identity = self.identity.clone();
        let signal = Signal {
            tx: leading,
            lease: &lease,
            identity: &identity,
        };
        info!(%lease, %identity, timing = ?self.timing, "leader election started");
        while let Some(deadline) = self.follow(shutdown.as_mut()).await {
            signal.lead(self.lock.observed_transitions());
            match self.lead(shutdown.as_mut(), deadline).await {
                Ended::Shutdown => {
                    signal.step_down("shutting down");
                    self.release().await;
                    break;
                }
                Ended::Overdue => signal.step_down("no renewal succeeded within the renew deadline"),
                Ended::Lost(holder) => {
                    signal.step_down("another process holds the lease");
                    info!(%lease, %identity, leader = %holder, "new leader observed");
                }
            }
        }
        info!(%lease, %identity, "leader election stopped");
    }

    /// Tries to acquire every retry period (jittered); `Some(deadline of the first renewal)`
    /// once this process holds the Lease, `None` on shutdown.
    async fn follow(&mut self, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> Option<Instant> {
        let timing = self.timing;
        let mut next = Instant::now();
        let mut last_holder = self.lock.observed_holder().map(str::to_owned);
        loop {
            let attempt = async {
                sleep_until(next).await;
                timeout(timing.renew_deadline, self.lock.try_acquire_or_renew()).await
            };
            let result = tokio::select! {
                biased;
                () = shutdown.as_mut() => return None,
                result = attempt => result,
            };
            next = Instant::now() + jittered(timing.retry_period);
            match result {
                Ok(Ok(Outcome::Holding { sent })) => {
                    let deadline = sent + timing.renew_deadline;
                    if Instant::now() < deadline {
                        return Some(deadline);
                    }
                    debug!(lease = %self.lease_name, "acquired too late to lead; renewing first");
                    next = Instant::now();
                }
                Ok(Ok(Outcome::NotHolding(holder))) => {
                    if holder.is_some() && holder != last_holder {
                        info!(lease = %self.lease_name, identity = %self.identity,
                            leader = holder.as_deref().unwrap_or_default(), "new leader observed");
                        last_holder = holder;
                    }
                }
                Ok(Err(err)) => self.log_failure("acquire", &err),
                Err(_) => warn!(lease = %self.lease_name, identity = %self.identity,
                    "acquiring the lease got no answer within the renew deadline; retrying"),
            }
        }
    }

    /// Renews every retry period until the renewal is overdue (`deadline`, moved on by each
    /// accepted renewal), the Lease is lost or the election stops.
    async fn lead(
        &mut self,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
        mut deadline: Instant,
    ) -> Ended {
        let timing = self.timing;
        let mut next = Instant::now() + timing.retry_period;
        loop {
            let attempt = async {
                sleep_until(next).await;
                self.lock.try_acquire_or_renew().await
            };
            let result = tokio::select! {
                biased;
                () = shutdown.as_mut() => return Ended::Shutdown,
                () = sleep_until(deadline) => return Ended::Overdue,
                result = attempt => result,
            };
            match result {
                Ok(Outcome::Holding { sent }) => {
                    deadline = sent + timing.renew_deadline;
                    next = sent + timing.retry_period;
                }
                Ok(Outcome::NotHolding(Some(holder))) => return Ended::Lost(holder),
                Ok(Outcome::NotHolding(None)) => {
                    warn!(lease = %self.lease_name, identity = %self.identity,
                        "renewal lost a race for the lease; trying again");
                    next = Instant::now() + timing.retry_period;
                }
                Err(err) => {
                    self.log_failure("renew", &err);
                    next = Instant::now() + timing.retry_period;
                }
            }
        }
    }

    /// Writes the release, bounded by the renew deadline; failures are logged (the Lease then
    /// expires on its own).
    async fn release(&mut self) {
        match timeout(self.timing.renew_deadline, self.lock.release()).await {
            Ok(Ok(true)) => info!(lease = %self.lease_name, identity = %self.identity, "released the lease"),
            Ok(Ok(false)) => debug!(lease = %self.lease_name, "the lease was not ours to release"),
            Ok(Err(err)) => warn!(lease = %self.lease_name, identity = %self.identity, error = %err,
                "could not release the lease; it expires after the lease duration"),
            Err(_) => warn!(lease = %self.lease_name, identity = %self.identity,
                "releasing the lease got no answer; it expires after the lease duration"),
        }
    }

    fn log_failure(&self, what: &str, err: &kube::Error) {
        if is_transient(err) {
            warn!(lease = %self.lease_name, identity = %self.identity, operation = what, error = %err,
                "transient API error on the lease; retrying");
        } else {
            error!(lease = %self.lease_name, identity = %self.identity, operation = what, error = %err,
                "API error on the lease (RBAC or configuration?); retrying");
        }
    }
}
