//! The Node this stand-in plays: registered with its labels and capacity, kept Ready, its Lease
//! in `kube-node-lease` renewed every 10 s (the node lifecycle controller taints a node whose
//! Lease stops), and, with `--schedule`, a minimal scheduler for API servers that have none.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Heartbeat period (Node condition and Lease).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// The Lease's duration.
const LEASE_SECONDS: i32 = 40;
/// Field manager of the stand-in's writes.
pub const MANAGER: &str = "direwolf-kubelet";

/// What the Node says about itself.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its labels (with `kubernetes.io/hostname`, `os` and `arch` added).
    pub labels: BTreeMap<String, String>,
    /// Capacity and allocatable.
    pub capacity: BTreeMap<String, Quantity>,
    /// Its InternalIP (the pods' hostIP).
    pub address: Ipv4Addr,
}

impl NodeSpec {
    /// The labels the Node carries.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            (
                "kubernetes.io/arch".to_owned(),
                std::env::consts::ARCH.replace("x86_64", "amd64"),
            ),
        ]);
        labels.extend(self.labels.clone());
        labels
    }

    fn status(&self) -> serde_json::Value {
        let now = Timestamp::now().to_string();
        json!({
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "addresses": [
                {"type": "InternalIP", "address": self.address.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "direwolf-kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "kubeletVersion": concat!("direwolf-kubelet/", env!("CARGO_PKG_VERSION")),
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "containerRuntimeVersion": "direwolf-kubelet://processes",
                "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        })
    }
}

/// Creates the Node or updates its labels; then sets its status.
pub async fn register(client: &Client, spec: &NodeSpec) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec.name, "labels": spec.all_labels()},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": spec.all_labels()}});
            nodes
                .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Err(e) => return Err(e),
    }
    heartbeat(client, spec).await
}

/// Posts the Ready condition and renews the Lease.
pub async fn heartbeat(client: &Client, spec: &NodeSpec) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({"status": spec.status()});
    nodes
        .patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": spec.name},
        "spec": {
            "holderIdentity": spec.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            // A MicroTime: the API server refuses more than six fractional digits.
            "renewTime": MicroTime(Timestamp::now()),
        },
    });
    leases
        .patch(
            &spec.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}

/// Registers the Node and keeps it Ready forever (errors are logged and retried).
pub async fn keep_ready(client: Client, spec: NodeSpec) {
    let mut registered = false;
    loop {
        let result = if registered {
            heartbeat(&client, &spec).await
        } else {
            register(&client, &spec).await
        };
        match result {
            Ok(()) if !registered => {
                tracing::info!(node = %spec.name, "node registered and Ready");
                registered = true;
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(node = %spec.name, error = %e, "node heartbeat failed"),
        }
        tokio::time::sleep(if registered {
            HEARTBEAT
        } else {
            Duration::from_secs(1)
        })
        .await;
    }
}

/// Whether `pod`'s nodeSelector is satisfied by `labels`.
pub fn selects(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    selector.is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Binds every unscheduled pod whose nodeSelector matches the Node, every second, forever.
pub async fn schedule(client: Client, spec: NodeSpec) {
    let labels = spec.all_labels();
    let pods: Api<Pod> = Api::all(client.clone());
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                let unscheduled = list.items.into_iter().filter(|p| {
                    let s = p.spec.as_ref();
                    s.is_some_and(|s| s.node_name.is_none()) && selects(p, &labels)
                });
                for pod in unscheduled {
                    if let Err(e) = bind(&client, &pod, &spec.name).await {
                        tracing::warn!(pod = ?pod.metadata.name, error = %e, "binding failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing pods to schedule failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Binds `pod` to `node`: the `binding` subresource, or, where the API server has none (the
/// emulator), a patch of `spec.nodeName`.
async fn bind(client: &Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding: Binding = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }))
    .map_err(kube::Error::SerdeError)?;
    let bound: kube::Result<serde_json::Value> = pods
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match bound {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {
            let patch = json!({"spec": {"nodeName": node}});
            pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}
