//! Writes: optimistic concurrency, merge/JSON/strategic patches, the status subresource and
//! generation, schema validation and defaults, and server-side apply.

use super::*;

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
    assert!(e.message.contains("spec.title: Required value"), "{}", e.message);
    // A missing field blocks the CEL rules, and the answer says so (as the real API server's
    // custom-resource strategy does; found on the real control plane, issue 11).
    assert!(
        e.message
            .contains("<nil>: Invalid value: null: some validation rules were not checked"),
        "{}",
        e.message
    );

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
