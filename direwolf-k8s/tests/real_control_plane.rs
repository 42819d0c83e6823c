//! What the real control plane (`scripts/kube-testenv`, issue 11) promises the tests that use
//! it, and the operator after them: fake nodes with `nvidia.com/gpu` that the scheduler places
//! GPU pods on (and not more than they have), pods on them Running, and the garbage collector
//! removing what a deleted Deployment owned.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::testenv;

/// Fake nodes per control plane and GPUs per node (`testenv serve` defaults).
const GPUS_PER_NODE: u32 = 2;

fn gpu_pod(name: &str, gpus: u32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "game", "image": "example.invalid/game:1",
            "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}
        }]}
    }))
    .expect("a pod")
}

/// Polls `pods` (every 200 ms, 30 s at most) until `done` holds for pod `name`.
async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    testenv::within(what, async {
        loop {
            let pod = pods.get(name).await.expect("get the pod");
            if done(&pod) {
                break pod;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

/// The ServiceAccount admission plugin refuses pods until the namespace's `default` account
/// exists, which the service-account controller creates.
async fn namespace_with_default_account(cp: &testenv::ControlPlane, prefix: &str) -> (Client, String) {
    let (client, namespace) = cp.namespace(prefix).await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &namespace);
    testenv::within("the default ServiceAccount", async {
        while accounts.get_opt("default").await.expect("get").is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    (client, namespace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_pods_run_on_the_fake_nodes_up_to_their_capacity() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, namespace) = namespace_with_default_account(cp, "gpus").await;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let post = PostParams::default();
    testenv::within("create", pods.create(&post, &gpu_pod("fits", GPUS_PER_NODE)))
        .await
        .expect("create a pod using a whole node's GPUs");
    let running = wait_pod(&pods, "fits", "the GPU pod Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    let node = running.spec.and_then(|s| s.node_name).expect("scheduled");
    assert!(node.starts_with("testenv-node-"), "{node}");

    // More GPUs than any node has: the scheduler leaves it Pending and says why.
    testenv::within(
        "create",
        pods.create(&post, &gpu_pod("too-big", GPUS_PER_NODE + 1)),
    )
    .await
    .expect("create");
    let pending = wait_pod(&pods, "too-big", "the oversized pod marked unschedulable", |p| {
        let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.is_some_and(|c| c.iter().any(|c| c.reason.as_deref() == Some("Unschedulable")))
    })
    .await;
    let status = pending.status.expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let why = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.message);
    assert!(why.is_some_and(|m| m.contains("Insufficient nvidia.com/gpu")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_deployment_s_replica_sets_and_pods_are_collected() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, namespace) = namespace_with_default_account(cp, "gc").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}
        }
    }))
    .expect("a deployment");
    testenv::within("create", deployments.create(&PostParams::default(), &deployment))
        .await
        .expect("create the deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client, &namespace);
    let count = |api: &Api<Pod>| {
        let api = api.clone();
        async move { api.list(&ListParams::default()).await.expect("list").items.len() }
    };
    testenv::within("two pods", async {
        while count(&pods).await < 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    // Background deletion: the garbage collector removes the ReplicaSet, then its pods (kwok
    // finishes their graceful deletion as a kubelet would).
    testenv::within("delete", deployments.delete("web", &DeleteParams::background()))
        .await
        .expect("delete the deployment");
    testenv::within("everything the Deployment owned is gone", async {
        loop {
            let sets = replica_sets
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
                .len();
            if sets == 0 && count(&pods).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}
