//! The emulator's own knobs: injected failures and the request log, and seeding from YAML (the
//! project's CRDs and examples).

use super::*;

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

// The project's own generated CRDs (crds/direwolf.yaml) and example objects (examples/*.yaml)
// seed into the emulator and read back through the API with their schema defaults applied:
// this is how reconciler tests seed state (the project's convention: seed the emulator from the
// example objects, assert through the API).
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
