//! The operator's exposure modes on the real control plane (`docs/protocol/kubernetes.md`
//! § Exposure modes): in `load-balancer` mode a Session gets a LoadBalancer Service selecting
//! its pod, with the sharing annotations, its four ports forwarded to the same numbers (on which
//! Wolf is told to listen) and owned by the Session; the control plane has no load-balancer
//! controller, so the address does not come and the Session says so, until the test writes
//! one as a controller would. In `gateway` mode (the
//! Gateway API CRDs fetched through Go's module proxy) a Session gets a ClusterIP Service and a
//! TCPRoute and three UDPRoutes attached to the Gateway on their ports; a Gateway that does not
//! exist ends the Session at once with the reason. After a Session is deleted nothing of it is
//! left.

mod support;

use std::time::{Duration, Instant};

use direwolf_k8s::crd::{self, Session, SessionPorts, conditions, reasons};
use direwolf_k8s::operator::expose;
use direwolf_k8s::operator::{Exposure, GatewayExposure, LoadBalancerExposure, OperatorConfig};
use direwolf_k8s::stream;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::operator::{Running, create_session, ended, eventually, release, status_of};
use support::testenv::{self, ControlPlane};

const WAIT: Duration = Duration::from_secs(60);

/// A namespace with the CRDs, a User `bob` and an App `desk` with one small game container.
async fn setup(cp: &ControlPlane, prefix: &str) -> (Client, String) {
    support::desk_namespace(cp, prefix, json!({}), json!({})).await
}

fn config(ns: &str, exposure: Exposure) -> OperatorConfig {
    let mut config = OperatorConfig::new(ns);
    // No agent publishes a stream URL here: keep the Sessions alive for the test's duration.
    config.start_deadline = Duration::from_secs(600);
    config.pod.node_selector = [("type".to_owned(), "kwok".to_owned())].into();
    config.exposure = exposure;
    config
}

async fn ports_of(client: &Client, ns: &str, name: &str) -> SessionPorts {
    eventually(WAIT, "status.ports", || async {
        status_of(client, ns, name).await.and_then(|s| s.ports)
    })
    .await
}

/// Waits for condition `type_` of Session `name` with `status`; returns its reason and message.
async fn condition(client: &Client, ns: &str, name: &str, type_: &str, status: &str) -> (String, String) {
    eventually(WAIT, &format!("condition {type_} {status}"), || async {
        let s = status_of(client, ns, name).await?;
        crd::find_condition(&s.conditions, type_)
            .filter(|c| c.status == status)
            .map(|c| (c.reason.clone(), c.message.clone()))
    })
    .await
}

/// The four streams as the Service publishes them: name, port, protocol, target port.
fn service_ports(service: &Service) -> Vec<(String, i32, String, IntOrString)> {
    let spec = service.spec.as_ref().expect("spec");
    spec.ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().expect("named"),
                p.port,
                p.protocol.clone().expect("protocol"),
                p.target_port.clone().expect("target port"),
            )
        })
        .collect()
}

fn expected_ports(ports: SessionPorts) -> Vec<(String, i32, String, IntOrString)> {
    expose::streams(ports)
        .into_iter()
        .map(|(name, port, protocol)| {
            let port = i32::from(port);
            (name.to_owned(), port, protocol.to_owned(), IntOrString::Int(port))
        })
        .collect()
}

fn owned_by_session(meta: &kube::api::ObjectMeta, name: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Session" && o.name == name && o.controller == Some(true))
}

async fn delete_session(client: &Client, ns: &str, name: &str) {
    let sessions: Api<Session> = Api::namespaced(client.clone(), ns);
    match sessions.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => panic!("delete session {name}: {err}"),
    }
    release(client, ns, name, WAIT).await;
    eventually(WAIT, "the session gone", || async {
        sessions.get_opt(name).await.expect("get").is_none().then_some(())
    })
    .await;
}

/// The Wolf container's environment variable `name` in the stream pod.
fn wolf_env(pod: &Pod, name: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == stream::containers::WOLF)?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_mode_gives_each_session_a_shared_service_and_says_when_no_address_comes() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, ns) = setup(cp, "expose-lb").await;
    let lb = LoadBalancerExposure {
        sharing_key: "games".to_owned(),
        ip: Some("203.0.113.7".parse().expect("an IP")),
        address_wait: Duration::from_secs(2),
        ..LoadBalancerExposure::default()
    };
    let operator = Running::start(client.clone(), config(&ns, Exposure::LoadBalancer(lb)), true);
    let name = "bob-desk-lbaaa";
    create_session(&client, &ns, name, "bob", "desk").await;
    let ports = ports_of(&client, &ns, name).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service = eventually(WAIT, "the stream Service", || async {
        services.get_opt(&expose::service_name(name)).await.expect("get")
    })
    .await;
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    for (key, value) in [
        ("lbipam.cilium.io/sharing-key", "games"),
        ("metallb.universe.tf/allow-shared-ip", "games"),
        ("lbipam.cilium.io/ips", "203.0.113.7"),
        ("metallb.universe.tf/loadBalancerIPs", "203.0.113.7"),
    ] {
        assert_eq!(annotations.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(owned_by_session(&service.metadata, name));
    let spec = service.spec.as_ref().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        spec.selector
            .as_ref()
            .and_then(|s| s.get(stream::SESSION_LABEL))
            .map(String::as_str),
        Some(name)
    );
    assert_eq!(service_ports(&service), expected_ports(ports));

    // Wolf listens on the allocated ports themselves.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually(WAIT, "the stream pod", || async {
        pods.get_opt(name).await.expect("get")
    })
    .await;
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(stream::SESSION_LABEL))
            .map(String::as_str),
        Some(name),
        "the Service's selector selects the pod"
    );
    for (var, port) in [
        (stream::env::WOLF_RTSP_SETUP_PORT, ports.rtsp),
        (stream::env::WOLF_CONTROL_PORT, ports.control),
        (stream::env::WOLF_VIDEO_PING_PORT, ports.video_rtp),
        (stream::env::WOLF_AUDIO_PING_PORT, ports.audio_rtp),
    ] {
        assert_eq!(wolf_env(&pod, var), Some(port.to_string()), "{var}");
    }

    let (reason, _) = condition(&client, &ns, name, conditions::SERVICE_CREATED, "True").await;
    assert_eq!(reason, reasons::SERVICE_CREATED);
    // No load-balancer controller here: the address never comes.
    let (reason, message) = condition(&client, &ns, name, conditions::LOAD_BALANCER_ADDRESS, "False").await;
    assert_eq!(reason, reasons::NO_LOAD_BALANCER_ADDRESS, "{message}");
    assert!(message.contains("games"), "{message}");
    let status = status_of(&client, &ns, name).await.expect("the session");
    assert!(ended(&status).is_none(), "no address is not an ending");

    // The address comes late (as a load-balancer controller writes it): the operator watches
    // the Service, so the condition turns True at once, not at its next poll.
    let given = Instant::now();
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}}});
    services
        .patch_status(
            &expose::service_name(name),
            &PatchParams::default(),
            &Patch::Merge(&ingress),
        )
        .await
        .expect("the load balancer's address");
    let (reason, message) = condition(&client, &ns, name, conditions::LOAD_BALANCER_ADDRESS, "True").await;
    assert_eq!(
        (reason.as_str(), message.as_str()),
        (reasons::SUCCESS, "203.0.113.7")
    );
    assert!(given.elapsed() < Duration::from_secs(10), "{:?}", given.elapsed());

    delete_session(&client, &ns, name).await;
    eventually(WAIT, "the stream Service gone", || async {
        services
            .get_opt(&expose::service_name(name))
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    operator.stop().await;
}

fn gateway_api(resource: &kube::api::ApiResource, client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_mode_attaches_routes_to_the_gateway_and_a_missing_gateway_ends_the_session() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    cp.install_crds(&support::gateway_api::crds_yaml()).await;
    let (client, ns) = setup(cp, "expose-gw").await;
    let gateways = gateway_api(&expose::gateway_resource(), &client, &ns);
    let gateway: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "public"},
        "spec": {
            "gatewayClassName": "example",
            "listeners": [
                {"name": "rtsp-40000", "port": 40000, "protocol": "TCP", "allowedRoutes": {"kinds": [{"kind": "TCPRoute"}]}},
                {"name": "udp-40001", "port": 40001, "protocol": "UDP", "allowedRoutes": {"kinds": [{"kind": "UDPRoute"}]}}
            ]
        }
    }))
    .expect("a gateway");
    testenv::within(
        "create the Gateway",
        gateways.create(&PostParams::default(), &gateway),
    )
    .await
    .expect("the Gateway is created");

    let exposure = Exposure::Gateway(GatewayExposure {
        namespace: ns.clone(),
        name: "public".to_owned(),
    });
    let operator = Running::start(client.clone(), config(&ns, exposure), true);
    let name = "bob-desk-gwaaa";
    create_session(&client, &ns, name, "bob", "desk").await;
    let ports = ports_of(&client, &ns, name).await;
    let (reason, message) = condition(&client, &ns, name, conditions::ROUTES_CREATED, "True").await;
    assert_eq!(reason, reasons::SUCCESS, "{message}");
    condition(&client, &ns, name, conditions::SERVICE_CREATED, "True").await;

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service = services
        .get(&expose::service_name(name))
        .await
        .expect("the backend Service");
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("ClusterIP")
    );
    assert!(owned_by_session(&service.metadata, name));
    assert_eq!(service_ports(&service), expected_ports(ports));

    let tcp = gateway_api(&expose::tcp_route_resource(), &client, &ns);
    let udp = gateway_api(&expose::udp_route_resource(), &client, &ns);
    for (stream, port, protocol) in expose::streams(ports) {
        let api = if protocol == "TCP" { &tcp } else { &udp };
        let route = api
            .get(&expose::route_name(name, stream))
            .await
            .unwrap_or_else(|e| panic!("the {stream} route: {e}"));
        assert!(owned_by_session(&route.metadata, name), "{stream}");
        let parent = &route.data["spec"]["parentRefs"][0];
        assert_eq!(parent["name"], "public");
        assert_eq!(parent["namespace"], ns.as_str());
        assert_eq!(parent["port"], port);
        let backend = &route.data["spec"]["rules"][0]["backendRefs"][0];
        assert_eq!(backend["kind"], "Service");
        assert_eq!(backend["name"], expose::service_name(name).as_str());
        assert_eq!(backend["port"], port);
    }

    delete_session(&client, &ns, name).await;
    eventually(WAIT, "the Service and routes gone", || async {
        let mut left = services
            .get_opt(&expose::service_name(name))
            .await
            .expect("get")
            .is_some();
        for (stream, _, protocol) in expose::streams(ports) {
            let api = if protocol == "TCP" { &tcp } else { &udp };
            left |= api
                .get_opt(&expose::route_name(name, stream))
                .await
                .expect("get")
                .is_some();
        }
        (!left).then_some(())
    })
    .await;
    operator.stop().await;

    // A Gateway that does not exist: the Session ends at once with the reason, well within the
    // client's launch timeout, and no route is made.
    let exposure = Exposure::Gateway(GatewayExposure {
        namespace: ns.clone(),
        name: "missing".to_owned(),
    });
    let operator = Running::start(client.clone(), config(&ns, exposure), true);
    let name = "bob-desk-gwbbb";
    let started = Instant::now();
    create_session(&client, &ns, name, "bob", "desk").await;
    let (reason, message) = eventually(WAIT, "the Ended condition", || async {
        status_of(&client, &ns, name).await.as_ref().and_then(ended)
    })
    .await;
    assert_eq!(reason, reasons::GATEWAY_CONFIGURATION_FAILED, "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let status = status_of(&client, &ns, name).await.expect("held");
    let routes = crd::find_condition(&status.conditions, conditions::ROUTES_CREATED).expect("RoutesCreated");
    assert_eq!(
        (routes.status.as_str(), routes.reason.as_str()),
        ("False", reasons::GATEWAY_CONFIGURATION_FAILED)
    );
    assert!(
        tcp.get_opt(&expose::route_name(name, "rtsp"))
            .await
            .expect("get")
            .is_none()
    );
    delete_session(&client, &ns, name).await;
    operator.stop().await;
}
