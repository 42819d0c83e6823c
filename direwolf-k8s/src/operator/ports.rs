//! Port allocation: each Session gets a block of four contiguous public ports (RTSP, control,
//! video RTP, audio RTP) from the configured range, unique among the namespace's Sessions.
//!
//! The ports a Session holds are in its `status.ports`; a write of that status reaches the
//! Session cache only after a round trip, so the allocator also remembers what it handed out
//! itself until the Session is released: two reconciles running at once never get the same
//! block. A Session keeps its ports for its whole life; they are free once it is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU16;

use parking_lot::Mutex;

use super::config::PortRange;
use crate::crd::SessionPorts;

/// The ports of block `index` of `range` (`None` past the end of the range).
pub fn block(range: PortRange, index: u32) -> Option<SessionPorts> {
    if index >= range.blocks() {
        return None;
    }
    let base = u32::from(range.first) + 4 * index;
    let port = |offset: u32| u16::try_from(base + offset).ok().and_then(NonZeroU16::new);
    Some(SessionPorts {
        rtsp: port(0)?,
        control: port(1)?,
        video_rtp: port(2)?,
        audio_rtp: port(3)?,
    })
}

/// Every port of `ports`.
pub fn each_port(ports: &SessionPorts) -> [u16; 4] {
    [
        ports.rtsp.get(),
        ports.control.get(),
        ports.video_rtp.get(),
        ports.audio_rtp.get(),
    ]
}

/// The first block of `range` none of whose ports is in `used`.
pub fn first_free(range: PortRange, used: &BTreeSet<u16>) -> Option<SessionPorts> {
    (0..range.blocks())
        .filter_map(|index| block(range, index))
        .find(|ports| each_port(ports).iter().all(|p| !used.contains(p)))
}

/// Hands out port blocks; shared by every reconcile of the operator.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    shared: Option<SessionPorts>,
    handed_out: Mutex<BTreeMap<String, SessionPorts>>,
}

impl PortAllocator {
    /// An allocator of `range` that has handed out nothing.
    pub fn new(range: PortRange) -> Self {
        PortAllocator {
            range,
            shared: None,
            handed_out: Mutex::new(BTreeMap::new()),
        }
    }

    /// An allocator that gives every Session the same ports: the proxies' shared-ports relay
    /// tells the Sessions apart (`direwolf proxy --shared-ports`).
    pub fn shared(ports: SessionPorts) -> Self {
        PortAllocator {
            shared: Some(ports),
            ..PortAllocator::new(PortRange::default())
        }
    }

    /// The range ports come from.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The ports of `session`: those it already holds (`own`, from its status, or what this
    /// allocator handed it), else a free block. `known` are the namespace's Sessions as cached
    /// (name and status ports); a block is free when no other Session holds or was handed any
    /// of its ports. `None` when the range is exhausted.
    pub fn allocate<'a>(
        &self,
        session: &str,
        own: Option<SessionPorts>,
        known: impl IntoIterator<Item = (&'a str, Option<SessionPorts>)>,
    ) -> Option<SessionPorts> {
        if let Some(shared) = self.shared {
            return Some(own.unwrap_or(shared));
        }
        let mut handed_out = self.handed_out.lock();
        let mut names = BTreeSet::new();
        let mut used = BTreeSet::new();
        for (name, ports) in known {
            names.insert(name.to_owned());
            if name != session {
                used.extend(ports.iter().flat_map(each_port));
            }
        }
        // What was handed to Sessions that are gone from the cache is free again.
        handed_out.retain(|name, _| name == session || names.contains(name));
        if let Some(ports) = own.or_else(|| handed_out.get(session).copied()) {
            handed_out.insert(session.to_owned(), ports);
            return Some(ports);
        }
        used.extend(handed_out.values().flat_map(each_port));
        let ports = first_free(self.range, &used)?;
        handed_out.insert(session.to_owned(), ports);
        Some(ports)
    }

    /// Forgets what was handed to `session` (it is gone).
    pub fn release(&self, session: &str) {
        self.handed_out.lock().remove(session);
    }

    /// How many Sessions hold ports handed out by this allocator.
    pub fn handed_out(&self) -> usize {
        self.handed_out.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn blocks_are_four_contiguous_ports() {
        let ports = block(PortRange::default(), 1).expect("in range");
        assert_eq!(each_port(&ports), [40004, 40005, 40006, 40007]);
        assert!(block(PortRange::default(), 250).is_none());
        assert_eq!(
            each_port(&block(range(65532, 65535), 0).expect("fits")),
            [65532, 65533, 65534, 65535]
        );
    }

    #[test]
    fn first_free_skips_blocks_with_any_used_port() {
        let used = BTreeSet::from([40002, 40004]);
        let ports = first_free(PortRange::default(), &used).expect("free block");
        assert_eq!(ports.rtsp.get(), 40008);
    }

    #[test]
    fn concurrent_sessions_get_distinct_blocks_until_the_range_is_exhausted() {
        let allocator = PortAllocator::new(range(100, 111));
        let names = ["a", "b", "c", "d"];
        let known: Vec<(&str, Option<SessionPorts>)> = names.iter().map(|n| (*n, None)).collect();
        let a = allocator.allocate("a", None, known.clone()).expect("a");
        let b = allocator.allocate("b", None, known.clone()).expect("b");
        let c = allocator.allocate("c", None, known.clone()).expect("c");
        assert_eq!([a.rtsp.get(), b.rtsp.get(), c.rtsp.get()], [100, 104, 108]);
        assert!(
            allocator.allocate("d", None, known.clone()).is_none(),
            "range exhausted"
        );
        // Asking again gives the same block.
        assert_eq!(allocator.allocate("a", None, known.clone()), Some(a));
        // Once b is released, d gets its block.
        allocator.release("b");
        assert_eq!(allocator.allocate("d", None, known), Some(b));
    }

    #[test]
    fn a_shared_allocator_gives_every_session_the_shared_set() {
        let shared = block(range(48000, 48003), 0).expect("block");
        let allocator = PortAllocator::shared(shared);
        let known = vec![("a", Some(shared)), ("b", None)];
        assert_eq!(allocator.allocate("b", None, known.clone()), Some(shared));
        assert_eq!(allocator.allocate("c", None, known.clone()), Some(shared));
        // A Session that held other ports (before a change of mode) keeps them.
        let old = block(range(100, 103), 0);
        assert_eq!(allocator.allocate("d", old, known), old);
        assert_eq!(allocator.handed_out(), 0);
    }

    #[test]
    fn ports_in_status_are_kept_and_respected() {
        let allocator = PortAllocator::new(range(100, 111));
        let held = block(range(100, 111), 0);
        // After a restart the allocator knows nothing but the statuses.
        let known = vec![("old", held), ("new", None)];
        let new = allocator.allocate("new", None, known.clone()).expect("new");
        assert_eq!(new.rtsp.get(), 104);
        assert_eq!(allocator.allocate("old", held, known), held);
    }

    #[test]
    fn sessions_gone_from_the_cache_free_their_ports() {
        let allocator = PortAllocator::new(range(100, 103));
        let a = allocator.allocate("a", None, [("a", None)]).expect("a");
        assert!(
            allocator
                .allocate("b", None, [("a", None), ("b", None)])
                .is_none()
        );
        // "a" was deleted without a release (e.g. its finalizer removed by hand).
        assert_eq!(allocator.allocate("b", None, [("b", None)]), Some(a));
        assert_eq!(allocator.handed_out(), 1);
    }
}
