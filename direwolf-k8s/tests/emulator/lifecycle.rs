//! Deletion and controllers: finalizers, garbage collection, and kube-runtime's Controller, finalizer
//! helper and event Recorder running against the emulator.

use super::*;

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
