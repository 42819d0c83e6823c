//! The direwolf CRDs on the real control plane (`scripts/kube-testenv`, issue 11): every example
//! custom resource is accepted and each broken one refused, OpenAPI validation and CEL rules
//! under the real cost budget, and the emulator answers each request as the real server does
//! (where they differ, the real server is right and the emulator is fixed).
#![cfg(feature = "emulator")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use direwolf_k8s::crd;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::cases::{self, Op};
use support::testenv::{self, within};

/// What the API server answered to a case.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused {
        code: u16,
        reason: String,
        /// The fields of `details.causes`.
        fields: BTreeSet<String>,
        /// Not compared: the wording of the two servers may differ.
        message: Message,
    },
}

/// A message that compares equal to any other.
#[derive(Debug, Eq)]
struct Message(String);

impl PartialEq for Message {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn api_for(client: &Client, namespace: &str, object: &Value) -> Api<DynamicObject> {
    let kind = object["kind"].as_str().expect("a kind");
    let gvk = GroupVersionKind::gvk(crd::GROUP, crd::VERSION, kind);
    let plural = format!("{}s", kind.to_lowercase());
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

fn outcome<T>(result: Result<T, kube::Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(kube::Error::Api(status)) => Outcome::Refused {
            code: status.code,
            reason: status.reason.clone(),
            fields: status
                .details
                .iter()
                .flat_map(|d| d.causes.iter().map(|c| c.field.clone()))
                .collect(),
            message: Message(status.message.clone()),
        },
        Err(other) => panic!("not an API answer: {other}"),
    }
}

/// Sends the case's requests; the answer to the last one. Deletes what it created.
async fn submit(client: &Client, namespace: &str, op: &Op) -> Outcome {
    let (first, then) = match op {
        Op::Create(object) => (object, None),
        Op::Update { old, new } => (old, Some(new)),
        Op::Status { object, status } => (object, Some(status)),
    };
    let api = api_for(client, namespace, first);
    let object: DynamicObject = serde_json::from_value(first.clone()).expect("a resource");
    let created = within("create", api.create(&PostParams::default(), &object)).await;
    let name = object.metadata.name.clone().expect("a name");
    let answer = match (op, then, created) {
        (_, _, Err(e)) => return outcome::<()>(Err(e)),
        (_, None, Ok(_)) => Outcome::Accepted,
        (Op::Update { .. }, Some(new), Ok(created)) => {
            let mut new: DynamicObject = serde_json::from_value(new.clone()).expect("a resource");
            new.metadata.resource_version = created.metadata.resource_version;
            outcome(within("replace", api.replace(&name, &PostParams::default(), &new)).await)
        }
        (_, Some(status), Ok(_)) => {
            let patch = Patch::Merge(json!({ "status": status }));
            outcome(
                within(
                    "patch status",
                    api.patch_status(&name, &PatchParams::default(), &patch),
                )
                .await,
            )
        }
    };
    within("delete", api.delete(&name, &DeleteParams::default()))
        .await
        .expect("the created object is deleted");
    answer
}

/// What the real server must answer, or why it did not.
fn expected(case: &cases::Case, answer: &Outcome) -> Result<(), String> {
    match (case.refused_naming, answer) {
        (None, Outcome::Accepted) => Ok(()),
        (
            Some(field),
            Outcome::Refused {
                code: 422,
                reason,
                message,
                ..
            },
        ) if reason == "Invalid" && message.0.contains(field) => Ok(()),
        (want, got) => Err(format!(
            "{}: expected {want:?} (None: accepted), got {got:?}",
            case.name
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_are_accepted_and_broken_resources_refused_as_by_the_emulator() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    cp.install_crds(&crd::crds_yaml().expect("CRDs render")).await;
    let (real, namespace) = cp.namespace("crs").await;
    let emulator = support::emulator(Duration::from_secs(20), &[]).await;
    let (mut wrong, mut disagreements) = (Vec::new(), Vec::new());
    for case in cases::all() {
        let on_real = submit(&real, &namespace, &case.op).await;
        let on_emulator = submit(&emulator.client(), "default", &case.op).await;
        if let Err(why) = expected(&case, &on_real) {
            wrong.push(why);
        }
        if on_real != on_emulator {
            disagreements.push(format!(
                "{}:\n  real:     {on_real:?}\n  emulator: {on_emulator:?}",
                case.name
            ));
        }
    }
    emulator.shutdown().await;
    assert!(
        wrong.is_empty() && disagreements.is_empty(),
        "the real server answered otherwise:\n{}\nthe emulator disagrees with the real server:\n{}",
        wrong.join("\n"),
        disagreements.join("\n")
    );
}
