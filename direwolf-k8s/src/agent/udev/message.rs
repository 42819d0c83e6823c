//! The netlink message libudev listeners accept: a `libudev` header followed by the device's
//! properties as `KEY=VALUE\0` strings.
//!
//! Layout (systemd `sd-device/device-monitor.c`, the sender side of `udevd`; Wolf's fake-udev
//! sends the same): the 8 bytes `libudev\0`, the magic `0xfeedcafe` in network order, the header
//! size, the offset and length of the properties (native order), then the MurmurHash2 of the
//! subsystem and of the devtype and the 64-bit tag bloom filter (network order). Listeners'
//! in-kernel socket filters compare the magic, the subsystem and devtype hashes and the bloom
//! bits, so a wrong value means the event is silently dropped.
//!
//! Unlike fake-udev, which always hashes the subsystem `input` and leaves the tag bloom at 0,
//! the hashes and the bloom come from the event's own `SUBSYSTEM`, `DEVTYPE` and `TAGS`, so
//! listeners filtering by tag see the devices too.

use std::collections::BTreeMap;

/// The first 8 bytes of every libudev message.
pub const PREFIX: &[u8; 8] = b"libudev\0";
/// The magic after the prefix (sent in network order).
pub const MAGIC: u32 = 0xfeed_cafe;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 40;
/// The netlink multicast group of udev (not the kernel's, 1).
pub const UDEV_GROUP: u32 = 2;

/// One uevent: its properties (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`, ...), sorted by key as
/// Wolf's `std::map` sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uevent {
    /// The properties.
    pub properties: BTreeMap<String, String>,
}

impl Uevent {
    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// The message bytes: header then properties.
    pub fn encode(&self) -> Vec<u8> {
        let mut props = Vec::new();
        for (key, value) in &self.properties {
            props.extend_from_slice(key.as_bytes());
            props.push(b'=');
            props.extend_from_slice(value.as_bytes());
            props.push(0);
        }
        let hash_of = |key: &str| {
            self.get(key)
                .filter(|v| !v.is_empty())
                .map_or(0, |v| murmur2(v.as_bytes(), 0))
        };
        let bloom = self.tag_bloom();
        let mut out = Vec::with_capacity(HEADER_LEN + props.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
        out.extend_from_slice(&(props.len() as u32).to_ne_bytes());
        out.extend_from_slice(&hash_of("SUBSYSTEM").to_be_bytes());
        out.extend_from_slice(&hash_of("DEVTYPE").to_be_bytes());
        out.extend_from_slice(&((bloom >> 32) as u32).to_be_bytes());
        out.extend_from_slice(&(bloom as u32).to_be_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(&props);
        out
    }

    /// The bloom filter of the tags in `TAGS` (`:seat:uaccess:`), four bits per tag.
    fn tag_bloom(&self) -> u64 {
        self.get("TAGS")
            .into_iter()
            .flat_map(|tags| tags.split(':'))
            .filter(|t| !t.is_empty())
            .fold(0u64, |bits, tag| bits | bloom64(tag))
    }
}

/// The four bits one string sets in a 64-bit bloom filter (systemd's `string_bloom64`).
fn bloom64(s: &str) -> u64 {
    let h = murmur2(s.as_bytes(), 0);
    [0, 6, 12, 18]
        .iter()
        .fold(0u64, |bits, shift| bits | 1u64 << ((h >> shift) & 63))
}

/// MurmurHash2 (32-bit, Austin Appleby), words read little-endian as on the x86-64 and arm64
/// machines udev runs on.
pub fn murmur2(data: &[u8], seed: u32) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = seed ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pairs: &[(&str, &str)]) -> Uevent {
        Uevent {
            properties: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Regression values: a real libudev monitor filtering on subsystem `input` and tag `seat`
    /// accepts messages carrying them (`tests/agent.rs`, the libudev test; one changed bit
    /// and the kernel filter drops the message).
    #[test]
    fn murmur2_values_libudev_accepts() {
        assert_eq!(murmur2(b"input", 0), 0xc1a2_8470);
        assert_eq!(murmur2(b"seat", 0), 0x435b_3e40);
        assert_eq!(murmur2(b"hidraw", 0), 0xc2ca_f397);
    }

    #[test]
    fn header_and_properties() {
        let ev = event(&[
            ("ACTION", "add"),
            ("DEVPATH", "/devices/virtual/input/input7"),
            ("SUBSYSTEM", "input"),
            ("SEQNUM", "3"),
            ("TAGS", ":seat:uaccess:"),
        ]);
        let bytes = ev.encode();
        assert_eq!(&bytes[..8], PREFIX);
        assert_eq!(&bytes[8..12], &[0xfe, 0xed, 0xca, 0xfe]);
        let ne = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(ne(12), 40);
        assert_eq!(ne(16), 40);
        assert_eq!(ne(20) as usize, bytes.len() - 40);
        assert_eq!(be(24), murmur2(b"input", 0));
        assert_eq!(be(28), 0, "no DEVTYPE, no hash");
        let bloom = u64::from(be(32)) << 32 | u64::from(be(36));
        assert_eq!(bloom, bloom64("seat") | bloom64("uaccess"));
        assert_ne!(bloom, 0);
        assert_eq!(
            &bytes[40..],
            b"ACTION=add\0DEVPATH=/devices/virtual/input/input7\0SEQNUM=3\0SUBSYSTEM=input\0TAGS=:seat:uaccess:\0"
        );
    }
}
