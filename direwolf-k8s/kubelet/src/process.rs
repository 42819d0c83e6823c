//! A container as a local process: in the pod's network namespace and a mount namespace of its
//! own, where each volume's host directory is bind-mounted at its mountPath (a missing
//! mountpoint is created on the host, since the container shares the host's filesystem), in a
//! process group of its own so that signals reach everything it started.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A bind mount of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path (file or directory).
    pub source: PathBuf,
    /// Path seen by the container.
    pub target: PathBuf,
    /// Remounted read-only.
    pub read_only: bool,
}

/// How to start one container.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The pod's network namespace file.
    pub netns: PathBuf,
    /// Its bind mounts, in order.
    pub mounts: Vec<Mount>,
    /// Its complete environment.
    pub env: HashMap<String, String>,
    /// Its command line.
    pub argv: Vec<String>,
    /// Its working directory, if any.
    pub working_dir: Option<String>,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
    /// Where the setup script is written.
    pub script: PathBuf,
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script run inside the new namespaces: bind mounts, then `exec` of the command line.
fn setup_script(launch: &Launch) -> String {
    let mut s = String::from("set -e\n");
    for m in &launch.mounts {
        let (src, dst) = (
            shell_quote(&m.source.to_string_lossy()),
            shell_quote(&m.target.to_string_lossy()),
        );
        s.push_str(&format!(
            "if [ -d {src} ]; then mkdir -p {dst}; else mkdir -p \"$(dirname {dst})\"; [ -e {dst} ] || : > {dst}; fi\n\
             mount --bind {src} {dst}\n"
        ));
        if m.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {dst}\n"));
        }
    }
    if let Some(dir) = &launch.working_dir {
        s.push_str(&format!("cd {}\n", shell_quote(dir)));
    }
    s.push_str("exec \"$@\"\n");
    s
}

/// Starts the container; its process is the leader of its own process group.
pub fn spawn(launch: &Launch) -> anyhow::Result<Child> {
    if let Some(dir) = launch.log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if let Some(dir) = launch.script.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&launch.script, setup_script(launch))
        .with_context(|| format!("write {}", launch.script.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("open the log {}", launch.log.display()))?;
    let log_err = log.try_clone().context("duplicate the log file")?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "nsenter"])
        .arg(format!("--net={}", launch.netns.display()))
        .args(["--", "sh"])
        .arg(&launch.script)
        .args(&launch.argv)
        .env_clear()
        .envs(default_env())
        .envs(&launch.env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("start {:?} (unshare, nsenter)", launch.argv))
}

/// PATH and HOME when the container does not set them (an image would).
fn default_env() -> Vec<(String, String)> {
    vec![
        (
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ),
        ("HOME".to_owned(), "/root".to_owned()),
    ]
}

/// Signals the process group `pgid`; false when it is gone.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    killpg(Pid::from_raw(raw), signal).is_ok()
}

/// Runs `argv` inside the namespaces of process `pid` (exec probes); exit code and output.
pub async fn exec_in(
    pid: u32,
    argv: &[String],
    env: &HashMap<String, String>,
) -> std::io::Result<(i32, String)> {
    let out = Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(["--net", "--mount", "--"])
        .args(argv)
        .env_clear()
        .envs(default_env())
        .envs(env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The exit code Kubernetes reports: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn the_script_mounts_then_execs() {
        let launch = Launch {
            netns: "/run/netns/x".into(),
            mounts: vec![Mount {
                source: "/s".into(),
                target: "/t".into(),
                read_only: true,
            }],
            env: HashMap::new(),
            argv: vec!["true".into()],
            working_dir: Some("/w".into()),
            log: "/l".into(),
            script: "/s.sh".into(),
        };
        let s = setup_script(&launch);
        assert!(s.contains("mount --bind '/s' '/t'"));
        assert!(s.contains("remount,bind,ro '/t'"));
        assert!(s.ends_with("cd '/w'\nexec \"$@\"\n"));
    }
}
