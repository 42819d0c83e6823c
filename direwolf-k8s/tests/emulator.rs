//! The API-server emulator driven through the real `kube::Client`, `kube::Api` and
//! `kube::runtime`. Each test cites what the Kubernetes documentation says the behaviour is.
#![cfg(feature = "emulator")]

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
            properties:
              title: {type: string, minLength: 1, maxLength: 8}
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

// "Extend the Kubernetes API with CustomResourceDefinitions": when a CRD is created, the API
// server "creates a new namespaced RESTful API endpoint" /apis/<group>/<version>/namespaces/*/
// <plural>, and the CRD reports the Established condition once it is served.
#[tokio::test]
async fn creating_a_crd_serves_its_resource_with_discovery() {
    let emu = start().await;
    let client = emu.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).expect("valid CRD YAML");
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let before = api_error(within("list before CRD", widgets.list(&ListParams::default())).await);
    assert_eq!(before.code, 404, "no CRD, no resource");

    within("create CRD", crds.create(&PostParams::default(), &crd))
        .await
        .expect("CRD created");
    let established = await_condition(
        crds.clone(),
        "widgets.test.direwolf.io",
        conditions::is_crd_established(),
    );
    within("CRD established", established)
        .await
        .expect("condition watch works");

    let created = within(
        "create widget",
        widgets.create(&PostParams::default(), &widget("w1", "hello")),
    )
    .await
    .expect("widget created");
    assert_eq!(
        created.spec.level.as_deref(),
        Some("LOW"),
        "schema default applied on write"
    );
    let got = within("get widget", widgets.get("w1"))
        .await
        .expect("widget readable");
    assert_eq!(got.spec.title, "hello");

    // Discovery (legacy documents) lists the group, version, plural, short names and status.
    let discovery = within("discovery", kube::Discovery::new(client.clone()).run())
        .await
        .expect("discovery runs");
    let group = discovery.get("test.direwolf.io").expect("group discovered");
    let (ar, caps) = group
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.kind == "Widget")
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status")
    );
    assert!(discovery.get("apps").is_some(), "built-in groups are discovered");
    let info = within("version", client.apiserver_version())
        .await
        .expect("/version served");
    assert_eq!(info.major, "1");

    // Deleting the CRD deletes its objects and stops serving the resource.
    within(
        "delete CRD",
        crds.delete("widgets.test.direwolf.io", &DeleteParams::default()),
    )
    .await
    .expect("CRD deleted");
    let after = api_error(within("get after CRD deletion", widgets.get("w1")).await);
    assert_eq!(after.code, 404);
    emu.shutdown().await;
}

// API concepts, "Resource versions" and metadata: the server sets uid, creationTimestamp,
// resourceVersion and generation on create; generateName gets a random suffix; creating an
// existing name answers 409 AlreadyExists; a missing object answers 404 NotFound (api
// conventions, "Response Status Kind").
#[tokio::test]
async fn create_get_list_delete_core_objects() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let created = within("create", cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .expect("created");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let rv1: u64 = meta
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("numeric rv");

    let mut generated = ConfigMap::default();
    generated.metadata.generate_name = Some("gen-".into());
    let g = within(
        "create generateName",
        cms.create(&PostParams::default(), &generated),
    )
    .await
    .expect("generateName works");
    let gname = g.name_any();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");
    let rv2: u64 = g
        .resource_version()
        .and_then(|r| r.parse().ok())
        .expect("numeric rv");
    assert!(rv2 > rv1, "resourceVersion increases globally");

    let dup = api_error(
        within(
            "create duplicate",
            cms.create(&PostParams::default(), &cm("a", &[])),
        )
        .await,
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");

    let missing = api_error(within("get missing", cms.get("nope")).await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    assert!(
        within("get_opt", cms.get_opt("nope"))
            .await
            .expect("404 maps to None")
            .is_none()
    );

    let list = within("list", cms.list(&ListParams::default()))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 2);
    assert!(list.metadata.resource_version.is_some());

    // Other namespaces are separate; listing across namespaces sees all.
    let other: Api<ConfigMap> = Api::namespaced(emu.client(), "other");
    within(
        "create other ns",
        other.create(&PostParams::default(), &cm("a", &[])),
    )
    .await
    .expect("same name, other ns");
    let all: Api<ConfigMap> = Api::all(emu.client());
    assert_eq!(
        within("list all", all.list(&ListParams::default()))
            .await
            .expect("list")
            .items
            .len(),
        3
    );

    let gone = within("delete", cms.delete("a", &DeleteParams::default()))
        .await
        .expect("deleted");
    assert!(
        gone.is_right(),
        "no finalizers: deleted at once, answered with a Status"
    );
    assert_eq!(api_error(within("get deleted", cms.get("a")).await).code, 404);
    let again = api_error(within("delete twice", cms.delete("a", &DeleteParams::default())).await);
    assert_eq!(again.code, 404);

    // Invalid names are rejected with 422 Invalid (RFC 1123 subdomain).
    let bad = api_error(
        within(
            "bad name",
            cms.create(&PostParams::default(), &cm("Bad_Name", &[])),
        )
        .await,
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    assert!(
        bad.message.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        bad.message
    );
    emu.shutdown().await;
}

// "Labels and Selectors": equality-based (=, ==, !=) and set-based (in, notin, exists, !exists)
// requirements, comma = AND; "Field Selectors": metadata.name and metadata.namespace are
// supported for all resource types, unsupported fields are an error. API concepts, "Retrieving
// large results sets in chunks": limit + continue.
#[tokio::test]
async fn list_with_label_and_field_selectors_and_pages() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    for (name, labels) in [
        ("web-1", vec![("app", "web"), ("tier", "front")]),
        ("web-2", vec![("app", "web")]),
        ("db", vec![("app", "db"), ("tier", "back")]),
        ("plain", vec![]),
    ] {
        within("seed", cms.create(&PostParams::default(), &cm(name, &labels)))
            .await
            .expect("seeded");
    }
    let names = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            let l = within(sel, cms.list(&ListParams::default().labels(sel)))
                .await
                .expect(sel);
            l.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["web-1", "web-2"]);
    assert_eq!(names("app==db").await, ["db"]);
    assert_eq!(names("app!=web").await, ["db", "plain"]);
    assert_eq!(names("app in (web,db)").await, ["db", "web-1", "web-2"]);
    assert_eq!(names("app notin (web)").await, ["db", "plain"]);
    assert_eq!(names("tier").await, ["db", "web-1"]);
    assert_eq!(names("!tier").await, ["plain", "web-2"]);
    assert_eq!(names("app=web,tier=front").await, ["web-1"]);

    let by_name = within(
        "field",
        cms.list(&ListParams::default().fields("metadata.name=db")),
    )
    .await
    .expect("field selector");
    assert_eq!(by_name.items.len(), 1);
    let bad = api_error(within("bad field", cms.list(&ListParams::default().fields("data.k=v"))).await);
    assert_eq!(bad.code, 400);
    let bad = api_error(within("bad label", cms.list(&ListParams::default().labels("app in web"))).await);
    assert_eq!(bad.code, 400);

    let page1 = within("page 1", cms.list(&ListParams::default().limit(3)))
        .await
        .expect("page");
    assert_eq!(page1.items.len(), 3);
    let token = page1.metadata.continue_.clone().expect("more pages");
    let page2 = within(
        "page 2",
        cms.list(&ListParams::default().limit(3).continue_token(&token)),
    )
    .await
    .expect("page");
    assert_eq!(page2.items.len(), 1);
    assert!(page2.metadata.continue_.as_deref().is_none_or(str::is_empty));
    emu.shutdown().await;
}

// API concepts, "Efficient detection of changes": a watch from a resourceVersion streams
// ADDED/MODIFIED/DELETED events after it, as JSON lines; with a label selector, objects that
// stop matching arrive as DELETED and start matching as ADDED; allowWatchBookmarks adds
// BOOKMARK events carrying only a resourceVersion; timeoutSeconds ends the stream.
#[tokio::test]
async fn raw_watch_events_bookmarks_selector_transitions_and_timeout() {
    let emu = within(
        "start",
        ApiServerEmulator::start_with(EmulatorConfig {
            bookmark_interval: Duration::from_millis(200),
            ..EmulatorConfig::default()
        }),
    )
    .await
    .expect("starts");
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within(
        "seed",
        cms.create(&PostParams::default(), &cm("before", &[("app", "x")])),
    )
    .await
    .expect("seeded");
    let rv = within("list", cms.list(&ListParams::default()))
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");

    let wp = WatchParams::default().labels("app=x").timeout(2);
    let stream = within("watch", cms.watch(&wp, &rv)).await.expect("watch starts");
    let mut stream = stream.boxed();

    within(
        "create",
        cms.create(&PostParams::default(), &cm("w", &[("app", "x")])),
    )
    .await
    .expect("create");
    let patch = json!({"data": {"k": "changed"}});
    within(
        "patch",
        cms.patch("w", &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .expect("patch");
    let unlabel = json!({"metadata": {"labels": {"app": "y"}}});
    within(
        "unlabel",
        cms.patch("w", &PatchParams::default(), &Patch::Merge(&unlabel)),
    )
    .await
    .expect("unlabel");
    let relabel = json!({"metadata": {"labels": {"app": "x"}}});
    within(
        "relabel",
        cms.patch("w", &PatchParams::default(), &Patch::Merge(&relabel)),
    )
    .await
    .expect("relabel");
    within(
        "ignored",
        cms.create(&PostParams::default(), &cm("other", &[("app", "z")])),
    )
    .await
    .expect("create");
    within("delete", cms.delete("w", &DeleteParams::default()))
        .await
        .expect("delete");

    let mut seen = Vec::new();
    let mut bookmarks = 0;
    loop {
        match within("watch event", stream.next()).await {
            Some(Ok(WatchEvent::Added(o))) => seen.push(format!("ADDED {}", o.name_any())),
            Some(Ok(WatchEvent::Modified(o))) => seen.push(format!("MODIFIED {}", o.name_any())),
            Some(Ok(WatchEvent::Deleted(o))) => seen.push(format!("DELETED {}", o.name_any())),
            Some(Ok(WatchEvent::Bookmark(b))) => {
                assert!(b.metadata.resource_version.parse::<u64>().is_ok());
                bookmarks += 1;
            }
            Some(Ok(WatchEvent::Error(e))) => panic!("unexpected watch error {e:?}"),
            Some(Err(e)) => panic!("stream error {e}"),
            None => break, // timeoutSeconds=2 ended the stream
        }
    }
    assert_eq!(
        seen,
        ["ADDED w", "MODIFIED w", "DELETED w", "ADDED w", "DELETED w"]
    );
    assert!(
        bookmarks >= 1,
        "bookmarks were allowed and the interval is 200 ms"
    );
    emu.shutdown().await;
}

// kube-runtime's watcher does list-then-watch (API concepts: "list ... then watch from the
// returned resourceVersion"); the reflector store must mirror the server's state.
#[tokio::test]
async fn watcher_and_reflector_mirror_the_server() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within("seed", cms.create(&PostParams::default(), &cm("first", &[])))
        .await
        .expect("seeded");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            // Errors are retried by the watcher itself; none are expected here.
            item.expect("watcher stream without errors");
        }
    });
    within("store ready", reader.wait_until_ready())
        .await
        .expect("writer alive");
    assert_eq!(reader.len(), 1);
    within("create", cms.create(&PostParams::default(), &cm("second", &[])))
        .await
        .expect("created");
    within("delete", cms.delete("first", &DeleteParams::default()))
        .await
        .expect("deleted");
    within("store converges", async {
        loop {
            let names: Vec<String> = reader.state().iter().map(|o| o.name_any()).collect();
            if names == ["second"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    task.abort();
    emu.shutdown().await;
}

// API concepts, "Streaming lists": with sendInitialEvents=true the watch starts with synthetic
// ADDED events for the current state, then a BOOKMARK annotated
// "k8s.io/initial-events-end: true".
#[tokio::test]
async fn watcher_streaming_list_mode() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within("seed", cms.create(&PostParams::default(), &cm("one", &[])))
        .await
        .expect("seeded");
    let mut stream = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut init_objects = Vec::new();
    loop {
        match within("streaming list event", stream.try_next())
            .await
            .expect("no error")
        {
            Some(watcher::Event::Init) => {}
            Some(watcher::Event::InitApply(o)) => init_objects.push(o.name_any()),
            Some(watcher::Event::InitDone) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(init_objects, ["one"]);
    within("create", cms.create(&PostParams::default(), &cm("two", &[])))
        .await
        .expect("created");
    match within("live event", stream.try_next()).await.expect("no error") {
        Some(watcher::Event::Apply(o)) => assert_eq!(o.name_any(), "two"),
        other => panic!("unexpected {other:?}"),
    }
    emu.shutdown().await;
}

// API concepts, "410 Gone responses": a watch from a resourceVersion older than the server
// keeps answers 410 Gone (as an ERROR event on the watch stream), and clients must re-list.
#[tokio::test]
async fn watch_from_compacted_resource_version_is_gone_and_watcher_relists() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within("seed", cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .expect("seeded");
    let old_rv = within("list", cms.list(&ListParams::default()))
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    within("create", cms.create(&PostParams::default(), &cm("b", &[])))
        .await
        .expect("created");
    emu.compact();
    let mut stream = within("watch", cms.watch(&WatchParams::default(), &old_rv))
        .await
        .expect("200 stream")
        .boxed();
    match within("410 event", stream.next()).await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version"), "{}", e.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // The history window is bounded: with room for 2 changes, older resourceVersions expire.
    let small = within(
        "start",
        ApiServerEmulator::start_with(EmulatorConfig {
            history_limit: 2,
            ..EmulatorConfig::default()
        }),
    )
    .await
    .expect("starts");
    let cms2: Api<ConfigMap> = Api::default_namespaced(small.client());
    let rv0 = within("list", cms2.list(&ListParams::default()))
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    for n in ["x", "y", "z"] {
        within("create", cms2.create(&PostParams::default(), &cm(n, &[])))
            .await
            .expect("created");
    }
    let mut s2 = within("watch", cms2.watch(&WatchParams::default(), &rv0))
        .await
        .expect("stream")
        .boxed();
    assert!(matches!(within("410", s2.next()).await, Some(Ok(WatchEvent::Error(e))) if e.code == 410));

    // kube's watcher recovers from the 410 by re-listing (watcher docs: "HTTP GONE, means we
    // have desynced and need to start over and re-list").
    let mut w = watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut init = 0;
    loop {
        match within("watcher init", w.try_next()).await.expect("no error") {
            Some(watcher::Event::InitApply(_)) => init += 1,
            Some(watcher::Event::InitDone) => break,
            _ => {}
        }
    }
    assert_eq!(init, 2);
    emu.compact();
    within("create", cms.create(&PostParams::default(), &cm("c", &[])))
        .await
        .expect("created");
    match within("event after compaction", w.try_next())
        .await
        .expect("no error")
    {
        Some(watcher::Event::Apply(o)) => assert_eq!(o.name_any(), "c"),
        other => panic!("unexpected {other:?}"),
    }
    small.shutdown().await;
    emu.shutdown().await;
}

#[allow(dead_code)]
fn _types_in_use(_: Pod, _: Secret, _: Deployment, _: FaultRule) {
    let _ = Widget::api_version(&());
}
