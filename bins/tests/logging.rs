//! Every subcommand logs the same way: to stderr (stdout stays for what a command prints), as
//! text or `--log-json` lines, at `--log-level`; a log reader that goes away never kills it.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

/// `direwolf relay` on loopback with free ports, logging its counters every second.
fn relay(extra: &[&str]) -> Child {
    support::direwolf()
        .args(["relay", "--listen", "127.0.0.1", "--target", "127.0.0.1"])
        .args(["--rtsp", "0", "--video", "0", "--audio", "0", "--control", "0"])
        .args(["--stats-interval", "1"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("direwolf relay starts")
}

/// The first line of `child`'s stderr (within 30 s) and the reader, still open.
fn first_line(child: &mut Child) -> (String, BufReader<ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send((line, reader));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a first log line on stderr within 30 s")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(sent.success());
    wait_exit(child, Duration::from_secs(30))
}

#[test]
fn a_closed_log_pipe_does_not_kill_the_relay() {
    let mut child = relay(&[]);
    let (first, lines) = first_line(&mut child);
    assert!(first.contains("relay session opened"), "{first}");
    drop(lines); // the reader goes away, as `| head -1` does
    std::thread::sleep(Duration::from_millis(2500)); // two counter lines into the closed pipe
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the relay outlives its log reader"
    );
    let status = terminate(&mut child);
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("stdout");
    assert_eq!(stdout, "", "logs go to stderr, not stdout");
}

#[test]
fn log_json_and_log_level_apply_to_the_relay_too() {
    let mut child = relay(&["--log-json", "--log-level", "debug"]);
    let (first, _lines) = first_line(&mut child);
    let json: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    assert_eq!(json["fields"]["message"], "relay session opened", "{first}");
    assert!(terminate(&mut child).success());
}

#[test]
fn a_log_level_that_is_no_filter_is_refused_with_the_flag() {
    let out = support::direwolf()
        .args(["relay", "--target", "127.0.0.1", "--log-level", "loud=["])
        .stdin(Stdio::null())
        .output()
        .expect("direwolf runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-level"), "{stderr}");
}
