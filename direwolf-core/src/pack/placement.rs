//! Placing sessions: launch, resume and cancel, each attempt on one host (host session, relay,
//! store entry), undone when a later step fails.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::{Instrument as _, debug, info, warn};

use super::Pack;
use super::holds::{FakeIpHold, SlotHold};
use super::ledger::Live;
use crate::error::Error;
use crate::ids::UserName;
use crate::launcher::{LaunchError, LaunchOutcome, detached};
use crate::model::{LaunchRequest, ResumeRequest, Session, SessionPhase, StreamPlacement};
use crate::relay::SessionRelay;
use crate::stream_host::{HostError, HostSessionRequest};

/// What every host being full or failing tells the client.
const ALL_BUSY: &str = "Every streaming host is busy; try again when a session ends.";

/// `sessionUrl0` for the relay's RTSP `port` on the address the client used.
pub(super) fn session_url(server_ip: IpAddr, port: u16) -> String {
    match server_ip {
        IpAddr::V4(ip) => format!("rtsp://{ip}:{port}"),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("rtsp://{v4}:{port}"),
            None => format!("rtsp://[{ip}]:{port}"),
        },
    }
}

fn host_error(error: HostError) -> LaunchError {
    LaunchError::Unavailable {
        message: format!("The streaming host could not start the session: {error}"),
    }
}

/// Runs `work` under the user's lock with [`detached`]: to completion even if the caller stops
/// waiting, and rolled back (the user's session cancelled, still under the lock) when its outcome
/// can no longer be delivered.
pub(super) async fn run_detached(
    pack: &Arc<Pack>,
    user: UserName,
    work: impl FnOnce(Arc<Pack>) -> BoxFuture<'static, Result<LaunchOutcome, LaunchError>> + Send + 'static,
) -> Result<LaunchOutcome, LaunchError> {
    let user_lock = pack.user_locks.of(&user);
    let rollback_pack = pack.clone();
    let rollback = move |_| -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(error) = rollback_pack.cancel(&user).await {
                warn!(%error, "rolling back a launch failed");
            }
        })
    };
    detached(
        pack.config.launch_deadline,
        user_lock,
        work(pack.clone()),
        rollback,
    )
    .await
}

impl Pack {
    pub(super) async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        if self.apps.get(request.app).await?.is_none() {
            return Err(LaunchError::UnknownApp(request.app));
        }
        if let Some((previous, _slot, _fake_ip)) = self.take_live(&request.user) {
            info!(user = %request.user, session = %previous.session.id, "a new launch replaces the user's session");
            self.end(previous, true).await?;
        }
        let session = Session::from_launch(&request);
        let span = tracing::info_span!("session", session = %session.id);
        self.place_anywhere(session, request.server_ip)
            .instrument(span)
            .await
    }

    /// Places `session` on the first host that takes it, trying the hosts in order of preference.
    async fn place_anywhere(
        &self,
        mut session: Session,
        server_ip: IpAddr,
    ) -> Result<LaunchOutcome, LaunchError> {
        let mut last_error = None;
        let candidates = self.ledger.lock().candidates(std::time::Instant::now());
        for index in candidates {
            // Another placement may have taken the host's last slot since the list was made.
            let Some(mut slot) = SlotHold::take(self, index) else {
                debug!(
                    host = self.name(index),
                    "host filled up meanwhile; trying the next"
                );
                continue;
            };
            let fake_ip = FakeIpHold::reserve(self);
            match self.place(&mut slot, &mut session, server_ip, fake_ip.ip()).await {
                Ok(relay) => return self.commit(&mut slot, session, fake_ip.ip(), relay).await,
                Err(error) => {
                    warn!(host = self.name(index), %error, "launch attempt failed");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| LaunchError::Unavailable {
            message: ALL_BUSY.to_owned(),
        }))
    }

    /// Removes the user's live session, holding its slot and its fake address for whatever
    /// follows (see [`Ledger::take_live`](super::ledger::Ledger::take_live)).
    pub(super) fn take_live(&self, user: &UserName) -> Option<(Live, SlotHold<'_>, FakeIpHold<'_>)> {
        let live = self.ledger.lock().take_live(user)?;
        let slot = SlotHold::held(self, live.host);
        let fake_ip = FakeIpHold::reserved(self, live.fake_ip);
        Some((live, slot, fake_ip))
    }

    /// Places a session on the host of `slot` (a slot taken for it): host session and relay.
    /// Undoes what it did when a later step fails.
    async fn place(
        &self,
        slot: &mut SlotHold<'_>,
        session: &mut Session,
        server_ip: IpAddr,
        fake_ip: Ipv4Addr,
    ) -> Result<SessionRelay, LaunchError> {
        let index = slot.host();
        let host_id = self.add_on_host(slot, session, fake_ip).await?;
        let relay_config = self.relay_config(index, session.client_ip, fake_ip);
        let relay = match self.relay.open_session(relay_config).await {
            Ok(relay) => relay,
            Err(error) => {
                self.stop_on_host(index, &host_id).await;
                slot.settled();
                return Err(LaunchError::Unavailable {
                    message: format!("No stream ports are free on this server: {error}"),
                });
            }
        };
        let ports = relay.ports();
        // On shared ports the client's echo of the host tells its RTSP requests apart.
        let url_host = if relay.on_shared_ports() {
            IpAddr::V4(fake_ip)
        } else {
            server_ip
        };
        session.placement = Some(StreamPlacement {
            session_url: session_url(url_host, ports.rtsp),
            host: self.name(index).to_owned(),
            host_session_id: host_id,
            ports: Some(ports),
        });
        session.phase = SessionPhase::WaitForPing;
        Ok(relay)
    }

    /// `sessions/add` on the host of `slot`. From the request until its outcome is known, an
    /// abandoned placement leaves a host session to watch for; an unanswered add is watched for
    /// at once, and marks the host down like an undelivered one.
    async fn add_on_host(
        &self,
        slot: &mut SlotHold<'_>,
        session: &Session,
        fake_ip: Ipv4Addr,
    ) -> Result<String, LaunchError> {
        let index = slot.host();
        let request = HostSessionRequest {
            client_ip: self.members[index].source_ip,
            keys: session.keys,
            rtsp_fake_ip: fake_ip,
            mode: session.mode,
            audio_channels: (session.surround_audio_info & 0xFFFF) as u16,
            host_app_id: self.config.host_apps.get(&session.app).cloned(),
        };
        slot.unsettled(fake_ip);
        let added = self
            .call(
                index,
                "adding the session",
                self.host(index).add_session(&request),
            )
            .await;
        let error = match added {
            Ok(host_id) => return Ok(host_id),
            Err(error) => error,
        };
        slot.settled();
        match error {
            HostError::Unreachable { .. } => self.mark_down(index),
            HostError::NoAnswer { .. } => {
                self.mark_down(index);
                let until = std::time::Instant::now() + self.config.launch_deadline;
                self.ledger.lock().note_unanswered(index, fake_ip, until);
            }
            _ => {}
        }
        Err(host_error(error))
    }

    /// Records a session placed on the host of `slot`; on a store failure undoes the placement.
    async fn commit(
        &self,
        slot: &mut SlotHold<'_>,
        session: Session,
        fake_ip: Ipv4Addr,
        relay: SessionRelay,
    ) -> Result<LaunchOutcome, LaunchError> {
        let index = slot.host();
        let placement = session.placement.clone().ok_or_else(|| {
            LaunchError::Backend(Error::invalid("session", "placed session without a placement"))
        })?;
        if let Err(error) = self.store(&session).await {
            self.stop_on_host(index, &placement.host_session_id).await;
            slot.settled();
            relay.close().await;
            return Err(LaunchError::Backend(error));
        }
        // The session's id is the field of the span this runs in.
        info!(
            user = %session.user,
            app = %session.app,
            host = %placement.host,
            url = %placement.session_url,
            "session placed"
        );
        let outcome = LaunchOutcome {
            session: session.id.clone(),
            session_url: placement.session_url,
        };
        slot.make_live(Live {
            session,
            host: index,
            fake_ip,
            relay: Some(relay),
        });
        Ok(outcome)
    }

    /// Creates or updates the session's store entry (a resume updates it).
    async fn store(&self, session: &Session) -> Result<(), Error> {
        match self.sessions.get(&session.id).await? {
            Some(_) => self.sessions.update(session.clone()).await,
            None => self.sessions.create(session.clone()).await,
        }
    }

    pub(super) async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        // The session's slot on its host stays held (not live, but held) while its host session
        // is stopped and re-added, and its address stays reserved, so no other placement takes
        // either meanwhile.
        let (live, own_slot, fake_ip) = self.take_live(&request.user).ok_or(LaunchError::NotRunning)?;
        let index = live.host;
        let mut session = self.unplace(live).await;
        session.keys = request.keys;
        session.client_ip = request.client_ip;
        session.pairing = request.pairing.clone();
        if let Some(info) = request.surround_audio_info {
            session.surround_audio_info = info;
        }
        // Same host first (the user's app state lives there; its slot is still held), then any
        // other with room.
        let mut last_error = None;
        let mut own_slot = Some(own_slot);
        let mut order = vec![index];
        let others = self.ledger.lock().candidates(std::time::Instant::now());
        order.extend(others.into_iter().filter(|&i| i != index));
        for index in order {
            let Some(mut slot) = own_slot.take().or_else(|| SlotHold::take(self, index)) else {
                debug!(
                    host = self.name(index),
                    "host filled up meanwhile; trying the next"
                );
                continue;
            };
            match self
                .place(&mut slot, &mut session, request.server_ip, fake_ip.ip())
                .await
            {
                Ok(relay) => return self.commit(&mut slot, session, fake_ip.ip(), relay).await,
                Err(error) => last_error = Some(error),
            }
        }
        drop(fake_ip);
        // Nothing could take it: the session is gone.
        self.sessions.delete(&session.id).await?;
        Err(last_error.unwrap_or_else(|| LaunchError::Unavailable {
            message: ALL_BUSY.to_owned(),
        }))
    }

    /// Closes the relay of a live session and stops it on its host; returns the session, no
    /// longer placed.
    async fn unplace(&self, live: Live) -> Session {
        let Live {
            mut session,
            host,
            relay,
            ..
        } = live;
        if let Some(relay) = relay {
            relay.close().await;
        }
        if let Some(placement) = session.placement.take() {
            self.stop_on_host(host, &placement.host_session_id).await;
        }
        session
    }

    pub(super) async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        // The slot stays held until the host session is stopped.
        if let Some((live, _slot, _fake_ip)) = self.take_live(user) {
            self.end(live, true).await?;
        }
        Ok(())
    }

    /// Ends a session no longer live: host session (if `stop_on_host`), relay, store entry.
    pub(super) async fn end(&self, mut live: Live, stop_on_host: bool) -> Result<(), Error> {
        if stop_on_host && let Some(id) = live.host_session_id() {
            self.stop_on_host(live.host, id).await;
        }
        if let Some(relay) = live.relay.take() {
            relay.close().await;
        }
        self.sessions.delete(&live.session.id).await?;
        info!(session = %live.session.id, user = %live.session.user, "session ended");
        Ok(())
    }
}
