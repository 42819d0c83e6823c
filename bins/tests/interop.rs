//! Interoperability with a real Moonlight client: `direwolf serve` driven by moonlight-python
//! 0.3.0 (its own pairing, TLS and XML code, through `tests/interop/driver.py`).
//!
//! Needs `python3` with `moonlight_python` 0.3.0 importable; `scripts/test-all` installs it. When
//! it is missing these tests fail (they never pass silently).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{NoStreamingHost, PairingStore};
use serde_json::Value;

const PIN: &str = "4821";
const SERVER_START: Duration = Duration::from_secs(120);
const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

/// A valid 1x1 RGB PNG.
const STEAM_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde\
\0\0\0\x0cIDATx\x9cc\xf8\xdf\xc0\0\0\x04\x01\x01\x80\xc5*\x18]\0\0\0\0IEND\xaeB`\x82";

fn driver_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/driver.py")
}

/// Fails the test, with instructions, when the real client is not installed.
fn require_moonlight_python() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import moonlight_python as m; assert m.__version__ == '0.3.0', m.__version__",
        ])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import moonlight_python 0.3.0 ({}): run scripts/test-all, which installs \
             it (pip install moonlight-python==0.3.0)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}): install Python 3 and run scripts/test-all"),
    }
}

/// Kills a child process when dropped (a failed assertion must not leave servers running).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a child to exit, at most `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {timeout:?} (it is stuck)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `direwolf serve` whose log lines are collected.
struct Server {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    http_port: u16,
    https_port: u16,
    fingerprint: String,
}

/// The text between `key` and the next space in a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in log line {line:?}"))
        + key.len();
    line[start..].split(' ').next().unwrap_or_default()
}

fn port_of(list: &str) -> u16 {
    // `[127.0.0.1:40637]`
    let addr: SocketAddr = list
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .expect("a socket address");
    addr.port()
}

impl Server {
    fn start(data_dir: &Path, config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_direwolf"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .args([
                "--bind",
                "127.0.0.1",
                "--http-port",
                "0",
                "--https-port",
                "0",
                "--no-mdns",
            ])
            .args(["--pin-timeout", "60"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start direwolf serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[direwolf] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child: ChildGuard(child),
            lines,
            http_port: 0,
            https_port: 0,
            fingerprint: String::new(),
        };
        let started = server.wait_for("direwolf serve started", SERVER_START);
        server.http_port = port_of(field(&started, " http="));
        server.https_port = port_of(field(&started, " https="));
        server.fingerprint = field(&started, "server.fingerprint=").to_owned();
        assert_eq!(server.fingerprint.len(), 64, "fingerprint in {started:?}");
        server
    }

    /// The next log line containing `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the server did not log {needle:?} within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the server exited before logging {needle:?}")
                }
            }
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let status = wait_with_timeout(
            &mut self.child.0,
            Duration::from_secs(30),
            "direwolf serve after SIGTERM",
        );
        assert!(
            status.success(),
            "direwolf serve must exit cleanly on SIGTERM, got {status}"
        );
    }
}

/// Starts the driver; returns the guard and a receiver of its stdout.
fn spawn_driver(server: &Server, client_dir: &Path, args: &[&str]) -> (ChildGuard, mpsc::Receiver<String>) {
    let mut child = Command::new("python3")
        .arg(driver_path())
        .args([
            "--host",
            "127.0.0.1",
            "--http-port",
            &server.http_port.to_string(),
        ])
        .arg("--client-dir")
        .arg(client_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the moonlight-python driver");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    (ChildGuard(child), rx)
}

/// Waits for the driver and parses its JSON report.
fn finish_driver(mut child: ChildGuard, out: mpsc::Receiver<String>, what: &str) -> Value {
    let status = wait_with_timeout(&mut child.0, DRIVER_TIMEOUT, what);
    let text = out
        .recv_timeout(Duration::from_secs(10))
        .expect("the driver's stdout");
    let last = text.lines().last().unwrap_or_default();
    let report: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{what}: no JSON report ({e}) in {text:?}"));
    assert!(
        status.success() && report.get("unexpected").is_none(),
        "{what} failed unexpectedly: {report}"
    );
    eprintln!("[driver {what}] {report}");
    report
}

fn run_driver(server: &Server, client_dir: &Path, args: &[&str]) -> Value {
    let (child, out) = spawn_driver(server, client_dir, args);
    finish_driver(child, out, args[0])
}

/// POSTs a PIN to the PIN page, as its script does; returns (HTTP status, body).
fn post_pin(http_port: u16, pin: &str, secret: &str) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to the PIN page");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let body = format!(r#"{{"pin":"{pin}","secret":"{secret}"}}"#);
    let request = format!(
        "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send the PIN");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the PIN page's answer (timeout: server stuck)");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Pairs `client_dir`: the driver shows `client_pin`, the person types `typed_pin` on the PIN page.
fn pair(server: &Server, client_dir: &Path, client_pin: &str, typed_pin: &str) -> Value {
    let (child, out) = spawn_driver(server, client_dir, &["pair", "--pin", client_pin]);
    let line = server.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let url = line[line.find("http://").expect("a URL")..]
        .split_whitespace()
        .next()
        .expect("the URL");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/pin/#", server.http_port)),
        "PIN URL {url}"
    );
    let secret = url.rsplit('#').next().expect("a secret");
    assert_eq!(secret.len(), 16, "secret in {url}");
    let (status, body) = post_pin(server.http_port, typed_pin, secret);
    assert_eq!(
        (status, body.trim()),
        (200, "OK"),
        "the PIN page must accept the PIN"
    );
    finish_driver(child, out, "pair")
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
    let server = Server::start(&s.data_dir, &s.config);

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
        &server,
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

    let launch = run_driver(&server, &client, &["launch", "--app", "Desktop"]);
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
    server.stop();

    // Restart on the same data directory: same identity, pairing still trusted.
    let server = Server::start(&s.data_dir, &s.config);
    assert_eq!(
        server.fingerprint, fingerprint,
        "the server certificate must survive a restart"
    );
    let check = run_driver(&server, &client, &["check"]);
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
    server.stop();

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
    let server = Server::start(&s.data_dir, &s.config);

    let wrong = pair(&server, &client, "1234", "9999");
    assert_eq!(wrong["ok"], false, "a wrong PIN must fail: {wrong}");
    assert_eq!(
        wrong["error"], "WrongPinError",
        "the client must detect the wrong PIN: {wrong}"
    );

    // Nothing was stored: the same client certificate is still refused over HTTPS.
    let refused = run_driver(&server, &client, &["unpaired"]);
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
    let check = run_driver(&server, &client, &["check"]);
    assert_eq!(check["serverinfo"]["pair_status"], "1");

    // Another client, never paired, is refused.
    let stranger = run_driver(&server, &s.root.join("stranger"), &["unpaired"]);
    assert_eq!(stranger["applist"]["status_code"], 401, "{stranger}");
    server.stop();

    assert_eq!(
        stored_pairings(&s.data_dir).len(),
        1,
        "only the successful pairing is stored"
    );
}
