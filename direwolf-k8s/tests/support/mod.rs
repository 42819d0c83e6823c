//! Helpers of the tests of this crate, on the emulator and on the real control plane
//! (`testenv`); each test file uses some of them.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

#[cfg(feature = "emulator")]
use direwolf_k8s::crd;
#[cfg(feature = "emulator")]
use direwolf_k8s::emulator::ApiServerEmulator;

pub mod cases;
pub mod gateway_api;
pub mod operator;
pub mod testenv;

/// Awaits `f`, failing the test with `what` if it takes longer than `wait` (a timeout means a
/// call hung: a cache never synced, a wait did not end at its own deadline, or a retry loop did
/// not end).
pub async fn within<F: Future>(wait: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(wait, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {wait:?} waiting for: {what}"))
}

/// An emulator with the direwolf CRDs installed and the `examples/` files named applied.
#[cfg(feature = "emulator")]
pub async fn emulator(wait: Duration, examples: &[&str]) -> ApiServerEmulator {
    let emulator = within(wait, "emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts");
    emulator
        .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
        .expect("CRDs install");
    for file in examples {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(&path).expect("example readable");
        emulator.apply_yaml(&yaml).expect("example applies");
    }
    emulator
}

/// A new namespace (see [`testenv::ControlPlane::namespace`]) with the CRDs, User `bob` of spec
/// `user`, and App `desk` (id 7, one small game container) with `app` merged into its spec.
pub async fn desk_namespace(
    cp: &testenv::ControlPlane,
    prefix: &str,
    user: serde_json::Value,
    app: serde_json::Value,
) -> (kube::Client, String) {
    use direwolf_k8s::crd;
    use kube::Api;
    cp.install_crds(&crd::crds_yaml().expect("CRDs render")).await;
    let (client, ns) = cp.namespace(prefix).await;
    let user: crd::User =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "bob"}, "spec": user}))
            .expect("a user");
    let mut spec = serde_json::json!({"title": "Desk", "id": 7,
        "template": {"spec": {"containers": [{"name": "game", "image": "example.invalid/game:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}});
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), app) {
        spec.extend(extra);
    }
    let app: crd::App =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "desk"}, "spec": spec}))
            .expect("an app");
    let post = kube::api::PostParams::default();
    testenv::within(
        "create user",
        Api::<crd::User>::namespaced(client.clone(), &ns).create(&post, &user),
    )
    .await
    .expect("user created");
    testenv::within(
        "create app",
        Api::<crd::App>::namespaced(client.clone(), &ns).create(&post, &app),
    )
    .await
    .expect("app created");
    (client, ns)
}
