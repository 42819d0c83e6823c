//! The stream ports on the proxies' LoadBalancer Service, against the real API server's
//! server-side apply: the installer's own ports stay, each Session's four ports come and go.

mod support;

use std::collections::BTreeSet;

use direwolf_k8s::exposure;
use direwolf_k8s::retry::RetryPolicy;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::testenv;

fn proxy_service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "direwolf-proxy"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app.kubernetes.io/component": "proxy"},
            "ports": [
                {"name": "https", "port": 47984, "protocol": "TCP"},
                {"name": "http", "port": 47989, "protocol": "TCP"}
            ]
        }
    }))
    .expect("a Service")
}

fn ports(service: &Service) -> Vec<(String, i32, String)> {
    let mut out: Vec<(String, i32, String)> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port, p.protocol.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ports_come_and_go_beside_the_installers_ports() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let (client, namespace) = cp.namespace("exposure").await;
    let api: Api<Service> = Api::namespaced(client, &namespace);
    testenv::within("create", api.create(&PostParams::default(), &proxy_service()))
        .await
        .expect("the installer's Service");
    let retry = RetryPolicy::default();
    let two_sessions: BTreeSet<(u16, bool)> = [
        (40000, false),
        (40001, true),
        (40002, true),
        (40003, true),
        (40004, false),
        (40005, true),
        (40006, true),
        (40007, true),
    ]
    .into();
    testenv::within(
        "apply",
        exposure::apply(&api, &retry, "direwolf-proxy", &two_sessions),
    )
    .await
    .expect("the stream ports are applied");
    let service = testenv::within("get", api.get("direwolf-proxy"))
        .await
        .expect("get");
    let listed = ports(&service);
    assert_eq!(listed.len(), 10, "{listed:?}");
    assert!(listed.contains(&("http".into(), 47989, "TCP".into())));
    assert!(listed.contains(&("u40001".into(), 40001, "UDP".into())));
    assert!(listed.contains(&("t40004".into(), 40004, "TCP".into())));

    // The first Session ends: only its ports go.
    let one_session: BTreeSet<(u16, bool)> = two_sessions
        .iter()
        .copied()
        .filter(|(p, _)| *p >= 40004)
        .collect();
    testenv::within(
        "apply",
        exposure::apply(&api, &retry, "direwolf-proxy", &one_session),
    )
    .await
    .expect("applied");
    let listed = ports(
        &testenv::within("get", api.get("direwolf-proxy"))
            .await
            .expect("get"),
    );
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(!listed.iter().any(|(_, port, _)| *port == 40000));

    // No Session: the installer's ports alone.
    testenv::within(
        "apply",
        exposure::apply(&api, &retry, "direwolf-proxy", &BTreeSet::new()),
    )
    .await
    .expect("applied");
    let listed = ports(
        &testenv::within("get", api.get("direwolf-proxy"))
            .await
            .expect("get"),
    );
    assert_eq!(
        listed,
        vec![
            ("http".into(), 47989, "TCP".into()),
            ("https".into(), 47984, "TCP".into())
        ]
    );
}
