//! The shared test support itself: a failing wait on a child quotes what the child printed, and a
//! finished child's outputs stay apart (the JSON report is the last stdout line, whatever stderr
//! says).

mod support;

use std::panic::UnwindSafe;
use std::process::Command;
use std::time::Duration;

use support::Proc;

/// The message of the panic `f` must raise.
fn panic_message(f: impl FnOnce() + UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("the wait must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn sh(name: &str, script: &str) -> Proc {
    Proc::spawn(name, Command::new("sh").args(["-c", script]))
}

#[test]
fn a_wait_that_times_out_quotes_both_outputs() {
    let message = panic_message(|| {
        let talker = sh("talker", "echo out-line; echo err-line >&2; exec sleep 30");
        talker.wait_for("never printed", Duration::from_secs(2));
    });
    assert!(
        message.contains("talker did not print \"never printed\" within 2s")
            && message.contains("out-line")
            && message.contains("err-line"),
        "{message}"
    );
}

#[test]
fn a_wait_on_a_child_that_exits_quotes_its_last_words() {
    let message = panic_message(|| {
        let quitter = sh("quitter", "echo goodbye >&2; exit 3");
        quitter.wait_for("never printed", Duration::from_secs(30));
    });
    assert!(
        message.contains("quitter exited before printing") && message.contains("goodbye"),
        "{message}"
    );
}

#[test]
fn an_unclean_exit_on_sigterm_quotes_the_output() {
    let message = panic_message(|| {
        let server = sh("server", "echo serving; exec sleep 30");
        server.wait_for("serving", Duration::from_secs(30));
        server.stop();
    });
    assert!(
        message.contains("server must exit cleanly on SIGTERM") && message.contains("serving"),
        "{message}"
    );
}

#[test]
fn finish_keeps_stdout_and_stderr_apart() {
    let mut child = sh("both", "echo one; echo noise >&2; echo two; exit 4");
    let out = child.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(out.stdout, "one\ntwo\n");
    assert_eq!(out.stderr, "noise\n");

    let report = sh("reporter", r#"echo '{"ok": true}'; echo trailing noise >&2"#)
        .json_result(Duration::from_secs(30));
    assert_eq!(report["ok"], true);
    let message = panic_message(|| {
        sh(
            "broken",
            r#"echo '{"ok": false, "unexpected": true}'; echo why >&2"#,
        )
        .json_result(Duration::from_secs(30));
    });
    assert!(
        message.contains("broken failed unexpectedly") && message.contains("why"),
        "{message}"
    );
}
