//! Who enters the PIN owns the pairing, with local accounts (issue 13, single-machine mode):
//! `direwolf user passwd` gives alice a password; from then on the PIN page wants a user name and
//! password with the PIN (a wrong one leaves the PIN pending), refuses a PIN entered without
//! login (as it does on a fresh install, whose PIN page says how to get one), and
//! `direwolf pairing link` lets bob pair once without a password (a mistyped PIN
//! does not use the link up; a successful pairing does). The clients are the real Moonlight
//! client (moonlight-python).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    DRIVER_TIMEOUT, Direwolf, Proc, direwolf, field, http_exchange, pin_link, port_of, serve_command,
    spawn_driver,
};

/// How long one CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
const ALICE_PASSWORD: &str = "correct horse battery staple";

struct Server {
    server: Direwolf,
    admin_port: u16,
    data: PathBuf,
}

impl Server {
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

    /// `direwolf ARGS` with `input` on its standard input, within [`CLI_TIMEOUT`]; (success, stdout,
    /// stderr).
    fn with_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        support::with_stdin(self.cli().args(args), input, CLI_TIMEOUT)
    }

    /// POSTs `body` to the PIN page as its script does; (status, text).
    fn post_pin(&self, body: &Value) -> (u16, String) {
        let port = self.server.http_port;
        let body = body.to_string();
        let request = format!(
            "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = http_exchange(SocketAddr::from(([127, 0, 0, 1], port)), &request);
        (status, text.trim().to_owned())
    }

    /// The users each paired client belongs to, sorted.
    fn pairing_users(&self) -> Vec<String> {
        let list: Value = serde_json::from_str(&self.ok(&["pairing", "list", "--output", "json"]))
            .expect("pairing list prints JSON");
        let mut users: Vec<String> = list["pairings"]
            .as_array()
            .expect("pairings")
            .iter()
            .map(|p| p["user"].as_str().unwrap_or_default().to_owned())
            .collect();
        users.sort();
        users
    }

    fn pending(&self) -> usize {
        let list: Value = serde_json::from_str(&self.ok(&["pairing", "list", "--output", "json"]))
            .expect("pairing list prints JSON");
        list["pending"].as_array().map_or(0, Vec::len)
    }
}

fn start(data: &Path) -> Server {
    let proc = Proc::spawn(
        "direwolf serve",
        serve_command(data).args(["--pin-timeout", "120"]),
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

#[test]
fn local_accounts_decide_who_owns_a_pairing() {
    support::require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let server = start(&tmp.path().join("data"));
    // A fresh install: the page says, before anything is typed, that nobody can log in yet and
    // how to change that.
    let page = http_exchange(
        SocketAddr::from(([127, 0, 0, 1], server.server.http_port)),
        "GET /pin/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(page.1.contains(r#"data-notice="accounts""#), "{}", page.1);
    assert!(page.1.contains("direwolf user passwd NAME"), "{}", page.1);
    assert!(
        server
            .server
            .proc
            .printed("a PIN is accepted only from someone who logged in")
    );

    // Client 1 shows 4821; the PIN page is used by alice.
    let client1 = tmp.path().join("client1");
    let driver = spawn_driver(server.server.http_port, &client1, &["pair", "--pin", "4821"]);
    let line = server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = pin_link(&line);
    // (e) Before anyone has a password, a bare PIN is refused all the same; it stays pending.
    let fresh = server.post_pin(&json!({"pin": "4821", "secret": secret}));
    assert_eq!(fresh.0, 401, "{fresh:?}");
    assert!(fresh.1.starts_with("No one can log in yet"), "{fresh:?}");
    assert_eq!(server.pending(), 1, "the PIN is still pending");

    server.ok(&["user", "add", "alice"]);
    server.ok(&["user", "add", "bob"]);

    // A password that is too short is refused; the first password makes alice an administrator.
    let (ok, _, stderr) = server.with_stdin(&["user", "passwd", "alice"], "short\n");
    assert!(!ok && stderr.contains("at least 8"), "{stderr}");
    let (ok, stdout, stderr) = server.with_stdin(
        &["user", "passwd", "alice", "--password-stdin"],
        &format!("{ALICE_PASSWORD}\n"),
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("password set for alice (an administrator)"),
        "{stdout}"
    );
    let users: Value =
        serde_json::from_str(&server.ok(&["user", "list", "--output", "json"])).expect("JSON users");
    let alice = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "alice"))
        .expect("alice is listed");
    assert_eq!(
        (&alice["has_password"], &alice["admin"]),
        (&json!(true), &json!(true))
    );
    assert!(
        !users.to_string().contains("argon2"),
        "the hash is never shown: {users}"
    );

    // (d) Without login, nobody may enter the PIN while accounts exist.
    let anonymous = server.post_pin(&json!({"pin": "4821", "secret": secret, "user": "alice"}));
    assert_eq!(anonymous.0, 401, "{anonymous:?}");
    assert!(anonymous.1.contains("Log in"), "{anonymous:?}");
    // (b) A wrong password: 401, the PIN still pending.
    let wrong = server.post_pin(
        &json!({"pin": "4821", "secret": secret, "user": "alice", "password": "not alice's password"}),
    );
    assert_eq!(wrong.0, 401, "{wrong:?}");
    assert!(wrong.1.contains("Wrong user name or password"), "{wrong:?}");
    assert_eq!(
        server.pending(),
        1,
        "the PIN is still pending after a wrong password"
    );
    // (a) The right password: alice owns the pairing.
    let right = server
        .post_pin(&json!({"pin": "4821", "secret": secret, "user": "alice", "password": ALICE_PASSWORD}));
    assert_eq!(right, (200, "OK".to_owned()));
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server
        .server
        .proc
        .wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains("user=alice"), "{line}");
    assert_eq!(server.pairing_users(), ["alice"]);

    // (c) bob has no password: the administrator gives him a one-time link.
    let link: Value =
        serde_json::from_str(&server.ok(&["pairing", "link", "bob", "--ttl", "10m", "--output", "json"]))
            .expect("pairing link prints JSON");
    let url = link["url"].as_str().expect("a URL");
    let prefix = format!("http://127.0.0.1:{}/pin/?link=", server.server.http_port);
    let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), 43, "{url}");
    let page = http_exchange(
        SocketAddr::from(([127, 0, 0, 1], server.server.http_port)),
        &format!("GET /pin/?link={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(page.0, 200, "the link opens the PIN page");
    assert!(page.1.contains("get(\"link\")"), "the page reads the link");

    let client2 = tmp.path().join("client2");
    // bob mistypes the PIN: the pairing fails, and the link is not used up by it.
    let driver = spawn_driver(server.server.http_port, &client2, &["pair", "--pin", "5937"]);
    server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let mistyped = server.post_pin(&json!({"pin": "5973", "link": token}));
    assert_eq!(mistyped, (200, "OK".to_owned()));
    let failed = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(failed["ok"], false, "a wrong PIN must fail: {failed}");
    assert_eq!(failed["error"], "WrongPinError", "{failed}");
    server
        .server
        .proc
        .wait_for("its pairing link may be used again", Duration::from_secs(10));

    let driver = spawn_driver(server.server.http_port, &client2, &["pair", "--pin", "5937"]);
    server
        .server
        .proc
        .wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    // The page as the link opens it has no secret: the one pairing waiting is bob's; no
    // password, and the form's user is ignored.
    let linked = server.post_pin(&json!({"pin": "5937", "link": token, "user": "alice"}));
    assert_eq!(linked, (200, "OK".to_owned()));
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server
        .server
        .proc
        .wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains("user=bob"), "{line}");
    assert_eq!(server.pairing_users(), ["alice", "bob"]);
    // The link is used up.
    let reused = server.post_pin(&json!({"pin": "5937", "link": token}));
    assert_eq!(reused.0, 410, "{reused:?}");
    assert!(reused.1.contains("already used"), "{reused:?}");

    // The refusals are audited; no password or link token is ever logged (PINs are four digits,
    // which timestamps contain by chance: the PIN page's unit tests cover them).
    let proc = &server.server.proc;
    assert!(
        proc.printed_line_with(&["direwolf::audit", "wrong user name or password", "user=alice"]),
        "the wrong password is audited\n{}",
        proc.tail()
    );
    assert_eq!(
        proc.count_lines_with(&["direwolf::audit", "PIN entry without login refused"]),
        2,
        "the bare PINs before and after alice's password are audited"
    );
    assert!(proc.printed_line_with(&["direwolf::audit", "pairing link refused", "already used"]));
    for secret in [ALICE_PASSWORD, "not alice's password", token] {
        assert!(!proc.printed(secret), "{secret:?} must never be logged");
    }
}
