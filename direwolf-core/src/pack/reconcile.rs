//! Making the stores and the ledger agree with what each host reports: at start-up (stored
//! sessions get their relay back or are removed), after an event stream resync, and for late
//! sessions and hosts that are gone.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use tracing::{info, warn};

use super::Pack;
use super::ledger::{Live, is_pool_fake_ip};
use crate::error::Error;
use crate::model::Session;
use crate::stream_host::HostSessionInfo;

/// Rebuilds the live view from the session store after a restart: sessions whose host still
/// runs them get their relay back on the same ports; the others are removed.
pub(super) async fn restore(pack: &Pack) -> Result<(), Error> {
    let mut by_host: HashMap<usize, Vec<Session>> = HashMap::new();
    for session in pack.sessions.list().await? {
        let host = session.placement.as_ref().and_then(|p| pack.host_index(&p.host));
        match host {
            Some(index) => by_host.entry(index).or_default().push(session),
            None => {
                info!(session = %session.id, "removing a stored session whose host is not in the pool");
                pack.sessions.delete(&session.id).await?;
            }
        }
    }
    for index in 0..pack.members.len() {
        let stored = by_host.remove(&index).unwrap_or_default();
        pack.reconcile_host(index, stored).await;
    }
    Ok(())
}

impl Pack {
    /// Makes the stores and the ledger agree with what host `index` runs. `stored` are the
    /// stored sessions placed on it that are not live yet (start-up); live sessions of the host
    /// are checked too.
    pub(super) async fn reconcile_host(&self, index: usize, stored: Vec<Session>) {
        let host = self.host(index).clone();
        let reported = match self.call(index, "listing sessions", host.list_sessions()).await {
            Ok(list) => list,
            Err(error) => {
                // Unknown state: keep what we have and retry at the next resync.
                warn!(host = host.name(), %error, "cannot reconcile sessions with an unreachable host");
                self.mark_down(index);
                return;
            }
        };
        let reported_ids: HashSet<&str> = reported.iter().map(|s| s.id.as_str()).collect();
        let lost = self.ledger.lock().remove_live(index, |l| {
            l.host_session_id().is_none_or(|id| !reported_ids.contains(id))
        });
        for live in lost {
            info!(session = %live.session.id, host = host.name(), "the host no longer runs this session");
            self.end_logged(live).await;
        }
        for session in stored {
            self.restore_stored(index, session, &reported).await;
        }
        self.stop_orphans(index, &reported).await;
    }

    /// Ends a session the host no longer runs (nothing is asked of the host).
    pub(super) async fn end_logged(&self, live: Live) {
        if let Err(error) = self.end(live, false).await {
            warn!(%error, "could not remove an ended session from the store");
        }
    }

    /// A stored session (start-up): re-opens its relay if the host still runs it, else removes
    /// it.
    async fn restore_stored(&self, index: usize, session: Session, reported: &[HostSessionInfo]) {
        let Some(placement) = session.placement.clone() else {
            return;
        };
        let Some(running) = reported.iter().find(|s| s.id == placement.host_session_id) else {
            info!(session = %session.id, "a stored session ended while direwolf was down");
            if let Err(error) = self.sessions.delete(&session.id).await {
                warn!(%error, "could not remove an ended session from the store");
            }
            return;
        };
        let fake_ip = running.rtsp_fake_ip.as_deref().and_then(|ip| ip.parse().ok());
        let (Some(fake_ip), Some(ports)) = (fake_ip, placement.ports) else {
            self.drop_stored(index, &session, &placement.host_session_id)
                .await;
            return;
        };
        let relay_config = self.relay_config(index, session.client_ip, fake_ip);
        match self.relay.open_session_on(ports, relay_config).await {
            Ok(relay) => {
                info!(session = %session.id, host = self.name(index), "session restored after a restart");
                self.ledger.lock().restore_live(Live {
                    session,
                    host: index,
                    fake_ip,
                    relay: Some(relay),
                });
            }
            Err(error) => {
                warn!(session = %session.id, %error, "cannot re-open the relay of a stored session; ending it");
                self.drop_stored(index, &session, &placement.host_session_id)
                    .await;
            }
        }
    }

    /// Stops a stored session that cannot be restored and removes it from the store.
    async fn drop_stored(&self, index: usize, session: &Session, host_id: &str) {
        self.stop_on_host(index, host_id).await;
        if let Err(error) = self.sessions.delete(&session.id).await {
            warn!(%error, "could not remove an unrestorable session from the store");
        }
    }

    /// Stops host sessions in direwolf's fake-IP range that nobody knows: orphans of a crash.
    async fn stop_orphans(&self, index: usize, reported: &[HostSessionInfo]) {
        let orphans: Vec<String> = {
            let ledger = self.ledger.lock();
            let known = ledger.known_ids(index);
            reported
                .iter()
                .filter(|s| !known.contains(&s.id))
                .filter(|s| {
                    s.rtsp_fake_ip.as_deref().is_some_and(|ip| {
                        is_pool_fake_ip(ip) && !ip.parse().is_ok_and(|ip| ledger.is_reserved(ip))
                    })
                })
                .map(|s| s.id.clone())
                .collect()
        };
        for id in orphans {
            info!(host = self.name(index), %id, "stopping an orphaned session");
            self.stop_on_host(index, &id).await;
        }
    }

    /// Stops the sessions in `reported` (host `index`'s list) that the host created after their
    /// `sessions/add` went unanswered: nobody uses them, and on Wolf (one client-less session id
    /// per instance) they would block the host's next session.
    pub(super) async fn stop_late_sessions(&self, index: usize, reported: &[HostSessionInfo]) {
        let late: Vec<(String, Ipv4Addr)> = {
            let mut ledger = self.ledger.lock();
            let unanswered = ledger.unanswered(index, std::time::Instant::now());
            reported
                .iter()
                .filter_map(|s| Some((s.id.clone(), s.rtsp_fake_ip.as_deref()?.parse().ok()?)))
                // A resume keeps its address across attempts: never touch one in use again.
                .filter(|(_, ip)| unanswered.contains(ip) && !ledger.in_use(index, *ip))
                .collect()
        };
        let host = self.host(index);
        for (id, ip) in late {
            info!(host = host.name(), %id, fake_ip = %ip, "stopping a session the host created after its launch attempt was given up");
            match self
                .call(index, "stopping a late session", host.stop_session(&id))
                .await
            {
                Ok(()) => self.ledger.lock().forget_unanswered(index, ip),
                // Kept: the next listing tells whether it is still there.
                Err(error) => warn!(host = host.name(), %error, "could not stop a late session"),
            }
        }
    }

    /// Ends every live session of a host that is gone (nothing is asked of the host).
    pub(super) async fn end_host_sessions(&self, index: usize) {
        let lost = self.ledger.lock().remove_live(index, |_| true);
        for live in lost {
            info!(session = %live.session.id, host = self.name(index), "the host is gone; ending its session");
            self.end_logged(live).await;
        }
    }
}
