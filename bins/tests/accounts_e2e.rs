//! Issue 13's whole story in one run, with two real Moonlight clients (moonlight-python 0.3.0,
//! which runs moonlight-common-c) streaming at once through `direwolf serve` and its Wolf pool
//! (two fake Wolfs), in network namespaces as in `pack_e2e.rs`:
//!
//! 1. The CLI sets everything up: apps Alpha (1) and Beta (2); alice, the administrator, may use
//!    Alpha only, bob Beta only; both get passwords.
//! 2. bob's client pairs with bob entering its PIN in the web UI (headless Chromium in bob's
//!    namespace); alice's client pairs with alice's password on the PIN page, after a spoofed
//!    `X-Forwarded-User` from her (untrusted) address was refused.
//! 3. Each client's app list holds only its user's app, and a launch of the other's app is refused
//!    with a message the client shows.
//! 4. Both stream their own app at once (RTSP, ENet, RTP arriving).
//! 5. bob revokes his device in the web UI, asking for its session to end: his client is refused
//!    at its next request and his stream ends, while alice keeps receiving RTP and her client's
//!    next request works. Then the CLI revokes alice's pairing with `--stop-sessions`.
//! 6. A spoofed `X-Forwarded-User` on the admin API from an untrusted address is refused too.
//!
//! Screenshots are kept in `accounts-e2e-screenshots` in Cargo's `CARGO_TARGET_TMPDIR`, their
//! paths printed. Needs root, `ip`, `nft`, python3 with moonlight_python 0.3.0, node, npm and
//! Debian's chromium (installed when missing); fails (never passes silently) without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::pack::*;
use support::{DIREWOLF, Proc, in_netns, pin_link, wait_until};

/// direwolf's metrics port, inside its namespace.
const METRICS: &str = "127.0.0.1:9464";
/// Nobody lives at this address: the only trusted proxy.
const PROXY: &str = "10.77.0.30";
const ALICE_PASSWORD: &str = "alice administers the wolves";
const BOB_PASSWORD: &str = "bob only plays games";
const BOB_PIN: &str = "4821";
const ALICE_PIN: &str = "5937";

/// The CLI, run in direwolf's namespace against its admin port, trusting what the data
/// directory holds.
struct Cli {
    ns: String,
    data: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = in_netns(&self.ns, DIREWOLF);
        command
            .args(args)
            .env("DIREWOLF_URL", "https://127.0.0.1:47990")
            .env("DIREWOLF_DATA_DIR", &self.data)
            .env_remove("DIREWOLF_TOKEN")
            .env_remove("DIREWOLF_FINGERPRINT");
        command
    }

    /// `direwolf ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = Proc::spawn(&format!("direwolf {}", args.join(" ")), &mut self.command(args)).finish(STEP);
        assert!(out.status.success(), "direwolf {args:?}: {}", out.stderr);
        out.stdout
    }

    /// `direwolf ARGS --output json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap_or_else(|e| panic!("{args:?} prints JSON: {e}"))
    }

    /// `direwolf user passwd NAME --password-stdin`; its stdout.
    fn passwd(&self, name: &str, password: &str) -> String {
        let mut cmd = self.command(&["user", "passwd", name, "--password-stdin"]);
        support::passwd_with(&mut cmd, password, STEP)
    }

    /// The words of the table row of `ARGS` that starts with `first`.
    fn row(&self, args: &[&str], first: &str) -> Vec<String> {
        let table = self.ok(args);
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no row {first} in\n{table}"));
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// The fingerprint of `user`'s one pairing.
    fn pairing_of(&self, user: &str) -> String {
        let list = self.json(&["pairing", "list"]);
        let mine: Vec<&Value> = list["pairings"]
            .as_array()
            .expect("pairings")
            .iter()
            .filter(|p| p["user"] == user)
            .collect();
        assert_eq!(mine.len(), 1, "{user} has one pairing: {list}");
        mine[0]["fingerprint"].as_str().expect("a fingerprint").to_owned()
    }

    /// The users with a session, sorted.
    fn session_users(&self) -> Vec<String> {
        let list = self.json(&["session", "list"]);
        let mut users: Vec<String> = list
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| s["user"].as_str().unwrap_or_default().to_owned())
            .collect();
        users.sort();
        users
    }
}

/// The serve configuration: two Wolfs, the relay's ports, no apps (the CLI adds them).
fn write_config(root: &Path) -> PathBuf {
    let config = root.join("direwolf.toml");
    let wolf = |name: &str, host: u8| {
        format!(
            "[[wolf]]\nname = \"{name}\"\napi = \"{}\"\nstream_address = \"{SUBNET}.{host}\"\n\n",
            root.join(format!("{name}.sock")).display()
        )
    };
    let text = format!(
        "hostname = \"accounts-e2e\"\n\n[relay]\nport_range = \"41000-41099\"\n\n{}{}",
        wolf("wolf-a", 21),
        wolf("wolf-b", 22)
    );
    std::fs::write(&config, text).expect("write the configuration");
    config
}

/// Step 1: apps, users with their apps and passwords, all through the CLI.
fn set_up_accounts(cli: &Cli) {
    assert_eq!(
        cli.ok(&["app", "add", "Alpha", "--id", "1"]),
        "added app 1 \"Alpha\"\n"
    );
    assert_eq!(
        cli.ok(&["app", "add", "Beta", "--id", "2"]),
        "added app 2 \"Beta\"\n"
    );
    let apps = cli.json(&["app", "list"]);
    let titles: Vec<&str> = apps
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| a["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(titles, ["Alpha", "Beta"], "{apps}");
    let alice = cli.json(&["user", "add", "alice", "--apps", "1"]);
    assert_eq!(alice["apps"], serde_json::json!([1]), "{alice}");
    assert!(
        cli.ok(&["user", "add", "bob", "--apps", "2"])
            .contains("created user bob")
    );
    assert!(cli.passwd("alice", ALICE_PASSWORD).contains("(an administrator)"));
    let bob = cli.passwd("bob", BOB_PASSWORD);
    assert!(!bob.contains("administrator"), "bob is a person: {bob}");
    // The table: NAME, DISPLAY NAME (empty), APPS, PASSWORD, ADMIN.
    assert!(
        cli.row(&["user", "list"], "alice")
            .ends_with(&["1".into(), "yes".into(), "yes".into()])
    );
    assert!(
        cli.row(&["user", "list"], "bob")
            .ends_with(&["2".into(), "yes".into(), "no".into()])
    );
}

/// A `pack_driver.py` run to its end in `ns`; its report.
fn pack_driver(ns: &str, client: &Path, args: &[&str]) -> Value {
    driver(ns, client, args, "pack_driver.py").json_result(STEP)
}

/// Step 2 for alice: her client asks to pair; a spoofed identity header from her address is
/// refused; her password on the PIN page pairs it.
fn pair_alice_with_her_password(server: &Proc, ns: &str, client: &Path) {
    let pairing = driver(ns, client, &["pair", "--pin", ALICE_PIN], "driver.py");
    let line = server.wait_for("Insert pin at http://", STEP);
    let (_, secret) = pin_link(&line);
    let post = |extra: &[&str]| {
        let mut args = vec![
            "post-pin", "--pin", ALICE_PIN, "--secret", secret, "--user", "alice",
        ];
        args.extend_from_slice(extra);
        pack_driver(ns, client, &args)
    };
    let spoofed = post(&["--header", "X-Forwarded-User: alice"]);
    assert_eq!(spoofed["status"], 403, "{spoofed}");
    assert!(
        spoofed["body"]
            .as_str()
            .is_some_and(|b| b.contains("trusted proxies")),
        "{spoofed}"
    );
    let logged_in = post(&["--password", ALICE_PASSWORD]);
    assert_eq!(logged_in["status"], 200, "{logged_in}");
    let paired = pairing.report(STEP);
    assert_eq!(paired["ok"], true, "alice's client pairs: {paired}");
    let line = server.wait_for("client paired", STEP);
    assert!(line.contains("user=alice"), "{line}");
}

/// Step 3: the client's app list is `[title]`, and a launch of `other` (an app id) is refused
/// with the message the client shows.
fn sees_only(ns: &str, client: &Path, title: &str, other: u32) {
    let check = driver(ns, client, &["check"], "driver.py").json_result(STEP);
    let names: Vec<&str> = check["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, [title], "{check}");
    let id = other.to_string();
    let launch = pack_driver(ns, client, &["launch-times", "--app-id", &id, "--count", "1"]);
    assert_eq!(
        (&launch["ok"], &launch["error"]),
        (&Value::Bool(false), &Value::from("HttpResponseError")),
        "{launch}"
    );
    let shown = format!("app {other} is not available to you");
    assert!(
        launch["message"].as_str().is_some_and(|m| m.contains(&shown)),
        "the client shows why: {launch}"
    );
}

/// Starts `app`'s stream from `ns` and waits until it started and RTP arrives.
fn stream_app(ns: &str, client: &Path, stop: &Path, app: &str) -> Proc {
    let until = stop.to_str().expect("utf-8");
    let args = ["stream", "--app", app, "--until", until, "--max-secs", "60"];
    let stream = driver(ns, client, &args, "pack_driver.py");
    let started = stream.report(STEP);
    assert_eq!(started["event"], "started", "{app} streams: {started}");
    wait_until(
        &format!("{app}'s client receives audio and video RTP"),
        STEP,
        || {
            let (audio, video) = rtp_counts(ns);
            audio > 0 && video > 0
        },
    );
    stream
}

/// A client whose pairing was revoked: refused at its next request.
fn refused(ns: &str, client: &Path) {
    let out = driver(ns, client, &["check"], "driver.py").finish(STEP);
    assert!(
        !out.status.success() && out.stdout.contains("not authorized"),
        "a revoked client is refused at its next request: {}",
        out.stdout
    );
}

#[test]
fn two_people_pair_stream_their_own_apps_and_one_is_revoked_in_the_browser() {
    require_tools();
    let bin = support::fake_wolf_binary();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path();
    let net = pack_net("dwa");
    let (dw, c1, c2) = (net.ns("dw"), net.ns("c1"), net.ns("c2"));
    let _wolves = [
        Wolf::start(&bin, &net.ns("wa"), "wolf-a", root, &format!("{SUBNET}.21")),
        Wolf::start(&bin, &net.ns("wb"), "wolf-b", root, &format!("{SUBNET}.22")),
    ];
    let config = write_config(root);
    let mut serve = serve_command_in(&dw, root, &config, METRICS, "info");
    serve.args(["--trusted-proxy", PROXY]);
    let server = Proc::spawn("direwolf", &mut serve);
    server.wait_for("direwolf serve started", STEP);
    let cli = Cli {
        ns: dw.clone(),
        data: root.join("data"),
    };
    set_up_accounts(&cli);

    // bob's phone shows its PIN; bob enters it in the web UI, from his own network.
    let (alice_dir, bob_dir) = (root.join("alice"), root.join("bob"));
    let browser = Browser::prepare(
        "accounts-e2e-driver",
        "accounts-e2e-screenshots",
        format!("https://{DW_IP}:47990/"),
        Some(c2.clone()),
    );
    let pairing = driver(&c2, &bob_dir, &["pair", "--pin", BOB_PIN], "driver.py");
    server.wait_for("Insert pin at http://", STEP);
    browser.step("pin", "bob", BOB_PASSWORD, Some(Path::new(BOB_PIN)));
    let paired = pairing.report(STEP);
    assert_eq!(paired["ok"], true, "bob's client pairs: {paired}");
    assert!(server.wait_for("client paired", STEP).contains("user=bob"));
    pair_alice_with_her_password(&server, &c1, &alice_dir);
    let (alice_fp, bob_fp) = (cli.pairing_of("alice"), cli.pairing_of("bob"));
    assert_eq!(cli.row(&["pairing", "list"], &alice_fp)[1], "alice");
    assert_eq!(cli.row(&["pairing", "list"], &bob_fp)[1], "bob");

    sees_only(&c1, &alice_dir, "Alpha", 2);
    sees_only(&c2, &bob_dir, "Beta", 1);

    // Both stream at once.
    install_rtp_counters(&c1);
    install_rtp_counters(&c2);
    let (stop_alice, stop_bob) = (root.join("stop-alice"), root.join("stop-bob"));
    let alice_stream = stream_app(&c1, &alice_dir, &stop_alice, "Alpha");
    let bob_stream = stream_app(&c2, &bob_dir, &stop_bob, "Beta");
    assert_eq!(cli.session_users(), ["alice", "bob"]);
    assert_eq!(cli.row(&["session", "list"], &session_id(&cli, "bob"))[2], "2");

    // bob revokes his device in the browser and asks for its session to end.
    let ended = browser.step("revoke-ending", "bob", BOB_PASSWORD, None);
    eprintln!(
        "bob's sessions before the revocation: {}",
        ended["sessions_before"]
    );
    let alice_audio = rtp_counts(&c1).0;
    refused(&c2, &bob_dir);
    assert_eq!(cli.session_users(), ["alice"]);
    assert!(server.printed_line_with(&["session ended", "user=bob"]));
    let stopped_at = rtp_counts(&c2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rtp_counts(&c2), stopped_at, "bob's stream gets no more RTP");
    wait_until("alice keeps receiving RTP", Duration::from_secs(5), || {
        rtp_counts(&c1).0 > alice_audio + 2
    });
    let info = serverinfo(&c1, &alice_dir);
    assert!(
        info["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("_SERVER_BUSY")),
        "alice's client's next request works and sees her stream: {info}"
    );
    assert_eq!(info["current_game"], 1, "{info}");
    std::fs::write(&stop_bob, b"").expect("stop file");
    eprintln!("bob's stream: {}", bob_stream.report(STEP));

    // Identity headers from an address that is not the trusted proxy: refused on the admin API
    // as on the PIN page, and audited.
    let admin = pack_driver(
        &c1,
        &alice_dir,
        &[
            "admin-get",
            "--path",
            "/api/v1/users",
            "--header",
            "X-Forwarded-User: alice",
        ],
    );
    assert_eq!(admin["status"], 403, "{admin}");
    assert!(
        admin["body"]
            .as_str()
            .is_some_and(|b| b.contains("trusted proxies")),
        "{admin}"
    );
    for needles in [
        &["direwolf::audit", "10.77.0.11", "status=403", "trusted proxies"][..],
        &[
            "direwolf::audit",
            "10.77.0.11",
            "identity headers from an untrusted address refused",
        ],
    ] {
        assert!(
            server.printed_line_with(needles),
            "audited: {needles:?}\n{}",
            server.tail()
        );
    }

    // The CLI revokes alice's pairing and ends her session.
    cli.ok(&["pairing", "revoke", &alice_fp, "--stop-sessions"]);
    assert!(cli.session_users().is_empty());
    refused(&c1, &alice_dir);
    std::fs::write(&stop_alice, b"").expect("stop file");
    eprintln!("alice's stream: {}", alice_stream.report(STEP));
    for secret in [ALICE_PASSWORD, BOB_PASSWORD] {
        assert!(!server.printed(secret), "a password is never logged");
    }
}

/// The id of `user`'s session.
fn session_id(cli: &Cli, user: &str) -> String {
    let list = cli.json(&["session", "list"]);
    let session = list
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["user"] == user)
        .unwrap_or_else(|| panic!("{user} has a session: {list}"));
    session["id"].as_str().expect("an id").to_owned()
}
