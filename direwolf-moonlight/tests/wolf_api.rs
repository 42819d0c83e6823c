//! direwolf's Wolf API (`direwolf_core::wolf_api`) in front of a running Moonlight server, driven
//! by direwolf's own Wolf client as a Wolf manager would drive Wolf: version detection, apps,
//! real pairings through the pending-pair list, clients and unpairing.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::sync::Arc;
use std::time::Duration;

use direwolf_core::wolf_api::{WolfApi, WolfApiSocket};
use direwolf_core::{App, AppCatalog, AppId, PairingStore};
use direwolf_wolf_client::types::{App as WolfApp, PairClientRequest, PairRequest, Runner};
use direwolf_wolf_client::{Error, WolfClient, WolfErrorKind, WolfVersion, client_id_for_cert};
use support::*;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct WolfSide {
    client: WolfClient,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Serves the Wolf API over the harness's stores and broker on a socket in a fresh directory.
fn serve_wolf_api(h: &Harness) -> WolfSide {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wolf.sock");
    let api = WolfApi::new(
        h.stores.apps.clone(),
        h.stores.pairings.clone(),
        Arc::new(h.broker.clone()),
    );
    let socket = WolfApiSocket::bind(&path).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(socket.serve(Arc::new(api), async {
        let _ = stopped.await;
    }));
    let client = WolfClient::builder()
        .with_unix_socket(path.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    WolfSide {
        client,
        _dir: dir,
        path,
        stop,
        task,
    }
}

fn wolf_app(id: &str, title: &str) -> WolfApp {
    WolfApp {
        title: title.into(),
        id: id.into(),
        support_hdr: false,
        icon_png_path: Some("steam.png".into()),
        h264_gst_pipeline: "video/x-raw ! nvh264enc".into(),
        hevc_gst_pipeline: String::new(),
        av1_gst_pipeline: String::new(),
        render_node: "/dev/dri/renderD128".into(),
        opus_gst_pipeline: String::new(),
        start_virtual_compositor: true,
        start_audio_server: true,
        runner: Runner::Process {
            run_cmd: "steam".into(),
        },
    }
}

/// Starts pairing phase 1 for `client` and returns the pending request the Wolf API lists for it,
/// with the task holding phase 1.
async fn start_pairing(
    h: &Harness,
    wolf: &WolfClient,
    client: &Client,
) -> (PairRequest, JoinHandle<Response>) {
    let phase1 = {
        let path = phase1_path(client);
        let addr = h.http;
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            within("phase 1", request(stream, "GET", &path, None)).await
        })
    };
    let pending = within("the pairing is listed as pending", async {
        loop {
            if let Some(p) = wolf.pending_pair_requests().await.unwrap().pop() {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (pending, phase1)
}

/// Gives `server_pin` through the Wolf API, then runs the client side with `client_pin`;
/// returns phase 4's reply.
async fn pair_through_wolf_api(
    h: &Harness,
    wolf: &WolfClient,
    client: &Client,
    server_pin: &str,
    client_pin: &str,
) -> Response {
    let (pending, phase1) = start_pairing(h, wolf, client).await;
    assert_eq!(pending.client_ip, "127.0.0.1");
    wolf.pair_client(&PairClientRequest {
        pair_secret: pending.pair_secret,
        pin: server_pin.into(),
    })
    .await
    .unwrap();
    let phase1 = within("phase 1 reply", phase1).await.unwrap();
    assert_eq!(
        phase1.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase1.text()
    );
    let plaincert = String::from_utf8(hex::decode(phase1.element("plaincert").unwrap()).unwrap()).unwrap();
    let (pin_ok, phase4) = ClientPairing::new(client.clone(), client_pin)
        .phases_2_to_4(h, &plaincert)
        .await;
    assert_eq!(pin_ok, server_pin == client_pin);
    phase4
}

fn wolf_error(result: Result<(), Error>) -> (u16, WolfErrorKind) {
    match result {
        Err(Error::Wolf { status, kind, .. }) => (status, kind),
        other => panic!("expected an error in Wolf's shape, got {other:?}"),
    }
}

#[tokio::test]
async fn detected_as_wolf_v6_and_manages_apps() {
    let h = Harness::start().await;
    h.stores
        .apps
        .put(App::new(AppId::new(1).unwrap(), "Desktop").unwrap(), None)
        .await
        .unwrap();
    let side = serve_wolf_api(&h);
    let wolf = &side.client;
    let version = within("version detection", wolf.wait_ready(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(version, WolfVersion::V6);

    let titles = |apps: Vec<WolfApp>| {
        apps.into_iter()
            .map(|a| (a.id.to_string(), a.title))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        titles(wolf.apps().await.unwrap()),
        [("1".to_owned(), "Desktop".to_owned())]
    );
    wolf.add_app(&wolf_app("7", "Steam")).await.unwrap();
    assert_eq!(
        titles(wolf.apps().await.unwrap()),
        [
            ("1".to_owned(), "Desktop".to_owned()),
            ("7".to_owned(), "Steam".to_owned())
        ]
    );
    // The Moonlight side sees it too.
    assert!(h.stores.apps.get(AppId::new(7).unwrap()).await.unwrap().is_some());

    // What direwolf cannot hold is refused in Wolf's error shape, and nothing changes.
    assert_eq!(wolf_error(wolf.add_app(&wolf_app("steam", "Steam")).await).0, 400);
    assert_eq!(wolf_error(wolf.add_app(&wolf_app("7", "Other")).await).0, 400);
    wolf.delete_app(&"7".into()).await.unwrap();
    assert_eq!(
        wolf_error(wolf.delete_app(&"7".into()).await),
        (404, WolfErrorKind::InvalidAppId)
    );
    assert_eq!(titles(wolf.apps().await.unwrap()).len(), 1);

    // Routes outside the subset answer like Wolf's unknown routes.
    assert!(matches!(wolf.sessions().await, Err(Error::RouteNotFound { .. })));
    side.stop.send(()).unwrap();
    within("wolf api shutdown", side.task).await.unwrap();
    assert!(!side.path.exists(), "the socket is removed on shutdown");
    h.shutdown().await;
}

#[tokio::test]
async fn pairs_through_the_pending_list_lists_and_unpairs_clients() {
    let h = Harness::start().await;
    let side = serve_wolf_api(&h);
    let wolf = &side.client;
    let client = Client::vector_c();
    assert!(wolf.clients().await.unwrap().is_empty());

    // A wrong PIN: the pairing fails at phase 4 and no client appears.
    let phase4 = pair_through_wolf_api(&h, wolf, &client, "1234", "4321").await;
    assert_eq!(
        phase4.element("paired").as_deref(),
        Some("0"),
        "{}",
        phase4.text()
    );
    assert!(wolf.clients().await.unwrap().is_empty());
    assert!(h.stores.pairings.list().await.unwrap().is_empty());

    // Unknown secrets and malformed PINs are refused before anything is delivered.
    let (pending, phase1) = start_pairing(&h, wolf, &client).await;
    let refused = |secret: &str, pin: &str| PairClientRequest {
        pair_secret: secret.into(),
        pin: pin.into(),
    };
    assert_eq!(
        wolf_error(wolf.pair_client(&refused("0123456789ABCDEF", "1234")).await),
        (500, WolfErrorKind::InvalidPairSecret)
    );
    assert_eq!(
        wolf_error(
            wolf.pair_client(&refused(pending.pair_secret.expose(), "12345"))
                .await
        ),
        (500, WolfErrorKind::InvalidPin)
    );
    assert_eq!(wolf.pending_pair_requests().await.unwrap().len(), 1);
    // The right PIN for the same attempt pairs the client.
    wolf.pair_client(&refused(pending.pair_secret.expose(), "1234"))
        .await
        .unwrap();
    assert!(wolf.pending_pair_requests().await.unwrap().is_empty());
    let phase1 = within("phase 1 reply", phase1).await.unwrap();
    let plaincert = String::from_utf8(hex::decode(phase1.element("plaincert").unwrap()).unwrap()).unwrap();
    let (pin_ok, phase4) = ClientPairing::new(client.clone(), "1234")
        .phases_2_to_4(&h, &plaincert)
        .await;
    assert!(pin_ok);
    assert_eq!(
        phase4.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase4.text()
    );

    // The client is listed under the id Wolf would give it.
    let clients = wolf.clients().await.unwrap();
    assert_eq!(clients.len(), 1);
    let id = clients[0].client_id;
    assert_eq!(id.get(), client_id_for_cert(&client.cert_pem));
    assert_eq!(clients[0].app_state_folder, "default");
    let (reply, _) = h.get_tls(Some(&client), "/serverinfo").await;
    assert_eq!(reply.element("PairStatus").as_deref(), Some("1"));

    // Unpairing removes the pairing: the client is unpaired on its next request.
    wolf.unpair_client(id).await.unwrap();
    assert!(wolf.clients().await.unwrap().is_empty());
    assert!(h.stores.pairings.list().await.unwrap().is_empty());
    let (reply, _) = h.get_tls(Some(&client), "/applist").await;
    assert_eq!(
        reply.xml_status(),
        Some(401),
        "refused on its next request: {}",
        reply.text()
    );
    assert_eq!(
        wolf_error(wolf.unpair_client(id).await),
        (404, WolfErrorKind::ClientNotFound)
    );

    // A second pairing, given its PIN with the pair endpoint in one go.
    let phase4 = pair_through_wolf_api(&h, wolf, &client, "5678", "5678").await;
    assert_eq!(
        phase4.element("paired").as_deref(),
        Some("1"),
        "{}",
        phase4.text()
    );
    assert_eq!(wolf.clients().await.unwrap().len(), 1);

    side.stop.send(()).unwrap();
    within("wolf api shutdown", side.task).await.unwrap();
    h.shutdown().await;
}
