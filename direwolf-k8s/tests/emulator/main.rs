//! The API-server emulator driven through the real `kube::Client`, `kube::Api` and
//! `kube::runtime`. Each test cites what the Kubernetes documentation says the behaviour is.
//! This file holds the shared fixtures; the tests are grouped in the modules below.
#![cfg(feature = "emulator")]

mod harness;
mod lifecycle;
mod objects;
mod watches;
mod writes;

use std::future::Future;
use std::time::Duration;

use direwolf_k8s::emulator::{ApiServerEmulator, EmulatorConfig, FaultRule};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::Status;
use kube::runtime::{WatchStreamExt, conditions, reflector, wait::await_condition, watcher};
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test with `what` if the emulator does not answer within 10 s (a
/// timeout means the emulator hung or never produced the awaited event).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for: {what}"))
}

async fn start() -> ApiServerEmulator {
    within("emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts")
}

/// The status an `Api` call failed with.
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, Default, PartialEq)]
#[kube(
    group = "test.direwolf.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
#[serde(rename_all = "camelCase")]
struct WidgetSpec {
    title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct WidgetStatus {
    #[serde(default)]
    ready: bool,
}

/// The Widget CRD with a hand-written structural schema exercising validation and defaults.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.direwolf.io
spec:
  group: test.direwolf.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [title]
            x-kubernetes-validations:
            - {rule: "self.title != 'forbidden'", message: "title must not be forbidden"}
            - {rule: "!has(oldSelf.size) || has(self.size)", message: "size cannot be unset once set"}
            properties:
              title: {type: string, minLength: 1, maxLength: 9}
              size: {type: integer, minimum: 1, maximum: 10}
              level: {type: string, enum: [LOW, HIGH], default: LOW}
              tags: {type: array, maxItems: 2, items: {type: string, pattern: '^[a-z]+$'}}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

fn widget(name: &str, title: &str) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            title: title.into(),
            ..WidgetSpec::default()
        },
    )
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    if !labels.is_empty() {
        c.metadata.labels = Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
    }
    c.data = Some([("k".to_string(), "v".to_string())].into());
    c
}

async fn with_widgets() -> (ApiServerEmulator, Api<Widget>) {
    let emu = start().await;
    emu.apply_yaml(WIDGET_CRD).expect("CRD seeds");
    let api = Api::default_namespaced(emu.client());
    (emu, api)
}
