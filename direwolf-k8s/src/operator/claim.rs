//! A Session takes a warm pod (`docs/protocol/kubernetes.md` § Warm pools), and finds its pod,
//! whether named after it or claimed.
//!
//! The claim is one merge patch of the pod carrying the `metadata.resourceVersion` read: the
//! Session's labels on, the pool's label off, the Session as the only (controller) owner. A
//! second claimer of the same pod, or one racing the pool's deletion, gets 409 and tries the
//! next pod or starts cold. Then the Session's agent Role and RoleBinding are applied, bound
//! to the warm pod's ServiceAccount. A new leader finds an already claimed pod by its label
//! and adopts it: no second claim, no cold pod.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::account::agent_account;
use super::context::Context;
use super::error::Error;
use super::pod::session_labels;
use super::warm;
use crate::crd::{App, Session, User, field_managers, labels};
use crate::retry::has_status;
use crate::stream;

/// At most this many pods are tried before a launch starts cold.
const ATTEMPTS: usize = 3;

/// Whether `pod` is `session`'s: named after it, or labelled with it; and owned by it.
fn is_sessions(pod: &Pod, session: &Session) -> bool {
    let uid = session.uid();
    let owned = pod
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true));
    owned
        && (pod.name_any() == session.name_any()
            || pod.labels().get(stream::SESSION_LABEL) == Some(&session.name_any()))
}

/// The Session's pod in the cache: the one named after it, else a claimed warm pod.
pub(crate) fn cached_pod(ctx: &Context, session: &Session) -> Option<Arc<Pod>> {
    let ns = ctx.config.namespace.as_str();
    let name = session.name_any();
    Context::cached(&ctx.caches.pods, ns, &name).or_else(|| {
        ctx.caches
            .pods
            .state()
            .into_iter()
            .find(|p| p.labels().contains_key(labels::WARM) && is_sessions(p, session))
    })
}

/// The Session's claimed warm pods, read from the API server.
pub(crate) async fn claimed_pods(ctx: &Context, session: &Session) -> Result<Vec<Pod>, Error> {
    let selector = format!(
        "{}={},{}",
        stream::SESSION_LABEL,
        session.name_any(),
        labels::WARM
    );
    let params = ListParams::default().labels(&selector);
    let api = ctx.api::<Pod>();
    let list = ctx
        .retry
        .run("list", || api.list(&params))
        .await
        .map_err(Error::api("list the Session's warm pod"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| is_sessions(p, session))
        .collect())
}

/// What a claim came to.
pub(crate) enum Claim {
    /// The Session has this warm pod, claimed now.
    Warm(Box<Pod>),
    /// The Session had this warm pod already (claimed before a failover or a lost race).
    Adopted(Box<Pod>),
    /// Start cold, for this reason (a metric label).
    Cold(&'static str),
}

/// Adopts a warm pod already claimed for the Session, else claims one if the Session can use
/// it; the Session's agent Role and RoleBinding are applied either way.
pub(crate) async fn claim(session: &Session, ctx: &Context, app: &App, user: &User) -> Result<Claim, Error> {
    if !warm::has_pool(app) {
        return Ok(Claim::Cold("no_pool"));
    }
    if let Some(pod) = claimed_pods(ctx, session).await?.into_iter().next() {
        info!(pod = %pod.name_any(), "adopting the warm pod claimed for the Session");
        bind(session, ctx, &pod).await?;
        return Ok(Claim::Adopted(Box::new(pod)));
    }
    if ctx.get::<Pod>(&session.name_any()).await?.is_some() {
        // A cold pod made before (the cache lags behind): never a second pod.
        return Ok(Claim::Cold("cold_pod"));
    }
    let relay = !ctx.config.exposure.wolf_on_public_ports();
    if let Some(reason) = warm::cold_reason(relay, app, user, session) {
        return Ok(Claim::Cold(reason));
    }
    let app_name = app.name_any();
    let mut candidates: Vec<Arc<Pod>> = ctx
        .caches
        .pods
        .state()
        .into_iter()
        .filter(|p| warm::claimable(p, &app_name))
        .collect();
    candidates.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    if candidates.is_empty() {
        return Ok(Claim::Cold("none_ready"));
    }
    for pod in candidates.iter().take(ATTEMPTS) {
        if let Some(claimed) = patch_claim(session, ctx, pod).await? {
            info!(pod = %claimed.name_any(), "warm pod claimed");
            bind(session, ctx, &claimed).await?;
            return Ok(Claim::Warm(Box::new(claimed)));
        }
        // Lost a race: perhaps to another replica claiming for this very Session.
        if let Some(pod) = claimed_pods(ctx, session).await?.into_iter().next() {
            bind(session, ctx, &pod).await?;
            return Ok(Claim::Adopted(Box::new(pod)));
        }
    }
    Ok(Claim::Cold("conflict"))
}

/// The claim patch of `pod` at the version read; `None` when another writer was first.
async fn patch_claim(session: &Session, ctx: &Context, pod: &Pod) -> Result<Option<Pod>, Error> {
    let mut owner = session.controller_owner_ref(&()).ok_or(Error::Malformed("uid"))?;
    owner.block_owner_deletion = Some(true);
    let mut new_labels = serde_json::Map::new();
    new_labels.insert(labels::WARM_POOL.to_owned(), serde_json::Value::Null);
    for (key, value) in session_labels(session) {
        new_labels.insert(key, value.into());
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": pod.resource_version(),
            "labels": new_labels,
            "ownerReferences": [owner],
        }
    });
    let name = pod.name_any();
    let api = ctx.api::<Pod>();
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    match ctx.retry.run("patch", || api.patch(&name, &params, &patch)).await {
        Ok(pod) => Ok(Some(pod)),
        Err(err) if has_status(&err, 409) || has_status(&err, 404) => {
            debug!(pod = name, "the warm pod was taken or changed meanwhile");
            Ok(None)
        }
        Err(err) => Err(Error::api(format!("claim Pod {name}"))(err)),
    }
}

/// The Session's agent Role and RoleBinding, bound to the warm pod's ServiceAccount.
pub(crate) async fn bind(session: &Session, ctx: &Context, pod: &Pod) -> Result<(), Error> {
    let (_, role, mut binding) = agent_account(session).ok_or(Error::Malformed("uid"))?;
    let account = stream::agent_account_name(&pod.name_any());
    for subject in binding.subjects.iter_mut().flatten() {
        subject.name.clone_from(&account);
    }
    let name = stream::agent_account_name(&session.name_any());
    let manager = field_managers::OPERATOR_AGENT_ACCOUNT;
    ctx.apply::<Role>(&name, &role, manager).await?;
    ctx.apply::<RoleBinding>(&name, &binding, manager).await?;
    Ok(())
}

/// Counts the claim's outcome and says it on the Session with an Event.
pub(crate) async fn report(session: &Session, ctx: &Context, claim: &Claim) {
    let (reason, note) = match claim {
        Claim::Warm(pod) => {
            ctx.metrics.warm_claimed("warm", "none");
            ("WarmPodClaimed", format!("warm pod {}", pod.name_any()))
        }
        Claim::Adopted(_) | Claim::Cold("no_pool" | "cold_pod") => return,
        Claim::Cold(why) => {
            ctx.metrics.warm_claimed("cold_fallback", why);
            ("ColdStart", format!("no warm pod: {}", explain(why)))
        }
    };
    let event = Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note),
        action: "StartPod".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &session.object_ref(&())).await {
        warn!(error = %err, "cannot record the claim Event");
    }
}

/// A person's words for a cold-start reason.
fn explain(reason: &str) -> &'static str {
    match reason {
        "exposure" => "warm pods serve the relay exposure only",
        "home_claim" => "the App has a home claim",
        "user_volumes" => "the User has volumes",
        "sidecar_policies" => "the User has sidecar policies",
        "caps" => "the User's caps refuse the App's containers",
        "video_mode" => "the requested video mode is not the pool's",
        "none_ready" => "none is ready",
        _ => "every ready one was taken meanwhile",
    }
}
