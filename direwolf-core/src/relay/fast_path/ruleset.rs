//! The fast path's nftables objects, as `nft -j` input: direwolf's own table (`ip direwolf`), its
//! sets and maps, and the elements one flow adds to them.
//!
//! The table, once loaded, never changes; a flow is only elements, so installing or removing one
//! is one atomic `nft` transaction and a restart finds every flow by listing the table.
//!
//! * `pre_raw` (prerouting, raw): a client endpoint in `clients`, or a Wolf side in `wolves`, is
//!   tracked and marked [`MARK`]; any other datagram for a socket of the relay (which carry
//!   [`MARK`]) is left untracked, so the userspace relay's flows never hold a conntrack entry that
//!   a kernel flow would clash with.
//! * `out_raw` (output, raw): what the relay's sockets send is untracked too.
//! * `pre_nat` / `post_nat`: a tracked client datagram is sent to its Wolf (`wolf_addr`,
//!   `wolf_port`) from the relay's upstream address (`relay_addr`, `relay_port`): Wolf sees the
//!   source it already knows, and conntrack takes the answers back to the client from the public
//!   port it pinged.
//! * `forward_count` (forward, after the filter priority): per-flow counters in `flows`, reached
//!   only by datagrams that no other firewall dropped.
//!
//! Concatenated NAT data (`ipv4_addr . inet_service`) would be one map, but nft 1.0.6's JSON
//! parser cannot read such maps; two maps (address, port) say the same.

use std::net::SocketAddrV4;

use serde_json::{Value, json};

/// The table's name (family `ip`).
pub(crate) const TABLE: &str = "direwolf";
/// The socket and packet mark of the fast path: set on the relay's UDP sockets (`SO_MARK`) and
/// on the datagrams of kernel flows, for a host firewall's accept rule.
pub const MARK: u32 = 0x6477_0000;

/// One flow the kernel may carry: a client endpoint on a public port, relayed to a Wolf from
/// an upstream address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowSpec {
    /// The client's address and port.
    pub client: SocketAddrV4,
    /// The relay's public port the client sends to.
    pub public_port: u16,
    /// Wolf's address and port for this stream.
    pub wolf: SocketAddrV4,
    /// The address the relay's upstream socket sends to Wolf from.
    pub relay: SocketAddrV4,
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": protocol, "field": field } })
}

fn concat(fields: &[(&str, &str)]) -> Value {
    json!({ "concat": fields.iter().map(|(p, f)| payload(p, f)).collect::<Vec<_>>() })
}

/// Client address . client port . public port.
const CLIENT_KEY: [(&str, &str); 3] = [("ip", "saddr"), ("udp", "sport"), ("udp", "dport")];
/// Source address . port . destination address . port.
const FOUR_TUPLE: [(&str, &str); 4] = [
    ("ip", "saddr"),
    ("udp", "sport"),
    ("ip", "daddr"),
    ("udp", "dport"),
];

fn set(name: &str, key: &[&str], counter: bool) -> Value {
    let mut set = json!({ "family": "ip", "table": TABLE, "name": name, "type": key });
    if counter {
        set["stmt"] = json!([{ "counter": null }]);
    }
    json!({ "add": { "set": set } })
}

fn map(name: &str, key: &[&str], data: &str) -> Value {
    json!({ "add": { "map": { "family": "ip", "table": TABLE, "name": name, "type": key, "map": data } } })
}

fn chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({ "add": { "chain": {
        "family": "ip", "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    } } })
}

fn rule(chain: &str, expr: Value) -> Value {
    json!({ "add": { "rule": { "family": "ip", "table": TABLE, "chain": chain, "expr": expr } } })
}

fn lookup(key: &[(&str, &str)], set: &str) -> Value {
    json!({ "match": { "op": "==", "left": concat(key), "right": format!("@{set}") } })
}

fn nat_to(kind: &str, key: &[(&str, &str)], addr: &str, port: &str) -> Value {
    json!({ kind: {
        "addr": { "map": { "key": concat(key), "data": format!("@{addr}") } },
        "port": { "map": { "key": concat(key), "data": format!("@{port}") } }
    } })
}

const PORT_KEY: [&str; 3] = ["ipv4_addr", "inet_service", "inet_service"];
const TUPLE_KEY: [&str; 4] = ["ipv4_addr", "inet_service", "ipv4_addr", "inet_service"];

/// Priorities: raw, dstnat, srcnat (nft's names), and after the filter priority.
const RAW: i32 = -300;
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;
const AFTER_FILTER: i32 = 10;

/// The table from scratch: any earlier table of that name (a relay killed before it could
/// clean up) is replaced, with all its flows.
pub(crate) fn fresh_table() -> String {
    let mark = json!({ "mangle": { "key": { "meta": { "key": "mark" } }, "value": MARK } });
    let commands = vec![
        json!({ "add": { "table": { "family": "ip", "name": TABLE } } }),
        json!({ "delete": { "table": { "family": "ip", "name": TABLE } } }),
        json!({ "add": { "table": { "family": "ip", "name": TABLE } } }),
        set("clients", &PORT_KEY, true),
        set("wolves", &TUPLE_KEY, false),
        set("flows", &TUPLE_KEY, true),
        map("wolf_addr", &PORT_KEY, "ipv4_addr"),
        map("wolf_port", &PORT_KEY, "inet_service"),
        map("relay_addr", &TUPLE_KEY, "ipv4_addr"),
        map("relay_port", &TUPLE_KEY, "inet_service"),
        chain("pre_raw", "filter", "prerouting", RAW),
        chain("out_raw", "filter", "output", RAW),
        chain("pre_nat", "nat", "prerouting", DSTNAT),
        chain("post_nat", "nat", "postrouting", SRCNAT),
        chain("forward_count", "filter", "forward", AFTER_FILTER),
        rule(
            "pre_raw",
            json!([lookup(&CLIENT_KEY, "clients"), mark, { "return": null }]),
        ),
        rule(
            "pre_raw",
            json!([lookup(&FOUR_TUPLE, "wolves"), mark, { "return": null }]),
        ),
        rule(
            "pre_raw",
            json!([{ "match": { "op": "==", "left": { "socket": { "key": "mark" } }, "right": MARK } }, { "notrack": null }]),
        ),
        rule(
            "out_raw",
            json!([{ "match": { "op": "==", "left": { "meta": { "key": "mark" } }, "right": MARK } }, { "notrack": null }]),
        ),
        rule(
            "pre_nat",
            json!([
                lookup(&CLIENT_KEY, "wolf_addr"),
                nat_to("dnat", &CLIENT_KEY, "wolf_addr", "wolf_port")
            ]),
        ),
        rule(
            "post_nat",
            json!([
                lookup(&FOUR_TUPLE, "relay_addr"),
                nat_to("snat", &FOUR_TUPLE, "relay_addr", "relay_port")
            ]),
        ),
        rule("forward_count", json!([lookup(&FOUR_TUPLE, "flows")])),
    ];
    nftables(commands)
}

/// The table gone (on a clean shutdown).
pub(crate) fn drop_table() -> String {
    nftables(vec![
        json!({ "add": { "table": { "family": "ip", "name": TABLE } } }),
        json!({ "delete": { "table": { "family": "ip", "name": TABLE } } }),
    ])
}

fn port_key(flow: &FlowSpec) -> Value {
    json!({ "concat": [flow.client.ip().to_string(), flow.client.port(), flow.public_port] })
}

fn tuple(from: SocketAddrV4, to: SocketAddrV4) -> Value {
    json!({ "concat": [from.ip().to_string(), from.port(), to.ip().to_string(), to.port()] })
}

fn element(verb: &str, set: &str, elems: Value) -> Value {
    json!({ verb: { "element": { "family": "ip", "table": TABLE, "name": set, "elem": elems } } })
}

/// The elements that send `flow`'s client datagrams through the kernel (`verb`: `add` or
/// `delete`). Answers still reach the relay until [`wolf_side`] is added.
pub(crate) fn client_side(verb: &str, flow: &FlowSpec) -> Vec<Value> {
    let key = port_key(flow);
    let original = tuple(flow.client, flow.wolf);
    let pair = |k: &Value, v: Value| json!([[k, v]]);
    vec![
        element(verb, "clients", json!([key])),
        element(verb, "wolf_addr", pair(&key, json!(flow.wolf.ip().to_string()))),
        element(verb, "wolf_port", pair(&key, json!(flow.wolf.port()))),
        element(
            verb,
            "relay_addr",
            pair(&original, json!(flow.relay.ip().to_string())),
        ),
        element(verb, "relay_port", pair(&original, json!(flow.relay.port()))),
        element(verb, "flows", json!([original, tuple(flow.wolf, flow.client)])),
    ]
}

/// The element that hands Wolf's answers of `flow` to conntrack (`verb`: `add` or `delete`).
pub(crate) fn wolf_side(verb: &str, flow: &FlowSpec) -> Vec<Value> {
    vec![element(verb, "wolves", json!([tuple(flow.wolf, flow.relay)]))]
}

/// Commands as one `nft -j` document.
///
/// Written as JSON rather than through the `nftables` crate's typed schema, which writes
/// `return` and `notrack` as bare strings where nft 1.0.6 wants objects; the crate still runs
/// `nft` ([`nftables::helper`]).
pub(crate) fn nftables(commands: Vec<Value>) -> String {
    json!({ "nftables": commands }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowSpec {
        FlowSpec {
            client: "198.51.100.7:50000".parse().expect("addr"),
            public_port: 48100,
            wolf: "10.0.0.5:48100".parse().expect("addr"),
            relay: "10.0.0.1:40001".parse().expect("addr"),
        }
    }

    #[test]
    fn the_table_and_a_flow_follow_the_schema() {
        let text = fresh_table();
        for name in [
            "pre_raw",
            "out_raw",
            "pre_nat",
            "post_nat",
            "forward_count",
            "wolves",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        let flow = nftables([client_side("add", &flow()), wolf_side("add", &flow())].concat());
        let text = flow;
        assert!(text.contains(r#"["198.51.100.7",50000,48100]"#), "{text}");
        assert!(text.contains(r#"["10.0.0.5",48100,"10.0.0.1",40001]"#), "{text}");
    }
}
