//! Following the hosts: their event streams end the sessions they end and set session phases,
//! and a watch per host ends the sessions of a host unreachable for too long and stops the
//! sessions it creates late.

use std::sync::Weak;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{debug, info, warn};

use super::Pack;
use crate::ids::UserName;
use crate::model::SessionPhase;
use crate::stream_host::HostEvent;

/// Applies host `index`'s events until the host handle or the pack is dropped.
pub(super) async fn follow_events(pack: Weak<Pack>, index: usize) {
    let mut events = match pack.upgrade() {
        Some(pack) => pack.host(index).events(),
        None => return,
    };
    while let Some(event) = events.next().await {
        let Some(pack) = pack.upgrade() else { return };
        pack.on_event(index, event).await;
    }
}

/// Ends the sessions of a host that stays unreachable for
/// [`PoolConfig::host_lost_after`](super::PoolConfig::host_lost_after): its event stream only
/// reports a resync once the host is back, which may be never. Also stops the sessions a host
/// creates late, after their `sessions/add` went unanswered.
pub(super) async fn watch_host(pack: Weak<Pack>, index: usize) {
    let every = match pack.upgrade() {
        Some(pack) => {
            (pack.config.host_lost_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
        }
        None => return,
    };
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(pack) = pack.upgrade() else { return };
        let (has_live, watching) = {
            let mut ledger = pack.ledger.lock();
            let has_live = ledger.live_per_host()[index] > 0;
            (has_live, ledger.pending_late(index, Instant::now()) > 0)
        };
        if !has_live {
            failing_since = None;
        }
        if has_live || watching {
            pack.check_host(index, has_live, watching, &mut failing_since)
                .await;
        }
    }
}

impl Pack {
    /// One round of [`watch_host`]: lists the host's sessions, stops late ones, and ends the
    /// host's sessions once it has been failing for too long.
    async fn check_host(
        &self,
        index: usize,
        has_live: bool,
        watching: bool,
        failing_since: &mut Option<Instant>,
    ) {
        let host = self.host(index).clone();
        match self.call(index, "listing sessions", host.list_sessions()).await {
            Ok(reported) => {
                *failing_since = None;
                if watching {
                    self.stop_late_sessions(index, &reported).await;
                }
            }
            Err(_) if !has_live => {}
            Err(error) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.config.host_lost_after {
                    warn!(host = host.name(), %error, "host unreachable for too long; ending its sessions");
                    self.mark_down(index);
                    self.end_host_sessions(index).await;
                    *failing_since = None;
                }
            }
        }
    }

    /// Applies one event of host `index`.
    async fn on_event(&self, index: usize, event: HostEvent) {
        let user_of = |id: &str| self.ledger.lock().user_of(index, id);
        match event {
            HostEvent::SessionStopped { id } => {
                if let Some(user) = user_of(&id) {
                    self.host_stopped(index, user, &id).await;
                }
            }
            HostEvent::SessionPaused { id } => self.set_phase(user_of(&id), SessionPhase::Paused).await,
            HostEvent::SessionResumed { id } => self.set_phase(user_of(&id), SessionPhase::Streaming).await,
            HostEvent::Resync => self.reconcile_host(index, Vec::new()).await,
        }
    }

    /// The host says it stopped session `id` of `user`: ends it, unless a resume replaced it
    /// meanwhile or the host still lists it.
    async fn host_stopped(&self, index: usize, user: UserName, id: &str) {
        let user_lock = self.user_locks.of(&user);
        let _guard = user_lock.lock().await;
        // Re-checked under the user's lock: a resume may have replaced the session.
        let fake_ip = match self.ledger.lock().live(&user) {
            Some(l) if l.host_session_id() == Some(id) => l.fake_ip.to_string(),
            _ => return,
        };
        // Wolf gives every client-less session the same id, so a late stop event of a replaced
        // session can carry the id of the live one: believe the host's list.
        let host = self.host(index);
        let still_there = self
            .call(index, "listing sessions", host.list_sessions())
            .await
            .is_ok_and(|list| {
                list.iter()
                    .any(|s| s.id == id && s.rtsp_fake_ip.as_deref() == Some(fake_ip.as_str()))
            });
        if still_there {
            return;
        }
        let mut removed = self.ledger.lock().remove_live(index, |l| {
            l.session.user == user && l.host_session_id() == Some(id)
        });
        if let Some(live) = removed.pop() {
            info!(session = %live.session.id, "the host ended the session");
            self.end_logged(live).await;
        }
    }

    /// Records a live session's new phase.
    async fn set_phase(&self, user: Option<UserName>, phase: SessionPhase) {
        let Some(user) = user else { return };
        let session = {
            let mut ledger = self.ledger.lock();
            let Some(live) = ledger.live_mut(&user) else {
                return;
            };
            if live.session.phase == phase {
                return;
            }
            live.session.phase = phase;
            live.session.clone()
        };
        debug!(session = %session.id, ?phase, "session phase");
        if let Err(error) = self.sessions.update(session).await {
            warn!(%error, "could not record a session phase");
        }
    }
}
