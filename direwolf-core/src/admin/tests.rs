//! The handlers over in-memory stores, an in-memory PIN broker and a launcher that ends
//! sessions in the store.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::*;
use crate::ids::{AppId, Fingerprint, SessionId, UserName};
use crate::launcher::{LaunchError, LaunchOutcome};
use crate::model::{
    App, LaunchRequest, Pairing, ResumeRequest, Session, SessionPhase, StreamKeys, User, VideoMode,
};
use crate::pin_broker::{InMemoryPinBroker, PendingPinRequest};
use crate::{AesKey, RiKeyId, SessionStoreExt};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

/// A launcher whose cancel ends the user's sessions in the store, and remembers who it ended.
#[derive(Debug)]
struct StoreLauncher {
    sessions: Arc<dyn SessionStore>,
    cancelled: Mutex<Vec<UserName>>,
}

#[async_trait]
impl Launcher for StoreLauncher {
    async fn launch(&self, _: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        Err(LaunchError::Invalid("not in these tests".into()))
    }
    async fn resume(&self, _: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        Err(LaunchError::NotRunning)
    }
    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        for session in self.sessions.for_user(user).await? {
            self.sessions.delete(&session.id).await?;
        }
        self.cancelled.lock().push(user.clone());
        Ok(())
    }
    async fn current_app(&self, _: &UserName) -> Option<AppId> {
        None
    }
}

struct Fixture {
    api: AdminApi,
    stores: Stores,
    broker: InMemoryPinBroker,
    launcher: Arc<StoreLauncher>,
    token: AdminToken,
}

fn fixture() -> Fixture {
    let stores = Stores::in_memory();
    let broker = InMemoryPinBroker::default();
    let launcher = Arc::new(StoreLauncher {
        sessions: stores.sessions.clone(),
        cancelled: Mutex::default(),
    });
    let token = AdminToken::generate();
    let api = AdminApi::new(&stores, Arc::new(broker.clone()), launcher.clone(), token.clone());
    Fixture {
        api,
        stores,
        broker,
        launcher,
        token,
    }
}

const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

impl Fixture {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> (StatusCode, Value, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token.expose()))
            .header("content-type", content_type)
            .header("host", "192.0.2.10:47990")
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_vec())))
            .unwrap();
        reply_parts(self.api.handle(request, CLIENT).await).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (status, json, _) = self
            .send(method, path, bytes.as_deref(), "application/json")
            .await;
        (status, json)
    }

    async fn session(&self, user: &str, id: &str) {
        self.stores
            .sessions
            .create(Session {
                id: id.parse().unwrap(),
                user: user.parse().unwrap(),
                pairing: Fingerprint::of_der(user.as_bytes()),
                app: AppId::new(1).unwrap(),
                client_ip: "192.0.2.9".parse().unwrap(),
                mode: VideoMode::DEFAULT,
                surround_audio_info: 196_610,
                keys: StreamKeys {
                    aes_key: AesKey::new([0; 16]),
                    aes_iv: RiKeyId::from_bits(1),
                },
                phase: SessionPhase::Streaming,
                placement: None,
                created_at: 1,
            })
            .await
            .unwrap();
    }

    async fn pairing(&self, user: &str) -> Fingerprint {
        let fingerprint = Fingerprint::of_der(user.as_bytes());
        self.stores
            .pairings
            .put(Pairing {
                fingerprint: fingerprint.clone(),
                cert_pem: "-----BEGIN CERTIFICATE-----".into(),
                user: user.parse().unwrap(),
                device_name: Some("roth".into()),
                paired_at: 7,
            })
            .await
            .unwrap();
        fingerprint
    }
}

async fn reply_parts(reply: Reply) -> (StatusCode, Value, Vec<u8>) {
    let status = reply.status();
    let is_json = reply
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let bytes = reply.into_body().collect().await.unwrap().to_bytes().to_vec();
    let json = if is_json {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::Null
    };
    (status, json, bytes)
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().expect("an error body {\"error\": ...}")
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_401_and_change_nothing() {
    let f = fixture();
    for header in [
        None,
        Some("Bearer nope".to_owned()),
        Some(f.token.expose().to_owned()),
    ] {
        let mut request = Request::builder().method("POST").uri("/api/v1/users");
        if let Some(h) = &header {
            request = request.header("authorization", h);
        }
        let request = request
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"name":"eve"}"#)))
            .unwrap();
        let reply = f.api.handle(request, CLIENT).await;
        assert_eq!(reply.headers()["www-authenticate"], "Bearer");
        let (status, body, _) = reply_parts(reply).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert!(error_of(&body).contains("token"), "{body}");
    }
    assert!(f.stores.users.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn users_create_list_duplicate_malformed_delete() {
    let f = fixture();
    let (status, body) = f
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": "alice", "display_name": "Alice"})),
        )
        .await;
    assert_eq!(
        (status, &body),
        (
            StatusCode::CREATED,
            &json!({"name": "alice", "display_name": "Alice", "admin": false, "has_password": false})
        )
    );
    let (status, body) = f
        .call("POST", "/api/v1/users", Some(json!({"name": "alice"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("already exists"));
    let (status, body, _) = f
        .send("POST", "/api/v1/users", Some(b"{\"name\":"), "application/json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("malformed JSON"), "{body}");
    let (status, _, _) = f
        .send("POST", "/api/v1/users", Some(br#"{"name":"bob"}"#), "text/plain")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for bad in [
        json!({"name": "Bad Name"}),
        json!({"name": "bob", "role": "admin"}),
        json!({}),
    ] {
        let (status, _) = f.call("POST", "/api/v1/users", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, body) = f.call("GET", "/api/v1/users", None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!([{"name": "alice", "display_name": "Alice", "admin": false, "has_password": false}])
        )
    );
    // An administrator without a password (one who logs in through single sign-on).
    let (status, body) = f
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": "carol", "admin": true})),
        )
        .await;
    assert_eq!((status, &body["admin"]), (StatusCode::CREATED, &json!(true)));
    let (status, _) = f.call("DELETE", "/api/v1/users/carol", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call("DELETE", "/api/v1/users/alice", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call("DELETE", "/api/v1/users/alice", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.call("DELETE", "/api/v1/users/Not%20A%20Name", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_user_with_live_sessions_is_kept_unless_forced() {
    let f = fixture();
    f.stores
        .users
        .put(User::new("bob".parse().unwrap()))
        .await
        .unwrap();
    let fingerprint = f.pairing("bob").await;
    f.session("bob", "s1").await;
    let (status, body) = f.call("DELETE", "/api/v1/users/bob", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("force=true"), "{body}");
    assert!(
        f.stores
            .users
            .get(&"bob".parse().unwrap())
            .await
            .unwrap()
            .is_some(),
        "nothing deleted"
    );
    assert!(
        f.stores.pairings.get(&fingerprint).await.unwrap().is_some(),
        "nothing deleted"
    );
    let (status, _) = f.call("DELETE", "/api/v1/users/bob?force=maybe", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f.call("DELETE", "/api/v1/users/bob?force=true", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        *f.launcher.cancelled.lock(),
        vec!["bob".parse::<UserName>().unwrap()]
    );
    assert!(f.stores.sessions.list().await.unwrap().is_empty());
    assert!(
        f.stores.pairings.get(&fingerprint).await.unwrap().is_none(),
        "the user's pairings go with it"
    );
}

#[tokio::test]
async fn apps_and_images() {
    let f = fixture();
    let (status, body) = f
        .call("POST", "/api/v1/apps", Some(json!({"title": "Desktop"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"id": 1, "title": "Desktop", "hdr_supported": false, "has_image": false})
    );
    let (status, body) = f
        .call(
            "POST",
            "/api/v1/apps",
            Some(json!({"title": "Steam", "id": 7, "hdr_supported": true})),
        )
        .await;
    assert_eq!((status, body["id"].clone()), (StatusCode::CREATED, json!(7)));
    for (dup, says) in [
        (json!({"title": "Desktop"}), "titled"),
        (json!({"title": "Other", "id": 7}), "taken"),
    ] {
        let (status, body) = f.call("POST", "/api/v1/apps", Some(dup)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(error_of(&body).contains(says), "{body}");
    }
    for bad in [
        json!({"title": ""}),
        json!({"title": "X", "id": 0}),
        json!({"title": 3}),
    ] {
        let (status, _) = f.call("POST", "/api/v1/apps", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _) = f
        .send("PUT", "/api/v1/apps/7/image", Some(PNG), "image/png")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, bytes) = f.send("GET", "/api/v1/apps/7/image", None, "").await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, PNG));
    let (status, body, _) = f
        .send("PUT", "/api/v1/apps/7/image", Some(b"GIF89a...."), "image/png")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_of(&body).contains("PNG"));
    let mut huge = PNG.to_vec();
    huge.resize(image::MAX_IMAGE_BYTES + 1, 0);
    let (status, body, _) = f
        .send("PUT", "/api/v1/apps/7/image", Some(&huge), "image/png")
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&body).contains("larger than"));
    let (_, _, bytes) = f.send("GET", "/api/v1/apps/7/image", None, "").await;
    assert_eq!(bytes, PNG, "a refused image leaves the old one");
    let (status, _, _) = f
        .send("PUT", "/api/v1/apps/99/image", Some(PNG), "image/png")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = f.call("GET", "/api/v1/apps", None).await;
    assert_eq!(body[1]["has_image"], json!(true));
    let (status, _) = f.call("DELETE", "/api/v1/apps/7", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call("DELETE", "/api/v1/apps/7", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        f.stores.apps.list().await.unwrap(),
        vec![App::new(AppId::new(1).unwrap(), "Desktop").unwrap()]
    );
}

#[tokio::test]
async fn pairings_list_and_revoke() {
    let f = fixture();
    let fingerprint = f.pairing("carol").await;
    f.session("carol", "s2").await;
    let (status, body) = f.call("GET", "/api/v1/pairings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([{"fingerprint": fingerprint.as_str(), "user": "carol", "device_name": "roth", "paired_at": 7}])
    );
    let path = format!("/api/v1/pairings/{fingerprint}");
    let (status, _) = f
        .call("DELETE", &format!("{path}?stop_sessions=true"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        f.stores.sessions.list().await.unwrap().is_empty(),
        "its session ended"
    );
    let (status, _) = f.call("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_pending_pairing_is_approved_through_the_broker() {
    let f = fixture();
    f.stores
        .users
        .put(User::new("dave".parse().unwrap()))
        .await
        .unwrap();
    let secret = f
        .broker
        .open(PendingPinRequest {
            client_ip: "192.0.2.4".parse().unwrap(),
            device_name: Some("roth".into()),
        })
        .await
        .unwrap();
    let (status, body) = f.call("GET", "/api/v1/pending-pairings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["secret"], json!(secret.as_str()));
    let approve = format!("/api/v1/pending-pairings/{}/approve", secret.as_str());
    for (bad, expected) in [
        (json!({"pin": "12a4", "user": "dave"}), StatusCode::BAD_REQUEST),
        (json!({"pin": "1234", "user": "nobody"}), StatusCode::NOT_FOUND),
        (json!({"pin": "1234", "pin2": 1}), StatusCode::BAD_REQUEST),
    ] {
        let (status, _) = f.call("POST", &approve, Some(bad.clone())).await;
        assert_eq!(status, expected, "{bad}");
    }
    let (status, _) = f
        .call("POST", &approve, Some(json!({"pin": "1234", "user": "dave"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        f.broker.wait(&secret, Duration::from_secs(1)),
    )
    .await
    .expect("the broker hands the PIN over at once")
    .unwrap();
    assert_eq!((got.pin.expose(), got.user.unwrap().as_str()), ("1234", "dave"));
    let (status, _) = f.call("POST", &approve, Some(json!({"pin": "1234"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a PIN is delivered once");
    let (status, _) = f
        .call(
            "POST",
            "/api/v1/pending-pairings/nothex/approve",
            Some(json!({"pin": "1234"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sessions_list_and_stop() {
    let f = fixture();
    f.session("erin", "s3").await;
    let (status, body) = f.call("GET", "/api/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body[0]["id"].clone(), body[0]["phase"].clone()),
        (json!("s3"), json!("Streaming"))
    );
    assert_eq!(body[0]["mode"], json!("1920x1080x60"));
    let (status, _) = f.call("DELETE", "/api/v1/sessions/s3", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        f.stores
            .sessions
            .get(&"s3".parse::<SessionId>().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let (status, _) = f.call("DELETE", "/api/v1/sessions/s3", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let f = fixture();
    let (status, body) = f.call("GET", "/api/v1/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("/api/v1"));
    let request = Request::builder()
        .method("PATCH")
        .uri("/api/v1/users")
        .header("authorization", format!("Bearer {}", f.token.expose()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = f.api.handle(request, CLIENT).await;
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers()["allow"], "GET, POST");
}

#[tokio::test]
async fn passwords_are_set_hashed_and_never_shown() {
    let f = fixture();
    let (status, _) = f
        .call(
            "PUT",
            "/api/v1/users/alice/password",
            Some(json!({"password": "long enough"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "not in Kubernetes mode");
    let f = Fixture {
        api: f.api.clone().with_local_accounts(Default::default(), 47989),
        ..f
    };
    for name in ["alice", "bob"] {
        let (status, body) = f
            .call("POST", "/api/v1/users", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["has_password"], false);
        assert_eq!(body["admin"], false);
    }
    for (bad, expected) in [
        (json!({"password": "short"}), "at least 8"),
        (json!({"password": "x".repeat(1025)}), "at most 1024"),
        (json!({}), "missing field"),
        (json!({"password": "long enough", "admin": true}), "unknown field"),
    ] {
        let (status, body) = f.call("PUT", "/api/v1/users/alice/password", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }
    let (status, _) = f
        .call(
            "PUT",
            "/api/v1/users/carol/password",
            Some(json!({"password": "long enough"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The first account with a password becomes admin; the next does not.
    let (status, body) = f
        .call(
            "PUT",
            "/api/v1/users/alice/password",
            Some(json!({"password": "alice's secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["has_password"], &body["admin"]),
        (&json!(true), &json!(true))
    );
    let (_, body) = f
        .call(
            "PUT",
            "/api/v1/users/bob/password",
            Some(json!({"password": "bob's secret!"})),
        )
        .await;
    assert_eq!(
        (&body["has_password"], &body["admin"]),
        (&json!(true), &json!(false))
    );

    let stored = f
        .stores
        .users
        .get(&"alice".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let hash = stored.password.expect("stored hash");
    assert!(hash.verify("alice's secret") && !hash.verify("bob's secret!"));
    let (_, listed) = f.call("GET", "/api/v1/users", None).await;
    let text = listed.to_string();
    assert!(!text.contains("argon2") && !text.contains("secret"), "{text}");
    assert_eq!(listed[0]["has_password"], true);
    assert!(listed[0].get("password").is_none(), "{listed}");
    // The PUT route only takes PUT.
    let (status, _) = f.call("GET", "/api/v1/users/alice/password", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn pairing_links_are_issued_for_existing_users() {
    let f = fixture();
    let (status, _) = f
        .call("POST", "/api/v1/users/bob/pairing-links", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "no link store configured");

    let links = crate::accounts::PairingLinks::default();
    let f = Fixture {
        api: f.api.clone().with_local_accounts(links.clone(), 47989),
        ..f
    };
    let (status, _) = f
        .call("POST", "/api/v1/users/bob/pairing-links", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no user bob yet");
    f.call("POST", "/api/v1/users", Some(json!({"name": "bob"})))
        .await;
    for ttl in [0, 86_401] {
        let (status, _) = f
            .call(
                "POST",
                "/api/v1/users/bob/pairing-links",
                Some(json!({"ttl_seconds": ttl})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let before = crate::model::unix_now();
    let (status, body) = f
        .call("POST", "/api/v1/users/bob/pairing-links", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().unwrap();
    let token = url
        .strip_prefix("http://192.0.2.10:47989/pin/?link=")
        .expect("the PIN page with the token");
    assert_eq!(links.check(token).unwrap().as_str(), "bob");
    let expires = body["expires_at"].as_u64().unwrap();
    assert!((before + 900..=before + 901).contains(&expires), "{body}");
    let (_, body) = f
        .call(
            "POST",
            "/api/v1/users/bob/pairing-links",
            Some(json!({"ttl_seconds": 60})),
        )
        .await;
    assert!(body["expires_at"].as_u64().unwrap() <= crate::model::unix_now() + 60);
}

/// A browser of the web UI: its session cookie and CSRF token once logged in.
struct Browser<'a> {
    f: &'a Fixture,
    cookie: String,
    csrf: String,
}

impl Fixture {
    async fn account(&self, name: &str, password: &str, admin: bool) {
        let mut user = User::new(name.parse().unwrap());
        user.password = Some(crate::accounts::PasswordHash::new(password).unwrap());
        user.admin = admin;
        self.stores.users.put(user).await.unwrap();
    }

    async fn login(&self, name: &str, password: &str) -> Result<Browser<'_>, StatusCode> {
        let request = Request::builder()
            .method("POST")
            .uri("/ui/login")
            .header("content-type", "application/json")
            .header("host", "192.0.2.10:47990")
            .header("origin", "https://192.0.2.10:47990")
            .body(Full::new(Bytes::from(
                json!({"user": name, "password": password}).to_string(),
            )))
            .unwrap();
        let reply = self.api.handle(request, CLIENT).await;
        let cookie = reply
            .headers()
            .get("set-cookie")
            .map(|c| c.to_str().unwrap().to_owned());
        let (status, body, _) = reply_parts(reply).await;
        if status != StatusCode::OK {
            assert!(cookie.is_none(), "no cookie without a login");
            return Err(status);
        }
        let cookie = cookie.expect("a session cookie");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=43200"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert_eq!(body["user"], json!(name));
        Ok(Browser {
            f: self,
            cookie: cookie.split(';').next().unwrap().to_owned(),
            csrf: body["csrf"].as_str().unwrap().to_owned(),
        })
    }
}

impl Browser<'_> {
    /// A request with the cookie; `csrf` and `origin` as given.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
        origin: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("cookie", &self.cookie)
            .header("content-type", "application/json")
            .header("host", "192.0.2.10:47990");
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let (status, json, _) = reply_parts(self.f.api.handle(request, CLIENT).await).await;
        (status, json)
    }

    /// A request as the page sends it: CSRF token and this server's origin.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(
            method,
            path,
            body,
            Some(&self.csrf.clone()),
            Some("https://192.0.2.10:47990"),
        )
        .await
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_assets_and_a_strict_policy() {
    let f = fixture();
    for (path, kind, needle) in [
        ("/", "text/html", "<main>"),
        ("/ui/app.js", "text/javascript", "X-CSRF-Token"),
        ("/ui/style.css", "text/css", "@media"),
    ] {
        let request = Request::builder()
            .uri(path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = f.api.handle(request, CLIENT).await;
        assert_eq!(reply.status(), StatusCode::OK, "{path}");
        let headers = reply.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let (_, _, bytes) = reply_parts(reply).await;
        assert!(String::from_utf8(bytes).unwrap().contains(needle), "{path}");
    }
    let html = ui::INDEX_HTML;
    assert!(!html.contains("http://") && !html.contains("https://"), "no CDN");
    assert!(html.contains("name=\"viewport\""));
    let request = Request::builder()
        .uri("/nothing")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        f.api.handle(request, CLIENT).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_person_logs_in_and_manages_only_their_own_pairings() {
    let f = fixture();
    f.account("bob", "bob's long password", false).await;
    f.stores
        .users
        .put(User::new("carol".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        f.login("bob", "not bob's password").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        f.login("carol", "carol has none").await.err(),
        Some(StatusCode::UNAUTHORIZED),
        "an account without a password cannot log in"
    );
    let bob = f.login("bob", "bob's long password").await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            f.login("bob", "guessing").await.err(),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
    assert_eq!(
        f.login("bob", "bob's long password").await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS),
        "after 5 wrong passwords from this network, even the right one waits"
    );
    let bobs = f.pairing("bob").await;
    let carols = f.pairing("carol").await;
    f.session("bob", "s1").await;
    f.session("carol", "s2").await;

    let (status, body) = bob.call("GET", "/api/v1/pairings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["fingerprint"], json!(bobs.as_str()));
    let (_, body) = bob.call("GET", "/api/v1/sessions", None).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["user"], json!("bob"));
    let (status, _) = bob.call("GET", "/api/v1/apps", None).await;
    assert_eq!(status, StatusCode::OK);

    // Another person's pairing is not found; administrator routes are forbidden.
    let (status, _) = bob
        .call("DELETE", &format!("/api/v1/pairings/{carols}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (method, path, body) in [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", Some(json!({"name": "eve"}))),
        ("POST", "/api/v1/apps", Some(json!({"title": "Evil"}))),
        ("DELETE", "/api/v1/sessions/s2", None),
    ] {
        let (status, _) = bob.call(method, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert!(
        f.stores
            .users
            .get(&"eve".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(f.stores.sessions.list().await.unwrap().len(), 2);

    // Cross-site: no CSRF token, another's, or another origin: 403, nothing revoked.
    let own = format!("/api/v1/pairings/{bobs}");
    for (csrf, origin) in [
        (None, None),
        (None, Some("https://192.0.2.10:47990")),
        (Some("0000"), None),
        (Some(bob.csrf.as_str()), Some("https://evil.example")),
    ] {
        let (status, body) = bob.send("DELETE", &own, None, csrf, origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?} {origin:?}");
        assert!(error_of(&body).contains("cross-site"), "{body}");
    }
    assert!(f.stores.pairings.get(&bobs).await.unwrap().is_some());
    let (status, _) = bob.call("DELETE", &own, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.stores.pairings.get(&bobs).await.unwrap().is_none());
    assert!(f.stores.pairings.get(&carols).await.unwrap().is_some());

    // Logged out: the cookie is refused.
    let (status, _) = bob.call("POST", "/ui/logout", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = bob.call("GET", "/api/v1/pairings", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_person_approves_a_pending_pairing_for_themselves_only() {
    let f = fixture();
    f.account("bob", "bob's long password", false).await;
    f.stores
        .users
        .put(User::new("carol".parse().unwrap()))
        .await
        .unwrap();
    let bob = f.login("bob", "bob's long password").await.unwrap();
    let secret = f
        .broker
        .open(PendingPinRequest {
            client_ip: "192.0.2.4".parse().unwrap(),
            device_name: Some("roth".into()),
        })
        .await
        .unwrap();
    let approve = format!("/api/v1/pending-pairings/{}/approve", secret.as_str());
    let (status, _) = bob
        .call("POST", &approve, Some(json!({"pin": "1234", "user": "carol"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = bob.call("GET", "/api/v1/pending-pairings", None).await;
    assert_eq!((status, body.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (status, _) = bob.call("POST", &approve, Some(json!({"pin": "1234"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        f.broker.wait(&secret, Duration::from_secs(1)),
    )
    .await
    .expect("the broker hands the PIN over at once")
    .unwrap();
    assert_eq!(got.user.unwrap().as_str(), "bob", "the pairing is bob's");
}

#[tokio::test]
async fn an_administrator_may_do_what_the_token_may_until_removed() {
    let f = fixture();
    f.account("alice", "alice's long password", true).await;
    let alice = f.login("alice", "alice's long password").await.unwrap();
    let (status, _) = alice
        .call("POST", "/api/v1/users", Some(json!({"name": "dave"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = alice
        .call("POST", "/api/v1/apps", Some(json!({"title": "Notes"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = alice
        .send("POST", "/api/v1/users", Some(json!({"name": "eve"})), None, None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an administrator's change needs the CSRF token too"
    );
    // A login from another site is refused.
    let request = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header("content-type", "application/json")
        .header("host", "192.0.2.10:47990")
        .header("origin", "https://evil.example")
        .body(Full::new(Bytes::from(
            json!({"user": "alice", "password": "alice's long password"}).to_string(),
        )))
        .unwrap();
    assert_eq!(
        f.api.handle(request, CLIENT).await.status(),
        StatusCode::FORBIDDEN
    );
    // A removed account's session ends.
    f.stores.users.delete(&"alice".parse().unwrap()).await.unwrap();
    let (status, _) = alice.call("GET", "/api/v1/users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn identity_headers_from_an_untrusted_address_are_refused_even_with_the_token() {
    let f = fixture();
    let proxy: IpAddr = "10.0.0.5".parse().unwrap();
    let api = f
        .api
        .clone()
        .with_trusted_proxies(identity_headers::TrustedProxies::new(&["10.0.0.5/32"
            .parse()
            .unwrap()]));
    let request = |path: &str| {
        Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {}", f.token.expose()))
            .header("x-forwarded-user", "admin")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for path in ["/api/v1/users", "/"] {
        let (status, body, _) = reply_parts(api.handle(request(path), CLIENT).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["error"], identity_headers::SPOOFED, "{path}");
    }
    // From the proxy the headers are not refused (nor believed: the token decides).
    let (status, _, _) = reply_parts(api.handle(request("/api/v1/users"), Some(proxy)).await).await;
    assert_eq!(status, StatusCode::OK);
}

/// A request from `client` with `headers` (and a JSON body, if any).
fn request_with(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "192.0.2.10:47990")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    request.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn a_login_proxy_logs_the_person_it_names_in_to_the_web_ui() {
    let f = fixture();
    f.account("root", "a long password", true).await;
    let proxy: Option<IpAddr> = Some("10.0.0.5".parse().unwrap());
    let api = f
        .api
        .clone()
        .with_trusted_proxies(identity_headers::TrustedProxies::new(&["10.0.0.5/32"
            .parse()
            .unwrap()]));
    let send = |request, client| {
        let api = api.clone();
        async move { api.handle(request, client).await }
    };
    let origin = ("origin", "https://192.0.2.10:47990");

    // The page asks who is logged in: the person the proxy names, created, with a session.
    let reply = send(
        request_with("GET", "/ui/session", &[("x-forwarded-user", "Ada.L")], None),
        proxy,
    )
    .await;
    let cookie = reply
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned());
    let (status, body, _) = reply_parts(reply).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["user"], &body["admin"]), (&json!("ada-l"), &json!(false)));
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    let ada: UserName = "ada-l".parse().unwrap();
    assert!(
        f.stores.users.get(&ada).await.unwrap().is_some(),
        "ada-l was created"
    );

    // Her session works through the proxy as hers: her own data; an administrator's route is 403.
    let as_ada = [
        ("cookie", cookie.as_str()),
        ("x-forwarded-user", "Ada.L"),
        ("x-csrf-token", &csrf),
        origin,
    ];
    let (status, _, _) =
        reply_parts(send(request_with("GET", "/api/v1/pairings", &as_ada, None), proxy).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = reply_parts(
        send(
            request_with("POST", "/api/v1/users", &as_ada, Some(json!({"name": "eve"}))),
            proxy,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The proxy now names someone else: her cookie is refused for the API, and the page's next
    // session request logs root in instead.
    let switched = [
        ("cookie", cookie.as_str()),
        ("x-forwarded-user", "root"),
        ("x-csrf-token", &csrf),
        origin,
    ];
    let (status, body, _) =
        reply_parts(send(request_with("GET", "/api/v1/pairings", &switched, None), proxy).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body, _) =
        reply_parts(send(request_with("GET", "/ui/session", &switched, None), proxy).await).await;
    assert_eq!(
        (status, &body["user"], &body["admin"]),
        (StatusCode::OK, &json!("root"), &json!(true))
    );
    let (status, _, _) =
        reply_parts(send(request_with("GET", "/api/v1/pairings", &as_ada, None), proxy).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "ada's session was closed");

    // Without a session the proxy's word allows reads, never changes (a cross-site form).
    let bare = [("x-forwarded-user", "root"), origin];
    let (status, body, _) =
        reply_parts(send(request_with("GET", "/api/v1/users", &bare, None), proxy).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) =
        reply_parts(send(request_with("DELETE", "/api/v1/users/ada-l", &bare, None), proxy).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error_of(&body).contains("web UI's session"), "{body}");
    assert!(
        f.stores.users.get(&ada).await.unwrap().is_some(),
        "nothing was removed"
    );

    // Anyone else naming a user is refused; a name that makes no user name is a 400.
    let (status, _, _) =
        reply_parts(send(request_with("GET", "/ui/session", &bare, None), CLIENT).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = reply_parts(
        send(
            request_with("GET", "/ui/session", &[("x-forwarded-user", "...")], None),
            proxy,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logging_out_of_a_proxys_session_sends_the_person_to_the_proxys_sign_out() {
    let f = fixture();
    let proxy: Option<IpAddr> = Some("10.0.0.5".parse().unwrap());
    let proxies = identity_headers::TrustedProxies::new(&["10.0.0.5/32".parse().unwrap()])
        .with_sign_out("/oauth2/sign_out")
        .unwrap();
    let api = f.api.clone().with_trusted_proxies(proxies);
    let named = [("x-forwarded-user", "ada")];
    let reply = api
        .handle(request_with("GET", "/ui/session", &named, None), proxy)
        .await;
    let cookie = reply.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (_, body, _) = reply_parts(reply).await;
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    let out = [
        ("cookie", cookie.as_str()),
        ("x-forwarded-user", "ada"),
        ("x-csrf-token", &csrf),
        ("origin", "https://192.0.2.10:47990"),
    ];
    let reply = api
        .handle(request_with("POST", "/ui/logout", &out, None), proxy)
        .await;
    let cleared = reply.headers()["set-cookie"].to_str().unwrap().to_owned();
    let (status, body, _) = reply_parts(reply).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sign_out"], "/oauth2/sign_out");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, _, _) = reply_parts(
        api.handle(request_with("GET", "/api/v1/pairings", &out[..1], None), proxy)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session is closed");
}
