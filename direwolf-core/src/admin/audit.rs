//! The audit log: one line per refused request and per change, on the target
//! `direwolf::audit`. Never the token, PINs or certificates.

use std::net::IpAddr;

use hyper::StatusCode;

use crate::ids::UserName;

/// The log target of audit lines.
pub const TARGET: &str = "direwolf::audit";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The holder of the admin token.
    AdminToken,
    /// A local account logged in to the web UI.
    User(UserName),
    /// Nobody authenticated.
    Anonymous,
}

impl Actor {
    /// The name logged: `admin-token`, `user:NAME` or `anonymous`.
    pub fn name(&self) -> String {
        match self {
            Actor::AdminToken => "admin-token".to_owned(),
            Actor::User(name) => format!("user:{name}"),
            Actor::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// Logs one audited request: `actor` did `action` on `resource` from `client`, with `status`.
pub fn record(
    actor: Actor,
    client: Option<IpAddr>,
    action: &str,
    resource: &str,
    status: StatusCode,
    error: Option<&str>,
) {
    let client = client.map(|ip| ip.to_string()).unwrap_or_else(|| "-".to_owned());
    let outcome = if status.is_success() { "ok" } else { "refused" };
    tracing::info!(
        target: TARGET,
        actor = actor.name(),
        client,
        action,
        resource,
        status = status.as_u16(),
        outcome,
        error = error.unwrap_or(""),
        "admin audit"
    );
}
