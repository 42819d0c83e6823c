//! Rate limits for log lines that a remote peer can trigger again and again: at most `burst`
//! lines per key per interval; the rest are suppressed (or logged at DEBUG by the caller), and
//! the first line of the next interval says how many were (`more_suppressed`). Keys past the
//! table's size share one overflow slot, so many keys cannot lift the limit.
//!
//! [`warn_throttled!`](crate::warn_throttled) applies [`WARNINGS`] (one WARN per key per minute)
//! to a `warn!` call site.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
#[doc(hidden)]
pub use tracing;

/// Keys kept by a [`Throttle`] before further keys share the overflow slot.
const MAX_KEYS: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Slot {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Slot {
            window_start: now,
            logged: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line reported)` if a line may be logged now.
    fn check(&mut self, now: Instant, interval: Duration, burst: u32) -> Option<u64> {
        if now.duration_since(self.window_start) >= interval {
            let suppressed = self.suppressed;
            *self = Slot::new(now);
            self.logged = 1;
            return Some(suppressed);
        }
        if self.logged < burst {
            self.logged += 1;
            return Some(0);
        }
        self.suppressed += 1;
        None
    }
}

#[derive(Debug)]
struct Slots<K> {
    by_key: HashMap<K, Slot>,
    overflow: Option<Slot>,
}

/// At most `burst` lines per key per `interval`.
#[derive(Debug)]
pub struct Throttle<K> {
    interval: Duration,
    burst: u32,
    slots: Mutex<Slots<K>>,
}

impl<K: Eq + Hash> Throttle<K> {
    /// A throttle letting `burst` lines per key through per `interval`.
    pub fn new(interval: Duration, burst: u32) -> Self {
        Throttle {
            interval,
            burst: burst.max(1),
            slots: Mutex::new(Slots {
                by_key: HashMap::new(),
                overflow: None,
            }),
        }
    }

    /// `Some(n)` if a line for `key` may be logged now, `n` being how many were suppressed before
    /// it (report them with the line); `None` if this one is to be suppressed.
    pub fn check(&self, key: K) -> Option<u64> {
        self.check_at(key, Instant::now())
    }

    /// [`Throttle::check`] at `now`.
    pub fn check_at(&self, key: K, now: Instant) -> Option<u64> {
        let (interval, burst) = (self.interval, self.burst);
        let mut slots = self.slots.lock();
        if !slots.by_key.contains_key(&key) && slots.by_key.len() >= MAX_KEYS {
            slots
                .by_key
                .retain(|_, s| now.duration_since(s.window_start) < interval);
        }
        if slots.by_key.contains_key(&key) || slots.by_key.len() < MAX_KEYS {
            return slots
                .by_key
                .entry(key)
                .or_insert_with(|| Slot::new(now))
                .check(now, interval, burst);
        }
        slots
            .overflow
            .get_or_insert_with(|| Slot::new(now))
            .check(now, interval, burst)
    }
}

/// The throttle of [`warn_throttled!`](crate::warn_throttled): one WARN per call-site key per
/// minute.
pub static WARNINGS: LazyLock<Throttle<&'static str>> =
    LazyLock::new(|| Throttle::new(Duration::from_secs(60), 1));

/// `warn!` at most once a minute per `key` (a `&'static str` naming the call site); the others go
/// to DEBUG, and the next WARN carries `more_suppressed`, how many did.
///
/// ```
/// let e = "the broker is full";
/// direwolf_moonlight::warn_throttled!("doc-example", error = %e, "cannot open a pending PIN entry");
/// ```
#[macro_export]
macro_rules! warn_throttled {
    ($key:expr, $($arg:tt)+) => {
        match $crate::log_throttle::WARNINGS.check($key) {
            Some(0) => $crate::log_throttle::tracing::warn!($($arg)+),
            Some(more_suppressed) => $crate::log_throttle::tracing::warn!(more_suppressed, $($arg)+),
            None => $crate::log_throttle::tracing::debug!($($arg)+),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count() {
        let throttle = Throttle::new(Duration::from_secs(10), 1);
        let t0 = Instant::now();
        assert_eq!(throttle.check_at("k", t0), Some(0));
        // A flood within the interval is suppressed...
        for i in 1..=1000 {
            assert_eq!(throttle.check_at("k", t0 + Duration::from_millis(i)), None);
        }
        // ...and another key is not affected.
        assert_eq!(throttle.check_at("other", t0), Some(0));
        // The next line after the interval says how many were suppressed.
        assert_eq!(throttle.check_at("k", t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(throttle.check_at("k", t0 + Duration::from_secs(11)), None);
        assert_eq!(throttle.check_at("k", t0 + Duration::from_secs(20)), Some(1));
        assert_eq!(throttle.check_at("k", t0 + Duration::from_secs(40)), Some(0));
    }

    #[test]
    fn a_burst_passes_before_suppression() {
        let throttle = Throttle::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let passed = (0..10).filter(|_| throttle.check_at(1u32, t0).is_some()).count();
        assert_eq!(passed, 3);
        assert_eq!(throttle.check_at(1u32, t0 + Duration::from_secs(60)), Some(7));
    }

    #[test]
    fn many_keys_share_the_overflow_slot() {
        let throttle = Throttle::new(Duration::from_secs(60), 1);
        let t0 = Instant::now();
        for key in 0..MAX_KEYS {
            assert_eq!(throttle.check_at(key, t0), Some(0));
        }
        // Past the table, new keys share one slot: one line, then suppression.
        assert_eq!(throttle.check_at(MAX_KEYS, t0), Some(0));
        for key in MAX_KEYS + 1..MAX_KEYS + 100 {
            assert_eq!(throttle.check_at(key, t0), None);
        }
        // Once the table's windows are over, its slots make room again.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(throttle.check_at(MAX_KEYS + 500, later), Some(0));
    }
}
