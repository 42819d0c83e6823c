//! `direwolf serve` as a process: identity across restarts, clean SIGTERM, refusals with clear
//! messages (data directory in use, damaged database, bad configuration file). No Moonlight
//! client needed.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Direwolf, Finished, Proc, serve_command};

/// Starts a server and waits for its `direwolf serve started` log line.
fn start(data_dir: &Path) -> Direwolf {
    let server = Proc::spawn("direwolf serve", &mut serve_command(data_dir));
    Direwolf::started(server, "direwolf serve started", Duration::from_secs(120))
}

/// Runs a server that is expected to fail at once; returns its output.
fn run_failing(command: &mut std::process::Command) -> Finished {
    Proc::spawn("direwolf serve (expected to refuse to start)", command).finish(Duration::from_secs(60))
}

#[test]
fn identity_survives_restart_and_sigterm_is_clean() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let server = start(&data);
    assert!(
        server.proc.printed("no [[wolf]] host is configured"),
        "without Wolf hosts, start-up says no stream can start\n{}",
        server.proc.tail()
    );
    let first = server.fingerprint.clone();
    let token = std::fs::read_to_string(data.join("admin-token")).expect("serve creates the admin token");
    server.proc.stop();
    let server = start(&data);
    assert_eq!(
        server.fingerprint, first,
        "the server identity must survive a restart"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("admin-token")).expect("the admin token"),
        token,
        "the admin token is created once and kept"
    );
    server.proc.stop();
}

#[test]
fn a_data_directory_in_use_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let server = start(&data);
    let out = run_failing(&mut serve_command(&data));
    let stderr = &out.stderr;
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another process") && stderr.contains(&*data.to_string_lossy()),
        "the second server must say the database is in use and where: {stderr}"
    );
    server.proc.stop();
}

#[test]
fn a_bad_configuration_file_is_refused_with_the_line() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let config = tmp.path().join("direwolf.toml");
    std::fs::write(
        &config,
        "hostname = \"x\"\n\n[[apps]]\ntitle = \"A\"\nid = 1\nicon = \"a.png\"\n",
    )
    .expect("write the configuration");
    let out = run_failing(
        serve_command(&tmp.path().join("data"))
            .arg("--config")
            .arg(&config),
    );
    let stderr = &out.stderr;
    assert!(!out.status.success());
    assert!(stderr.contains("line 6") && stderr.contains("icon"), "{stderr}");
    assert!(
        !tmp.path().join("data").exists(),
        "nothing is created when the configuration is bad"
    );
}

#[test]
fn a_damaged_database_is_refused_not_replaced_and_without_a_panic() {
    const DAMAGED: &str = "database damaged: restore it from a backup or move it away to start afresh";
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let server = start(&data);
    server.proc.stop();
    let db = data.join("direwolf.redb");
    let whole = std::fs::read(&db).expect("read the database");
    // Empty: refused, not taken for a new server. Truncated: refused, though redb panics on it.
    for damaged in [&[][..], &whole[..whole.len() / 2]] {
        std::fs::write(&db, damaged).expect("damage the database");
        let out = run_failing(&mut serve_command(&data));
        let stderr = &out.stderr;
        assert!(!out.status.success());
        assert!(
            stderr.contains(DAMAGED) && stderr.contains(&*db.to_string_lossy()),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            std::fs::read(&db).expect("read it again"),
            damaged,
            "the file was changed"
        );
    }
}

/// Vector C's client certificate (`docs/protocol/moonlight-http.md` § Test vectors), for a
/// pairing phase 1.
const CLIENT_CERT: &str = include_str!("../../direwolf-moonlight/tests/data/vector_c_client_cert.pem");

#[test]
fn wolf_api_socket_serves_wolf_managers_and_goes_away_on_shutdown() {
    use std::net::SocketAddr;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use direwolf_wolf_client::types::PairClientRequest;
    use direwolf_wolf_client::{WolfClient, WolfVersion};

    let tmp = tempfile::tempdir().expect("temporary directory");
    let socket = tmp.path().join("wolf.sock");
    // A socket left by a crashed server is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("a stale socket"));
    let server = Proc::spawn(
        "direwolf serve",
        serve_command(&tmp.path().join("data"))
            .arg("--wolf-api-socket")
            .arg(&socket),
    );
    let server = Direwolf::started(server, "direwolf serve started", Duration::from_secs(120));
    assert!(
        server.proc.printed("last until the server stops"),
        "start-up says API-made app changes are not kept\n{}",
        server.proc.tail()
    );
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists once started");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let wolf = WolfClient::builder()
        .with_unix_socket(socket.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .expect("a Wolf client");
    runtime.block_on(async {
        let version = tokio::time::timeout(Duration::from_secs(20), wolf.wait_ready(Duration::from_secs(15)))
            .await
            .expect("the Wolf API is ready within 20 s")
            .expect("the Wolf API answers");
        assert_eq!(version, WolfVersion::V6);
        let apps = wolf.apps().await.expect("apps");
        assert_eq!(
            apps.iter()
                .map(|a| (a.id.as_str(), a.title.as_str()))
                .collect::<Vec<_>>(),
            [("1", "Desktop")],
            "without a configuration file, one Desktop app"
        );
        let mut app = apps[0].clone();
        app.id = "9".into();
        app.title = "Steam".into();
        wolf.add_app(&app).await.expect("add an app");
        assert_eq!(wolf.apps().await.expect("apps").len(), 2);
        wolf.delete_app(&"9".into()).await.expect("delete the app");
        assert_eq!(wolf.apps().await.expect("apps").len(), 1);
        assert!(wolf.clients().await.expect("clients").is_empty());
    });

    // A pairing started on the GameStream port waits in the Wolf API's pending list, and the
    // PIN given there reaches it: the two share one broker.
    let http = SocketAddr::from(([127, 0, 0, 1], server.http_port));
    let phase1 = std::thread::spawn(move || {
        support::http_exchange(
            http,
            &format!(
                "GET /pair?uniqueid=0123456789ABCDEF&uuid=abc&devicename=roth&updateState=1&\
                 phrase=getservercert&salt=000102030405060708090a0b0c0d0e0f&clientcert={} HTTP/1.1\r\n\
                 Host: 127.0.0.1\r\nConnection: close\r\n\r\n",
                hex_encode(CLIENT_CERT.as_bytes())
            ),
        )
    });
    runtime.block_on(async {
        let pending = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(p) = wolf.pending_pair_requests().await.expect("pending").pop() {
                    return p;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the pairing is listed as pending within 30 s");
        assert_eq!(pending.client_ip, "127.0.0.1");
        wolf.pair_client(&PairClientRequest {
            pair_secret: pending.pair_secret,
            pin: "1234".into(),
        })
        .await
        .expect("the PIN is accepted");
    });
    let (status, body) = phase1.join().expect("phase 1");
    assert_eq!(status, 200);
    assert!(
        body.contains("<paired>1</paired>") && body.contains("<plaincert>"),
        "{body}"
    );
    let submitted = server
        .proc
        .wait_for("wolf api: PIN submitted", Duration::from_secs(30));
    assert!(
        !submitted.contains("1234"),
        "the PIN is never logged: {submitted}"
    );

    server.proc.stop();
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
