//! Launch, resume and cancel: what the Moonlight server asks of the streaming side.
//!
//! Backends: [`NoStreamingHost`] (no Wolf configured: every launch fails with a message a person
//! understands), the Wolf pool of `direwolf serve` (`pack::WolfPool`), and the Kubernetes
//! launcher of `direwolf-k8s` (creates a `Session` and waits for its stream URL). Every backend
//! passes `conformance::launcher`. [`detached`] gives a backend the cancel safety the trait
//! asks for.

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
/// (`moonlight-http.md` §5.6.3, §5.7).
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

/// Runs a launch or resume on its own task, to completion even if the caller stops waiting, and
/// returns its outcome, or [`LaunchError::Timeout`] after `deadline`.
///
/// `work` yields the outcome and a value `G` kept until the rollback is done (a lock guard, so
/// that nothing of the same user runs in between). When the outcome is a success that can no
/// longer be delivered (the deadline passed, or the caller's future was dropped), `rollback`
/// runs with it, on the same task.
pub async fn detached<G: Send + 'static>(
    deadline: Duration,
    work: impl Future<Output = (Result<LaunchOutcome, LaunchError>, G)> + Send + 'static,
    rollback: impl FnOnce(LaunchOutcome) -> BoxFuture<'static, ()> + Send + 'static,
) -> Result<LaunchOutcome, LaunchError> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (outcome, kept) = work.await;
        let undelivered = match tx.send(outcome) {
            Ok(()) => None,
            Err(outcome) => outcome.ok(),
        };
        if let Some(outcome) = undelivered {
            warn!(session = %outcome.session, "nobody is waiting for this launch any more; rolling it back");
            rollback(outcome).await;
        }
        drop(kept);
    });
    match tokio::time::timeout(deadline, rx).await {
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
