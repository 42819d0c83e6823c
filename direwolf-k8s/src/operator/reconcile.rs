//! The reconcile of one Session: observe (caches), decide (`decide.rs`, `pod.rs`, `expose.rs`),
//! apply (ports in status, the exposure's Service and routes, home claim, agent account, pod),
//! status (only when it changed); endings and the finalizer are in `ending.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument};

use super::account::agent_account;
use super::claim::{self, Claim};
use super::context::Context;
use super::decide::{self, Ending, Observed, OperatorStatus};
use super::ending;
use super::error::Error;
use super::events;
use super::home::home_claim;
use super::pod::{PodInputs, build_pod};
use super::publish;
use super::status::write_status;
use crate::crd::{App, Session, SessionPhase, User, conditions, field_managers, labels, reasons};
use crate::stream;

/// How often a steady Session is looked at again without any change (a safety net).
const STEADY_REQUEUE: Duration = Duration::from_secs(300);

/// Reconciles one Session (see the [module docs](self)).
#[instrument(skip(session, ctx), fields(session = %session.name_any()))]
pub(crate) async fn reconcile(session: Arc<Session>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leading() {
        return Ok(Action::await_change());
    }
    debug!("reconciling");
    let started = Instant::now();
    let result = reconcile_leading(session, ctx.clone()).await;
    ctx.metrics.reconciled(started.elapsed(), &result);
    result
}

/// [`reconcile`] on the leader.
async fn reconcile_leading(session: Arc<Session>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.wait_synced().await?;
    events::phase_changed(&session, &ctx).await;
    if session.meta().deletion_timestamp.is_some() {
        return ending::finalize(&session, &ctx).await;
    }
    if !session.finalizers().iter().any(|f| f == stream::FINALIZER) {
        ending::add_finalizer(&session, &ctx).await?;
        // The write changes the Session, which brings it back here.
        return Ok(Action::await_change());
    }
    if decide::already_ended(&session) {
        ending::delete_session(&session, &ctx).await?;
        return Ok(Action::await_change());
    }
    let ns = ctx.config.namespace.as_str();
    let app = Context::cached(&ctx.caches.apps, ns, &session.spec.game_reference.name);
    let user = Context::cached(&ctx.caches.users, ns, &session.spec.user_reference.name);
    let pod = claim::cached_pod(&ctx, &session);
    let observed = Observed {
        session: &session,
        app: app.as_deref(),
        user: user.as_deref(),
        pod: pod.as_deref(),
    };
    let now = Timestamp::now();
    if let Some(why) = decide::ending(observed, now, ctx.config.start_deadline) {
        return ending::end(&session, &ctx, why).await;
    }
    let (Some(app), Some(user)) = (app, user) else {
        return Err(Error::Malformed("App or User (decided present)"));
    };
    provision(&session, &ctx, &app, &user, pod, now).await
}

/// One pass of provisioning: ports, home, account, pod, status.
async fn provision(
    session: &Session,
    ctx: &Context,
    app: &App,
    user: &User,
    pod: Option<Arc<Pod>>,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = session.name_any();
    let generation = session.metadata.generation;
    let current = session.status.clone().unwrap_or_default();
    let mut status = OperatorStatus::current(session.status.as_ref());
    let mut on_server = status.clone();
    let mut resource_version = session.resource_version();
    status.advance_phase(current.phase, SessionPhase::Pending);

    // Ports, written before anything uses them.
    let known: Vec<(String, Option<crate::crd::SessionPorts>)> = ctx
        .caches
        .sessions
        .state()
        .iter()
        .map(|s| (s.name_any(), s.status.as_ref().and_then(|st| st.ports)))
        .collect();
    let known_refs = known.iter().map(|(n, p)| (n.as_str(), *p));
    let Some(ports) = ctx.ports.allocate(&name, current.ports, known_refs) else {
        let range = ctx.ports.range();
        let message = format!("no free block of four ports in {range}");
        return ending::end(
            session,
            ctx,
            Ending {
                step: Some((conditions::PORTS_ALLOCATED, reasons::PORTS_ALLOCATION_FAILED)),
                ..Ending::new(reasons::PORTS_ALLOCATION_FAILED, message)
            },
        )
        .await;
    };
    status.ports = Some(ports);
    let message = format!(
        "rtsp {}, control {}, video {}, audio {}",
        ports.rtsp, ports.control, ports.video_rtp, ports.audio_rtp
    );
    status.set_condition(
        conditions::PORTS_ALLOCATED,
        true,
        reasons::SUCCESS,
        &message,
        generation,
        now,
    );
    if current.ports != Some(ports) {
        let written = write_status(ctx, session, &status, resource_version.as_deref()).await?;
        resource_version = written.resource_version();
        on_server = status.clone();
        info!(rtsp = %ports.rtsp, "ports allocated");
    }

    // Exposure (load-balancer and gateway modes): before the pod, so that a Gateway that
    // does not exist ends the Session before a pod is made for it.
    let recheck = match publish::publish(session, ctx, ports, &mut status, now).await? {
        publish::Outcome::Done { recheck } => recheck,
        publish::Outcome::End(why) => return ending::end_from(session, ctx, why, on_server).await,
    };

    // Home.
    let claim = match home_claim(app, user) {
        Some(claim) => {
            let claim_name = claim.name_any();
            if ctx.get::<PersistentVolumeClaim>(&claim_name).await?.is_none() {
                ctx.apply(&claim_name, &claim, field_managers::OPERATOR_PVC)
                    .await?;
                info!(claim = claim_name, "home claim applied");
            }
            let message = format!("claim {claim_name}");
            status.set_condition(
                conditions::VOLUME_CREATED,
                true,
                reasons::SUCCESS,
                &message,
                generation,
                now,
            );
            Some(claim_name)
        }
        None => None,
    };

    // Account and pod: a warm pod if the Session can take one, else a cold one.
    let pod = match pod {
        Some(pod) => {
            if pod.labels().contains_key(labels::WARM) && !deployment_created(session) {
                // Claimed before a failover, or before a failed status write.
                claim::bind(session, ctx, &pod).await?;
            }
            Some(pod)
        }
        None => match start_pod(session, ctx, app, user, claim.as_deref(), ports).await? {
            PodOutcome::Created(pod) => pod.map(|p| Arc::new(*p)),
            PodOutcome::Refused(why) | PodOutcome::Vanished(why) => {
                return ending::end_from(session, ctx, why, on_server).await;
            }
        },
    };
    let pod_name = pod.as_deref().map_or(name.clone(), ResourceExt::name_any);
    status.set_condition(
        conditions::DEPLOYMENT_CREATED,
        true,
        reasons::SUCCESS,
        &format!("pod {pod_name}"),
        generation,
        now,
    );
    status.advance_phase(current.phase, SessionPhase::Initializing);
    if let Some(ip) = pod.as_deref().and_then(decide::pod_ip) {
        status.host = Some(ip);
    }
    if status != on_server {
        write_status(ctx, session, &status, resource_version.as_deref()).await?;
    }
    let action = requeue_after(session, ctx, now);
    Ok(match recheck {
        Some(recheck) => Action::requeue(recheck.min(requeue_delay(session, ctx, now))),
        None => action,
    })
}

/// The delay of [`requeue_after`].
fn requeue_delay(session: &Session, ctx: &Context, now: Timestamp) -> Duration {
    let started = session.status.as_ref().is_some_and(|s| s.stream_url.is_some());
    if started {
        return STEADY_REQUEUE;
    }
    ctx.config
        .start_deadline
        .saturating_sub(decide::age(session, now))
        + Duration::from_millis(500)
}

/// When to look again: at the start deadline while the stream has not started, else rarely.
fn requeue_after(session: &Session, ctx: &Context, now: Timestamp) -> Action {
    Action::requeue(requeue_delay(session, ctx, now))
}

enum PodOutcome {
    /// Created now (`None`: it already existed).
    Created(Option<Box<Pod>>),
    /// No pod can be built: the Session ends.
    Refused(Ending),
    /// The pod was created before and is gone: the Session ends.
    Vanished(Ending),
}

/// The Session ends: its pod cannot be built, or the API server refused it as written.
fn pod_refused(message: String) -> PodOutcome {
    PodOutcome::Refused(Ending {
        step: Some((conditions::DEPLOYMENT_CREATED, reasons::POD_CREATION_FAILED)),
        ..Ending::new(reasons::POD_CREATION_FAILED, message)
    })
}

/// Whether the Session's status says its pod was made.
fn deployment_created(session: &Session) -> bool {
    session
        .status
        .as_ref()
        .and_then(|s| crate::crd::find_condition(&s.conditions, conditions::DEPLOYMENT_CREATED))
        .is_some_and(|c| c.status == "True")
}

/// A warm pod claimed for the Session, else a cold one made ([`create_pod`]).
async fn start_pod(
    session: &Session,
    ctx: &Context,
    app: &App,
    user: &User,
    home: Option<&str>,
    ports: crate::crd::SessionPorts,
) -> Result<PodOutcome, Error> {
    if !deployment_created(session) {
        let claimed = claim::claim(session, ctx, app, user).await?;
        claim::report(session, ctx, &claimed).await;
        if let Claim::Warm(pod) | Claim::Adopted(pod) = claimed {
            return Ok(PodOutcome::Created(Some(pod)));
        }
    }
    create_pod(session, ctx, app, user, home, Some(ports)).await
}

/// Creates the agent account and the pod, unless the pod existed and was deleted.
async fn create_pod(
    session: &Session,
    ctx: &Context,
    app: &App,
    user: &User,
    claim: Option<&str>,
    ports: Option<crate::crd::SessionPorts>,
) -> Result<PodOutcome, Error> {
    let name = session.name_any();
    if deployment_created(session) {
        // The cache may lag behind a creation: only the API server's 404 means gone.
        let found = match ctx.get::<Pod>(&name).await? {
            Some(pod) => Some(pod),
            None => claim::claimed_pods(ctx, session).await?.into_iter().next(),
        };
        return Ok(match found {
            Some(pod) => PodOutcome::Created(Some(Box::new(pod))),
            None => PodOutcome::Vanished(Ending::new(
                reasons::POD_FAILED,
                format!("the stream pod {name} was deleted"),
            )),
        });
    }
    let inputs = PodInputs {
        session,
        app,
        user,
        settings: &ctx.config.pod,
        home_claim: claim,
        wolf_ports: if ctx.config.exposure.wolf_on_public_ports() {
            ports
        } else {
            None
        },
    };
    let pod = match build_pod(inputs) {
        Ok(pod) => pod,
        Err(err) => return Ok(pod_refused(err.to_string())),
    };
    let (account, role, binding) = agent_account(session).ok_or(Error::Malformed("uid"))?;
    let account_name = stream::agent_account_name(&name);
    let manager = field_managers::OPERATOR_AGENT_ACCOUNT;
    ctx.apply::<ServiceAccount>(&account_name, &account, manager)
        .await?;
    ctx.apply::<Role>(&account_name, &role, manager).await?;
    ctx.apply::<RoleBinding>(&account_name, &binding, manager).await?;
    let created = match ctx.create_if_absent(&name, &pod).await {
        Ok(created) => created,
        Err(err) => {
            let Some(message) = err.refusal() else {
                return Err(err);
            };
            return Ok(pod_refused(format!(
                "the API server refused the stream pod: {message}"
            )));
        }
    };
    if created.is_some() {
        ctx.metrics.pod_created();
        info!(pod = name, "stream pod created");
    } else {
        debug!(pod = name, "stream pod already exists");
    }
    Ok(PodOutcome::Created(created.map(Box::new)))
}
