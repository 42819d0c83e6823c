//! `direwolf completion SHELL` and `direwolf man [SUBCOMMAND]` print what a package installs:
//! completion scripts the shells accept and man pages that name every flag.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn direwolf(args: &[&str]) -> std::process::Output {
    support::direwolf()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("direwolf runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = direwolf(args);
    assert!(
        out.status.success(),
        "direwolf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn the_bash_completion_is_valid_bash_and_knows_the_subcommands() {
    let script = stdout_of(&["completion", "bash"]);
    for sub in ["serve", "proxy", "operator", "agent", "relay", "crd", "man"] {
        assert!(script.contains(sub), "{sub} is completed");
    }
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    bash.stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let checked = bash.wait_with_output().expect("bash -n");
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(!stdout_of(&["completion", shell]).is_empty(), "{shell}");
    }
}

#[test]
fn man_pages_name_the_subcommands_and_their_flags() {
    let main = stdout_of(&["man"]);
    assert!(main.contains(".TH direwolf 1"), "{main}");
    assert!(main.contains("serve"), "the subcommands are listed");
    let serve = stdout_of(&["man", "serve"]);
    assert!(
        serve.contains(".TH direwolf\\-serve 1") || serve.contains(".TH direwolf-serve 1"),
        "{serve}"
    );
    assert!(serve.contains("\\-\\-data\\-dir"), "the flags are named");
    let unknown = direwolf(&["man", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no subcommand \"nope\""));
}
