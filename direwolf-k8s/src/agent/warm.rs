//! Warm mode (`DIREWOLF_WARM_POD`, `docs/protocol/kubernetes.md` § Warm pools): the agent of a
//! pod made for nobody waits for Wolf's socket (then the pod is Ready and may be claimed),
//! watches its own pod until the operator labels it with a Session
//! ([`stream::SESSION_LABEL`]), waits until that Session can be read (the Session's Role is
//! bound right after the claim), and then runs for that Session as any agent does.

use std::path::Path;
use std::time::Duration;

use direwolf_wolf_client::backoff::Backoff;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::health::Readiness;
use super::{AgentError, socket};
use crate::crd::Session;
use crate::stream;

fn warm_error(pod: &str, reason: impl Into<String>) -> AgentError {
    AgentError::Warm {
        pod: pod.to_owned(),
        reason: reason.into(),
    }
}

/// Waits for Wolf's socket within `timeout`, polling every `poll`; marks the agent ready.
///
/// # Errors
/// [`AgentError::Warm`] when the socket did not accept a connection in time (the pod is then
/// replaced by the pool), [`AgentError::NotASocket`].
pub async fn wait_for_wolf(
    pod: &str,
    path: &Path,
    poll: Duration,
    timeout: Duration,
    readiness: &Readiness,
) -> Result<(), AgentError> {
    match socket::wait(path, poll, Instant::now() + timeout).await? {
        Ok(()) => {
            info!(socket = %path.display(), "Wolf's socket accepts connections; warm and waiting for a claim");
            readiness.set_ready();
            Ok(())
        }
        Err(why) => Err(warm_error(
            pod,
            format!("Wolf's socket did not accept a connection within {timeout:?} ({why:?})"),
        )),
    }
}

/// Watches pod `pod` until it carries the Session label; the Session's name.
///
/// # Errors
/// [`AgentError::Warm`] when the pod is deleted or being deleted before it is claimed.
pub async fn wait_for_claim(pods: Api<Pod>, pod: &str) -> Result<String, AgentError> {
    let config = watcher::Config::default().fields(&format!("metadata.name={pod}"));
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        match event {
            Ok(seen) if seen.metadata.deletion_timestamp.is_some() => {
                return Err(warm_error(pod, "deleted before it was claimed"));
            }
            Ok(seen) => {
                if let Some(session) = seen.labels().get(stream::SESSION_LABEL) {
                    info!(session = %session, "claimed");
                    return Ok(session.clone());
                }
                debug!("not claimed yet");
            }
            Err(err) => warn!(error = %err, "watch of the own pod failed; retrying"),
        }
    }
    Err(warm_error(pod, "the watch of the pod ended"))
}

/// Retries reading Session `name` until the agent may (its Role follows the claim).
pub async fn wait_readable(sessions: &Api<Session>, name: &str, mut backoff: Backoff) {
    loop {
        match sessions.get_opt(name).await {
            Ok(_) => return,
            Err(err) => debug!(session = name, error = %err, "the Session cannot be read yet"),
        }
        backoff.wait().await;
    }
}
