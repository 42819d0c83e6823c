//! The agent's life: [`Agent::start`] serves the health port and runs the steps of the
//! [module table](super) until the Session is deleted.
//!
//! Wolf's events are subscribed to as soon as its socket answers, before the stream is
//! registered, so the device events Wolf fires right after `sessions/add` are not missed; they
//! wait in a channel until the agent knows its Wolf session id.

use std::sync::Arc;
use std::time::Duration;

use direwolf_core::health::HealthServer;
use direwolf_core::metrics::WolfApiMetrics;
use direwolf_wolf_client::backoff::Backoff;
use direwolf_wolf_client::types::AddSessionRequest;
use direwolf_wolf_client::{EventItem, EventsConfig, SessionId, WolfClient, WolfEvent};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret as KubeSecret};
use kube::Api;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, error, info, warn};

use super::health::{self, Readiness};
use super::inputs::{self, InputsError, StreamInputs};
use super::phase::{PhaseInput, PhaseTracker};
use super::session::{self, SessionView};
use super::status::{AgentStatus, StatusWriter, WriteError};
use super::udev::{DeviceRelay, NetlinkSink, UeventSink};
use super::{AgentConfig, AgentError, register, rekey, socket, warm};
use crate::crd::{Session, SessionPhase};
use crate::stream;

/// Time limit of each call to Wolf's API.
const WOLF_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the agent ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The Session was deleted; Wolf's session was stopped.
    SessionDeleted,
}

/// An agent to run.
pub struct Agent {
    client: kube::Client,
    config: AgentConfig,
    sink: Option<Arc<dyn UeventSink>>,
}

/// A started agent: its health address and its task.
#[derive(Debug)]
pub struct RunningAgent {
    /// Where the health port listens.
    pub health_addr: std::net::SocketAddr,
    /// Whether Wolf's socket accepted a connection.
    pub readiness: Readiness,
    task: JoinHandle<Result<Exit, AgentError>>,
    health: HealthServer,
    metrics_port: Option<HealthServer>,
}

impl RunningAgent {
    /// Waits for the agent to end.
    ///
    /// # Errors
    /// The agent's fatal error.
    pub async fn wait(mut self) -> Result<Exit, AgentError> {
        let result = match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(AgentError::Config(format!("the agent task failed: {e}"))),
        };
        self.stop_ports();
        result
    }

    /// Where the metrics-only port listens, if one was asked for.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_port.as_ref().map(HealthServer::local_addr)
    }

    fn stop_ports(&self) {
        self.health.stop();
        if let Some(port) = &self.metrics_port {
            port.stop();
        }
    }

    /// Stops the agent at once (as a killed process would: nothing is cleaned up).
    pub fn abort(&self) {
        self.task.abort();
        self.stop_ports();
    }
}

/// What the agent registered with Wolf, for stopping it when the Session goes.
#[derive(Debug, Default)]
struct Registered {
    request: Option<AddSessionRequest>,
    id: Option<SessionId>,
}

impl Agent {
    /// An agent of `config` talking to the API server through `client`.
    pub fn new(client: kube::Client, config: AgentConfig) -> Self {
        Agent {
            client,
            config,
            sink: None,
        }
    }

    /// Sends uevents to `sink` instead of a netlink socket opened at start.
    pub fn with_uevent_sink(mut self, sink: Arc<dyn UeventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Starts and runs until the Session is deleted.
    ///
    /// # Errors
    /// See [`Agent::start`] and [`RunningAgent::wait`].
    pub async fn run(self) -> Result<Exit, AgentError> {
        self.start().await?.wait().await
    }

    /// Binds the health port, sets up the controller relay and starts the agent's task.
    ///
    /// # Errors
    /// [`AgentError::Health`], [`AgentError::Udev`], [`AgentError::Config`].
    pub async fn start(self) -> Result<RunningAgent, AgentError> {
        let readiness = Readiness::default();
        let span = tracing::info_span!("session", session = %self.config.session);
        let relay = self.relay()?;
        let wolf = WolfClient::builder()
            .with_unix_socket(&self.config.wolf_socket)
            .with_timeout(WOLF_CALL_TIMEOUT)
            .with_observer(Arc::new(WolfApiMetrics::register(&self.config.metrics)))
            .build()
            .map_err(|e| AgentError::Config(format!("Wolf client: {e}")))?;
        let health = health::serve(
            self.config.health_addr,
            readiness.clone(),
            self.config.metrics.clone(),
        )
        .await?;
        let health_addr = health.local_addr();
        let metrics_port = match self.config.metrics_addr {
            Some(addr) => Some(health::serve_metrics(addr, self.config.metrics.clone()).await?),
            None => None,
        };
        let pods = Api::namespaced(self.client.clone(), &self.config.namespace);
        let life = Life {
            sessions: Api::namespaced(self.client.clone(), &self.config.namespace),
            secrets: Api::namespaced(self.client, &self.config.namespace),
            config: self.config,
            wolf,
            relay,
            readiness: readiness.clone(),
            registered: Arc::new(Mutex::new(Registered::default())),
        };
        let task = match life.config.warm_pod.clone() {
            None => tokio::spawn(life.run().instrument(span)),
            Some(pod) => {
                let span = tracing::info_span!("warm", pod = %pod);
                tokio::spawn(life.run_warm(pods, pod).instrument(span))
            }
        };
        Ok(RunningAgent {
            health_addr,
            readiness,
            task,
            health,
            metrics_port,
        })
    }

    fn relay(&self) -> Result<Option<DeviceRelay>, AgentError> {
        let Some(dir) = &self.config.udev_dir else {
            return Ok(None);
        };
        let sink: Arc<dyn UeventSink> = match &self.sink {
            Some(sink) => sink.clone(),
            None => Arc::new(NetlinkSink::open().map_err(AgentError::Udev)?),
        };
        DeviceRelay::new(dir, sink).map(Some).map_err(AgentError::Udev)
    }
}

/// Everything one run uses.
struct Life {
    config: AgentConfig,
    sessions: Api<Session>,
    secrets: Api<KubeSecret>,
    wolf: WolfClient,
    relay: Option<DeviceRelay>,
    readiness: Readiness,
    registered: Arc<Mutex<Registered>>,
}

impl Life {
    /// Warm mode ([`super::warm`]): Wolf, the claim, then [`Life::run`] for the Session.
    async fn run_warm(mut self, pods: Api<Pod>, pod: String) -> Result<Exit, AgentError> {
        let config = &self.config;
        warm::wait_for_wolf(
            &pod,
            &config.wolf_socket,
            config.socket_poll,
            config.wolf_timeout,
            &self.readiness,
        )
        .await?;
        self.config.session = warm::wait_for_claim(pods, &pod).await?;
        // Short steps: the Session's Role is bound right after the claim.
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        warm::wait_readable(&self.sessions, &self.config.session, backoff).await;
        let span = tracing::info_span!("session", session = %self.config.session);
        self.run().instrument(span).await
    }

    async fn run(self) -> Result<Exit, AgentError> {
        let (rx, watch_task) = session::watch_session(self.sessions.clone(), &self.config.session);
        let outcome = tokio::select! {
            r = self.stream(rx.clone()) => r,
            () = session::gone(rx) => Ok(()),
        };
        watch_task.abort();
        outcome?;
        info!("the Session is gone; stopping Wolf's session");
        self.stop_wolf_session().await;
        Ok(Exit::SessionDeleted)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.config.retry_initial, self.config.retry_max)
    }

    /// Socket, inputs, registration, events. Returns only with a fatal error; otherwise it
    /// runs until the Session is gone (the caller's other branch).
    async fn stream(&self, mut rx: watch::Receiver<SessionView>) -> Result<(), AgentError> {
        let deadline = Instant::now() + self.config.wolf_timeout;
        let socket = socket::wait(&self.config.wolf_socket, self.config.socket_poll, deadline).await?;
        let mut events = None;
        if socket.is_ok() {
            info!(socket = %self.config.wolf_socket.display(), "Wolf's socket accepts connections");
            self.readiness.set_ready();
            events = Some(self.subscribe());
        }
        let mut writer = StatusWriter::new(self.sessions.clone(), &self.config.session, self.backoff());
        let fake_ip = stream::fake_rtsp_ip(self.config.pod_ip);
        let inputs = match inputs::gather(
            &mut rx,
            &self.secrets,
            &self.config.session,
            fake_ip,
            self.backoff(),
        )
        .await
        {
            Ok(inputs) => inputs,
            Err(InputsError::SessionGone) => return forever().await,
            Err(e @ InputsError::BadKeys { .. }) => return self.fail(&mut writer, e.to_string()).await,
        };
        let (Ok(()), Some(events)) = (socket, events) else {
            let message = format!(
                "Wolf's socket {} did not accept a connection within {:?}",
                self.config.wolf_socket.display(),
                self.config.wolf_timeout
            );
            return self.fail(&mut writer, message).await;
        };
        let id = match self.register(&inputs).await {
            Ok(id) => id,
            Err(message) => return self.fail(&mut writer, message).await,
        };
        self.write(&mut writer, registered(id, &inputs)).await;
        let followed = Followed { id, inputs };
        self.follow(followed, events, &mut writer, &mut rx).await
    }

    /// Reports the stream failed (phase Ended), then waits for the Session to go.
    async fn fail(&self, writer: &mut StatusWriter, message: String) -> Result<(), AgentError> {
        error!(%message, "the stream cannot start");
        self.write(writer, AgentStatus::failed(message)).await;
        forever().await
    }

    async fn write(&self, writer: &mut StatusWriter, status: AgentStatus) {
        match writer.write(status).await {
            Ok(()) | Err(WriteError::Gone) => {}
            Err(e) => error!(error = %e, "cannot write the Session status"),
        }
    }

    /// Subscribes to Wolf's events (reconnecting with back-off from a jittered start); the
    /// items arrive on the returned channel.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<EventItem> {
        let cfg = EventsConfig {
            filter_pings: false,
            initial_backoff: self.backoff().next_delay(),
            max_backoff: self.config.retry_max,
            ..EventsConfig::default()
        };
        let mut stream = self.wolf.events_with(cfg);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(item) => {
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                    Err(e) => warn!(error = %e, "Wolf's event stream failed"),
                }
            }
        });
        rx
    }

    /// Finds or adds Wolf's session within the Wolf timeout, retrying transient failures.
    async fn register(&self, inputs: &StreamInputs) -> Result<SessionId, String> {
        self.registered.lock().request = Some(register::add_request(inputs));
        let deadline = Instant::now() + self.config.wolf_timeout;
        let mut backoff = self.backoff();
        loop {
            let error = match tokio::time::timeout_at(deadline, register::register(&self.wolf, inputs)).await
            {
                Ok(Ok((id, _found))) => {
                    self.registered.lock().id = Some(id);
                    return Ok(id);
                }
                Ok(Err(e)) if e.is_transient() => e.to_string(),
                Ok(Err(e)) => return Err(format!("Wolf refused the stream: {e}")),
                Err(_) => "no answer".to_owned(),
            };
            let delay = backoff.next_delay();
            if Instant::now() + delay >= deadline {
                return Err(format!(
                    "Wolf did not register the stream within {:?}: {error}",
                    self.config.wolf_timeout
                ));
            }
            warn!(%error, "registering the stream with Wolf failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Follows Wolf's events until the stream ends, then waits for the Session to go. A resume's
    /// new keys register the stream again ([`super::rekey`]).
    async fn follow(
        &self,
        mut stream: Followed,
        mut events: mpsc::UnboundedReceiver<EventItem>,
        writer: &mut StatusWriter,
        rx: &mut watch::Receiver<SessionView>,
    ) -> Result<(), AgentError> {
        let mut tracker = PhaseTracker::new(self.config.pause_grace);
        loop {
            let grace = tracker.grace_deadline();
            let id = stream.id;
            let changed = tokio::select! {
                item = events.recv() => match item {
                    Some(EventItem::Event(event)) => self.on_event(id, &event, &mut tracker),
                    Some(EventItem::Reconnected) => self.resync(id, &mut tracker).await,
                    None => return Err(AgentError::Config("Wolf's event stream ended".into())),
                },
                () = sleep_until(grace) => {
                    let ended = tracker.check_grace(Instant::now());
                    if ended.is_some() {
                        info!(grace = ?self.config.pause_grace, "the pause outlasted the grace; ending the stream");
                        self.stop_wolf_session().await;
                    }
                    ended
                }
                session = rekey::raised(rx, stream.inputs.keys_revision) => {
                    stream = match self.rekey(&session, &stream, &mut events).await {
                        Ok(next) => next,
                        Err(message) => return self.fail(writer, message).await,
                    };
                    tracker = PhaseTracker::new(self.config.pause_grace);
                    self.write(writer, registered(stream.id, &stream.inputs)).await;
                    continue;
                }
            };
            if let Some(phase) = changed {
                let status = AgentStatus {
                    phase,
                    ..registered(id, &stream.inputs)
                };
                self.write(writer, status).await;
                if phase == SessionPhase::Ended {
                    return forever().await;
                }
            }
        }
    }

    /// Registers the stream again with the keys a resume wrote (at least the Session's
    /// revision) and the Session's current parameters, after stopping Wolf's session and
    /// seeing Wolf's event for that stop (a client-less session's id is the same every time,
    /// so a late event of the old session would pass for one of the new).
    async fn rekey(
        &self,
        session: &Session,
        current: &Followed,
        events: &mut mpsc::UnboundedReceiver<EventItem>,
    ) -> Result<Followed, String> {
        let wanted = rekey::wanted(session);
        let secret = stream::keys_secret_name(&self.config.session);
        let mut backoff = self.backoff();
        let read = inputs::read_keys(&self.secrets, &secret, wanted, &mut backoff);
        let (keys, keys_revision) = match tokio::time::timeout(self.config.wolf_timeout, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "the keys Secret {secret} did not reach revision {wanted} within {:?}",
                    self.config.wolf_timeout
                ));
            }
        };
        info!(
            revision = keys_revision,
            "the stream was resumed with new keys; registering it with Wolf again"
        );
        let inputs = StreamInputs {
            config: session.spec.config.clone(),
            keys,
            keys_revision,
            ..current.inputs.clone()
        };
        self.stop_wolf_session().await;
        self.await_stopped(current.id, events).await;
        self.registered.lock().id = None;
        let id = self.register(&inputs).await?;
        Ok(Followed { id, inputs })
    }

    /// Consumes Wolf's events up to the one for the stop of `id` (bounded); the devices of the
    /// old session are relayed meanwhile.
    async fn await_stopped(&self, id: SessionId, events: &mut mpsc::UnboundedReceiver<EventItem>) {
        let mut ignored = PhaseTracker::new(self.config.pause_grace);
        let stopped = async {
            while let Some(item) = events.recv().await {
                if let EventItem::Event(event) = item
                    && self.on_event(id, &event, &mut ignored) == Some(SessionPhase::Ended)
                {
                    return;
                }
            }
        };
        if tokio::time::timeout(WOLF_CALL_TIMEOUT, stopped).await.is_err() {
            warn!(wolf_session_id = %id, "Wolf's event for the stop did not come; registering anyway");
        }
    }

    /// Handles one event: devices of this session are relayed; the phase input applied.
    fn on_event(&self, id: SessionId, event: &WolfEvent, tracker: &mut PhaseTracker) -> Option<SessionPhase> {
        match event {
            WolfEvent::PlugDevice(dev) if dev.session_id == id => self.relay_device(true, dev),
            WolfEvent::UnplugDevice(dev) if dev.session_id == id => self.relay_device(false, dev),
            _ => {}
        }
        let input = PhaseInput::from_event(event, id)?;
        let changed = tracker.apply(input, Instant::now());
        if changed.is_some() {
            info!(?input, phase = ?tracker.phase(), "stream phase changed");
        }
        changed
    }

    fn relay_device(&self, plugged: bool, dev: &direwolf_wolf_client::events::DeviceEvent) {
        let Some(relay) = &self.relay else {
            debug!("device event ignored: the udev relay is off");
            return;
        };
        let result = if plugged {
            relay.plug(dev)
        } else {
            relay.unplug(dev)
        };
        let devices = dev.udev_events.len();
        match result {
            Ok(()) => info!(plugged, devices, "relayed a virtual device to the game container"),
            Err(e) => error!(plugged, error = %e, "cannot relay a virtual device to the game container"),
        }
    }

    /// After the event stream reconnected (events may have been missed): is the session still
    /// in Wolf's list?
    async fn resync(&self, id: SessionId, tracker: &mut PhaseTracker) -> Option<SessionPhase> {
        match self.wolf.sessions().await {
            Ok(list) if list.iter().all(|s| s.session_id() != id) => {
                warn!(wolf_session_id = %id, "Wolf no longer has the stream");
                tracker.apply(PhaseInput::Gone, Instant::now())
            }
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "cannot list Wolf's sessions after reconnecting");
                None
            }
        }
    }

    /// Stops Wolf's session of this stream, if any (bounded; errors are logged).
    async fn stop_wolf_session(&self) {
        let (id, request) = {
            let r = self.registered.lock();
            (r.id, r.request.clone())
        };
        let stop = async {
            let id = match (id, request) {
                (Some(id), _) => Some(id),
                (None, Some(req)) => register::find(&self.wolf, &req).await.ok().flatten(),
                (None, None) => None,
            };
            let Some(id) = id else { return };
            match self.wolf.stop_session(id).await {
                Ok(()) => info!(wolf_session_id = %id, "stopped Wolf's session"),
                Err(e) => warn!(wolf_session_id = %id, error = %e, "cannot stop Wolf's session"),
            }
        };
        if tokio::time::timeout(WOLF_CALL_TIMEOUT * 2, stop).await.is_err() {
            warn!("Wolf did not answer the stop in time");
        }
    }
}

/// The stream Wolf has: its id there and what it was registered with.
struct Followed {
    id: SessionId,
    inputs: StreamInputs,
}

/// The status of a registered stream, phase WaitForPing.
fn registered(id: SessionId, inputs: &StreamInputs) -> AgentStatus {
    AgentStatus::registered(id.to_string(), inputs.stream_url(), inputs.keys_revision)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits forever: the Session's deletion (the other branch of [`Life::run`]) ends the agent.
async fn forever() -> Result<(), AgentError> {
    std::future::pending().await
}
