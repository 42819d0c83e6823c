//! Shared-ports mode: every session on one port set of one address, by default Moonlight's own
//! (RTSP 48010/TCP, control 47999/UDP, video 48100/UDP, audio 48200/UDP), so a firewall or router
//! opens four ports whatever the number of sessions.
//!
//! Sessions are told apart by what the clients already send (`docs/protocol/streaming-ports.md`
//! § How Wolf matches traffic to a session), the way Wolf itself does on its ports:
//!
//! * **RTSP** by the fake IP the client echoes in the request-URI and `Host`: the relay names
//!   the session's fake IP as the host of `sessionUrl0` (the client never connects to it). A
//!   client below the high-quality audio conditions sends `0.0.0.0`; its request goes to the one
//!   session from its address still in the RTSP handshake. A launch from an address whose other
//!   session is still in its handshake gets an RTSP port of its own from the relay's
//!   `port_range` ([`fallback`]), and the log says so.
//! * **Video and audio** by the 16-byte ping payload, learned from Wolf's SETUP answer as it
//!   passes through the relay; a legacy 4-byte ping by its address, if one session has it.
//! * **Control** by the ENet CONNECT's connect data; any other first datagram by its address, if
//!   one session has it.
//!
//! Traffic that matches no session, or carries a secret no session has, is dropped and counted
//! by reason (`unknown_secret`, `unknown_source`, `ambiguous_source`); it never reaches another
//! session. Each shared UDP port has one dispatcher task ([`dispatch`]) that routes client
//! datagrams to the session's own stream task; that task forwards them to Wolf through its own
//! upstream sockets, exactly as with per-session ports, and sends Wolf's answers back through the
//! shared socket. What differs: a session's upstream sockets always use ephemeral ports (another
//! session may speak to the same Wolf from the shared port), so a relay restart is not invisible to
//! Wolf's ENet peer as it is with per-session ports.

mod directory;
mod dispatch;
pub(crate) mod fallback;
mod rtsp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::AbortHandle;

pub(crate) use directory::{Directory, Member};

use super::socket::RelaySocket;
use super::source::bind_public;
use super::stats::StreamKind;
use super::udp::{self, Clients, Public};
use super::{
    ROUTED_QUEUE, Relay, RelayConfig, RelayError, Result, SessionRelay, SessionRelayConfig, SessionShared,
    rtsp as session_rtsp,
};
use crate::StreamPorts;

/// The one port set every session shares. [`SharedPorts::default`] is Moonlight's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPorts {
    /// RTSP (TCP).
    pub rtsp: u16,
    /// Video pings and RTP (UDP).
    pub video: u16,
    /// Audio pings and RTP (UDP).
    pub audio: u16,
    /// The ENet control stream (UDP).
    pub control: u16,
}

impl Default for SharedPorts {
    fn default() -> Self {
        SharedPorts {
            rtsp: 48010,
            video: 48100,
            audio: 48200,
            control: 47999,
        }
    }
}

/// The shared ports at work: their sockets, their tasks and the sessions on them.
#[derive(Debug)]
pub(crate) struct Front {
    pub(crate) ports: StreamPorts,
    pub(crate) directory: Arc<Directory>,
    video: Arc<RelaySocket>,
    audio: Arc<RelaySocket>,
    control: Arc<RelaySocket>,
    pub(crate) rtsp_ports: fallback::RtspPorts,
    tasks: Vec<AbortHandle>,
    /// Held from a launch's look at the directory until it is in it, so that two launches of one
    /// address at once cannot both take the shared RTSP port.
    joining: parking_lot::Mutex<()>,
}

impl Front {
    /// Bind the shared ports and start their tasks (inside a tokio runtime).
    pub(crate) fn start(config: &RelayConfig, ports: SharedPorts) -> Result<Front> {
        if [ports.rtsp, ports.video, ports.audio, ports.control].contains(&0) {
            return Err(RelayError::Invalid("shared ports must not be 0".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RelayError::Invalid("shared ports are started inside a tokio runtime".into()))?;
        let _entered = runtime.enter();
        let at = |port| SocketAddr::new(config.public_ip, port);
        let bind_err = |what, port, source| RelayError::Bind {
            what,
            address: at(port),
            source,
        };
        let listener = fallback::listen(at(ports.rtsp)).map_err(|e| bind_err("rtsp", ports.rtsp, e))?;
        let udp = |what, port| {
            bind_public(at(port), config.socket_options())
                .map(Arc::new)
                .map_err(|e| bind_err(what, port, e))
        };
        let (video, audio, control) = (
            udp("video", ports.video)?,
            udp("audio", ports.audio)?,
            udp("control", ports.control)?,
        );
        let directory = Arc::new(Directory::default());
        let mut tasks = vec![
            runtime
                .spawn(rtsp::serve(listener, directory.clone(), config.rtsp))
                .abort_handle(),
        ];
        for (kind, socket) in [
            (StreamKind::Video, &video),
            (StreamKind::Audio, &audio),
            (StreamKind::Control, &control),
        ] {
            let task = dispatch::serve(
                kind,
                socket.clone(),
                directory.clone(),
                config.udp_idle_timeout,
                config.max_mappings_per_stream,
            );
            tasks.push(runtime.spawn(task).abort_handle());
        }
        tracing::info!(
            ip = %config.public_ip, rtsp = ports.rtsp, video = ports.video, audio = ports.audio,
            control = ports.control, "shared stream ports listening"
        );
        Ok(Front {
            ports: StreamPorts {
                rtsp: ports.rtsp,
                video: ports.video,
                audio: ports.audio,
                control: ports.control,
            },
            directory,
            video,
            audio,
            control,
            rtsp_ports: fallback::RtspPorts::new(config.port_range.clone()),
            tasks,
            joining: parking_lot::Mutex::new(()),
        })
    }

    /// Open a session on the shared ports: its RTSP on the shared port, or on one of its own when
    /// the shared port could not tell it from another launch of the same address.
    pub(crate) fn join(&self, relay: &Relay, session: SessionRelayConfig) -> Result<SessionRelay> {
        let front = self;
        let _joining = front.joining.lock();
        let ambiguous = front.directory.awaits_rtsp_from(session.client_ip);
        let own_rtsp = if ambiguous && relay.inner.config.shared_rtsp_fallback {
            let (listener, lease) = front.rtsp_ports.listen(relay.inner.config.public_ip)?;
            tracing::info!(
                client = %session.client_ip, rtsp = lease.port(),
                "another session of this address is still in its RTSP handshake: this launch gets an RTSP port of its own"
            );
            Some((listener, lease))
        } else {
            None
        };
        let mut public = front.ports;
        if let Some((_, lease)) = &own_rtsp {
            public.rtsp = lease.port();
        }
        let mut state = SessionShared::new(relay.inner.config.clone(), &session, public);
        state.shared_udp = true;
        state.shared_rtsp = own_rtsp.is_none();
        let shared = Arc::new(state);
        let id = relay.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (mut tasks, mut inboxes) = (Vec::new(), Vec::new());
        for kind in StreamKind::ALL {
            let (inbox, clients) = tokio::sync::mpsc::channel(ROUTED_QUEUE);
            inboxes.push(inbox);
            let public = Public::Shared(front.socket(kind));
            tasks.push(tokio::spawn(udp::serve(
                kind,
                public,
                Clients::Routed(clients),
                shared.clone(),
            )));
        }
        let (rtsp_lease, listener) = match own_rtsp {
            Some((listener, lease)) => (Some(lease), Some(listener)),
            None => (None, None),
        };
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(session_rtsp::serve(listener, shared.clone())));
        }
        let inboxes: [_; 3] = inboxes.try_into().expect("one inbox per stream kind");
        front.directory.insert(
            id,
            Member {
                shared: shared.clone(),
                inboxes,
            },
        );
        Ok(relay.register(id, &session, shared, tasks, None, rtsp_lease))
    }

    /// The shared socket of a UDP stream.
    pub(crate) fn socket(&self, kind: StreamKind) -> Arc<RelaySocket> {
        match kind {
            StreamKind::Video => self.video.clone(),
            StreamKind::Audio => self.audio.clone(),
            StreamKind::Control => self.control.clone(),
        }
    }

    /// Stop the shared ports' tasks.
    pub(crate) fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}
