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
