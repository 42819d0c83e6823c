//! The web UI on the admin port, end to end (issue 13, part 5): `direwolf serve`, an
//! administrator (alice) and a person (bob) given passwords with the CLI, a real Moonlight client
//! (moonlight-python) asking to pair, and headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/webui/`, installed with `npm ci` into the test's target
//! directory) on a 375 px wide phone viewport: bob logs in and enters the PIN, so the pairing is
//! his; a form posted without the CSRF token and a request from another origin are refused with
//! 403 and audited; bob revokes his device and the client is refused; alice adds an app with an
//! image and a user with a password, who then logs in as a person. With `--oidc-issuer`, a person
//! logs in with single sign-on at a real provider (`support::oidc`) and enters the PIN.
//! Behind a login proxy (`--trusted-proxy`), the person the proxy names enters the PIN.
//! Screenshots are written into the test's temporary directory (`web-ui-screenshots`,
//! `web-ui-sso-screenshots` and `web-ui-proxy-screenshots` in Cargo's `CARGO_TARGET_TMPDIR`,
//! kept after the run) and their paths printed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::{DRIVER_TIMEOUT, Direwolf, Proc, direwolf, field, port_of, serve_command, spawn_driver};

/// How long one CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
const ALICE_PASSWORD: &str = "alice administers the wolves";
const BOB_PASSWORD: &str = "bob only plays games";

struct Server {
    server: Direwolf,
    admin_port: u16,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::spawn(data, serve_command(data).args(["--pin-timeout", "120"]))
    }

    /// `direwolf serve` on `data` as `command` runs it.
    fn spawn(data: &Path, command: &mut Command) -> Server {
        let proc = Proc::spawn("direwolf serve", command);
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
        format!("https://127.0.0.1:{}/", self.admin_port)
    }

    fn cli(&self) -> Command {
        let mut command = direwolf();
        command
            .env("DIREWOLF_URL", format!("https://127.0.0.1:{}", self.admin_port))
            .env("DIREWOLF_DATA_DIR", &self.data)
            .env_remove("DIREWOLF_TOKEN")
            .env_remove("DIREWOLF_FINGERPRINT");
        command
    }

    /// `direwolf ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out =
            Proc::spawn(&format!("direwolf {}", args.join(" ")), self.cli().args(args)).finish(CLI_TIMEOUT);
        assert!(out.status.success(), "direwolf {args:?}: {}", out.stderr);
        out.stdout
    }

    /// `direwolf user passwd NAME --password-stdin` with `password`; its stdout.
    fn passwd(&self, name: &str, password: &str) -> String {
        let mut cmd = self.cli();
        cmd.args(["user", "passwd", name, "--password-stdin"]);
        support::passwd_with(&mut cmd, password, CLI_TIMEOUT)
    }

    fn pairings(&self) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&["pairing", "list", "--output", "json"]))
            .expect("pairing list prints JSON");
        list["pairings"].as_array().expect("pairings").clone()
    }
}

#[test]
fn a_person_pairs_and_revokes_and_an_administrator_adds_an_app_in_the_browser() {
    support::require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&tmp.path().join("data"));
    server.ok(&["user", "add", "alice"]);
    server.ok(&["user", "add", "bob"]);
    let first = server.passwd("alice", ALICE_PASSWORD);
    assert!(first.contains("(an administrator)"), "{first}");
    let second = server.passwd("bob", BOB_PASSWORD);
    assert!(!second.contains("administrator"), "bob is a person: {second}");
    let browser = Browser::prepare("web-ui-driver", "web-ui-screenshots", server.url(), None);

    // bob's phone shows 4821; bob opens the PIN page link of the server log, which sends him to
    // the web UI (HTTPS: no password typed on the plain-HTTP page), logs in there and enters the
    // PIN: the pairing is his.
    let client = tmp.path().join("client");
    let driver = spawn_driver(server.server.http_port, &client, &["pair", "--pin", "4821"]);
    let logged = server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let pin_page = Browser {
        url: support::pin_link(&logged).0.to_owned(),
        ..browser.clone()
    };
    let pin = pin_page.step("pin-page", "bob", BOB_PASSWORD, Some(Path::new("4821")));
    assert_eq!(pin["web_ui_link"], server.url(), "{pin}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server
        .server
        .proc
        .wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains("user=bob"), "{line}");
    let pairings = server.pairings();
    assert_eq!(pairings.len(), 1, "{pairings:?}");
    assert_eq!(pairings[0]["user"], "bob");

    // Cross-site changes are refused (and audited); then bob revokes his device.
    let revoke = browser.step("revoke", "bob", BOB_PASSWORD, None);
    assert_eq!(revoke["form_without_csrf"], 403, "{revoke}");
    assert_eq!(revoke["fetch_without_csrf"], 403, "{revoke}");
    assert_eq!(revoke["other_origin"], 403, "{revoke}");
    assert!(
        server.server.proc.printed_line_with(&[
            "direwolf::audit",
            "actor=\"user:bob\"",
            "status=403",
            "CSRF token",
        ]),
        "the refusal is audited"
    );
    assert!(
        server.server.proc.printed_line_with(&[
            "direwolf::audit",
            "actor=\"user:bob\"",
            "status=403",
            "Origin",
        ]),
        "the refusal is audited"
    );
    let users: Value =
        serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).expect("JSON users");
    assert!(
        !users.to_string().contains("mallory"),
        "the forged form changed nothing"
    );
    assert!(server.pairings().is_empty(), "bob's device is revoked");
    let refused = spawn_driver(server.server.http_port, &client, &["check"]).finish(DRIVER_TIMEOUT);
    assert!(
        !refused.status.success() && refused.stdout.contains("not authorized"),
        "a revoked client is refused at its next request: {}",
        refused.stdout
    );

    // alice adds an app with an image (the first screenshot, a PNG).
    let image = PathBuf::from(pin["screenshots"][0].as_str().expect("a screenshot"));
    let admin = browser.step("admin", "alice", ALICE_PASSWORD, Some(&image));
    assert!(
        admin["users"].to_string().contains("bob"),
        "alice sees the users: {admin}"
    );
    let apps: Value =
        serde_json::from_str(&server.ok(&["app", "list", "--output", "json"])).expect("JSON apps");
    let added = apps
        .as_array()
        .and_then(|a| a.iter().find(|a| a["title"] == "Web UI App"))
        .unwrap_or_else(|| panic!("the app was added: {apps}"));
    assert_eq!(added["has_image"], true, "{added}");
    let users: Value =
        serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).expect("JSON users");
    let carol = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "carol"))
        .unwrap_or_else(|| panic!("alice added carol: {users}"));
    assert_eq!(
        (&carol["has_password"], &carol["admin"]),
        (&Value::Bool(true), &Value::Bool(false)),
        "{carol}"
    );
    assert_eq!(
        admin["carol_sees_admin"], false,
        "carol logged in with her new password, as a person: {admin}"
    );
}

/// Single sign-on in the browser (issue 13): with `--oidc-issuer`, the web UI's login page offers
/// "Log in with single sign-on"; Chromium follows it to a real OpenID Connect provider
/// (`support::oidc`), logs in there, comes back logged in as the user the provider names (created
/// on the way, a person), and enters the PIN the Moonlight client shows: the pairing is hers.
#[test]
fn a_person_logs_in_with_single_sign_on_and_enters_a_pin_in_the_browser() {
    support::require_moonlight_python();
    let provider_dir = support::oidc::install_provider();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (http_port, admin_port) = (support::oidc::free_port(), support::oidc::free_port());
    let (_provider, issuer) = support::oidc::start_provider(
        &provider_dir,
        &format!(
            "http://127.0.0.1:{http_port}/pin/oidc/callback,https://127.0.0.1:{admin_port}/ui/oidc/callback"
        ),
        None,
    );
    let data = tmp.path().join("data");
    let server = Server::spawn(
        &data,
        direwolf()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string()])
            .args(["--https-port", "0", "--admin-port", &admin_port.to_string()])
            .args(["--no-mdns", "--pin-timeout", "120"])
            .args([
                "--oidc-issuer",
                &issuer,
                "--oidc-client-id",
                support::oidc::CLIENT_ID,
            ])
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0"),
    );
    let browser = Browser::prepare("web-ui-driver", "web-ui-sso-screenshots", server.url(), None);
    let driver = spawn_driver(http_port, &tmp.path().join("client"), &["pair", "--pin", "7315"]);
    server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let user = support::oidc::OIDC_USER;
    let report = browser.step("sso-pin", user, "any password", Some(Path::new("7315")));
    assert_eq!(report["logged_in"], format!("Logged in as {user}"), "{report}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let pairings = server.pairings();
    assert_eq!(pairings.len(), 1, "{pairings:?}");
    assert_eq!(pairings[0]["user"], user);
    let users: Value =
        serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).expect("JSON users");
    let ada = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == user))
        .unwrap_or_else(|| panic!("the provider's user was created: {users}"));
    assert_eq!(
        (&ada["has_password"], &ada["admin"]),
        (&Value::Bool(false), &Value::Bool(false)),
        "{ada}"
    );
}

/// Behind an authenticating reverse proxy (`--trusted-proxy`; the browser's own requests carry
/// the `X-Forwarded-User` such a proxy adds): the page opens logged in as the person the proxy
/// names, without a password, created on the way as a person, who enters the PIN the Moonlight
/// client shows: the pairing is his. "Log out" then goes to the proxy's sign-out address.
#[test]
fn a_login_proxy_names_the_person_who_enters_a_pin_in_the_browser() {
    support::require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let server = Server::spawn(
        &data,
        serve_command(&data).args([
            "--pin-timeout",
            "120",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy-sign-out",
            "/oauth2/sign_out",
        ]),
    );
    let browser = Browser::prepare("web-ui-driver", "web-ui-proxy-screenshots", server.url(), None);
    let driver = spawn_driver(
        server.server.http_port,
        &tmp.path().join("client"),
        &["pair", "--pin", "2468"],
    );
    server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let report = browser.step("proxy-pin", "Dave.Jones", "", Some(Path::new("2468")));
    assert_eq!(report["logged_in"], "Logged in as dave-jones", "{report}");
    assert!(
        report["signed_out_at"]
            .as_str()
            .is_some_and(|url| url.ends_with("/oauth2/sign_out")),
        "Log out goes to the login proxy's sign-out: {report}"
    );
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let pairings = server.pairings();
    assert_eq!(pairings.len(), 1, "{pairings:?}");
    assert_eq!(pairings[0]["user"], "dave-jones");
    let users: Value =
        serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).expect("JSON users");
    let dave = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "dave-jones"))
        .unwrap_or_else(|| panic!("the proxy's user was created: {users}"));
    assert_eq!(
        (&dave["has_password"], &dave["admin"]),
        (&Value::Bool(false), &Value::Bool(false)),
        "{dave}"
    );
    assert!(
        server.server.proc.printed_line_with(&[
            "direwolf::audit",
            "actor=\"user:dave-jones\"",
            "ui/proxy-login",
        ]),
        "the login is audited"
    );
}
