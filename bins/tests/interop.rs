//! Interoperability with a real Moonlight client: `direwolf serve` driven by moonlight-python
//! 0.3.0 (its own pairing, TLS and XML code, through `tests/interop/driver.py`).
//!
//! Needs `python3` with `moonlight_python` 0.3.0 importable; `scripts/test-all` installs it. When
//! it is missing these tests fail (they never pass silently).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{NoStreamingHost, PairingStore};
use serde_json::Value;
use support::{Direwolf, Proc, require_moonlight_python, run_driver, serve_command};

const PIN: &str = "4821";
const SERVER_START: Duration = Duration::from_secs(120);

/// A valid 1x1 RGB PNG.
const STEAM_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde\
\0\0\0\x0cIDATx\x9cc\xf8\xdf\xc0\0\0\x04\x01\x01\x80\xc5*\x18]\0\0\0\0IEND\xaeB`\x82";

/// Starts `direwolf serve` on `data_dir` with `config`.
fn start_server(data_dir: &Path, config: &Path) -> Direwolf {
    let proc = Proc::spawn(
        "direwolf",
        serve_command(data_dir)
            .arg("--config")
            .arg(config)
            .args(["--pin-timeout", "60"])
            // The protocol is under test here, not who enters the PIN.
            .arg("--allow-unauthenticated-pin"),
    );
    Direwolf::started(proc, "direwolf serve started", SERVER_START)
}

/// Pairs `client_dir`: the driver shows `client_pin`, the person types `typed_pin` on the PIN page.
fn pair(server: &Direwolf, client_dir: &Path, client_pin: &str, typed_pin: &str) -> Value {
    support::pair(server, server.http_port, client_dir, client_pin, typed_pin, true)
}

struct Setup {
    _tmp: tempfile::TempDir,
    data_dir: PathBuf,
    config: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path().to_owned();
    std::fs::create_dir(root.join("art")).expect("art directory");
    std::fs::write(root.join("art/steam.png"), STEAM_PNG).expect("write the PNG");
    let config = root.join("direwolf.toml");
    std::fs::write(
        &config,
        "hostname = \"interop-test\"\n\n[[apps]]\ntitle = \"Desktop\"\nid = 1\n\n\
         [[apps]]\ntitle = \"Steam 🎮\"\nid = 2\nimage = \"art/steam.png\"\nhdr = true\n",
    )
    .expect("write the configuration");
    Setup {
        data_dir: root.join("data"),
        config,
        root,
        _tmp: tmp,
    }
}

fn stored_pairings(data_dir: &Path) -> Vec<direwolf_core::Pairing> {
    let stores = PersistentStores::open(data_dir).expect("open the stopped server's database");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(stores.pairing_store().list())
        .expect("list pairings")
}

#[test]
fn real_client_pairs_lists_apps_gets_art_and_pairing_survives_restart() {
    let s = setup();
    let client = s.root.join("client");
    let server = start_server(&s.data_dir, &s.config);

    let paired = pair(&server, &client, PIN, PIN);
    assert_eq!(
        paired["ok"], true,
        "pairing with the right PIN must succeed: {paired}"
    );
    assert_eq!(paired["server_paired_before"], false);
    assert_eq!(
        paired["https_port"], server.https_port,
        "HTTP /serverinfo must report the HTTPS port"
    );

    let assets = s.root.join("assets");
    std::fs::create_dir(&assets).expect("asset directory");
    let check = run_driver(
        server.http_port,
        &client,
        &["check", "--asset-dir", assets.to_str().expect("utf-8 path")],
    );
    let info = &check["serverinfo"];
    assert_eq!(
        info["pair_status"], "1",
        "HTTPS /serverinfo must say PairStatus 1: {info}"
    );
    assert_eq!(info["paired"], true);
    assert_eq!(info["hostname"], "interop-test");
    assert_eq!(info["current_game"], 0);
    let unique_id = info["unique_id"].as_str().expect("uniqueid").to_owned();
    assert!(!unique_id.is_empty());
    assert_eq!(
        check["apps"],
        serde_json::json!([
            {"id": 1, "name": "Desktop", "hdr": false},
            {"id": 2, "name": "Steam 🎮", "hdr": true},
        ]),
        "the app list must hold the configured apps in id order"
    );
    let art = &check["assets"]["2"];
    assert_eq!(art["http_status"], 200, "{art}");
    assert_eq!(art["content_type"], "image/png", "{art}");
    assert_eq!(
        std::fs::read(assets.join("2.bin")).expect("saved art"),
        STEAM_PNG,
        "/appasset must return the PNG"
    );

    let launch = run_driver(server.http_port, &client, &["launch", "--app", "Desktop"]);
    assert_eq!(
        launch["ok"], false,
        "launch without a streaming host cannot succeed: {launch}"
    );
    assert_eq!(launch["error"], "HttpResponseError", "{launch}");
    assert_ne!(launch["status_code"], 200);
    assert_eq!(
        launch["message"],
        NoStreamingHost::MESSAGE,
        "the client must get a readable reason"
    );

    let fingerprint = server.fingerprint.clone();
    server.proc.stop();

    // Restart on the same data directory: same identity, pairing still trusted.
    let server = start_server(&s.data_dir, &s.config);
    assert_eq!(
        server.fingerprint, fingerprint,
        "the server certificate must survive a restart"
    );
    let check = run_driver(server.http_port, &client, &["check"]);
    assert_eq!(
        check["serverinfo"]["pair_status"], "1",
        "the pairing must survive a restart: {check}"
    );
    assert_eq!(
        check["serverinfo"]["unique_id"],
        unique_id.as_str(),
        "uniqueid must survive a restart"
    );
    assert_eq!(check["apps"].as_array().map(Vec::len), Some(2));
    server.proc.stop();

    let pairings = stored_pairings(&s.data_dir);
    assert_eq!(pairings.len(), 1, "one client paired once: {pairings:?}");
    assert_eq!(pairings[0].user.as_str(), "default");
    assert_eq!(
        pairings[0].device_name.as_deref(),
        Some("roth"),
        "python sends devicename=roth"
    );
}

#[test]
fn wrong_pin_fails_cleanly_and_unpaired_certificates_are_refused() {
    let s = setup();
    let client = s.root.join("client");
    let server = start_server(&s.data_dir, &s.config);

    let wrong = pair(&server, &client, "1234", "9999");
    assert_eq!(wrong["ok"], false, "a wrong PIN must fail: {wrong}");
    assert_eq!(
        wrong["error"], "WrongPinError",
        "the client must detect the wrong PIN: {wrong}"
    );

    // Nothing was stored: the same client certificate is still refused over HTTPS.
    let refused = run_driver(server.http_port, &client, &["unpaired"]);
    assert_eq!(refused["http_pair_status"], false, "{refused}");
    assert_eq!(refused["applist"]["refused"], true, "{refused}");
    assert_eq!(
        refused["applist"]["status_code"], 401,
        "an unpaired certificate gets an XML 401: {refused}"
    );
    let xml = refused["serverinfo_xml"]
        .as_str()
        .expect("the XML of HTTPS /serverinfo");
    assert!(xml.contains(r#"status_code="401""#), "{xml}");

    // The server is still healthy: the same client pairs with the right PIN.
    let paired = pair(&server, &client, PIN, PIN);
    assert_eq!(
        paired["ok"], true,
        "pairing after a wrong PIN must work: {paired}"
    );
    let check = run_driver(server.http_port, &client, &["check"]);
    assert_eq!(check["serverinfo"]["pair_status"], "1");

    // Another client, never paired, is refused.
    let stranger = run_driver(server.http_port, &s.root.join("stranger"), &["unpaired"]);
    assert_eq!(stranger["applist"]["status_code"], 401, "{stranger}");
    server.proc.stop();

    assert_eq!(
        stored_pairings(&s.data_dir).len(),
        1,
        "only the successful pairing is stored"
    );
}
