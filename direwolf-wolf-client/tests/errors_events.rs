//! Every error path (via the fake's failure injection) and the event stream across restarts.

mod common;

use std::time::Duration;

use common::*;
use direwolf_wolf_client::error::Error;
use direwolf_wolf_client::events::{EventItem, EventsConfig, SessionEvent, WolfEvent, names};
use direwolf_wolf_client::fake::{Failure, FakeWolf};
use direwolf_wolf_client::ids::SessionId;
use direwolf_wolf_client::version::paths;
use direwolf_wolf_client::{WolfClient, WolfVersion};
use futures::StreamExt;

#[tokio::test]
async fn socket_missing_and_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let client = WolfClient::unix(dir.path().join("absent.sock")).unwrap();
    assert!(matches!(
        within("missing", client.sessions()).await,
        Err(Error::SocketMissing { .. })
    ));
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    wolf.stop().await;
    let e = within("refused", client.sessions()).await.unwrap_err();
    assert!(matches!(e, Error::ConnectionRefused { .. }), "{e}");
    assert!(e.is_transient());
    wolf.restart().await.unwrap();
    assert!(
        within("after restart", client.sessions())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    assert!(matches!(WolfClient::tcp("nohost"), Err(Error::Config(_))));
    assert!(matches!(WolfClient::unix(""), Err(Error::Config(_))));
    assert!(matches!(
        WolfClient::builder().with_timeout(Duration::ZERO).build(),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn slow_wolf_times_out_within_the_configured_time() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf
        .client_builder()
        .with_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    wolf.set_failure(Failure::Slow(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let e = within("slow", client.sessions()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                endpoint: paths::SESSIONS,
                ..
            }
        ),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    wolf.clear_failures();
    assert!(within("recovered", client.sessions()).await.is_ok());
}

#[tokio::test]
async fn close_without_response_garbage_truncated_oversized_wrong_shape() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf
        .client_builder()
        .with_max_body_bytes(64 * 1024)
        .build()
        .unwrap();
    within("detect", client.version()).await.unwrap();
    wolf.set_failure_on(paths::SESSIONS, Failure::CloseWithoutResponse);
    assert!(matches!(
        within("close", client.sessions()).await,
        Err(Error::ClosedWithoutResponse { .. })
    ));
    wolf.set_failure_on(paths::SESSIONS, Failure::Garbage);
    assert!(matches!(
        within("garbage", client.sessions()).await,
        Err(Error::InvalidJson { .. })
    ));
    wolf.set_failure_on(paths::SESSIONS, Failure::Truncated);
    let e = within("truncated", client.sessions()).await.unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    wolf.set_failure_on(paths::SESSIONS, Failure::Oversized(1024 * 1024));
    let e = within("oversized", client.sessions()).await.unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { limit: 65536, .. }), "{e}");
    wolf.set_failure_on(paths::SESSIONS, Failure::WrongShape);
    assert!(matches!(
        within("shape", client.sessions()).await,
        Err(Error::InvalidJson { .. })
    ));
    // The same failures on other endpoints.
    wolf.clear_failures();
    wolf.set_failure(Failure::WrongShape);
    assert!(matches!(
        within("shape apps", client.apps()).await,
        Err(Error::InvalidJson { .. })
    ));
    assert!(matches!(
        within("shape add", client.add_session(&add_request())).await,
        Err(Error::InvalidJson { .. })
    ));
    wolf.set_failure(Failure::Garbage);
    assert!(matches!(
        within("garbage schema", client.openapi_schema()).await,
        Err(Error::InvalidJson { .. })
    ));
    wolf.set_failure(Failure::Truncated);
    assert!(matches!(
        within("truncated icon", client.get_icon("x.png")).await,
        Err(Error::Truncated { .. })
    ));
}

#[tokio::test]
async fn oversized_without_content_length_is_bounded_too() {
    // Wolf's streamed answers have no Content-Length: the limit must still hold.
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf
        .client_builder()
        .with_max_body_bytes(1024)
        .with_version(WolfVersion::V6)
        .build()
        .unwrap();
    let layers = (0..200)
        .map(|n| direwolf_wolf_client::types::PullProgress {
            layer_id: "x".repeat(20),
            current_progress: n,
            total: 200,
        })
        .collect();
    wolf.add_pull(
        "big",
        direwolf_wolf_client::fake::PullPlan {
            layers,
            fail_after: None,
        },
    );
    let items: Vec<_> = within(
        "pull",
        client.pull_image("big").await.unwrap().collect::<Vec<_>>(),
    )
    .await;
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(
        items.len(),
        200,
        "each line is small, so the whole stream is read"
    );
    let client = wolf
        .client_builder()
        .with_max_body_bytes(16)
        .with_version(WolfVersion::V6)
        .build()
        .unwrap();
    let items: Vec<_> = within(
        "pull tiny",
        client.pull_image("big").await.unwrap().collect::<Vec<_>>(),
    )
    .await;
    assert!(
        matches!(items.last(), Some(Err(Error::BodyTooLarge { .. }))),
        "{items:?}"
    );
}

#[tokio::test]
async fn runners_start_eof_is_success_but_other_errors_are_not() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf
        .client_builder()
        .with_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let req = direwolf_wolf_client::types::StartRunnerRequest {
        stop_stream_when_over: true,
        runner: direwolf_wolf_client::types::Runner::Process { run_cmd: "x".into() },
        session_id: SessionId::new(1),
    };
    wolf.set_failure(Failure::Slow(Duration::from_secs(3)));
    assert!(matches!(
        within("slow runner", client.start_runner(&req)).await,
        Err(Error::Timeout { .. })
    ));
}

#[tokio::test]
async fn wolf_error_texts_are_kept() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    let e = within("pause", client.pause_session(SessionId::new(9)))
        .await
        .unwrap_err();
    match e {
        Error::Wolf {
            status,
            message,
            endpoint,
            ..
        } => {
            assert_eq!(
                (status, message.as_str(), endpoint),
                (500, "Invalid session_id", paths::SESSIONS_PAUSE)
            );
        }
        other => panic!("{other}"),
    }
}

async fn next_item(stream: &mut direwolf_wolf_client::events::EventStream) -> EventItem {
    within("next event", stream.next())
        .await
        .expect("stream ended")
        .expect("stream error")
}

#[tokio::test]
async fn events_are_typed_keepalives_skipped_unknown_kept() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    let mut events = client.events();
    // The stream connects on first poll: poll it while waiting for the subscriber.
    let first = tokio::spawn(async move {
        let item = next_item(&mut events).await;
        (item, events)
    });
    within("subscriber", wolf.wait_for_subscribers(1, Duration::from_secs(5)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await; // let some keepalives pass
    wolf.inject_event(
        names::RTP_VIDEO_PING,
        &serde_json::json!({"client_ip": "1.2.3.4", "client_port": 5}),
    );
    wolf.inject_event(
        "wolf::core::events::SomethingNew",
        &serde_json::json!({"x": [1, 2]}),
    );
    let (item, mut events) = within("first", first).await.unwrap();
    assert_eq!(
        item,
        EventItem::Event(WolfEvent::Other {
            name: "wolf::core::events::SomethingNew".into(),
            data: serde_json::json!({"x": [1, 2]})
        }),
        "pings filtered, unknown passed through"
    );
    let id = within("add", client.add_session(&add_request())).await.unwrap();
    match next_item(&mut events).await {
        EventItem::Event(WolfEvent::StreamSession(s)) => assert_eq!(s.session_id(), id),
        other => panic!("{other:?}"),
    }
    within("start", client.start_session(&start_request(id)))
        .await
        .unwrap();
    assert!(matches!(
        next_item(&mut events).await,
        EventItem::Event(WolfEvent::VideoSession(_))
    ));
    assert!(matches!(
        next_item(&mut events).await,
        EventItem::Event(WolfEvent::AudioSession(_))
    ));
    within("pause", client.pause_session(id)).await.unwrap();
    assert_eq!(
        next_item(&mut events).await,
        EventItem::Event(WolfEvent::PauseStream(SessionEvent { session_id: id }))
    );
    within("stop", client.stop_session(id)).await.unwrap();
    assert_eq!(
        next_item(&mut events).await,
        EventItem::Event(WolfEvent::StopStream(SessionEvent { session_id: id }))
    );
}

#[tokio::test]
async fn pings_pass_when_not_filtered_and_v4_numeric_ids_parse() {
    let (wolf, _d) = fake(WolfVersion::V4).await;
    let client = wolf.client().unwrap();
    let mut events = client.events_with(EventsConfig {
        filter_pings: false,
        ..Default::default()
    });
    let task = tokio::spawn(async move {
        let a = next_item(&mut events).await;
        let b = next_item(&mut events).await;
        (a, b)
    });
    within("subscriber", wolf.wait_for_subscribers(1, Duration::from_secs(5)))
        .await
        .unwrap();
    wolf.inject_event(
        names::RTP_AUDIO_PING,
        &serde_json::json!({"client_ip": "1.2.3.4", "client_port": 5}),
    );
    wolf.inject_event(
        names::IDR_REQUEST,
        &serde_json::json!({"session_id": "18446744073709551615"}),
    );
    let (a, b) = within("events", task).await.unwrap();
    assert!(
        matches!(a, EventItem::Event(WolfEvent::RtpAudioPing(ref p)) if p.client_port == 5),
        "{a:?}"
    );
    assert_eq!(
        b,
        EventItem::Event(WolfEvent::IdrRequest(SessionEvent {
            session_id: SessionId::new(u64::MAX)
        }))
    );
}

#[tokio::test]
async fn event_stream_reconnects_across_restart_with_marker() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    let cfg = EventsConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    };
    let mut events = client.events_with(cfg);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = events.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    within("subscriber", wolf.wait_for_subscribers(1, Duration::from_secs(5)))
        .await
        .unwrap();
    wolf.inject_event(names::IDR_REQUEST, &serde_json::json!({"session_id": "1"}));
    let got = within("before restart", rx.recv()).await.unwrap().unwrap();
    assert!(matches!(got, EventItem::Event(WolfEvent::IdrRequest(_))));
    wolf.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await; // a few failed reconnects
    wolf.restart().await.unwrap();
    assert_eq!(
        within("marker", rx.recv()).await.unwrap().unwrap(),
        EventItem::Reconnected
    );
    within(
        "subscriber again",
        wolf.wait_for_subscribers(1, Duration::from_secs(5)),
    )
    .await
    .unwrap();
    wolf.inject_event(names::IDR_REQUEST, &serde_json::json!({"session_id": "2"}));
    let got = within("after restart", rx.recv()).await.unwrap().unwrap();
    assert_eq!(
        got,
        EventItem::Event(WolfEvent::IdrRequest(SessionEvent {
            session_id: SessionId::new(2)
        }))
    );
    reader.abort();
}

#[tokio::test]
async fn event_stream_gives_up_after_max_retries() {
    let dir = tempfile::tempdir().unwrap();
    let client = WolfClient::unix(dir.path().join("none.sock")).unwrap();
    let cfg = EventsConfig {
        initial_backoff: Duration::from_millis(5),
        max_retries: Some(2),
        ..Default::default()
    };
    let mut events = client.events_with(cfg);
    let e = within("give up", events.next()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::SocketMissing { .. }));
    assert!(within("ended", events.next()).await.is_none());
}

#[tokio::test]
async fn event_stream_reconnects_when_wolf_goes_silent() {
    // No keepalives for longer than idle_timeout → reconnect (a hung Wolf is detected).
    let dir = tempfile::tempdir().unwrap();
    let wolf = FakeWolf::builder()
        .unix(dir.path().join("wolf.sock"))
        .keepalive_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let client = wolf.client().unwrap();
    let cfg = EventsConfig {
        idle_timeout: Duration::from_millis(150),
        initial_backoff: Duration::from_millis(10),
        ..Default::default()
    };
    let mut events = client.events_with(cfg);
    assert_eq!(next_item(&mut events).await, EventItem::Reconnected);
}

#[tokio::test]
async fn wait_ready_waits_for_the_socket_to_appear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wolf.sock");
    let client = WolfClient::unix(&path).unwrap();
    let starter = {
        let path = path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            FakeWolf::builder()
                .version(WolfVersion::V5b)
                .unix(path)
                .start()
                .await
                .unwrap()
        })
    };
    assert_eq!(
        within("wait ready", client.wait_ready(Duration::from_secs(5)))
            .await
            .unwrap(),
        WolfVersion::V5b
    );
    let _wolf = starter.await.unwrap();
    let never = WolfClient::unix(dir.path().join("never.sock")).unwrap();
    let e = within("never ready", never.wait_ready(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SocketMissing { .. }));
}

/// `plug_device`/`unplug_device` fire Wolf's device events as `docs/protocol/wolf-api.md` § Event
/// names describes them: typed on the client side, the session id a string from V5 and a number
/// before.
#[tokio::test]
async fn device_events_arrive_typed_in_every_id_format() {
    for version in [WolfVersion::V6, WolfVersion::V4] {
        let (wolf, _d) = fake(version).await;
        let client = wolf.client().unwrap();
        let mut events = client.events();
        let task = tokio::spawn(async move {
            let a = next_item(&mut events).await;
            let b = next_item(&mut events).await;
            (a, b)
        });
        within("subscriber", wolf.wait_for_subscribers(1, Duration::from_secs(5)))
            .await
            .unwrap();
        let device = direwolf_wolf_client::events::DeviceEvent {
            session_id: SessionId::new(u64::MAX),
            udev_events: vec![
                [
                    ("ACTION", "add"),
                    ("DEVPATH", "/devices/virtual/input/input3"),
                    ("SUBSYSTEM", "input"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ],
            udev_hw_db_entries: vec![("c13:64".to_owned(), vec!["E:ID_INPUT=1".to_owned()])],
        };
        wolf.plug_device(&device);
        wolf.unplug_device(&device);
        let (a, b) = within("events", task).await.unwrap();
        assert_eq!(
            a,
            EventItem::Event(WolfEvent::PlugDevice(device.clone())),
            "{version:?}"
        );
        assert_eq!(
            b,
            EventItem::Event(WolfEvent::UnplugDevice(device)),
            "{version:?}"
        );
    }
}
