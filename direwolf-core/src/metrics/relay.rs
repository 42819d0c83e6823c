//! The relay's counters, read from [`Relay::totals`] on every scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::relay::{Relay, RelayTotals, StreamKind};

/// Exports a relay's counters, summed over every session it carried (closed ones included, so
/// they never go down), by stream (`video`, `audio`, `control`):
///
/// - `direwolf_relay_packets_total{stream,direction}` and `direwolf_relay_bytes_total{…}`,
///   `direction` `to_wolf` or `to_client`;
/// - `direwolf_relay_admissions_total{stream,by}`, client endpoints admitted, `by` as in
///   [`Admissions::by_evidence`](crate::relay::Admissions::by_evidence);
/// - `direwolf_relay_kernel_flows_total{stream,outcome}`, client endpoints the kernel fast path
///   took over (`carried`) or gave back to the relay (`given_back`: a host firewall dropped them);
/// - `direwolf_relay_drops_total{stream,reason}`, `reason` as in
///   [`UdpDrops::by_reason`](crate::relay::UdpDrops::by_reason);
/// - `direwolf_relay_mappings_active{stream}`, client endpoints mapped now;
/// - `direwolf_relay_rtsp_total{event}`: connections, relayed requests and each refusal;
/// - `direwolf_relay_sessions` (open) and `direwolf_relay_sessions_closed_total`.
#[derive(Debug)]
pub struct RelayCollector {
    relay: Relay,
}

impl RelayCollector {
    /// A collector of `relay`'s counters.
    pub fn new(relay: Relay) -> Self {
        RelayCollector { relay }
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.relay.totals();
        encode_udp(&mut encoder, &totals)?;
        encode_rtsp(&mut encoder, &totals)?;
        let open = ConstGauge::new(self.relay.session_count() as i64);
        open.encode(encoder.encode_descriptor(
            "relay_sessions",
            "Sessions the relay carries now.",
            None,
            open.metric_type(),
        )?)?;
        let closed = ConstCounter::new(totals.sessions_closed);
        closed.encode(encoder.encode_descriptor(
            "relay_sessions_closed",
            "Sessions the relay has closed.",
            None,
            closed.metric_type(),
        )?)
    }
}

fn encode_udp(encoder: &mut DescriptorEncoder, totals: &RelayTotals) -> Result<(), std::fmt::Error> {
    type Pick = fn(&crate::relay::UdpStats) -> [(&'static str, u64); 2];
    let directions: [(&str, &str, Pick); 2] = [
        (
            "relay_packets",
            "Datagrams forwarded, by stream and direction.",
            |s| [("to_wolf", s.to_wolf_packets), ("to_client", s.to_client_packets)],
        ),
        (
            "relay_bytes",
            "Payload bytes forwarded, by stream and direction.",
            |s| [("to_wolf", s.to_wolf_bytes), ("to_client", s.to_client_bytes)],
        ),
    ];
    for (name, help, pick) in directions {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for kind in StreamKind::ALL {
            for (direction, value) in pick(totals.udp(kind)) {
                let labels = [("stream", kind.as_str()), ("direction", direction)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let mut admissions = encoder.encode_descriptor(
        "relay_admissions",
        "Client endpoints admitted, by stream and the evidence that admitted them.",
        None,
        MetricType::Counter,
    )?;
    for kind in StreamKind::ALL {
        for (by, value) in totals.udp(kind).admissions.by_evidence() {
            let labels = [("stream", kind.as_str()), ("by", by)];
            ConstCounter::new(value).encode(admissions.encode_family(&labels)?)?;
        }
    }
    let mut kernel = encoder.encode_descriptor(
        "relay_kernel_flows",
        "Client endpoints the kernel fast path carried or gave back, by stream.",
        None,
        MetricType::Counter,
    )?;
    for kind in StreamKind::ALL {
        let udp = totals.udp(kind);
        for (outcome, value) in [("carried", udp.kernel_flows), ("given_back", udp.kernel_refused)] {
            let labels = [("stream", kind.as_str()), ("outcome", outcome)];
            ConstCounter::new(value).encode(kernel.encode_family(&labels)?)?;
        }
    }
    let mut drops = encoder.encode_descriptor(
        "relay_drops",
        "Datagrams dropped, by stream and reason.",
        None,
        MetricType::Counter,
    )?;
    for kind in StreamKind::ALL {
        for (reason, value) in totals.udp(kind).drops.by_reason() {
            let labels = [("stream", kind.as_str()), ("reason", reason)];
            ConstCounter::new(value).encode(drops.encode_family(&labels)?)?;
        }
    }
    let mut active = encoder.encode_descriptor(
        "relay_mappings_active",
        "Client endpoints mapped now, by stream.",
        None,
        MetricType::Gauge,
    )?;
    for kind in StreamKind::ALL {
        let labels = [("stream", kind.as_str())];
        let value = ConstGauge::new(totals.udp(kind).mappings_active as i64);
        value.encode(active.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_rtsp(encoder: &mut DescriptorEncoder, totals: &RelayTotals) -> Result<(), std::fmt::Error> {
    let r = &totals.rtsp;
    let events = [
        ("connection", r.connections),
        ("relayed", r.relayed),
        ("rejected_request", r.rejected_requests),
        ("rejected_connection_limit", r.rejected_connection_limit),
        ("upstream_error", r.upstream_errors),
        ("bad_response", r.bad_responses),
        ("client_write_error", r.client_write_errors),
        ("unrouted", r.unrouted),
    ];
    let mut family = encoder.encode_descriptor(
        "relay_rtsp",
        "RTSP connections, relayed requests and refusals, by event.",
        None,
        MetricType::Counter,
    )?;
    for (event, value) in events {
        ConstCounter::new(value).encode(family.encode_family(&[("event", event)])?)?;
    }
    Ok(())
}
