//! What the proxy's and the operator's Deployments share: non-root pods (uid 65532, the
//! image's `nonroot` user), a read-only root file system without capabilities, the pod's name
//! and namespace in the environment, and probes on the health port 8080.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Settings};

/// The user and group the direwolf image runs as (distroless `nonroot`; the Dockerfile's `USER`).
pub const NONROOT: i64 = 65532;

/// The health port every component serves (`--health-bind`'s default port).
pub const HEALTH_PORT: i32 = 8080;

/// The annotations by which a Prometheus using the common `prometheus.io/*` pod discovery finds
/// `/metrics` on the health port.
fn scrape_annotations() -> std::collections::BTreeMap<String, String> {
    [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", HEALTH_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The Deployment of `component`: `replicas` pods of `pod` running as the component's account.
pub fn deployment(settings: &Settings, component: Component, replicas: i32, pod: PodSpec) -> Deployment {
    let metadata = settings.metadata(component.account(), component);
    Deployment {
        metadata: metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: component.selector(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: metadata.labels,
                    annotations: Some(scrape_annotations()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(component.account().to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT),
                        run_as_group: Some(NONROOT),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..pod
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The direwolf container `name` running `direwolf ARGS...` (the image's entrypoint), with the
/// health port, its probes and `ports` before it.
pub fn container(settings: &Settings, name: &str, args: Vec<String>, ports: Vec<ContainerPort>) -> Container {
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("health".to_owned()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let mut ports = ports;
    ports.push(port("health", HEALTH_PORT));
    Container {
        name: name.to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
            EnvVar {
                name: "RUST_LOG".to_owned(),
                value: Some("info".to_owned()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(ports),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..probe("/readyz")
        }),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..probe("/livez")
        }),
        resources: Some(ResourceRequirements {
            requests: Some(
                [("cpu", "50m"), ("memory", "64Mi")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
                    .collect(),
            ),
            limits: Some([("memory".to_owned(), Quantity("256Mi".to_owned()))].into()),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// A named TCP container port.
pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
