//! The Kubernetes Events of a Session's life besides its ending (`ending.rs`): every phase
//! change the operator observes, whoever wrote it (the operator, the agent), and reconcile
//! failures.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::context::Context;
use super::error::Error;
use crate::crd::{Session, SessionPhase, reasons};

/// The phase's name as written in `status.phase`.
fn name(phase: SessionPhase) -> &'static str {
    direwolf_core::metrics::sessions::phase_label(phase.into())
}

/// Publishes an Event when `session`'s phase differs from the one this term saw last: reason the
/// new phase (`Initializing`, `WaitForPing`, `Streaming`, `Paused`; a distinct reason per phase,
/// as the recorder folds Events of one reason into one series), note `BEFORE → NOW`. The first sight of a Session in a term publishes nothing (a new leader does not repeat
/// its predecessor's Events); `Ended` has the ending's own Event.
pub(crate) async fn phase_changed(session: &Session, ctx: &Context) {
    let now = session
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(SessionPhase::Pending);
    let Some(before) = ctx.phases.observe(&session.name_any(), now) else {
        return;
    };
    if now == SessionPhase::Ended {
        return;
    }
    let event = Event {
        type_: EventType::Normal,
        reason: name(now).to_owned(),
        note: Some(format!("{} → {}", name(before), name(now))),
        action: "PhaseChange".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &session.object_ref(&())).await {
        warn!(error = %err, "cannot record the phase Event");
    }
}

/// Publishes a `ReconcileFailed` Warning on the 1st, 2nd, 4th, 8th… consecutive failure of a
/// Session (a lost optimistic-concurrency race, 409, is routine and never published).
pub(crate) fn reconcile_failed(session: &Session, err: &Error, failures: u32, ctx: &Arc<Context>) {
    if !failures.is_power_of_two() || err.category() == "409" {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: reasons::RECONCILE_FAILED.to_owned(),
        note: Some(format!("{err} (failure {failures}; retrying)")),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    let reference = session.object_ref(&());
    let recorder = ctx.recorder.clone();
    tokio::spawn(async move {
        if let Err(err) = recorder.publish(&event, &reference).await {
            warn!(error = %err, "cannot record the failure Event");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::context::PhaseLog;
    use super::*;

    #[test]
    fn a_change_is_reported_once_and_a_first_sight_not_at_all() {
        let log = PhaseLog::default();
        assert_eq!(log.observe("s", SessionPhase::Pending), None, "first sight");
        assert_eq!(log.observe("s", SessionPhase::Pending), None, "no change");
        assert_eq!(
            log.observe("s", SessionPhase::Initializing),
            Some(SessionPhase::Pending)
        );
        assert_eq!(log.observe("s", SessionPhase::Initializing), None);
        log.forget("s");
        assert_eq!(log.observe("s", SessionPhase::Streaming), None, "forgotten");
    }
}
