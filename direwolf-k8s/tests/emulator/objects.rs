//! Objects and reads: CRDs and discovery, create/get/list/delete, selectors and pages, delete
//! collection, built-in kinds, cluster-scoped resources and namespaces, PartialObjectMetadata.

use super::*;

// "Extend the Kubernetes API with CustomResourceDefinitions": when a CRD is created, the API
// server "creates a new namespaced RESTful API endpoint" /apis/<group>/<version>/namespaces/*/
// <plural>, and the CRD reports the Established condition once it is served.
#[tokio::test]
async fn creating_a_crd_serves_its_resource_with_discovery() {
    let emu = start().await;
    let client = emu.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_saphyr::from_str(WIDGET_CRD).expect("valid CRD YAML");
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
