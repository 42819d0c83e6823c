//! Client sources as the pairing and PIN-page limits count them: an address reduced to its
//! network prefix (by default IPv4 /24, IPv6 /64), so that one host cannot escape a limit by
//! using the many addresses of its network. [`FailureTable`] counts failures per source within
//! a window in a bounded table whose overflow still counts.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The prefix lengths that group addresses into one [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLengths {
    /// IPv4 prefix length (0–32; default 24).
    pub ipv4: u8,
    /// IPv6 prefix length (0–128; default 64).
    pub ipv6: u8,
}

impl Default for PrefixLengths {
    fn default() -> Self {
        PrefixLengths { ipv4: 24, ipv6: 64 }
    }
}

/// A client address masked to its prefix (IPv4-mapped IPv6 addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of `ip` under `prefixes`.
    pub fn of(ip: IpAddr, prefixes: PrefixLengths) -> Self {
        Source(match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(prefixes.ipv4.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u32::from(prefixes.ipv6.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        })
    }

    /// The network address of the prefix.
    pub fn network(&self) -> IpAddr {
        self.0
    }
}

/// Failures per [`Source`] within a sliding window. The table holds at most `max_sources`
/// sources; once full, failures of sources not in it are counted in one shared overflow entry,
/// and every source not in the table is judged by that entry, so filling the table never lifts
/// the limit.
#[derive(Debug)]
pub struct FailureTable {
    window: Duration,
    max_sources: usize,
    /// Timestamps kept per source (counts at or above it are all "over the limit").
    keep: usize,
    by_source: HashMap<Source, VecDeque<Instant>>,
    overflow: VecDeque<Instant>,
}

impl FailureTable {
    /// A table counting over `window`, holding at most `max_sources` sources and `keep`
    /// timestamps per source (the largest limit it is compared against).
    pub fn new(window: Duration, max_sources: usize, keep: usize) -> Self {
        FailureTable {
            window,
            max_sources,
            keep: keep.max(1),
            by_source: HashMap::new(),
            overflow: VecDeque::new(),
        }
    }

    fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while times.front().is_some_and(|t| now.duration_since(*t) >= window) {
            times.pop_front();
        }
    }

    /// Drops failures older than the window.
    pub fn purge(&mut self, now: Instant) {
        let window = self.window;
        self.by_source.retain(|_, times| {
            Self::expire(times, now, window);
            !times.is_empty()
        });
        Self::expire(&mut self.overflow, now, window);
    }

    /// Failures of `source` within the window (the overflow's, if it is not in the table).
    pub fn count(&mut self, source: Source, now: Instant) -> usize {
        self.purge(now);
        self.by_source
            .get(&source)
            .map_or(self.overflow.len(), VecDeque::len)
    }

    /// Records a failure of `source` at `now`.
    pub fn record(&mut self, source: Source, now: Instant) {
        let keep = self.keep;
        let times = if self.by_source.contains_key(&source) || self.by_source.len() < self.max_sources {
            self.by_source.entry(source).or_default()
        } else {
            self.purge(now);
            if self.by_source.len() < self.max_sources {
                self.by_source.entry(source).or_default()
            } else {
                &mut self.overflow
            }
        };
        times.push_back(now);
        while times.len() > keep {
            times.pop_front();
        }
    }

    /// Takes back the latest failure of `source` (one counted in advance that turned out not to
    /// be one).
    pub fn forgive(&mut self, source: Source) {
        match self.by_source.get_mut(&source) {
            Some(times) => {
                times.pop_back();
            }
            None => {
                self.overflow.pop_back();
            }
        }
    }

    /// Sources in the table (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    /// Whether no source is in the table.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ip: &str) -> Source {
        Source::of(ip.parse().unwrap(), PrefixLengths::default())
    }

    #[test]
    fn addresses_group_by_prefix() {
        assert_eq!(src("192.0.2.1"), src("192.0.2.200"));
        assert_ne!(src("192.0.2.1"), src("192.0.3.1"));
        assert_eq!(src("2001:db8:0:1::1"), src("2001:db8:0:1:ffff::9"));
        assert_ne!(src("2001:db8:0:1::1"), src("2001:db8:0:2::1"));
        assert_eq!(src("::ffff:192.0.2.7"), src("192.0.2.1"));
        let exact = PrefixLengths { ipv4: 32, ipv6: 128 };
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(ip, exact).network(), ip);
        let all = PrefixLengths { ipv4: 0, ipv6: 0 };
        assert_eq!(Source::of(ip, all).network(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn failures_expire_with_the_window() {
        let mut table = FailureTable::new(Duration::from_secs(10), 16, 5);
        let t0 = Instant::now();
        table.record(src("192.0.2.1"), t0);
        table.record(src("192.0.2.9"), t0);
        assert_eq!(table.count(src("192.0.2.50"), t0), 2);
        assert_eq!(table.count(src("192.0.2.50"), t0 + Duration::from_secs(10)), 0);
        assert!(table.is_empty());
    }

    #[test]
    fn overflowing_the_table_keeps_the_limit() {
        let limit = 3;
        let mut table = FailureTable::new(Duration::from_secs(60), 4, limit);
        let t0 = Instant::now();
        for i in 0..4 {
            table.record(src(&format!("198.51.{i}.1")), t0);
        }
        assert_eq!(table.len(), 4);
        // A new source past the table's size is still counted, in the overflow entry.
        let newcomer = src("203.0.113.1");
        assert_eq!(table.count(newcomer, t0), 0);
        for _ in 0..limit {
            table.record(newcomer, t0);
        }
        assert_eq!(table.len(), 4);
        assert!(table.count(newcomer, t0) >= limit);
        // Sources in the table keep their own counts.
        assert_eq!(table.count(src("198.51.0.1"), t0), 1);
        // Timestamps per source are bounded.
        for _ in 0..100 {
            table.record(src("198.51.0.1"), t0);
        }
        assert_eq!(table.count(src("198.51.0.1"), t0), limit);
    }
}
