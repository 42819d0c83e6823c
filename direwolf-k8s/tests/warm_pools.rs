//! Warm pools against the in-process API-server emulator, a test playing the kubelet: the pool
//! fills, a launch claims a Ready pod (labels, owner, the Session's Role bound to the pod's
//! account) and the pool refills; idle pods are recycled, make before break; a dead warm pod is replaced and never
//! claimed; a Session that cannot use one starts cold; a claim patch at a stale version gets
//! 409, and of two launches racing for one pod one claims it and the other starts cold; a new
//! leader adopts a pod claimed by its predecessor (no double claim, no cold pod).
#![cfg(feature = "emulator")]

mod support;

use std::time::Duration;

use direwolf_k8s::crd::{App, Session, User, labels};
use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::operator::OperatorConfig;
use direwolf_k8s::stream;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::operator::{HOLD, Running, eventually, kubelet, release, running_ready, session, status_of};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);
const APP: &str = "test-pattern-warm";

async fn emulator() -> ApiServerEmulator {
    let emulator = support::emulator(WAIT, &["app-warm-pool.yaml", "user.yaml"]).await;
    let users: Api<User> = Api::namespaced(emulator.client(), NS);
    let bob: User = serde_json::from_value(json!({
        "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1", "kind": "User",
        "metadata": {"name": "bob"}, "spec": {}
    }))
    .expect("a user");
    users
        .create(&PostParams::default(), &bob)
        .await
        .expect("create bob");
    emulator
}

/// The unclaimed warm pods of the App.
async fn warm_pods(client: &Client) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("{}={APP}", labels::WARM_POOL));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&params).await.expect("list warm pods").items
}

/// Waits for `n` unclaimed warm pods, not terminating, none of `except`; marks them Ready.
async fn ready_pool(client: &Client, n: usize, except: &[String]) -> Vec<String> {
    let names = filled(client, n, except).await;
    mark_ready(client, &names).await;
    names
}

/// Waits for `n` unclaimed warm pods, not terminating, none of `except`.
async fn filled(client: &Client, n: usize, except: &[String]) -> Vec<String> {
    eventually(WAIT, "the warm pool filled", || async {
        let names: Vec<String> = warm_pods(client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !except.contains(&p.name_any()))
            .map(|p| p.name_any())
            .collect();
        (names.len() == n).then_some(names)
    })
    .await
}

/// Plays the kubelet: the pods `names` run and are Ready.
async fn mark_ready(client: &Client, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        kubelet(client, NS, name, running_ready(&format!("10.0.1.{}", i + 10))).await;
    }
}

async fn set_pool(client: &Client, pool: serde_json::Value) {
    let apps: Api<App> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"warmPool": pool}});
    apps.patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the pool");
}

async fn create(client: &Client, name: &str, user: &str, width: i32) {
    let api: Api<Session> = Api::namespaced(client.clone(), NS);
    let mut s = session(name, user, APP);
    s.spec.config.video_width = width;
    s.metadata.finalizers = Some(vec![HOLD.to_owned()]);
    api.create(&PostParams::default(), &s)
        .await
        .expect("create the session");
}

async fn get<K>(client: &Client, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .expect("get")
}

/// The pods labelled with Session `name`.
async fn pods_of(client: &Client, name: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("{}={name}", stream::SESSION_LABEL));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&params).await.expect("list").items
}

async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = events.list(&ListParams::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn a_launch_claims_a_ready_warm_pod_and_the_pool_refills() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), OperatorConfig::new(NS), true);
    let pool = ready_pool(&client, 2, &[]).await;

    // A warm pod: the App owns it, its agent waits for a claim, its account reads only it.
    let first: Pod = get(&client, &pool[0]).await.expect("warm pod");
    let app: App = get(&client, APP).await.expect("app");
    let owner = &first.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid)),
        ("App", app.metadata.uid.as_ref())
    );
    let agent = first
        .spec
        .as_ref()
        .expect("spec")
        .containers
        .iter()
        .find(|c| c.name == stream::containers::AGENT)
        .expect("agent");
    let env: Vec<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(
        env.contains(&stream::env::WARM_POD) && !env.contains(&stream::env::SESSION),
        "{env:?}"
    );
    let account = stream::agent_account_name(&pool[0]);
    let role: Role = get(&client, &account).await.expect("warm role");
    let rule = &role.rules.expect("rules")[0];
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));
    assert_eq!(rule.resource_names.as_deref(), Some(&[pool[0].clone()][..]));
    let sa: ServiceAccount = get(&client, &account).await.expect("sa");
    let account_owner = &sa.owner_references()[0];
    assert_eq!(
        (account_owner.kind.as_str(), account_owner.name.as_str()),
        ("Pod", pool[0].as_str())
    );

    let name = "bob-warm-aaaaa";
    create(&client, name, "bob", 1920).await;
    let claimed = eventually(WAIT, "a warm pod claimed", || async {
        let pods = pods_of(&client, name).await;
        (!pods.is_empty()).then_some(pods)
    })
    .await;
    assert_eq!(claimed.len(), 1);
    let pod = &claimed[0];
    assert!(
        pool.contains(&pod.name_any()),
        "the claimed pod is one of the pool"
    );
    assert!(!pod.labels().contains_key(labels::WARM_POOL));
    assert_eq!(pod.labels().get(labels::USER).map(String::as_str), Some("bob"));
    let session: Session = get(&client, name).await.expect("session");
    let owners = pod.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), Some(&owners[0].uid)),
        ("Session", session.metadata.uid.as_ref())
    );
    assert!(get::<Pod>(&client, name).await.is_none(), "no cold pod");
    let status = eventually(WAIT, "host of the warm pod", || async {
        status_of(&client, NS, name).await.filter(|s| s.host.is_some())
    })
    .await;
    assert!(status.host.as_deref().is_some_and(|h| h.starts_with("10.0.1.")));
    let binding: RoleBinding = get(&client, &stream::agent_account_name(name))
        .await
        .expect("binding");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(subject.name, stream::agent_account_name(&pod.name_any()));
    assert_eq!(operator.operator.metrics().warm_claims("warm", "none"), 1);
    assert!(
        event_reasons(&client, name)
            .await
            .contains(&"WarmPodClaimed".to_owned())
    );

    // Refill: two unclaimed pods again, one of them new.
    let refilled = ready_pool(&client, 2, &[]).await;
    assert!(!refilled.contains(&pod.name_any()));

    // The Session's end deletes the claimed pod and its account.
    Api::<Session>::namespaced(client.clone(), NS)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    release(&client, NS, name, WAIT).await;
    let claimed_name = pod.name_any();
    eventually(WAIT, "the claimed pod and its account gone", || async {
        let pod = get::<Pod>(&client, &claimed_name).await;
        let sa = get::<ServiceAccount>(&client, &stream::agent_account_name(&claimed_name)).await;
        (pod.is_none() && sa.is_none()).then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn idle_warm_pods_are_recycled_and_surplus_removed() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), OperatorConfig::new(NS), true);
    set_pool(&client, json!({"size": 2, "maxIdleSeconds": 2})).await;
    let first = ready_pool(&client, 2, &[]).await;
    // Once 2 s have passed both are replaced, make before break: while the replacements start,
    // the old pods stay.
    let second = filled(&client, 2, &first).await;
    let live: Vec<String> = warm_pods(&client)
        .await
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    assert!(
        first.iter().all(|n| live.contains(n)),
        "the idle pods stay until their replacements are Ready: {live:?}"
    );
    mark_ready(&client, &second).await;
    // Ready replacements: the idle pods and their accounts go; the replacements stay (standing
    // in, in turn, for their own replacements, which nobody makes Ready here).
    eventually(WAIT, "the idle pods replaced", || async {
        let names: Vec<String> = warm_pods(&client).await.iter().map(|p| p.name_any()).collect();
        (first.iter().all(|n| !names.contains(n)) && second.iter().all(|n| names.contains(n))).then_some(())
    })
    .await;
    eventually(WAIT, "the idle pods' accounts deleted", || async {
        for name in &first {
            let account = stream::agent_account_name(name);
            get::<ServiceAccount>(&client, &account)
                .await
                .is_none()
                .then_some(())?;
        }
        Some(())
    })
    .await;
    // Shrinking the pool removes the surplus; removing it removes every pod.
    set_pool(&client, json!({"size": 1, "maxIdleSeconds": 3600})).await;
    eventually(WAIT, "one warm pod left", || async {
        (warm_pods(&client).await.len() == 1).then_some(())
    })
    .await;
    set_pool(&client, serde_json::Value::Null).await;
    eventually(WAIT, "no warm pod left", || async {
        warm_pods(&client).await.is_empty().then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_dead_warm_pod_is_replaced_and_never_claimed() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), OperatorConfig::new(NS), true);
    set_pool(&client, json!({"size": 1})).await;
    let dead = ready_pool(&client, 1, &[]).await.remove(0);
    // Wolf exited: the pod still says Ready (the kubelet has not caught up).
    let mut status = running_ready("10.0.1.10");
    status["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 1}});
    kubelet(&client, NS, &dead, status).await;
    let name = "bob-warm-bbbbb";
    create(&client, name, "bob", 1920).await;
    eventually(WAIT, "the dead pod replaced", || async {
        let gone = get::<Pod>(&client, &dead).await.is_none();
        let fresh = warm_pods(&client).await.iter().any(|p| p.name_any() != dead);
        (gone && fresh).then_some(())
    })
    .await;
    // The Session started cold.
    let cold = eventually(WAIT, "a cold pod", || get::<Pod>(&client, name)).await;
    assert_eq!(pods_of(&client, name).await.len(), 1);
    assert_eq!(cold.name_any(), name);
    assert_eq!(operator.operator.metrics().warm_claims("warm", "none"), 0);
    operator.stop().await;
}

#[tokio::test]
async fn a_session_that_cannot_use_a_warm_pod_starts_cold() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), OperatorConfig::new(NS), true);
    let pool = ready_pool(&client, 2, &[]).await;
    // Alice has volumes and sidecar policies; bob asks for another video mode.
    create(&client, "alice-warm-ccccc", "alice", 1920).await;
    create(&client, "bob-warm-ddddd", "bob", 1280).await;
    for name in ["alice-warm-ccccc", "bob-warm-ddddd"] {
        eventually(WAIT, "a cold pod", || get::<Pod>(&client, name)).await;
        assert!(
            event_reasons(&client, name)
                .await
                .contains(&"ColdStart".to_owned())
        );
    }
    let metrics = operator.operator.metrics();
    assert_eq!(metrics.warm_claims("cold_fallback", "user_volumes"), 1);
    assert_eq!(metrics.warm_claims("cold_fallback", "video_mode"), 1);
    let left: Vec<String> = warm_pods(&client).await.iter().map(|p| p.name_any()).collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|n| pool.contains(n)), "the pool is untouched");
    operator.stop().await;
}

#[tokio::test]
async fn a_second_claim_at_the_same_version_gets_409() {
    let emulator = emulator().await;
    let client = emulator.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.spec = Some(Default::default());
    let pod = pods.create(&PostParams::default(), &pod).await.expect("create");
    let claim = |session: &str| json!({"metadata": {"resourceVersion": pod.resource_version(), "labels": {stream::SESSION_LABEL: session}}});
    pods.patch("p", &PatchParams::default(), &Patch::Merge(&claim("a")))
        .await
        .expect("the first claim");
    let second = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(&claim("b")))
        .await;
    assert!(
        matches!(&second, Err(kube::Error::Api(s)) if s.code == 409),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_new_leader_adopts_a_pod_claimed_by_its_predecessor() {
    let emulator = emulator().await;
    let client = emulator.client();
    let old = Running::start(client.clone(), OperatorConfig::new(NS), true);
    set_pool(&client, json!({"size": 1})).await;
    let warm = ready_pool(&client, 1, &[]).await.remove(0);
    // The old leader claims, then cannot bind the Session's Role: it loses leadership there.
    emulator.inject(
        FaultRule::status(500)
            .with_verb("patch")
            .with_path_prefix(&format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/bob-warm-eeeee"
            )),
    );
    let name = "bob-warm-eeeee";
    create(&client, name, "bob", 1920).await;
    eventually(WAIT, "the claim", || async {
        (!pods_of(&client, name).await.is_empty()).then_some(())
    })
    .await;
    old.leader.send(false).expect("step down");
    emulator.clear_faults();
    let new = Running::start(client.clone(), OperatorConfig::new(NS), true);
    eventually(WAIT, "the Session's Role bound by the new leader", || async {
        get::<RoleBinding>(&client, &stream::agent_account_name(name)).await
    })
    .await;
    let status = eventually(WAIT, "DeploymentCreated", || async {
        status_of(&client, NS, name).await.filter(|s| s.host.is_some())
    })
    .await;
    assert!(status.host.is_some());
    let pods = pods_of(&client, name).await;
    assert_eq!(pods.iter().map(|p| p.name_any()).collect::<Vec<_>>(), vec![warm]);
    assert!(get::<Pod>(&client, name).await.is_none(), "no cold pod");
    assert_eq!(
        new.operator.metrics().warm_claims("warm", "none"),
        0,
        "adopted, not claimed again"
    );
    new.stop().await;
    old.stop().await;
}

#[tokio::test]
async fn two_launches_racing_for_one_warm_pod_claim_it_once() {
    let emulator = emulator().await;
    let client = emulator.client();
    let operator = Running::start(client.clone(), OperatorConfig::new(NS), true);
    set_pool(&client, json!({"size": 1})).await;
    let warm = ready_pool(&client, 1, &[]).await.remove(0);
    // Claims answered late: both are sent at the version both read, and one gets 409.
    emulator.inject(
        FaultRule::delay(Duration::from_millis(300))
            .with_verb("patch")
            .with_path_prefix(&format!("/api/v1/namespaces/{NS}/pods/{warm}")),
    );
    let (a, b) = ("bob-warm-fffff", "bob-warm-ggggg");
    tokio::join!(create(&client, a, "bob", 1920), create(&client, b, "bob", 1920));
    let (pods_a, pods_b) = eventually(WAIT, "both Sessions with a pod", || async {
        let (pa, pb) = (pods_of(&client, a).await, pods_of(&client, b).await);
        (!pa.is_empty() && !pb.is_empty()).then_some((pa, pb))
    })
    .await;
    emulator.clear_faults();
    let names: Vec<String> = pods_a.iter().chain(&pods_b).map(|p| p.name_any()).collect();
    assert_eq!(names.len(), 2, "one pod each: {names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == warm).count(),
        1,
        "the warm pod claimed once: {names:?}"
    );
    assert!(
        names.contains(&a.to_owned()) || names.contains(&b.to_owned()),
        "the other starts cold"
    );
    let conflicts = emulator
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.path.ends_with(&format!("/pods/{warm}")) && r.status == 409)
        .count();
    assert_eq!(conflicts, 1, "the second claim got 409");
    let metrics = operator.operator.metrics();
    assert_eq!(metrics.warm_claims("warm", "none"), 1);
    assert_eq!(metrics.warm_claims("cold_fallback", "conflict"), 1);
    operator.stop().await;
}
