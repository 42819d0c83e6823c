//! How a Session's four public ports reach its pod outside the relay
//! (`docs/protocol/kubernetes.md` § Exposure modes): the objects the operator makes per Session
//! in the load-balancer and gateway modes, built here without touching the API server.
//!
//! * **load-balancer**: a `Service` of type LoadBalancer selecting the Session's pod
//!   ([`crate::stream::SESSION_LABEL`]), publishing `status.ports` (RTSP TCP, control, video
//!   and audio UDP) with each `targetPort` equal to its port, and asking to share the proxies'
//!   address (the sharing key and, if given, the address itself, for Cilium LB-IPAM and MetalLB).
//!   Wolf listens on the same numbers (`pod.rs` sets its port variables), so the port numbers
//!   Wolf announces in its RTSP answers are the public ones (`docs/protocol/streaming-ports.md`
//!   § Port table).
//! * **gateway**: a ClusterIP `Service` like the above, a `TCPRoute` for RTSP and a `UDPRoute`
//!   each for control, video and audio (`gateway.networking.k8s.io/v1alpha2`), attached to the
//!   configured Gateway by a `parentRef` naming the port (so one listener per port of the range
//!   serves whichever Session holds it), each to the same port of that Service.
//!
//! Every object is owned by the Session (controller) and carries the Session's labels; the
//! finalizer deletes them too (`ending.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, ObjectMeta};
use kube::core::GroupVersionKind;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::config::{GatewayExposure, LoadBalancerExposure};
use super::pod::session_labels;
use crate::crd::{Session, SessionPorts, annotations};
use crate::stream;

/// Cilium LB-IPAM: the address(es) a Service asks for.
pub const CILIUM_IPS: &str = "lbipam.cilium.io/ips";
/// MetalLB: the address(es) a Service asks for.
pub const METALLB_IPS: &str = "metallb.universe.tf/loadBalancerIPs";

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The API of Gateways (`v1`, the standard channel), to check the configured one exists.
pub fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "Gateway"), "gateways")
}

/// The API of TCPRoutes (`v1alpha2`, the experimental channel).
pub fn tcp_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, "v1alpha2", "TCPRoute"),
        "tcproutes",
    )
}

/// The API of UDPRoutes (`v1alpha2`, the experimental channel).
pub fn udp_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, "v1alpha2", "UDPRoute"),
        "udproutes",
    )
}

/// The name of a Session's stream Service: the Session's name when it is a DNS-1035 label
/// (starts with a letter), else the name behind an `s` (shortened before its random suffix to
/// stay within 63 characters).
pub fn service_name(session: &str) -> String {
    if session.starts_with(|c: char| c.is_ascii_lowercase()) {
        return session.to_owned();
    }
    let mut name = format!("s{session}");
    while name.len() > 63 {
        // Drop from the prefix, keeping the `-xxxxx` suffix that makes names unique.
        let cut = name.len() - 7;
        name.remove(cut);
    }
    name
}

/// The four streams of a Session: name, port, protocol.
pub fn streams(ports: SessionPorts) -> [(&'static str, u16, &'static str); 4] {
    [
        ("rtsp", ports.rtsp.get(), "TCP"),
        ("control", ports.control.get(), "UDP"),
        ("video", ports.video_rtp.get(), "UDP"),
        ("audio", ports.audio_rtp.get(), "UDP"),
    ]
}

/// A Session's stream Service: LoadBalancer with the sharing annotations when `lb` is given,
/// else ClusterIP (the gateway's backend). `None` when the Session has no uid to own it.
pub fn stream_service(
    session: &Session,
    ports: SessionPorts,
    lb: Option<&LoadBalancerExposure>,
) -> Option<Service> {
    let mut owner = session.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    let mut annotations = BTreeMap::new();
    if let Some(lb) = lb {
        for key in [annotations::CILIUM_SHARING_KEY, annotations::METALLB_SHARING_KEY] {
            annotations.insert(key.to_owned(), lb.sharing_key.clone());
        }
        if let Some(ip) = lb.ip {
            for key in [CILIUM_IPS, METALLB_IPS] {
                annotations.insert(key.to_owned(), ip.to_string());
            }
        }
    }
    let service_ports = streams(ports)
        .into_iter()
        .map(|(name, port, protocol)| ServicePort {
            name: Some(name.to_owned()),
            port: i32::from(port),
            protocol: Some(protocol.to_owned()),
            target_port: Some(IntOrString::Int(i32::from(port))),
            ..ServicePort::default()
        })
        .collect();
    Some(Service {
        metadata: ObjectMeta {
            name: Some(service_name(&session.name_any())),
            namespace: session.namespace(),
            labels: Some(session_labels(session)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if lb.is_some() { "LoadBalancer" } else { "ClusterIP" }.to_owned()),
            selector: Some(BTreeMap::from([(
                stream::SESSION_LABEL.to_owned(),
                session.name_any(),
            )])),
            ports: Some(service_ports),
            // Local keeps the client's address (Wolf's RTSP fallback matches `client_ip`, which
            // is the address the proxies saw: docs/protocol/streaming-ports.md § How Wolf
            // matches traffic to a session), as the proxies' Service does; Cluster where the
            // load balancer shares addresses only between Cluster Services (MetalLB).
            external_traffic_policy: lb.map(|lb| lb.traffic_policy.as_str().to_owned()),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The name of a Session's route of stream `stream` (`rtsp`, `control`, `video`, `audio`).
pub fn route_name(session: &str, stream: &str) -> String {
    format!("{session}-{stream}")
}

/// A Session's four Gateway API routes, as server-side apply bodies: a TCPRoute for RTSP and a
/// UDPRoute per UDP stream, each attached to `gateway` on its port and forwarding to the same
/// port of the stream Service. `None` when the Session has no uid to own them.
pub fn routes(session: &Session, ports: SessionPorts, gateway: &GatewayExposure) -> Option<Vec<Value>> {
    let mut owner = session.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    let name = session.name_any();
    let service = service_name(&name);
    let labels = session_labels(session);
    Some(
        streams(ports)
            .into_iter()
            .map(|(stream, port, protocol)| {
                let kind = if protocol == "TCP" { "TCPRoute" } else { "UDPRoute" };
                json!({
                    "apiVersion": format!("{GATEWAY_GROUP}/v1alpha2"),
                    "kind": kind,
                    "metadata": {
                        "name": route_name(&name, stream),
                        "labels": labels,
                        "ownerReferences": [owner],
                    },
                    "spec": {
                        "parentRefs": [{
                            "group": GATEWAY_GROUP,
                            "kind": "Gateway",
                            "namespace": gateway.namespace,
                            "name": gateway.name,
                            "port": port,
                        }],
                        "rules": [{
                            "backendRefs": [{
                                "group": "",
                                "kind": "Service",
                                "name": service,
                                "port": port,
                            }],
                        }],
                    },
                })
            })
            .collect(),
    )
}

/// What the load balancer did with a stream Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// An address came (the one asked for, if one was).
    Assigned(String),
    /// None yet, within the wait.
    Waiting,
    /// None within the wait, or another than the one asked for: the message says which.
    Failed {
        /// [`crate::crd::reasons::NO_LOAD_BALANCER_ADDRESS`] or
        /// [`crate::crd::reasons::ADDRESS_NOT_SHARED`].
        reason: &'static str,
        /// For people.
        message: String,
    },
}

/// The load-balancer address of `service` as the Session should report it at `now`.
pub fn address(service: &Service, lb: &LoadBalancerExposure, now: Timestamp) -> Address {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .find_map(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    let name = service.name_any();
    match (ingress, lb.ip) {
        (Some(got), Some(asked)) if got != asked.to_string() => Address::Failed {
            reason: crate::crd::reasons::ADDRESS_NOT_SHARED,
            message: format!(
                "the load balancer gave Service {name} address {got}, not the proxies' {asked}: \
                 clients reach only the proxies' address (check the sharing key and the address pool)"
            ),
        },
        (Some(got), _) => Address::Assigned(got),
        (None, _) => {
            let age = service
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
                .unwrap_or_default();
            if age < lb.address_wait {
                return Address::Waiting;
            }
            Address::Failed {
                reason: crate::crd::reasons::NO_LOAD_BALANCER_ADDRESS,
                message: format!(
                    "the load balancer gave Service {name} no address within {:?}: is there a \
                     load-balancer controller, and does it honour sharing key {:?}?",
                    lb.address_wait, lb.sharing_key
                ),
            }
        }
    }
}

/// When to look at the Service's address again: at the end of the wait.
pub fn address_recheck(service: &Service, lb: &LoadBalancerExposure, now: Timestamp) -> Option<Duration> {
    let age = service
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default();
    (age < lb.address_wait).then(|| lb.address_wait - age + Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn session() -> Session {
        serde_json::from_value(json!({
            "apiVersion": "direwolf.games-on-whales.github.io/v1alpha1",
            "kind": "Session",
            "metadata": {"name": "alice-desk-x7k2p", "namespace": "games", "uid": "u-1"},
            "spec": {
                "userReference": {"name": "alice"},
                "gameReference": {"name": "desk"},
                "pairingReference": {"name": "f".repeat(64)},
                "config": {"videoWidth": 1280, "videoHeight": 720, "videoRefreshRate": 60}
            }
        }))
        .unwrap()
    }

    fn ports() -> SessionPorts {
        let p = |n| NonZeroU16::new(n).unwrap();
        SessionPorts {
            rtsp: p(40004),
            control: p(40005),
            video_rtp: p(40006),
            audio_rtp: p(40007),
        }
    }

    #[test]
    fn service_names_are_dns_1035_labels() {
        assert_eq!(service_name("alice-desk-x7k2p"), "alice-desk-x7k2p");
        assert_eq!(service_name("1up-desk-x7k2p"), "s1up-desk-x7k2p");
        let long = format!("{}-x7k2p", "9".repeat(57));
        assert_eq!(long.len(), 63);
        let name = service_name(&long);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with('s') && name.ends_with("-x7k2p"), "{name}");
    }

    #[test]
    fn a_load_balancer_service_shares_the_proxies_address_and_forwards_each_port_to_itself() {
        let lb = LoadBalancerExposure {
            sharing_key: "games".to_owned(),
            ip: Some("203.0.113.7".parse().unwrap()),
            ..LoadBalancerExposure::default()
        };
        let service = stream_service(&session(), ports(), Some(&lb)).expect("owned");
        let annotations = service.metadata.annotations.clone().unwrap();
        for key in [annotations::CILIUM_SHARING_KEY, annotations::METALLB_SHARING_KEY] {
            assert_eq!(annotations[key], "games");
        }
        for key in [CILIUM_IPS, METALLB_IPS] {
            assert_eq!(annotations[key], "203.0.113.7");
        }
        let owner = &service.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Session", Some(true)));
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        let cluster = LoadBalancerExposure {
            traffic_policy: super::super::config::TrafficPolicy::Cluster,
            ..LoadBalancerExposure::default()
        };
        let cluster = stream_service(&session(), ports(), Some(&cluster)).unwrap();
        assert_eq!(
            cluster.spec.unwrap().external_traffic_policy.as_deref(),
            Some("Cluster")
        );
        assert_eq!(spec.selector.unwrap()[stream::SESSION_LABEL], "alice-desk-x7k2p");
        let got: Vec<(String, i32, String, IntOrString)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.name.unwrap(),
                    p.port,
                    p.protocol.unwrap(),
                    p.target_port.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("rtsp", 40004, "TCP"),
                ("control", 40005, "UDP"),
                ("video", 40006, "UDP"),
                ("audio", 40007, "UDP")
            ]
            .map(|(n, p, t)| (n.to_owned(), p, t.to_owned(), IntOrString::Int(p)))
        );
        // Without an address: only the sharing keys.
        let plain = stream_service(&session(), ports(), Some(&LoadBalancerExposure::default())).unwrap();
        assert_eq!(plain.metadata.annotations.unwrap().len(), 2);
        // The gateway's backend: ClusterIP, no annotations.
        let backend = stream_service(&session(), ports(), None).unwrap();
        assert_eq!(backend.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
        assert!(backend.metadata.annotations.is_none());
        let mut no_uid = session();
        no_uid.metadata.uid = None;
        assert!(stream_service(&no_uid, ports(), None).is_none());
    }

    #[test]
    fn routes_attach_to_the_gateway_on_their_port_and_reach_the_same_port_of_the_service() {
        let gateway: GatewayExposure = "infra/public".parse().unwrap();
        let routes = routes(&session(), ports(), &gateway).expect("owned");
        let kinds: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap(),
                    r["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("TCPRoute", "alice-desk-x7k2p-rtsp"),
                ("UDPRoute", "alice-desk-x7k2p-control"),
                ("UDPRoute", "alice-desk-x7k2p-video"),
                ("UDPRoute", "alice-desk-x7k2p-audio"),
            ]
        );
        for (route, port) in routes.iter().zip(40004..) {
            assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1alpha2");
            let parent = &route["spec"]["parentRefs"][0];
            assert_eq!(parent["namespace"], "infra");
            assert_eq!(parent["name"], "public");
            assert_eq!(parent["port"], port);
            let backend = &route["spec"]["rules"][0]["backendRefs"][0];
            assert_eq!(backend["kind"], "Service");
            assert_eq!(backend["name"], "alice-desk-x7k2p");
            assert_eq!(backend["port"], port);
            assert_eq!(route["metadata"]["ownerReferences"][0]["controller"], true);
        }
    }

    #[test]
    fn the_address_is_waited_for_then_reported_missing_or_foreign() {
        let now = Timestamp::now();
        let lb = LoadBalancerExposure {
            ip: Some("203.0.113.7".parse().unwrap()),
            address_wait: Duration::from_secs(20),
            ..LoadBalancerExposure::default()
        };
        let mut service = stream_service(&session(), ports(), Some(&lb)).unwrap();
        service.metadata.creation_timestamp = Some(Time(now - Duration::from_secs(5)));
        assert_eq!(address(&service, &lb, now), Address::Waiting);
        assert!(address_recheck(&service, &lb, now).is_some_and(|d| d > Duration::from_secs(14)));
        service.metadata.creation_timestamp = Some(Time(now - Duration::from_secs(21)));
        assert!(matches!(
            address(&service, &lb, now),
            Address::Failed { reason, .. } if reason == crate::crd::reasons::NO_LOAD_BALANCER_ADDRESS
        ));
        assert_eq!(address_recheck(&service, &lb, now), None);
        let with = |ip: &str| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.to_owned()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        };
        service.status = Some(with("203.0.113.7"));
        assert_eq!(
            address(&service, &lb, now),
            Address::Assigned("203.0.113.7".to_owned())
        );
        service.status = Some(with("203.0.113.9"));
        assert!(matches!(
            address(&service, &lb, now),
            Address::Failed { reason, .. } if reason == crate::crd::reasons::ADDRESS_NOT_SHARED
        ));
    }
}
