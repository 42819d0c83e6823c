//! `direwolf operator` reconciling 1,000 Sessions, and `direwolf proxy` relaying them: time,
//! memory and CPU, next to their idle baselines measured in the same run.
//!
//! `cargo bench -p direwolf --bench operator_scale` (release build). Starts the API-server
//! emulator as its own process (this binary re-invoked, running what
//! `direwolf-k8s/examples/emulator.rs` runs: CRDs, `examples/user.yaml` and
//! `examples/app-test-pattern.yaml` in namespace `games`), then `direwolf operator` on it, waits
//! for it to lead, and reads its idle `VmRSS` and CPU time. It then creates 1,000 Sessions of
//! alice for test-pattern (16 requests in flight) and waits until every one is reconciled: its
//! status has `ports` and its pod exists (the emulator has no scheduler and no kubelet, so pods
//! stay Pending). The bench then plays the kubelet: each pod gets an IP (127.0.0.2) and Ready, the
//! operator publishes it as `status.host`, and the proxy opens a relay (four bound ports) per
//! Session; that phase ends when the proxy's `/metrics` counts 1,000 open relays. Then it
//! deletes them all and waits until every Session and pod is gone (the
//! operator's finalizer removes the pod). It prints the idle baseline, the figures after each
//! phase, the per-Session deltas, and the target "operator RSS < 100 MiB with 1,000 Sessions".
//! The emulator's and this process's CPU time are shown too, to tell whether the emulator or the
//! polling client is the bottleneck.

mod support;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use direwolf_k8s::crd::Session;
use direwolf_k8s::emulator::{ApiServerEmulator, EmulatorConfig};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use support::proc_status;

const SESSIONS: usize = 1_000;
const IN_FLIGHT: usize = 16;
const NAMESPACE: &str = "games";
const IDLE: Duration = Duration::from_secs(3);
const START_TIMEOUT: Duration = Duration::from_secs(120);
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
const TARGET_KIB: u64 = 100 * 1024;
/// The stream ports: below the kernel's ephemeral range (32768-60999 by default), where this
/// machine's many API connections would otherwise hold some of them (a cluster reserves the
/// range in the proxy pods instead: `net.ipv4.ip_local_reserved_ports`).
const PORT_RANGE: &str = "20000-23999";
/// The pod IP the bench's kubelet gives every stream pod (nothing listens there).
const POD_IP: &str = "127.0.0.2";
/// Set in the re-invoked binary that runs the emulator.
const EMULATOR_VAR: &str = "DIREWOLF_SCALE_EMULATOR";
/// How many output lines a failure quotes.
const TAIL_LINES: usize = 40;

// ----- The emulator process (what direwolf-k8s/examples/emulator.rs does) -----

/// The YAML documents of `file`, each put into `namespace`.
fn in_namespace(file: &PathBuf, namespace: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mut out = String::new();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML documents");
    for mut value in docs {
        value["metadata"]["namespace"] = serde_json::Value::from(namespace);
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&value).expect("YAML"));
    }
    out
}

fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
         contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\n\
         current-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
    )
}

/// The emulator: `ARGS = KUBECONFIG FILE...`; prints `emulator ready URL` and runs until killed.
fn run_emulator() {
    let mut argv = std::env::args().skip(1);
    let kubeconfig = PathBuf::from(argv.next().expect("kubeconfig path"));
    let apply: Vec<PathBuf> = argv.map(PathBuf::from).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let emulator = ApiServerEmulator::start_with(EmulatorConfig::default())
            .await
            .expect("start the emulator");
        let api: Api<CustomResourceDefinition> = Api::all(emulator.client());
        for crd in direwolf_k8s::crd::crds() {
            api.create(&PostParams::default(), &crd)
                .await
                .expect("create a CRD");
        }
        for file in &apply {
            emulator
                .apply_yaml(&in_namespace(file, NAMESPACE))
                .expect("apply an example");
        }
        let url = emulator.url();
        std::fs::write(&kubeconfig, kubeconfig_text(&url)).expect("write the kubeconfig");
        println!("emulator ready {url}");
        std::future::pending::<()>().await;
    });
}

// ----- Processes -----

/// A child process, killed when dropped. Its stdout and stderr are read all along (a full pipe
/// would stall it); their lines go to [`Proc::wait_for`], the last ones are kept for failures.
struct Proc {
    child: Child,
    name: &'static str,
    lines: mpsc::Receiver<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
    warnings: Warnings,
}

/// The warnings and errors a process logged, by message (and `category=`): count, first line.
type Warnings = Arc<Mutex<BTreeMap<String, (usize, String)>>>;

/// The key of a `WARN` or `ERROR` log line: its message and category; `None` for other lines.
fn warning_key(line: &str) -> Option<String> {
    let at = line.find(" WARN ").or_else(|| line.find(" ERROR "))?;
    let rest = &line[at..];
    let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
    let mut key: Vec<&str> = message
        .split_whitespace()
        .take_while(|w| !w.contains('='))
        .collect();
    if let Some(category) = message.split_whitespace().find(|w| w.starts_with("category=")) {
        key.push(category);
    }
    Some(key.join(" "))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(name: &'static str, command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let warnings = Warnings::default();
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for output in outputs {
            let (tx, tail, warnings) = (tx.clone(), Arc::clone(&tail), Arc::clone(&warnings));
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if let Some(key) = warning_key(&line) {
                        let mut warnings = warnings.lock().expect("warnings lock");
                        let first: String = line.chars().take(400).collect();
                        warnings.entry(key).or_insert((0, first)).0 += 1;
                    }
                    {
                        let mut tail = tail.lock().expect("tail lock");
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.clone());
                    }
                    // Nobody may be waiting any more: keep reading anyway.
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            name,
            lines,
            tail,
            warnings,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        let tail = self.tail.lock().expect("tail lock");
        let mut text = format!("last {} lines of {}:", tail.len(), self.name);
        for line in tail.iter() {
            text.push_str("\n  ");
            text.push_str(line);
        }
        text
    }

    /// Waits for an output line containing `needle`; the line.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "{} did not print {needle:?} within {timeout:?} ({e})\n{}",
                    self.name,
                    self.tail()
                ),
            }
        }
    }

    /// Fails when the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status})\n{}", self.name, self.tail());
        }
    }
}

// ----- /proc -----

/// A process's memory and CPU time at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    rss_kib: u64,
    hwm_kib: u64,
    cpu_s: f64,
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `pid` is a number or `self`.
fn sample(pid: &str, ticks: f64) -> Sample {
    let value = |key: &str| proc_status(pid, key);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let tick = |i: usize| -> f64 { fields[i - 3].parse::<f64>().expect("a tick count") };
    Sample {
        at: Instant::now(),
        rss_kib: value("VmRSS:"),
        hwm_kib: value("VmHWM:"),
        cpu_s: (tick(14) + tick(15)) / ticks,
    }
}

// ----- Sessions -----

fn session_name(i: usize) -> String {
    format!("alice-test-pattern-{i:04}")
}

/// A Session of alice for test-pattern, as the proxy creates it (see `examples/session.yaml`).
fn session(name: &str) -> Session {
    serde_json::from_value(json!({
        "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
        "kind": "Session",
        "metadata": {"name": name, "labels": {"direwolf": "true", "direwolf/user": "alice", "direwolf/app": "test-pattern"}},
        "spec": {
            "userReference": {"name": "alice"},
            "gameReference": {"name": "test-pattern", "appID": 1},
            "pairingReference": {"name": "f306f349418479a792c486f7662d29e0b332886876b4b75073d7eee82703e7cb"},
            "config": {"clientIP": "192.0.2.10", "videoWidth": 1920, "videoHeight": 1080,
                       "videoRefreshRate": 60, "surroundAudioFlags": 196610}
        }
    }))
    .expect("a session")
}

/// Runs `op(i)` for every i in 0..SESSIONS, `IN_FLIGHT` at a time.
async fn for_all<F, Fut>(op: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (next, op) = (Arc::clone(&next), op.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SESSIONS {
                    break;
                }
                op(i).await;
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn list<K>(api: &Api<K>) -> Vec<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    tokio::time::timeout(REQUEST_TIMEOUT, api.list(&ListParams::default()))
        .await
        .expect("a list answers in time")
        .expect("list")
        .items
}

/// How many of the Sessions are reconciled: their status has ports and their pod exists.
async fn reconciled(sessions: &Api<Session>, pods: &Api<Pod>) -> usize {
    let with_ports: HashSet<String> = list(sessions)
        .await
        .into_iter()
        .filter(|s| s.status.as_ref().is_some_and(|st| st.ports.is_some()))
        .filter_map(|s| s.metadata.name)
        .collect();
    if with_ports.len() < SESSIONS {
        return with_ports.len();
    }
    // Only list the (large) pods once every Session has its ports.
    list(pods)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|name| with_ports.contains(name))
        .count()
}

/// Polls `count` every 250 ms until it is `goal`, failing after [`PHASE_TIMEOUT`].
async fn wait_count<F, Fut>(what: &str, goal: usize, operator: &mut Proc, mut count: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let n = count().await;
        if n == goal {
            return;
        }
        operator.check_alive();
        assert!(
            Instant::now() < deadline,
            "{what}: {n} of {SESSIONS} after {PHASE_TIMEOUT:?} (timeout)\n{}",
            operator.tail()
        );
        tokio::time::sleep(POLL).await;
    }
}

// ----- Report -----

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The operator, the emulator, this process and the proxy at one moment.
type Snap = (Sample, Sample, Sample, Sample);

struct Phase {
    wall_s: f64,
    operator_cpu_s: f64,
    emulator_cpu_s: f64,
    bench_cpu_s: f64,
    proxy_cpu_s: f64,
}

fn phase(before: Snap, after: Snap, started: Instant, ended: Instant) -> Phase {
    Phase {
        wall_s: (ended - started).as_secs_f64(),
        operator_cpu_s: after.0.cpu_s - before.0.cpu_s,
        emulator_cpu_s: after.1.cpu_s - before.1.cpu_s,
        bench_cpu_s: after.2.cpu_s - before.2.cpu_s,
        proxy_cpu_s: after.3.cpu_s - before.3.cpu_s,
    }
}

/// The value of an unlabelled sample `name` on the `/metrics` of the health port at `addr`.
fn scrape(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The `addr=` of a log line.
fn logged_addr(line: &str) -> std::net::SocketAddr {
    let at = line.find("addr=").expect("an addr= field") + "addr=".len();
    line[at..]
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The bench's kubelet: every stream pod Running and Ready at [`POD_IP`].
async fn run_pods(pods: &Api<Pod>) {
    let pods = pods.clone();
    for_all(move |i| {
        let pods = pods.clone();
        async move {
            let status = json!({"status": {
                "phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}],
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "wolf", "image": "wolf", "imageID": "", "ready": true,
                                       "restartCount": 0, "state": {"running": {}}}]
            }});
            let name = session_name(i);
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)),
            )
            .await
            .unwrap_or_else(|_| panic!("pod {name}: no answer within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("pod {name}: {e}"));
        }
    })
    .await;
}

fn main() {
    if std::env::var_os(EMULATOR_VAR).is_some() {
        run_emulator();
        return;
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    let ticks = clock_ticks();

    let mut emulator_cmd = Command::new(std::env::current_exe().expect("this binary"));
    emulator_cmd
        .env(EMULATOR_VAR, "1")
        .arg(&kubeconfig)
        .arg(workspace.join("examples/user.yaml"))
        .arg(workspace.join("examples/app-test-pattern.yaml"));
    let emulator = Proc::spawn("emulator", &mut emulator_cmd);
    emulator.wait_for("emulator ready", START_TIMEOUT);

    let mut operator_cmd = Command::new(env!("CARGO_BIN_EXE_direwolf"));
    operator_cmd
        .arg("operator")
        .args(["--namespace", NAMESPACE])
        .args(["--health-bind", "127.0.0.1:0"])
        .args(["--port-range", PORT_RANGE, "--start-deadline", "3600"])
        .args(["--holder-identity", "bench-operator"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0");
    let mut operator = Proc::spawn("direwolf operator", &mut operator_cmd);
    operator.wait_for("direwolf operator started", START_TIMEOUT);
    operator.wait_for("leading: reconciling Sessions", START_TIMEOUT);

    let mut proxy_cmd = Command::new(env!("CARGO_BIN_EXE_direwolf"));
    proxy_cmd
        .arg("proxy")
        .args(["--namespace", NAMESPACE])
        .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
        .args(["--health-bind", "127.0.0.1:0", "--relay-ip", "127.0.0.1"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0");
    let mut proxy = Proc::spawn("direwolf proxy", &mut proxy_cmd);
    let proxy_health = logged_addr(&proxy.wait_for("health port", START_TIMEOUT));
    proxy.wait_for("direwolf proxy started", START_TIMEOUT);
    let open_relays =
        move || scrape(proxy_health, "direwolf_relay_sessions").map_or(usize::MAX, |n| n as usize);

    let (op_pid, emu_pid) = (operator.pid().to_string(), emulator.pid().to_string());
    let proxy_pid = proxy.pid().to_string();
    let snap = || {
        (
            sample(&op_pid, ticks),
            sample(&emu_pid, ticks),
            sample("self", ticks),
            sample(&proxy_pid, ticks),
        )
    };

    // Idle baseline: settle, then measure CPU over an idle window.
    std::thread::sleep(IDLE);
    let idle_start = snap();
    std::thread::sleep(IDLE);
    let idle = snap();
    let idle_rate = (idle.0.cpu_s - idle_start.0.cpu_s) / (idle.0.at - idle_start.0.at).as_secs_f64();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (created_in, after_create, create_phase, relay_phase, deleted, delete_phase) =
        runtime.block_on(async {
            let options = KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig).expect("read the kubeconfig"),
                &options,
            )
            .await
            .expect("a kube config");
            let client = Client::try_from(config).expect("a kube client");
            let sessions: Api<Session> = Api::namespaced(client.clone(), NAMESPACE);
            let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

            // Create and wait for all to be reconciled.
            let before = snap();
            let started = Instant::now();
            let api = sessions.clone();
            for_all(move |i| {
                let api = api.clone();
                async move {
                    let name = session_name(i);
                    tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        api.create(&PostParams::default(), &session(&name)),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("create {name}: no answer within {REQUEST_TIMEOUT:?}"))
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                }
            })
            .await;
            let created_in = started.elapsed();
            wait_count("Sessions reconciled", SESSIONS, &mut operator, || {
                reconciled(&sessions, &pods)
            })
            .await;
            let ended = Instant::now();
            let reconciled_snap = snap();
            let create_phase = phase(before, reconciled_snap, started, ended);

            // The pods run: the operator publishes their IP, the proxy relays every Session.
            let started = Instant::now();
            run_pods(&pods).await;
            wait_count("relays open in the proxy", SESSIONS, &mut proxy, || {
                std::future::ready(open_relays())
            })
            .await;
            let after_create = snap();
            let relay_phase = phase(reconciled_snap, after_create, started, Instant::now());

            // Delete and wait for all Sessions and pods to be gone.
            let before = snap();
            let started = Instant::now();
            let api = sessions.clone();
            for_all(move |i| {
                let api = api.clone();
                async move {
                    let name = session_name(i);
                    tokio::time::timeout(REQUEST_TIMEOUT, api.delete(&name, &DeleteParams::default()))
                        .await
                        .unwrap_or_else(|_| panic!("delete {name}: no answer within {REQUEST_TIMEOUT:?}"))
                        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
                }
            })
            .await;
            let deleted_in = started.elapsed();
            wait_count("Sessions and pods gone", 0, &mut operator, || async {
                list(&sessions).await.len() + list(&pods).await.len()
            })
            .await;
            wait_count("relays closed in the proxy", 0, &mut proxy, || {
                std::future::ready(open_relays())
            })
            .await;
            let ended = Instant::now();
            let after_delete = snap();
            let delete_phase = phase(before, after_delete, started, ended);
            (
                created_in,
                after_create,
                create_phase,
                relay_phase,
                (deleted_in, after_delete),
                delete_phase,
            )
        });
    let (deleted_in, after_delete) = deleted;

    let n = SESSIONS as f64;
    println!();
    println!(
        "direwolf operator, {SESSIONS} Sessions on the API-server emulator ({IN_FLIGHT} requests in flight)"
    );
    println!(
        "{:<34} {:>9} {:>11} {:>13} {:>13}",
        "", "RSS MiB", "peak MiB", "operator CPU", "emulator CPU"
    );
    let row = |label: &str, s: &Snap| {
        println!(
            "{label:<34} {:>9.1} {:>11.1} {:>11.2} s {:>11.2} s",
            mib(s.0.rss_kib),
            mib(s.0.hwm_kib),
            s.0.cpu_s,
            s.1.cpu_s
        );
    };
    row("idle, 0 Sessions (baseline)", &idle);
    row(&format!("after {SESSIONS} reconciled"), &after_create);
    row(&format!("after {SESSIONS} deleted"), &after_delete);
    println!(
        "idle operator CPU: {:.2} ms/s; emulator RSS idle {:.1} MiB, after {SESSIONS} {:.1} MiB",
        idle_rate * 1000.0,
        mib(idle.1.rss_kib),
        mib(after_create.1.rss_kib)
    );
    println!();
    println!(
        "{:<12} {:>8} {:>10} {:>14} {:>14} {:>14} {:>12}",
        "phase", "wall s", "Sessions/s", "operator CPU", "op ms/Session", "emulator CPU", "bench CPU"
    );
    for (label, p, requests) in [
        ("create", &create_phase, created_in),
        ("delete", &delete_phase, deleted_in),
    ] {
        let net = p.operator_cpu_s - idle_rate * p.wall_s;
        println!(
            "{label:<12} {:>8.2} {:>10.1} {:>12.2} s {:>14.2} {:>12.2} s {:>10.2} s   (requests sent in {:.2} s)",
            p.wall_s,
            n / p.wall_s,
            p.operator_cpu_s,
            net / n * 1000.0,
            p.emulator_cpu_s,
            p.bench_cpu_s,
            requests.as_secs_f64()
        );
    }
    println!();
    let delta_kib = after_create.0.rss_kib as f64 - idle.0.rss_kib as f64;
    let peak_delta_kib = after_create.0.hwm_kib as f64 - idle.0.hwm_kib as f64;
    println!(
        "per Session: RSS +{:.1} KiB (peak +{:.1} KiB), operator CPU {:.2} ms to reconcile, {:.2} ms to delete (idle rate subtracted)",
        delta_kib / n,
        peak_delta_kib / n,
        (create_phase.operator_cpu_s - idle_rate * create_phase.wall_s) / n * 1000.0,
        (delete_phase.operator_cpu_s - idle_rate * delete_phase.wall_s) / n * 1000.0,
    );
    println!();
    println!("direwolf proxy, relaying the same {SESSIONS} Sessions (four bound ports each)");
    println!(
        "{:<34} {:>9} {:>11} {:>13}",
        "", "RSS MiB", "peak MiB", "proxy CPU"
    );
    for (label, s) in [
        ("idle, 0 Sessions (baseline)".to_owned(), &idle),
        (format!("{SESSIONS} Sessions relayed"), &after_create),
        (format!("after {SESSIONS} deleted"), &after_delete),
    ] {
        println!(
            "{label:<34} {:>9.1} {:>11.1} {:>11.2} s",
            mib(s.3.rss_kib),
            mib(s.3.hwm_kib),
            s.3.cpu_s
        );
    }
    println!(
        "proxy per Session: RSS +{:.1} KiB; CPU {:.2} ms to follow a Session to an open relay (the pods' start {:.2} s wall)",
        (after_create.3.rss_kib as f64 - idle.3.rss_kib as f64) / n,
        (create_phase.proxy_cpu_s + relay_phase.proxy_cpu_s) / n * 1000.0,
        relay_phase.wall_s
    );
    println!(
        "operator during the pods' start: {:.2} s CPU ({:.2} ms/Session)",
        relay_phase.operator_cpu_s,
        relay_phase.operator_cpu_s / n * 1000.0
    );
    for (name, proc) in [
        ("operator", &operator),
        ("emulator", &emulator),
        ("proxy", &proxy),
    ] {
        let warnings = proc.warnings.lock().expect("warnings lock");
        let total: usize = warnings.values().map(|(n, _)| n).sum();
        println!("{name} warnings/errors logged: {total}");
        let mut by_count: Vec<_> = warnings.iter().collect();
        by_count.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        for (key, (count, first)) in by_count.into_iter().take(6) {
            println!("  {count:>6} × {key}\n         e.g. {first}");
        }
    }
    let peak = after_create.0.hwm_kib.max(after_delete.0.hwm_kib);
    println!(
        "target: operator RSS < 100 MiB with {SESSIONS} Sessions: {} (RSS {:.1} MiB, peak {:.1} MiB)",
        if peak < TARGET_KIB { "PASS" } else { "FAIL" },
        mib(after_create.0.rss_kib),
        mib(peak)
    );
}
