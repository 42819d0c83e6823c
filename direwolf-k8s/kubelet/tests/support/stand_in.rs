//! A `direwolf-kubelet` started by a test, with a bridge, pod CIDR and state directory of its
//! own (`dwkt<n>`, `10.<78+n>.0.0/16`) so that stand-ins of parallel tests do not meet. It
//! stops with the test process (`--exit-with-pid`) and, at the latest, when dropped; its Node
//! is then deleted, so that no later pod of a shared control plane is scheduled onto it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::testenv::ControlPlane;

/// The image map of the tests: which local program stands for which image.
pub const IMAGES: &str = "\
direwolf-test/shell:1: {argv: [sh, -c]}
direwolf-test/python:1: {argv: [/usr/bin/python3]}
direwolf-test/sleep:1: {argv: [sleep]}
";

/// The stand-in needs root (network and mount namespaces), as the other network-namespace
/// tests of the workspace do: a test fails without it rather than pass unproven.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id -u runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "direwolf-kubelet creates network and mount namespaces: this test must run as root"
    );
}

/// A running stand-in.
#[derive(Debug)]
pub struct StandIn {
    child: Option<Child>,
    /// kubectl and the admin kubeconfig, to delete the Node at the end.
    kubectl: (PathBuf, PathBuf),
    /// The Node it plays.
    pub node: String,
    /// Its bridge (and the prefix of its pods' network namespaces).
    pub bridge: String,
    /// Its bridge address: the pods' gateway, `KUBERNETES_SERVICE_HOST`.
    pub gateway: Ipv4Addr,
    /// Its pod CIDR's second octet.
    pub octet: u8,
    /// Its state directory (volumes, logs).
    pub state: tempfile::TempDir,
}

impl StandIn {
    /// Starts stand-in number `n` (1–20) for node `node` with labels `labels` (`k=v,…`).
    pub fn start(cp: &ControlPlane, n: u8, node: &str, labels: &str) -> StandIn {
        let octet = 78 + n;
        let state = tempfile::tempdir().expect("a state directory");
        let images = state.path().join("images.yaml");
        std::fs::write(&images, IMAGES).expect("write the image map");
        let log = std::fs::File::create(state.path().join("kubelet.log")).expect("the stand-in's log");
        let bridge = format!("dwkt{n}");
        let child = Command::new(env!("CARGO_BIN_EXE_direwolf-kubelet"))
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args(["--node-name", node, "--node-labels", labels])
            .args(["--capacity", "cpu=4,memory=8Gi,pods=20"])
            .args(["--pod-cidr", &format!("10.{octet}.0.0/16"), "--bridge", &bridge])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--images")
            .arg(&images)
            .args(["--exit-with-pid", &std::process::id().to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("direwolf-kubelet starts");
        StandIn {
            child: Some(child),
            kubectl: (cp.kubectl.clone(), cp.kubeconfig.clone()),
            node: node.to_owned(),
            bridge,
            gateway: Ipv4Addr::new(10, octet, 0, 1),
            octet,
            state,
        }
    }

    /// Whether `ip` is in the stand-in's pod CIDR.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..2] == [10, self.octet]
    }

    /// The stand-in's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("kubelet.log")).unwrap_or_default()
    }

    /// A container's log.
    pub fn container_log(&self, ns: &str, pod: &str, container: &str) -> String {
        let path = self
            .state
            .path()
            .join("logs")
            .join(format!("{ns}_{pod}_{container}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The host directory of volume `volume` of pod `uid`.
    pub fn volume_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.state
            .path()
            .join("pods")
            .join(uid)
            .join("volumes")
            .join(volume)
    }

    /// The network namespace file of pod `uid`.
    pub fn netns(&self, uid: &str) -> PathBuf {
        Path::new("/run/netns").join(format!("{}-{uid}", self.bridge))
    }

    /// The network namespaces of this stand-in's pods.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.bridge);
        std::fs::read_dir("/run/netns")
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the bridge exists.
    pub fn bridge_exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.bridge).exists()
    }

    /// SIGTERM, then its exit status (within `timeout`, else a panic).
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.terminate(timeout).unwrap_or_else(|| {
            panic!(
                "direwolf-kubelet did not stop within {timeout:?} of SIGTERM:\n{}",
                self.log()
            )
        })
    }

    /// SIGTERM, then its exit status within `timeout`; else SIGKILL and `None`.
    fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let status = self.terminate(Duration::from_secs(40));
        if std::thread::panicking() {
            eprintln!("direwolf-kubelet ({status:?}) log:\n{}", self.log());
        }
        let (kubectl, kubeconfig) = &self.kubectl;
        let deleted = Command::new(kubectl)
            .args([
                "delete",
                "node",
                &self.node,
                "--wait=false",
                "--request-timeout=30s",
            ])
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("the Node {} of the stand-in could not be deleted", self.node);
        }
    }
}

/// Whether any process of process group `pgid` is alive.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok).any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …: comm may hold spaces, so split after its ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields.first() != Some(&"Z")
    })
}
