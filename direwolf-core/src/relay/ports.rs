//! Allocation of per-session public port sets.
//!
//! A [`PortAllocator`] owns a configured inclusive port range and cuts it into blocks of four
//! consecutive ports; block `i` is `{rtsp: first+4i, video: first+4i+1, audio: first+4i+2,
//! control: first+4i+3}`. RTSP is TCP, the other three UDP (`docs/protocol/streaming-ports.md`
//! § Port table). A block is held by a [`PortLease`] and returns to the pool when the lease is
//! dropped. Blocks are handed out round-robin (the block after the last one handed out), so a
//! just-freed port set is reused as late as possible and stray packets of an ended session rarely
//! reach a new one.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::StreamPorts;

/// Ports per session: RTSP, video, audio, control.
pub const PORTS_PER_SESSION: u16 = 4;

/// Errors of the port allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortAllocError {
    /// Every port set of the range is in use.
    #[error("all {capacity} port sets of {first}-{last} are in use")]
    Exhausted {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
        /// How many sets the range holds.
        capacity: usize,
    },
    /// The range cannot hold a single set of four ports, or starts at port 0.
    #[error(
        "port range {first}-{last} cannot hold a set of {PORTS_PER_SESSION} ports (port 0 is not allowed)"
    )]
    RangeTooSmall {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
}

#[derive(Debug)]
struct State {
    in_use: BTreeSet<u16>,
    cursor: u16,
}

/// Hands out per-session [`StreamPorts`] from a range; see the module docs.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    first: u16,
    last: u16,
    capacity: u16,
    state: Arc<Mutex<State>>,
}

impl PortAllocator {
    /// An allocator over `range` (inclusive). Ports beyond the last whole block of four are unused.
    ///
    /// # Errors
    /// [`PortAllocError::RangeTooSmall`] if the range holds fewer than four ports or includes 0.
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, PortAllocError> {
        let (first, last) = (*range.start(), *range.end());
        let len = u32::from(last).saturating_add(1).saturating_sub(u32::from(first));
        if first == 0 || len < u32::from(PORTS_PER_SESSION) {
            return Err(PortAllocError::RangeTooSmall { first, last });
        }
        let capacity =
            u16::try_from(len / u32::from(PORTS_PER_SESSION)).expect("at most 65535 / 4 blocks fit in a u16");
        Ok(PortAllocator {
            first,
            last,
            capacity,
            state: Arc::new(Mutex::new(State {
                in_use: BTreeSet::new(),
                cursor: 0,
            })),
        })
    }

    /// How many sessions the range can hold at once.
    pub fn capacity(&self) -> usize {
        usize::from(self.capacity)
    }

    /// How many port sets are leased now.
    pub fn in_use(&self) -> usize {
        self.state.lock().in_use.len()
    }

    /// Lease the next free port set.
    ///
    /// # Errors
    /// [`PortAllocError::Exhausted`] when every set is leased.
    pub fn allocate(&self) -> Result<PortLease, PortAllocError> {
        let mut state = self.state.lock();
        for step in 0..self.capacity {
            let block = (state.cursor + step) % self.capacity;
            if state.in_use.insert(block) {
                state.cursor = (block + 1) % self.capacity;
                return Ok(PortLease {
                    ports: self.ports_of(block),
                    block,
                    allocator: self.clone(),
                });
            }
        }
        Err(PortAllocError::Exhausted {
            first: self.first,
            last: self.last,
            capacity: self.capacity(),
        })
    }

    fn ports_of(&self, block: u16) -> StreamPorts {
        let base = self.first + block * PORTS_PER_SESSION;
        StreamPorts {
            rtsp: base,
            video: base + 1,
            audio: base + 2,
            control: base + 3,
        }
    }

    fn release(&self, block: u16) {
        self.state.lock().in_use.remove(&block);
    }
}

/// One leased port set; dropping it (or calling [`PortLease::release`]) frees the set.
#[derive(Debug)]
pub struct PortLease {
    ports: StreamPorts,
    block: u16,
    allocator: PortAllocator,
}

impl PortLease {
    /// The leased ports.
    pub fn ports(&self) -> StreamPorts {
        self.ports
    }

    /// Free the set now (same as dropping the lease).
    pub fn release(self) {}
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.allocator.release(self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_four_consecutive_ports() {
        let alloc = PortAllocator::new(40000..=40011).expect("valid range");
        assert_eq!(alloc.capacity(), 3);
        let a = alloc.allocate().expect("free set");
        assert_eq!(
            a.ports(),
            StreamPorts {
                rtsp: 40000,
                video: 40001,
                audio: 40002,
                control: 40003
            }
        );
        let b = alloc.allocate().expect("free set");
        assert_eq!(b.ports().rtsp, 40004);
    }

    #[test]
    fn exhaustion_is_a_typed_error_and_release_frees() {
        let alloc = PortAllocator::new(40000..=40008).expect("valid range");
        assert_eq!(alloc.capacity(), 2, "the ninth port is not a whole set");
        let a = alloc.allocate().expect("first set");
        let b = alloc.allocate().expect("second set");
        assert_eq!(
            alloc.allocate().expect_err("range is full"),
            PortAllocError::Exhausted {
                first: 40000,
                last: 40008,
                capacity: 2
            }
        );
        let freed = a.ports();
        drop(a);
        assert_eq!(alloc.in_use(), 1);
        let c = alloc.allocate().expect("a set was freed");
        assert_eq!(c.ports(), freed);
        b.release();
        drop(c);
        assert_eq!(alloc.in_use(), 0);
    }

    #[test]
    fn round_robin_reuses_freed_sets_late() {
        let alloc = PortAllocator::new(40000..=40011).expect("valid range");
        let a = alloc.allocate().expect("set 0");
        let first = a.ports();
        drop(a);
        let b = alloc.allocate().expect("set 1");
        assert_ne!(
            b.ports(),
            first,
            "the next set is preferred over the one just freed"
        );
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(matches!(
            PortAllocator::new(40000..=40002),
            Err(PortAllocError::RangeTooSmall { .. })
        ));
        assert!(matches!(
            PortAllocator::new(0..=100),
            Err(PortAllocError::RangeTooSmall { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = PortAllocator::new(40010..=40000);
        assert!(matches!(reversed, Err(PortAllocError::RangeTooSmall { .. })));
        let top = PortAllocator::new(65532..=65535).expect("last four ports");
        assert_eq!(top.allocate().expect("one set").ports().control, 65535);
    }
}
