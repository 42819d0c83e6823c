//! The audit log: one line per refused request and per change, on the target
//! `direwolf::audit`. Never the token, PINs or certificates.

use std::net::IpAddr;

use hyper::StatusCode;

/// The log target of audit lines.
pub const TARGET: &str = "direwolf::audit";

/// Who made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The holder of the admin token.
    AdminToken,
    /// Nobody authenticated.
    Anonymous,
}

impl Actor {
    /// The name logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::AdminToken => "admin-token",
            Actor::Anonymous => "anonymous",
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
        actor = actor.as_str(),
        client,
        action,
        resource,
        status = status.as_u16(),
        outcome,
        error = error.unwrap_or(""),
        "admin audit"
    );
}
