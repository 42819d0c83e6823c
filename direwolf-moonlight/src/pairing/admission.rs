//! Admission of held phase-1 requests (`docs/protocol/moonlight-http.md` § In-flight pairings):
//! each [`Source`] (an address's /24 or /64) may hold a few phase 1s waiting for a PIN, and all
//! sources together at most as many as the PIN broker takes. A newcomer is never refused for
//! want of room: the oldest held request of its own source makes way when that source is at its
//! share, else the oldest of the busiest source when all room is taken.

use std::collections::HashMap;
use std::time::Instant;

use crate::source::Source;

/// One held phase 1, as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Held<K> {
    /// Where it came from.
    pub source: Source,
    /// When it was admitted.
    pub since: Instant,
    /// Its key.
    pub key: K,
}

/// The held request to evict so that a newcomer from `newcomer` fits, if any: at most
/// `per_source` held requests per source and `total` in all.
pub fn eviction<K: Copy>(held: &[Held<K>], newcomer: Source, per_source: usize, total: usize) -> Option<K> {
    let oldest_of = |source: Source| {
        held.iter()
            .filter(|h| h.source == source)
            .min_by_key(|h| h.since)
            .map(|h| h.key)
    };
    let mut counts: HashMap<Source, usize> = HashMap::new();
    for h in held {
        *counts.entry(h.source).or_default() += 1;
    }
    if counts.get(&newcomer).copied().unwrap_or(0) >= per_source.max(1) {
        return oldest_of(newcomer);
    }
    if held.len() < total.max(1) {
        return None;
    }
    // The busiest source; among equals, the one holding the oldest request.
    let busiest = counts
        .iter()
        .map(|(s, n)| (*n, *s))
        .max_by(|(na, sa), (nb, sb)| {
            na.cmp(nb).then_with(|| {
                let oldest = |s: &Source| held.iter().filter(|h| h.source == *s).map(|h| h.since).min();
                oldest(sb).cmp(&oldest(sa))
            })
        })?;
    oldest_of(busiest.1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::source::PrefixLengths;

    fn src(ip: &str) -> Source {
        Source::of(ip.parse().unwrap(), PrefixLengths::default())
    }

    /// Admits `(address, id)` requests one after another, evicting as [`eviction`] says, and
    /// returns the ids still held.
    fn admit_all(requests: &[(&str, u32)], per_source: usize, total: usize) -> Vec<u32> {
        let t0 = Instant::now();
        let mut held: Vec<Held<u32>> = Vec::new();
        for (i, (ip, id)) in requests.iter().enumerate() {
            let source = src(ip);
            if let Some(evict) = eviction(&held, source, per_source, total) {
                held.retain(|h| h.key != evict);
            }
            held.push(Held {
                source,
                since: t0 + Duration::from_millis(i as u64),
                key: *id,
            });
            assert!(held.len() <= total);
        }
        let mut ids: Vec<u32> = held.iter().map(|h| h.key).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn one_source_holds_only_its_share() {
        // 64 requests from one address, then one from elsewhere: the flood keeps its newest 4.
        let mut requests: Vec<(&str, u32)> = (0..64).map(|i| ("192.0.2.1", i)).collect();
        requests.push(("198.51.100.7", 1000));
        assert_eq!(admit_all(&requests, 4, 64), vec![60, 61, 62, 63, 1000]);
    }

    #[test]
    fn a_network_is_one_source() {
        let requests: Vec<(String, u32)> = (0..10).map(|i| (format!("192.0.2.{}", i + 1), i)).collect();
        let requests: Vec<(&str, u32)> = requests.iter().map(|(ip, id)| (ip.as_str(), *id)).collect();
        assert_eq!(admit_all(&requests, 3, 64), vec![7, 8, 9]);
        let v6 = [
            ("2001:db8::1", 1),
            ("2001:db8::2", 2),
            ("2001:db8:0:0:1::3", 3),
            ("2001:db8:1::1", 4),
        ];
        assert_eq!(admit_all(&v6, 2, 64), vec![2, 3, 4]);
    }

    #[test]
    fn when_full_the_busiest_source_makes_way() {
        // Three sources share room for 6; the busiest (A, 3 held) loses its oldest.
        let requests = [
            ("192.0.2.1", 1),
            ("192.0.2.1", 2),
            ("198.51.100.1", 3),
            ("192.0.2.1", 4),
            ("203.0.113.1", 5),
            ("198.51.100.1", 6),
            ("192.88.99.1", 7),
        ];
        assert_eq!(admit_all(&requests, 4, 6), vec![2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn room_left_evicts_nothing() {
        let held = [Held {
            source: src("192.0.2.1"),
            since: Instant::now(),
            key: 1u32,
        }];
        assert_eq!(eviction(&held, src("198.51.100.1"), 4, 64), None);
        assert_eq!(eviction(&held, src("192.0.2.1"), 4, 64), None);
        assert_eq!(eviction(&held, src("192.0.2.1"), 1, 64), Some(1));
    }
}
