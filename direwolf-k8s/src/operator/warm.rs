//! Warm pods (pure): the pod of an App's warm pool, made for nobody ([`warm_pod`]), its account
//! ([`warm_account`]), whether a Session may claim one ([`cold_reason`]), and what the pool
//! needs ([`plan`]).
//!
//! A warm pod is [`build_pod`] fed a neutral Session: no User volumes, no sidecar policies, no
//! caps, the pool's video mode, Wolf on its default ports. It is owned by the App, labelled
//! [`labels::WARM_POOL`] until claimed, and its agent learns its Session from the pod's
//! [`stream::SESSION_LABEL`] ([`stream::env::WARM_POD`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::caps::check_caps;
use super::config::PodSettings;
use super::decide;
use super::pod::{PodError, PodInputs, build_pod, field_env};
use crate::crd::{
    App, AppReference, PairingReference, Session, SessionConfig, SessionSpec, User, UserReference, WarmPool,
    labels,
};
use crate::stream;

/// The labels of an unclaimed warm pod of `app` (and of its account).
pub fn warm_labels(app: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (labels::APP.to_owned(), labels::APP_WORKER.to_owned()),
        (labels::APP_NAME.to_owned(), app.to_owned()),
        (labels::WARM_POOL.to_owned(), app.to_owned()),
        (labels::WARM.to_owned(), app.to_owned()),
    ])
}

/// The neutral Session a warm pod is built for: named like the pod, owned by nobody yet.
fn neutral_session(app: &App, pool: &WarmPool, name: &str) -> Session {
    let mut session = Session::new(
        name,
        SessionSpec {
            user_reference: UserReference { name: String::new() },
            game_reference: AppReference {
                name: app.name_any(),
                app_id: Some(app.spec.id),
            },
            pairing_reference: PairingReference { name: String::new() },
            gateway: None,
            config: SessionConfig {
                client_ip: None,
                video_width: pool.width,
                video_height: pool.height,
                video_refresh_rate: pool.refresh_rate,
                surround_audio_flags: 0,
            },
            keys_revision: None,
        },
    );
    session.metadata.namespace = app.namespace();
    // Only for `build_pod`'s owner reference, replaced by the App's below.
    session.metadata.uid = app.uid().or_else(|| Some(String::from("warm")));
    session
}

/// The App's owner reference on its warm pods (controller; blocks the App's foreground
/// deletion until they are gone).
fn app_owner(app: &App) -> Result<OwnerReference, PodError> {
    let mut owner = app.controller_owner_ref(&()).ok_or(PodError::NoOwner)?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Warm pod `name` of `app`'s `pool`.
///
/// # Errors
/// A [`PodError`] when the App's template does not allow a pod, or the App has no uid.
pub fn warm_pod(app: &App, pool: &WarmPool, settings: &PodSettings, name: &str) -> Result<Pod, PodError> {
    let session = neutral_session(app, pool, name);
    let user = User::new("", Default::default());
    let mut pod = build_pod(PodInputs {
        session: &session,
        app,
        user: &user,
        settings,
        home_claim: None,
        wolf_ports: None,
    })?;
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.remove(labels::USER);
    labels.remove(stream::SESSION_LABEL);
    labels.extend(warm_labels(&app.name_any()));
    pod.metadata.owner_references = Some(vec![app_owner(app)?]);
    let containers = pod.spec.iter_mut().flat_map(|s| s.containers.iter_mut());
    for agent in containers.filter(|c| c.name == stream::containers::AGENT) {
        for var in agent.env.iter_mut().flatten() {
            if var.name == stream::env::SESSION {
                *var = field_env(stream::env::WARM_POD, "metadata.name");
            }
        }
    }
    Ok(pod)
}

/// The account of warm pod `pod` of `app`: ServiceAccount, Role and RoleBinding named
/// [`stream::agent_account_name`] of the pod, owned by `owner` (the App until the pod exists,
/// then the pod). The Role allows only reading the pod itself (by name: the agent watches it
/// with a `metadata.name` field selector); a claim binds the Session's Role to the same
/// ServiceAccount.
pub fn warm_account(app: &App, pod: &str, owner: OwnerReference) -> (ServiceAccount, Role, RoleBinding) {
    let meta = ObjectMeta {
        name: Some(stream::agent_account_name(pod)),
        namespace: app.namespace(),
        labels: Some(warm_labels(&app.name_any())),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    super::account::account_objects(
        meta,
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
            resource_names: Some(vec![pod.to_owned()]),
            non_resource_urls: None,
        }],
    )
}

/// Why `session` cannot take a warm pod of `app` (a bounded metric label), or `None` if it
/// can: the relay exposure only (the other modes put the Session's ports in Wolf's env), no
/// home claim, a User without volumes, sidecar policies or caps refusing the App's containers,
/// and the pool's video mode.
pub fn cold_reason(relay: bool, app: &App, user: &User, session: &Session) -> Option<&'static str> {
    let Some(pool) = app.spec.warm_pool.as_ref().filter(|p| p.size > 0) else {
        return Some("no_pool");
    };
    if !relay {
        return Some("exposure");
    }
    if app.spec.volume_claim_template.is_some() {
        return Some("home_claim");
    }
    if !user.spec.volumes.is_empty() {
        return Some("user_volumes");
    }
    if user.spec.sidecar_policies.is_some() {
        return Some("sidecar_policies");
    }
    let caps = user.spec.resources.clone().unwrap_or_default();
    let template = app.spec.template.as_ref().and_then(|t| t.spec.as_ref());
    if template.is_some_and(|spec| spec.containers.iter().any(|c| check_caps(c, &caps).is_err())) {
        return Some("caps");
    }
    let config = &session.spec.config;
    let mode = (config.video_width, config.video_height, config.video_refresh_rate);
    if mode != (pool.width, pool.height, pool.refresh_rate) {
        return Some("video_mode");
    }
    None
}

/// Whether an App has a warm pool worth claiming from (one of size > 0).
pub fn has_pool(app: &App) -> bool {
    app.spec.warm_pool.as_ref().is_some_and(|p| p.size > 0)
}

/// Whether a warm pod can no longer serve: it failed or completed, or a container terminated.
pub fn broken(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        return true;
    }
    status
        .container_statuses
        .iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// Whether `pod` is a warm pod of `app` a Session may claim now: unclaimed, Ready, not
/// terminating, not broken.
pub fn claimable(pod: &Pod, app: &str) -> bool {
    pod.labels().get(labels::WARM_POOL).map(String::as_str) == Some(app)
        && pod.metadata.deletion_timestamp.is_none()
        && !pod.labels().contains_key(stream::SESSION_LABEL)
        && decide::pod_ready(pod)
        && !broken(pod)
}

/// Why a warm pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It failed, completed or a container terminated.
    Broken,
    /// It waited longer than `maxIdleSeconds`, and its replacement is Ready (or its
    /// [`STAND_IN_GRACE`] is over).
    Idle,
    /// The pool is smaller than the pods it has, or gone.
    Surplus,
}

impl Removal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Removal::Broken => "broken",
            Removal::Idle => "idle",
            Removal::Surplus => "surplus",
        }
    }
}

/// What one pool needs: pods to delete (with why) and how many to create; `recheck` is when
/// the oldest kept pod reaches its idle limit.
#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    /// Pods to delete.
    pub delete: Vec<(&'a Pod, Removal)>,
    /// Pods to create.
    pub create: usize,
    /// When to look again for recycling.
    pub recheck: Option<Duration>,
}

fn age(pod: &Pod, now: Timestamp) -> Duration {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default()
}

/// How long a pod past `maxIdleSeconds` may stand in for its replacement while that one starts:
/// recycling makes before it breaks, yet a replacement that never gets Ready does not keep an
/// old pod forever.
pub const STAND_IN_GRACE: Duration = Duration::from_secs(300);

/// The plan of `pool` (`None`: removed) over its unclaimed pods `pods` at `now`: broken pods go,
/// terminating ones are left to finish and not counted; of the others, Ready ones are kept before
/// those still starting, older before newer, up to `size`, and the rest is made up. A pod idle
/// past `maxIdleSeconds` is replaced, and stays (claimable) until its replacement is Ready, or
/// for [`STAND_IN_GRACE`] at most.
pub fn plan<'a>(pool: Option<&WarmPool>, pods: &'a [Pod], now: Timestamp) -> Plan<'a> {
    let mut plan = Plan::default();
    let max_idle = pool.map_or(Duration::ZERO, |p| {
        Duration::from_secs(u64::try_from(p.max_idle_seconds).unwrap_or(0))
    });
    let (mut live, mut expired) = (Vec::new(), Vec::new());
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        if broken(pod) {
            plan.delete.push((pod, Removal::Broken));
        } else if pool.is_some() && age(pod, now) >= max_idle {
            expired.push(pod);
        } else {
            live.push(pod);
        }
    }
    live.sort_by_key(|p| (!decide::pod_ready(p), std::cmp::Reverse(age(p, now))));
    let wanted = pool.map_or(0, WarmPool::wanted);
    for pod in live.iter().skip(wanted) {
        plan.delete.push((pod, Removal::Surplus));
    }
    live.truncate(wanted);
    plan.create = wanted - live.len();
    let ready = live.iter().filter(|p| decide::pod_ready(p)).count();
    let last_call = max_idle + STAND_IN_GRACE;
    let stand_ins = stand_ins(&mut expired, wanted.saturating_sub(ready), last_call, now);
    plan.delete
        .extend(expired.into_iter().map(|pod| (pod, Removal::Idle)));
    let due = |limit: Duration| move |p: &&Pod| limit.saturating_sub(age(p, now));
    plan.recheck = live
        .iter()
        .map(due(max_idle))
        .chain(stand_ins.iter().map(due(last_call)))
        .min();
    plan
}

/// Takes out of `expired` up to `n` Ready pods younger than `last_call`, the youngest first:
/// they stand in for replacements not Ready yet.
fn stand_ins<'a>(expired: &mut Vec<&'a Pod>, n: usize, last_call: Duration, now: Timestamp) -> Vec<&'a Pod> {
    expired.sort_by_key(|p| {
        let usable = decide::pod_ready(p) && age(p, now) < last_call;
        (!usable, age(p, now))
    });
    let usable = expired
        .iter()
        .take(n)
        .take_while(|p| decide::pod_ready(p) && age(p, now) < last_call)
        .count();
    expired.drain(..usable).collect()
}

#[cfg(test)]
#[path = "warm_tests.rs"]
mod tests;
