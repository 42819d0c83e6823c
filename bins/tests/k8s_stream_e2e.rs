//! Kubernetes mode end to end: an unmodified Moonlight client (moonlight-python 0.3.0, streaming
//! through moonlight-common-c) pairs with `direwolf proxy`, launches, and streams from a Wolf pod
//! that `direwolf operator` created, on the real control plane (`scripts/kube-testenv`).
//!
//! The pods run on the kubelet stand-in (`direwolf-kubelet`, node `direwolf-e2e`, its default
//! bridge `10.77.0.1/16`, so that the agents' in-cluster TLS by IP verifies): the Wolf image is
//! the `fake_wolf` example with its stream side (its `--records` file tells what reached it),
//! the direwolf image is this build of `direwolf` (the container runs `direwolf agent`). The
//! proxy and the operators run as their ServiceAccounts with the Roles of `deploy/rbac.yaml`,
//! and the agents as the account the operator makes for each Session.
//!
//! Tests: two users stream at once and quitting frees everything; a killed Wolf (with its
//! leading operator killed too) ends its Session; a proxy restarted mid-stream keeps the stream;
//! a stopped stream resumes in its pod with new keys; flows split across two proxy replicas
//! stream; the proxy and operator Deployments `direwolf install` prints run in pods on the
//! stand-in, and a client streams through them; a launch of an App with a warm pool streams
//! from a claimed warm pod, which goes with the Session while the pool refills.
//!
//! Needs root, `ip`, `unshare`, `nsenter` and python3 with moonlight_python 0.3.0.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use direwolf_k8s::crd::{self, Session, SessionPhase};
use direwolf_k8s::operator::config::{
    DEFAULT_AGENT_IMAGE, DEFAULT_INIT_IMAGE, DEFAULT_PULSEAUDIO_IMAGE, DEFAULT_WOLF_IMAGE,
};
use direwolf_k8s::stream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::Value;
use support::testenv::{self, ControlPlane};
use support::{DRIVER_TIMEOUT, Direwolf, Proc, driver_args, wait_until};

const PIN: &str = "6142";
const START: Duration = Duration::from_secs(120);
/// A pod starting, a Session ending, a pod going: each within this.
const STEP: Duration = Duration::from_secs(60);
const NODE: &str = "direwolf-e2e";
const NODE_SELECTOR: &str = "direwolf.games-on-whales.github.io/stream-node=e2e";
/// The lease of the operators: failover within 4 s.
const LEASE_SECS: &str = "4";

/// The kubelet stand-in of this test binary, shared by its tests (each has its namespace).
struct Kubelet {
    _child: std::sync::Mutex<std::process::Child>,
    /// Held while this process's stand-in owns the default bridge (test runners that run each
    /// test in a process of its own take turns).
    _bridge_lock: std::fs::File,
    /// Where the fake Wolfs write their records, `<pod IP>.json`.
    records: PathBuf,
    _state: tempfile::TempDir,
}

static KUBELET: OnceLock<Kubelet> = OnceLock::new();

fn image_map(fake_wolf: &Path, records: &Path) -> String {
    format!(
        "\"{DEFAULT_WOLF_IMAGE}\":\n  argv: [\"{}\", \"--socket\", \"$(WOLF_SOCKET_PATH)\", \"--stream-ip\", \"$(POD_IP)\", \
         \"--app\", \"1=Desktop\", \"--records\", \"{}/$(POD_IP).json\", \"--video-rtp-pings\", \"4\"]\n\
         \"{DEFAULT_AGENT_IMAGE}\":\n  argv: [\"{}\"]\n  env: {{RUST_LOG: info}}\n\
         \"{DEFAULT_PULSEAUDIO_IMAGE}\":\n  argv: [sleep, infinity]\n\
         \"{DEFAULT_INIT_IMAGE}\":\n  argv: [\"true\"]\n",
        fake_wolf.display(),
        records.display(),
        support::DIREWOLF,
    )
}

/// Makes the default bridge (`dwk0`) ours: a lock across processes, then the previous owner's
/// stand-in given 20 s to clean up, then whatever it left (the bridge, its pods' network
/// namespaces) removed.
fn take_the_default_bridge() -> std::fs::File {
    let lock = std::fs::File::create(std::env::temp_dir().join("direwolf-kubelet-dwk0.lock"))
        .expect("the bridge lock file");
    lock.lock().expect("the bridge lock");
    let bridge = Path::new("/sys/class/net/dwk0");
    let free = support::poll(Duration::from_secs(20), Duration::from_millis(200), || {
        (!bridge.exists()).then_some(())
    });
    if free.is_none() {
        eprintln!("removing the bridge dwk0 and the network namespaces a stand-in left");
        for entry in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("dwk0-") {
                support::ip(&["netns", "del", &name]);
            }
        }
        support::ip(&["link", "del", "dwk0"]);
    }
    lock
}

fn kubelet(cp: &ControlPlane) -> &'static Kubelet {
    KUBELET.get_or_init(|| {
        let uid = support::run(Command::new("id").arg("-u"), "id -u");
        assert_eq!(uid.trim(), "0", "the kubelet stand-in needs root");
        let kubelet = support::built_binary(&["-p", "direwolf-kubelet"], "direwolf-kubelet");
        let fake_wolf = support::built_binary(
            &[
                "-p",
                "direwolf-wolf-client",
                "--example",
                "fake_wolf",
                "--features",
                "fake",
            ],
            "examples/fake_wolf",
        );
        let bridge_lock = take_the_default_bridge();
        let state = tempfile::tempdir().expect("a state directory");
        let records = state.path().join("records");
        std::fs::create_dir(&records).expect("records directory");
        let images = state.path().join("images.yaml");
        std::fs::write(&images, image_map(&fake_wolf, &records)).expect("image map");
        // Its log goes to a file, not to this process: the stand-in outlives this process by
        // the time it takes to clean up after it (`--exit-with-pid`).
        let log = std::fs::File::create(state.path().join("kubelet.log")).expect("the stand-in's log");
        let child = Command::new(kubelet)
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args(["--node-name", NODE, "--node-labels", NODE_SELECTOR])
            .args(["--capacity", "cpu=16,memory=32Gi,pods=60,gpu.intel.com/i915=8"])
            .arg("--state-dir")
            .arg(state.path().join("kubelet"))
            .arg("--images")
            .arg(&images)
            .args(["--exit-with-pid", &std::process::id().to_string()])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("direwolf-kubelet starts");
        eprintln!(
            "kubelet stand-in log: {}",
            state.path().join("kubelet.log").display()
        );
        let ready = cp.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE}"),
            "--timeout=60s",
        ]);
        eprintln!("{}", ready.trim());
        Kubelet {
            _child: std::sync::Mutex::new(child),
            _bridge_lock: bridge_lock,
            records,
            _state: state,
        }
    })
}

/// A namespace with the CRDs, `deploy/rbac.yaml`, the example User and test-pattern App, the
/// operators and one proxy.
struct Pack {
    cp: &'static ControlPlane,
    kubelet: &'static Kubelet,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    ns: String,
    dir: tempfile::TempDir,
    operators: Vec<Proc>,
    proxy: Direwolf,
}

/// `Pack::start`'s port range that means every Session on the shared ports instead.
const SHARED: &str = "shared";

impl Pack {
    /// `None` only where the real control plane tests are switched off locally. `ports` is the
    /// operators' port range, or [`SHARED`].
    fn start(operators: &[&str], ports: &str) -> Option<Pack> {
        let cp = testenv::control_plane()?;
        support::require_moonlight_python();
        let kubelet = kubelet(cp);
        let (runtime, client, ns) = namespace_with_crds(cp, "stream");
        for file in [
            "deploy/rbac.yaml",
            "examples/user.yaml",
            "examples/app-test-pattern.yaml",
        ] {
            cp.kubectl(&["apply", "-n", &ns, "-f", file]);
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        for account in ["direwolf-operator", "direwolf-proxy"] {
            cp.service_account_kubeconfig(&ns, account, &dir.path().join(account));
        }
        let mut pack = Pack {
            cp,
            kubelet,
            runtime,
            client,
            operators: Vec::new(),
            proxy: if ports == SHARED {
                start_proxy_with(
                    &ns,
                    &dir.path().join("direwolf-proxy"),
                    "127.0.0.1",
                    &["--shared-ports"],
                )
            } else {
                start_proxy(&ns, &dir.path().join("direwolf-proxy"))
            },
            ns,
            dir,
        };
        for identity in operators {
            pack.start_operator(identity, ports);
        }
        Some(pack)
    }

    fn start_operator(&mut self, identity: &str, ports: &str) {
        let port_args: &[&str] = if ports == SHARED {
            &["--shared-ports"]
        } else {
            &["--port-range", ports]
        };
        let proc = Proc::spawn(
            &format!("operator {identity}"),
            support::direwolf()
                .args(["operator", "--namespace", &self.ns, "--holder-identity", identity])
                .args(port_args)
                .args(["--stream-node-selector", NODE_SELECTOR])
                .args(["--lease-duration", LEASE_SECS, "--start-deadline", "40"])
                .args(["--health-bind", "127.0.0.1:0"])
                .env("KUBECONFIG", self.dir.path().join("direwolf-operator"))
                .env_remove("KUBERNETES_SERVICE_HOST")
                .env("RUST_LOG", "info"),
        );
        proc.wait_for("direwolf operator started", START);
        self.operators.push(proc);
    }

    fn block<F: std::future::Future>(&self, what: &str, f: F) -> F::Output {
        self.runtime.block_on(testenv::within(what, f))
    }

    fn sessions(&self) -> Vec<Session> {
        let api: Api<Session> = Api::namespaced(self.client.clone(), &self.ns);
        self.block("list Sessions", api.list(&ListParams::default()))
            .expect("list Sessions")
            .items
    }

    fn pods(&self) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        self.block("list pods", api.list(&ListParams::default()))
            .expect("list pods")
            .items
    }

    fn pod_of(&self, session: &str) -> Option<Pod> {
        self.pods()
            .into_iter()
            .find(|p| p.labels().get(stream::SESSION_LABEL).map(String::as_str) == Some(session))
    }

    /// The Session of `name` once its phase is `phase`.
    fn wait_phase(&self, name: &str, phase: SessionPhase) -> Session {
        let mut last = None;
        let found = support::poll(STEP, Duration::from_millis(250), || {
            let s = self.sessions().into_iter().find(|s| s.name_any() == name)?;
            let now = s.status.as_ref().and_then(|st| st.phase);
            last = Some(format!("{:?}", s.status));
            (now == Some(phase)).then_some(s)
        });
        found.unwrap_or_else(|| {
            panic!(
                "Session {name} never reached {phase:?}; last status {last:?}\n{}",
                self.logs()
            )
        })
    }

    fn wait_gone(&self, what: &str, mut gone: impl FnMut(&Pack) -> bool) {
        let started = Instant::now();
        if support::poll(STEP, Duration::from_millis(250), || gone(self).then_some(())).is_none() {
            panic!("{what}: not within {STEP:?}\n{}", self.logs());
        }
        eprintln!("{what} after {:?}", started.elapsed());
    }

    fn events_of(&self, session: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        self.block("list Events", api.list(&ListParams::default()))
            .expect("list Events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(session))
            .collect()
    }

    fn leader(&self) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        let lease = self
            .block("get the Lease", api.get_opt("direwolf-controller"))
            .ok()??;
        lease.spec?.holder_identity
    }

    /// What a fake Wolf in pod `ip` recorded.
    fn records(&self, ip: &str) -> Value {
        let path = self.kubelet.records.join(format!("{ip}.json"));
        support::poll(Duration::from_secs(10), Duration::from_millis(100), || {
            serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()
        })
        .unwrap_or_else(|| panic!("no records at {}\n{}", path.display(), self.logs()))
    }

    fn logs(&self) -> String {
        let mut out = format!("proxy:\n{}\n", self.proxy.proc.tail());
        for op in &self.operators {
            out += &format!("{}:\n{}\n", op.name(), op.tail());
        }
        out + &format!(
            "pods: {:?}",
            self.pods()
                .iter()
                .map(|p| (p.name_any(), p.status.clone()))
                .collect::<Vec<_>>()
        )
    }

    fn driver(&self, client: &Path, args: &[&str]) -> Proc {
        Proc::spawn(
            &format!("pack_driver {}", args[0]),
            Command::new("python3").args(driver_args(
                "pack_driver.py",
                "127.0.0.1",
                self.proxy.http_port,
                client,
                args,
            )),
        )
    }

    /// Pairs a new client identity in `name` for `user` (who types the PIN on the PIN page).
    fn client(&self, name: &str, user: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        let pairing = support::spawn_driver(self.proxy.http_port, &dir, &["pair", "--pin", PIN]);
        let line = self.proxy.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
        let (_, secret) = support::pin_link(&line);
        let args = ["post-pin", "--pin", PIN, "--secret", secret, "--user", user];
        let posted = self.driver(&dir, &args).report(DRIVER_TIMEOUT);
        assert_eq!(posted["status"], 200, "the PIN page accepts the PIN: {posted}");
        let paired = pairing.json_result(DRIVER_TIMEOUT);
        assert_eq!(paired["ok"], true, "pairing: {paired}");
        dir
    }

    /// A stream of the test pattern that lasts until `stop` exists; once it reported `started`.
    fn stream(&self, client: &Path, stop: &Path) -> Proc {
        self.stream_with(client, stop, &[])
    }

    /// [`Pack::stream`] with more driver arguments.
    fn stream_with(&self, client: &Path, stop: &Path, more: &[&str]) -> Proc {
        let until = stop.to_str().expect("utf-8");
        let mut args = vec![
            "stream",
            "--app",
            "Test pattern",
            "--until",
            until,
            "--max-secs",
            "90",
        ];
        args.extend_from_slice(more);
        let proc = self.driver(client, &args);
        let started = proc.report(DRIVER_TIMEOUT);
        assert_eq!(
            started["event"],
            "started",
            "every connection stage must complete: {started}\n{}",
            self.logs()
        );
        eprintln!("stream started in {} s", started["secs"]);
        proc
    }

    /// alice pairs and streams; once her Session is Streaming and Wolf sees her pings.
    fn alice_streams(&self) -> Streaming {
        let client = self.client("alice-laptop", "alice");
        let stop = self.dir.path().join("stop");
        let stream = self.stream(&client, &stop);
        let name = self.new_session(&[]).name_any();
        self.wait_phase(&name, SessionPhase::Streaming);
        let ip = pod_ip(&self.pod_of(&name).expect("the pod"));
        assert_stream_reached_wolf(self, &ip);
        Streaming {
            stop,
            stream,
            name,
            ip,
        }
    }

    /// The one Session that is not in `others`.
    fn new_session(&self, others: &[String]) -> Session {
        let mut found = self.sessions();
        found.retain(|s| !others.contains(&s.name_any()));
        assert_eq!(found.len(), 1, "one new Session: {found:?}");
        found.remove(0)
    }
}

/// A stream under way: its stop file, the driver, the Session and the pod IP.
struct Streaming {
    stop: PathBuf,
    stream: Proc,
    name: String,
    ip: String,
}

/// A runtime for the test's API calls, the CRDs installed, and a namespace of the test's own
/// (named after `prefix`) with its client.
fn namespace_with_crds(cp: &ControlPlane, prefix: &str) -> (tokio::runtime::Runtime, kube::Client, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let crds = crd::crds_yaml().expect("CRDs render");
    let (client, ns) = runtime.block_on(async {
        cp.install_crds(&crds).await;
        cp.namespace(prefix).await
    });
    (runtime, client, ns)
}

/// `/metrics` of a component, from the health port its log names.
fn scrape(proc: &Proc) -> String {
    let line = proc
        .line_with("health port")
        .expect("the health port is logged at start-up");
    let addr = support::field(&line, "addr=").parse().expect("health address");
    let (status, body) = support::http_exchange(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// What the proxy's and the operator's metrics say once one client launched and streams.
fn metrics_of_one_stream(pack: &Pack) {
    let proxy = scrape(&pack.proxy.proc);
    let value = |text: &str, series: &str| support::metric(text, series);
    assert_eq!(
        value(
            &proxy,
            r#"direwolf_launch_duration_seconds_count{op="launch",result="ok"}"#
        ),
        Some(1.0),
        "{proxy}"
    );
    assert_eq!(
        value(&proxy, r#"direwolf_pairing_attempts_total{outcome="paired"}"#),
        Some(1.0),
        "{proxy}"
    );
    let video = r#"direwolf_relay_packets_total{stream="video",direction="to_client"}"#;
    assert!(value(&proxy, video).is_some_and(|n| n > 0.0), "{proxy}");
    support::wait_until(
        "the proxy counts one Streaming Session",
        Duration::from_secs(10),
        || {
            value(
                &scrape(&pack.proxy.proc),
                r#"direwolf_sessions{phase="Streaming"}"#,
            ) == Some(1.0)
        },
    );
    let operator = scrape(&pack.operators[0]);
    assert_eq!(
        value(&operator, "direwolf_operator_stream_pods_created_total"),
        Some(1.0),
        "{operator}"
    );
    assert!(
        value(&operator, r#"direwolf_operator_reconciles_total{result="ok"}"#).is_some_and(|n| n > 0.0),
        "{operator}"
    );
    assert!(
        value(
            &operator,
            r#"direwolf_operator_reconcile_duration_seconds_count{result="ok"}"#
        )
        .is_some_and(|n| n > 0.0),
        "{operator}"
    );
}

fn start_proxy(ns: &str, kubeconfig: &Path) -> Direwolf {
    start_proxy_relaying_on(ns, kubeconfig, "127.0.0.1")
}

/// A proxy replica whose relays bind `relay_ip`.
fn start_proxy_relaying_on(ns: &str, kubeconfig: &Path, relay_ip: &str) -> Direwolf {
    start_proxy_with(ns, kubeconfig, relay_ip, &[])
}

/// A proxy replica whose relays bind `relay_ip`, with more flags.
fn start_proxy_with(ns: &str, kubeconfig: &Path, relay_ip: &str, more: &[&str]) -> Direwolf {
    let proc = Proc::spawn(
        &format!("proxy {relay_ip}"),
        support::direwolf()
            .args(["proxy", "--namespace", ns])
            .args(more)
            .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
            .args(["--health-bind", "127.0.0.1:0"])
            .args(["--external-address", "127.0.0.1", "--relay-ip", relay_ip])
            .args(["--default-user", "alice", "--pin-timeout", "60"])
            // Who enters the PIN is not what these tests are about.
            .arg("--allow-unauthenticated-pin")
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info"),
    );
    Direwolf::started(proc, "direwolf proxy started", START)
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

/// The RTSP methods on record, or none while the session is not.
fn rtsp_methods_so_far(session: &Value) -> Vec<String> {
    if session["rtsp_requests"].is_array() {
        rtsp_methods(session)
    } else {
        Vec::new()
    }
}

fn rtsp_methods(session: &Value) -> Vec<String> {
    session["rtsp_requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r.as_str()?.split(' ').next().map(str::to_owned))
        .collect()
}

/// What the fake Wolf of a streaming pod must have seen: the whole RTSP handshake, the ENet
/// connect and pings, all through the proxy's relay.
fn assert_stream_reached_wolf(pack: &Pack, ip: &str) {
    // The fake writes its records every 200 ms: pings can be on record before the PLAY is.
    wait_until(
        "the client's PLAY and pings reach the Wolf pod",
        Duration::from_secs(10),
        || {
            let session = &pack.records(ip)["sessions"][0];
            session["audio_pings"].as_u64().unwrap_or(0) > 0
                && rtsp_methods_so_far(session).iter().any(|m| m == "PLAY")
        },
    );
    let record = pack.records(ip)["sessions"][0].clone();
    assert_eq!(
        rtsp_methods(&record),
        [
            "OPTIONS", "DESCRIBE", "SETUP", "SETUP", "SETUP", "ANNOUNCE", "PLAY"
        ],
        "the RTSP handshake must reach Wolf through the relay: {record}"
    );
    assert!(
        record["enet_connects"].as_array().is_some_and(|c| c.len() == 1),
        "the control stream (ENet) must connect: {record}"
    );
}

#[test]
fn two_clients_stream_from_wolf_pods_through_the_proxy_and_quitting_frees_everything() {
    let Some(pack) = Pack::start(&["op-a"], "31000-31099") else {
        return;
    };
    let alice = pack.client("alice-laptop", "alice");
    let stop1 = pack.dir.path().join("stop1");
    let launched = Instant::now();
    let s1 = pack.stream(&alice, &stop1);
    let first = pack.new_session(&[]);
    let name1 = first.name_any();
    let session1 = pack.wait_phase(&name1, SessionPhase::Streaming);
    eprintln!(
        "Session {name1} Streaming {:?} after the launch",
        launched.elapsed()
    );
    let status = session1.status.as_ref().expect("status");
    assert!(
        status.stream_url.is_some(),
        "the agent published the stream URL: {status:?}"
    );
    let ports1 = status.ports.expect("ports");
    let pod1 = pack.pod_of(&name1).expect("the Session's pod");
    assert_eq!(
        pod1.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );
    let ip1 = pod_ip(&pod1);
    assert_stream_reached_wolf(&pack, &ip1);
    metrics_of_one_stream(&pack);

    // Another user streams at the same time: their own pod and ports. (A user's new launch
    // replaces their running Session, as on a single Moonlight host.)
    let bob = pack.client("bob-phone", "bob");
    let stop2 = pack.dir.path().join("stop2");
    let s2 = pack.stream(&bob, &stop2);
    let name2 = pack.new_session(std::slice::from_ref(&name1)).name_any();
    let session2 = pack.wait_phase(&name2, SessionPhase::Streaming);
    let ports2 = session2.status.as_ref().and_then(|s| s.ports).expect("ports");
    assert_ne!(ports1.rtsp, ports2.rtsp, "distinct port sets");
    let ip2 = pod_ip(&pack.pod_of(&name2).expect("the second pod"));
    assert_ne!(ip1, ip2, "a pod per Session");
    assert_stream_reached_wolf(&pack, &ip2);
    assert_eq!(pack.records(&ip1)["sessions"].as_array().map(Vec::len), Some(1));

    for (stop, proc) in [(&stop1, s1), (&stop2, s2)] {
        std::fs::write(stop, b"").expect("stop file");
        let done = proc.report(DRIVER_TIMEOUT);
        eprintln!("stream done: {done}");
        assert_eq!(done["terminated"], false, "the stream ran until stopped: {done}");
        assert!(
            done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
            "RTP from the Wolf pod reached the client: {done}"
        );
    }

    // Quitting ends a Session: the Session, its pod, its agent account and its relay go.
    for client in [&alice, &bob] {
        let quit = pack.driver(client, &["quit"]).report(DRIVER_TIMEOUT);
        assert_eq!(quit["ok"], true, "quit: {quit}");
    }
    pack.wait_gone("the Sessions are deleted", |p| p.sessions().is_empty());
    pack.wait_gone("the stream pods are deleted", |p| p.pods().is_empty());
    let accounts = pack.cp.kubectl(&[
        "get",
        "serviceaccounts,roles,rolebindings,secrets",
        "-n",
        &pack.ns,
        "-o",
        "name",
    ]);
    for name in [&name1, &name2] {
        assert!(
            !accounts.contains(name.as_str()),
            "{name}'s account, Role or keys remain: {accounts}"
        );
    }
    for port in [ports1.rtsp, ports2.rtsp] {
        let probe = pack
            .driver(&alice, &["probe", "--port", &port.to_string()])
            .report(DRIVER_TIMEOUT);
        assert_eq!(
            probe["refused"], true,
            "the relay's RTSP port {port} is closed: {probe}"
        );
    }
}

/// The Ready, unclaimed warm pods of `test-pattern-warm`.
fn ready_warm_pods(pack: &Pack) -> Vec<String> {
    pack.pods()
        .into_iter()
        .filter(|p| {
            p.labels().get(crd::labels::WARM_POOL).map(String::as_str) == Some("test-pattern-warm")
                && p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| p.name_any())
        .collect()
}

#[test]
fn a_launch_streams_from_a_claimed_warm_pod_and_the_pool_refills() {
    let Some(pack) = Pack::start(&["op-a"], "31500-31599") else {
        return;
    };
    // The example's pool, made for the client's 1280x720 at 60.
    let app = pack.dir.path().join("app-warm.yaml");
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/app-warm-pool.yaml"))
            .expect("the example");
    let example = example
        .replace("width: 1920", "width: 1280")
        .replace("height: 1080", "height: 720");
    std::fs::write(&app, example).expect("write the App");
    pack.cp
        .kubectl(&["apply", "-n", &pack.ns, "-f", app.to_str().expect("utf-8")]);
    let pool = support::poll(STEP, Duration::from_millis(250), || {
        let ready = ready_warm_pods(&pack);
        (ready.len() == 2).then_some(ready)
    })
    .unwrap_or_else(|| panic!("the warm pool never filled\n{}", pack.logs()));

    let bob = pack.client("bob-phone", "bob");
    let stop = pack.dir.path().join("stop");
    let launched = Instant::now();
    let streaming = pack.stream_with(&bob, &stop, &["--app", "Test pattern (warm)"]);
    let name = pack.new_session(&[]).name_any();
    pack.wait_phase(&name, SessionPhase::Streaming);
    eprintln!(
        "Session {name} Streaming {:?} after the launch",
        launched.elapsed()
    );
    let pod = pack.pod_of(&name).expect("the Session's pod");
    assert!(
        pool.contains(&pod.name_any()),
        "{} is a pod of the pool {pool:?}",
        pod.name_any()
    );
    assert!(
        pack.events_of(&name)
            .iter()
            .any(|e| e.reason.as_deref() == Some("WarmPodClaimed")),
        "a WarmPodClaimed Event on the Session"
    );
    let ip = pod_ip(&pod);
    assert_stream_reached_wolf(&pack, &ip);
    std::fs::write(&stop, b"").expect("stop file");
    let done = streaming.report(DRIVER_TIMEOUT);
    assert!(
        done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
        "RTP from the warm pod reached the client: {done}"
    );

    // The pool refilled meanwhile; quitting deletes the claimed pod, never reused.
    wait_until("the pool refilled", STEP, || {
        let ready = ready_warm_pods(&pack);
        ready.len() == 2 && !ready.contains(&pod.name_any())
    });
    let quit = pack.driver(&bob, &["quit"]).report(DRIVER_TIMEOUT);
    assert_eq!(quit["ok"], true, "quit: {quit}");
    pack.wait_gone("the claimed warm pod is deleted", |p| {
        p.pods().iter().all(|q| q.name_any() != pod.name_any())
    });
}

#[test]
fn two_clients_stream_from_wolf_pods_through_one_shared_port_set() {
    let Some(pack) = Pack::start(&["op-a"], SHARED) else {
        return;
    };
    pack.proxy.proc.wait_for("shared stream ports listening", START);
    let alice = pack.client("alice-laptop", "alice");
    let bob = pack.client("bob-phone", "bob");
    let (stop1, stop2) = (pack.dir.path().join("stop1"), pack.dir.path().join("stop2"));
    // alice echoes the pod IP (20 Mbit/s); bob sends 0.0.0.0 and is told apart by his address
    // only once alice's handshake is over (both come from 127.0.0.1).
    let s1 = pack.stream_with(&alice, &stop1, &["--bitrate", "20000"]);
    let name1 = pack.new_session(&[]).name_any();
    let session1 = pack.wait_phase(&name1, SessionPhase::Streaming);
    let s2 = pack.stream(&bob, &stop2);
    let name2 = pack.new_session(std::slice::from_ref(&name1)).name_any();
    let session2 = pack.wait_phase(&name2, SessionPhase::Streaming);
    let shared = |s: &Session| {
        let ports = s.status.as_ref().and_then(|st| st.ports).expect("ports");
        (
            ports.rtsp.get(),
            ports.control.get(),
            ports.video_rtp.get(),
            ports.audio_rtp.get(),
        )
    };
    assert_eq!(shared(&session1), (48010, 47999, 48100, 48200));
    assert_eq!(shared(&session2), shared(&session1), "one port set for both");
    let (ip1, ip2) = (
        pod_ip(&pack.pod_of(&name1).expect("alice's pod")),
        pod_ip(&pack.pod_of(&name2).expect("bob's pod")),
    );
    assert_stream_reached_wolf(&pack, &ip1);
    assert_stream_reached_wolf(&pack, &ip2);
    for (stop, proc) in [(&stop1, s1), (&stop2, s2)] {
        std::fs::write(stop, b"").expect("stop file");
        let done = proc.report(DRIVER_TIMEOUT);
        assert_eq!(done["terminated"], false, "the stream ran until stopped: {done}");
        assert!(
            done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
            "RTP from the Wolf pod reached the client: {done}"
        );
    }
    let text = scrape(&pack.proxy.proc);
    assert_eq!(
        support::metric(&text, r#"direwolf_relay_rtsp_total{event="relayed"}"#),
        Some(14.0),
        "both handshakes through the shared RTSP port: {text}"
    );
}

#[test]
fn a_killed_wolf_ends_its_session_even_when_its_operator_dies_too() {
    let Some(mut pack) = Pack::start(&["op-a", "op-b"], "31100-31199") else {
        return;
    };
    let Streaming {
        stop,
        stream,
        name,
        ip,
    } = pack.alice_streams();

    // The leading operator dies, then the Wolf: the other operator must take over and end it.
    let leader = pack.leader().expect("an operator leads");
    let index = pack
        .operators
        .iter()
        .position(|p| p.name() == format!("operator {leader}"))
        .expect("the leader is one of ours");
    pack.operators[index].kill();
    let records = format!("{}.json", pack.kubelet.records.join(&ip).display());
    support::run(
        Command::new("pkill").args(["-KILL", "-f", &records]),
        "pkill the fake Wolf",
    );
    let killed = Instant::now();
    pack.wait_gone("the Session of the killed Wolf is deleted", |p| {
        p.sessions().iter().all(|s| s.name_any() != name)
    });
    eprintln!("Session ended {:?} after Wolf was killed", killed.elapsed());
    let events = pack.events_of(&name);
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some(crd::reasons::WOLF_EXITED)),
        "an Event says Wolf exited: {:?}",
        events.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>()
    );
    assert_ne!(
        pack.leader().as_deref(),
        Some(leader.as_str()),
        "the other operator leads"
    );
    pack.wait_gone("the pod is deleted", |p| p.pod_of(&name).is_none());
    std::fs::write(&stop, b"").expect("stop file");
    let done = stream.report(DRIVER_TIMEOUT);
    eprintln!("the client's stream: {done}");
}

/// The relay is derived from the Session objects alone: a proxy replica that restarts relays a
/// running stream again on the same public ports, from the same source address as before, so
/// the media flows again and Wolf's ENet control stream carries on: the client's stream is not
/// ended (moonlight-common-c would end it 10 s after its control stream went unanswered).
#[test]
fn a_restarted_proxy_replica_keeps_the_running_stream() {
    let Some(mut pack) = Pack::start(&["op-a"], "31200-31299") else {
        return;
    };
    let Streaming {
        stop,
        stream,
        name: _,
        ip,
    } = pack.alice_streams();
    let pings = |pack: &Pack| {
        pack.records(&ip)["sessions"][0]["audio_pings"]
            .as_u64()
            .unwrap_or(0)
    };

    pack.proxy.proc.kill();
    std::thread::sleep(Duration::from_secs(1));
    let stalled = pings(&pack);
    let restarted = Instant::now();
    pack.proxy = start_proxy(&pack.ns, &pack.dir.path().join("direwolf-proxy"));
    wait_until(
        "the client's pings reach Wolf again",
        Duration::from_secs(20),
        || pings(&pack) > stalled + 5,
    );
    eprintln!(
        "pings flow again {:?} after the proxy restarted",
        restarted.elapsed()
    );
    // Long enough for moonlight-common-c to give up on a dead control stream (10 s).
    std::thread::sleep(Duration::from_secs(12));
    std::fs::write(&stop, b"").expect("stop file");
    let done = stream.report(DRIVER_TIMEOUT);
    eprintln!("the client's stream across the restart: {done}");
    assert_eq!(
        done["terminated"], false,
        "the stream survived the proxy restart: {done}"
    );
    assert_eq!(pack.sessions().len(), 1, "the Session outlives the proxy replica");
}

/// A client that stops its stream and starts the same app again resumes it (moonlight-python
/// sends `/resume` while the app runs): the proxy re-keys the Session, its agent registers the
/// stream with Wolf again with the client's new keys before the proxy answers, and the second
/// stream runs in the same pod. (The fake Wolf does not decrypt; that Wolf gets the new keys is
/// the agent test's `a_resume_registers_the_stream_again_with_its_new_keys`.)
#[test]
fn a_stopped_stream_resumes_in_its_pod_with_new_keys() {
    let Some(pack) = Pack::start(&["op-a"], "31300-31399") else {
        return;
    };
    let Streaming {
        stop,
        stream,
        name,
        ip,
    } = pack.alice_streams();
    std::fs::write(&stop, b"").expect("stop file");
    let first = stream.report(DRIVER_TIMEOUT);
    assert_eq!(
        first["terminated"], false,
        "the first stream ran until stopped: {first}"
    );

    std::fs::remove_file(&stop).expect("stop file removed");
    let alice = pack.dir.path().join("alice-laptop");
    let info = pack.driver(&alice, &["serverinfo"]).report(DRIVER_TIMEOUT);
    assert_eq!(
        info["current_game"], 1,
        "the game still runs, to be resumed: {info}"
    );
    let resumed = pack.stream_with(&alice, &stop, &["--pinned"]);
    let sessions = pack.sessions();
    assert_eq!(
        sessions.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        std::slice::from_ref(&name),
        "the resume kept the Session"
    );
    let session = &sessions[0];
    assert_eq!(
        session.spec.keys_revision,
        Some(1),
        "the proxy raised the revision"
    );
    assert_eq!(
        session.status.as_ref().and_then(|s| s.keys_revision),
        Some(1),
        "the agent had registered the new keys when the client got its answer"
    );
    assert_eq!(pod_ip(&pack.pod_of(&name).expect("the pod")), ip, "the same pod");
    pack.wait_phase(&name, SessionPhase::Streaming);
    std::fs::write(&stop, b"").expect("stop file");
    let done = resumed.report(DRIVER_TIMEOUT);
    eprintln!("the resumed stream: {done}");
    assert_eq!(
        done["terminated"], false,
        "the resumed stream ran until stopped: {done}"
    );
    assert!(
        done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
        "RTP from the Wolf pod reached the client again: {done}"
    );
}

/// nftables rules of this test, removed when dropped.
struct NftTable(&'static str);

impl NftTable {
    /// Locally sent UDP to 127.0.0.1 on `ports` goes to 127.0.0.2 instead (counted), as a load
    /// balancer would send those flows to another replica; conntrack rewrites the answers back.
    fn udp_to_second_replica(ports: &str) -> NftTable {
        let table = NftTable("direwolf_e2e_replicas");
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", table.0])
            .output();
        let rules = format!(
            "table ip {t} {{\n  chain out {{\n    type nat hook output priority -100; policy accept;\n    \
             ip daddr 127.0.0.1 udp dport {ports} counter dnat to 127.0.0.2\n  }}\n}}\n",
            t = table.0
        );
        let file = std::env::temp_dir().join(format!("{}-{}.nft", table.0, std::process::id()));
        std::fs::write(&file, rules).expect("the rules file");
        support::run(
            Command::new("nft").arg("-f").arg(&file),
            "nft -f (needs root and nftables)",
        );
        table
    }

    /// UDP flows the rule sent to the second replica (its counter sees the first datagram of
    /// each flow; conntrack carries the rest).
    fn flows(&self) -> u64 {
        let listed = support::run(
            Command::new("nft").args(["-j", "list", "table", "ip", self.0]),
            "nft list",
        );
        let json: Value = serde_json::from_str(&listed).expect("nft's JSON");
        json["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["rule"]["expr"].as_array())
            .flatten()
            .filter_map(|expr| expr["counter"]["packets"].as_u64())
            .sum()
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", self.0])
            .output();
    }
}

/// Two proxy replicas, each relaying every Session from the Session objects alone: the
/// client's HTTP and RTSP reach the first, its video, audio and control flows the second (as a
/// load balancer may send them), and the stream runs.
#[test]
fn flows_split_across_two_proxy_replicas_stream() {
    let Some(pack) = Pack::start(&["op-a"], "31400-31499") else {
        return;
    };
    let second = start_proxy_relaying_on(&pack.ns, &pack.dir.path().join("direwolf-proxy"), "127.0.0.2");
    let nat = NftTable::udp_to_second_replica("31400-31499");
    let Streaming {
        stop,
        stream,
        name,
        ip: _,
    } = pack.alice_streams();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop, b"").expect("stop file");
    let done = stream.report(DRIVER_TIMEOUT);
    eprintln!("the stream across two replicas: {done}");
    assert_eq!(done["terminated"], false, "the stream ran until stopped: {done}");
    assert!(
        done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
        "RTP reached the client through the second replica: {done}"
    );
    // The NAT rule sees the first datagram of each flow only.
    let flows = nat.flows();
    assert!(
        flows >= 3,
        "video, audio and control went to the second replica: {flows}"
    );
    eprintln!("{flows} client UDP flows went to the second replica");
    assert!(
        second.proc.tail().contains(&name),
        "the second replica relayed {name} too:\n{}",
        second.proc.tail()
    );
}

/// The admin API of a proxy `direwolf install` set up, driven by the CLI from outside.
struct AdminApi {
    connection: Vec<String>,
}

impl AdminApi {
    /// Port 47990 of the proxy pod at `ip`, with the token of Secret `direwolf-admin-token` and
    /// the certificate fingerprint of the start-up line in `log`.
    fn of_installed_proxy(
        runtime: &tokio::runtime::Runtime,
        client: &kube::Client,
        ns: &str,
        ip: &str,
        log: &Path,
    ) -> AdminApi {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = runtime
            .block_on(testenv::within(
                "the admin token Secret",
                secrets.get(direwolf_k8s::admin_token::DEFAULT_SECRET),
            ))
            .expect("the proxy made its admin token Secret");
        let token = secret
            .data
            .and_then(|d| d.get(direwolf_k8s::admin_token::TOKEN_KEY).cloned())
            .map(|b| String::from_utf8(b.0).expect("a UTF-8 token"))
            .expect("a token in the Secret");
        let log = std::fs::read_to_string(log).expect("the proxy's log");
        let fingerprint = log
            .lines()
            .filter(|l| l.contains("direwolf proxy started"))
            .flat_map(str::split_whitespace)
            .find_map(|field| field.strip_prefix("server.fingerprint="))
            .map(|f| f.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no server.fingerprint in the proxy's start-up line:\n{log}"));
        AdminApi {
            connection: vec![
                "--url".to_owned(),
                format!("https://{ip}:47990"),
                "--token".to_owned(),
                token,
                "--fingerprint".to_owned(),
                fingerprint,
            ],
        }
    }

    /// Runs `direwolf ARGS` against it; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        support::run(
            support::direwolf().args(args).args(&self.connection),
            &format!("direwolf {}", args.join(" ")),
        )
    }
}

/// `direwolf install`'s own manifests, run: its proxy and operator Deployments (one replica
/// each) become Ready in pods on the stand-in, under their ServiceAccounts with their Roles, and
/// a client pairs with the proxy pod (a bare PIN refused, the PIN approved through the proxy's
/// admin API with the token the proxy made in its Secret), launches and streams from a Wolf pod.
/// The only changes to what `direwolf install` prints are placements: the Deployments and (through the operator's
/// `--stream-node-selector`) the stream pods go to the stand-in's node, not to kwok's.
#[test]
fn the_installed_proxy_and_operator_run_in_pods_and_a_client_streams() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    support::require_moonlight_python();
    let kubelet = kubelet(cp);
    let (runtime, client, ns) = namespace_with_crds(cp, "installed");
    let rendered = support::run(
        support::direwolf().args([
            "install",
            "--no-crds",
            "--namespace",
            &ns,
            "--proxy-replicas",
            "1",
            "--operator-replicas",
            "1",
        ]),
        "direwolf install",
    );
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("YAML documents");
    let (key, value) = NODE_SELECTOR.split_once('=').expect("KEY=VALUE");
    for doc in docs.iter_mut().filter(|d| d["kind"] == "Deployment") {
        let operator = doc["metadata"]["name"] == "direwolf-operator";
        let pod = &mut doc["spec"]["template"]["spec"];
        pod["nodeSelector"] = serde_json::json!({ key: value });
        if operator {
            let args = pod["containers"][0]["args"].as_array_mut().expect("args");
            for arg in [
                "--stream-node-selector",
                NODE_SELECTOR,
                "--port-range",
                "31600-31699",
            ] {
                args.push(arg.into());
            }
        }
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let manifests = dir.path().join("installed.yaml");
    let text: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(&manifests, text.join("\n---\n")).expect("write the manifests");
    let manifests = manifests.display().to_string();
    cp.kubectl(&["apply", "--server-side", "-f", &manifests]);
    cp.kubectl(&[
        "apply",
        "-n",
        &ns,
        "-f",
        "examples/user.yaml",
        "-f",
        "examples/app-test-pattern.yaml",
    ]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = |selector: &str| {
        runtime
            .block_on(testenv::within(
                "list pods",
                pods.list(&ListParams::default().labels(selector)),
            ))
            .expect("list pods")
            .items
    };
    let logs_dir = kubelet._state.path().join("kubelet/logs");
    let logs = |component: &str| {
        list(&format!("app.kubernetes.io/component={component}"))
            .iter()
            .map(|p| {
                let file = logs_dir.join(format!("{ns}_{}_{component}.log", p.name_any()));
                format!(
                    "{component} pod {} ({:?}):\n{}\n",
                    p.name_any(),
                    p.status.as_ref().and_then(|s| s.conditions.clone()),
                    std::fs::read_to_string(&file).unwrap_or_default()
                )
            })
            .collect::<String>()
    };
    let everything = || format!("{}{}", logs("proxy"), logs("operator"));
    // Ready: the kubelet stand-in's probes of /readyz on the health port answer 200.
    let ready = |component: &str| {
        support::poll(START, Duration::from_millis(500), || {
            list(&format!("app.kubernetes.io/component={component}"))
                .into_iter()
                .find(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
        })
        .unwrap_or_else(|| panic!("no Ready {component} pod within {START:?}\n{}", everything()))
    };
    let operator = ready("operator");
    let proxy = ready("proxy");
    for (pod, account) in [(&proxy, "direwolf-proxy"), (&operator, "direwolf-operator")] {
        let spec = pod.spec.as_ref().expect("a pod spec");
        assert_eq!(spec.node_name.as_deref(), Some(NODE));
        assert_eq!(spec.service_account_name.as_deref(), Some(account));
    }
    let ip = pod_ip(&proxy);

    // Pairing: the PIN link from the proxy container's log, the PIN typed on the PIN page.
    let driver = |script: &str, client: &Path, args: &[&str]| {
        Proc::spawn(
            &format!("{script} {}", args[0]),
            Command::new("python3").args(driver_args(script, &ip, 47989, client, args)),
        )
    };
    let alice = dir.path().join("alice");
    let pairing = driver("driver.py", &alice, &["pair", "--pin", PIN]);
    let proxy_log = logs_dir.join(format!("{ns}_{}_proxy.log", proxy.name_any()));
    let line = support::poll(DRIVER_TIMEOUT, Duration::from_millis(200), || {
        let log = std::fs::read_to_string(&proxy_log).ok()?;
        log.lines()
            .find(|l| l.contains("Insert pin at http://"))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no PIN link in the proxy's log\n{}", everything()));
    let (_, secret) = support::pin_link(&line);
    let posted = driver(
        "pack_driver.py",
        &alice,
        &["post-pin", "--pin", PIN, "--secret", secret, "--user", "alice"],
    )
    .report(DRIVER_TIMEOUT);
    assert_eq!(
        posted["status"], 401,
        "the installed proxy refuses a PIN entered without login: {posted}"
    );
    // An administrator approves it through the proxy's admin API: the token the proxy made in
    // its Secret, the certificate its start-up line names.
    let admin = AdminApi::of_installed_proxy(&runtime, &client, &ns, &ip, &proxy_log);
    let users = admin.ok(&["user", "list", "--output", "json"]);
    assert!(
        users.contains("\"alice\""),
        "the admin API lists the Users: {users}"
    );
    admin.ok(&["pairing", "approve", secret, "--pin", PIN, "--user", "alice"]);
    let paired = pairing.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing: {paired}");
    let pairings = admin.ok(&["pairing", "list", "--output", "json"]);
    assert!(pairings.contains("\"alice\""), "alice's pairing: {pairings}");

    // Launch and stream through the proxy pod's relay from the Wolf pod the operator made.
    let stop = dir.path().join("stop");
    let until = stop.to_str().expect("utf-8");
    let stream = driver(
        "pack_driver.py",
        &alice,
        &[
            "stream",
            "--app",
            "Test pattern",
            "--until",
            until,
            "--max-secs",
            "90",
        ],
    );
    let started = stream.report(DRIVER_TIMEOUT);
    assert_eq!(
        started["event"],
        "started",
        "every connection stage must complete: {started}\n{}",
        everything()
    );
    let sessions: Api<Session> = Api::namespaced(client.clone(), &ns);
    let session = runtime
        .block_on(testenv::within(
            "list Sessions",
            sessions.list(&ListParams::default()),
        ))
        .expect("list Sessions")
        .items
        .into_iter()
        .next()
        .expect("the launch made a Session");
    let stream_pod = list(&format!("{}={}", stream::SESSION_LABEL, session.name_any()))
        .into_iter()
        .next()
        .expect("the Session's pod");
    assert_eq!(
        stream_pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );
    let records = kubelet.records.join(format!("{}.json", pod_ip(&stream_pod)));
    wait_until(
        "the client's PLAY and pings reach the Wolf pod through the proxy pod",
        Duration::from_secs(10),
        || {
            let Some(record) = std::fs::read_to_string(&records)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            else {
                return false;
            };
            let session = &record["sessions"][0];
            session["audio_pings"].as_u64().unwrap_or(0) > 0
                && rtsp_methods_so_far(session).iter().any(|m| m == "PLAY")
        },
    );
    std::fs::write(&stop, b"").expect("stop file");
    let done = stream.report(DRIVER_TIMEOUT);
    assert!(
        done["udp_in_while_streaming"].as_u64().unwrap_or(0) > 0,
        "RTP from the Wolf pod reached the client: {done}\n{}",
        everything()
    );
    let quit = driver("pack_driver.py", &alice, &["quit"]).report(DRIVER_TIMEOUT);
    assert_eq!(quit["ok"], true, "quit: {quit}");
}
