//! How Sessions end and go: the finalizer, an ending (phase Ended, the `Ended` condition, an
//! Event, then deletion), and the cleanup on deletion (pod, agent account, keys Secret, the
//! exposure's Service and routes; the
//! finalizer is removed once the pod is gone or a bound has passed; the ports are free then).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::context::Context;
use super::decide::{Ending, OperatorStatus};
use super::error::Error;
use super::publish;
use super::status::write_status;
use crate::crd::{Session, SessionPhase, conditions, reasons};
use crate::retry::has_status;
use crate::stream;

/// How often a deleted Session whose pod is still terminating is looked at.
const TERMINATING_POLL: Duration = Duration::from_secs(1);

/// Merge-patches the finalizers to `finalizers`, only if the Session did not change since it
/// was read (its resourceVersion), so no other writer's finalizer is lost.
async fn set_finalizers(session: &Session, ctx: &Context, finalizers: Vec<String>) -> Result<(), Error> {
    let name = session.name_any();
    let patch = json!({ "metadata": {
        "finalizers": finalizers,
        "resourceVersion": session.resource_version(),
    }});
    let api = ctx.api::<Session>();
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    match ctx
        .retry
        .run("patch finalizers", || api.patch(&name, &params, &patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: nothing holds it any more.
        Err(err) if has_status(&err, 404) => Ok(()),
        Err(err) => Err(Error::api(format!("patch the finalizers of Session {name}"))(err)),
    }
}

/// Adds [`stream::FINALIZER`].
pub(crate) async fn add_finalizer(session: &Session, ctx: &Context) -> Result<(), Error> {
    let mut finalizers = session.finalizers().to_vec();
    finalizers.push(stream::FINALIZER.to_owned());
    set_finalizers(session, ctx, finalizers).await
}

/// Ends a Session: phase Ended and the `Ended` condition (so a waiting proxy fails at once with
/// the message), an Event with the reason, then its deletion.
pub(crate) async fn end(session: &Session, ctx: &Context, ending: Ending) -> Result<Action, Error> {
    end_from(
        session,
        ctx,
        ending,
        OperatorStatus::current(session.status.as_ref()),
    )
    .await
}

/// [`end`], from the operator's status `status` as last written (the Session read may predate
/// a write of this reconcile).
pub(crate) async fn end_from(
    session: &Session,
    ctx: &Context,
    ending: Ending,
    mut status: OperatorStatus,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let generation = session.metadata.generation;
    status.phase = Some(SessionPhase::Ended);
    status.set_condition(
        conditions::ENDED,
        true,
        ending.reason,
        &ending.message,
        generation,
        now,
    );
    if let Some((type_, reason)) = ending.step {
        status.set_condition(type_, false, reason, &ending.message, generation, now);
    }
    write_status(ctx, session, &status, None).await?;
    info!(reason = ending.reason, message = %ending.message, "session ended");
    ctx.metrics.ended();
    let event = Event {
        type_: if ending.reason == reasons::STREAM_ENDED {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: ending.reason.to_owned(),
        note: Some(ending.message.clone()),
        action: "End".to_owned(),
        secondary: None,
    };
    // An Event is for people; a failure to record it must not keep the Session alive.
    if let Err(err) = ctx.recorder.publish(&event, &session.object_ref(&())).await {
        warn!(error = %err, "cannot record the ending Event");
    }
    delete_session(session, ctx).await?;
    Ok(Action::await_change())
}

/// Deletes the Session (its finalizer then cleans up).
pub(crate) async fn delete_session(session: &Session, ctx: &Context) -> Result<(), Error> {
    ctx.delete::<Session>(&session.name_any()).await.map(|_| ())
}

/// The Session is being deleted: delete its pod, account and keys Secret, wait (bounded) for
/// the pod to be gone, then remove the finalizer.
pub(crate) async fn finalize(session: &Session, ctx: &Context) -> Result<Action, Error> {
    let name = session.name_any();
    if !session.finalizers().iter().any(|f| f == stream::FINALIZER) {
        ctx.ports.release(&name);
        ctx.phases.forget(&name);
        return Ok(Action::await_change());
    }
    let mut pods: Vec<Pod> = ctx.get::<Pod>(&name).await?.into_iter().collect();
    pods.extend(super::claim::claimed_pods(ctx, session).await?);
    pods.retain(|p| owned_by(p, session));
    for pod in &pods {
        if pod.metadata.deletion_timestamp.is_none() {
            ctx.delete::<Pod>(&pod.name_any()).await?;
        }
        if pod.name_any() != name {
            // A claimed warm pod: its own account too.
            super::pool::delete_account(ctx, &pod.name_any()).await?;
        }
    }
    let account = stream::agent_account_name(&name);
    ctx.delete::<RoleBinding>(&account).await?;
    ctx.delete::<Role>(&account).await?;
    ctx.delete::<ServiceAccount>(&account).await?;
    ctx.delete::<Secret>(&stream::keys_secret_name(&name)).await?;
    publish::withdraw(session, ctx).await?;
    let waited = session
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    let pod_left = !pods.is_empty();
    if pod_left && waited < ctx.config.pod_deletion_bound {
        return Ok(Action::requeue(TERMINATING_POLL));
    }
    if pod_left {
        warn!(waited = ?waited, "the stream pod is still terminating; releasing the Session anyway");
    }
    let finalizers = session
        .finalizers()
        .iter()
        .filter(|f| *f != stream::FINALIZER)
        .cloned()
        .collect();
    set_finalizers(session, ctx, finalizers).await?;
    ctx.ports.release(&name);
    ctx.phases.forget(&name);
    info!("session released");
    Ok(Action::await_change())
}

/// Whether `pod` belongs to this Session (not to an earlier Session of the same name).
fn owned_by(pod: &Pod, session: &Session) -> bool {
    let uid = session.uid();
    pod.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true))
}
