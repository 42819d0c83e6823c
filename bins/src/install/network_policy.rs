//! The stream pods admit only the proxy replicas, on Wolf's RTSP and stream ports (relay mode),
//! or anyone on the port range (the other exposure modes, where clients reach Wolf directly).

use std::collections::BTreeMap;

use direwolf_k8s::crd::labels;
use direwolf_k8s::operator::PortRange;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Settings};

/// The comment that opens its file of the base.
pub const HEADER: &str = "Stream pods (one per Session, label app=direwolf-worker) accept traffic only from the proxy\n\
replicas, which relay each Session's stream: RTSP 48010/TCP, control 47999/UDP, video\n\
48100/UDP and audio 48200/UDP (Wolf's defaults: every stream pod has its own IP). Nothing else\n\
reaches them: not Wolf's own HTTP/HTTPS ports, not other users' pods. Wolf's API is a unix\n\
socket shared with the agent inside the pod and has no port at all. The kubelet's probes of the\n\
agent's health port come from the node, which network plugins let through.";

/// Wolf's stream ports in every stream pod: RTSP, then control, video, audio.
const STREAM_PORTS: [(&str, i32); 4] = [("TCP", 48010), ("UDP", 47999), ("UDP", 48100), ("UDP", 48200)];

/// NetworkPolicy `direwolf-stream-pods`.
pub fn stream_pods(settings: &Settings) -> NetworkPolicy {
    let mut metadata = settings.metadata("direwolf-stream-pods", Component::Proxy);
    metadata
        .labels
        .get_or_insert_default()
        .insert(labels::COMPONENT.to_owned(), "stream".to_owned());
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    labels::APP.to_owned(),
                    labels::APP_WORKER.to_owned(),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![ingress(settings)]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Relay mode: the proxy replicas, on Wolf's default ports. Otherwise clients (through a load
/// balancer keeping their address, or a Gateway's data plane) on the operator's default port
/// range, where each Wolf listens on its Session's ports.
fn ingress(settings: &Settings) -> NetworkPolicyIngressRule {
    if !settings.exposure.wolf_on_public_ports() {
        return NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(Component::Proxy.selector()),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(
                STREAM_PORTS
                    .iter()
                    .map(|&(protocol, port)| NetworkPolicyPort {
                        protocol: Some(protocol.to_owned()),
                        port: Some(IntOrString::Int(port)),
                        ..NetworkPolicyPort::default()
                    })
                    .collect(),
            ),
        };
    }
    let range = PortRange::default();
    NetworkPolicyIngressRule {
        from: None,
        ports: Some(
            ["TCP", "UDP"]
                .into_iter()
                .map(|protocol| NetworkPolicyPort {
                    protocol: Some(protocol.to_owned()),
                    port: Some(IntOrString::Int(i32::from(range.first))),
                    end_port: Some(i32::from(range.last)),
                })
                .collect(),
        ),
    }
}
