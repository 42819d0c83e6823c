//! End to end: `direwolf proxy` against the in-process Kubernetes API-server emulator, driven by
//! the real moonlight-python client (`tests/interop/driver.py` for pairing and checks, its
//! `NvHTTP.launch_app` for launches). The test plays the operator by publishing
//! `status.streamURL` on the Session the proxy creates.
//!
//! Needs `python3` with `moonlight_python` 0.3.0 importable (`scripts/test-all` installs it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use direwolf_k8s::crd;
use direwolf_k8s::emulator::ApiServerEmulator;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const PIN: &str = "5731";
const START: Duration = Duration::from_secs(120);
const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);
const NS: &str = "default";
const LAUNCH_TIMEOUT_SECS: u64 = 8;

/// A launch through moonlight-python's own `/launch` call; prints one JSON line.
const LAUNCH_PY: &str = r#"
import json, os, sys, hashlib
from pathlib import Path
from moonlight_python.identity import Identity
from moonlight_python.http_client import NvHTTP
from moonlight_python.exceptions import HttpResponseError
client_dir, port, app = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
identity = Identity(client_dir)
pinned = (Path(client_dir) / "server_cert.pem").read_bytes()
http = NvHTTP("127.0.0.1", identity, http_port=port, server_cert_pem=pinned)
http.parse_server_info(http.get_server_info())
result = {"fingerprint": hashlib.sha256(identity.cert_der).hexdigest()}
if app > 0:
    try:
        url = http.launch_app(app, 1280, 720, 60, 10000, 1, os.urandom(16), os.urandom(16), 196610)
        result.update(ok=True, url=url)
    except HttpResponseError as e:
        result.update(ok=False, status_code=e.status_code, message=e.status_message)
print(json.dumps(result), flush=True)
"#;

fn driver_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/driver.py")
}

fn require_moonlight_python() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import moonlight_python as m; assert m.__version__ == '0.3.0', m.__version__",
        ])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import moonlight_python 0.3.0 ({}): run scripts/test-all \
             (pip install moonlight-python==0.3.0)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e})"),
    }
}

/// Kills a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The emulator (on its own runtime, so the test thread may block) with the CRDs and the
/// example Apps and User, and a kubeconfig pointing at it.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    emulator: Option<ApiServerEmulator>,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    root: PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(true)
    }

    /// With `install` false the emulator serves no direwolf CRDs.
    fn start_with(install: bool) -> Cluster {
        require_moonlight_python();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let emulator = runtime
            .block_on(async { tokio::time::timeout(START, ApiServerEmulator::start()).await })
            .expect("the emulator starts within 120 s")
            .expect("the emulator starts");
        let examples: &[&str] = if install {
            emulator
                .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
                .expect("CRDs install");
            &["app-test-pattern.yaml", "app-firefox.yaml", "user.yaml"]
        } else {
            &[]
        };
        for file in examples {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(file);
            let yaml = std::fs::read_to_string(&path).expect("example readable");
            emulator.apply_yaml(&yaml).expect("example applies");
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    \
                 cluster: emulator\n    user: test\n    namespace: {NS}\ncurrent-context: emulator\n",
                emulator.url()
            ),
        )
        .expect("write the kubeconfig");
        Cluster {
            runtime,
            root: dir.path().to_owned(),
            emulator: Some(emulator),
            _dir: dir,
            kubeconfig,
        }
    }

    fn client(&self) -> kube::Client {
        self.emulator.as_ref().expect("running").client()
    }

    /// Runs `f` on the emulator's runtime, failing after 30 s.
    fn block<F: std::future::Future>(&self, what: &str, f: F) -> F::Output {
        self.runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), f).await })
            .unwrap_or_else(|_| panic!("timed out after 30 s: {what}"))
    }

    fn sessions(&self) -> Vec<crd::Session> {
        let api: Api<crd::Session> = Api::namespaced(self.client(), NS);
        self.block("list sessions", api.list(&ListParams::default()))
            .expect("list sessions")
            .items
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(emulator) = self.emulator.take() {
            self.runtime.block_on(emulator.shutdown());
        }
    }
}

/// A running `direwolf proxy`; log lines are collected.
struct Proxy {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    http_port: u16,
    fingerprint: String,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in log line {line:?}"))
        + key.len();
    line[start..].split(' ').next().unwrap_or_default()
}

impl Proxy {
    fn start(cluster: &Cluster, name: &str) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_direwolf"))
            .arg("proxy")
            .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
            .args(["--health-bind", "127.0.0.1", "--health-port", "0"])
            .args(["--launch-timeout", &LAUNCH_TIMEOUT_SECS.to_string()])
            .args(["--default-user", "alice", "--pin-timeout", "60"])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start direwolf proxy");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[proxy {tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = Proxy {
            child: ChildGuard(child),
            lines,
            http_port: 0,
            fingerprint: String::new(),
        };
        let health = proxy.wait_for("health listener", START);
        let health: SocketAddr = field(&health, "addr=").parse().expect("health address");
        let started = proxy.wait_for("direwolf proxy started", START);
        let http: SocketAddr = field(&started, " http=")
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .expect("http address");
        proxy.http_port = http.port();
        proxy.fingerprint = field(&started, "server.fingerprint=").to_owned();
        let ready = http_get(health, "/readyz");
        assert!(ready.starts_with("HTTP/1.1 200"), "/readyz after start: {ready}");
        proxy
    }

    /// SIGTERM, then a clean exit within 30 s.
    fn stop(mut self) {
        let pid = self.child.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let status = wait_exit(&mut self.child.0, Duration::from_secs(30), "proxy after SIGTERM");
        assert!(
            status.success(),
            "the proxy exits cleanly on SIGTERM, got {status}"
        );
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the proxy did not log {needle:?} within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the proxy exited before logging {needle:?}")
                }
            }
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("read the reply (timeout: stuck)");
    reply
}

fn post_pin(http_port: u16, pin: &str, secret: &str) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let body = format!(r#"{{"pin":"{pin}","secret":"{secret}"}}"#);
    let request = format!(
        "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send the PIN");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the PIN page's answer (timeout: stuck)");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Runs a Python program to completion (bounded) and parses the last stdout line as JSON.
fn run_python(args: &[&str], what: &str) -> Value {
    let mut child = ChildGuard(
        Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3"),
    );
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let status = wait_exit(&mut child.0, DRIVER_TIMEOUT, what);
    let text = rx.recv_timeout(Duration::from_secs(10)).expect("stdout");
    let last = text.lines().last().unwrap_or_default();
    let report: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{what}: no JSON ({e}) in {text:?}"));
    assert!(
        status.success() && report.get("unexpected").is_none(),
        "{what}: {report}"
    );
    eprintln!("[{what}] {report}");
    report
}

fn driver(http_port: u16, client: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        driver_path().display().to_string(),
        "--host".into(),
        "127.0.0.1".into(),
        "--http-port".into(),
        http_port.to_string(),
        "--client-dir".into(),
        client.display().to_string(),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    all
}

/// Pairs `client` through `via`, typing the PIN on `pin_page`'s PIN page.
fn pair(via: &Proxy, pin_page: &Proxy, client: &Path) -> Value {
    let args = driver(via.http_port, client, &["pair", "--pin", PIN]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = tx.send(std::panic::catch_unwind(|| run_python(&refs, "pair")));
    });
    let line = via.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let secret = line.rsplit('#').next().expect("a secret").trim().to_owned();
    assert_eq!(secret.len(), 16, "secret in {line}");
    let (status, body) = post_pin(pin_page.http_port, PIN, &secret);
    assert_eq!(
        (status, body.trim()),
        (200, "OK"),
        "the PIN page must accept the PIN"
    );
    rx.recv_timeout(DRIVER_TIMEOUT + Duration::from_secs(10))
        .expect("the pairing driver finishes")
        .unwrap_or_else(|_| panic!("the pairing driver failed"))
}

fn launch(proxy: &Proxy, client: &Path, app: u32) -> Value {
    run_python(
        &[
            "-c",
            LAUNCH_PY,
            &client.display().to_string(),
            &proxy.http_port.to_string(),
            &app.to_string(),
        ],
        "launch",
    )
}

#[test]
fn real_client_pairs_lists_apps_and_launches_through_session_objects() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(&cluster, "a");
    let client = cluster.root.join("client");

    let paired = pair(&proxy, &proxy, &client);
    assert_eq!(paired["ok"], true, "pairing succeeds: {paired}");

    // The Pairing is named by the client certificate's fingerprint and belongs to alice.
    let fingerprint = launch(&proxy, &client, 0)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let pairings: Api<crd::Pairing> = Api::namespaced(cluster.client(), NS);
    let pairing = cluster
        .block("get pairing", pairings.get_opt(&fingerprint))
        .expect("get pairing")
        .expect("a Pairing named by the client certificate's fingerprint");
    assert_eq!(pairing.spec.user_reference.name, "alice");

    // HTTPS serverinfo and the app list, as the client sees them.
    let check = run_python(
        &driver(proxy.http_port, &client, &["check"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "check",
    );
    assert_eq!(check["serverinfo"]["pair_status"], "1", "{check}");
    assert_eq!(check["serverinfo"]["current_game"], 0);
    let apps: Api<crd::App> = Api::namespaced(cluster.client(), NS);
    let mut expected: Vec<Value> = cluster
        .block("list apps", apps.list(&ListParams::default()))
        .expect("list apps")
        .items
        .iter()
        .map(|a| json!({"id": a.spec.id, "name": a.spec.title, "hdr": a.spec.is_hdr_supported}))
        .collect();
    expected.sort_by_key(|a| a["id"].as_i64());
    assert_eq!(
        check["apps"],
        Value::Array(expected),
        "the app list equals the App resources"
    );

    // Launch: the proxy creates a Session; the test publishes its stream URL as the operator.
    let launcher = {
        let (client, port) = (client.clone(), proxy.http_port);
        std::thread::spawn(move || {
            run_python(
                &[
                    "-c",
                    LAUNCH_PY,
                    &client.display().to_string(),
                    &port.to_string(),
                    "2",
                ],
                "launch",
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(LAUNCH_TIMEOUT_SECS);
    let session = loop {
        if let Some(session) = cluster.sessions().into_iter().next() {
            break session;
        }
        assert!(Instant::now() < deadline, "no Session was created by the launch");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        session.name_any().starts_with("alice-firefox-"),
        "{}",
        session.name_any()
    );
    assert_eq!(session.spec.user_reference.name, "alice");
    assert_eq!(session.spec.game_reference.name, "firefox");
    assert_eq!(session.spec.pairing_reference.name, fingerprint);
    let config = &session.spec.config;
    assert_eq!(config.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (config.video_width, config.video_height, config.video_refresh_rate),
        (1280, 720, 60)
    );
    assert_eq!(config.surround_audio_flags, 196_610);
    assert_eq!(config.aes_key.len(), 32);
    assert!(config.aes_iv.parse::<i64>().is_ok());
    let sessions: Api<crd::Session> = Api::namespaced(cluster.client(), NS);
    let url = "rtsp://127.0.0.1:48123";
    cluster
        .block(
            "publish the stream URL",
            sessions.patch_status(
                &session.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"streamURL": url}})),
            ),
        )
        .expect("patch status");
    let launched = launcher.join().expect("launch thread");
    assert_eq!(launched["ok"], true, "{launched}");
    assert_eq!(
        launched["url"], url,
        "the client receives the stream URL as sessionUrl0"
    );

    let busy = run_python(
        &driver(proxy.http_port, &client, &["check"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "check busy",
    );
    assert_eq!(busy["serverinfo"]["current_game"], 2, "{busy}");

    // Without an operator the next launch times out with the failure XML and leaves nothing.
    let started = Instant::now();
    let failed = launch(&proxy, &client, 1);
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["status_code"], 503, "{failed}");
    assert!(started.elapsed() >= Duration::from_secs(LAUNCH_TIMEOUT_SECS - 1));
    assert!(cluster.sessions().is_empty(), "no Session is left behind");
}

#[test]
fn two_replicas_pin_posted_to_the_other_replica() {
    let cluster = Cluster::start();
    let a = Proxy::start(&cluster, "a");
    let b = Proxy::start(&cluster, "b");
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "every replica serves the same certificate"
    );
    let client = cluster.root.join("client");

    let paired = pair(&a, &b, &client);
    assert_eq!(
        paired["ok"], true,
        "pairing through A with the PIN typed on B: {paired}"
    );

    // B trusts the pairing A wrote, with the certificate the client pinned from A.
    let check = run_python(
        &driver(b.http_port, &client, &["check"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "check on b",
    );
    assert_eq!(check["serverinfo"]["pair_status"], "1", "{check}");
    let pairings: Api<crd::Pairing> = Api::namespaced(cluster.client(), NS);
    let listed = cluster
        .block("list pairings", pairings.list(&ListParams::default()))
        .expect("list pairings")
        .items;
    assert_eq!(listed.len(), 1);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.client(), NS);
    let left = cluster
        .block(
            "list pending PINs",
            secrets.list(&ListParams::default().labels("direwolf/pin=pending")),
        )
        .expect("list secrets")
        .items;
    assert!(left.is_empty(), "the pending-PIN Secret is deleted after pairing");
    a.stop();
    b.stop();
}

#[test]
fn without_the_crds_the_proxy_exits_with_an_install_hint() {
    let cluster = Cluster::start_with(false);
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_direwolf"))
            .arg("proxy")
            .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
            .args(["--health-bind", "127.0.0.1", "--health-port", "0"])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start direwolf proxy"),
    );
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let status = wait_exit(&mut child.0, Duration::from_secs(60), "proxy without CRDs");
    let text = rx.recv_timeout(Duration::from_secs(10)).expect("stderr");
    assert!(!status.success(), "the proxy must fail without CRDs: {text}");
    assert!(
        text.contains("direwolf crd | kubectl apply -f -"),
        "the error names the install command: {text}"
    );
}
