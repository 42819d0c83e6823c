//! Leader election against the real API server's Lease API, as a ServiceAccount allowed only
//! what the operator's Role grants for it (leases get, create, update): two candidates elect one
//! leader, a killed leader is replaced within the lease duration of its last renewal, a clean
//! release hands over at once, and the record reads as client-go writes it.

mod support;

use std::path::Path;
use std::time::Duration;

use direwolf_k8s::leader::{LEASE_NAME, LeaderElector, Leadership, LeaseTiming};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use support::testenv;
use tokio::time::Instant;

const ACCOUNT: &str = "direwolf-operator";
const WAIT: Duration = Duration::from_secs(30);

fn timing() -> LeaseTiming {
    LeaseTiming {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1400),
        retry_period: Duration::from_millis(300),
    }
}

/// The ServiceAccount with exactly the Lease rights leader election needs.
async fn operator_account(admin: &Client, namespace: &str) {
    let post = PostParams::default();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": ACCOUNT}})).expect("a ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": ACCOUNT},
        "rules": [{
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"]
        }]
    }))
    .expect("a Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}]
    }))
    .expect("a RoleBinding");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let roles: Api<Role> = Api::namespaced(admin.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), namespace);
    testenv::within("create the account", accounts.create(&post, &account))
        .await
        .expect("the ServiceAccount");
    testenv::within("create the role", roles.create(&post, &role))
        .await
        .expect("the Role");
    testenv::within("create the binding", bindings.create(&post, &binding))
        .await
        .expect("the RoleBinding");
}

async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("the account's kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

async fn lease(admin: &Client, namespace: &str) -> LeaseSpec {
    let api: Api<Lease> = Api::namespaced(admin.clone(), namespace);
    testenv::within("get the lease", api.get(LEASE_NAME))
        .await
        .expect("the lease exists")
        .spec
        .expect("a spec")
}

async fn leads(what: &str, leadership: &Leadership) -> Instant {
    let mut rx = leadership.subscribe();
    support::within(WAIT, what, rx.wait_for(|leading| *leading))
        .await
        .expect("the elector runs");
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_duration() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("direwolf_k8s=info")
        .with_test_writer()
        .try_init();
    let (admin, namespace) = cp.namespace("leader").await;
    operator_account(&admin, &namespace).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.service_account_kubeconfig(&namespace, ACCOUNT, &kubeconfig);
    let elect = |client: Client, identity: &str| {
        LeaderElector::new(client, &namespace, LEASE_NAME, identity, timing())
            .expect("a valid elector")
            .spawn()
    };
    let a = elect(client_from(&kubeconfig).await, "operator-a");
    leads("a leads alone", &a).await;
    let b = elect(client_from(&kubeconfig).await, "operator-b");
    let first = lease(&admin, &namespace).await;
    assert_eq!(first.holder_identity.as_deref(), Some("operator-a"));
    assert_eq!(first.lease_duration_seconds, Some(2));
    assert_eq!(first.lease_transitions, Some(0));
    // Several renewals; b keeps out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.is_leading() && !b.is_leading(), "a keeps the lease, b waits");
    let renewed = lease(&admin, &namespace).await;
    assert_eq!(
        renewed.acquire_time, first.acquire_time,
        "renewals keep acquireTime"
    );
    assert!(
        renewed.renew_time > first.renew_time,
        "renewals advance renewTime"
    );

    let killed = Instant::now();
    a.abort();
    let after = leads("b takes over", &b).await - killed;
    eprintln!("failover after a killed leader: {after:?} (lease 2 s, retry 300 ms)");
    // a's last renewal was at most a retry period before the kill; b waits the lease duration
    // after it saw it, and tries every retry period (+20 % jitter).
    assert!(
        after >= Duration::from_millis(1500),
        "b took over too early: {after:?}"
    );
    assert!(after <= Duration::from_millis(3200), "failover took {after:?}");
    let now = lease(&admin, &namespace).await;
    assert_eq!(now.holder_identity.as_deref(), Some("operator-b"));
    assert_eq!(now.lease_transitions, Some(1));
    assert_ne!(now.acquire_time, first.acquire_time);

    // A clean stop hands over at once.
    let c = elect(client_from(&kubeconfig).await, "operator-c");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!c.is_leading());
    let released = Instant::now();
    support::within(WAIT, "b releases", b.release()).await;
    let after = leads("c takes over", &c).await - released;
    eprintln!("handover after a release: {after:?}");
    assert!(after < Duration::from_millis(1000), "handover took {after:?}");
    let now = lease(&admin, &namespace).await;
    assert_eq!(now.holder_identity.as_deref(), Some("operator-c"));
    assert_eq!(now.lease_transitions, Some(2));
    c.release().await;
    assert_eq!(
        lease(&admin, &namespace).await.holder_identity.as_deref(),
        Some("")
    );
}
