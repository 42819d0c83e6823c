//! Watches: raw events, bookmarks and selector transitions, the watcher and reflector, streaming
//! lists, and 410 Gone after compaction.

use super::*;

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
