//! `direwolf serve` as a process: identity across restarts, clean SIGTERM, refusals with clear
//! messages (data directory in use, bad configuration file). No Moonlight client needed.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_direwolf"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--no-mdns",
        ])
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Starts a server and returns it with its `direwolf serve started` log line.
fn start(data_dir: &Path) -> (ChildGuard, String) {
    let mut child = serve_command(data_dir).spawn().expect("start direwolf serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("direwolf serve started") => return (guard, line),
            Ok(_) => {}
            Err(e) => panic!("direwolf serve did not start within 120 s ({e}); a timeout means it hangs"),
        }
    }
}

fn fingerprint(line: &str) -> String {
    let start = line
        .find("server.fingerprint=")
        .expect("fingerprint in the start line")
        + 19;
    line[start..start + 64].to_owned()
}

/// SIGTERM and a clean exit within 30 s.
fn stop(mut server: ChildGuard) {
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("poll") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "direwolf serve did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "SIGTERM must end direwolf serve cleanly, got {status}"
    );
}

/// Runs a server that is expected to fail at once; returns its output.
fn run_failing(mut command: Command) -> Output {
    let mut child = ChildGuard(command.spawn().expect("start direwolf serve"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "direwolf serve should have refused to start, but it runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = Vec::new();
    child
        .0
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_end(&mut stderr)
        .expect("read stderr");
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

#[test]
fn identity_survives_restart_and_sigterm_is_clean() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let (server, line) = start(&data);
    let first = fingerprint(&line);
    stop(server);
    let (server, line) = start(&data);
    assert_eq!(
        fingerprint(&line),
        first,
        "the server identity must survive a restart"
    );
    stop(server);
}

#[test]
fn a_data_directory_in_use_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let data = tmp.path().join("data");
    let (server, _) = start(&data);
    let out = run_failing(serve_command(&data));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another process") && stderr.contains(&*data.to_string_lossy()),
        "the second server must say the database is in use and where: {stderr}"
    );
    stop(server);
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
    let mut command = serve_command(&tmp.path().join("data"));
    command.arg("--config").arg(&config);
    let out = run_failing(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 6") && stderr.contains("icon"), "{stderr}");
    assert!(
        !tmp.path().join("data").exists(),
        "nothing is created when the configuration is bad"
    );
}
