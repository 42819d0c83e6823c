//! Pairing attempts by how they ended.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Metrics;

/// How a pairing attempt ended, as the Moonlight server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingOutcome {
    /// Paired: the client's certificate is stored.
    Paired,
    /// The client's proof did not match: a wrong PIN or a bad signature.
    WrongPin,
    /// Nobody entered the PIN in time.
    PinTimeout,
    /// A request refused before the end: malformed, out of order, superseded, over a limit.
    Refused,
    /// The server could not finish (a store or the PIN broker failed).
    Failed,
}

impl PairingOutcome {
    /// Every outcome.
    pub const ALL: [PairingOutcome; 5] = [
        PairingOutcome::Paired,
        PairingOutcome::WrongPin,
        PairingOutcome::PinTimeout,
        PairingOutcome::Refused,
        PairingOutcome::Failed,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            PairingOutcome::Paired => "paired",
            PairingOutcome::WrongPin => "wrong_pin",
            PairingOutcome::PinTimeout => "pin_timeout",
            PairingOutcome::Refused => "refused",
            PairingOutcome::Failed => "failed",
        }
    }
}

/// `direwolf_pairing_attempts_total{outcome}`. The default value counts without being
/// registered anywhere (a server nobody scrapes).
#[derive(Debug, Clone, Default)]
pub struct PairingMetrics {
    attempts: Family<[(&'static str, &'static str); 1], Counter>,
}

impl PairingMetrics {
    /// The family, registered in `metrics`, every outcome at 0 (so rates exist before the
    /// first attempt).
    pub fn register(metrics: &Metrics) -> Self {
        let this = PairingMetrics::default();
        for outcome in PairingOutcome::ALL {
            let _ = this.attempts.get_or_create(&[("outcome", outcome.label())]);
        }
        metrics.register(
            "pairing_attempts",
            "Pairing attempts by outcome (paired, wrong_pin, pin_timeout, refused, failed).",
            this.attempts.clone(),
        );
        this
    }

    /// Counts one attempt's end.
    pub fn record(&self, outcome: PairingOutcome) {
        self.attempts.get_or_create(&[("outcome", outcome.label())]).inc();
    }
}
