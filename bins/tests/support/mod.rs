//! Helpers shared by the integration tests of `direwolf` (each test file is its own crate and
//! includes this module with `mod support;`): child processes whose output is collected and shown
//! when a wait fails, the `direwolf` binary, the moonlight-python drivers, the PIN page, and network
//! namespaces.

// Every test crate uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The real Kubernetes control plane (one per test binary), shared with direwolf-k8s's tests.
#[path = "../../../direwolf-k8s/tests/support/testenv.rs"]
pub mod testenv;

/// A real OpenID Connect provider and a browser for the single sign-on tests.
pub mod oidc;

/// Headless Chromium for the web UI tests.
pub mod browser;

/// The pack's end-to-end helpers: fake Wolfs and moonlight-python drivers in namespaces.
pub mod pack;
pub mod shared_net;

/// How long a finished child's output may take to close.
const OUTPUT_CLOSE: Duration = Duration::from_secs(10);
/// How many output lines a failure message quotes.
const TAIL_LINES: usize = 40;

/// Calls `f` every `every` until it gives a value; `None` when `timeout` passes first.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// How long [`Proc::printed_line_with`] waits for a line that may still be on its way.
pub const LOG_WAIT: Duration = Duration::from_secs(5);

/// Runs `cmd` (a `direwolf user passwd NAME --password-stdin`) with `password` on its standard
/// input, for at most `timeout`; its stdout.
///
/// # Panics
/// When it cannot start, does not exit in time or fails.
pub fn passwd_with(cmd: &mut Command, password: &str, timeout: Duration) -> String {
    let (ok, stdout, stderr) = with_stdin(cmd, &format!("{password}\n"), timeout);
    assert!(ok, "{stderr}");
    stdout
}

/// Runs `cmd` with `input` on its standard input, for at most `timeout`; (success, stdout,
/// stderr).
///
/// # Panics
/// When it cannot start or does not exit in time.
pub fn with_stdin(cmd: &mut Command, input: &str, timeout: Duration) -> (bool, String, String) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write the standard input");
    let exited = poll(timeout, Duration::from_millis(50), || {
        child.try_wait().expect("poll the child")
    });
    if exited.is_none() {
        let _ = child.kill();
        panic!("{what} did not exit within {timeout:?}");
    }
    let out = child.wait_with_output().expect("the child's output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `ok` holds (checked every 200 ms), failing the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    if poll(timeout, Duration::from_millis(200), || ok().then_some(())).is_none() {
        panic!("{what}: not within {timeout:?}");
    }
}

/// Runs a command to completion (stdin closed); its stdout. Fails the test, with its stderr, when
/// it cannot start or does not succeed.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which output stream a line came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Everything a child printed, in order.
type Log = Arc<Mutex<Vec<(Stream, String)>>>;

/// What a child that ran to its end left.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A child process, killed when dropped (a failed assertion leaves nothing running). Its stdout
/// and stderr lines are echoed as `[name] line` (shown by the test runner when a test fails),
/// kept, and handed to [`Proc::wait_for`]; every failing wait quotes the last lines.
pub struct Proc {
    child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
    log: Log,
    started: Instant,
}

impl Proc {
    /// Starts `cmd` with stdin closed and both outputs collected.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let started = Instant::now();
        let log = Log::default();
        let (tx, lines) = mpsc::channel();
        let streams: [(Stream, Box<dyn Read + Send>); 2] = [
            (
                Stream::Stdout,
                Box::new(child.stdout.take().expect("piped stdout")),
            ),
            (
                Stream::Stderr,
                Box::new(child.stderr.take().expect("piped stderr")),
            ),
        ];
        for (stream, output) in streams {
            let (tx, log, label) = (tx.clone(), Arc::clone(&log), name.to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    eprintln!("[{label}] {line}");
                    log.lock()
                        .expect("no reader panics holding the log")
                        .push((stream, line.clone()));
                    // The receiver is gone once the test is done with this child.
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            name: name.to_owned(),
            lines,
            log,
            started,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether any line printed so far contains `needle` (lines [`Proc::wait_for`] passed over
    /// included).
    pub fn printed(&self, needle: &str) -> bool {
        let log = self.log.lock().expect("no reader panics holding the log");
        log.iter().any(|(_, line)| line.contains(needle))
    }

    /// The first line printed so far that holds `needle`.
    pub fn line_with(&self, needle: &str) -> Option<String> {
        let log = self.log.lock().expect("no reader panics holding the log");
        log.iter()
            .find(|(_, line)| line.contains(needle))
            .map(|(_, line)| line.clone())
    }

    /// Whether one line holds every needle, waiting up to [`LOG_WAIT`] for it: a child logs
    /// (an audit line, say) around the time it answers, and its output reaches the test through
    /// a reader thread, so a line of a request just answered may still be on its way. For a line
    /// that must not appear, use [`Proc::printed`].
    pub fn printed_line_with(&self, needles: &[&str]) -> bool {
        let seen = || {
            let log = self.log.lock().expect("no reader panics holding the log");
            log.iter()
                .any(|(_, line)| needles.iter().all(|needle| line.contains(needle)))
                .then_some(())
        };
        poll(LOG_WAIT, Duration::from_millis(20), seen).is_some()
    }

    /// How many lines printed so far hold every needle.
    pub fn count_lines_with(&self, needles: &[&str]) -> usize {
        let log = self.log.lock().expect("no reader panics holding the log");
        log.iter()
            .filter(|(_, line)| needles.iter().all(|needle| line.contains(needle)))
            .count()
    }

    /// The last lines the child printed, for failure messages.
    pub fn tail(&self) -> String {
        let log = self.log.lock().expect("no reader panics holding the log");
        let tail = &log[log.len().saturating_sub(TAIL_LINES)..];
        if tail.is_empty() {
            return format!("({} printed nothing)", self.name);
        }
        let mut text = format!("last {} lines of {}:", tail.len(), self.name);
        for (_, line) in tail {
            text.push_str("\n  ");
            text.push_str(line);
        }
        text
    }

    /// The next output line containing `needle`, within `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not print {needle:?} within {timeout:?}\n{}",
                    self.name,
                    self.tail()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} exited before printing {needle:?}\n{}", self.name, self.tail())
                }
            }
        }
    }

    /// The next JSON report line (a line starting with `{"`), within `timeout`.
    pub fn report(&self, timeout: Duration) -> Value {
        let line = self.wait_for("{\"", timeout);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: bad JSON {line:?}: {e}", self.name))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit by `deadline` (`timeout` is for the message).
    fn wait_exit_by(&mut self, deadline: Instant, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let status = poll(
            deadline.saturating_duration_since(Instant::now()),
            Duration::from_millis(50),
            || child.try_wait().expect("poll the child"),
        );
        status.unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?} (it is stuck)\n{}",
                self.name,
                self.tail()
            )
        })
    }

    /// Runs the child to its end, at most `timeout` after it started; its status and output.
    pub fn finish(&mut self, timeout: Duration) -> Finished {
        let status = self.wait_exit_by(self.started + timeout, timeout);
        let deadline = Instant::now() + OUTPUT_CLOSE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the output of {} did not close within {OUTPUT_CLOSE:?} of its exit",
                    self.name
                ),
            }
        }
        let log = self.log.lock().expect("no reader panics holding the log");
        let text = |which: Stream| {
            log.iter()
                .filter(|(stream, _)| *stream == which)
                .map(|(_, line)| format!("{line}\n"))
                .collect::<String>()
        };
        Finished {
            status,
            stdout: text(Stream::Stdout),
            stderr: text(Stream::Stderr),
        }
    }

    /// Runs a program that prints a JSON report as its last stdout line to its end, at most
    /// `timeout` after it started; fails the test unless it succeeded without an `unexpected` key.
    pub fn json_result(mut self, timeout: Duration) -> Value {
        let out = self.finish(timeout);
        let last = out.stdout.lines().last().unwrap_or_default();
        let report: Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "{}: no JSON report ({e}) in {:?}\n{}",
                self.name,
                out.stdout,
                self.tail()
            )
        });
        assert!(
            out.status.success() && report.get("unexpected").is_none(),
            "{} failed unexpectedly ({}): {report}\n{}",
            self.name,
            out.status,
            self.tail()
        );
        eprintln!("[{} report] {report}", self.name);
        report
    }

    /// SIGTERM, then a clean exit within 30 s.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} ({}) failed", self.name);
        let timeout = Duration::from_secs(30);
        let status = self.wait_exit_by(Instant::now() + timeout, timeout);
        assert!(
            status.success(),
            "{} must exit cleanly on SIGTERM, got {status}\n{}",
            self.name,
            self.tail()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A binary of the workspace built on demand into this test's target directory and profile (a
/// no-op when up to date): `cargo build -q ARGS`, then `<target>/<profile>/<path>`.
pub fn built_binary(args: &[&str], path: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace)
        .args(["build", "-q"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    run(&mut cmd, &format!("cargo build {}", args.join(" ")));
    let bin = profile_dir.join(path);
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// The `fake_wolf` example of direwolf-wolf-client (a fake Wolf with its stream side), built on
/// demand.
pub fn fake_wolf_binary() -> PathBuf {
    built_binary(
        &[
            "-p",
            "direwolf-wolf-client",
            "--example",
            "fake_wolf",
            "--features",
            "fake",
        ],
        "examples/fake_wolf",
    )
}

/// The path of the `direwolf` binary under test.
pub const DIREWOLF: &str = env!("CARGO_BIN_EXE_direwolf");

/// The `direwolf` binary under test.
pub fn direwolf() -> Command {
    Command::new(DIREWOLF)
}

/// `direwolf serve` on `data_dir`, on loopback with free ports (the admin port too) and without mDNS,
/// logging at info.
pub fn serve_command(data_dir: &Path) -> Command {
    let mut command = direwolf();
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0"])
        .args(["--admin-port", "0"])
        .arg("--no-mdns")
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0");
    command
}

/// The text between `key` and the next space in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in log line {line:?}"))
        + key.len();
    line[start..].split(' ').next().unwrap_or_default()
}

/// The port of the first address of a logged listener list such as `127.0.0.1:40637,[::1]:40637`.
pub fn port_of(list: &str) -> u16 {
    let first = list.split(',').next().unwrap_or_default();
    let addr: SocketAddr = first
        .parse()
        .unwrap_or_else(|e| panic!("a socket address in {list:?}: {e}"));
    addr.port()
}

/// A running `direwolf serve` or `direwolf proxy`, with what its `… started` log line says.
pub struct Direwolf {
    pub proc: Proc,
    pub http_port: u16,
    pub https_port: u16,
    /// The server certificate's fingerprint (64 hex digits).
    pub fingerprint: String,
}

impl Direwolf {
    /// Waits, at most `timeout`, for `proc`'s log line containing `started` (such as
    /// `direwolf serve started`) and reads its listeners and fingerprint.
    pub fn started(proc: Proc, started: &str, timeout: Duration) -> Direwolf {
        let line = proc.wait_for(started, timeout);
        let fingerprint = field(&line, "server.fingerprint=").to_owned();
        assert_eq!(fingerprint.len(), 64, "fingerprint in {line:?}");
        Direwolf {
            http_port: port_of(field(&line, " http=")),
            https_port: port_of(field(&line, " https=")),
            fingerprint,
            proc,
        }
    }
}

/// Fails the test, with instructions, when the real client (moonlight-python 0.3.0) is missing.
pub fn require_moonlight_python() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import moonlight_python as m; assert m.__version__ == '0.3.0', m.__version__",
        ])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import moonlight_python 0.3.0 ({}): run scripts/test-all, which installs \
             it (pip install moonlight-python==0.3.0)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}): install Python 3 and run scripts/test-all"),
    }
}

/// The moonlight-python drivers' directory, `tests/interop`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Arguments of python3 for a driver `script` of [`interop_dir`] talking to `host:http_port`
/// with the client identity in `client_dir`, then `args`.
pub fn driver_args(
    script: &str,
    host: &str,
    http_port: u16,
    client_dir: &Path,
    args: &[&str],
) -> Vec<String> {
    let mut all = vec![
        interop_dir().join(script).display().to_string(),
        "--host".into(),
        host.into(),
        "--http-port".into(),
        http_port.to_string(),
        "--client-dir".into(),
        client_dir.display().to_string(),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    all
}

/// How long a moonlight-python driver on loopback may run.
pub const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts `driver.py` against `127.0.0.1:http_port` (its report: [`Proc::json_result`]).
pub fn spawn_driver(http_port: u16, client_dir: &Path, args: &[&str]) -> Proc {
    Proc::spawn(
        &format!(
            "driver {} :{http_port}",
            args.first().copied().unwrap_or_default()
        ),
        Command::new("python3").args(driver_args("driver.py", "127.0.0.1", http_port, client_dir, args)),
    )
}

/// Runs `driver.py` against `127.0.0.1:http_port` to its end; its JSON report.
pub fn run_driver(http_port: u16, client_dir: &Path, args: &[&str]) -> Value {
    spawn_driver(http_port, client_dir, args).json_result(DRIVER_TIMEOUT)
}

/// The PIN page link of an `Insert pin at http://HOST:PORT/pin/#SECRET` log line, and its
/// secret.
pub fn pin_link(line: &str) -> (&str, &str) {
    let url = line[line
        .find("http://")
        .unwrap_or_else(|| panic!("no PIN link in {line:?}"))..]
        .split_whitespace()
        .next()
        .unwrap_or_default();
    let (_, secret) = url
        .rsplit_once('#')
        .unwrap_or_else(|| panic!("no secret in the PIN link {url}"));
    assert_eq!(secret.len(), 16, "secret in {url}");
    (url, secret)
}

/// One HTTP/1.1 `request` (which should say `Connection: close`) to `addr`, within 30 s;
/// (status, body).
pub fn http_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer (timeout: server stuck)");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// POSTs a PIN to the PIN page on `127.0.0.1:http_port`, as its script does; (HTTP status, body).
pub fn post_pin(http_port: u16, pin: &str, secret: &str) -> (u16, String) {
    let body = format!(r#"{{"pin":"{pin}","secret":"{secret}"}}"#);
    let request = format!(
        "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_exchange(SocketAddr::from(([127, 0, 0, 1], http_port)), &request)
}

/// Pairs `client_dir` on loopback: `driver.py pair` talks to `via` and shows `client_pin`; the
/// person types `typed_pin` on the PIN page at `pin_port`. With `check_link`, the PIN link `via`
/// logs must point at its own HTTP port on 127.0.0.1. The driver's JSON report.
pub fn pair(
    via: &Direwolf,
    pin_port: u16,
    client_dir: &Path,
    client_pin: &str,
    typed_pin: &str,
    check_link: bool,
) -> Value {
    let driver = spawn_driver(via.http_port, client_dir, &["pair", "--pin", client_pin]);
    let line = via.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (url, secret) = pin_link(&line);
    if check_link {
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{}/pin/#", via.http_port)),
            "PIN URL {url}"
        );
    }
    let (status, body) = post_pin(pin_port, typed_pin, secret);
    assert_eq!(
        (status, body.trim()),
        (200, "OK"),
        "the PIN page must accept the PIN"
    );
    driver.json_result(DRIVER_TIMEOUT)
}

/// `ip ARGS`, which must succeed (the namespace tests need root and iproute2).
pub fn ip(args: &[&str]) {
    run(
        Command::new("ip").args(args),
        &format!("ip {} (this test needs root and iproute2)", args.join(" ")),
    );
}

/// `program` run inside the network namespace `ns` (`ip netns exec` execs it: same pid).
/// The body of `GET url`, fetched from inside network namespace `ns` (10 s timeout).
pub fn fetch_in_netns(ns: &str, url: &str) -> String {
    let script = "import sys, urllib.request\n\
                  print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end='')";
    let out = in_netns(ns, "python3")
        .args(["-c", script, url])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "GET {url} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The value of `series` (name and labels, exactly as exported) in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn in_netns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// Network namespaces of a test, named `{prefix}-{role}`, each with `lo` up; deleted (with their
/// veths and bridges) when dropped, even on panic.
pub struct Namespaces {
    prefix: String,
    names: Vec<String>,
}

impl Namespaces {
    pub fn new(prefix: &str) -> Namespaces {
        Namespaces {
            prefix: prefix.to_owned(),
            names: Vec::new(),
        }
    }

    /// Creates the namespace of `role`; its name.
    pub fn add(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The name of `role`'s namespace.
    pub fn ns(&self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        assert!(self.names.contains(&name), "no namespace {role}");
        name
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
