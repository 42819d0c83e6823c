//! The agent's view of its own Session: one watch (field selector on the name, which is all
//! the agent's Role allows) published on a `tokio::sync::watch` channel. A Session being
//! deleted (`deletionTimestamp` set, the operator's finalizer still on it) counts as gone.

use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::crd::Session;

/// What the agent knows of its Session.
#[derive(Debug, Clone)]
pub enum SessionView {
    /// The first list has not answered yet.
    Unknown,
    /// The Session as last seen.
    Present(Arc<Session>),
    /// Deleted, being deleted, or never there.
    Gone,
}

impl SessionView {
    fn of(session: Session) -> SessionView {
        if session.metadata.deletion_timestamp.is_some() {
            SessionView::Gone
        } else {
            SessionView::Present(Arc::new(session))
        }
    }
}

/// Starts watching Session `name`; the channel and the task (abort it when done).
pub fn watch_session(api: Api<Session>, name: &str) -> (watch::Receiver<SessionView>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(SessionView::Unknown);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config).default_backoff());
        let mut listed: Option<Session> = None;
        while let Some(event) = events.next().await {
            let view = match event {
                Ok(watcher::Event::Init) => {
                    listed = None;
                    continue;
                }
                Ok(watcher::Event::InitApply(s)) => {
                    listed = Some(s);
                    continue;
                }
                Ok(watcher::Event::InitDone) => listed.take().map_or(SessionView::Gone, SessionView::of),
                Ok(watcher::Event::Apply(s)) => SessionView::of(s),
                Ok(watcher::Event::Delete(_)) => SessionView::Gone,
                Err(e) => {
                    warn!(session = %name, error = %e, "watch of the Session failed; retrying");
                    continue;
                }
            };
            if tx.send(view).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

/// Resolves once the Session is gone.
pub async fn gone(mut rx: watch::Receiver<SessionView>) {
    let _ = rx.wait_for(|v| matches!(v, SessionView::Gone)).await;
}
