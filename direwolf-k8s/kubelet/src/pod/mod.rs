//! One pod's worker: its sandbox (network namespace, volumes, credentials), its init containers
//! then its containers, its status (via `pods/status`), and its end: on a deletionTimestamp,
//! SIGTERM, SIGKILL after the grace period, sandbox removed, pod object deleted with grace 0.

mod container;
mod probes;
mod sandbox;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::context::Context;
use crate::net::PodNet;
use state::{ContainerRecord, PodRecord, Run};

/// Where a container is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `init[i]`.
    Init(usize),
    /// `main[i]`.
    Main(usize),
}

impl Slot {
    /// An init container's slot.
    pub fn is_init(self) -> bool {
        matches!(self, Slot::Init(_))
    }
}

/// A pod's record, and a signal that it changed.
#[derive(Debug, Default)]
pub struct Shared {
    record: Mutex<PodRecord>,
    net: Mutex<Option<PodNet>>,
    changed: Notify,
}

impl Shared {
    /// Changes the record of one container.
    pub fn update(&self, slot: Slot, f: impl FnOnce(&mut ContainerRecord)) {
        self.with(|p| {
            let c = match slot {
                Slot::Init(i) => p.init.get_mut(i),
                Slot::Main(i) => p.main.get_mut(i),
            };
            if let Some(c) = c {
                f(c);
            }
        });
    }

    /// Changes the pod's record.
    pub fn with<T>(&self, f: impl FnOnce(&mut PodRecord) -> T) -> T {
        let out = f(&mut self.record.lock());
        self.changed.notify_one();
        out
    }
}

/// How a pod's worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// SIGTERM, then SIGKILL after this.
    pub grace: Duration,
    /// Delete the pod object afterwards (the pod is being deleted), or leave it (the stand-in
    /// is stopping, or the object is already gone).
    pub delete: bool,
}

/// The grace period of a pod being deleted.
fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Runs pod `updates` (its latest object) until it is deleted or `end` says so.
pub async fn run(
    ctx: Arc<Context>,
    mut updates: watch::Receiver<Pod>,
    mut end: watch::Receiver<Option<Ending>>,
) {
    let pod = updates.borrow().clone();
    let (ns, name) = (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let shared = Arc::new(Shared::default());
    shared.with(|p| {
        let spec = pod.spec.clone().unwrap_or_default();
        let record = |c: &k8s_openapi::api::core::v1::Container| {
            ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default())
        };
        p.init = spec.init_containers.iter().flatten().map(record).collect();
        p.main = spec.containers.iter().map(record).collect();
        p.initialized = p.init.is_empty();
        p.start = Some(Timestamp::now());
    });
    let publisher = tokio::spawn(publish(ctx.clone(), ns.clone(), name.clone(), shared.clone()));
    let ending = async {
        tokio::select! {
            e = end.wait_for(Option::is_some) => e.ok().and_then(|e| *e).unwrap_or(Ending { grace: Duration::ZERO, delete: false }),
            p = updates.wait_for(|p| p.metadata.deletion_timestamp.is_some()) => match p {
                Ok(p) => Ending { grace: grace_of(&p), delete: true },
                Err(_) => Ending { grace: Duration::ZERO, delete: false },
            },
        }
    };
    let (stop_tx, stop_rx) = watch::channel(None);
    let life = live(&ctx, &pod, &shared, stop_rx);
    tokio::pin!(ending, life);
    let ending = tokio::select! {
        e = &mut ending => { let _ = stop_tx.send(Some(e.grace)); life.await; e }
        () = &mut life => ending.await,
    };
    let _ = stop_tx.send(Some(ending.grace));
    tracing::info!(pod = %format!("{ns}/{name}"), grace = ?ending.grace, delete = ending.delete, "pod stopped");
    publisher.abort();
    let net = shared.net.lock().take();
    if let Some(net) = net {
        let network = ctx.network.clone();
        if let Err(e) = network.detach(&net).await {
            tracing::warn!(pod = %name, error = %e, "removing the network namespace failed");
        }
    }
    let dir = ctx.pod_dir(&uid);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "removing the pod's directory failed");
    }
    if ending.delete {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "deleting the pod failed"),
        }
    }
}

/// Sets up the sandbox and runs the containers until they end for good or the pod stops.
async fn live(ctx: &Context, pod: &Pod, shared: &Shared, mut stop: watch::Receiver<Option<Duration>>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = ctx.pod_dir(&uid);
    let Some((net, sandbox)) = setup(ctx, pod, shared, &pod_dir, &mut stop).await else {
        return;
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let job = |slot, c| container::Job {
        ctx,
        pod,
        spec: c,
        slot,
        shared,
        extra_mounts: &sandbox.extra_mounts,
        volumes: &sandbox.volumes,
        net: &net,
        pod_dir: pod_dir.clone(),
        stop: stop.clone(),
    };
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        match job(Slot::Init(i), c).supervise().await {
            None => return,
            Some(0) => {}
            Some(_) => {
                shared.with(|p| p.finished = Some("Failed".to_owned()));
                return;
            }
        }
    }
    shared.with(|p| p.initialized = true);
    let all = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| job(Slot::Main(i), c).supervise());
    let codes = futures::future::join_all(all).await;
    if codes.iter().all(Option::is_some) {
        shared.with(|p| p.finished = Some(state::final_phase(p).to_owned()));
    }
}

/// The pod's network and sandbox, retried every 2 s until they work or the pod stops.
async fn setup(
    ctx: &Context,
    pod: &Pod,
    shared: &Shared,
    pod_dir: &std::path::Path,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Option<(PodNet, sandbox::Sandbox)> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    loop {
        let net = shared.net.lock().clone();
        let result = match net {
            Some(net) => sandbox::prepare(ctx, pod, &net, pod_dir).await.map(|s| (net, s)),
            None => match ctx.network.attach(&uid).await {
                Ok(net) => {
                    *shared.net.lock() = Some(net.clone());
                    shared.with(|p| p.ip = Some(net.ip));
                    continue;
                }
                Err(e) => Err(anyhow::Error::new(e).context("pod network")),
            },
        };
        match result {
            Ok(ready) => return Some(ready),
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(pod = ?pod.metadata.name, error = %message, "pod sandbox not ready");
                shared.with(|p| {
                    for c in p.init.iter_mut().chain(p.main.iter_mut()) {
                        c.state = Run::Waiting("ContainerCreating".to_owned(), message.clone());
                    }
                });
            }
        }
        let stopping = stop.wait_for(Option::is_some);
        if tokio::time::timeout(Duration::from_secs(2), stopping)
            .await
            .is_ok()
        {
            return None;
        }
    }
}

/// Posts the pod's status whenever its record changes (and every 5 s if a post failed).
async fn publish(ctx: Arc<Context>, ns: String, name: String, shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut since: BTreeMap<&'static str, (bool, Timestamp)> = BTreeMap::new();
    let mut last: Option<serde_json::Value> = None;
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.changed.notified()).await;
        let record = shared.record.lock().clone();
        for (kind, ok) in state::conditions(&record) {
            if since.get(kind).is_none_or(|(was, _)| *was != ok) {
                since.insert(kind, (ok, Timestamp::now()));
            }
        }
        let status = state::status_json(&record, ctx.node.address, &since);
        if last.as_ref() == Some(&status) {
            continue;
        }
        let patch = serde_json::json!({"status": status});
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => last = Some(status),
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "status update failed");
                last = None;
            }
        }
    }
}
