//! The server over real sockets on 127.0.0.1: pairing, authorisation, launch, bad input.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{
    App, AppAsset, AppId, LaunchError, LaunchOutcome, LaunchRequest, Launcher, PinBroker, ResumeRequest,
    SessionId, Stores, UserName,
};
use direwolf_moonlight::MoonlightServer;
use direwolf_moonlight::crypto::CertificateInfo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

async fn full_pairing(client: Client) {
    let h = Harness::start().await;
    let phase4 = pair(&h, &client, "1234", "1234", None).await;
    assert_eq!(
        phase4.text(),
        format!("{DECL}<root status_code=\"200\"><paired>1</paired></root>")
    );
    let fingerprint = client.info().fingerprint();
    let stored = h
        .stores
        .pairings
        .get(&fingerprint)
        .await
        .unwrap()
        .expect("pairing persisted in phase 4");
    assert_eq!(stored.user, UserName::default_user());
    assert_eq!(stored.cert_pem, client.cert_pem);
    assert_eq!(stored.device_name.as_deref(), Some("roth"));
    assert!(
        h.stores
            .users
            .get(&UserName::default_user())
            .await
            .unwrap()
            .is_some(),
        "user created"
    );

    // Phase 5 over HTTPS with the client certificate; the TLS leaf equals plaincert.
    let (r, server_der) = h
        .get_tls(
            Some(&client),
            "/pair?uniqueid=0123456789ABCDEF&phrase=pairchallenge",
        )
        .await;
    assert_eq!(
        r.text(),
        format!("{DECL}<root status_code=\"200\"><paired>1</paired></root>")
    );
    assert_eq!(server_der, CertificateInfo::from_pem(SERVER_CERT).unwrap().der());

    let (r, _) = h
        .get_tls(Some(&client), "/serverinfo?uniqueid=0123456789ABCDEF")
        .await;
    assert_eq!(r.element("PairStatus").as_deref(), Some("1"));
    assert_eq!(r.element("state").as_deref(), Some("SUNSHINE_SERVER_FREE"));
    assert_eq!(r.element("currentgame").as_deref(), Some("0"));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/xml; charset=utf-8")
    );
    h.shutdown().await;
}

#[tokio::test]
async fn full_pairing_with_a_serial_1_certificate() {
    full_pairing(Client::vector_c()).await;
}

/// qt, ios and embedded send serial-0 certificates; rustls must accept them in the handshake.
#[tokio::test]
async fn full_pairing_with_a_serial_0_certificate() {
    let client = Client::serial_zero();
    assert!(client.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    full_pairing(client).await;
}

#[tokio::test]
async fn pairing_is_attributed_to_the_pin_page_user() {
    let h = Harness::start().await;
    let client = Client::vector_c();
    let phase4 = pair(&h, &client, "5678", "5678", Some("alice")).await;
    assert_eq!(phase4.element("paired").as_deref(), Some("1"));
    let stored = h
        .stores
        .pairings
        .get(&client.info().fingerprint())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.user.as_str(), "alice");
    assert!(h.stores.users.get(&stored.user).await.unwrap().is_some());
    // Re-pairing the same certificate is an upsert.
    pair(&h, &client, "1111", "1111", Some("bob")).await;
    let pairings = h.stores.pairings.list().await.unwrap();
    assert_eq!(pairings.len(), 1);
    assert_eq!(pairings[0].user.as_str(), "bob");
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_pin_fails_at_phase_4() {
    let metrics = direwolf_core::metrics::Metrics::new();
    let counted = direwolf_core::metrics::PairingMetrics::register(&metrics);
    let h = Harness::start_with(|b| b.with_pairing_metrics(counted)).await;
    let client = Client::vector_c();
    let phase4 = pair(&h, &client, "1234", "4321", None).await;
    let outcome = |name: &str| {
        let series = format!("direwolf_pairing_attempts_total{{outcome=\"{name}\"}} ");
        let text = metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()).map(str::to_owned))
    };
    assert_eq!(outcome("wrong_pin").as_deref(), Some("1"));
    assert_eq!(outcome("paired").as_deref(), Some("0"), "nothing paired yet");
    assert_eq!(phase4.status, 200);
    assert_eq!(
        phase4.text(),
        format!("{DECL}<root status_code=\"200\"><paired>0</paired></root>")
    );
    assert!(h.stores.pairings.list().await.unwrap().is_empty());
    let (r, _) = h.get_tls(Some(&client), "/pair?phrase=pairchallenge").await;
    assert_eq!(r.xml_status(), Some(401));
    pair(&h, &client, "1234", "1234", None).await;
    assert_eq!(outcome("paired").as_deref(), Some("1"));
    assert_eq!(outcome("wrong_pin").as_deref(), Some("1"));
    h.shutdown().await;
}

#[tokio::test]
async fn unpaired_certificates_get_the_xml_401() {
    let h = Harness::start().await;
    for path in ["/applist", "/serverinfo", "/launch", "/pair"] {
        let (r, _) = h
            .get_tls(
                Some(&Client::vector_c()),
                &format!("{path}?uniqueid=0123456789ABCDEF"),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            format!(
                "{DECL}<root status_code=\"401\" query=\"{path}\" status_message=\"The client is not authorized. \
                 Certificate verification failed.\"/>"
            )
        );
    }
    // No certificate at all: the handshake completes and the request is refused the same way.
    let (r, _) = h.get_tls(None, "/applist").await;
    assert_eq!((r.status, r.xml_status()), (200, Some(401)));
    // HTTPS-only endpoints over HTTP.
    let r = h.get("/applist").await;
    assert_eq!((r.status, r.xml_status()), (200, Some(401)));
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let h = Harness::start().await;
    let r = h.get("/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), format!("{DECL}<root status_code=\"404\"/>"));
    let (r, _) = h.get_tls(Some(&Client::vector_c()), "/serverinfo/").await;
    assert_eq!(r.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn http_serverinfo_is_the_unpaired_view() {
    let h = Harness::start().await;
    let r = h.get("/serverinfo").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.element("PairStatus").as_deref(), Some("0"));
    assert_eq!(r.element("currentgame").as_deref(), Some("0"));
    assert_eq!(r.element("state").as_deref(), Some("SUNSHINE_SERVER_FREE"));
    assert_eq!(r.element("HttpsPort"), Some(h.https.port().to_string()));
    assert_eq!(r.element("ExternalPort"), Some(h.http.port().to_string()));
    assert_eq!(r.element("LocalIP").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.element("uniqueid").as_deref(),
        Some("1f0e4c2a-7b3d-4e59-9a61-3c2d8e0b5f47")
    );
    assert_eq!(r.element("appversion").as_deref(), Some("7.1.431.-1"));
    assert_eq!(r.element("ServerCodecModeSupport").as_deref(), Some("257"));
    assert_eq!(r.text().matches("<DisplayMode>").count(), 15);
    assert_eq!(r.headers.get("connection").map(String::as_str), Some("close"));
    assert!(!r.text().contains("\n<root status_code=\"200\">\n"));
    h.shutdown().await;
}

#[tokio::test]
async fn pin_entry_times_out() {
    let h = Harness::start_with(|b| b.with_pin_timeout(Duration::from_millis(300))).await;
    let r = h.get(&phase1_path(&Client::vector_c())).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "{DECL}<root status_code=\"400\" status_message=\"PIN entry timed out\"><paired>0</paired></root>"
        )
    );
    within("broker entry closed", async {
        while !h.broker.pending().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_newer_phase_1_supersedes_and_unpair_leaves_it_alone() {
    let h = Harness::start().await;
    let client = Client::vector_c();
    let spawn_phase1 = || {
        let path = phase1_path(&client);
        let addr = h.http;
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            within("phase 1", request(stream, "GET", &path, None)).await
        })
    };
    let first = spawn_phase1();
    let first_secret = h.pending_secret().await;
    let second = spawn_phase1();
    let first = within("superseded reply", first).await.unwrap();
    assert_eq!(
        first.text(),
        format!(
            "{DECL}<root status_code=\"400\" status_message=\"Superseded by a newer pairing attempt\"><paired>0</paired></root>"
        )
    );
    // ios and embedded answer the failure with /unpair: it must not cancel the newer attempt.
    let r = h.get("/unpair?uniqueid=0123456789ABCDEF&uuid=x").await;
    assert_eq!(
        (r.status, r.text()),
        (200, format!("{DECL}<root status_code=\"200\"/>"))
    );
    let second_secret = within("second entry", async {
        loop {
            let pending = h.broker.pending().await.unwrap();
            if pending.len() == 1 && pending[0].secret.as_str() != first_secret {
                return pending[0].secret.as_str().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let r = h
        .post_pin(&format!(r#"{{"pin":"1234","secret":"{first_secret}"}}"#))
        .await;
    assert_eq!(r.status, 400, "the superseded secret is gone");
    let r = h
        .post_pin(&format!(r#"{{"pin":"1234","secret":"{second_secret}"}}"#))
        .await;
    assert_eq!(r.status, 200);
    let second = within("second phase 1", second).await.unwrap();
    assert_eq!(second.element("paired").as_deref(), Some("1"));
    h.shutdown().await;
}

#[tokio::test]
async fn unpair_never_touches_stored_pairings() {
    let h = Harness::start().await;
    let client = Client::vector_c();
    pair(&h, &client, "1234", "1234", None).await;
    let r = h.get("/unpair?uniqueid=0123456789ABCDEF").await;
    assert_eq!(r.text(), format!("{DECL}<root status_code=\"200\"/>"));
    assert_eq!(h.stores.pairings.list().await.unwrap().len(), 1);
    let (r, _) = h.get_tls(Some(&client), "/applist").await;
    assert_eq!(r.xml_status(), Some(200));
    // /unpair after phase 1 abandons the in-flight handshake.
    let phase1 = tokio::spawn({
        let (addr, path) = (h.http, phase1_path(&client));
        async move { request(TcpStream::connect(addr).await.unwrap(), "GET", &path, None).await }
    });
    let secret = h.pending_secret().await;
    h.post_pin(&format!(r#"{{"pin":"1234","secret":"{secret}"}}"#))
        .await;
    within("phase 1", phase1).await.unwrap();
    h.get("/unpair?uniqueid=0123456789ABCDEF").await;
    let r = h
        .get("/pair?uniqueid=0123456789ABCDEF&clientchallenge=00000000000000000000000000000000")
        .await;
    assert_eq!(
        r.text(),
        format!(
            "{DECL}<root status_code=\"400\" status_message=\"No pairing in progress\"><paired>0</paired></root>"
        )
    );
    h.shutdown().await;
}

#[tokio::test]
async fn closing_the_connection_ends_the_pin_wait() {
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.http).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: t\r\n\r\n",
        phase1_path(&Client::vector_c())
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    h.pending_secret().await;
    drop(stream);
    within("the held phase 1 to notice the closed connection", async {
        while !h.broker.pending().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn bad_pairing_requests_get_xml_errors() {
    let h = Harness::start().await;
    for (path, message) in [
        (
            "/pair?uniqueid=x&phrase=getservercert&salt=00&clientcert=00",
            "Salt too short",
        ),
        (
            "/pair?uniqueid=x&phrase=getservercert&salt=zz&clientcert=00",
            "Invalid salt: not a hex string",
        ),
        (
            "/pair?uniqueid=x&clientchallenge=00",
            "Invalid clientchallenge: expected 16 bytes",
        ),
        (
            "/pair?uniqueid=x&serverchallengeresp=0000000000000000000000000000000000000000000000000000000000000000",
            "No pairing in progress",
        ),
        ("/pair?uniqueid=x", "Invalid pairing request"),
        (
            "/pair?uniqueid=x&phrase=pairchallenge",
            "pairchallenge must be sent over HTTPS",
        ),
        ("/pair?uniqueid=%zz", "Bad query string"),
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.text().contains(&format!("status_message=\"{message}")),
            "{path}: {}",
            r.text()
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_lives_on() {
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.http).await.unwrap();
    let huge = "a".repeat(64 * 1024);
    let head = format!("GET /serverinfo HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let response = within("oversized header reply", read_response(&mut stream)).await;
    if let Some(r) = response {
        assert_eq!(r.status, 431);
    }
    // A long but acceptable request line (a 4096-bit key's phase-1 URL is ~3.5 KiB) still works.
    let long = format!(
        "/serverinfo?uniqueid=0123456789ABCDEF&pad={}",
        "b".repeat(12 * 1024)
    );
    assert_eq!(h.get(&long).await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn slow_headers_time_out() {
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.http).await.unwrap();
    stream
        .write_all(b"GET /serverinfo HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The harness allows 500 ms for headers: the server must close the connection.
    let read = within("the server to drop a slow client", stream.read_to_end(&mut buf)).await;
    assert!(read.is_err() || !String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(h.get("/serverinfo").await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn tls_garbage_does_not_hurt() {
    let h = Harness::start().await;
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
        &[0u8; 4096],
    ] {
        let mut stream = TcpStream::connect(h.https).await.unwrap();
        let _ = stream.write_all(garbage).await;
        let mut buf = Vec::new();
        let _ = within(
            "the server to drop a garbage TLS client",
            stream.read_to_end(&mut buf),
        )
        .await;
    }
    let (r, _) = h.get_tls(None, "/serverinfo").await;
    assert_eq!(r.xml_status(), Some(401));
    assert_eq!(h.get("/serverinfo").await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn pin_page_is_served() {
    let h = Harness::start().await;
    let r = h.get("/pin/").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("location.hash"));
    let r = h.post_pin("{").await;
    assert_eq!(r.status, 400);
    h.shutdown().await;
}

/// A raw `POST /pin/` with these extra header lines; the answer.
async fn post_pin_raw(h: &Harness, extra_headers: &str, body: &str) -> Response {
    let mut stream = TcpStream::connect(h.http).await.unwrap();
    let request = format!(
        "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        h.http.port(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    within("POST /pin/", read_response(&mut stream)).await.unwrap()
}

#[tokio::test]
async fn cross_site_pin_submissions_are_refused() {
    let h = Harness::start().await;
    let port = h.http.port();
    let body = r#"{"pin":"1234","secret":"0123456789ABCDEF"}"#;
    // What a cross-site page can send without a preflight: text/plain.
    let r = post_pin_raw(
        &h,
        "Content-Type: text/plain\r\nOrigin: http://evil.example\r\n",
        body,
    )
    .await;
    assert_eq!(r.status, 415);
    assert!(r.text().contains("application/json"), "{}", r.text());
    // JSON, but from another origin.
    let r = post_pin_raw(
        &h,
        "Content-Type: application/json\r\nOrigin: http://evil.example\r\n",
        body,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("other web pages"), "{}", r.text());
    // The page's own origin gets as far as the secret (unknown here).
    let own = format!("Content-Type: application/json\r\nOrigin: http://127.0.0.1:{port}\r\n");
    let r = post_pin_raw(&h, &own, body).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("No pairing is waiting"), "{}", r.text());
    h.shutdown().await;
}

/// A launcher that records what it was asked, with a catalog of its own (launchers check the
/// app, the server does not).
#[derive(Debug, Default)]
struct FakeLauncher {
    apps: Vec<AppId>,
    running: Mutex<HashMap<UserName, AppId>>,
    launches: Mutex<Vec<LaunchRequest>>,
    resumes: Mutex<Vec<ResumeRequest>>,
}

#[async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        if !self.apps.contains(&request.app) {
            return Err(LaunchError::UnknownApp(request.app));
        }
        let url = format!("rtsp://{}:48010", request.server_ip);
        let session = SessionId::generate(&request.user, request.app);
        self.running
            .lock()
            .unwrap()
            .insert(request.user.clone(), request.app);
        self.launches.lock().unwrap().push(request);
        Ok(LaunchOutcome {
            session,
            session_url: url,
        })
    }
    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let app = *self
            .running
            .lock()
            .unwrap()
            .get(&request.user)
            .ok_or(LaunchError::NotRunning)?;
        let session = SessionId::generate(&request.user, app);
        self.resumes.lock().unwrap().push(request);
        Ok(LaunchOutcome {
            session,
            session_url: "rtsp://127.0.0.1:48010".into(),
        })
    }
    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        self.running.lock().unwrap().remove(user);
        Ok(())
    }
    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        self.running.lock().unwrap().get(user).copied()
    }
}

async fn paired_stores(stores: &Stores, client: &Client) {
    store_pairing(stores, client).await;
    stores
        .apps
        .put(App::new(AppId::new(1).unwrap(), "Firefox").unwrap(), None)
        .await
        .unwrap();
    let png = AppAsset::png(b"\x89PNG\r\n\x1a\nfake".to_vec()).unwrap();
    stores
        .apps
        .put(
            App::new(AppId::new(2).unwrap(), "Steam").unwrap().with_hdr(true),
            Some(png),
        )
        .await
        .unwrap();
}

/// A server with a fake launcher of apps 1 and 2, and a client paired with it.
async fn paired_with_launcher() -> (Harness, Arc<FakeLauncher>, Client) {
    let launcher = Arc::new(FakeLauncher {
        apps: vec![AppId::new(1).unwrap(), AppId::new(2).unwrap()],
        ..FakeLauncher::default()
    });
    let h = Harness::start_with({
        let launcher = launcher.clone();
        |b| b.with_launcher(launcher)
    })
    .await;
    let client = Client::serial_zero();
    paired_stores(&h.stores, &client).await;
    (h, launcher, client)
}

const LAUNCH: &str = "/launch?uniqueid=0123456789ABCDEF&uuid=u&appid=2&mode=1280x720x60&additionalStates=1&sops=1\
    &rikey=773448F67992470C5C62848D361E1025&rikeyid=-1264532526&localAudioPlayMode=0&surroundAudioInfo=196610\
    &remoteControllersBitmap=1&gcmap=1&gcpersist=0&&corever=1";

#[tokio::test]
async fn apps_launch_resume_cancel() {
    let (h, launcher, client) = paired_with_launcher().await;

    let (r, _) = h
        .get_tls(Some(&client), "/applist?uniqueid=0123456789ABCDEF")
        .await;
    assert_eq!(
        r.text(),
        format!(
            "{DECL}<root status_code=\"200\"><App><IsHdrSupported>0</IsHdrSupported><AppTitle>Firefox</AppTitle><ID>1</ID></App><App><IsHdrSupported>1</IsHdrSupported><AppTitle>Steam</AppTitle><ID>2</ID></App></root>"
        )
    );
    let (r, _) = h
        .get_tls(Some(&client), "/appasset?appid=2&AssetType=2&AssetIdx=0")
        .await;
    assert_eq!((r.status, r.headers["content-type"].as_str()), (200, "image/png"));
    assert!(r.body.starts_with(b"\x89PNG"));
    let (r, _) = h
        .get_tls(Some(&client), "/appasset?appid=1&AssetType=2&AssetIdx=0")
        .await;
    assert_eq!((r.status, r.xml_status()), (200, Some(404)));
    let (r, _) = h.get_tls(Some(&client), "/appasset?appid=x").await;
    assert_eq!((r.status, r.xml_status()), (200, Some(400)));

    let (r, _) = h.get_tls(Some(&client), LAUNCH).await;
    assert_eq!(
        r.text(),
        format!(
            "{DECL}<root status_code=\"200\"><sessionUrl0>rtsp://127.0.0.1:48010</sessionUrl0><gamesession>1</gamesession></root>"
        )
    );
    {
        let launches = launcher.launches.lock().unwrap();
        let l = &launches[0];
        assert_eq!(
            (l.app.get(), l.mode.width, l.keys.aes_iv.signed(), l.gamepads),
            (2, 1280, -1264532526, 1)
        );
        assert_eq!(l.user, UserName::default_user());
        assert_eq!(l.pairing, client.info().fingerprint());
        assert_eq!(l.client_ip.to_string(), "127.0.0.1");
    }
    let (r, _) = h.get_tls(Some(&client), "/serverinfo").await;
    assert_eq!(r.element("state").as_deref(), Some("SUNSHINE_SERVER_BUSY"));
    assert_eq!(r.element("currentgame").as_deref(), Some("2"));
    // The HTTP view never reveals a user's state.
    assert_eq!(
        h.get("/serverinfo").await.element("currentgame").as_deref(),
        Some("0")
    );

    // python's resume: only rikey, rikeyid, surroundAudioInfo.
    let (r, _) = h
        .get_tls(Some(&client), "/resume?uniqueid=0123456789ABCDEF&rikey=00112233445566778899AABBCCDDEEFF&rikeyid=7&surroundAudioInfo=196610&corever=1")
        .await;
    assert_eq!(
        r.text(),
        format!(
            "{DECL}<root status_code=\"200\"><sessionUrl0>rtsp://127.0.0.1:48010</sessionUrl0><resume>1</resume></root>"
        )
    );
    assert_eq!(launcher.resumes.lock().unwrap()[0].keys.aes_iv.signed(), 7);

    let (r, _) = h
        .get_tls(Some(&client), "/cancel?uniqueid=0123456789ABCDEF")
        .await;
    assert_eq!(
        r.text(),
        format!("{DECL}<root status_code=\"200\"><cancel>1</cancel></root>")
    );
    let (r, _) = h.get_tls(Some(&client), "/serverinfo").await;
    assert_eq!(r.element("state").as_deref(), Some("SUNSHINE_SERVER_FREE"));
    let (r, _) = h
        .get_tls(
            Some(&client),
            "/resume?rikey=00112233445566778899AABBCCDDEEFF&rikeyid=7",
        )
        .await;
    assert!(r.text().ends_with(
        "status_code=\"503\" status_message=\"No running app to resume\"><resume>0</resume></root>"
    ));

    let (r, _) = h
        .get_tls(Some(&client), &LAUNCH.replace("appid=2", "appid=9"))
        .await;
    assert_eq!((r.status, r.xml_status()), (200, Some(404)));
    assert!(r.text().ends_with("<gamesession>0</gamesession></root>"));
    let (r, _) = h.get_tls(Some(&client), "/launch?appid=2").await;
    assert_eq!((r.status, r.xml_status()), (200, Some(400)));
    h.shutdown().await;
}

#[tokio::test]
async fn a_user_sees_and_launches_only_their_apps_from_the_next_request_on() {
    let (h, launcher, client) = paired_with_launcher().await;
    let mut user = direwolf_core::User::new(UserName::default_user());
    user.apps = Some(vec![AppId::new(1).unwrap()]);
    h.stores.users.put(user.clone()).await.unwrap();

    let (r, _) = h.get_tls(Some(&client), "/applist").await;
    assert!(r.text().contains("<AppTitle>Firefox</AppTitle>"), "{}", r.text());
    assert!(
        !r.text().contains("Steam"),
        "app 2 is not this user's: {}",
        r.text()
    );
    let (r, _) = h
        .get_tls(Some(&client), "/appasset?appid=2&AssetType=2&AssetIdx=0")
        .await;
    assert_eq!((r.status, r.xml_status()), (200, Some(404)), "nor is its image");
    let (r, _) = h.get_tls(Some(&client), LAUNCH).await;
    assert_eq!(r.xml_status(), Some(403));
    assert!(
        r.text().contains("app 2 is not available to you")
            && r.text().ends_with("<gamesession>0</gamesession></root>"),
        "{}",
        r.text()
    );
    assert!(
        launcher.launches.lock().unwrap().is_empty(),
        "the launcher never saw it"
    );
    let (r, _) = h
        .get_tls(Some(&client), &LAUNCH.replace("appid=2", "appid=1"))
        .await;
    assert_eq!(r.xml_status(), Some(200), "{}", r.text());

    // Every app again: the very next request sees it.
    user.apps = None;
    h.stores.users.put(user).await.unwrap();
    let (r, _) = h.get_tls(Some(&client), "/applist").await;
    assert!(r.text().contains("Steam"), "{}", r.text());
    h.shutdown().await;
}

#[tokio::test]
async fn without_a_streaming_host_launch_explains_itself() {
    let h = Harness::start().await;
    let client = Client::vector_c();
    paired_stores(&h.stores, &client).await;
    let (r, _) = h.get_tls(Some(&client), LAUNCH).await;
    assert_eq!((r.status, r.xml_status()), (200, Some(503)));
    assert!(r.text().contains("No streaming host is configured"));
    assert!(r.text().ends_with("<gamesession>0</gamesession></root>"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_generated_identity_is_stored_and_reused() {
    let stores = Stores::in_memory();
    let build = || {
        MoonlightServer::builder()
            .with_stores(stores.clone())
            .with_bind_addrs(vec!["127.0.0.1".parse().unwrap()])
            .with_http_port(0)
            .with_https_port(0)
            .with_mdns(false)
            .build()
    };
    let first = within("build", build()).await.unwrap();
    let second = within("build", build()).await.unwrap();
    assert_eq!(first.server_fingerprint(), second.server_fingerprint());
    assert_eq!(first.unique_id(), second.unique_id());
    let stored = stores.identity.load().await.unwrap().unwrap();
    assert_eq!(
        CertificateInfo::from_pem(&stored.cert_pem).unwrap().fingerprint(),
        first.server_fingerprint()
    );
    assert_ne!(first.http_addrs()[0].port(), 0);
    assert_ne!(first.http_addrs()[0].port(), first.https_addrs()[0].port());
}

/// A PIN typed long after the request headers arrived: the header timeout must not cut the
/// held phase 1 (the harness allows 500 ms for headers).
#[tokio::test]
async fn a_slow_pin_outlives_the_header_timeout() {
    let h = Harness::start().await;
    let phase1 = {
        let (addr, path) = (h.http, phase1_path(&Client::vector_c()));
        tokio::spawn(async move { request(connect(addr).await, "GET", &path, None).await })
    };
    let secret = h.pending_secret().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = h
        .post_pin(&format!(r#"{{"pin":"1234","secret":"{secret}"}}"#))
        .await;
    assert_eq!(r.status, 200);
    let phase1 = within("phase 1", phase1).await.unwrap();
    assert_eq!(
        phase1.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase1.text()
    );
    h.shutdown().await;
}
