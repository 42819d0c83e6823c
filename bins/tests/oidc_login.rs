//! Single sign-on on the PIN page (issue 13): `direwolf serve --oidc-issuer` against a real
//! OpenID Connect provider, panva's `oidc-provider` (`support::oidc`: `tests/oidc/provider.mjs`,
//! installed with `npm ci` into the test's target directory), one public client (PKCE only) and
//! any login; `tests/proxy_e2e.rs` does the same through `direwolf proxy`. A
//! person's browser (`tests/oidc/browser.py`: cookies and redirects, the provider's login and
//! consent forms) logs in from the PIN page's link and enters the PIN the real Moonlight client
//! (moonlight-python) shows: the pairing belongs to the user the ID token names. A replayed
//! callback is refused (400), a PIN without login too (401), and with the provider down the
//! login is a 502, audited, with the PIN still pending. A confidential client logs in with its
//! secret (`--oidc-client-secret-file`); with a wrong one the provider refuses the code (401).
//! The web UI on the admin port logs in at the same provider ("Log in with single sign-on",
//! `browser.py --web-ui`) and enters the PIN of the client waiting: the pairing is that user's;
//! the callback replayed is a 400, the provider down a 502, each audited.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::oidc::{
    CLIENT_ID, OIDC_USER, browse, browse_web_ui, free_port, install_provider, start_provider,
};
use support::{
    DRIVER_TIMEOUT, Direwolf, Proc, direwolf, field, http_exchange, pin_link, port_of, post_pin, spawn_driver,
};

/// `direwolf serve` on `data` with its HTTP port at `http_port` and single sign-on at `issuer`,
/// then `extra` flags.
fn serve(data: &Path, http_port: u16, issuer: &str, extra: &[&str]) -> Direwolf {
    serve_with_admin_port(data, http_port, 0, issuer, extra)
}

/// [`serve`] with its admin port at `admin_port`.
fn serve_with_admin_port(
    data: &Path,
    http_port: u16,
    admin_port: u16,
    issuer: &str,
    extra: &[&str],
) -> Direwolf {
    let mut command = direwolf();
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string()])
        .args([
            "--https-port",
            "0",
            "--admin-port",
            &admin_port.to_string(),
            "--no-mdns",
        ])
        .args(["--pin-timeout", "120"])
        .args(["--oidc-issuer", issuer, "--oidc-client-id", CLIENT_ID])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0");
    Direwolf::started(
        Proc::spawn("direwolf serve", &mut command),
        "direwolf serve started",
        Duration::from_secs(120),
    )
}

fn get(http_port: u16, path: &str) -> (u16, String) {
    http_exchange(
        SocketAddr::from(([127, 0, 0, 1], http_port)),
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn single_sign_on_decides_who_owns_a_pairing() {
    support::require_moonlight_python();
    let dir = install_provider();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let http_port = free_port();
    let (mut provider, issuer) = start_provider(
        &dir,
        &format!("http://127.0.0.1:{http_port}/pin/oidc/callback"),
        None,
    );
    let server = serve(&tmp.path().join("data"), http_port, &issuer, &[]);
    assert_eq!(server.http_port, http_port);

    // The page offers single sign-on.
    let (status, page) = get(http_port, "/pin/");
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"data-sso="on""#),
        "the page offers single sign-on"
    );

    let driver = spawn_driver(http_port, &tmp.path().join("client1"), &["pair", "--pin", "4821"]);
    let line = server.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = pin_link(&line);
    // Without login the PIN is refused and stays pending.
    let (status, text) = post_pin(http_port, "4821", secret);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("single sign-on"), "{text}");

    // The person follows "Log in with single sign-on", logs in, and types the PIN.
    let report = browse(
        &format!("http://127.0.0.1:{http_port}/pin/oidc/login?secret={secret}"),
        Some("4821"),
    );
    let back = format!("http://127.0.0.1:{http_port}/pin/?sso={OIDC_USER}#{secret}");
    assert_eq!(report["url"], back.as_str(), "back on the PIN page: {report}");
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["pin"][0], 200, "the PIN is accepted: {report}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server.proc.wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains(&format!("user={OIDC_USER}")), "{line}");
    assert!(
        server
            .proc
            .printed_line_with(&["PIN submitted", OIDC_USER, "single sign-on"]),
        "{}",
        server.proc.tail()
    );

    // The callback again (a replay, from history or a stolen URL): 400, audited.
    let visited: Vec<&str> = report["visited"]
        .as_array()
        .expect("visited")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let callback = visited
        .iter()
        .find(|u| u.contains("/pin/oidc/callback?"))
        .unwrap_or_else(|| panic!("the provider redirected to the callback: {visited:?}"));
    let path = &callback[callback.find("/pin/").expect("a path")..];
    let (status, text) = get(http_port, path);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("already used"), "{text}");
    // Log lines arrive a moment after the answers.
    let refused = server.proc.wait_for(
        "single sign-on refused: this login is unknown",
        Duration::from_secs(10),
    );
    assert!(
        refused.contains("direwolf::audit") && refused.contains("oidc-login"),
        "{refused}"
    );
    let logged_in = server
        .proc
        .line_with("the user may enter a PIN")
        .unwrap_or_default();
    assert!(
        logged_in.contains("direwolf::audit") && logged_in.contains(&format!("user={OIDC_USER}")),
        "{logged_in}"
    );
    // The code and the state are never logged (the login cookie is a random token like them).
    for secret in [url_param(callback, "code"), url_param(callback, "state")] {
        assert!(!server.proc.printed(&secret), "{secret:?} must never be logged");
    }

    // The provider goes down, then a new direwolf starts against it (nothing cached): the login
    // is a 502, audited, and the PIN stays pending.
    provider.kill();
    drop(server);
    let tmp2 = tempfile::tempdir().expect("temporary directory");
    let server = serve(&tmp2.path().join("data"), free_port(), &issuer, &[]);
    let driver = spawn_driver(
        server.http_port,
        &tmp2.path().join("client2"),
        &["pair", "--pin", "1357"],
    );
    let line = server.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = pin_link(&line);
    let (status, text) = get(server.http_port, &format!("/pin/oidc/login?secret={secret}"));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("The PIN is still waiting"), "{text}");
    let audited = server
        .proc
        .wait_for("single sign-on not started", Duration::from_secs(10));
    assert!(
        audited.contains("direwolf::audit") && audited.contains("unreachable"),
        "{audited}"
    );
    assert_eq!(
        pending(&server, &tmp2.path().join("data")),
        1,
        "the PIN is still pending"
    );
    let (status, text) = post_pin(server.http_port, "1357", secret);
    assert_eq!(status, 401, "{text}");
    // A callback nobody started: 400.
    let (status, _) = get(server.http_port, "/pin/oidc/callback?code=x&state=y");
    assert_eq!(status, 400);
    drop(driver);
}

#[test]
fn a_confidential_client_logs_in_with_its_secret_and_a_wrong_secret_is_refused() {
    let dir = install_provider();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let secret = "the client secret: 3f9c2a71d8e4b605";
    let (right, wrong) = (free_port(), free_port());
    let callback = |port: u16| format!("http://127.0.0.1:{port}/pin/oidc/callback");
    let (_provider, issuer) = start_provider(
        &dir,
        &format!("{},{}", callback(right), callback(wrong)),
        Some(secret),
    );
    let file = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).expect("write the secret file");
        path.display().to_string()
    };
    let right_file = file("right", &format!("{secret}\n"));
    let wrong_file = file("wrong", "not the secret");

    // The right secret: logged in (no pairing waiting: back on the page without a secret).
    let server = serve(
        &tmp.path().join("data1"),
        right,
        &issuer,
        &["--oidc-client-secret-file", &right_file],
    );
    let report = browse(&format!("http://127.0.0.1:{right}/pin/oidc/login"), None);
    assert_eq!(
        report["url"],
        format!("http://127.0.0.1:{right}/pin/?sso={OIDC_USER}").as_str(),
        "{report}"
    );
    assert_eq!(report["status"], 200, "{report}");
    assert!(!server.proc.printed(secret), "the client secret is never logged");
    drop(server);

    // A wrong secret: the provider refuses the code's exchange; 401, audited.
    let server = serve(
        &tmp.path().join("data2"),
        wrong,
        &issuer,
        &["--oidc-client-secret-file", &wrong_file],
    );
    let report = browse(&format!("http://127.0.0.1:{wrong}/pin/oidc/login"), None);
    assert_eq!(report["status"], 401, "{report}");
    let body = report["body"].as_str().unwrap_or_default();
    assert!(body.contains("invalid_client"), "{body}");
    let audited = server
        .proc
        .wait_for("single sign-on refused", Duration::from_secs(10));
    assert!(
        audited.contains("direwolf::audit") && audited.contains("invalid_client"),
        "{audited}"
    );
    assert!(!server.proc.printed("not the secret"));
}

/// How many pairings wait for a PIN (`direwolf pairing list`).
fn pending(server: &Direwolf, data: &Path) -> usize {
    let line = server
        .proc
        .line_with("direwolf serve started")
        .expect("the start-up line was printed");
    let admin_port = port_of(field(&line, " admin="));
    let mut command = direwolf();
    command
        .args(["pairing", "list", "--output", "json"])
        .env("DIREWOLF_URL", format!("https://127.0.0.1:{admin_port}"))
        .env("DIREWOLF_DATA_DIR", data)
        .env_remove("DIREWOLF_TOKEN")
        .env_remove("DIREWOLF_FINGERPRINT");
    let out = Proc::spawn("direwolf pairing list", &mut command).finish(Duration::from_secs(60));
    assert!(out.status.success(), "direwolf pairing list: {}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).expect("pairing list prints JSON");
    list["pending"].as_array().map_or(0, Vec::len)
}

/// The decoded value of `name` in `url`'s query.
fn url_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

#[test]
fn the_web_ui_logs_in_with_single_sign_on_and_enters_a_pin_for_that_user() {
    support::require_moonlight_python();
    let dir = install_provider();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (http_port, admin_port) = (free_port(), free_port());
    let (mut provider, issuer) = start_provider(
        &dir,
        &format!(
            "http://127.0.0.1:{http_port}/pin/oidc/callback,https://127.0.0.1:{admin_port}/ui/oidc/callback"
        ),
        None,
    );
    let server = serve_with_admin_port(&tmp.path().join("data"), http_port, admin_port, &issuer, &[]);
    let admin_url = format!("https://127.0.0.1:{admin_port}");

    // Ada logs in to the web UI through the provider, then enters the PIN her client shows.
    let driver = spawn_driver(http_port, &tmp.path().join("client"), &["pair", "--pin", "2468"]);
    let line = server.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = pin_link(&line);
    let report = browse_web_ui(&admin_url, secret, "2468");
    assert_eq!(
        report["url"],
        format!("{admin_url}/"),
        "back on the web UI: {report}"
    );
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["session"]["user"], OIDC_USER, "{report}");
    assert_eq!(
        report["session"]["admin"], false,
        "not an administrator: {report}"
    );
    assert_eq!(report["approve"][0], 204, "the PIN is accepted: {report}");
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server.proc.wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains(&format!("user={OIDC_USER}")), "{line}");
    // The provider's redirect back, opened again: 400, audited.
    assert_eq!(report["replay"][0], 400, "{report}");
    let proc = &server.proc;
    assert!(
        proc.printed_line_with(&[
            "direwolf::audit",
            "ui/oidc/callback",
            "status=400",
            "not started in this browser"
        ]),
        "the replay is audited\n{}",
        proc.tail()
    );
    assert!(
        proc.printed_line_with(&[
            "direwolf::audit",
            "web-ui",
            "oidc-login",
            &format!("user={OIDC_USER}")
        ]),
        "the login is audited\n{}",
        proc.tail()
    );
    let callback = report["visited"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .find(|u| u.contains("/ui/oidc/callback?"))
        })
        .expect("the provider redirected to the callback")
        .to_owned();
    for secret in [url_param(&callback, "code"), url_param(&callback, "state")] {
        assert!(!proc.printed(&secret), "{secret:?} must never be logged");
    }

    // The provider is down: the web UI's login is a 502, audited; nobody is logged in.
    provider.kill();
    drop(server);
    let tmp2 = tempfile::tempdir().expect("temporary directory");
    let admin_port = free_port();
    let server = serve_with_admin_port(&tmp2.path().join("data"), free_port(), admin_port, &issuer, &[]);
    let report = browse_web_ui(&format!("https://127.0.0.1:{admin_port}"), secret, "2468");
    assert_eq!(report["status"], 502, "{report}");
    assert!(
        report["body"].as_str().is_some_and(|b| b.contains("unreachable")),
        "{report}"
    );
    assert_eq!(report["session"]["status"], 401, "{report}");
    let audited = server
        .proc
        .wait_for("single sign-on not started", Duration::from_secs(10));
    assert!(
        audited.contains("direwolf::audit") && audited.contains("web-ui"),
        "{audited}"
    );
}

#[test]
fn unusable_single_sign_on_flags_stop_the_start_with_the_reason() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let missing = tmp.path().join("no-such-secret");
    let missing = missing.display().to_string();
    for (flags, reason) in [
        (
            vec!["--oidc-issuer", "https://id.example.com"],
            "--oidc-client-id",
        ),
        (
            vec![
                "--oidc-issuer",
                "https://id.example.com",
                "--oidc-client-id",
                CLIENT_ID,
                "--oidc-client-secret-file",
                &missing,
            ],
            "cannot read --oidc-client-secret-file",
        ),
        (
            vec!["--oidc-issuer", "id.example.com", "--oidc-client-id", CLIENT_ID],
            "the issuer \"id.example.com\"",
        ),
    ] {
        let mut command = direwolf();
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
            .args(["--admin-port", "0", "--no-mdns"])
            .args(&flags);
        let out = Proc::spawn("direwolf serve", &mut command).finish(Duration::from_secs(60));
        assert!(!out.status.success(), "{flags:?} must not start");
        assert!(out.stderr.contains(reason), "{flags:?}: {}", out.stderr);
    }
}
