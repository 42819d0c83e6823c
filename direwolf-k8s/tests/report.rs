//! The status reporter against the API-server emulator: a Pairing pointing at a missing User and
//! Apps sharing an id are reported on their status, and the reports clear once fixed.
#![cfg(feature = "emulator")]

use std::time::{Duration, Instant};

use direwolf_k8s::crd::{self, App, Pairing, conditions, find_condition, reasons};
use direwolf_k8s::emulator::ApiServerEmulator;
use kube::Api;
use kube::api::DeleteParams;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

const FIXTURES: &str = r#"
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: User
metadata: {name: alice}
spec: {}
---
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: Pairing
metadata: {name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}
spec:
  clientCertPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
  userReference: {name: alice}
---
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: Pairing
metadata: {name: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}
spec:
  clientCertPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
  userReference: {name: ghost}
---
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: App
metadata: {name: steam}
spec: {title: Steam, id: 2}
---
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: App
metadata: {name: steam-copy}
spec: {title: Steam again, id: 2}
---
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: App
metadata: {name: desktop}
spec: {title: Desktop, id: 1}
"#;

const GHOST: &str = r#"
apiVersion: direwolf.games-on-whales.github.io/v1alpha1
kind: User
metadata: {name: ghost}
spec: {}
"#;

/// Polls until `name`'s condition `type_` has `status` (and `reason`), or fails after 20 s.
async fn condition_becomes<K>(api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + HasReport,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let object = api.get(name).await.expect("the object exists");
        if let Some(c) = object.report().and_then(|s| find_condition(&s.conditions, type_))
            && c.status == status
            && c.reason == reason
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: condition {type_} did not become {status}/{reason} within {WAIT:?}: {:?}",
            object.report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

trait HasReport {
    fn report(&self) -> Option<&crd::ReportStatus>;
}

impl HasReport for Pairing {
    fn report(&self) -> Option<&crd::ReportStatus> {
        self.status.as_ref()
    }
}

impl HasReport for App {
    fn report(&self) -> Option<&crd::ReportStatus> {
        self.status.as_ref()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edited_problems_are_reported_and_cleared() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("direwolf_k8s::report=debug")
        .try_init();
    let emulator = tokio::time::timeout(WAIT, ApiServerEmulator::start())
        .await
        .expect("emulator starts in time")
        .expect("emulator starts");
    emulator
        .apply_yaml(&crd::crds_yaml().expect("CRDs render"))
        .expect("CRDs install");
    emulator.apply_yaml(FIXTURES).expect("fixtures apply");
    let reporter = tokio::spawn(direwolf_k8s::report::run(direwolf_k8s::watch::Watches::new(
        emulator.client(),
        NS,
    )));

    let pairings: Api<Pairing> = Api::namespaced(emulator.client(), NS);
    let apps: Api<App> = Api::namespaced(emulator.client(), NS);
    let (good, orphan) = ("a".repeat(64), "b".repeat(64));
    condition_becomes(&pairings, &good, conditions::USER_FOUND, "True", reasons::SUCCESS).await;
    condition_becomes(
        &pairings,
        &orphan,
        conditions::USER_FOUND,
        "False",
        reasons::USER_NOT_FOUND,
    )
    .await;
    for name in ["steam", "steam-copy"] {
        condition_becomes(
            &apps,
            name,
            conditions::ID_UNIQUE,
            "False",
            reasons::DUPLICATE_APP_ID,
        )
        .await;
    }
    condition_becomes(&apps, "desktop", conditions::ID_UNIQUE, "True", reasons::SUCCESS).await;

    // Fixing the problems clears the reports.
    emulator.apply_yaml(GHOST).expect("the missing user appears");
    condition_becomes(
        &pairings,
        &orphan,
        conditions::USER_FOUND,
        "True",
        reasons::SUCCESS,
    )
    .await;
    apps.delete("steam-copy", &DeleteParams::default())
        .await
        .expect("delete the copy");
    condition_becomes(&apps, "steam", conditions::ID_UNIQUE, "True", reasons::SUCCESS).await;

    // The spec is untouched: the reporter writes status only.
    let pairing = pairings.get(&orphan).await.expect("the pairing exists");
    assert_eq!(pairing.spec.user_reference.name, "ghost");
    reporter.abort();
}
