//! Exponential back-off with jitter, for every wait that repeats (the event stream's
//! reconnections here; its users' own retries): many clients that lost one Wolf together do not
//! retry in step.
//!
//! ```
//! use std::time::Duration;
//! use direwolf_wolf_client::backoff::Backoff;
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
//! let first = backoff.next_delay();
//! assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(150));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays growing from `initial` to `max`, each drawn in [½, 1½) of its nominal value.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off starting at `initial`, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The next delay (with jitter); the nominal delay doubles.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        nominal.mul_f64(0.5 + unit_random())
    }

    /// Sleeps the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A number in [0, 1) that differs from call to call: std's hasher keys are seeded randomly per
/// thread and advance with every [`RandomState`], which is all jitter needs (no cryptography).
fn unit_random() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    // 53 random bits over 2^53: exactly representable, below 1.
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        for (d, nominal) in delays.iter().zip([100u64, 200, 400, 400, 400]) {
            let nominal = Duration::from_millis(nominal);
            assert!(*d >= nominal / 2 && *d < nominal * 3 / 2, "{d:?} vs {nominal:?}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(150));
    }

    #[test]
    fn jitter_spreads_over_its_interval() {
        let draws: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((350..650).contains(&low), "{low} of 1000 draws below 0.5");
    }
}
