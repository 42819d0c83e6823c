//! One container's life in a pod: resolve its image, env and mounts, run it, report it, probe
//! it, restart it by the pod's restartPolicy with backoff, and stop it (SIGTERM, then SIGKILL
//! after the grace period) when the pod goes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::state::{Exit, Run};
use super::{Shared, Slot};
use crate::context::Context;
use crate::env::{PodAddresses, container_env};
use crate::images::expand;
use crate::net::PodNet;
use crate::process::{self, Launch, Mount};

/// First restart delay; doubles up to [`BACKOFF_MAX`] (Kubernetes: 10 s to 5 min; shorter
/// here, for tests).
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long restarts without delay from the start again.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Everything a container's supervisor needs.
pub struct Job<'a> {
    /// Shared state.
    pub ctx: &'a Context,
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub spec: &'a Container,
    /// Where it is recorded.
    pub slot: Slot,
    /// The pod's record.
    pub shared: &'a Shared,
    /// The pod's mounts besides the volumeMounts (credentials, /etc/hosts).
    pub extra_mounts: &'a [Mount],
    /// Volume name → host directory.
    pub volumes: &'a HashMap<String, PathBuf>,
    /// The pod's network.
    pub net: &'a PodNet,
    /// The pod's directory.
    pub pod_dir: PathBuf,
    /// `Some(grace)` once the pod must stop.
    pub stop: watch::Receiver<Option<Duration>>,
}

/// Whether a container that exited with `code` runs again.
fn restarts(policy: &str, init: bool, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ if init => code != 0,
        _ => true,
    }
}

impl Job<'_> {
    fn set(&self, f: impl FnOnce(&mut super::state::ContainerRecord)) {
        self.shared.update(self.slot, f);
    }

    fn policy(&self) -> String {
        let p = self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone());
        p.unwrap_or_else(|| "Always".to_owned())
    }

    /// Waits for the stop signal (or `limit`); true when stopping.
    async fn stopped_within(&mut self, limit: Duration) -> bool {
        if self.stop.borrow().is_some() {
            return true;
        }
        let wait = self.stop.wait_for(Option::is_some);
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Runs the container until it ends for good (its last exit code) or the pod stops (None).
    pub async fn supervise(mut self) -> Option<i32> {
        let mut backoff = BACKOFF_START;
        loop {
            if self.stop.borrow().is_some() {
                return None;
            }
            let launch = match self.launch().await {
                Ok(launch) => launch,
                Err((reason, message)) => {
                    tracing::warn!(container = %self.spec.name, %reason, %message, "container cannot start");
                    self.set(|c| c.state = Run::Waiting(reason, message));
                    if self.stopped_within(Duration::from_secs(2)).await {
                        return None;
                    }
                    continue;
                }
            };
            let began = Instant::now();
            let exit = self.run_once(&launch).await;
            let code = exit.code;
            self.set(|c| {
                c.state = Run::Terminated(exit);
                c.ready = false;
            });
            if self.stop.borrow().is_some() || !restarts(&self.policy(), self.slot.is_init(), code) {
                return Some(code);
            }
            if began.elapsed() > BACKOFF_RESET {
                backoff = BACKOFF_START;
            }
            let message = format!(
                "back-off {backoff:?} restarting failed container {}",
                self.spec.name
            );
            self.set(|c| {
                c.last = Some(std::mem::replace(
                    &mut c.state,
                    Run::Waiting("CrashLoopBackOff".into(), message),
                ));
                c.restarts += 1;
            });
            if self.stopped_within(backoff).await {
                return None;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Starts the process, probes it, and waits for its exit or the pod's stop.
    async fn run_once(&mut self, launch: &Launch) -> Exit {
        let mut child = match process::spawn(launch) {
            Ok(child) => child,
            Err(e) => {
                let now = Timestamp::now();
                return Exit {
                    code: 128,
                    reason: format!("StartError: {e:#}"),
                    started: now,
                    finished: now,
                };
            }
        };
        let started = Timestamp::now();
        let pid = child.id().unwrap_or_default();
        tracing::info!(container = %self.spec.name, pid, argv = ?launch.argv, "container started");
        let has_readiness = self.spec.readiness_probe.is_some();
        self.set(|c| {
            c.state = Run::Running(started);
            c.pid = Some(pid);
            c.ready = !has_readiness && !self.slot.is_init();
        });
        let probes = super::probes::Probes {
            spec: self.spec,
            shared: self.shared,
            slot: self.slot,
            pod_ip: self.net.ip,
            pid,
            env: launch.env.clone(),
        };
        let mut stop = self.stop.clone();
        let stopping = async move {
            let grace = stop.wait_for(Option::is_some).await;
            grace.ok().and_then(|g| *g).unwrap_or_default()
        };
        let status = tokio::select! {
            status = child.wait() => status,
            grace = stopping => terminate(&mut child, pid, grace).await,
            () = probes.run() => {
                tracing::info!(container = %self.spec.name, "liveness probe failed: killing the container");
                process::signal_group(pid, Signal::SIGKILL);
                child.wait().await
            }
        };
        let code = status.map_or(-1, process::exit_code);
        let reason = match code {
            0 => "Completed",
            137 => "Killed",
            _ => "Error",
        };
        tracing::info!(container = %self.spec.name, code, "container exited");
        Exit {
            code,
            reason: reason.to_owned(),
            started,
            finished: Timestamp::now(),
        }
    }

    /// The launch of this container, or the waiting reason and message why it cannot start.
    async fn launch(&self) -> Result<Launch, (String, String)> {
        let image_name = self.spec.image.clone().unwrap_or_default();
        let Some(image) = self.ctx.images.get(&image_name) else {
            let message = format!(
                "image {image_name:?} is not in the image map of direwolf-kubelet (--images / DIREWOLF_KUBELET_IMAGES)"
            );
            return Err(("ImageNotMapped".to_owned(), message));
        };
        let addr = PodAddresses {
            pod_ip: self.net.ip,
            host_ip: self.ctx.node.address,
        };
        let mut env = container_env(&self.ctx.client, self.pod, self.spec, image, addr)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
        env.entry("KUBERNETES_SERVICE_HOST".into())
            .or_insert_with(|| self.ctx.api.host.to_string());
        env.entry("KUBERNETES_SERVICE_PORT".into())
            .or_insert_with(|| self.ctx.api.port.to_string());
        env.entry("HOSTNAME".into())
            .or_insert_with(|| self.pod.metadata.name.clone().unwrap_or_default());
        let args = self.spec.args.clone().unwrap_or_default();
        let argv: Vec<String> = match &self.spec.command {
            Some(command) => command.iter().chain(&args).map(|a| expand(a, &env)).collect(),
            None => image.argv.iter().chain(&args).map(|a| expand(a, &env)).collect(),
        };
        let mut mounts = self.extra_mounts.to_vec();
        for m in self.spec.volume_mounts.iter().flatten() {
            let Some(dir) = self.volumes.get(&m.name) else {
                return Err((
                    "CreateContainerConfigError".into(),
                    format!("volumeMount {}: no volume {0}", m.name),
                ));
            };
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let path = dir.join(sub);
                    std::fs::create_dir_all(&path).map_err(|e| {
                        (
                            "CreateContainerConfigError".into(),
                            format!("subPath {}: {e}", path.display()),
                        )
                    })?;
                    path
                }
                None => dir.clone(),
            };
            mounts.push(Mount {
                source,
                target: m.mount_path.clone().into(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        let (ns, pod) = (
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default(),
        );
        Ok(Launch {
            netns: self.net.netns_path(),
            mounts,
            env,
            argv,
            working_dir: self.spec.working_dir.clone(),
            log: self.ctx.log_path(ns, pod, &self.spec.name),
            script: self.pod_dir.join("run").join(format!("{}.sh", self.spec.name)),
        })
    }
}

/// SIGTERM to the container's process group, SIGKILL after `grace`.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: u32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    process::signal_group(pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            process::signal_group(pgid, Signal::SIGKILL);
            status
        }
        Err(_) => {
            process::signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::restarts;

    #[test]
    fn restart_policy() {
        assert!(restarts("Always", false, 0));
        assert!(!restarts("Always", true, 0));
        assert!(restarts("Always", true, 1));
        assert!(!restarts("OnFailure", false, 0));
        assert!(restarts("OnFailure", false, 2));
        assert!(!restarts("Never", false, 2));
    }
}
