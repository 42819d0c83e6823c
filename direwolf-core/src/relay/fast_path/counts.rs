//! The per-flow counters of `nft -j list table ip direwolf`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

use super::{Counts, FlowSpec};

/// The counters of the table's `clients` and `flows` sets.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Client address and port, public port → packets.
    clients: HashMap<(SocketAddrV4, u16), u64>,
    /// Source → destination → (packets, bytes).
    flows: HashMap<(SocketAddrV4, SocketAddrV4), (u64, u64)>,
}

impl Listing {
    /// Read a listing; what it does not hold (an element added since, a set missing) reads 0.
    pub(super) fn read(json: &str) -> Listing {
        let mut listing = Listing::default();
        let Ok(document) = serde_json::from_str::<Value>(json) else {
            return listing;
        };
        let objects = document["nftables"].as_array().cloned().unwrap_or_default();
        for set in objects.iter().filter_map(|o| o.get("set")) {
            let elements = set["elem"].as_array().cloned().unwrap_or_default();
            for element in elements.iter().filter_map(|e| e.get("elem")) {
                let key = element["val"]["concat"].as_array().cloned().unwrap_or_default();
                let counter = (
                    element["counter"]["packets"].as_u64().unwrap_or(0),
                    element["counter"]["bytes"].as_u64().unwrap_or(0),
                );
                match (set["name"].as_str(), key.as_slice()) {
                    (Some("clients"), [ip, port, public]) => {
                        if let (Some(client), Some(public)) = (endpoint(ip, port), number(public)) {
                            listing.clients.insert((client, public), counter.0);
                        }
                    }
                    (Some("flows"), [sip, sport, dip, dport]) => {
                        if let (Some(from), Some(to)) = (endpoint(sip, sport), endpoint(dip, dport)) {
                            listing.flows.insert((from, to), counter);
                        }
                    }
                    _ => {}
                }
            }
        }
        listing
    }

    /// The counts of one flow.
    pub(super) fn counts(&self, flow: &FlowSpec) -> Counts {
        let get = |from, to| self.flows.get(&(from, to)).copied().unwrap_or_default();
        Counts {
            entered: self
                .clients
                .get(&(flow.client, flow.public_port))
                .copied()
                .unwrap_or(0),
            to_wolf: get(flow.client, flow.wolf),
            to_client: get(flow.wolf, flow.client),
        }
    }
}

fn number(value: &Value) -> Option<u16> {
    value.as_u64().and_then(|n| u16::try_from(n).ok())
}

fn endpoint(ip: &Value, port: &Value) -> Option<SocketAddrV4> {
    let ip: Ipv4Addr = ip.as_str()?.parse().ok()?;
    Some(SocketAddrV4::new(ip, number(port)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_per_flow() {
        // As nft 1.0.6 prints it.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"set": {"family": "ip", "name": "clients", "table": "direwolf", "elem": [
            {"elem": {"val": {"concat": ["198.51.100.7", 50000, 48100]}, "counter": {"packets": 3, "bytes": 60}}}]}},
          {"set": {"family": "ip", "name": "flows", "table": "direwolf", "elem": [
            {"elem": {"val": {"concat": ["198.51.100.7", 50000, "10.0.0.5", 48100]}, "counter": {"packets": 2, "bytes": 40}}},
            {"elem": {"val": {"concat": ["10.0.0.5", 48100, "198.51.100.7", 50000]}, "counter": {"packets": 900, "bytes": 1260000}}}]}}]}"#;
        let flow = FlowSpec {
            client: "198.51.100.7:50000".parse().expect("addr"),
            public_port: 48100,
            wolf: "10.0.0.5:48100".parse().expect("addr"),
            relay: "10.0.0.1:40001".parse().expect("addr"),
        };
        let counts = Listing::read(json).counts(&flow);
        assert_eq!(
            counts,
            Counts {
                entered: 3,
                to_wolf: (2, 40),
                to_client: (900, 1_260_000)
            }
        );
        let other = FlowSpec {
            public_port: 48200,
            ..flow
        };
        assert_eq!(Listing::read(json).counts(&other).entered, 0);
        assert_eq!(Listing::read("not json").counts(&flow), Counts::default());
    }
}
