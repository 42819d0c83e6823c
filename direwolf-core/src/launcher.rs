//! Launch, resume and cancel: what the Moonlight server asks of the streaming side.
//!
//! Backends: [`NoStreamingHost`] (no Wolf configured: every launch fails with a message a person
//! understands), the Wolf pool of `direwolf serve` (`pack::WolfPool`), and the Kubernetes
//! launcher of `direwolf-k8s` (creates a `Session` and waits for its stream URL). Every backend
//! passes `conformance::launcher`. [`detached`] gives a backend the cancel safety the trait
//! asks for.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::warn;

use crate::error::Error;
use crate::ids::{AppId, SessionId, UserName};
use crate::model::{LaunchRequest, ResumeRequest};

/// What a successful launch or resume hands back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOutcome {
    /// The session.
    pub session: SessionId,
    /// `sessionUrl0`: `rtsp://<host>:<port>` where `<port>` is reachable on the address the
    /// client used for HTTPS.
    pub session_url: String,
}

/// Why a launch, resume or cancel failed. Each maps to an XML status the client displays
/// (`docs/protocol/moonlight-http.md` § Launch failures).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The app id is not in the catalog.
    #[error("unknown app {0}")]
    UnknownApp(AppId),

    /// `/resume` without a running session.
    #[error("no running app to resume")]
    NotRunning,

    /// No streaming host can take the session (none configured, all full, all down). The
    /// message is shown to the user as is.
    #[error("{message}")]
    Unavailable {
        /// A sentence a person understands.
        message: String,
    },

    /// The session did not become ready before the deadline.
    #[error("the session could not be started in time")]
    Timeout,

    /// The request is not acceptable (bad parameters).
    #[error("{0}")]
    Invalid(String),

    /// A store or backend failed.
    #[error(transparent)]
    Backend(#[from] Error),
}

/// Starts, re-keys and stops stream sessions.
///
/// Launch and resume are **cancel-safe**: the caller (the Moonlight server) drops their future
/// when the client hangs up, and that must not stop the work halfway. The backend carries it to
/// the end and, when nobody takes the outcome any more, rolls a started session back. The server
/// itself spawns nothing for them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Launcher: Send + Sync + Debug + 'static {
    /// Starts `request.app` for `request.user`. A user has at most one session: an existing one
    /// is replaced. Returns once the stream URL is reachable, within the deadline the launcher
    /// was configured with (clients give up after ~55 s). An app the catalog does not hold is
    /// [`LaunchError::UnknownApp`]: the launcher is the one place that checks the app.
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError>;

    /// Re-keys the user's running session with the new keys and client address, whatever app
    /// the client named. [`LaunchError::NotRunning`] if the user has none.
    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError>;

    /// Ends the user's session, if any. When this returns, [`Launcher::current_app`] reports
    /// `None` for the user (clients re-check `/serverinfo` at once). Succeeds when nothing runs.
    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError>;

    /// The app of the user's running session, answered from memory (it runs on every
    /// `/serverinfo`).
    async fn current_app(&self, user: &UserName) -> Option<AppId>;
}

/// One lock per user, for a launcher that runs each user's launches, resumes and cancels one
/// after the other (see [`detached`]).
#[derive(Debug, Default)]
pub struct UserLocks(parking_lot::Mutex<HashMap<UserName, Arc<tokio::sync::Mutex<()>>>>);

impl UserLocks {
    /// The lock of `user`.
    pub fn of(&self, user: &UserName) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(user.clone()).or_default().clone()
    }
}

/// Runs a launch or resume of one user on its own task, to completion even if the caller stops
/// waiting, and returns its outcome, or [`LaunchError::Timeout`] after `deadline`.
///
/// `user_lock` (from [`UserLocks`]) is taken before anything runs, in the caller's first poll,
/// so the user's attempts run in the order they were made: a client's retry after a hang-up
/// runs after the attempt it replaces, whatever the scheduler does. The lock is held until the
/// work and its rollback are done. When the outcome is a success that can no longer be
/// delivered (the deadline passed, or the caller's future was dropped), `rollback` runs with
/// it, on the same task.
pub async fn detached(
    deadline: Duration,
    user_lock: Arc<tokio::sync::Mutex<()>>,
    work: impl Future<Output = Result<LaunchOutcome, LaunchError>> + Send + 'static,
    rollback: impl FnOnce(LaunchOutcome) -> BoxFuture<'static, ()> + Send + 'static,
) -> Result<LaunchOutcome, LaunchError> {
    let until = tokio::time::Instant::now() + deadline;
    let guard = tokio::time::timeout_at(until, user_lock.lock_owned())
        .await
        .map_err(|_| LaunchError::Timeout)?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let outcome = work.await;
        let undelivered = match tx.send(outcome) {
            Ok(()) => None,
            Err(outcome) => outcome.ok(),
        };
        if let Some(outcome) = undelivered {
            warn!(session = %outcome.session, "nobody is waiting for this launch any more; rolling it back");
            rollback(outcome).await;
        }
        drop(guard);
    });
    match tokio::time::timeout_at(until, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(LaunchError::Backend(Error::unavailable(
            "the launch task ended unexpectedly",
        ))),
        Err(_) => Err(LaunchError::Timeout),
    }
}

#[async_trait]
impl<T: Launcher + ?Sized> Launcher for Arc<T> {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        (**self).launch(request).await
    }
    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        (**self).resume(request).await
    }
    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        (**self).cancel(user).await
    }
    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        (**self).current_app(user).await
    }
}

/// The launcher of a server with no streaming host: pairing and the app list work, and every
/// launch fails with an explanation.
#[derive(Debug, Clone, Default)]
pub struct NoStreamingHost;

impl NoStreamingHost {
    /// The message every launch gets.
    pub const MESSAGE: &'static str = "No streaming host is configured on this direwolf server. Add a [[wolf]] host to its \
         configuration file and restart it.";
}

#[async_trait]
impl Launcher for NoStreamingHost {
    async fn launch(&self, _request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        Err(LaunchError::Unavailable {
            message: Self::MESSAGE.to_owned(),
        })
    }

    async fn resume(&self, _request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        Err(LaunchError::NotRunning)
    }

    async fn cancel(&self, _user: &UserName) -> Result<(), LaunchError> {
        Ok(())
    }

    async fn current_app(&self, _user: &UserName) -> Option<AppId> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;

    fn outcome(n: u32) -> LaunchOutcome {
        let user: UserName = "alice".parse().expect("a valid user");
        LaunchOutcome {
            session: SessionId::generate(&user, AppId::new(n).expect("a valid app id")),
            session_url: format!("rtsp://127.0.0.1:{n}"),
        }
    }

    /// What happened, in order.
    type Log = Arc<Mutex<Vec<String>>>;

    fn attempt(
        log: &Log,
        n: u32,
        work_for: Duration,
    ) -> (
        impl Future<Output = Result<LaunchOutcome, LaunchError>> + Send + 'static,
        impl FnOnce(LaunchOutcome) -> BoxFuture<'static, ()> + Send + 'static,
    ) {
        let (work_log, rollback_log) = (log.clone(), log.clone());
        let work = async move {
            work_log.lock().push(format!("start {n}"));
            tokio::time::sleep(work_for).await;
            work_log.lock().push(format!("end {n}"));
            Ok(outcome(n))
        };
        let rollback = move |done: LaunchOutcome| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                rollback_log.lock().push(format!("rollback {}", done.session_url));
            })
        };
        (work, rollback)
    }

    /// The log of a first attempt that ends after the caller gave up on it, then a second one.
    const FIRST_ROLLED_BACK_THEN_SECOND: [&str; 5] = [
        "start 1",
        "end 1",
        "rollback rtsp://127.0.0.1:1",
        "start 2",
        "end 2",
    ];

    /// A client hangs up right after asking and asks again at once: the first attempt runs to
    /// its end and is rolled back before the retry starts, on a runtime with several workers
    /// (where spawned tasks start in any order).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_users_attempts_run_in_order_and_an_abandoned_one_is_rolled_back_first() {
        for _ in 0..20 {
            let (log, locks) = (Log::default(), UserLocks::default());
            let user: UserName = "alice".parse().expect("a valid user");
            let (work, rollback) = attempt(&log, 1, Duration::from_millis(5));
            let mut abandoned = Box::pin(detached(Duration::from_secs(5), locks.of(&user), work, rollback));
            assert!(futures::poll!(abandoned.as_mut()).is_pending());
            drop(abandoned);
            let (work, rollback) = attempt(&log, 2, Duration::ZERO);
            let retried = detached(Duration::from_secs(5), locks.of(&user), work, rollback).await;
            assert_eq!(
                retried.expect("the retry succeeds").session_url,
                "rtsp://127.0.0.1:2"
            );
            assert_eq!(*log.lock(), FIRST_ROLLED_BACK_THEN_SECOND);
        }
    }

    #[tokio::test]
    async fn an_attempt_past_its_deadline_times_out_and_is_rolled_back() {
        let (log, locks) = (Log::default(), UserLocks::default());
        let user: UserName = "alice".parse().expect("a valid user");
        let (work, rollback) = attempt(&log, 1, Duration::from_millis(200));
        let late = detached(Duration::from_millis(20), locks.of(&user), work, rollback).await;
        assert!(matches!(late, Err(LaunchError::Timeout)), "{late:?}");
        // The next attempt waits for the late one to end and be rolled back.
        let (work, rollback) = attempt(&log, 2, Duration::ZERO);
        detached(Duration::from_secs(5), locks.of(&user), work, rollback)
            .await
            .expect("the next attempt succeeds");
        assert_eq!(*log.lock(), FIRST_ROLLED_BACK_THEN_SECOND);
    }
}
