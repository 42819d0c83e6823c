//! The warm pools (apply side of [`super::warm`]): while leading, one task keeps every App's
//! pool at its size. It wakes on App and warm-pod changes and when the oldest kept pod reaches
//! its idle limit, reads the unclaimed warm pods from the API server (not the cache, so a pod
//! it just made is counted), deletes broken and surplus ones, and idle ones once their
//! replacements are Ready (each delete guarded by the resourceVersion read, so a pod claimed
//! meanwhile is never deleted), and makes up the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::PairSecret;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::context::Context;
use super::error::Error;
use super::warm::{self, Removal};
use crate::crd::{App, field_managers, labels};
use crate::retry::has_status;
use crate::stream;

/// The longest wait between two passes (a safety net).
const IDLE_PASS: Duration = Duration::from_secs(60);
/// The wait after a failed pass (doubling with each failure in a row, up to [`IDLE_PASS`]).
const FAILED_PASS: Duration = Duration::from_secs(2);

/// Keeps the pools until aborted (at the end of the term of leadership).
pub(crate) async fn run(ctx: Arc<Context>, wake: Arc<Notify>) {
    while ctx.wait_synced().await.is_err() {
        warn!("the caches are not synced yet; warm pools wait");
    }
    let mut failures = 0u32;
    loop {
        let next = if ctx.leading() {
            match pass(&ctx).await {
                Ok(recheck) => {
                    failures = 0;
                    recheck.unwrap_or(IDLE_PASS).min(IDLE_PASS)
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = FAILED_PASS
                        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(5)))
                        .min(IDLE_PASS);
                    warn!(error = %err, failures, ?delay, "warm pool pass failed; retrying");
                    delay
                }
            }
        } else {
            IDLE_PASS
        };
        tokio::select! {
            () = wake.notified() => {},
            () = tokio::time::sleep(next) => {},
        }
    }
}

/// One pass over every pool; when to look again for recycling.
async fn pass(ctx: &Context) -> Result<Option<Duration>, Error> {
    let params = ListParams::default().labels(labels::WARM_POOL);
    let api = ctx.api::<Pod>();
    let pods = ctx
        .retry
        .run("list", || api.list(&params))
        .await
        .map_err(Error::api("list warm pods"))?;
    let mut by_app: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods.items {
        let app = pod.labels().get(labels::WARM_POOL).cloned().unwrap_or_default();
        by_app.entry(app).or_default().push(pod);
    }
    let apps = ctx.caches.apps.state();
    for app in apps.iter().filter(|a| a.spec.warm_pool.is_some()) {
        by_app.entry(app.name_any()).or_default();
    }
    ctx.metrics.warm_pods_seen(by_app.values().flatten());
    let now = Timestamp::now();
    let mut recheck: Option<Duration> = None;
    for (name, pods) in &by_app {
        let app = apps.iter().find(|a| &a.name_any() == name);
        let pool = app.and_then(|a| a.spec.warm_pool.as_ref());
        let plan = warm::plan(pool, pods, now);
        for (pod, why) in &plan.delete {
            remove(ctx, pod, *why).await?;
        }
        if let Some(app) = app {
            for _ in 0..plan.create {
                create(ctx, app).await?;
            }
        }
        recheck = match (recheck, plan.recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(recheck.map(|r| r + Duration::from_millis(200)))
}

/// Deletes an unclaimed warm pod at the version read, then its account; a pod claimed (or
/// changed) since is left alone.
async fn remove(ctx: &Context, pod: &Pod, why: Removal) -> Result<(), Error> {
    let name = pod.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: pod.resource_version(),
            uid: pod.uid(),
        }),
        ..DeleteParams::background()
    };
    let api = ctx.api::<Pod>();
    match ctx.retry.run("delete", || api.delete(&name, &params)).await {
        Ok(_) => {}
        Err(err) if has_status(&err, 409) || has_status(&err, 404) => {
            debug!(pod = name, "the warm pod changed meanwhile; not deleted");
            return Ok(());
        }
        Err(err) => return Err(Error::api(format!("delete Pod {name}"))(err)),
    }
    ctx.metrics.warm_pod_removed(why);
    info!(pod = name, reason = why.label(), "warm pod deleted");
    delete_account(ctx, &name).await
}

/// Deletes the account of warm pod `pod` (its owner reference would also have the garbage
/// collector do it).
pub(crate) async fn delete_account(ctx: &Context, pod: &str) -> Result<(), Error> {
    let account = stream::agent_account_name(pod);
    ctx.delete::<RoleBinding>(&account).await?;
    ctx.delete::<Role>(&account).await?;
    ctx.delete::<ServiceAccount>(&account).await?;
    Ok(())
}

/// A fresh name for a warm pod of `app`.
fn fresh_name(app: &str) -> String {
    let random = PairSecret::generate().as_str().to_ascii_lowercase();
    let suffix: String = random
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(5)
        .collect();
    format!("{}{suffix}", stream::warm_pod_prefix(app))
}

/// Makes one warm pod of `app`: its account (owned by the App, as the pod does not exist
/// yet and must name an existing ServiceAccount), the pod, then the account owned by the pod.
async fn create(ctx: &Context, app: &App) -> Result<(), Error> {
    let Some(pool) = app.spec.warm_pool.as_ref() else {
        return Ok(());
    };
    let name = fresh_name(&app.name_any());
    let pod = match warm::warm_pod(app, pool, &ctx.config.pod, &name) {
        Ok(pod) => pod,
        Err(err) => {
            warn!(app = %app.name_any(), error = %err, "no warm pod can be built for the App");
            return Ok(());
        }
    };
    let owner = app.controller_owner_ref(&()).ok_or(Error::Malformed("App uid"))?;
    apply_account(ctx, app, &name, owner).await?;
    let api = ctx.api::<Pod>();
    let params = PostParams::default();
    let created = ctx
        .retry
        .run("create", || api.create(&params, &pod))
        .await
        .map_err(Error::api(format!("create Pod {name}")))?;
    let owner = created
        .controller_owner_ref(&())
        .ok_or(Error::Malformed("Pod uid"))?;
    apply_account(ctx, app, &name, owner).await?;
    ctx.metrics.pod_created();
    info!(pod = name, app = %app.name_any(), "warm pod created");
    Ok(())
}

async fn apply_account(
    ctx: &Context,
    app: &App,
    pod: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(), Error> {
    let (account, role, binding) = warm::warm_account(app, pod, owner);
    let name = stream::agent_account_name(pod);
    let manager = field_managers::OPERATOR_AGENT_ACCOUNT;
    ctx.apply::<ServiceAccount>(&name, &account, manager).await?;
    ctx.apply::<Role>(&name, &role, manager).await?;
    ctx.apply::<RoleBinding>(&name, &binding, manager).await?;
    Ok(())
}
