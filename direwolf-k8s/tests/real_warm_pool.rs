//! Warm pools on the real control plane (RBAC, admission, garbage collector; kwok runs the pods
//! on fake nodes and marks them Ready): the pool is created with accounts that may read only
//! their own pod, a launch claims one (the API server takes the guarded patch, the claimed
//! pod's account may then read the Session), the pool refills, and deleting the App removes
//! the warm pods and their accounts.

mod support;

use std::process::Command;
use std::time::Duration;

use direwolf_k8s::crd::{self, labels};
use direwolf_k8s::operator::OperatorConfig;
use direwolf_k8s::stream;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::operator::{Running, create_session, eventually, status_of};
use support::testenv::{self, ControlPlane};

const WAIT: Duration = Duration::from_secs(60);

/// A namespace with the CRDs, User `bob` (caps only) and App `desk` with a pool of 2.
async fn setup(cp: &ControlPlane) -> (Client, String) {
    support::desk_namespace(
        cp,
        "warm-pool",
        json!({"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}),
        json!({"warmPool": {"size": 2}}),
    )
    .await
}

/// The unclaimed warm pods of `desk` that kwok made Ready.
async fn ready_warm(client: &Client, ns: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(&format!("{}=desk", labels::WARM_POOL));
    let list = pods.list(&params).await.expect("list").items;
    list.into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// `kubectl auth can-i` as ServiceAccount `account`.
fn can(cp: &ControlPlane, ns: &str, account: &str, args: &[&str]) -> bool {
    let subject = format!("system:serviceaccount:{ns}:{account}");
    let output = Command::new(&cp.kubectl)
        .args(["auth", "can-i"])
        .args(args)
        .args(["--as", &subject, "-n", ns, "--request-timeout=30s"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("kubectl runs");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(answer == "yes" || answer == "no", "can-i {args:?}: {answer:?}");
    answer == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_made_claimed_refilled_and_removed_with_its_app() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp).await;
    let mut config = OperatorConfig::new(&ns);
    config.start_deadline = Duration::from_secs(600);
    config.pod.node_selector = [("type".to_owned(), "kwok".to_owned())].into();
    let operator = Running::start(client.clone(), config, true);
    let pool = eventually(WAIT, "two Ready warm pods", || async {
        let pods = ready_warm(&client, &ns).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    let first = pool[0].name_any();
    let account = stream::agent_account_name(&first);
    let own = format!("pods/{first}");
    let other = format!("pods/{}", pool[1].name_any());
    for (args, allowed) in [
        (vec!["get", own.as_str()], true),
        (vec!["watch", own.as_str()], true),
        (vec!["get", other.as_str()], false),
        (vec!["list", "pods"], false),
        (vec!["patch", own.as_str()], false),
        (vec!["get", "secrets"], false),
        (vec!["get", "sessions.direwolf.games-on-whales.github.io"], false),
    ] {
        assert_eq!(can(cp, &ns, &account, &args), allowed, "warm can-i {args:?}");
    }

    let name = "bob-desk-aaaaa";
    create_session(&client, &ns, name, "bob", "desk").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claimed = eventually(WAIT, "a warm pod claimed", || async {
        let params = ListParams::default().labels(&format!("{}={name}", stream::SESSION_LABEL));
        pods.list(&params).await.expect("list").items.into_iter().next()
    })
    .await;
    let claimed_name = claimed.name_any();
    assert!(claimed_name.starts_with("desk-warm-"), "{claimed_name}");
    assert!(pods.get_opt(name).await.expect("get").is_none(), "no cold pod");
    let ip = claimed
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("an IP");
    eventually(WAIT, "status.host the warm pod's IP", || async {
        status_of(&client, &ns, name)
            .await
            .filter(|s| s.host.as_deref() == Some(ip.as_str()))
    })
    .await;
    let session = format!("sessions.direwolf.games-on-whales.github.io/{name}");
    let claimed_account = stream::agent_account_name(&claimed_name);
    eventually(WAIT, "the claimed pod's agent may read its Session", || async {
        can(cp, &ns, &claimed_account, &["get", &session]).then_some(())
    })
    .await;
    assert!(can(
        cp,
        &ns,
        &claimed_account,
        &["get", &format!("secrets/{}", stream::keys_secret_name(name))]
    ));

    let refilled = eventually(WAIT, "the pool refilled", || async {
        let pods = ready_warm(&client, &ns).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(refilled.iter().all(|p| p.name_any() != claimed_name));

    // Deleting the App: its Session ends, the garbage collector takes the warm pods and their
    // accounts with them.
    Api::<crd::App>::namespaced(client.clone(), &ns)
        .delete("desk", &DeleteParams::default())
        .await
        .expect("delete the app");
    support::operator::release(&client, &ns, name, WAIT).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, "every warm pod and account gone", || async {
        let left = pods
            .list(&ListParams::default().labels(labels::WARM))
            .await
            .expect("list")
            .items;
        let accounts = accounts
            .list(&ListParams::default().labels(labels::WARM))
            .await
            .expect("list")
            .items;
        (left.is_empty() && accounts.is_empty()).then_some(())
    })
    .await;
    operator.stop().await;
}
