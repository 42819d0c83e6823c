//! Exponential back-off with jitter, for every wait of the agent that repeats (the keys Secret,
//! status writes, Wolf's event stream): many pods restarting together do not retry in step.

use std::time::Duration;

use rand::Rng;

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
        nominal.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
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
}
