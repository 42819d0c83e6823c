//! The wolf-agent (`direwolf_k8s::agent`) against the API-server emulator and the fake Wolf:
//! registration writes exactly the contract's status fields, a restarted agent finds its Wolf
//! session again, a resume's new keys register the stream again, Wolf's events drive the phase, deleting the Session stops Wolf's session,
//! failures are reported on the Session, status writes survive injected faults, logs never
//! show the AES key, and (as root, in a network namespace) a real libudev monitor sees the
//! controllers the agent replays.
#![cfg(all(feature = "agent", feature = "emulator"))]

mod support;
#[path = "agent/udev_monitor.rs"]
mod udev_monitor;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use direwolf_k8s::agent::udev::{Uevent, UeventSink};
use direwolf_k8s::agent::{Agent, AgentConfig, AgentError, Exit, RunningAgent};
use direwolf_k8s::crd::{self, Session, SessionPhase, field_managers};
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::stream;
use direwolf_wolf_client::events::names;
use direwolf_wolf_client::fake::FakeWolf;
use direwolf_wolf_client::{SessionId, WolfVersion};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "default";
const NAME: &str = "alice-test-pattern-x7k2q";
const AES_KEY: &str = "773448F67992470C5C62848D361E1025";
const POD_IP: &str = "10.1.2.3";
const RTSP_PORT: u16 = 40010;

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    support::within(WAIT, what, f).await
}

/// Records the uevents the agent sends.
#[derive(Default)]
struct Recorder(Mutex<Vec<Uevent>>);

impl UeventSink for Recorder {
    fn send(&self, event: &Uevent) -> io::Result<()> {
        self.0.lock().push(event.clone());
        Ok(())
    }
}

/// An emulator holding the example Session with its ports, a fake Wolf on a unix socket, and
/// a udev directory.
struct Env {
    emulator: ApiServerEmulator,
    wolf: FakeWolf,
    dir: tempfile::TempDir,
    sink: Arc<Recorder>,
}

impl Env {
    async fn new() -> Env {
        Env::with(true).await
    }

    async fn with(secret: bool) -> Env {
        // RUST_LOG=debug shows the agent's logs of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let emulator = support::emulator(WAIT, &["session.yaml"]).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let wolf = within(
            "fake Wolf starts",
            FakeWolf::builder()
                .version(WolfVersion::V6)
                .unix(dir.path().join("wolf.sock"))
                .start(),
        )
        .await
        .expect("fake Wolf");
        // Wolf's configuration has Moonlight apps (without one, `sessions/add` without an
        // app crashes Wolf; the agent refuses to send it).
        wolf.add_app(FakeWolf::sample_app(1u32, "Desktop"));
        let env = Env {
            emulator,
            wolf,
            dir,
            sink: Arc::new(Recorder::default()),
        };
        env.write_ports().await;
        if secret {
            env.create_secret().await;
        }
        env
    }

    fn sessions(&self) -> Api<Session> {
        Api::namespaced(self.emulator.client(), NS)
    }

    /// Plays the operator: writes `status.ports`.
    async fn write_ports(&self) {
        let body = json!({
            "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
            "kind": "Session",
            "status": {"phase": "Initializing", "ports": {"rtsp": RTSP_PORT, "control": 40011, "videoRTP": 40012, "audioRTP": 40013}},
        });
        let params = PatchParams::apply(field_managers::OPERATOR_SESSION_STATUS).force();
        within(
            "operator writes ports",
            self.sessions().patch_status(NAME, &params, &Patch::Apply(&body)),
        )
        .await
        .expect("ports written");
    }

    /// Plays the proxy: writes the keys Secret.
    async fn create_secret(&self) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(stream::keys_secret_name(NAME)),
                ..Default::default()
            },
            data: Some(
                [
                    (stream::KEYS_AES_KEY.to_owned(), ByteString(AES_KEY.into())),
                    (stream::KEYS_AES_IV.to_owned(), ByteString(b"1311662065".to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let api: Api<Secret> = Api::namespaced(self.emulator.client(), NS);
        within("proxy writes keys", api.create(&PostParams::default(), &secret))
            .await
            .expect("secret created");
    }

    /// Plays the proxy's resume: keys at `revision` into the Secret, then the Session's new
    /// client and `spec.keysRevision`.
    async fn resume(&self, key: &str, revision: i64, client_ip: &str) {
        let secret = json!({
            "metadata": {"annotations": {stream::KEYS_REVISION: revision.to_string()}},
            "data": {stream::KEYS_AES_KEY: base64(key)},
        });
        let api: Api<Secret> = Api::namespaced(self.emulator.client(), NS);
        let name = stream::keys_secret_name(NAME);
        within(
            "proxy re-keys",
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&secret)),
        )
        .await
        .expect("keys re-written");
        let spec = json!({"spec": {"keysRevision": revision, "config": {"clientIP": client_ip}}});
        within(
            "proxy raises the revision",
            self.sessions()
                .patch(NAME, &PatchParams::default(), &Patch::Merge(&spec)),
        )
        .await
        .expect("session patched");
    }

    fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(
            NAME,
            NS,
            POD_IP.parse().expect("an IP"),
            self.dir.path().join("wolf.sock"),
        );
        config.health_addr = "127.0.0.1:0".parse().expect("an address");
        config.pause_grace = Duration::from_secs(1);
        config.wolf_timeout = Duration::from_secs(2);
        config.socket_poll = Duration::from_millis(20);
        config.udev_dir = Some(self.dir.path().join("udev"));
        config.retry_initial = Duration::from_millis(20);
        config.retry_max = Duration::from_millis(200);
        config
    }

    async fn start(&self, config: AgentConfig) -> RunningAgent {
        within(
            "agent starts",
            Agent::new(self.emulator.client(), config)
                .with_uevent_sink(self.sink.clone())
                .start(),
        )
        .await
        .expect("agent starts")
    }

    /// Waits until the Session's phase is `phase`; the Session then.
    async fn phase(&self, phase: SessionPhase) -> Session {
        let api = self.sessions();
        within(&format!("phase {phase:?}"), async {
            loop {
                let s = api.get(NAME).await.expect("get session");
                if s.status.as_ref().and_then(|st| st.phase) == Some(phase) {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    fn wolf_id(&self) -> SessionId {
        let list = self.wolf.sessions();
        assert_eq!(list.len(), 1, "Wolf holds exactly one session");
        list[0].session_id()
    }
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn condition(s: &Session) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let st = s.status.as_ref().expect("status");
    crd::find_condition(&st.conditions, crd::conditions::STREAM_STARTED).expect("StreamStarted")
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    within("health answer", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        out
    })
    .await
}

#[tokio::test]
async fn registration_writes_exactly_the_contract_fields() {
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    assert!(
        http_get(agent.health_addr, "/livez")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let s = env.phase(SessionPhase::WaitForPing).await;
    assert!(
        http_get(agent.health_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(agent.health_addr, "/api/v1/sessions")
            .await
            .starts_with("HTTP/1.1 404")
    );

    let id = env.wolf_id();
    let st = s.status.as_ref().unwrap();
    assert_eq!(st.wolf_session_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(
        st.stream_url.as_deref(),
        Some(format!("rtsp://{POD_IP}:{RTSP_PORT}").as_str())
    );
    let c = condition(&s);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "WaitForPing"));

    // What Wolf got: the keys, the fake IP, the client, the mode, 2 channels of 196610.
    let w = &env.wolf.sessions()[0];
    assert_eq!(w.aes_key.as_ref().unwrap().expose(), AES_KEY);
    assert_eq!(w.aes_iv.as_ref().unwrap().expose(), "1311662065");
    assert_eq!(w.rtsp_fake_ip.as_deref(), Some(POD_IP));
    assert_eq!(w.client_ip, "192.0.2.10");
    assert_eq!(
        (w.video_width, w.video_height, w.video_refresh_rate),
        (1920, 1080, 60)
    );
    assert_eq!(w.audio_channel_count, 2);

    // The agent's field manager owns exactly its fields of the contract.
    let managed = s.metadata.managed_fields.clone().unwrap_or_default();
    let mine = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some(field_managers::AGENT_SESSION_STATUS))
        .expect("agent's managed fields");
    assert_eq!(mine.subresource.as_deref(), Some("status"));
    let owned = &mine.fields_v1.as_ref().unwrap().0["f:status"];
    let mut keys: Vec<&str> = owned.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "f:conditions",
            "f:keysRevision",
            "f:phase",
            "f:streamURL",
            "f:wolfSessionID"
        ]
    );
    let conditions: Vec<&String> = owned["f:conditions"].as_object().unwrap().keys().collect();
    assert_eq!(conditions, [r#"k:{"type":"StreamStarted"}"#]);
    agent.abort();
}

#[tokio::test]
async fn a_restarted_agent_reuses_wolfs_session() {
    let env = Env::new().await;
    let first = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    let id = env.wolf_id();
    first.abort();
    env.write_ports().await; // the operator's phase Initializing again
    env.phase(SessionPhase::Initializing).await;
    let second = env.start(env.config()).await;
    let s = env.phase(SessionPhase::WaitForPing).await;
    assert_eq!(env.wolf_id(), id, "one Wolf session, the same id");
    assert_eq!(s.status.unwrap().wolf_session_id, Some(id.to_string()));
    second.abort();
}

/// A resume's new keys: Wolf's session is stopped and added again with the new keys and client,
/// and the status carries the new id and the revision the proxy waits for.
#[tokio::test]
async fn a_resume_registers_the_stream_again_with_its_new_keys() {
    const NEW_KEY: &str = "00112233445566778899AABBCCDDEEFF";
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    let first = env.phase(SessionPhase::WaitForPing).await;
    assert_eq!(first.status.as_ref().and_then(|s| s.keys_revision), Some(0));
    let old = env.wolf_id();
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .expect("subscribed");
    env.wolf.inject_event(
        names::RTP_VIDEO_PING,
        &json!({"client_ip": "192.0.2.10", "client_port": 5000}),
    );
    env.phase(SessionPhase::Streaming).await;

    env.resume(NEW_KEY, 1, "198.51.100.20").await;
    let api = env.sessions();
    let s = within("revision 1 registered", async {
        loop {
            let s = api.get(NAME).await.expect("get session");
            if s.status.as_ref().and_then(|st| st.keys_revision) == Some(1) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // One session (the old one was stopped), with the new keys; a client-less session's id
    // is the same every time (docs/protocol/wolf-api.md § Identifiers), so Wolf's stop event of
    // the old one must not end the new one.
    let id = env.wolf_id();
    assert_eq!(id, old);
    let w = &env.wolf.sessions()[0];
    assert_eq!(w.aes_key.as_ref().unwrap().expose(), NEW_KEY);
    assert_eq!(w.client_ip, "198.51.100.20");
    let st = s.status.as_ref().unwrap();
    assert_eq!(st.wolf_session_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(
        st.phase,
        Some(SessionPhase::WaitForPing),
        "waiting for the client again"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = api.get(NAME).await.expect("get session");
    assert_eq!(
        later.status.and_then(|st| st.phase),
        Some(SessionPhase::WaitForPing),
        "the old session's stop did not end the new one"
    );
    agent.abort();
}

#[tokio::test]
async fn events_drive_the_phase_and_a_long_pause_ends_the_stream() {
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    let id = env.wolf_id();
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .unwrap();
    env.wolf.inject_event(
        names::RTP_VIDEO_PING,
        &json!({"client_ip": "192.0.2.10", "client_port": 5000}),
    );
    env.phase(SessionPhase::Streaming).await;
    // Another session's pause is not ours.
    env.wolf
        .inject_event(names::PAUSE_STREAM, &json!({"session_id": "42"}));
    env.wolf.client().unwrap().pause_session(id).await.expect("pause");
    let paused = env.phase(SessionPhase::Paused).await;
    assert_eq!(condition(&paused).reason, "WaitForPing", "the condition stays");
    env.wolf
        .inject_event(names::RESUME_STREAM, &json!({"session_id": id.to_string()}));
    env.phase(SessionPhase::Streaming).await;
    env.wolf.client().unwrap().pause_session(id).await.expect("pause");
    env.phase(SessionPhase::Paused).await;
    // The grace (1 s) passes: Ended, and Wolf's session is stopped.
    env.phase(SessionPhase::Ended).await;
    within("Wolf's session stopped", async {
        while !env.wolf.sessions().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    agent.abort();
}

#[tokio::test]
async fn wolf_stopping_the_session_ends_the_stream() {
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .unwrap();
    env.wolf.end_session(env.wolf_id());
    let s = env.phase(SessionPhase::Ended).await;
    assert_eq!(condition(&s).status, "True", "it did start");
    agent.abort();
}

#[tokio::test]
async fn deleting_the_session_stops_wolfs_session_and_exits() {
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    env.wolf_id();
    within("delete", env.sessions().delete(NAME, &DeleteParams::default()))
        .await
        .expect("deleted");
    let exit = within("agent exits", agent.wait()).await.expect("clean exit");
    assert_eq!(exit, Exit::SessionDeleted);
    assert!(env.wolf.sessions().is_empty(), "Wolf's session stopped");
}

/// With the operator's finalizer the Session lingers, being deleted: that is gone already.
#[tokio::test]
async fn a_session_being_deleted_counts_as_deleted() {
    let env = Env::new().await;
    let finalizer = json!({"metadata": {"finalizers": [stream::FINALIZER]}});
    within(
        "finalizer",
        env.sessions()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&finalizer)),
    )
    .await
    .expect("finalizer added");
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    within("delete", env.sessions().delete(NAME, &DeleteParams::default()))
        .await
        .expect("deleted");
    let exit = within("agent exits", agent.wait()).await.expect("clean exit");
    assert_eq!(exit, Exit::SessionDeleted);
    assert!(env.wolf.sessions().is_empty(), "Wolf's session stopped");
    let s = env.sessions().get(NAME).await.expect("still there");
    assert!(s.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn an_unreachable_wolf_is_reported_on_the_session() {
    let env = Env::new().await;
    env.wolf.stop().await; // the socket file stays; connections are refused
    let agent = env.start(env.config()).await;
    let s = env.phase(SessionPhase::Ended).await;
    let c = condition(&s);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "StreamStartFailed")
    );
    assert!(
        c.message.contains("did not accept a connection within"),
        "{}",
        c.message
    );
    assert!(
        http_get(agent.health_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 503")
    );
    let st = s.status.unwrap();
    assert_eq!((st.stream_url, st.wolf_session_id), (None, None));
    agent.abort();
}

#[tokio::test]
async fn wolf_refusing_the_stream_is_reported_on_the_session() {
    let env = Env::new().await;
    // Wolf answers every add by closing the connection (it crashed on it): retried until the
    // bound, then reported.
    env.wolf.set_failure_on(
        "/api/v1/sessions/add",
        direwolf_wolf_client::fake::Failure::CloseWithoutResponse,
    );
    let agent = env.start(env.config()).await;
    let s = env.phase(SessionPhase::Ended).await;
    let c = condition(&s);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "StreamStartFailed")
    );
    assert!(
        c.message.contains("did not register the stream within"),
        "{}",
        c.message
    );
    agent.abort();
}

#[tokio::test]
async fn a_wolf_without_apps_is_not_crashed() {
    let env = Env::new().await;
    let wolf = env.wolf.client().unwrap();
    wolf.delete_app(&direwolf_wolf_client::ids::AppId::from(1u32))
        .await
        .expect("app deleted");
    let agent = env.start(env.config()).await;
    let s = env.phase(SessionPhase::Ended).await;
    let c = condition(&s);
    assert_eq!(c.reason, "StreamStartFailed");
    assert!(c.message.contains("Wolf has no apps"), "{}", c.message);
    assert!(!env.wolf.would_have_crashed(), "{:?}", env.wolf.crashes());
    agent.abort();
}

#[tokio::test]
async fn a_file_where_the_socket_belongs_is_fatal() {
    let env = Env::new().await;
    let path = env.dir.path().join("not-a-socket");
    std::fs::write(&path, b"x").unwrap();
    let mut config = env.config();
    config.wolf_socket = path.clone();
    let err = within("agent fails", env.start(config).await.wait())
        .await
        .expect_err("fatal");
    assert!(
        matches!(&err, AgentError::NotASocket { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is not a unix socket (file type: regular file)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_secret_is_waited_for() {
    let env = Env::with(false).await;
    let agent = env.start(env.config()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = env.sessions().get(NAME).await.unwrap();
    assert_eq!(
        s.status.unwrap().phase,
        Some(SessionPhase::Initializing),
        "nothing registered yet"
    );
    assert!(env.wolf.sessions().is_empty());
    env.create_secret().await;
    env.phase(SessionPhase::WaitForPing).await;
    env.wolf_id();
    agent.abort();
}

#[tokio::test]
async fn status_writes_are_retried_after_409_and_500() {
    let env = Env::new().await;
    let path =
        format!("/apis/direwolf.games-on-whales.github.io/v1alpha1/namespaces/{NS}/sessions/{NAME}/status");
    for code in [409, 500] {
        env.emulator.inject(
            FaultRule::status(code)
                .with_verb("patch")
                .with_path_prefix(&path)
                .times(2),
        );
    }
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    let injected: Vec<u16> = env
        .emulator
        .requests()
        .iter()
        .filter(|r| r.injected && r.path == path)
        .map(|r| r.status)
        .collect();
    assert_eq!(injected.len(), 4, "every injected fault was met: {injected:?}");
    agent.abort();
}

/// Device events of this session reach the udev directory and the sink; another session's do
/// not.
#[tokio::test]
async fn controllers_are_replayed_for_this_session_only() {
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .unwrap();
    let mut other = udev_monitor::joypad(SessionId::new(42));
    other.udev_hw_db_entries[0].0 = "c13:99".into();
    env.wolf.plug_device(&other);
    let mine = udev_monitor::joypad(env.wolf_id());
    env.wolf.plug_device(&mine);
    let entry = env.dir.path().join("udev/data/c13:65");
    within("entry written", async {
        while !entry.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        !env.dir.path().join("udev/data/c13:99").exists(),
        "not our session"
    );
    assert!(env.dir.path().join("udev/control").exists());
    env.wolf.unplug_device(&mine);
    within("entry removed", async {
        while entry.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let sent = env.sink.0.lock().clone();
    let actions: Vec<_> = sent.iter().map(|e| e.get("ACTION").unwrap().to_owned()).collect();
    assert_eq!(actions, ["add", "remove"]);
    agent.abort();
}

/// A `Write` shared with the test, collecting everything logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every log line of a whole agent life, at TRACE and with the libraries' logs, is free of
/// the AES key. (The current-thread runtime runs every task on this thread, so the
/// thread's subscriber sees them all.)
#[tokio::test]
async fn logs_never_contain_the_aes_key() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let env = Env::new().await;
    let agent = env.start(env.config()).await;
    env.phase(SessionPhase::WaitForPing).await;
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .unwrap();
    env.wolf.plug_device(&udev_monitor::joypad(env.wolf_id()));
    env.wolf.inject_event(
        names::RTP_AUDIO_PING,
        &json!({"client_ip": "192.0.2.10", "client_port": 5000}),
    );
    env.phase(SessionPhase::Streaming).await;
    env.sessions()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    within("agent exits", agent.wait()).await.unwrap();
    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    assert!(
        text.contains("registered the stream with Wolf"),
        "logs were captured"
    );
    assert!(
        text.contains("relayed a virtual device"),
        "device logs were captured"
    );
    assert!(
        !text.to_ascii_uppercase().contains(AES_KEY),
        "the AES key was logged"
    );
    assert!(!text.contains("1311662065"), "the AES IV was logged");
}

/// NEEDS ROOT: a real libudev monitor (python3 over libudev.so.1) in a fresh network namespace,
/// with the agent's udev directory mounted on its `/run/udev`, sees the joypad Wolf plugs
/// appear (add) and go (remove) with Wolf's properties, sent by the agent's netlink socket
/// opened in the same namespace.
#[tokio::test]
async fn a_libudev_monitor_sees_the_controllers_needs_root() {
    let env = Env::new().await;
    let netns = udev_monitor::NetNs::create().expect("network namespace (needs root and `ip`)");
    let udev_dir = env.dir.path().join("udev");
    std::fs::create_dir_all(&udev_dir).unwrap();
    std::fs::write(udev_dir.join("control"), b"").unwrap();
    let mut monitor = within("monitor starts", udev_monitor::Monitor::start(&netns, &udev_dir))
        .await
        .expect("libudev monitor (needs python3 and libudev.so.1)");
    let sink = netns.open_sink().expect("netlink socket in the namespace");
    let agent = within(
        "agent starts",
        Agent::new(env.emulator.client(), env.config())
            .with_uevent_sink(Arc::new(sink))
            .start(),
    )
    .await
    .expect("agent starts");
    env.phase(SessionPhase::WaitForPing).await;
    within("agent subscribes", env.wolf.wait_for_subscribers(1, WAIT))
        .await
        .unwrap();
    let joypad = udev_monitor::joypad(env.wolf_id());
    env.wolf.plug_device(&joypad);
    let added = within("monitor sees add", monitor.next())
        .await
        .expect("an event");
    let expected: HashMap<String, String> = joypad.udev_events[0].clone();
    assert_eq!(added.action, "add");
    // libudev keeps tags in a set: their order in TAGS and CURRENT_TAGS is its own.
    let tags = |v: &str| {
        let mut t: Vec<String> = v
            .split(':')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        t.sort_unstable();
        t
    };
    for (k, v) in &expected {
        let got = added
            .properties
            .get(k)
            .unwrap_or_else(|| panic!("property {k} missing"));
        if k.ends_with("TAGS") {
            assert_eq!(tags(got), tags(v), "property {k}");
        } else {
            assert_eq!(got, v, "property {k}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(udev_dir.join("data/c13:65")).unwrap(),
        joypad.udev_hw_db_entries[0].1.join("\n")
    );
    env.wolf.unplug_device(&joypad);
    let removed = within("monitor sees remove", monitor.next())
        .await
        .expect("an event");
    assert_eq!(removed.action, "remove");
    assert_eq!(removed.properties.get("DEVPATH"), expected.get("DEVPATH"));
    assert!(!udev_dir.join("data/c13:65").exists());
    agent.abort();
    monitor.stop().await;
}

/// Warm mode: Ready (Wolf's socket answers) and registering nothing until the pod is labelled
/// with a Session, then streaming that Session as any agent does.
#[tokio::test]
async fn a_warm_agent_waits_for_its_claim_then_streams_the_session() {
    let env = Env::new().await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.emulator.client(), NS);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "test-pattern-warm-ab1c2"}, "spec": {"containers": [{"name": "wolf"}]}
    }))
    .expect("a pod");
    within("create the pod", pods.create(&PostParams::default(), &pod))
        .await
        .expect("pod created");
    let base = env.config();
    let mut config = AgentConfig::warm(
        "test-pattern-warm-ab1c2",
        NS,
        base.pod_ip,
        base.wolf_socket.clone(),
    );
    config.health_addr = base.health_addr;
    config.socket_poll = base.socket_poll;
    config.udev_dir = base.udev_dir.clone();
    config.retry_initial = base.retry_initial;
    config.retry_max = base.retry_max;
    let agent = env.start(config).await;
    within("ready before the claim", async {
        while !http_get(agent.health_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.wolf.sessions().is_empty(),
        "nothing registered before the claim"
    );
    let initializing = env.sessions().get(NAME).await.expect("session");
    assert_eq!(
        initializing.status.and_then(|s| s.phase),
        Some(SessionPhase::Initializing)
    );

    let claim = json!({"metadata": {"labels": {stream::SESSION_LABEL: NAME}}});
    within(
        "the operator claims the pod",
        pods.patch(
            "test-pattern-warm-ab1c2",
            &PatchParams::default(),
            &Patch::Merge(&claim),
        ),
    )
    .await
    .expect("claimed");
    let s = env.phase(SessionPhase::WaitForPing).await;
    let id = env.wolf_id();
    assert_eq!(s.status.and_then(|st| st.wolf_session_id), Some(id.to_string()));
    agent.abort();
}
