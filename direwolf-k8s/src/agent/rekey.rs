//! Re-keying a running stream after a resume.
//!
//! A Moonlight client that reconnects to a running game (`/resume`) sends new stream keys. Wolf's
//! API cannot re-key a session, so, as the single-machine pack does, the stream is registered
//! again: the proxy writes the keys into the keys Secret at the next revision and raises the
//! Session's `spec.keysRevision`; the agent sees the raised revision on its Session watch, reads
//! keys at least that new, stops Wolf's session and adds one with the new keys, the Session's
//! current client address and parameters, and publishes the new `wolfSessionID` with
//! `status.keysRevision`, which the proxy waits for before it answers the client.

use std::sync::Arc;

use tokio::sync::watch;

use super::session::SessionView;
use crate::crd::Session;

/// Resolves with the Session once its `spec.keysRevision` is above `registered`; never while
/// it is not (nor once the Session is gone: the agent's other branch handles that).
pub async fn raised(rx: &mut watch::Receiver<SessionView>, registered: i64) -> Arc<Session> {
    loop {
        if let SessionView::Present(session) = &*rx.borrow_and_update()
            && wanted(session) > registered
        {
            return session.clone();
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The keys revision the Session asks for (absent: 0).
pub fn wanted(session: &Session) -> i64 {
    session.spec.keys_revision.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(revision: Option<i64>) -> SessionView {
        let mut session = Session::example("alice-desktop-aaaaa");
        session.spec.keys_revision = revision;
        SessionView::Present(Arc::new(session))
    }

    #[tokio::test]
    async fn only_a_revision_above_the_registered_one_resolves() {
        let (tx, mut rx) = watch::channel(session(None));
        let pending = tokio::time::timeout(Duration::from_millis(50), raised(&mut rx, 0)).await;
        assert!(pending.is_err(), "revision 0 is registered already");
        tx.send(session(Some(1))).expect("send");
        let got = tokio::time::timeout(Duration::from_secs(5), raised(&mut rx, 0))
            .await
            .expect("resolves");
        assert_eq!(wanted(&got), 1);
        let again = tokio::time::timeout(Duration::from_millis(50), raised(&mut rx, 1)).await;
        assert!(again.is_err(), "revision 1 is registered now");
        tx.send(SessionView::Gone).expect("send");
        let gone = tokio::time::timeout(Duration::from_millis(50), raised(&mut rx, 1)).await;
        assert!(gone.is_err(), "a gone Session is not a re-keying");
    }
}
