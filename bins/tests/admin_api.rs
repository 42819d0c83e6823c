//! The admin API and the CLI against a running `direwolf serve`: every CLI verb (with the real
//! Moonlight client, moonlight-python 0.3.0, pairing through `pairing approve` and streaming from
//! a fake Wolf on loopback), the refusals (wrong or missing token, malformed JSON, duplicates,
//! oversized and non-image app images) and the server against `docs/admin-api.yaml`
//! (schemathesis, installed by the test into a virtual environment of its own).
//!
//! Needs python3 (with moonlight_python 0.3.0 for the first test; `scripts/test-all` installs
//! it) and, for the OpenAPI test, PyPI; fails (never passes silently) without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{
    Direwolf, Finished, Proc, direwolf, driver_args, fake_wolf_binary, field, poll, port_of,
    require_moonlight_python, run, serve_command,
};

const STEP: Duration = Duration::from_secs(60);
const PIN: &str = "4821";
/// A valid 1x1 RGB PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde\
\0\0\0\x0cIDATx\x9cc\xf8\xdf\xc0\0\0\x04\x01\x01\x80\xc5*\x18]\0\0\0\0IEND\xaeB`\x82";
/// The pinned schemathesis.
const SCHEMATHESIS: &str = "4.32.5";

/// A running server and where its admin API is.
struct Server {
    server: Direwolf,
    admin_port: u16,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let proc = Proc::spawn(
            "direwolf serve",
            serve_command(data).args(["--pin-timeout", "60"]).args(extra),
        );
        let server = Direwolf::started(proc, "direwolf serve started", Duration::from_secs(120));
        let line = server
            .proc
            .line_with("direwolf serve started")
            .expect("the start-up line was printed");
        Server {
            admin_port: port_of(field(&line, " admin=")),
            server,
            data: data.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.admin_port)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin-token"))
            .expect("the admin token file")
            .trim()
            .to_owned()
    }

    /// `direwolf ARGS` against this server, finding token and certificate in its data directory.
    fn cli(&self, args: &[&str]) -> Finished {
        let mut command = direwolf();
        command
            .args(args)
            .env("DIREWOLF_URL", self.url())
            .env("DIREWOLF_DATA_DIR", &self.data)
            .env_remove("DIREWOLF_TOKEN")
            .env_remove("DIREWOLF_FINGERPRINT");
        Proc::spawn(&format!("direwolf {}", args.join(" ")), &mut command).finish(STEP)
    }

    /// A CLI call that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "direwolf {args:?} failed: {}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// A CLI call that must fail with one `error:` line containing `says`.
    fn refused(&self, args: &[&str], says: &str) {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "direwolf {args:?} must fail: {}",
            out.stdout
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line: {}", out.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(says),
            "direwolf {args:?}: expected an error saying {says:?}, got {}",
            out.stderr
        );
    }

    /// The JSON output of a CLI call.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("--output json prints JSON")
    }

    /// One raw HTTPS request to the admin API (python3's ssl module; the server's certificate is
    /// not checked here, the CLI pins it): (status, body). A body is offered with
    /// `Expect: 100-continue`, as curl does, so a refusal of its size comes before it is sent.
    fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        const SCRIPT: &str = r#"
import json, socket, ssl, sys
port, method, path, token, ctype, body_file = sys.argv[1:7]
body = open(body_file, "rb").read()
context = ssl._create_unverified_context()
sock = context.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=30))
head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
if token:
    head += f"Authorization: Bearer {token}\r\n"
if body:
    head += "Expect: 100-continue\r\n"
sock.sendall((head + "\r\n").encode())
reader = sock.makefile("rb")
def read_head():
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline().decode().strip()):
        key, value = line.split(":", 1)
        headers[key.strip().lower()] = value.strip()
    return status, headers
status, headers = read_head()
if status == 100:
    sock.sendall(body)
    status, headers = read_head()
length = int(headers.get("content-length", "0"))
print(json.dumps({"status": status, "body": reader.read(length).decode("utf-8", "replace")}))
"#;
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), body).expect("write the body");
        let out = run(
            Command::new("python3")
                .arg("-c")
                .arg(SCRIPT)
                .arg(self.admin_port.to_string())
                .args([method, path, token.unwrap_or(""), content_type])
                .arg(file.path()),
            &format!("{method} {path}"),
        );
        let reply: Value = serde_json::from_str(&out).expect("the request script prints JSON");
        let status = reply["status"].as_u64().expect("a status") as u16;
        let text = reply["body"].as_str().unwrap_or_default();
        (status, serde_json::from_str(text).unwrap_or(Value::Null))
    }
}

/// The names in `user list --output json`.
fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item[key].to_string().trim_matches('"').to_owned())
        .collect()
}

/// Pairs `client_dir` for `user`: moonlight-python asks to pair, `pairing approve` enters its
/// PIN. Returns the pairing's fingerprint.
fn pair_through_the_cli(server: &Server, client_dir: &Path, user: &str) -> String {
    let before = names(&server.json(&["pairing", "list"])["pairings"], "fingerprint");
    let driver = Proc::spawn(
        &format!("driver pair ({user})"),
        Command::new("python3").args(driver_args(
            "driver.py",
            "127.0.0.1",
            server.server.http_port,
            client_dir,
            &["pair", "--pin", PIN],
        )),
    );
    let secret = poll(STEP, Duration::from_millis(200), || {
        let pending = server.json(&["pairing", "list"])["pending"].clone();
        pending[0]["secret"].as_str().map(str::to_owned)
    })
    .expect("the pairing client shows up among the pending pairings within 60 s");
    let said = server.ok(&["pairing", "approve", &secret, "--pin", PIN, "--user", user]);
    assert!(said.contains(user), "{said}");
    let report = driver.json_result(STEP);
    assert_eq!(report["ok"], true, "the client pairs: {report}");
    let after = server.json(&["pairing", "list"]);
    let new: Vec<&Value> = after["pairings"]
        .as_array()
        .expect("pairings")
        .iter()
        .filter(|p| !before.contains(&p["fingerprint"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(new.len(), 1, "one new pairing: {after}");
    assert_eq!(
        new[0]["user"], user,
        "the pairing belongs to the user it was approved for"
    );
    new[0]["fingerprint"].as_str().expect("a fingerprint").to_owned()
}

/// Starts a stream of Steam for `client_dir` and waits for its session; returns its id. The
/// client leaves without /cancel, so the session stays on the server.
fn launch(server: &Server, client_dir: &Path, user: &str) -> String {
    // The fake Wolf's black frames may make the client give up: only the server's session
    // matters here.
    let _ = Proc::spawn(
        "driver launch",
        Command::new("python3").args(driver_args(
            "driver.py",
            "127.0.0.1",
            server.server.http_port,
            client_dir,
            &["launch", "--app", "Steam", "--keep"],
        )),
    )
    .finish(Duration::from_secs(120));
    let sessions = server.json(&["session", "list"]);
    let session = sessions
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["user"] == user)
        .unwrap_or_else(|| panic!("{user} has a session after the launch: {sessions}"));
    session["id"].as_str().expect("an id").to_owned()
}

#[test]
fn the_cli_drives_every_admin_operation() {
    require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path();
    let socket = root.join("wolf.sock");
    let ports: Vec<String> = (0..4).map(|_| free_port().to_string()).collect();
    let mut wolf_command = Command::new(fake_wolf_binary());
    wolf_command
        .arg("--socket")
        .arg(&socket)
        .args(["--stream-ip", "127.0.0.1", "--app", "7=Steam"])
        .args(["--rtsp-port", &ports[0], "--video-port", &ports[1]])
        .args(["--audio-port", &ports[2], "--control-port", &ports[3]]);
    let wolf = Proc::spawn("fake wolf", &mut wolf_command);
    wolf.wait_for("fake wolf ready", STEP);
    let config = root.join("direwolf.toml");
    std::fs::write(
        &config,
        format!(
            "[[apps]]\ntitle = \"Steam\"\nid = 1\nwolf_app_id = \"7\"\n\n[relay]\nport_range = \"{}\"\n\n\
             [[wolf]]\nname = \"den\"\napi = \"{}\"\nstream_address = \"127.0.0.1\"\nrtsp_port = {}\n\
             video_port = {}\naudio_port = {}\ncontrol_port = {}\n",
            free_range(),
            socket.display(),
            ports[0],
            ports[1],
            ports[2],
            ports[3]
        ),
    )
    .expect("write the configuration");
    let server = Server::start(
        &root.join("data"),
        &["--config", config.to_str().expect("utf-8 path")],
    );

    // Users.
    assert!(
        server
            .ok(&["user", "add", "alice", "--display-name", "Alice A."])
            .contains("alice")
    );
    server.ok(&["user", "add", "bob"]);
    server.refused(&["user", "add", "alice"], "already exists");
    let table = server.ok(&["user", "list"]);
    assert!(table.starts_with("NAME") && table.contains("Alice A."), "{table}");
    assert_eq!(
        names(&server.json(&["user", "list"]), "name"),
        ["alice", "bob", "default"]
    );
    // An administrator without a password (one who logs in through single sign-on).
    let carol = server.json(&["user", "add", "carol", "--admin"]);
    assert_eq!(
        (carol["name"].as_str(), carol["admin"].as_bool()),
        (Some("carol"), Some(true)),
        "{carol}"
    );
    server.ok(&["user", "remove", "carol"]);

    // Apps, with an image checked before anything is added.
    let png = root.join("notes.png");
    std::fs::write(&png, PNG).expect("write the image");
    let not_png = root.join("notes.txt");
    std::fs::write(&not_png, "hello").expect("write the text");
    let added = server.json(&[
        "app",
        "add",
        "Notes",
        "--id",
        "5",
        "--hdr",
        "--image",
        png.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        (added["id"].clone(), added["has_image"].clone()),
        (Value::from(5), Value::Bool(true))
    );
    server.refused(
        &["app", "add", "Other", "--image", not_png.to_str().expect("utf-8")],
        "not an image",
    );
    server.refused(&["app", "add", "Notes"], "already titled");
    let table = server.ok(&["app", "list"]);
    assert!(table.contains("Notes") && table.contains("yes"), "{table}");
    assert_eq!(names(&server.json(&["app", "list"]), "title"), ["Steam", "Notes"]);
    server.ok(&["app", "remove", "5"]);
    server.refused(&["app", "remove", "5"], "no app 5");
    server.refused(&["app", "remove", "1"], "configuration file");
    assert_eq!(names(&server.json(&["app", "list"]), "title"), ["Steam"]);

    // Pairings: approved for a user, listed, revoked (the client is refused at once).
    let alice_client = root.join("alice-client");
    let bob_client = root.join("bob-client");
    let _alice = pair_through_the_cli(&server, &alice_client, "alice");
    let bob = pair_through_the_cli(&server, &bob_client, "bob");
    let table = server.ok(&["pairing", "list"]);
    assert!(
        table.contains(&bob) && table.contains("Waiting for a PIN"),
        "{table}"
    );
    let check = support::run_driver(server.server.http_port, &bob_client, &["check"]);
    assert_eq!(
        check["ok"], true,
        "bob's client works before the revocation: {check}"
    );
    server.ok(&["pairing", "revoke", &bob]);
    let refused = support::spawn_driver(server.server.http_port, &bob_client, &["check"]).finish(STEP);
    assert!(
        !refused.status.success() && refused.stdout.contains("not authorized"),
        "a revoked client is refused at its next request: {}",
        refused.stdout
    );
    server.refused(&["pairing", "revoke", &bob], "no pairing");
    server.refused(
        &["pairing", "approve", "0123456789ABCDEF", "--pin", PIN],
        "no pairing is waiting",
    );

    // Sessions: listed and stopped; a user who streams is only deleted with --force.
    let session = launch(&server, &alice_client, "alice");
    assert!(server.ok(&["session", "list"]).contains(&session));
    server.refused(&["user", "remove", "alice"], "live session");
    server.ok(&["session", "stop", &session]);
    assert_eq!(server.json(&["session", "list"]), Value::Array(vec![]));
    server.refused(&["session", "stop", &session], "no session");
    launch(&server, &alice_client, "alice");
    server.ok(&["user", "remove", "alice", "--force"]);
    assert_eq!(server.json(&["session", "list"]), Value::Array(vec![]));
    assert_eq!(names(&server.json(&["user", "list"]), "name"), ["bob", "default"]);
    assert_eq!(
        server.json(&["pairing", "list"])["pairings"],
        Value::Array(vec![]),
        "alice's pairing went with her"
    );
    server.ok(&["user", "remove", "bob"]);

    let token = server.token();
    assert!(!server.server.proc.printed(&token), "the token is never logged");
    assert!(server.server.proc.printed_line_with(&[
        "direwolf::audit",
        "actor=\"admin-token\"",
        "users/alice",
        "status=204"
    ]));
    drop(wolf);
    server.server.proc.stop();
}

#[test]
fn bad_input_is_refused_with_its_status_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&tmp.path().join("data"), &[]);
    let token = server.token();
    assert!(token.len() >= 32, "at least 128 bits");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("admin-token"))
            .expect("token file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let json = "application/json";

    // No token, a wrong one, a malformed header: 401, with a JSON error, nothing created.
    for header in [None, Some("not-the-token-but-long-enough-000000")] {
        let (status, body) = server.raw("POST", "/api/v1/users", header, json, br#"{"name":"eve"}"#);
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("token")),
            "{body}"
        );
    }
    server.refused(
        &["user", "list", "--token", "not-the-token-but-long-enough-000000"],
        "refused the token",
    );
    server.refused(
        &["user", "list", "--fingerprint", &"0".repeat(64)],
        "not the expected",
    );
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("an empty directory");
    server.refused(
        &["user", "list", "--data-dir", elsewhere.to_str().expect("utf-8")],
        "no admin token",
    );

    // Malformed JSON, fields that do not fit, the wrong type: 400 or 415.
    for (body, content_type, expected) in [
        (&b"{\"name\":"[..], json, 400),
        (br#"{"name":"Not A Name"}"#, json, 400),
        (br#"{"name":"eve","role":"admin"}"#, json, 400),
        (br#"{"name":"eve"}"#, "text/plain", 415),
    ] {
        let (status, reply) = server.raw("POST", "/api/v1/users", Some(&token), content_type, body);
        assert_eq!(status, expected, "{}: {reply}", String::from_utf8_lossy(body));
        assert!(reply["error"].is_string(), "{reply}");
    }
    // A duplicate: 409.
    let (status, _) = server.raw("POST", "/api/v1/users", Some(&token), json, br#"{"name":"eve"}"#);
    assert_eq!(status, 201);
    let (status, reply) = server.raw("POST", "/api/v1/users", Some(&token), json, br#"{"name":"eve"}"#);
    assert_eq!(status, 409, "{reply}");
    // Images: too large (413), not an image (415), an unknown app (404); the app keeps its image.
    let (status, app) = server.raw(
        "POST",
        "/api/v1/apps",
        Some(&token),
        json,
        br#"{"title":"Notes"}"#,
    );
    assert_eq!(status, 201, "{app}");
    let image = format!("/api/v1/apps/{}/image", app["id"]);
    assert_eq!(server.raw("PUT", &image, Some(&token), "image/png", PNG).0, 204);
    let mut huge = PNG.to_vec();
    huge.resize(2 * 1024 * 1024 + 1, 0);
    for (body, expected) in [
        (&huge[..], 413),
        (&b"GIF89a\x01\0\x01\0"[..], 415),
        (b"plain text", 415),
    ] {
        let (status, reply) = server.raw("PUT", &image, Some(&token), "image/png", body);
        assert_eq!(status, expected, "{reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    assert_eq!(
        server
            .raw("PUT", "/api/v1/apps/999/image", Some(&token), "image/png", PNG)
            .0,
        404
    );
    assert!(
        server
            .ok(&["app", "list"])
            .lines()
            .any(|l| l.contains("Notes") && l.ends_with("yes")),
        "the refused images left the first one"
    );
    assert_eq!(
        names(&server.json(&["user", "list"]), "name"),
        ["default", "eve"],
        "nothing half-written"
    );

    // Every refusal and change is audited; the token never appears in the log.
    assert!(
        server
            .server
            .proc
            .printed_line_with(&["direwolf::audit", "actor=\"anonymous\"", "status=401"])
    );
    assert!(
        server
            .server
            .proc
            .printed_line_with(&["direwolf::audit", "status=413"])
    );
    assert!(
        server
            .server
            .proc
            .printed_line_with(&["direwolf::audit", "status=201", "users"])
    );
    assert!(!server.server.proc.printed(&token), "the token is never logged");
    server.server.proc.stop();
}

/// A virtual environment with schemathesis, created and filled once per target directory.
fn schemathesis() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("the target directory");
    let venv = target.join(format!("schemathesis-{SCHEMATHESIS}"));
    let st = venv.join("bin/st");
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(SCHEMATHESIS));
    if !installed {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (install python3-venv)",
        );
        run(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("schemathesis=={SCHEMATHESIS}"),
            ]),
            &format!("pip install schemathesis=={SCHEMATHESIS} (needs PyPI)"),
        );
    }
    st
}

/// Apps added through the API are kept in the data directory: a restart still lists them, with
/// their images, beside the apps of the configuration file.
#[test]
fn apps_added_through_the_api_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let png = tmp.path().join("notes.png");
    std::fs::write(&png, PNG).expect("write the image");
    let server = Server::start(&data, &[]);
    let before = names(&server.json(&["app", "list"]), "title");
    server.ok(&[
        "app",
        "add",
        "Notes",
        "--id",
        "5",
        "--image",
        png.to_str().expect("utf-8"),
    ]);
    server.server.proc.stop();

    let server = Server::start(&data, &[]);
    let apps = server.json(&["app", "list"]);
    let mut expected = before;
    expected.push("Notes".to_owned());
    assert_eq!(names(&apps, "title"), expected, "{apps}");
    let notes = apps
        .as_array()
        .and_then(|a| a.iter().find(|app| app["title"] == "Notes"))
        .cloned()
        .expect("Notes is listed");
    assert_eq!(notes["has_image"], true, "{notes}");
    server.ok(&["app", "remove", "5"]);
    server.server.proc.stop();
}

#[test]
fn the_server_answers_as_its_openapi_description_says() {
    let st = schemathesis();
    let tmp = tempfile::tempdir().expect("temporary directory");
    // The audit log's hundreds of refusals would bury schemathesis' own report in a failure.
    let quiet = ["--log-level", "info,direwolf::audit=warn"];
    let server = Server::start(&tmp.path().join("data"), &quiet);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.yaml");
    // Schemathesis writes to a file, read back below: echoed line by line, its report of passed
    // phases and hints would push a failure's details out of a truncated CI log.
    let mut command = Command::new("sh");
    command
        .args(["-c", "exec \"$0\" \"$@\" > schemathesis.txt 2>&1"])
        .arg(&st)
        // Schemathesis keeps its cache and found failures in the working directory.
        .current_dir(tmp.path())
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("{}/api/v1", server.url())])
        .args(["--header", &format!("Authorization: Bearer {}", server.token())])
        .args(["--tls-verify", "false", "--max-examples", "40", "--seed", "1"])
        .args(["--checks", "all"])
        // Inferred from POST /apps, GET /apps/{id}/image expects every new app to have an image;
        // an app has none until one is PUT, and 404 is the documented answer.
        .args(["--exclude-checks", "ensure_resource_availability"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let out = Proc::spawn("schemathesis", &mut command).finish(Duration::from_secs(600));
    let report = std::fs::read_to_string(tmp.path().join("schemathesis.txt")).unwrap_or_default();
    assert!(
        out.status.success(),
        "schemathesis ({}) found the server and docs/admin-api.yaml apart:\n{}",
        out.status,
        report_failures(&report),
    );
    assert!(
        report.contains("16 selected"),
        "every operation is tested: {report}"
    );
    server.server.proc.stop();
}

/// Schemathesis' report from its failures on (its long list of passed phases and hints left out).
fn report_failures(stdout: &str) -> &str {
    stdout
        .find("FAILURES")
        .or_else(|| stdout.find("ERRORS"))
        .map_or(stdout, |at| {
            &stdout[stdout[..at].rfind('\n').map_or(0, |l| l + 1)..]
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A hundred consecutive ports free on loopback for the relay, as `FIRST-LAST`.
fn free_range() -> String {
    for _ in 0..200 {
        let first = free_port().saturating_sub(100).max(20_000);
        let free = (first..first + 100).step_by(10).all(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return format!("{first}-{}", first + 99);
        }
    }
    panic!("no free port range on loopback");
}
