use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::ids::{Fingerprint, UserName};
use crate::memory::InMemoryAppCatalog;
use crate::model::{App, Pairing};
use crate::pin_broker::{InMemoryPinBroker, PendingPinRequest};
use crate::store::Stores;

struct Fixture {
    api: WolfApi,
    stores: Stores,
    broker: InMemoryPinBroker,
}

fn fixture() -> Fixture {
    let stores = Stores::in_memory();
    let broker = InMemoryPinBroker::default();
    let api = WolfApi::new(
        stores.apps.clone(),
        stores.pairings.clone(),
        Arc::new(broker.clone()),
    );
    Fixture { api, stores, broker }
}

async fn call(api: &WolfApi, method: Method, path: &str, body: &str) -> (u16, Value) {
    let reply = api.handle(&method, path, body.as_bytes()).await;
    let value = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply.body).expect("a JSON body")
    };
    (reply.status, value)
}

fn wolf_app(id: &str, title: &str) -> String {
    wolf_app_running(
        id,
        title,
        json!({"type": "docker", "name": "n", "image": "i", "mounts": [], "env": [],
               "devices": [], "ports": []}),
    )
}

fn wolf_app_running(id: &str, title: &str, runner: Value) -> String {
    json!({
        "title": title, "id": id, "support_hdr": true, "icon_png_path": "x.png",
        "h264_gst_pipeline": "a", "hevc_gst_pipeline": "b", "av1_gst_pipeline": "c",
        "render_node": "/dev/dri/renderD128", "opus_gst_pipeline": "d",
        "start_virtual_compositor": true, "start_audio_server": false,
        "runner": runner,
    })
    .to_string()
}

fn assert_wolf_error(reply: &(u16, Value), status: u16, message: &str) {
    assert_eq!(reply.0, status, "{:?}", reply.1);
    assert_eq!(reply.1["success"], json!(false), "{:?}", reply.1);
    let error = reply.1["error"].as_str().expect("an error message");
    assert!(
        error.starts_with(message),
        "{error:?} does not start with {message:?}"
    );
    assert_eq!(reply.1.as_object().unwrap().len(), 2, "exactly success and error");
}

#[tokio::test]
async fn apps_are_listed_added_and_deleted() {
    let f = fixture();
    let (status, body) = call(&f.api, Method::GET, paths::APPS, "").await;
    assert_eq!((status, body), (200, json!({"success": true, "apps": []})));

    let (status, body) = call(&f.api, Method::POST, paths::APPS_ADD, &wolf_app("42", "Steam")).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let stored = f.stores.apps.get(AppId::new(42).unwrap()).await.unwrap();
    assert_eq!(
        stored,
        Some(App::new(AppId::new(42).unwrap(), "Steam").unwrap().with_hdr(true))
    );
    let (_, body) = call(&f.api, Method::GET, paths::APPS, "").await;
    assert_eq!(body["apps"][0]["id"], json!("42"));
    assert_eq!(body["apps"][0]["title"], json!("Steam"));
    assert_eq!(body["apps"][0]["support_hdr"], json!(true));

    let (status, _) = call(&f.api, Method::POST, paths::APPS_DELETE, r#"{"id":"42"}"#).await;
    assert_eq!(status, 200);
    assert!(f.stores.apps.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_app_requests_get_wolf_errors_and_write_nothing() {
    let f = fixture();
    let add = |body: String| {
        let api = &f.api;
        async move { call(api, Method::POST, paths::APPS_ADD, &body).await }
    };
    assert_wolf_error(&add("{not json".into()).await, 500, "Invalid request format");
    assert_wolf_error(
        &add(r#"{"title":"A","id":"1"}"#.into()).await,
        500,
        "Invalid request format",
    );
    assert_wolf_error(&add(wolf_app("abc", "A")).await, 400, "invalid app id");
    assert_wolf_error(&add(wolf_app("5", "  ")).await, 400, "invalid app title");
    let child = wolf_app_running(
        "5",
        "Co-op",
        json!({"type": "child_session", "parent_session_id": "1"}),
    );
    assert_wolf_error(&add(child).await, 400, "invalid app runner");
    assert!(f.stores.apps.list().await.unwrap().is_empty(), "nothing written");

    assert_eq!(add(wolf_app("5", "First")).await.0, 200);
    assert_wolf_error(
        &add(wolf_app("5", "Second")).await,
        400,
        "App id 5 already exists",
    );
    let kept = f.stores.apps.get(AppId::new(5).unwrap()).await.unwrap().unwrap();
    assert_eq!(kept.title, "First", "a duplicate does not replace the app");

    for body in [r#"{"id":"6"}"#, r#"{"id":"x"}"#] {
        assert_wolf_error(
            &call(&f.api, Method::POST, paths::APPS_DELETE, body).await,
            404,
            "Invalid app_id",
        );
    }
    assert_wolf_error(
        &call(&f.api, Method::POST, paths::APPS_DELETE, r#"{"id":5}"#).await,
        500,
        "Invalid request format",
    );
    assert_eq!(f.stores.apps.list().await.unwrap().len(), 1);
}

fn pairing(cert: &str, user: &str, byte: u8) -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(&[byte]),
        cert_pem: cert.to_owned(),
        user: user.parse::<UserName>().unwrap(),
        device_name: None,
        paired_at: 0,
    }
}

#[tokio::test]
async fn clients_are_listed_with_wolf_ids_and_unpaired() {
    let f = fixture();
    // Wolf's own test client: its id is the libstdc++ hash of this certificate text.
    f.stores
        .pairings
        .put(pairing("A VERY VALID CERTIFICATE", "alice", 1))
        .await
        .unwrap();
    f.stores.pairings.put(pairing("OTHER", "bob", 2)).await.unwrap();
    let (status, body) = call(&f.api, Method::GET, paths::CLIENTS, "").await;
    assert_eq!(status, 200);
    let alice = body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == json!("10594003729173467913"))
        .expect("alice's client, under Wolf's id for its certificate")
        .clone();
    assert_eq!(alice["app_state_folder"], json!("alice"));
    assert_eq!(alice["settings"]["motion_controller_override"], json!("AUTO"));

    assert_wolf_error(
        &call(&f.api, Method::POST, paths::UNPAIR_CLIENT, r#"{"client_id":"1"}"#).await,
        404,
        "Client not found",
    );
    assert_wolf_error(
        &call(
            &f.api,
            Method::POST,
            paths::UNPAIR_CLIENT,
            r#"{"client_id":"x1"}"#,
        )
        .await,
        500,
        "Invalid client_id",
    );
    assert_wolf_error(
        &call(&f.api, Method::POST, paths::UNPAIR_CLIENT, "[]").await,
        400,
        "Invalid request format",
    );
    assert_eq!(
        f.stores.pairings.list().await.unwrap().len(),
        2,
        "nothing removed"
    );

    let (status, _) = call(
        &f.api,
        Method::POST,
        paths::UNPAIR_CLIENT,
        r#"{"client_id":"10594003729173467913"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let left = f.stores.pairings.list().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].user.as_str(), "bob");
}

#[tokio::test]
async fn pending_pairings_are_listed_and_given_their_pin() {
    let f = fixture();
    let secret = f
        .broker
        .open(PendingPinRequest {
            client_ip: "192.0.2.7".parse().unwrap(),
            device_name: Some("roth".into()),
        })
        .await
        .unwrap();
    let (status, body) = call(&f.api, Method::GET, paths::PAIR_PENDING, "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "requests": [{"pair_secret": secret.as_str(), "client_ip": "192.0.2.7"}]})
    );

    let pair = |secret: &str, pin: &str| json!({"pair_secret": secret, "pin": pin}).to_string();
    for pin in ["123", "12345", "abcd", ""] {
        assert_wolf_error(
            &call(
                &f.api,
                Method::POST,
                paths::PAIR_CLIENT,
                &pair(secret.as_str(), pin),
            )
            .await,
            500,
            "Invalid PIN",
        );
    }
    for unknown in ["0000000000000000", "nope"] {
        assert_wolf_error(
            &call(&f.api, Method::POST, paths::PAIR_CLIENT, &pair(unknown, "1234")).await,
            500,
            "Invalid pair secret",
        );
    }
    let malformed = call(
        &f.api,
        Method::POST,
        paths::PAIR_CLIENT,
        r#"{"pair_secret":"A","pin":1234}"#,
    )
    .await;
    assert_wolf_error(&malformed, 500, "Invalid request format");
    assert!(!malformed.1.to_string().contains("1234"), "the PIN is not echoed");
    assert_eq!(f.broker.pending().await.unwrap().len(), 1, "still waiting");

    let (status, _) = call(
        &f.api,
        Method::POST,
        paths::PAIR_CLIENT,
        &pair(secret.as_str(), "4321"),
    )
    .await;
    assert_eq!(status, 200);
    let got = f.broker.wait(&secret, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.pin.expose(), "4321");
    assert_eq!(got.user, None, "the Moonlight server's default user");
    assert_wolf_error(
        &call(
            &f.api,
            Method::POST,
            paths::PAIR_CLIENT,
            &pair(secret.as_str(), "4321"),
        )
        .await,
        500,
        "Invalid pair secret",
    );
}

#[tokio::test]
async fn other_routes_are_answered_like_wolf_answers_unknown_ones() {
    let f = fixture();
    for (method, path) in [
        (Method::POST, paths::SESSIONS_ADD),
        (Method::GET, paths::SESSIONS),
        (Method::GET, paths::EVENTS),
        (Method::POST, paths::CLIENTS_SETTINGS),
        (Method::POST, paths::APPS),
        (Method::GET, paths::APPS_ADD),
        (Method::GET, "/api/v1/apps/"),
        (Method::PUT, paths::APPS_ADD),
        (Method::GET, "/"),
    ] {
        let reply = f.api.handle(&method, path, b"{}").await;
        assert_eq!((reply.status, reply.body.len()), (404, 0), "{method} {path}");
    }
    // Any other method reads as GET, and the query is not part of the route.
    let (status, body) = call(&f.api, Method::PATCH, "/api/v1/apps?x=1", "").await;
    assert_eq!((status, body["success"].clone()), (200, json!(true)));
    let (status, body) = call(&f.api, Method::GET, paths::PROFILES, "").await;
    assert_eq!((status, body), (200, json!({"success": true, "profiles": []})));
}

#[tokio::test]
async fn store_failures_are_wolf_errors() {
    let mut apps = crate::store::MockAppCatalog::new();
    apps.expect_list()
        .returning(|| Err(Error::unavailable("database closed")));
    let stores = Stores::in_memory();
    let api = WolfApi::new(
        Arc::new(apps),
        stores.pairings,
        Arc::new(InMemoryPinBroker::default()),
    );
    assert_wolf_error(
        &call(&api, Method::GET, paths::APPS, "").await,
        500,
        "unavailable",
    );
}

/// One raw request on the socket, read to the end: the server closes after one answer.
async fn raw(path: &std::path::Path, request: &str) -> String {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(path).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the socket answers within 10 s")
        .expect("an answer")
}

#[tokio::test]
async fn the_socket_is_private_replaces_stale_ones_and_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wolf.sock");
    assert_eq!(WolfApiSocket::check(&path).unwrap(), "will be created");
    // A stale socket (bound, then its listener dropped) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(WolfApiSocket::check(&path).unwrap().contains("stale"));
    let socket = WolfApiSocket::bind(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no staging left"
    );
    // A live socket is not taken over; a file that is not a socket is left alone.
    assert!(WolfApiSocket::bind(&path).is_err());
    assert!(
        WolfApiSocket::check(&path)
            .unwrap_err()
            .to_string()
            .contains("another process")
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(WolfApiSocket::bind(&file).is_err());
    assert!(
        WolfApiSocket::check(&file)
            .unwrap_err()
            .to_string()
            .contains("not a socket")
    );
    assert!(WolfApiSocket::check(&dir.path().join("missing/wolf.sock")).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    let apps = InMemoryAppCatalog::with_apps([(App::new(AppId::new(1).unwrap(), "Desktop").unwrap(), None)]);
    let api = Arc::new(WolfApi::new(
        Arc::new(apps),
        Stores::in_memory().pairings,
        Arc::new(InMemoryPinBroker::default()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(socket.serve(api, async {
        let _ = stopped.await;
    }));
    let reply = raw(&path, "GET /api/v1/apps HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""title":"Desktop""#), "{reply}");
    let reply = raw(&path, "GET /api/v1/lobbies HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("content-length: 0"),
        "{reply}"
    );
    // HTTP/1.0 with a Content-Length body, as Wolf's own clients and nginx in front of Wolf send.
    let body = r#"{"id":"1"}"#;
    let request = format!(
        "POST /api/v1/apps/delete HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = raw(&path, &request).await;
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(reply.ends_with(r#"{"success":true}"#), "{reply}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops within 10 s")
        .unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}
