//! The Moonlight endpoint: the proxy's Deployment and its LoadBalancer Service, the one
//! external address for pairing, launch and streaming (`docs/protocol/kubernetes.md` § The
//! proxy; the operator publishes each Session's stream ports on the Service).

use std::collections::BTreeMap;

use direwolf_k8s::crd::annotations;
use direwolf_k8s::operator::{Exposure, PortRange};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    EnvVar, KeyToPath, PodSpec, SecretVolumeSource, Service, ServicePort, ServiceSpec, Sysctl, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::login::{OIDC_SECRET_DIR, OIDC_SECRET_KEY};
use super::workload::{container, deployment, port};
use super::{Component, Settings};

/// The comment that opens its file of the base.
pub const HEADER: &str = "The Moonlight endpoint: the only HTTP/HTTPS server clients talk to\n\
(docs/protocol/kubernetes.md § The proxy). Its LoadBalancer Service is the one external IP for\n\
pairing, launch and streaming: the operator publishes each Session's stream ports on it\n\
(docs/protocol/kubernetes.md § The operator, docs/ports.md § Kubernetes). Replicas share\n\
everything through the API server; the Service's ClientIP affinity keeps the phases of one\n\
pairing on one replica, and externalTrafficPolicy Local keeps the client's address. A PIN is\n\
accepted only from someone who logged in (direwolf install --oidc-issuer, --trusted-proxy or\n\
--allow-unauthenticated-pin; docs/configuration.md § Who enters a PIN in Kubernetes mode).";

/// Moonlight's HTTPS and HTTP ports.
const PORTS: [(&str, i32); 2] = [("https", 47984), ("http", 47989)];
/// The admin API's and web UI's port.
const ADMIN_PORT: (&str, i32) = ("admin", crate::admin_port::DEFAULT_ADMIN_PORT as i32);

/// The proxies' TCP ports: Moonlight's, and the admin port when it is served.
fn ports(settings: &Settings) -> Vec<(&'static str, i32)> {
    let admin = settings.admin_api.then_some(ADMIN_PORT);
    PORTS.into_iter().chain(admin).collect()
}

/// The proxies' Deployment. Replicas share everything through the API server (pending PINs as
/// Secrets, docs/protocol/moonlight-http.md § Several proxy replicas).
pub fn deployment_of(settings: &Settings) -> Deployment {
    let ports = ports(settings)
        .into_iter()
        .rev()
        .map(|(name, number)| port(name, number))
        .collect();
    let mut args = vec!["proxy".to_owned()];
    // Outside the relay mode Wolf listens on the public ports and the operator exposes them.
    if settings.exposure.wolf_on_public_ports() {
        args.push("--no-relay".to_owned());
    }
    if settings.shared_ports {
        args.push("--shared-ports".to_owned());
    }
    args.extend(settings.proxy_login.iter().cloned());
    if settings.admin_api {
        args.extend([
            "--admin-token-secret".to_owned(),
            direwolf_k8s::admin_token::DEFAULT_SECRET.to_owned(),
        ]);
    }
    let mut proxy = container(settings, "proxy", args, ports);
    if let Some(ip) = settings.external_address {
        proxy.env.get_or_insert_default().push(EnvVar {
            name: "DIREWOLF_EXTERNAL_ADDRESS".to_owned(),
            value: Some(ip.to_string()),
            ..EnvVar::default()
        });
    }
    let pod = PodSpec {
        containers: vec![proxy],
        ..PodSpec::default()
    };
    let mut deployment = deployment(settings, Component::Proxy, settings.proxy_replicas, pod);
    if !settings.exposure.wolf_on_public_ports() {
        reserve_stream_ports(&mut deployment, settings.shared_ports);
    }
    if let Some(secret) = &settings.oidc_client_secret {
        mount_oidc_secret(&mut deployment, secret);
    }
    deployment
}

/// Mounts key `client-secret` of Secret `secret` read-only where the proxy's
/// `--oidc-client-secret-file` reads it: readable by the proxy's group (`fsGroup`) only.
fn mount_oidc_secret(deployment: &mut Deployment, secret: &str) {
    const VOLUME: &str = "oidc-client-secret";
    let Some(pod) = deployment.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    pod.security_context.get_or_insert_default().fs_group = Some(super::workload::NONROOT);
    pod.volumes.get_or_insert_default().push(Volume {
        name: VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(vec![KeyToPath {
                key: OIDC_SECRET_KEY.to_owned(),
                path: OIDC_SECRET_KEY.to_owned(),
                mode: None,
            }]),
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    });
    for container in &mut pod.containers {
        container.volume_mounts.get_or_insert_default().push(VolumeMount {
            name: VOLUME.to_owned(),
            mount_path: OIDC_SECRET_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
}

/// Keeps the kernel from handing the stream ports out as the source ports of the pod's own
/// connections (to the API server, to Wolf): one held there would keep its Session from being
/// relayed until it closed. `net.ipv4.ip_local_reserved_ports` is a safe, per-pod sysctl.
fn reserve_stream_ports(deployment: &mut Deployment, shared: bool) {
    let range = PortRange::default();
    let value = if shared {
        let p = direwolf_core::relay::SharedPorts::default();
        let mut ports = [p.rtsp, p.video, p.audio, p.control];
        ports.sort_unstable();
        ports.map(|port| port.to_string()).join(",")
    } else {
        format!("{}-{}", range.first, range.last)
    };
    let reserved = Sysctl {
        name: "net.ipv4.ip_local_reserved_ports".to_owned(),
        value,
    };
    if let Some(pod) = deployment.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.security_context
            .get_or_insert_default()
            .sysctls
            .get_or_insert_default()
            .push(reserved);
    }
}

/// The proxies' LoadBalancer Service `direwolf-proxy`.
pub fn service(settings: &Settings) -> Service {
    let mut metadata = settings.metadata(Component::Proxy.account(), Component::Proxy);
    metadata.annotations = Some(BTreeMap::from([
        // The load-balancer sharing key (Cilium LB-IPAM, MetalLB): a Service given the same
        // key shares the proxies' address. In the relay mode every stream port is on this
        // Service itself (the operator adds them); in the load-balancer mode each Session's
        // Service carries the key.
        (
            annotations::CILIUM_SHARING_KEY.to_owned(),
            settings.sharing_key.clone(),
        ),
        (
            annotations::METALLB_SHARING_KEY.to_owned(),
            settings.sharing_key.clone(),
        ),
    ]));
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            // Keep the client's source address: pairing state is keyed by it and Sessions
            // record it.
            // (Cluster only where the load-balancer exposure asks for it, for MetalLB's sharing.)
            external_traffic_policy: Some(
                match &settings.exposure {
                    Exposure::LoadBalancer(lb) => lb.traffic_policy.as_str(),
                    _ => "Local",
                }
                .to_owned(),
            ),
            // Phases 1-5 of one pairing must reach the replica holding its state.
            session_affinity: Some("ClientIP".to_owned()),
            selector: Component::Proxy.selector().match_labels,
            ports: Some(
                ports(settings)
                    .into_iter()
                    .map(|(name, number)| ServicePort {
                        name: Some(name.to_owned()),
                        port: number,
                        target_port: Some(IntOrString::String(name.to_owned())),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
