//! The pure decisions of the Session reconciler: whether a Session has to end (and why), what
//! its pod says (IP, readiness), and the status the operator wants it to have.
//!
//! Nothing here talks to the API server; `reconcile.rs` observes, calls these, and applies.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource as _, ResourceExt};

use crate::crd::{
    App, Session, SessionPhase, SessionPorts, SessionStatus, User, conditions, find_condition, reasons,
};
use crate::stream::containers;

/// Why a Session ends: the reason of its `Ended` condition and of the Event, and a message for
/// people (and the waiting proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// A stable reason from [`crate::crd::reasons`].
    pub reason: &'static str,
    /// What happened.
    pub message: String,
    /// The step condition that failed with it, if one did (type, reason).
    pub step: Option<(&'static str, &'static str)>,
}

impl Ending {
    /// An ending for `reason` with `message` and no failed step.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Ending {
            reason,
            message: message.into(),
            step: None,
        }
    }
}

/// What the reconciler observed about one Session.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The Session.
    pub session: &'a Session,
    /// Its App, if it exists.
    pub app: Option<&'a App>,
    /// Its User, if it exists.
    pub user: Option<&'a User>,
    /// Its pod, if it exists.
    pub pod: Option<&'a Pod>,
}

/// Whether the operator already ended this Session (its `Ended` condition is set): only its
/// deletion is left to do.
pub fn already_ended(session: &Session) -> bool {
    session
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, conditions::ENDED))
        .is_some_and(|c| c.status == "True")
}

/// Whether and why the Session must end now.
pub fn ending(observed: Observed<'_>, now: Timestamp, start_deadline: Duration) -> Option<Ending> {
    let session = observed.session;
    let status = session.status.clone().unwrap_or_default();
    if status.phase == Some(SessionPhase::Ended) {
        return Some(Ending::new(reasons::STREAM_ENDED, "the stream ended"));
    }
    if observed.app.is_none() {
        let app = &session.spec.game_reference.name;
        return Some(Ending::new(
            reasons::APP_DELETED,
            format!("App {app:?} was deleted"),
        ));
    }
    if observed.user.is_none() {
        let user = &session.spec.user_reference.name;
        return Some(Ending::new(
            reasons::USER_DELETED,
            format!("User {user:?} was deleted"),
        ));
    }
    if let Some(ending) = observed.pod.and_then(pod_ending) {
        return Some(ending);
    }
    if status.stream_url.is_none() && age(session, now) > start_deadline {
        let waiting_for = match observed.pod {
            None => "no pod",
            Some(pod) if !pod_ready(pod) => "the pod is not Ready",
            Some(_) => "the agent has not published a stream URL",
        };
        return Some(Ending::new(
            reasons::START_DEADLINE_EXCEEDED,
            format!("the stream did not start within {start_deadline:?}: {waiting_for}"),
        ));
    }
    None
}

/// How long ago the Session was created (zero if unknown).
pub fn age(session: &Session, now: Timestamp) -> Duration {
    session
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default()
}

/// What in the pod ends the Session: Wolf exited, the pod failed or completed, or the
/// scheduler cannot place it.
pub fn pod_ending(pod: &Pod) -> Option<Ending> {
    let status = pod.status.as_ref()?;
    let wolf = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == containers::WOLF);
    if let Some(terminated) = wolf.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
        let mut message = format!("Wolf exited with code {}", terminated.exit_code);
        for detail in [&terminated.reason, &terminated.message].into_iter().flatten() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return Some(Ending::new(reasons::WOLF_EXITED, message));
    }
    if let Some(phase @ ("Failed" | "Succeeded")) = status.phase.as_deref() {
        let detail = status
            .message
            .as_deref()
            .or(status.reason.as_deref())
            .unwrap_or("no message");
        return Some(Ending::new(
            reasons::POD_FAILED,
            format!("the stream pod {} is {phase}: {detail}", pod.name_any()),
        ));
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        let why = condition.message.as_deref().unwrap_or("no node fits");
        return Some(Ending {
            step: Some((conditions::DEPLOYMENT_CREATED, reasons::UNSCHEDULABLE)),
            ..Ending::new(
                reasons::UNSCHEDULABLE,
                format!("the stream pod cannot be scheduled: {why}"),
            )
        });
    }
    None
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's IP, once it has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// The part of a Session's status the operator writes (field manager
/// [`crate::crd::field_managers::OPERATOR_SESSION_STATUS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStatus {
    /// Pending, Initializing or Ended; `None` once the agent owns the phase.
    pub phase: Option<SessionPhase>,
    /// The operator's conditions ([`OPERATOR_CONDITIONS`]).
    pub conditions: Vec<Condition>,
    /// The allocated ports.
    pub ports: Option<SessionPorts>,
    /// The pod's IP.
    pub host: Option<String>,
}

/// The condition types the operator owns on a Session.
pub const OPERATOR_CONDITIONS: [&str; 7] = [
    conditions::PORTS_ALLOCATED,
    conditions::VOLUME_CREATED,
    conditions::DEPLOYMENT_CREATED,
    conditions::SERVICE_CREATED,
    conditions::ROUTES_CREATED,
    conditions::LOAD_BALANCER_ADDRESS,
    conditions::ENDED,
];

/// Whether the agent has taken over the phase (WaitForPing, Streaming, Paused).
pub fn agent_owns_phase(phase: Option<SessionPhase>) -> bool {
    matches!(
        phase,
        Some(SessionPhase::WaitForPing | SessionPhase::Streaming | SessionPhase::Paused)
    )
}

impl OperatorStatus {
    /// The operator's part of `status` as it is now.
    pub fn current(status: Option<&SessionStatus>) -> Self {
        let status = status.cloned().unwrap_or_default();
        OperatorStatus {
            phase: status.phase.filter(|p| !agent_owns_phase(Some(*p))),
            conditions: status
                .conditions
                .into_iter()
                .filter(|c| OPERATOR_CONDITIONS.contains(&c.type_.as_str()))
                .collect(),
            ports: status.ports,
            host: status.host,
        }
    }

    /// Sets condition `type_`, keeping its transition time if its status does not change.
    pub fn set_condition(
        &mut self,
        type_: &str,
        ok: bool,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        let status = if ok { "True" } else { "False" };
        let previous = self.conditions.iter().position(|c| c.type_ == type_);
        let transition = previous
            .map(|i| &self.conditions[i])
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        let condition = Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: transition,
        };
        match previous {
            Some(i) => self.conditions[i] = condition,
            None => self.conditions.push(condition),
        }
    }

    /// Moves the phase forward to `phase` unless the agent owns it (or it is already later).
    pub fn advance_phase(&mut self, current: Option<SessionPhase>, phase: SessionPhase) {
        if agent_owns_phase(current) || current == Some(SessionPhase::Ended) {
            return;
        }
        let rank = |p: Option<SessionPhase>| match p {
            None => 0,
            Some(SessionPhase::Pending) => 1,
            Some(SessionPhase::Initializing) => 2,
            Some(_) => 3,
        };
        if rank(Some(phase)) > rank(self.phase) {
            self.phase = Some(phase);
        }
    }

    /// The status subresource body of a server-side apply of these fields.
    pub fn apply_body(&self, session: &Session, resource_version: Option<&str>) -> serde_json::Value {
        let mut status = serde_json::Map::new();
        if let Some(phase) = self.phase {
            status.insert("phase".to_owned(), serde_json::json!(phase));
        }
        status.insert("conditions".to_owned(), serde_json::json!(self.conditions));
        if let Some(ports) = self.ports {
            status.insert("ports".to_owned(), serde_json::json!(ports));
        }
        if let Some(host) = &self.host {
            status.insert("host".to_owned(), serde_json::json!(host));
        }
        let mut metadata = serde_json::json!({ "name": session.name_any() });
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = serde_json::json!(rv);
        }
        serde_json::json!({
            "apiVersion": crate::crd::Session::api_version(&()),
            "kind": "Session",
            "metadata": metadata,
            "status": status,
        })
    }
}
