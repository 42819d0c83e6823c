//! The wolf-agent on the real control plane, running with the token of its own ServiceAccount
//! whose Role grants only what the contract gives it (`stream.rs`): get/list/watch of its
//! Session, get/patch of its `sessions/status`, get of its keys Secret. Registration, a phase
//! change and the exit on deletion all pass through RBAC, the real server-side apply of the
//! status subresource and the CRD's validation.
#![cfg(feature = "agent")]

mod support;

use std::time::Duration;

use direwolf_k8s::agent::{Agent, AgentConfig, Exit};
use direwolf_k8s::crd::{self, Session, SessionPhase, field_managers};
use direwolf_k8s::stream;
use direwolf_wolf_client::WolfVersion;
use direwolf_wolf_client::events::names;
use direwolf_wolf_client::fake::FakeWolf;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use support::testenv;

const NAME: &str = "alice-test-pattern-x7k2q";

async fn create<K>(client: &Client, ns: &str, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("an object");
    testenv::within(
        "create",
        Api::<K>::namespaced(client.clone(), ns).create(&PostParams::default(), &object),
    )
    .await
    .unwrap_or_else(|e| panic!("create {}: {e}", K::kind(&())));
}

/// The agent's account as the contract describes it (the operator makes it for each Session).
async fn agent_account(client: &Client, ns: &str) {
    let account = stream::agent_account_name(NAME);
    create::<ServiceAccount>(client, ns, json!({"metadata": {"name": account}})).await;
    create::<Role>(
        client,
        ns,
        json!({"metadata": {"name": account}, "rules": [
            {"apiGroups": [crd::GROUP], "resources": ["sessions"], "resourceNames": [NAME], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [crd::GROUP], "resources": ["sessions/status"], "resourceNames": [NAME], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [stream::keys_secret_name(NAME)], "verbs": ["get"]},
        ]}),
    )
    .await;
    create::<RoleBinding>(
        client,
        ns,
        json!({"metadata": {"name": account},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]}),
    )
    .await;
}

/// The example Session, its ports (the operator's) and its keys Secret (the proxy's).
async fn session(client: &Client, ns: &str) {
    let yaml = std::fs::read_to_string(format!("{}/../examples/session.yaml", env!("CARGO_MANIFEST_DIR")))
        .expect("example");
    let value: serde_json::Value = serde_saphyr::from_str(&yaml).expect("yaml");
    create::<Session>(client, ns, value).await;
    let ports = json!({
        "apiVersion": format!("{}/{}", crd::GROUP, crd::VERSION), "kind": "Session",
        "status": {"phase": "Initializing", "ports": {"rtsp": 40010, "control": 40011, "videoRTP": 40012, "audioRTP": 40013}},
    });
    let params = PatchParams::apply(field_managers::OPERATOR_SESSION_STATUS).force();
    testenv::within(
        "ports",
        Api::<Session>::namespaced(client.clone(), ns).patch_status(NAME, &params, &Patch::Apply(&ports)),
    )
    .await
    .expect("ports written");
    create::<Secret>(
        client,
        ns,
        json!({"metadata": {"name": stream::keys_secret_name(NAME)},
               "stringData": {stream::KEYS_AES_KEY: "773448F67992470C5C62848D361E1025", stream::KEYS_AES_IV: "1311662065"}}),
    )
    .await;
}

async fn phase(api: &Api<Session>, want: SessionPhase) {
    testenv::within(&format!("phase {want:?}"), async {
        loop {
            let s = api.get(NAME).await.expect("get");
            if s.status.and_then(|st| st.phase) == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_works_with_exactly_its_contract_rights() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    cp.install_crds(&crd::crds_yaml().expect("CRDs")).await;
    let (admin, ns) = cp.namespace("agent").await;
    agent_account(&admin, &ns).await;
    session(&admin, &ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("agent-kubeconfig");
    cp.service_account_kubeconfig(&ns, &stream::agent_account_name(NAME), &kubeconfig);
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let agent_client = Client::try_from(config).expect("client");

    let wolf = FakeWolf::builder()
        .version(WolfVersion::V6)
        .unix(dir.path().join("wolf.sock"))
        .start()
        .await
        .expect("fake Wolf");
    wolf.add_app(FakeWolf::sample_app(1u32, "Desktop"));
    let mut config = AgentConfig::new(
        NAME,
        &ns,
        "10.1.2.3".parse().expect("IP"),
        dir.path().join("wolf.sock"),
    );
    config.health_addr = "127.0.0.1:0".parse().expect("address");
    config.udev_dir = None;
    let agent = Agent::new(agent_client, config)
        .start()
        .await
        .expect("agent starts");

    let api: Api<Session> = Api::namespaced(admin.clone(), &ns);
    phase(&api, SessionPhase::WaitForPing).await;
    let status = api.get(NAME).await.expect("get").status.expect("status");
    assert_eq!(status.stream_url.as_deref(), Some("rtsp://10.1.2.3:40010"));
    assert_eq!(
        status.wolf_session_id,
        Some(wolf.sessions()[0].session_id().to_string())
    );
    assert!(status.ports.is_some(), "the operator's ports stay");
    testenv::within(
        "agent subscribes",
        wolf.wait_for_subscribers(1, Duration::from_secs(30)),
    )
    .await
    .expect("subscribed");
    wolf.inject_event(
        names::RTP_VIDEO_PING,
        &json!({"client_ip": "192.0.2.10", "client_port": 5000}),
    );
    phase(&api, SessionPhase::Streaming).await;

    testenv::within("delete", api.delete(NAME, &DeleteParams::default()))
        .await
        .expect("deleted");
    let exit = testenv::within("agent exits", agent.wait())
        .await
        .expect("clean exit");
    assert_eq!(exit, Exit::SessionDeleted);
    assert!(wolf.sessions().is_empty(), "Wolf's session stopped");
}
