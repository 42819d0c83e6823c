//! Whether stream ports lie where Linux picks the local ports of outgoing connections
//! (`net.ipv4.ip_local_port_range`, by default 32768-60999) without being reserved from them
//! (`net.ipv4.ip_local_reserved_ports`): any outgoing connection of the host may then hold a
//! stream port for as long as it lasts, and the session given it cannot be relayed.

use std::ops::RangeInclusive;

const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// What to do about `ports`, read against this host's settings; `None` when nothing is needed
/// (or the settings cannot be read: not Linux).
pub fn advice(ports: &RangeInclusive<u16>) -> Option<String> {
    let local = parse_range(&std::fs::read_to_string(LOCAL_PORT_RANGE).ok()?)?;
    let reserved = parse_list(&std::fs::read_to_string(RESERVED_PORTS).unwrap_or_default());
    advise(ports, &local, &reserved)
}

/// The advice for `ports` given the local port range `local` and the `reserved` ports.
fn advise(
    ports: &RangeInclusive<u16>,
    local: &RangeInclusive<u16>,
    reserved: &[RangeInclusive<u16>],
) -> Option<String> {
    let exposed = ports
        .clone()
        .filter(|p| local.contains(p) && !reserved.iter().any(|r| r.contains(p)))
        .count();
    (exposed > 0).then(|| {
        let (first, last) = (ports.start(), ports.end());
        format!(
            "{exposed} of the stream ports {first}-{last} lie in net.ipv4.ip_local_port_range \
             ({}-{}) unreserved: an outgoing connection of this host may hold one, and the session \
             given it cannot be relayed; reserve them with \
             `sysctl -w net.ipv4.ip_local_reserved_ports={first}-{last}` (and in /etc/sysctl.d/)",
            local.start(),
            local.end()
        )
    })
}

/// `"32768\t60999"`.
fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(first)), Some(Ok(last))) if first <= last => Some(first..=last),
        _ => None,
    }
}

/// `"8080,40000-40999"`; malformed parts are skipped.
fn parse_list(text: &str) -> Vec<RangeInclusive<u16>> {
    text.trim()
        .split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some(a.trim().parse().ok()?..=b.trim().parse().ok()?),
            None => part.trim().parse().ok().map(|p| p..=p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ports_in_the_local_range_are_flagged_unless_reserved() {
        let local = parse_range("32768\t60999\n").expect("a range");
        assert_eq!(local, 32768..=60999);
        let advice = advise(&(40000..=40999), &local, &[]).expect("advice");
        assert!(
            advice.starts_with("1000 of the stream ports 40000-40999"),
            "{advice}"
        );
        assert!(advice.contains("ip_local_reserved_ports=40000-40999"), "{advice}");
        let reserved = parse_list("8080,40000-40499\n");
        assert_eq!(reserved, [8080..=8080, 40000..=40499]);
        let part = advise(&(40000..=40999), &local, &reserved).expect("advice");
        assert!(part.starts_with("500 of"), "{part}");
        assert_eq!(advise(&(40000..=40999), &local, &parse_list("40000-40999")), None);
        assert_eq!(advise(&(20000..=20999), &local, &[]), None);
        assert_eq!(parse_list(""), []);
        assert_eq!(parse_range("garbage"), None);
    }
}
