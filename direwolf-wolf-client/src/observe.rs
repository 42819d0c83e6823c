//! What a caller may learn of every API call: which endpoint, how long it took, how it ended.
//! The client has no metrics library of its own; an application hands it a [`CallObserver`]
//! (direwolf's turns these into Prometheus histograms).

use std::fmt::Debug;
use std::time::Duration;

/// How one call to Wolf ended, at the HTTP level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Wolf answered with a 2xx status.
    Ok,
    /// Wolf answered with another status (its JSON error, or a crash page of its HTTP server).
    Status(u16),
    /// No whole answer within the client's timeout.
    Timeout,
    /// The connection failed or broke (socket missing, refused, reset, a body over the limit).
    Transport,
}

impl CallOutcome {
    /// A short label: `ok`, `status_4xx`, `status_5xx`, `status_other`, `timeout` or
    /// `transport`.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Status(400..=499) => "status_4xx",
            CallOutcome::Status(500..=599) => "status_5xx",
            CallOutcome::Status(_) => "status_other",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Transport => "transport",
        }
    }
}

/// Told of every request/response call the client makes (not of the long-lived event stream).
/// Called on the caller's task once the call has ended: keep it cheap and never block.
pub trait CallObserver: Send + Sync + Debug + 'static {
    /// `endpoint` is the API path without its query (`/api/v1/sessions/add`, …).
    fn call(&self, endpoint: &'static str, elapsed: Duration, outcome: CallOutcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_group_statuses() {
        let labels: Vec<_> = [
            CallOutcome::Ok,
            CallOutcome::Status(404),
            CallOutcome::Status(500),
            CallOutcome::Status(302),
            CallOutcome::Timeout,
            CallOutcome::Transport,
        ]
        .map(CallOutcome::label)
        .into();
        assert_eq!(
            labels,
            [
                "ok",
                "status_4xx",
                "status_5xx",
                "status_other",
                "timeout",
                "transport"
            ]
        );
    }
}
