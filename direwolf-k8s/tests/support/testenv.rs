//! The real Kubernetes control plane of the tests (`scripts/kube-testenv`: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and fake GPU nodes of one Kubernetes release), started
//! once per test binary; each test takes a namespace of its own.
//!
//! `DIREWOLF_TESTENV_DIR=DIR` uses a control plane already started with
//! `scripts/kube-testenv start DIR` (fast local iterations). `DIREWOLF_TESTENV=off` skips the
//! tests that need one, locally only: where `CI` is set the tests fail instead, so CI never
//! skips them silently.
//!
//! Shared by the test crates of `direwolf-k8s`, `direwolf-kubelet` and `direwolf` (`bins/tests/support`
//! and `direwolf-k8s/kubelet/tests/support` include this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// A build of the control plane (cold: compiling Kubernetes) may take this long; it downloads
/// Go modules, so it is a network wait too.
const BUILD_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// `scripts/kube-testenv start` with the binary built (its own wait is 120 s).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Each API call of the helpers below.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running control plane: its directory, admin kubeconfig and kubectl.
#[derive(Debug)]
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

fn repo_root() -> PathBuf {
    // The crates that include this file sit one or two levels below the workspace root.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .find(|dir| dir.join("scripts/kube-testenv").is_file())
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// The control plane of this test binary, started on first use and stopped when the binary
/// exits (it watches this process). `None` only when `DIREWOLF_TESTENV=off` outside CI.
///
/// # Panics
/// When the control plane cannot start (the script's one-line reason), or when opted out in CI.
pub fn control_plane() -> Option<&'static ControlPlane> {
    if std::env::var("DIREWOLF_TESTENV").as_deref() == Ok("off") {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty() || ci == "false",
            "DIREWOLF_TESTENV=off is refused in CI: the real control plane tests must run"
        );
        eprintln!("skipped: DIREWOLF_TESTENV=off (the real control plane tests did not run)");
        return None;
    }
    match CONTROL_PLANE.get_or_init(start) {
        Ok(cp) => Some(cp),
        Err(why) => panic!("the real control plane did not start: {why}"),
    }
}

fn start() -> Result<ControlPlane, String> {
    let dir = match std::env::var_os("DIREWOLF_TESTENV_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = repo_root().join("scripts/kube-testenv");
            run(Command::new(&script).arg("build"), BUILD_TIMEOUT)?;
            let dir = std::env::temp_dir().join(format!("direwolf-testenv-{}", std::process::id()));
            let mut start = Command::new(&script);
            start
                .arg("start")
                .arg(&dir)
                .env("KUBE_TESTENV_OWNER_PID", std::process::id().to_string());
            run(&mut start, START_TIMEOUT)?;
            dir
        }
    };
    let cp = ControlPlane {
        kubeconfig: dir.join("kubeconfig"),
        kubectl: dir.join("bin/kubectl"),
        dir,
    };
    if !cp.kubeconfig.is_file() || !cp.kubectl.exists() {
        return Err(format!("{} has no kubeconfig or bin/kubectl", cp.dir.display()));
    }
    Ok(cp)
}

/// Runs `cmd` to its end within `timeout`; its stdout, or its last stderr line as the error.
fn run(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let stdout = std::thread::spawn(move || stdout.map(std::io::read_to_string));
    let stderr = std::thread::spawn(move || stderr.map(std::io::read_to_string));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |t: std::thread::JoinHandle<Option<std::io::Result<String>>>| {
        t.join().ok().flatten().and_then(Result::ok).unwrap_or_default()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    if status.success() {
        return Ok(stdout);
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Err(format!("{what} failed ({status}): {last}"))
}

impl ControlPlane {
    /// A client with the admin credentials, its default namespace `namespace`.
    pub async fn client(&self, namespace: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("the admin kubeconfig reads");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the admin kubeconfig is usable");
        config.default_namespace = namespace.to_owned();
        Client::try_from(config).expect("a client")
    }

    /// Runs kubectl with the admin credentials (60 s at most); its stdout.
    ///
    /// # Panics
    /// When kubectl fails, with its last stderr line.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.kubectl);
        cmd.args(args)
            .arg("--request-timeout=30s")
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo_root());
        run(&mut cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes to `path` a kubeconfig that authenticates as ServiceAccount `account` of
    /// `namespace` (a token from the TokenRequest API, `kubectl create token`), its default
    /// namespace `namespace`: what a pod of that account uses, RBAC included.
    pub fn service_account_kubeconfig(&self, namespace: &str, account: &str, path: &Path) {
        let token = self.kubectl(&["create", "token", account, "-n", namespace, "--duration=2h"]);
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("the admin kubeconfig");
        let mut config: serde_json::Value = serde_saphyr::from_str(&admin).expect("a kubeconfig");
        config["users"] = serde_saphyr::from_str(&format!(
            "[{{name: {account}, user: {{token: {}}}}}]",
            token.trim()
        ))
        .expect("a users list");
        let context = &mut config["contexts"][0]["context"];
        context["user"] = account.into();
        context["namespace"] = namespace.into();
        let text = serde_saphyr::to_string(&config).expect("the kubeconfig serialises");
        std::fs::write(path, text).expect("write the service-account kubeconfig");
    }

    /// A new namespace for one test, named `{prefix}-…` and unique; the admin client in it.
    pub async fn namespace(&self, prefix: &str) -> (Client, String) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "{}-{}-{nanos:x}",
            prefix.trim_matches('-'),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let client = self.client(&name).await;
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("a namespace");
        within(
            "create the test namespace",
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns),
        )
        .await
        .expect("the test namespace is created");
        (client, name)
    }

    /// Installs `crds_yaml` by server-side apply (idempotent: the CRDs are cluster-wide, shared
    /// by every test of the binary) and waits until each is Established.
    pub async fn install_crds(&self, crds_yaml: &str) {
        let client = self.client("default").await;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let params = PatchParams::apply("direwolf-tests").force();
        let crds: Vec<CustomResourceDefinition> =
            serde_saphyr::from_multiple(crds_yaml).expect("CRD documents");
        for crd in crds {
            let name = crd.metadata.name.clone().expect("a named CRD");
            within("apply a CRD", api.patch(&name, &params, &Patch::Apply(&crd)))
                .await
                .unwrap_or_else(|e| panic!("CRD {name} is refused: {e}"));
            wait_established(&api, &name).await;
        }
    }
}

/// Waits (30 s at most) until CRD `name` is Established.
pub async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) {
    let established = kube::runtime::wait::conditions::is_crd_established();
    within(
        &format!("CRD {name} Established"),
        kube::runtime::wait::await_condition(api.clone(), name, established),
    )
    .await
    .unwrap_or_else(|e| panic!("waiting for CRD {name}: {e}"));
}

/// Awaits `f` for at most 30 s (a timeout means the API server did not answer).
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {CALL_TIMEOUT:?}: {what}"))
}
