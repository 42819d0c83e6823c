//! The operator's one write of a Session's status: its own fields, by server-side apply.

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

use super::context::Context;
use super::decide::OperatorStatus;
use super::error::Error;
use crate::crd::{Session, field_managers};

/// Server-side applies the operator's status fields; with `resource_version`, only if the
/// Session did not change since it was read (so the agent's phase is never overwritten).
pub(crate) async fn write_status(
    ctx: &Context,
    session: &Session,
    status: &OperatorStatus,
    resource_version: Option<&str>,
) -> Result<Session, Error> {
    let name = session.name_any();
    let body = status.apply_body(session, resource_version);
    let api = ctx.api::<Session>();
    let params = PatchParams::apply(field_managers::OPERATOR_SESSION_STATUS).force();
    let patch = Patch::Apply(&body);
    ctx.retry
        .run("apply status", || api.patch_status(&name, &params, &patch))
        .await
        .map_err(Error::api(format!("apply the status of Session {name}")))
}
