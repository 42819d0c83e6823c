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

// API concepts, "Resource versions" and metadata: the server sets uid, creationTimestamp and
// resourceVersion on create (generation only for kinds with a spec, tested on Widgets);
// generateName gets a random suffix; creating an existing name answers 409 AlreadyExists; a
// missing object answers 404 NotFound (api conventions, "Response Status Kind").
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
    assert_eq!(
        meta.generation, None,
        "ConfigMaps have no generation (custom resources do, below)"
    );
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

// API concepts, "Resource versions" / api conventions "Concurrency Control and Consistency":
// an update carrying a stale metadata.resourceVersion fails with 409 Conflict; an update
// without one is unconditional for these resources; a no-op update does not change the
// resourceVersion.
#[tokio::test]
async fn replace_with_stale_resource_version_conflicts() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let v1 = within("create", cms.create(&PostParams::default(), &cm("c", &[])))
        .await
        .expect("created");
    let mut edit = v1.clone();
    edit.data = Some([("k".to_string(), "two".to_string())].into());
    let v2 = within("replace", cms.replace("c", &PostParams::default(), &edit))
        .await
        .expect("replaced");
    assert_ne!(v2.resource_version(), v1.resource_version());
    assert_eq!(v2.metadata.uid, v1.metadata.uid, "uid is immutable");

    let stale = api_error(within("stale replace", cms.replace("c", &PostParams::default(), &edit)).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let mut unconditional = edit.clone();
    unconditional.metadata.resource_version = None;
    unconditional.data = Some([("k".to_string(), "three".to_string())].into());
    let v3 = within(
        "unconditional",
        cms.replace("c", &PostParams::default(), &unconditional),
    )
    .await
    .expect("unconditional update");
    let v4 = within("no-op", cms.replace("c", &PostParams::default(), &v3))
        .await
        .expect("no-op update");
    assert_eq!(
        v4.resource_version(),
        v3.resource_version(),
        "no-op writes keep the resourceVersion"
    );

    // A merge patch carrying a stale resourceVersion is a precondition too.
    let p = json!({"metadata": {"resourceVersion": v1.resource_version()}, "data": {"k": "x"}});
    let e = api_error(
        within(
            "stale patch",
            cms.patch("c", &PatchParams::default(), &Patch::Merge(&p)),
        )
        .await,
    );
    assert_eq!(e.code, 409);
    // PUT of an object that does not exist: 404.
    let mut ghost = cm("ghost", &[]);
    ghost.metadata.resource_version = None;
    assert_eq!(
        api_error(
            within(
                "replace missing",
                cms.replace("ghost", &PostParams::default(), &ghost)
            )
            .await
        )
        .code,
        404
    );
    emu.shutdown().await;
}

// RFC 7386 JSON merge patch (null deletes a key), RFC 6902 JSON patch, and strategic merge
// patch for built-in kinds ("Update API Objects in Place Using kubectl patch"; here treated as
// a merge patch).
#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let mut c = cm("p", &[("a", "1")]);
    c.data = Some(
        [
            ("x".to_string(), "1".to_string()),
            ("y".to_string(), "2".to_string()),
        ]
        .into(),
    );
    within("create", cms.create(&PostParams::default(), &c))
        .await
        .expect("created");

    let merge = json!({"data": {"x": null, "z": "3"}});
    let m = within(
        "merge",
        cms.patch("p", &PatchParams::default(), &Patch::Merge(&merge)),
    )
    .await
    .expect("merge");
    let data = m.data.clone().expect("data");
    assert_eq!(data.get("x"), None);
    assert_eq!(data.get("z").map(String::as_str), Some("3"));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/y", "value": "20"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"}
    ]))
    .expect("valid JSON patch");
    let j = within(
        "json patch",
        cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(ops)),
    )
    .await
    .expect("json patch");
    assert_eq!(
        j.data.as_ref().expect("data").get("y").map(String::as_str),
        Some("20")
    );
    assert_eq!(j.labels().get("b").map(String::as_str), Some("2"));

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/y", "value": "nope"}])).expect("valid");
    let e = api_error(
        within(
            "failing test op",
            cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing)),
        )
        .await,
    );
    assert_eq!(e.code, 422);

    let strategic = json!({"metadata": {"labels": {"c": "3"}}});
    let s = within(
        "strategic",
        cms.patch("p", &PatchParams::default(), &Patch::Strategic(&strategic)),
    )
    .await
    .expect("strategic");
    assert_eq!(s.labels().len(), 3);
    emu.shutdown().await;
}

// CRD docs, "Status subresource": "PUT/POST/PATCH requests to the custom resource ignore
// changes to the status stanza"; "PUT requests to the /status subresource ... ignore changes to
// anything except the status stanza"; ".metadata.generation is incremented for all changes,
// except for changes to .metadata or .status".
#[tokio::test]
async fn status_subresource_and_generation() {
    let (emu, widgets) = with_widgets().await;
    let mut w = widget("s", "title");
    w.status = Some(WidgetStatus { ready: true });
    let created = within("create", widgets.create(&PostParams::default(), &w))
        .await
        .expect("created");
    assert_eq!(created.status, None, "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({"status": {"ready": true}, "spec": {"title": "ignored"}});
    let after_status = within(
        "patch status",
        widgets.patch_status("s", &PatchParams::default(), &Patch::Merge(&status)),
    )
    .await
    .expect("status patched");
    assert_eq!(after_status.status, Some(WidgetStatus { ready: true }));
    assert_eq!(after_status.spec.title, "title", "/status ignores spec changes");
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "status changes keep the generation"
    );

    let main = json!({"status": {"ready": false}, "metadata": {"labels": {"l": "v"}}});
    let after_main = within(
        "patch main",
        widgets.patch("s", &PatchParams::default(), &Patch::Merge(&main)),
    )
    .await
    .expect("main patched");
    assert_eq!(
        after_main.status,
        Some(WidgetStatus { ready: true }),
        "main writes ignore status"
    );
    assert_eq!(
        after_main.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );

    let spec = json!({"spec": {"title": "new"}});
    let after_spec = within(
        "patch spec",
        widgets.patch("s", &PatchParams::default(), &Patch::Merge(&spec)),
    )
    .await
    .expect("spec patched");
    assert_eq!(
        after_spec.metadata.generation,
        Some(2),
        "spec changes bump the generation"
    );

    let mut replaced = after_spec.clone();
    replaced.status = Some(WidgetStatus { ready: false });
    let r = within(
        "replace_status",
        widgets.replace_status("s", &PostParams::default(), &replaced),
    )
    .await
    .expect("status replaced");
    assert_eq!(r.status, Some(WidgetStatus { ready: false }));
    let got = within("get_status", widgets.get_status("s"))
        .await
        .expect("status readable");
    assert_eq!(got.status, Some(WidgetStatus { ready: false }));
    // ConfigMaps have no status subresource.
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within("create cm", cms.create(&PostParams::default(), &cm("c", &[])))
        .await
        .expect("created");
    assert_eq!(
        api_error(within("cm status", cms.get_status("c")).await).code,
        404
    );
    emu.shutdown().await;
}

// CRD docs, "Validation": objects are validated against the structural schema on create and
// update, failing with 422 and a message naming the field ("spec.title: Invalid value ...");
// "Defaulting": defaults are applied on write; "Field pruning": unknown fields are dropped.
#[tokio::test]
async fn schema_validation_defaults_and_pruning() {
    let (emu, widgets) = with_widgets().await;
    let empty_title = api_error(
        within(
            "create invalid",
            widgets.create(&PostParams::default(), &widget("a", "")),
        )
        .await,
    );
    assert_eq!((empty_title.code, empty_title.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        empty_title.message,
        "Widget.test.direwolf.io \"a\" is invalid: spec.title: Invalid value: \"\": spec.title in body should be at least 1 chars long"
    );
    let details = empty_title.details.as_ref().expect("details");
    assert_eq!(details.causes[0].field, "spec.title");

    let dynamic: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        emu.client(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "test.direwolf.io",
            "v1",
            "Widget",
        )),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.direwolf.io/v1", "kind": "Widget", "metadata": {"name": "b"},
        "spec": {"title": "ok", "size": 11, "level": "MID", "tags": ["UPPER"]}
    }))
    .expect("valid object");
    let e = api_error(
        within(
            "create several errors",
            dynamic.create(&PostParams::default(), &bad),
        )
        .await,
    );
    assert_eq!(e.code, 422);
    for expected in [
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        "spec.level: Unsupported value: \"MID\": supported values: \"LOW\", \"HIGH\"",
        "spec.tags[0]: Invalid value: \"UPPER\": spec.tags[0] in body should match '^[a-z]+$'",
    ] {
        assert!(
            e.message.contains(expected),
            "{expected} missing from {}",
            e.message
        );
    }
    let wrong_type: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.direwolf.io/v1", "kind": "Widget", "metadata": {"name": "c"},
        "spec": {"title": 5}
    }))
    .expect("valid object");
    let e = api_error(within("wrong type", dynamic.create(&PostParams::default(), &wrong_type)).await);
    assert!(
        e.message
            .contains("spec.title: Invalid value: \"integer\": spec.title in body must be of type string"),
        "{}",
        e.message
    );
    let missing: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.direwolf.io/v1", "kind": "Widget", "metadata": {"name": "d"}, "spec": {}
    }))
    .expect("valid object");
    let e = api_error(
        within(
            "missing required",
            dynamic.create(&PostParams::default(), &missing),
        )
        .await,
    );
    assert!(e.message.ends_with("spec.title: Required value"), "{}", e.message);

    let extra: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.direwolf.io/v1", "kind": "Widget", "metadata": {"name": "e"},
        "spec": {"title": "fine", "unknown": true}
    }))
    .expect("valid object");
    let stored = within(
        "create with unknown field",
        dynamic.create(&PostParams::default(), &extra),
    )
    .await
    .expect("unknown fields are pruned, not rejected");
    assert!(stored.data["spec"].get("unknown").is_none());
    assert_eq!(stored.data["spec"]["level"], "LOW");

    // CRD docs, "Validation rules": x-kubernetes-validations CEL rules are evaluated on
    // create and update, transition rules (oldSelf) only on update; a failing rule answers 422
    // with its message.
    let e = api_error(
        within(
            "CEL rule",
            widgets.create(&PostParams::default(), &widget("f", "forbidden")),
        )
        .await,
    );
    assert_eq!(
        e.message,
        "Widget.test.direwolf.io \"f\" is invalid: spec: Invalid value: \"object\": title must not be forbidden"
    );
    let mut sized = widget("g", "sized");
    sized.spec.size = Some(2);
    within("create sized", widgets.create(&PostParams::default(), &sized))
        .await
        .expect("valid");
    let unset = json!({"spec": {"size": null}});
    let e = api_error(
        within(
            "transition rule",
            widgets.patch("g", &PatchParams::default(), &Patch::Merge(&unset)),
        )
        .await,
    );
    assert!(
        e.message.ends_with("size cannot be unset once set"),
        "{}",
        e.message
    );

    // Updates are validated too.
    let p = json!({"spec": {"size": 0}});
    let e = api_error(
        within(
            "invalid patch",
            widgets.patch("e", &PatchParams::default(), &Patch::Merge(&p)),
        )
        .await,
    );
    assert!(
        e.message
            .contains("spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        "{}",
        e.message
    );
    emu.shutdown().await;
}

fn deployment(name: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "main", "image": image}]}}
        }
    })
}

// "Server-Side Apply": apply creates the object if missing; the server tracks field ownership
// in metadata.managedFields; applying a different value to a field owned by another manager
// fails with 409 Conflict unless forced, which transfers ownership; fields a manager stops
// applying are removed if nobody else owns them; associative lists (e.g. ownerReferences keyed
// by uid) merge entries from several managers.
#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_force() {
    let emu = start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(emu.client());
    let first = within(
        "apply create",
        deployments.patch(
            "d",
            &PatchParams::apply("alice"),
            &Patch::Apply(deployment("d", "img:1")),
        ),
    )
    .await
    .expect("apply creates");
    let managers: Vec<String> = first
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["alice"]);
    assert_eq!(first.managed_fields()[0].operation.as_deref(), Some("Apply"));

    let mut bob = deployment("d", "img:2");
    bob["metadata"]["labels"] = json!({"app": "d", "bob": "yes"});
    let conflict = api_error(
        within(
            "conflicting apply",
            deployments.patch("d", &PatchParams::apply("bob"), &Patch::Apply(&bob)),
        )
        .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict
            .message
            .starts_with("Apply failed with 1 conflict: conflict with \"alice\""),
        "{}",
        conflict.message
    );
    assert!(conflict.message.contains("image"), "{}", conflict.message);

    let forced = within(
        "forced apply",
        deployments.patch("d", &PatchParams::apply("bob").force(), &Patch::Apply(&bob)),
    )
    .await
    .expect("force takes ownership");
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].image.clone())
    };
    assert_eq!(image(&forced), Some(Some("img:2".to_string())));
    assert_eq!(forced.labels().get("bob").map(String::as_str), Some("yes"));

    // Applying the same values as another manager is not a conflict (shared ownership).
    let carol = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    within(
        "shared apply",
        deployments.patch("d", &PatchParams::apply("carol"), &Patch::Apply(&carol)),
    )
    .await
    .expect("same value: no conflict");

    // Bob stops applying his label: it is removed (he was its only owner).
    let bob2 = deployment("d", "img:2");
    let after = within(
        "apply without label",
        deployments.patch("d", &PatchParams::apply("bob"), &Patch::Apply(&bob2)),
    )
    .await
    .expect("apply");
    assert!(
        after.labels().get("bob").is_none(),
        "fields dropped from an applied config are removed"
    );

    // A non-apply update takes ownership of what it changes; a later apply of another value
    // by the previous owner conflicts.
    let edit = json!({"spec": {"replicas": 3}});
    within(
        "update",
        deployments.patch(
            "d",
            &PatchParams {
                field_manager: Some("scaler".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&edit),
        ),
    )
    .await
    .expect("merge patch");
    let e = api_error(
        within(
            "apply after update",
            deployments.patch("d", &PatchParams::apply("carol"), &Patch::Apply(&carol)),
        )
        .await,
    );
    assert!(
        e.message.contains("conflict with \"scaler\": .spec.replicas"),
        "{}",
        e.message
    );

    // Owner references from two managers merge by uid.
    let owners = |uid: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": uid, "uid": uid}]}})
    };
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let o1 = within("owner 1", cms.create(&PostParams::default(), &cm("o1", &[])))
        .await
        .expect("created");
    let o2 = within("owner 2", cms.create(&PostParams::default(), &cm("o2", &[])))
        .await
        .expect("created");
    let mut a1 = owners("x");
    a1["metadata"]["ownerReferences"][0]["uid"] = json!(o1.uid());
    let mut a2 = owners("y");
    a2["metadata"]["ownerReferences"][0]["uid"] = json!(o2.uid());
    within(
        "apply owner 1",
        deployments.patch("d", &PatchParams::apply("owners-1"), &Patch::Apply(&a1)),
    )
    .await
    .expect("apply");
    let both = within(
        "apply owner 2",
        deployments.patch("d", &PatchParams::apply("owners-2"), &Patch::Apply(&a2)),
    )
    .await
    .expect("apply");
    assert_eq!(both.owner_references().len(), 2);

    // Status is applied through the status subresource only.
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                        "status": {"readyReplicas": 1, "replicas": 1}});
    let st = within(
        "apply status",
        deployments.patch_status("d", &PatchParams::apply("ctl").force(), &Patch::Apply(&status)),
    )
    .await
    .expect("status apply");
    assert_eq!(st.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    assert!(
        st.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("ctl") && m.subresource.as_deref() == Some("status"))
    );
    emu.shutdown().await;
}

// "Finalizers": deleting an object with finalizers sets metadata.deletionTimestamp and keeps
// it; once the finalizers list is empty the object is deleted; no new finalizers may be added
// while it is being deleted.
#[tokio::test]
async fn finalizers_defer_deletion() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let mut c = cm("f", &[]);
    c.metadata.finalizers = Some(vec!["test.direwolf.io/hold".into()]);
    within("create", cms.create(&PostParams::default(), &c))
        .await
        .expect("created");
    let pending = within("delete", cms.delete("f", &DeleteParams::default()))
        .await
        .expect("delete accepted");
    let obj = pending
        .left()
        .expect("finalizers pending: the object is returned");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let still = within("get", cms.get("f")).await.expect("still there");
    assert!(still.metadata.deletion_timestamp.is_some());

    let add = json!({"metadata": {"finalizers": ["test.direwolf.io/hold", "another"]}});
    let e = api_error(
        within(
            "add finalizer",
            cms.patch("f", &PatchParams::default(), &Patch::Merge(&add)),
        )
        .await,
    );
    assert_eq!(e.code, 422);

    let clear = json!({"metadata": {"finalizers": null}});
    within(
        "clear finalizers",
        cms.patch("f", &PatchParams::default(), &Patch::Merge(&clear)),
    )
    .await
    .expect("patch accepted");
    assert!(
        within("get after", cms.get_opt("f"))
            .await
            .expect("get")
            .is_none(),
        "removed once finalizers are empty"
    );

    // kube's finalizer helper round trip on a live watch is covered by the controller test.
    emu.shutdown().await;
}

fn owned_by(name: &str, owner: &ConfigMap, block: bool) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    let mut r = owner.controller_owner_ref(&()).expect("owner has name and uid");
    r.block_owner_deletion = Some(block);
    r.controller = Some(false);
    s.metadata.owner_references = Some(vec![r]);
    s
}

// "Garbage Collection": with background cascading deletion (the default) the owner is deleted
// at once and the garbage collector deletes the dependents; with foreground deletion the owner
// gets a deletionTimestamp and the foregroundDeletion finalizer and is removed only after its
// dependents with blockOwnerDeletion=true are gone; with orphan, dependents lose the owner
// reference and stay. A dependent with several owners stays while one owner remains.
#[tokio::test]
async fn owner_reference_garbage_collection() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let exists = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            within("get dependent", secrets.get_opt(name))
                .await
                .expect("get")
                .is_some()
        }
    };

    let owner = within("owner", cms.create(&PostParams::default(), &cm("bg", &[])))
        .await
        .expect("created");
    within(
        "dependent",
        secrets.create(&PostParams::default(), &owned_by("bg-dep", &owner, false)),
    )
    .await
    .expect("created");
    within("delete owner", cms.delete("bg", &DeleteParams::background()))
        .await
        .expect("deleted");
    assert!(!exists("bg-dep").await, "background: dependent collected");

    let owner = within("owner", cms.create(&PostParams::default(), &cm("fg", &[])))
        .await
        .expect("created");
    let mut held = owned_by("fg-dep", &owner, true);
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    within("dependent", secrets.create(&PostParams::default(), &held))
        .await
        .expect("created");
    let pending = within("foreground delete", cms.delete("fg", &DeleteParams::foreground()))
        .await
        .expect("accepted");
    let o = pending.left().expect("foreground: owner waits");
    assert!(o.finalizers().iter().any(|f| f == "foregroundDeletion"));
    let dep = within("get dep", secrets.get("fg-dep"))
        .await
        .expect("dependent held by its finalizer");
    assert!(
        dep.metadata.deletion_timestamp.is_some(),
        "dependent is being deleted"
    );
    assert!(
        within("owner still there", cms.get_opt("fg"))
            .await
            .expect("get")
            .is_some()
    );
    let clear = json!({"metadata": {"finalizers": null}});
    within(
        "release dependent",
        secrets.patch("fg-dep", &PatchParams::default(), &Patch::Merge(&clear)),
    )
    .await
    .expect("patched");
    assert!(!exists("fg-dep").await);
    assert!(
        within("owner gone", cms.get_opt("fg"))
            .await
            .expect("get")
            .is_none(),
        "owner removed after its blocking dependent"
    );

    let owner = within("owner", cms.create(&PostParams::default(), &cm("or", &[])))
        .await
        .expect("created");
    within(
        "dependent",
        secrets.create(&PostParams::default(), &owned_by("or-dep", &owner, false)),
    )
    .await
    .expect("created");
    within("orphan delete", cms.delete("or", &DeleteParams::orphan()))
        .await
        .expect("deleted");
    let orphan = within("orphan", secrets.get("or-dep"))
        .await
        .expect("orphan kept");
    assert!(orphan.owner_references().is_empty(), "owner reference removed");

    let a = within("owner a", cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .expect("created");
    let b = within("owner b", cms.create(&PostParams::default(), &cm("b", &[])))
        .await
        .expect("created");
    let mut shared = owned_by("shared", &a, false);
    let mut rb = b.controller_owner_ref(&()).expect("owner ref");
    rb.controller = Some(false);
    shared
        .metadata
        .owner_references
        .as_mut()
        .expect("set above")
        .push(rb);
    within("dependent", secrets.create(&PostParams::default(), &shared))
        .await
        .expect("created");
    within("delete a", cms.delete("a", &DeleteParams::default()))
        .await
        .expect("deleted");
    let s = within("shared", secrets.get("shared"))
        .await
        .expect("kept while b exists");
    assert_eq!(s.owner_references().len(), 1, "dangling reference removed");
    within("delete b", cms.delete("b", &DeleteParams::default()))
        .await
        .expect("deleted");
    assert!(!exists("shared").await);
    emu.shutdown().await;
}

// API conventions, "HTTP Status codes": 429 TooManyRequests carries Retry-After and clients
// should retry (kube-client's default retry policy does); 500 InternalError surfaces as
// kube::Error::Api; the request log records every attempt.
#[tokio::test]
async fn injected_failures_and_request_log() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let path = "/api/v1/namespaces/default/configmaps";
    emu.inject(FaultRule::status(500).with_verb("create").with_path_prefix(path));
    let e = api_error(
        within(
            "create under 500",
            cms.create(&PostParams::default(), &cm("a", &[])),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));

    emu.inject(FaultRule::status(409).with_verb("get").times(1));
    let e = api_error(within("get under 409", cms.get("a")).await);
    assert_eq!(e.code, 409);
    emu.inject(FaultRule::status(410).with_verb("list"));
    assert_eq!(
        api_error(within("list under 410", cms.list(&ListParams::default())).await).code,
        410
    );

    emu.clear_requests();
    emu.inject(FaultRule::status(429).with_verb("create").times(1));
    let started = tokio::time::Instant::now();
    within(
        "create retried after 429",
        cms.create(&PostParams::default(), &cm("a", &[])),
    )
    .await
    .expect("kube retries 429 and succeeds");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 honoured"
    );
    let log = emu.requests();
    let statuses: Vec<(u16, bool)> = log.iter().map(|r| (r.status, r.injected)).collect();
    assert_eq!(statuses, [(429, true), (201, false)]);
    assert_eq!(log[1].verb, "create");
    assert_eq!(log[1].path, path);

    // An injected 410 on a watch makes kube's watcher start over with a fresh list.
    let mut w = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    emu.inject(FaultRule::status(410).with_verb("watch"));
    while inits < 2 {
        match within("watcher events around an injected 410", w.next()).await {
            Some(Ok(watcher::Event::Init)) => inits += 1,
            Some(Err(watcher::Error::WatchError(s))) => assert_eq!(s.code, 410),
            Some(_) => {}
            None => panic!("watcher streams never end"),
        }
    }
    drop(w);

    emu.inject(FaultRule::delay(Duration::from_millis(300)).with_verb("get"));
    let started = tokio::time::Instant::now();
    within("delayed get", cms.get("a"))
        .await
        .expect("served after the delay");
    assert!(started.elapsed() >= Duration::from_millis(300));

    emu.inject(FaultRule::refuse().with_verb("get"));
    match within("refused get", cms.get("a")).await {
        Err(kube::Error::Api(s)) => panic!("a dropped connection is not an API status: {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("a refused connection cannot succeed"),
    }
    within("next get", cms.get("a"))
        .await
        .expect("faults are consumed");
    emu.shutdown().await;
}

// "Garbage Collection" and "Finalizers" driven by a real kube::runtime::Controller: the
// controller owns Secrets created for ConfigMaps (server-side apply with an owner reference),
// reacts to their deletion through the owns() watch, and shuts down gracefully.
#[tokio::test]
async fn controller_reconciles_against_the_emulator() {
    use std::sync::Arc;

    use kube::runtime::controller::{Action, Controller};

    #[derive(Debug, thiserror::Error)]
    #[error("reconcile failed: {0}")]
    struct ReconcileError(#[from] kube::Error);

    async fn reconcile(obj: Arc<ConfigMap>, client: Arc<kube::Client>) -> Result<Action, ReconcileError> {
        let ns = obj.namespace().unwrap_or_else(|| "default".into());
        let secrets: Api<Secret> = Api::namespaced((*client).clone(), &ns);
        let owner = obj
            .controller_owner_ref(&())
            .expect("a listed object has name and uid");
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{}-secret", obj.name_any()), "ownerReferences": [owner]},
            "stringData": {"from": obj.name_any()},
        });
        secrets
            .patch(
                &format!("{}-secret", obj.name_any()),
                &PatchParams::apply("test-controller").force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(Action::await_change())
    }

    fn error_policy(_: Arc<ConfigMap>, _: &ReconcileError, _: Arc<kube::Client>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }

    let emu = start().await;
    let client = emu.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    for n in ["one", "two"] {
        within("seed", cms.create(&PostParams::default(), &cm(n, &[])))
            .await
            .expect("seeded");
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .owns(secrets.clone(), watcher::Config::default())
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| std::future::ready(()));
    let handle = tokio::spawn(controller);

    let wait_for = |names: &'static [&'static str]| {
        let secrets = secrets.clone();
        within("secrets reconciled", async move {
            loop {
                let mut got: Vec<String> = secrets
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.iter().map(ResourceExt::name_any).collect())
                    .unwrap_or_default();
                got.sort();
                if got == names {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_for(&["one-secret", "two-secret"]).await;
    // Deleting an owned Secret triggers a reconcile of its owner, which recreates it.
    within(
        "delete child",
        secrets.delete("one-secret", &DeleteParams::default()),
    )
    .await
    .expect("deleted");
    tokio::time::sleep(Duration::from_millis(50)).await;
    wait_for(&["one-secret", "two-secret"]).await;
    // Deleting the owner garbage-collects its Secret.
    within("delete owner", cms.delete("two", &DeleteParams::default()))
        .await
        .expect("deleted");
    wait_for(&["one-secret"]).await;

    stop_tx.send(()).expect("controller still running");
    within("controller shuts down", handle)
        .await
        .expect("controller task ends cleanly");
    emu.shutdown().await;
}

// Seeding from multi-document YAML, as tests seed from examples/*.yaml: CRDs first, then
// objects of their kinds; status is applied through the status subresource; a schema
// violation is reported like the API server's 422.
#[tokio::test]
async fn apply_yaml_seeds_objects() {
    let emu = start().await;
    let seed = format!(
        "{WIDGET_CRD}\n---\napiVersion: test.direwolf.io/v1\nkind: Widget\nmetadata:\n  name: seeded\n  namespace: games\nspec:\n  title: t\nstatus:\n  ready: true\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n"
    );
    let objs = emu.apply_yaml(&seed).expect("seed applies");
    assert_eq!(objs.len(), 3);
    let widgets: Api<Widget> = Api::namespaced(emu.client(), "games");
    let w = within("get seeded", widgets.get("seeded"))
        .await
        .expect("seeded widget");
    assert_eq!(w.status, Some(WidgetStatus { ready: true }));
    assert_eq!(w.spec.level.as_deref(), Some("LOW"));
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    assert!(within("get plain", cms.get("plain")).await.is_ok());
    // A `kind: List` contributes its items.
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: l1}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: l2}\n";
    assert_eq!(emu.apply_yaml(list).expect("list seeds").len(), 2);
    // Applying again is idempotent.
    emu.apply_yaml(&seed).expect("re-seed");
    let bad = "apiVersion: test.direwolf.io/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  title: ''\n";
    match emu.apply_yaml(bad) {
        Err(direwolf_k8s::emulator::EmulatorError::Rejected {
            code: 422, message, ..
        }) => {
            assert!(message.contains("spec.title"), "{message}");
        }
        other => panic!("expected a 422 rejection, got {other:?}"),
    }
    assert!(matches!(
        emu.apply_yaml("apiVersion: nope/v1\nkind: Thing\nmetadata:\n  name: x\n"),
        Err(direwolf_k8s::emulator::EmulatorError::UnknownKind { .. })
    ));
    emu.shutdown().await;
}

// API reference, "delete collection": DELETE on a collection deletes the objects matching the
// label selector.
#[tokio::test]
async fn delete_collection_with_selector() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        within("seed", cms.create(&PostParams::default(), &cm(n, &[("g", l)])))
            .await
            .expect("seeded");
    }
    within(
        "delete collection",
        cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("g=x")),
    )
    .await
    .expect("deleted");
    let left = within("list", cms.list(&ListParams::default()))
        .await
        .expect("list");
    assert_eq!(
        left.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        ["c"]
    );
    emu.shutdown().await;
}

// Core kinds the operator uses are all served at their REST paths, including events.k8s.io
// Events and coordination.k8s.io Leases (cluster-scoped CRDs are covered by the CRD test).
#[tokio::test]
async fn builtin_kinds_are_served() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
    use k8s_openapi::api::events::v1::Event;

    let emu = start().await;
    let c = emu.client();
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    within("pod", pods.create(&PostParams::default(), &pod))
        .await
        .expect("pod");
    let services: Api<Service> = Api::default_namespaced(c.clone());
    let mut svc = Service::default();
    svc.metadata.name = Some("s".into());
    within("svc", services.create(&PostParams::default(), &svc))
        .await
        .expect("service");
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(c.clone());
    let mut pvc = PersistentVolumeClaim::default();
    pvc.metadata.name = Some("v".into());
    within("pvc", pvcs.create(&PostParams::default(), &pvc))
        .await
        .expect("pvc");
    let events: Api<Event> = Api::default_namespaced(c.clone());
    let mut ev = Event::default();
    ev.metadata.name = Some("e".into());
    ev.event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    within("event", events.create(&PostParams::default(), &ev))
        .await
        .expect("event");
    let leases: Api<Lease> = Api::default_namespaced(c.clone());
    let mut lease = Lease::default();
    lease.metadata.name = Some("direwolf-controller".into());
    let created = within("lease", leases.create(&PostParams::default(), &lease))
        .await
        .expect("lease");
    let mut taken = created.clone();
    taken.spec.get_or_insert_default().holder_identity = Some("me".into());
    within(
        "lease update",
        leases.replace("direwolf-controller", &PostParams::default(), &taken),
    )
    .await
    .expect("renew");
    let stale = api_error(
        within(
            "lease stale",
            leases.replace("direwolf-controller", &PostParams::default(), &taken),
        )
        .await,
    );
    assert_eq!(
        stale.code, 409,
        "leader election relies on resourceVersion conflicts"
    );
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let mut s = Secret::default();
    s.metadata.name = Some("sec".into());
    within("secret", secrets.create(&PostParams::default(), &s))
        .await
        .expect("secret");
    let core_events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(c.clone());
    let mut ce = k8s_openapi::api::core::v1::Event::default();
    ce.metadata.name = Some("ce".into());
    within("core event", core_events.create(&PostParams::default(), &ce))
        .await
        .expect("core event");
    // Pods, PVCs, Namespaces and ServiceAccounts answer a delete with the deleted object,
    // other kinds with a Success Status (kubernetes/kubernetes#59501, #78343).
    let deleted = within("delete pod", pods.delete("p", &DeleteParams::default()))
        .await
        .expect("deleted");
    assert!(deleted.is_left(), "pod delete answers the object");
    let deleted = within("delete secret", secrets.delete("sec", &DeleteParams::default()))
        .await
        .expect("deleted");
    assert!(deleted.is_right(), "secret delete answers a Status");
    emu.shutdown().await;
}

// The project's own generated CRDs (crds/direwolf.yaml) and example objects (examples/*.yaml)
// seed into the emulator and read back through the API with their schema defaults applied:
// this is how reconciler tests seed state (STYLE.md section 8).
#[tokio::test]
async fn project_crds_and_examples_seed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let emu = start().await;
    let crds =
        std::fs::read_to_string(root.join("crds/direwolf.yaml")).expect("crds/direwolf.yaml is committed");
    let installed = emu.apply_yaml(&crds).expect("project CRDs install");
    assert!(!installed.is_empty());
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .expect("examples directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    let mut seeded = 0;
    for path in &examples {
        let text = std::fs::read_to_string(path).expect("readable example");
        let objs = emu
            .apply_yaml(&text)
            .unwrap_or_else(|e| panic!("{} seeds: {e}", path.display()));
        seeded += objs.len();
    }
    assert!(
        seeded >= examples.len(),
        "every example yields at least one object"
    );
    let discovery = within("discovery", kube::Discovery::new(emu.client()).run())
        .await
        .expect("discovery");
    let group = discovery
        .get("direwolf.games-on-whales.github.io")
        .expect("direwolf group served");
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar.kind)
        .collect();
    for kind in ["App", "Pairing", "Session", "User"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} served, got {kinds:?}");
    }
    emu.shutdown().await;
}

// CRD docs, "scope": a Cluster-scoped custom resource is served without a namespace segment;
// watches of namespaced resources across all namespaces see every namespace, a namespaced
// watch only its own. Server timestamps follow the emulator clock.
#[tokio::test]
async fn cluster_scoped_resources_namespaces_and_clock() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

    let emu = start().await;
    emu.apply_yaml(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.test.direwolf.io}
spec:
  group: test.direwolf.io
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    )
    .expect("cluster-scoped CRD");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("test.direwolf.io", "v1", "Gadget"));
    let gadgets: Api<DynamicObject> = Api::all_with(emu.client(), &ar);
    let g: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.direwolf.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "anything": {"goes": 1}
    }))
    .expect("valid");
    let created = within("create gadget", gadgets.create(&PostParams::default(), &g))
        .await
        .expect("created");
    assert!(
        created.metadata.namespace.is_none(),
        "cluster-scoped objects have no namespace"
    );
    assert_eq!(
        created.data["anything"]["goes"], 1,
        "preserve-unknown-fields keeps everything"
    );
    let log = emu.requests();
    assert_eq!(
        log.last().map(|r| r.path.as_str()),
        Some("/apis/test.direwolf.io/v1/gadgets")
    );
    let namespaced: Api<DynamicObject> = Api::namespaced_with(emu.client(), "default", &ar);
    assert_eq!(
        api_error(within("namespaced path", namespaced.get("g")).await).code,
        404,
        "a cluster-scoped resource is not served under /namespaces/"
    );

    // Namespace filtering of watches.
    let all: Api<ConfigMap> = Api::all(emu.client());
    let only_a: Api<ConfigMap> = Api::namespaced(emu.client(), "a");
    let mut all_events = within("watch all", all.watch(&WatchParams::default(), "0"))
        .await
        .expect("watch")
        .boxed();
    let mut a_events = within("watch a", only_a.watch(&WatchParams::default(), "0"))
        .await
        .expect("watch")
        .boxed();
    let in_b: Api<ConfigMap> = Api::namespaced(emu.client(), "b");
    within("create in b", in_b.create(&PostParams::default(), &cm("x", &[])))
        .await
        .expect("created");
    within(
        "create in a",
        only_a.create(&PostParams::default(), &cm("y", &[])),
    )
    .await
    .expect("created");
    let name_ns = |e: Option<Result<WatchEvent<ConfigMap>, kube::Error>>| match e {
        Some(Ok(WatchEvent::Added(o))) => format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(name_ns(within("all 1", all_events.next()).await), "b/x");
    assert_eq!(name_ns(within("all 2", all_events.next()).await), "a/y");
    assert_eq!(name_ns(within("a 1", a_events.next()).await), "a/y");

    // Clock control.
    emu.advance_clock(Duration::from_secs(86_400 * 365));
    let later = within(
        "create later",
        in_b.create(&PostParams::default(), &cm("later", &[])),
    )
    .await
    .expect("created");
    let first = within("get x", in_b.get("x")).await.expect("x");
    let t0 = first.metadata.creation_timestamp.expect("set").0;
    let t1 = later.metadata.creation_timestamp.expect("set").0;
    assert!(t1.duration_since(t0).as_secs() >= 86_400 * 364, "{t0} -> {t1}");
    emu.shutdown().await;
}

// "Finalizers" through kube::runtime::finalizer inside a Controller: the helper adds its
// finalizer with a JSON patch (test + add), the object then survives deletion with a
// deletionTimestamp until the cleanup removes the finalizer, after which the API server
// deletes it.
#[tokio::test]
async fn controller_with_kube_finalizer_helper() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::finalizer::{Event as Finalizer, finalizer};

    struct Ctx {
        api: Api<Widget>,
        cleanups: AtomicUsize,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("finalizer: {0}")]
    struct ReconcileError(#[source] Box<kube::runtime::finalizer::Error<kube::Error>>);

    async fn reconcile(obj: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
        finalizer(&ctx.api, "test.direwolf.io/cleanup", obj, |event| async {
            match event {
                Finalizer::Apply(w) => {
                    let status = json!({"status": {"ready": true}});
                    ctx.api
                        .patch_status(&w.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                        .await?;
                    Ok(Action::await_change())
                }
                Finalizer::Cleanup(_) => {
                    ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                    Ok(Action::await_change())
                }
            }
        })
        .await
        .map_err(|e| ReconcileError(Box::new(e)))
    }

    fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }

    let (emu, widgets) = with_widgets().await;
    let ctx = Arc::new(Ctx {
        api: widgets.clone(),
        cleanups: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .graceful_shutdown_on(async move {
                let _ = stop_rx.await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| std::future::ready(())),
    );
    within(
        "create",
        widgets.create(&PostParams::default(), &widget("fin", "t")),
    )
    .await
    .expect("created");
    within("reconciled", async {
        loop {
            if let Ok(w) = widgets.get("fin").await {
                let ready = w.status.as_ref().is_some_and(|s| s.ready);
                if ready && w.finalizers().iter().any(|f| f == "test.direwolf.io/cleanup") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("delete", widgets.delete("fin", &DeleteParams::default()))
        .await
        .expect("delete accepted");
    within("cleanup removes the finalizer and the object", async {
        while widgets.get_opt("fin").await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    stop_tx.send(()).expect("controller running");
    within("controller stops", handle).await.expect("clean exit");
    emu.shutdown().await;
}

// API concepts, "Receiving resources as PartialObjectMetadata": with
// `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` get, list and watch
// answer only metadata; kube's `Api<PartialObjectMeta<K>>` (metadata watches) relies on it.
#[tokio::test]
async fn partial_object_metadata_get_list_and_watch() {
    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    within(
        "seed",
        cms.create(&PostParams::default(), &cm("m", &[("a", "b")])),
    )
    .await
    .expect("seeded");
    let meta = within("get_metadata", cms.get_metadata("m"))
        .await
        .expect("metadata");
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(meta.labels().get("a").map(String::as_str), Some("b"));
    let list = within("list_metadata", cms.list_metadata(&ListParams::default()))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::default_namespaced(emu.client());
    let mut w = watcher(metas, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = within("metadata watcher", w.try_next())
        .await
        .expect("no error")
        .expect("an object");
    assert_eq!(first.name_any(), "m");
    within("create", cms.create(&PostParams::default(), &cm("n", &[])))
        .await
        .expect("created");
    let second = within("metadata watch event", w.try_next())
        .await
        .expect("no error")
        .expect("an object");
    assert_eq!(second.name_any(), "n");
    emu.shutdown().await;
}

// "Update API Objects in Place Using kubectl patch": a strategic merge patch merges lists that
// have a patch merge key (containers by name) instead of replacing them, and `$patch: delete`
// removes an element; custom resources do not support it (415). "Namespaces": deleting a
// namespace deletes everything in it.
#[tokio::test]
async fn strategic_merge_lists_and_namespace_deletion() {
    use k8s_openapi::api::core::v1::Namespace;

    let (emu, widgets) = with_widgets().await;
    let deployments: Api<Deployment> = Api::default_namespaced(emu.client());
    let mut d = deployment("d", "img:1");
    d["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "main", "image": "img:1"}, {"name": "side", "image": "side:1"}]);
    let d: Deployment = serde_json::from_value(d).expect("valid deployment");
    within("create", deployments.create(&PostParams::default(), &d))
        .await
        .expect("created");
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "img:2"}, {"name": "side", "$patch": "delete"}, {"name": "new", "image": "n:1"}]}}}});
    let patched = within(
        "strategic",
        deployments.patch("d", &PatchParams::default(), &Patch::Strategic(&patch)),
    )
    .await
    .expect("patched");
    let containers: Vec<(String, Option<String>)> = patched
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().map(|c| (c.name, c.image)).collect())
        .unwrap_or_default();
    assert_eq!(
        containers,
        [
            ("main".to_string(), Some("img:2".to_string())),
            ("new".to_string(), Some("n:1".to_string()))
        ]
    );
    within(
        "create widget",
        widgets.create(&PostParams::default(), &widget("w", "t")),
    )
    .await
    .expect("created");
    let e = api_error(
        within(
            "strategic on a CR",
            widgets.patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(&json!({"spec": {}})),
            ),
        )
        .await,
    );
    assert_eq!(e.code, 415);

    let namespaces: Api<Namespace> = Api::all(emu.client());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("doomed".into());
    within("create ns", namespaces.create(&PostParams::default(), &ns))
        .await
        .expect("created");
    let inside: Api<ConfigMap> = Api::namespaced(emu.client(), "doomed");
    within(
        "create inside",
        inside.create(&PostParams::default(), &cm("c", &[])),
    )
    .await
    .expect("created");
    let gone = within("delete ns", namespaces.delete("doomed", &DeleteParams::default()))
        .await
        .expect("deleted");
    assert!(gone.is_left(), "namespace deletes answer the object");
    assert!(
        within("inside gone", inside.get_opt("c"))
            .await
            .expect("get")
            .is_none()
    );
    emu.shutdown().await;
}

// "Events" (events.k8s.io/v1): kube's event Recorder creates an Event for the first
// occurrence and merge-patches its series for repeats; both go through the emulator.
#[tokio::test]
async fn event_recorder_creates_and_patches_events() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let emu = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(emu.client());
    let owner = within("create", cms.create(&PostParams::default(), &cm("subject", &[])))
        .await
        .expect("created");
    let recorder = Recorder::new(
        emu.client(),
        Reporter {
            controller: "direwolf-test".into(),
            instance: Some("test-pod".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = owner.object_ref(&());
    within("publish", recorder.publish(&ev, &reference))
        .await
        .expect("event created");
    within("publish again", recorder.publish(&ev, &reference))
        .await
        .expect("event series patched");
    let events: Api<K8sEvent> = Api::default_namespaced(emu.client());
    let list = within("list events", events.list(&ListParams::default()))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1, "repeats patch the same Event");
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Reconciled"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );
    assert!(e.series.is_some(), "the second occurrence became a series");
    let verbs: Vec<String> = emu
        .requests()
        .iter()
        .filter(|r| r.path.contains("/events"))
        .map(|r| format!("{} {}", r.verb, r.status))
        .collect();
    assert_eq!(verbs[..2], ["create 201", "patch 200"]);
    emu.shutdown().await;
}
