//! The stand-in against the real control plane (`scripts/kube-testenv`): its Node registers
//! Ready, the real scheduler places a pod on it, the pod's containers run as local processes in
//! a network namespace the host reaches, with env, volumes, probes and in-cluster credentials;
//! deleting the pod, or stopping the stand-in, leaves nothing behind.
//!
//! Each test runs its own stand-in (bridge `dwkt<n>`, pods in `10.<78+n>.0.0/16`) in a
//! namespace of its own. The API server's certificate names `10.77.0.1` (the default bridge
//! address) and the `kubernetes.default.svc` names, so pods here reach the API by name, through
//! the `/etc/hosts` the stand-in gives them.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::stand_in::{self, StandIn};
use support::{http, testenv};

/// How long a pod may take to reach a state (scheduling, sandbox, probes).
const POD_WAIT: Duration = Duration::from_secs(60);

fn object<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

/// Polls `check` every 250 ms until it gives a value, for `limit` at most.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let polling = async {
        loop {
            if let Some(v) = check().await {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(limit, polling)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// Waits until pod `name` satisfies `done`.
async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    eventually(what, POD_WAIT, async || {
        let pod = pods.get_opt(name).await.expect("get the pod")?;
        done(&pod).then_some(pod)
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn condition(p: &Pod, kind: &str) -> bool {
    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

fn pod_ip(p: &Pod) -> Ipv4Addr {
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .expect("a podIP");
    ip.parse().expect("an IPv4 podIP")
}

/// The process group of the pod's first container (its containerID is `process://<pid>`).
fn container_pid(p: &Pod) -> u32 {
    let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    let id = statuses
        .and_then(|s| s.first())
        .and_then(|c| c.container_id.as_deref());
    let pid = id
        .and_then(|id| id.strip_prefix("process://"))
        .expect("a process:// containerID");
    pid.parse().expect("a pid")
}

/// A namespace whose `default` ServiceAccount exists (the admission plugin wants it).
async fn namespace(cp: &testenv::ControlPlane, prefix: &str) -> (Client, String) {
    let (client, ns) = cp.namespace(prefix).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the default ServiceAccount",
        Duration::from_secs(30),
        async || accounts.get_opt("default").await.expect("get").map(|_| ()),
    )
    .await;
    (client, ns)
}

/// Waits until the stand-in's Node is Ready and returns it.
async fn ready_node(client: &Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the stand-in's Node Ready", Duration::from_secs(30), async || {
        let node = nodes.get_opt(name).await.expect("get the node")?;
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
        let ready = conditions
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(node)
    })
    .await
}

/// Lets the namespace's `default` account read its pods (for the in-cluster call).
async fn grant_pod_reading(client: &Client, ns: &str) {
    let role: Role = object(json!({
        "metadata": {"name": "read-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }));
    let binding: RoleBinding = object(json!({
        "metadata": {"name": "read-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }));
    let pp = PostParams::default();
    testenv::within(
        "create a Role",
        Api::<Role>::namespaced(client.clone(), ns).create(&pp, &role),
    )
    .await
    .expect("the Role");
    testenv::within(
        "create a RoleBinding",
        Api::<RoleBinding>::namespaced(client.clone(), ns).create(&pp, &binding),
    )
    .await
    .expect("the RoleBinding");
}

/// Serves `/srv` (an emptyDir) on 8080 after writing what its env and secret volume say; Ready
/// once `/srv/ready` exists.
fn web_pod(selector: &Value) -> Pod {
    let script = "echo \"$MY_IP\" > /srv/ip; echo \"$PASSWORD\" > /srv/password; \
                  cat /run/dwkt-secret/password > /srv/from-volume; \
                  exec /usr/bin/python3 -m http.server 8080 --directory /srv";
    object(json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeSelector": selector,
            "containers": [{
                "name": "web", "image": "direwolf-test/shell:1", "args": [script],
                "env": [
                    {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                ],
                "volumeMounts": [
                    {"name": "www", "mountPath": "/srv"},
                    {"name": "creds", "mountPath": "/run/dwkt-secret", "readOnly": true},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
            }],
            "volumes": [
                {"name": "www", "emptyDir": {}},
                {"name": "creds", "secret": {"secretName": "creds"}},
            ],
        },
    }))
}

/// GETs its own pod from the API with the projected ServiceAccount token and CA.
fn api_client_pod(selector: &Value) -> Pod {
    let script = "\
import json, os, ssl, urllib.request
d = '/var/run/secrets/kubernetes.io/serviceaccount/'
ns = open(d + 'namespace').read()
url = 'https://kubernetes.default.svc:%s/api/v1/namespaces/%s/pods/%s' % (
    os.environ['KUBERNETES_SERVICE_PORT'], ns, os.environ['POD_NAME'])
req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + open(d + 'token').read()})
ctx = ssl.create_default_context(cafile=d + 'ca.crt')
print('GOT', json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['metadata']['name'])
";
    object(json!({
        "metadata": {"name": "api-client"},
        "spec": {
            "nodeSelector": selector,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "direwolf-test/python:1", "args": ["-c", script],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
        },
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_as_processes_on_the_stand_in_node() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    stand_in::require_root();
    let (client, ns) = namespace(cp, "kubelet-pods").await;
    let node_name = format!("dwkt1-{ns}");
    let kubelet = StandIn::start(cp, 1, &node_name, &format!("direwolf.test/stand-in={ns}"));

    let node = ready_node(&client, &node_name).await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("direwolf.test/stand-in"),
        Some(&ns),
        "the Node carries --node-labels"
    );
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&node_name));
    let capacity = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.clone())
        .unwrap_or_default();
    assert_eq!(
        capacity.get("cpu").map(|q| q.0.as_str()),
        Some("4"),
        "the Node has --capacity"
    );
    assert_eq!(capacity.get("pods").map(|q| q.0.as_str()), Some("20"));

    let secret: Secret = object(json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    testenv::within(
        "create the Secret",
        secrets.create(&PostParams::default(), &secret),
    )
    .await
    .expect("the Secret");
    grant_pod_reading(&client, &ns).await;

    let selector = json!({"direwolf.test/stand-in": ns});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    testenv::within("create pod web", pods.create(&pp, &web_pod(&selector)))
        .await
        .expect("pod web");
    testenv::within(
        "create pod api-client",
        pods.create(&pp, &api_client_pod(&selector)),
    )
    .await
    .expect("pod api-client");

    // Scheduled by the real scheduler onto the stand-in's node, Running with a podIP of its own.
    let web = wait_pod(&pods, "web", "pod web Running", |p| phase(p) == "Running").await;
    assert_eq!(
        web.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node_name.as_str())
    );
    let ip = pod_ip(&web);
    assert!(kubelet.owns(ip), "podIP {ip} is in the stand-in's CIDR");
    let uid = web.metadata.uid.clone().expect("a uid");
    assert!(kubelet.netns(&uid).exists(), "the pod has a network namespace");
    let pid = container_pid(&web);

    // The host reaches the pod's server; what it serves is what env and volumes gave it.
    let addr = SocketAddr::from((ip, 8080));
    let ip_file = eventually("the pod's server answers from the host", POD_WAIT, async || {
        http::get(addr, "/ip").ok().filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(ip_file.1.trim(), ip.to_string(), "env from fieldRef status.podIP");
    let password = http::get(addr, "/password").expect("GET /password");
    assert_eq!(password.1.trim(), "s3cret", "env from secretKeyRef");
    let from_volume = http::get(addr, "/from-volume").expect("GET /from-volume");
    assert_eq!(from_volume.1.trim(), "s3cret", "the secret volume");

    // Not Ready while the readiness probe gets 404; Ready once /ready exists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let web = pods.get("web").await.expect("get web");
    assert!(
        !condition(&web, "Ready"),
        "Ready before its readiness probe passes"
    );
    std::fs::write(kubelet.volume_dir(&uid, "www").join("ready"), "ok").expect("write /srv/ready");
    wait_pod(&pods, "web", "pod web Ready", |p| condition(p, "Ready")).await;

    // In-cluster API access with the projected ServiceAccount token and the CA.
    let client_pod = wait_pod(&pods, "api-client", "pod api-client ended", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let log = kubelet.container_log(&ns, "api-client", "main");
    assert_eq!(
        phase(&client_pod),
        "Succeeded",
        "the in-cluster call failed:\n{log}"
    );
    assert!(
        log.contains("GOT api-client"),
        "the pod read itself from the API:\n{log}"
    );

    // Deleting the pod kills its processes, removes its namespace, and the object goes.
    testenv::within("delete pod web", pods.delete("web", &DeleteParams::default()))
        .await
        .expect("delete web");
    eventually("pod web gone", POD_WAIT, async || {
        pods.get_opt("web").await.expect("get").is_none().then_some(())
    })
    .await;
    assert!(!stand_in::group_alive(pid), "the container's processes are gone");
    assert!(
        !kubelet.netns(&uid).exists(),
        "the pod's network namespace is gone"
    );
    assert!(
        !kubelet.volume_dir(&uid, "www").exists(),
        "the pod's directory is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_stand_in_removes_its_network() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    stand_in::require_root();
    let (client, ns) = namespace(cp, "kubelet-stop").await;
    let node_name = format!("dwkt2-{ns}");
    let mut kubelet = StandIn::start(cp, 2, &node_name, &format!("direwolf.test/stand-in={ns}"));
    ready_node(&client, &node_name).await;
    let pod: Pod = object(json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "nodeSelector": {"direwolf.test/stand-in": ns},
            "containers": [{"name": "main", "image": "direwolf-test/sleep:1", "args": ["3600"]}],
        },
    }));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    testenv::within("create pod sleeper", pods.create(&PostParams::default(), &pod))
        .await
        .expect("pod sleeper");
    let running = wait_pod(&pods, "sleeper", "pod sleeper Running", |p| phase(p) == "Running").await;
    let pid = container_pid(&running);
    assert!(stand_in::group_alive(pid), "the container runs");
    assert!(kubelet.bridge_exists() && !kubelet.namespaces().is_empty());

    let status = kubelet.stop(Duration::from_secs(30));
    assert!(
        status.success(),
        "the stand-in stops cleanly on SIGTERM: {status}\n{}",
        kubelet.log()
    );
    assert!(!stand_in::group_alive(pid), "the container's processes are gone");
    assert!(!kubelet.bridge_exists(), "the bridge {} is gone", kubelet.bridge);
    assert_eq!(
        kubelet.namespaces(),
        Vec::<String>::new(),
        "no pod network namespace is left"
    );
    assert!(
        pods.get_opt("sleeper").await.expect("get").is_some(),
        "the pod object is left"
    );
}
