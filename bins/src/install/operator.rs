//! The leader-elected operator's Deployment: for each Session a port block, the home claim, the
//! agent's account and the stream pod; it publishes the stream ports on the proxies' Service.
//! Replicas elect a leader on Lease direwolf-controller; a standby takes over within the lease
//! duration (15 s) when the leader is lost.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};

use direwolf_k8s::operator::{Exposure, TrafficPolicy};

use super::workload::{container, deployment};
use super::{Component, Settings};

/// The comment that opens its file of the base.
pub const HEADER: &str = "The leader-elected operator: for each Session a port block, the home claim, the agent's\n\
account and the stream pod (wolf, wolf-agent, pulseaudio, the game); it publishes the stream\n\
ports on the proxies' Service. Replicas elect a leader on Lease direwolf-controller; a standby\n\
takes over within the lease duration (15 s) when the leader is lost.";

/// The operator's arguments: the proxies' Service, the agent's image (the direwolf image) and the
/// stream pods' images and GPU when given.
pub fn args(settings: &Settings) -> Vec<String> {
    let mut args = vec!["operator"];
    // The relay's ports are published on the proxies' Service; the other modes make objects of
    // their own per Session.
    if settings.exposure == Exposure::Relay {
        args.extend(["--proxy-service", Component::Proxy.account()]);
    }
    if settings.shared_ports {
        args.push("--shared-ports");
    }
    args.extend(["--agent-image", &settings.image]);
    let optional = [
        ("--wolf-image", settings.wolf_image.as_deref()),
        ("--pulseaudio-image", settings.pulseaudio_image.as_deref()),
        ("--init-image", settings.init_image.as_deref()),
    ];
    for (flag, value) in optional {
        if let Some(value) = value {
            args.extend([flag, value]);
        }
    }
    let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    if let Some(gpu) = &settings.gpu {
        args.extend(["--gpu-resource".to_owned(), format!("{}={}", gpu.name, gpu.count)]);
    }
    match &settings.exposure {
        Exposure::Relay => {}
        Exposure::LoadBalancer(lb) => {
            args.extend([
                "--exposure".to_owned(),
                "load-balancer".to_owned(),
                "--lb-sharing-key".to_owned(),
                lb.sharing_key.clone(),
            ]);
            if let Some(ip) = lb.ip {
                args.extend(["--lb-ip".to_owned(), ip.to_string()]);
            }
            if lb.traffic_policy != TrafficPolicy::Local {
                args.extend(["--lb-traffic-policy".to_owned(), "cluster".to_owned()]);
            }
        }
        Exposure::Gateway(gateway) => args.extend([
            "--exposure".to_owned(),
            "gateway".to_owned(),
            "--gateway".to_owned(),
            gateway.to_string(),
        ]),
    }
    args
}

/// The operators' Deployment, its replicas spread over nodes when they can be.
pub fn deployment_of(settings: &Settings) -> Deployment {
    let pod = PodSpec {
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        label_selector: Some(Component::Operator.selector()),
                        ..PodAffinityTerm::default()
                    },
                }]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        containers: vec![container(settings, "operator", args(settings), Vec::new())],
        ..PodSpec::default()
    };
    deployment(settings, Component::Operator, settings.operator_replicas, pod)
}
