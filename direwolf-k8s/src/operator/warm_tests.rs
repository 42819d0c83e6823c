//! Unit tests of [`super`]: the warm pod and its account, who may claim, the pool's plan.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::crd::UserSpec;

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).expect("example parses")
}

/// Firefox (a game container, a home claim) with a pool of 2.
fn firefox() -> App {
    let mut app: App = from_yaml(include_str!("../../../examples/app-firefox.yaml"));
    app.metadata.uid = Some("app-uid".to_owned());
    app.metadata.namespace = Some("games".to_owned());
    app.spec.warm_pool = Some(WarmPool::of_size(2));
    app
}

/// Firefox without its home claim.
fn ephemeral() -> App {
    let mut app = firefox();
    app.spec.volume_claim_template = None;
    app
}

fn bob() -> User {
    User::new("bob", UserSpec::default())
}

fn session(width: i32) -> Session {
    serde_json::from_value(json!({
        "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1", "kind": "Session",
        "metadata": {"name": "bob-firefox-x7k2p", "namespace": "games", "uid": "s-uid"},
        "spec": {"userReference": {"name": "bob"}, "gameReference": {"name": "firefox"},
                 "pairingReference": {"name": "0".repeat(64)},
                 "config": {"videoWidth": width, "videoHeight": 1080, "videoRefreshRate": 60}}
    }))
    .expect("a session")
}

fn env_of<'a>(pod: &'a Pod, container: &str) -> Vec<&'a k8s_openapi::api::core::v1::EnvVar> {
    let spec = pod.spec.as_ref().expect("spec");
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .expect("container");
    c.env.iter().flatten().collect()
}

#[test]
fn a_warm_pod_is_made_for_nobody_and_owned_by_the_app() {
    let app = ephemeral();
    let mut pool = WarmPool::of_size(1);
    pool.width = 2560;
    let pod = warm_pod(&app, &pool, &PodSettings::default(), "firefox-warm-ab1c2").expect("a pod");
    assert_eq!(pod.name_any(), "firefox-warm-ab1c2");
    let labels = pod.labels();
    assert_eq!(labels.get(labels::WARM_POOL).map(String::as_str), Some("firefox"));
    assert!(!labels.contains_key(labels::USER) && !labels.contains_key(stream::SESSION_LABEL));
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("App", "app-uid", Some(true))
    );
    let game = env_of(&pod, "firefox");
    let width = game.iter().find(|e| e.name == "GAMESCOPE_WIDTH").expect("width");
    assert_eq!(width.value.as_deref(), Some("2560"));
    let agent = env_of(&pod, stream::containers::AGENT);
    assert!(!agent.iter().any(|e| e.name == stream::env::SESSION));
    let warm = agent
        .iter()
        .find(|e| e.name == stream::env::WARM_POD)
        .expect("warm pod env");
    let field = warm
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("downward API");
    assert_eq!(field.field_path, "metadata.name");
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("firefox-warm-ab1c2-agent")
    );
    assert_eq!(
        spec.volumes.as_ref().map(Vec::len),
        Some(4),
        "the stream volumes only"
    );
}

#[test]
fn a_warm_account_reads_only_its_pod() {
    let app = ephemeral();
    let owner = OwnerReference {
        kind: "Pod".to_owned(),
        name: "firefox-warm-ab1c2".to_owned(),
        uid: "pod-uid".to_owned(),
        ..OwnerReference::default()
    };
    let (account, role, binding) = warm_account(&app, "firefox-warm-ab1c2", owner);
    assert_eq!(account.name_any(), "firefox-warm-ab1c2-agent");
    let rules = role.rules.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref(), Some(&["pods".to_owned()][..]));
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["firefox-warm-ab1c2".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
    assert_eq!(
        binding.subjects.expect("subjects")[0].name,
        "firefox-warm-ab1c2-agent"
    );
    assert_eq!(role.metadata.owner_references.expect("owned")[0].uid, "pod-uid");
}

#[test]
fn only_a_session_that_can_use_a_warm_pod_claims_one() {
    let s = session(1920);
    assert_eq!(cold_reason(true, &ephemeral(), &bob(), &s), None);
    let mut no_pool = ephemeral();
    no_pool.spec.warm_pool = None;
    assert_eq!(cold_reason(true, &no_pool, &bob(), &s), Some("no_pool"));
    assert_eq!(cold_reason(false, &ephemeral(), &bob(), &s), Some("exposure"));
    assert_eq!(cold_reason(true, &firefox(), &bob(), &s), Some("home_claim"));
    let alice: User = from_yaml(include_str!("../../../examples/user.yaml"));
    assert_eq!(cold_reason(true, &ephemeral(), &alice, &s), Some("user_volumes"));
    let mut policies = bob();
    policies.spec.sidecar_policies = alice.spec.sidecar_policies.clone();
    assert_eq!(
        cold_reason(true, &ephemeral(), &policies, &s),
        Some("sidecar_policies")
    );
    let mut capped = bob();
    capped.spec.resources = serde_json::from_value(json!({"limits": {"cpu": "1"}})).expect("caps");
    assert_eq!(cold_reason(true, &ephemeral(), &capped, &s), Some("caps"));
    assert_eq!(
        cold_reason(true, &ephemeral(), &bob(), &session(1280)),
        Some("video_mode")
    );
}

fn pod(name: &str, age_secs: i64, ready: bool, status: serde_json::Value) -> Pod {
    let created = Timestamp::now() - SignedDuration::from_secs(age_secs);
    let mut pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).expect("a pod");
    pod.metadata.creation_timestamp = Some(Time(created));
    if ready {
        let status = pod.status.get_or_insert_with(Default::default);
        status.conditions = Some(vec![
            serde_json::from_value(json!({"type": "Ready", "status": "True"})).expect("c"),
        ]);
    }
    pod
}

fn names(plan: &Plan<'_>) -> Vec<(String, Removal)> {
    plan.delete.iter().map(|(p, why)| (p.name_any(), *why)).collect()
}

fn between(recheck: Option<Duration>, low: u64, high: u64) {
    let recheck = recheck.expect("a recheck");
    assert!(
        recheck > Duration::from_secs(low) && recheck <= Duration::from_secs(high),
        "{recheck:?}"
    );
}

#[test]
fn the_plan_replaces_broken_pods_and_keeps_the_size() {
    let pool = WarmPool {
        max_idle_seconds: 600,
        ..WarmPool::of_size(2)
    };
    let terminated = json!({"phase": "Running", "containerStatuses": [{"name": "wolf", "image": "w",
        "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1}}}]});
    let pods = vec![
        pod("dead", 10, true, terminated),
        pod("failed", 10, false, json!({"phase": "Failed"})),
        pod("ready", 100, true, json!({})),
    ];
    let plan = plan(Some(&pool), &pods, Timestamp::now());
    assert_eq!(
        names(&plan),
        [
            ("dead".to_owned(), Removal::Broken),
            ("failed".to_owned(), Removal::Broken)
        ]
    );
    assert_eq!(plan.create, 1);
    between(plan.recheck, 490, 500);
}

#[test]
fn an_idle_pod_stays_until_its_replacement_is_ready() {
    let pool = WarmPool {
        max_idle_seconds: 600,
        ..WarmPool::of_size(2)
    };
    // Both idle: two replacements are made, and both old pods stay claimable meanwhile.
    let idle = vec![
        pod("old", 700, true, json!({})),
        pod("older", 800, true, json!({})),
    ];
    let plan = super::plan(Some(&pool), &idle, Timestamp::now());
    assert_eq!(names(&plan), []);
    assert_eq!(plan.create, 2);
    between(plan.recheck, 90, 200);
    // One replacement Ready, one starting: the older old pod goes, the younger stands in.
    let mut pods = idle.clone();
    pods.push(pod("new", 5, true, json!({})));
    pods.push(pod("starting", 5, false, json!({})));
    let plan = super::plan(Some(&pool), &pods, Timestamp::now());
    assert_eq!(names(&plan), [("older".to_owned(), Removal::Idle)]);
    assert_eq!(plan.create, 0);
    // Both Ready: both old pods go.
    pods[3] = pod("starting", 5, true, json!({}));
    let plan = super::plan(Some(&pool), &pods, Timestamp::now());
    let mut removed = names(&plan);
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        removed,
        [
            ("old".to_owned(), Removal::Idle),
            ("older".to_owned(), Removal::Idle)
        ]
    );
}

#[test]
fn an_idle_pod_past_its_grace_or_not_ready_goes_anyway() {
    let pool = WarmPool {
        max_idle_seconds: 600,
        ..WarmPool::of_size(2)
    };
    let pods = vec![
        pod("stale", 600 + 301, true, json!({})),
        pod("stuck", 700, false, json!({})),
    ];
    let plan = plan(Some(&pool), &pods, Timestamp::now());
    let mut removed = names(&plan);
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        removed,
        [
            ("stale".to_owned(), Removal::Idle),
            ("stuck".to_owned(), Removal::Idle)
        ]
    );
    assert_eq!(plan.create, 2);
}

#[test]
fn the_plan_removes_the_surplus_newest_and_unready_first() {
    let pool = WarmPool::of_size(1);
    let pods = vec![
        pod("starting", 5, false, json!({})),
        pod("young", 10, true, json!({})),
        pod("oldest", 20, true, json!({})),
    ];
    let plan = plan(Some(&pool), &pods, Timestamp::now());
    let mut removed = names(&plan);
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        removed,
        [
            ("starting".to_owned(), Removal::Surplus),
            ("young".to_owned(), Removal::Surplus)
        ]
    );
    assert_eq!(plan.create, 0);
    let gone = super::plan(None, &pods, Timestamp::now());
    assert_eq!(gone.delete.len(), 3);
    assert_eq!(gone.create, 0);
}

#[test]
fn a_pod_is_claimable_only_ready_unclaimed_and_alive() {
    let mut warm = pod("p", 1, true, json!({"phase": "Running"}));
    warm.metadata.labels = Some(warm_labels("firefox"));
    assert!(claimable(&warm, "firefox"));
    assert!(!claimable(&warm, "desk"), "another App's pool");
    let mut starting = warm.clone();
    starting.status = None;
    assert!(!claimable(&starting, "firefox"));
    let mut claimed = warm.clone();
    claimed
        .labels_mut()
        .insert(stream::SESSION_LABEL.to_owned(), "s".to_owned());
    assert!(!claimable(&claimed, "firefox"));
    let mut dying = warm.clone();
    dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert!(!claimable(&dying, "firefox"));
}
