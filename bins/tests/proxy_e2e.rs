//! End to end: `direwolf proxy` against the in-process Kubernetes API-server emulator and against
//! the real control plane (`scripts/kube-testenv`, issue 11), driven by the real moonlight-python
//! client (`tests/interop/driver.py` for pairing and checks, its `NvHTTP.launch_app` for
//! launches). The test plays the operator by publishing `status.streamURL` on the Session the
//! proxy creates. On the real control plane the proxy runs as its ServiceAccount with the Role of
//! `deploy/rbac.yaml`, not as admin: a permission the Role lacks fails the test.
//!
//! Needs `python3` with `moonlight_python` 0.3.0 importable (`scripts/test-all` installs it).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use direwolf_k8s::crd;
use direwolf_k8s::emulator::ApiServerEmulator;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::{DRIVER_TIMEOUT, Direwolf, Proc, field, require_moonlight_python, run_driver};

const PIN: &str = "5731";
const START: Duration = Duration::from_secs(120);
/// The emulator's namespace.
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

/// The example resources every cluster of these tests holds.
const EXAMPLES: [&str; 3] = ["app-test-pattern.yaml", "app-firefox.yaml", "user.yaml"];

/// The emulator or a namespace of the real control plane (a runtime of its own, so the test
/// thread may block) with the CRDs and the example Apps and User, an admin client and the
/// kubeconfig the proxy runs with.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    emulator: Option<ApiServerEmulator>,
    client: kube::Client,
    namespace: String,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    root: PathBuf,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(true)
    }

    /// With `install` false the emulator serves no direwolf CRDs.
    fn start_with(install: bool) -> Cluster {
        require_moonlight_python();
        let runtime = runtime();
        let emulator = runtime
            .block_on(async { tokio::time::timeout(START, ApiServerEmulator::start()).await })
            .expect("the emulator starts within 120 s")
            .expect("the emulator starts");
        let examples: &[&str] = if install {
            emulator
                .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
                .expect("CRDs install");
            &EXAMPLES[..]
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
            client: emulator.client(),
            emulator: Some(emulator),
            namespace: NS.to_owned(),
            _dir: dir,
            kubeconfig,
        }
    }

    /// A namespace of the real control plane: the CRDs, `deploy/rbac.yaml` and the examples
    /// applied with kubectl, and the proxy's kubeconfig a token of ServiceAccount
    /// `direwolf-proxy`. `None` when the real control plane tests are switched off locally.
    fn real() -> Option<Cluster> {
        let cp = support::testenv::control_plane()?;
        require_moonlight_python();
        let runtime = runtime();
        let crds = crd::crds_yaml().expect("CRDs render");
        let (client, namespace) = runtime.block_on(async {
            cp.install_crds(&crds).await;
            cp.namespace("proxy").await
        });
        cp.kubectl(&["apply", "-n", &namespace, "-f", "deploy/rbac.yaml"]);
        for file in EXAMPLES {
            cp.kubectl(&["apply", "-n", &namespace, "-f", &format!("examples/{file}")]);
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        cp.service_account_kubeconfig(&namespace, "direwolf-proxy", &kubeconfig);
        Some(Cluster {
            runtime,
            root: dir.path().to_owned(),
            emulator: None,
            client,
            namespace,
            _dir: dir,
            kubeconfig,
        })
    }

    fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Runs `f` on the emulator's runtime, failing after 30 s.
    fn block<F: std::future::Future>(&self, what: &str, f: F) -> F::Output {
        self.runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), f).await })
            .unwrap_or_else(|_| panic!("timed out after 30 s: {what}"))
    }

    fn sessions(&self) -> Vec<crd::Session> {
        let api: Api<crd::Session> = Api::namespaced(self.client(), &self.namespace);
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

/// `direwolf proxy` on loopback with free ports, against `cluster`.
fn proxy_command(cluster: &Cluster) -> Command {
    let mut command = support::direwolf();
    command
        .arg("proxy")
        .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
        .args(["--health-bind", "127.0.0.1:0"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    command
}

/// The admin token of the proxies (as a mounted Secret would hold it).
const ADMIN_TOKEN: &str = "proxy-admin-token-0123456789abcdef0123456789";

/// The file holding [`ADMIN_TOKEN`].
fn admin_token_file(cluster: &Cluster) -> PathBuf {
    let path = cluster.root.join("admin-token");
    std::fs::write(&path, format!("{ADMIN_TOKEN}\n")).expect("write the admin token");
    path
}

/// `direwolf ARGS --output json` against `proxy`'s admin API, pinning its certificate.
fn admin_json(proxy: &Direwolf, args: &[&str]) -> Value {
    let line = proxy
        .proc
        .line_with("direwolf proxy started")
        .expect("the start-up line");
    let url = format!("https://127.0.0.1:{}", support::port_of(field(&line, " admin=")));
    let out = Proc::spawn(
        &format!("direwolf {}", args.join(" ")),
        support::direwolf()
            .args(args)
            .args(["--output", "json", "--url", &url, "--token", ADMIN_TOKEN])
            .args(["--fingerprint", &proxy.fingerprint]),
    )
    .finish(START);
    assert!(
        out.status.success(),
        "direwolf {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout).expect("JSON output")
}

/// Starts a `direwolf proxy` replica (log lines tagged `proxy {name}`) and checks `/readyz`.
fn start_proxy(cluster: &Cluster, name: &str) -> Direwolf {
    let proc = Proc::spawn(
        &format!("proxy {name}"),
        proxy_command(cluster)
            .args(["--launch-timeout", &LAUNCH_TIMEOUT_SECS.to_string()])
            .args(["--default-user", "alice", "--pin-timeout", "60"])
            // Who enters the PIN is not what these tests are about (the SSO test below is).
            .arg("--allow-unauthenticated-pin")
            .args(["--admin-port", "0", "--admin-token-file"])
            .arg(admin_token_file(cluster))
            // No --namespace: the kubeconfig context's namespace (on the real control plane a
            // namespace of the test's own).
            .env_remove("POD_NAMESPACE")
            .env("RUST_LOG", "info"),
    );
    let health = proc.wait_for("health port", START);
    let health: SocketAddr = field(&health, "addr=").parse().expect("health address");
    let proxy = Direwolf::started(proc, "direwolf proxy started", START);
    let ready = http_get(health, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "/readyz after start: {ready}");
    proxy
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("read the reply (timeout: stuck)");
    reply
}

/// Pairs `client` through `via`, typing the PIN on `pin_page`'s PIN page.
fn pair(via: &Direwolf, pin_page: &Direwolf, client: &Path) -> Value {
    support::pair(via, pin_page.http_port, client, PIN, PIN, false)
}

/// Starts a launch of `app` (0: none, only the fingerprint) through moonlight-python's own call.
fn spawn_launch(port: u16, client: &Path, app: u32) -> Proc {
    Proc::spawn(
        "launch",
        Command::new("python3").args([
            "-c",
            LAUNCH_PY,
            &client.display().to_string(),
            &port.to_string(),
            &app.to_string(),
        ]),
    )
}

fn launch(proxy: &Direwolf, client: &Path, app: u32) -> Value {
    spawn_launch(proxy.http_port, client, app).json_result(DRIVER_TIMEOUT)
}

#[test]
fn real_client_pairs_lists_apps_and_launches_through_session_objects() {
    pairs_lists_apps_and_launches(Cluster::start());
}

#[test]
fn on_the_real_control_plane_as_its_service_account_the_client_pairs_lists_and_launches() {
    if let Some(cluster) = Cluster::real() {
        pairs_lists_apps_and_launches(cluster);
    }
}

fn pairs_lists_apps_and_launches(cluster: Cluster) {
    let proxy = start_proxy(&cluster, "a");
    let client = cluster.root.join("client");

    let paired = pair(&proxy, &proxy, &client);
    assert_eq!(paired["ok"], true, "pairing succeeds: {paired}");

    // The Pairing is named by the client certificate's fingerprint and belongs to alice.
    let fingerprint = launch(&proxy, &client, 0)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let pairings: Api<crd::Pairing> = Api::namespaced(cluster.client(), &cluster.namespace);
    let pairing = cluster
        .block("get pairing", pairings.get_opt(&fingerprint))
        .expect("get pairing")
        .expect("a Pairing named by the client certificate's fingerprint");
    assert_eq!(pairing.spec.user_reference.name, "alice");

    // The admin API edits and reads the custom resources.
    admin_json(&proxy, &["user", "add", "bob"]);
    let users: Api<crd::User> = Api::namespaced(cluster.client(), &cluster.namespace);
    assert!(
        cluster
            .block("get user", users.get_opt("bob"))
            .expect("get user")
            .is_some(),
        "user add creates a User"
    );
    let listed = admin_json(&proxy, &["pairing", "list"]);
    assert_eq!(
        listed["pairings"][0]["fingerprint"],
        fingerprint.as_str(),
        "{listed}"
    );
    assert_eq!(listed["pairings"][0]["user"], "alice", "{listed}");
    admin_json(&proxy, &["user", "remove", "bob"]);
    assert!(
        cluster
            .block("get user", users.get_opt("bob"))
            .expect("get user")
            .is_none(),
        "user remove deletes the User"
    );

    // HTTPS serverinfo and the app list, as the client sees them.
    let check = run_driver(proxy.http_port, &client, &["check"]);
    assert_eq!(check["serverinfo"]["pair_status"], "1", "{check}");
    assert_eq!(check["serverinfo"]["current_game"], 0);
    let apps: Api<crd::App> = Api::namespaced(cluster.client(), &cluster.namespace);
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
    let launcher = spawn_launch(proxy.http_port, &client, 2);
    let session = support::poll(
        Duration::from_secs(LAUNCH_TIMEOUT_SECS),
        Duration::from_millis(50),
        || cluster.sessions().into_iter().next(),
    )
    .expect("no Session was created by the launch");
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
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client(), &cluster.namespace);
    // The launcher writes the keys Secret just after the Session (it is owned by the Session).
    let keys_name = direwolf_k8s::stream::keys_secret_name(&session.name_any());
    let keys = support::poll(
        Duration::from_secs(LAUNCH_TIMEOUT_SECS),
        Duration::from_millis(50),
        || {
            cluster
                .block("read the keys Secret", secrets.get_opt(&keys_name))
                .expect("the API server answers")
        },
    )
    .expect("the keys Secret was created");
    let keys = direwolf_k8s::keys::stream_keys(&keys).expect("well-formed keys");
    assert_ne!(keys.aes_key.to_hex(), "0".repeat(32));
    let sessions: Api<crd::Session> = Api::namespaced(cluster.client(), &cluster.namespace);
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
    let launched = launcher.json_result(DRIVER_TIMEOUT);
    assert_eq!(launched["ok"], true, "{launched}");
    assert_eq!(
        launched["url"], url,
        "the client receives the stream URL as sessionUrl0"
    );

    let busy = run_driver(proxy.http_port, &client, &["check"]);
    assert_eq!(busy["serverinfo"]["current_game"], 2, "{busy}");

    // Without an operator the next launch times out with the failure XML and leaves nothing.
    let started = Instant::now();
    let failed = launch(&proxy, &client, 1);
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["status_code"], 503, "{failed}");
    assert!(started.elapsed() >= Duration::from_secs(LAUNCH_TIMEOUT_SECS - 1));
    assert!(cluster.sessions().is_empty(), "no Session is left behind");

    // Two Apps sharing an id: the next app list leaves both out, and the proxy says why in an
    // Event on each (as its ServiceAccount, on the real control plane).
    let twin: crd::App = serde_json::from_value(json!({"metadata": {"name": "firefox-twin"},
        "spec": {"title": "Firefox twin", "id": 2}}))
    .expect("an App");
    cluster
        .block("create the twin", apps.create(&Default::default(), &twin))
        .expect("twin created");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.client(), &cluster.namespace);
    let reported = support::poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let listed = run_driver(proxy.http_port, &client, &["check"]);
        let ids: Vec<i64> = listed["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_i64())
            .collect();
        let events = cluster
            .block("list events", events.list(&ListParams::default()))
            .expect("list events");
        let on_twin = events.items.iter().any(|e| {
            e.reason.as_deref() == Some(crd::reasons::DUPLICATE_APP_ID)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("firefox-twin")
        });
        (!ids.contains(&2) && on_twin).then_some(())
    });
    assert!(
        reported.is_some(),
        "a DuplicateAppID Event on the twin, and id 2 out of the app list\n{}",
        proxy.proc.tail()
    );
}

/// Issue 10: one watch per kind. The stores, the launcher, the PIN broker and the status
/// reporter read one shared reflector per kind, so start-up opens exactly one watch of each.
#[test]
fn the_proxy_watches_each_kind_once() {
    let cluster = Cluster::start();
    let proxy = start_proxy(&cluster, "a");
    // The status reporter starts right after the start-up line: give it time to open anything
    // it would open.
    std::thread::sleep(Duration::from_secs(2));
    let expected: std::collections::BTreeMap<String, usize> =
        ["apps", "pairings", "secrets", "sessions", "users"]
            .into_iter()
            .map(|resource| (resource.to_owned(), 1))
            .collect();
    assert_eq!(
        cluster
            .emulator
            .as_ref()
            .expect("running")
            .requests_by_resource("watch"),
        expected,
        "watch requests per resource at start-up"
    );
    proxy.proc.stop();
}

/// Issue 13: the proxy has no local passwords; without single sign-on, a login proxy or
/// `--allow-unauthenticated-pin`, its PIN page says beforehand that nobody can log in and
/// refuses a bare PIN (401).
#[test]
fn without_a_login_the_proxys_pin_page_says_so_and_refuses_a_bare_pin() {
    let cluster = Cluster::start();
    let proc = Proc::spawn(
        "proxy bare",
        proxy_command(&cluster)
            .env_remove("POD_NAMESPACE")
            .env("RUST_LOG", "info"),
    );
    let proxy = Direwolf::started(proc, "direwolf proxy started", START);
    assert!(
        proxy
            .proc
            .printed("a PIN is accepted only from someone who logged in")
    );
    let page = http_get(SocketAddr::from(([127, 0, 0, 1], proxy.http_port)), "/pin/");
    assert!(page.contains(r#"data-notice="configured""#), "{page}");
    assert!(page.contains("direwolf pairing approve"), "{page}");
    let (status, text) = support::post_pin(proxy.http_port, "1234", "0123456789ABCDEF");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("No one can log in on this server"), "{text}");
    assert!(
        proxy
            .proc
            .printed_line_with(&["direwolf::audit", "PIN entry without login refused"])
    );
}

#[test]
fn two_replicas_pin_posted_to_the_other_replica() {
    pin_posted_to_the_other_replica(Cluster::start());
}

#[test]
fn on_the_real_control_plane_two_replicas_pin_posted_to_the_other_replica() {
    if let Some(cluster) = Cluster::real() {
        pin_posted_to_the_other_replica(cluster);
    }
}

fn pin_posted_to_the_other_replica(cluster: Cluster) {
    let a = start_proxy(&cluster, "a");
    let b = start_proxy(&cluster, "b");
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
    let check = run_driver(b.http_port, &client, &["check"]);
    assert_eq!(check["serverinfo"]["pair_status"], "1", "{check}");
    let pairings: Api<crd::Pairing> = Api::namespaced(cluster.client(), &cluster.namespace);
    let listed = cluster
        .block("list pairings", pairings.list(&ListParams::default()))
        .expect("list pairings")
        .items;
    assert_eq!(listed.len(), 1);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client(), &cluster.namespace);
    let left = cluster
        .block(
            "list pending PINs",
            secrets.list(&ListParams::default().labels("direwolf/pin=pending")),
        )
        .expect("list secrets")
        .items;
    assert!(left.is_empty(), "the pending-PIN Secret is deleted after pairing");
    a.proc.stop();
    b.proc.stop();
}

#[test]
fn without_the_crds_the_proxy_exits_with_an_install_hint() {
    let cluster = Cluster::start_with(false);
    let out = Proc::spawn("proxy without CRDs", &mut proxy_command(&cluster)).finish(Duration::from_secs(60));
    let (status, text) = (out.status, out.stderr);
    assert!(!status.success(), "the proxy must fail without CRDs: {text}");
    assert!(
        text.contains("direwolf crd | kubectl apply --server-side -f -"),
        "the error names the install command: {text}"
    );
}

/// Single sign-on on the proxy's PIN page (issue 13): a person logs in at a real OpenID Connect
/// provider (`support::oidc`) and the Pairing belongs to the user the provider names. The web UI
/// on the proxy's admin port (which has no local passwords) logs in at the same provider, and a
/// second client's PIN entered there is that user's too.
#[test]
fn single_sign_on_decides_whose_pairing_the_proxy_stores() {
    require_moonlight_python();
    let dir = support::oidc::install_provider();
    let cluster = Cluster::start();
    let (http_port, admin_port) = (support::oidc::free_port(), support::oidc::free_port());
    let (_provider, issuer) = support::oidc::start_provider(
        &dir,
        &format!(
            "http://127.0.0.1:{http_port}/pin/oidc/callback,https://127.0.0.1:{admin_port}/ui/oidc/callback"
        ),
        None,
    );
    let proc = Proc::spawn(
        "proxy sso",
        support::direwolf()
            .arg("proxy")
            .args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string()])
            .args(["--https-port", "0", "--health-bind", "127.0.0.1:0"])
            .args(["--default-user", "alice", "--pin-timeout", "60"])
            .args([
                "--oidc-issuer",
                &issuer,
                "--oidc-client-id",
                support::oidc::CLIENT_ID,
            ])
            .args(["--admin-port", &admin_port.to_string(), "--admin-token-file"])
            .arg(admin_token_file(&cluster))
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .env("RUST_LOG", "info"),
    );
    let proxy = Direwolf::started(proc, "direwolf proxy started", START);
    let client = cluster.root.join("client");
    let driver = support::spawn_driver(proxy.http_port, &client, &["pair", "--pin", PIN]);
    let line = proxy.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = support::pin_link(&line);
    let report = support::oidc::browse(
        &format!("http://127.0.0.1:{http_port}/pin/oidc/login?secret={secret}"),
        Some(PIN),
    );
    assert_eq!(report["pin"][0], 200, "the PIN is accepted: {report}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing succeeds: {paired}");

    let fingerprint = launch(&proxy, &client, 0)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let pairings: Api<crd::Pairing> = Api::namespaced(cluster.client(), &cluster.namespace);
    let pairing = cluster
        .block("get pairing", pairings.get_opt(&fingerprint))
        .expect("get pairing")
        .expect("a Pairing named by the client certificate's fingerprint");
    assert_eq!(pairing.spec.user_reference.name, support::oidc::OIDC_USER);

    // The web UI: single sign-on, then the PIN of a second client.
    let driver = support::spawn_driver(
        proxy.http_port,
        &cluster.root.join("client2"),
        &["pair", "--pin", PIN],
    );
    let line = proxy.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = support::pin_link(&line);
    let report = support::oidc::browse_web_ui(&format!("https://127.0.0.1:{admin_port}"), secret, PIN);
    assert_eq!(report["session"]["user"], support::oidc::OIDC_USER, "{report}");
    assert_eq!(report["session"]["admin"], false, "{report}");
    assert_eq!(report["approve"][0], 204, "the PIN is accepted: {report}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing succeeds: {paired}");
    let owned = cluster
        .block("list pairings", pairings.list(&Default::default()))
        .expect("list pairings")
        .items
        .iter()
        .filter(|p| p.spec.user_reference.name == support::oidc::OIDC_USER)
        .count();
    assert_eq!(owned, 2, "both pairings are the user's");
}
