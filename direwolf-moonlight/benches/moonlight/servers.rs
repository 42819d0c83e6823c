//! The two servers of the HTTPS load benchmark, each in its own process (the bench binary run
//! again with [`SERVER_ARG`]), so that its CPU time is its own:
//!
//! * `ours`: [`MoonlightServer`] as `direwolf serve` runs it: the persistent (redb) stores of a
//!   data directory, a `fmt` log subscriber at `info` on stderr, a multi-threaded runtime with
//!   two workers;
//! * `bare`: a bare rustls server on the same runtime: the same certificate and key (read from
//!   files the benchmark writes into the data directory), a client
//!   certificate requested and its handshake signature verified, no resumption, one request read
//!   and a fixed reply of the same size written per connection.
//!
//! A server process pins itself to one CPU, prints `ready ADDR`, then answers each `cpu` line on
//! its stdin with its CPU time so far (user + system, every thread, in microseconds), and stops
//! when its stdin closes.
//!
//! [`ServerProcess::spawn_binary`] runs a built `direwolf` binary's `serve` instead (pinned once
//! it listens, its CPU time read from `/proc`), to check the library's figures against the
//! program users run.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::persistent::PersistentStores;
use direwolf_moonlight::{LoadedIdentity, MoonlightServer, tls::AcceptAnyClientCert};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::Pid;
use rustls::ServerConfig;
use rustls::server::NoServerSessionStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The server certificate (PEM) in the data directory, for the bare server.
pub const BARE_CERT_FILE: &str = "bench-server-cert.pem";
/// The server key (PEM) in the data directory, for the bare server.
pub const BARE_KEY_FILE: &str = "bench-server-key.pem";

/// The first argument of a server process.
pub const SERVER_ARG: &str = "--dw-bench-server";

/// Which server a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `MoonlightServer` on persistent stores.
    Ours,
    /// The bare rustls server.
    Bare,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Bare => "bare",
        }
    }
}

/// The command channel of a bench child process: a line on its stdin, a line back.
pub struct Control {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Control {
    /// Takes the piped stdin and stdout of `child`.
    pub fn of(child: &mut Child) -> Self {
        Control {
            stdin: child.stdin.take().expect("piped stdin"),
            stdout: BufReader::new(child.stdout.take().expect("piped stdout")),
        }
    }

    /// The next line the child prints, trimmed.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the bench child answers");
        line.trim().to_owned()
    }

    /// Sends `command`; the answer.
    pub fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("the bench child reads commands");
        self.read_line()
    }
}

/// The arguments after `flag` if this process was started with `flag` first.
pub fn child_args(flag: &str) -> Option<Vec<String>> {
    let mut args = std::env::args().skip(1);
    (args.next().as_deref() == Some(flag)).then(|| args.collect())
}

/// A running server process (killed when dropped).
pub struct ServerProcess {
    child: Child,
    /// The command channel of a bench server process; `None` for a `direwolf` binary.
    control: Option<Control>,
    /// Where it accepts HTTPS.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts a server process pinned to `cpu`. `ours` serves the data directory `dir`; `bare`
    /// answers bodies of `body_len` bytes.
    pub fn spawn(kind: Kind, cpu: Option<usize>, dir: &Path, body_len: usize) -> Self {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let cpu = cpu.map_or("-".to_owned(), |c| c.to_string());
        // A profiler to run the server under, e.g. `valgrind --tool=callgrind`.
        let wrapper = std::env::var("DW_BENCH_WRAP").unwrap_or_default();
        let mut command = match wrapper.split_whitespace().collect::<Vec<_>>()[..] {
            [] => Command::new(exe),
            [program, ref args @ ..] => {
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
        };
        let mut child = command
            .args([SERVER_ARG, kind.arg(), &cpu, &body_len.to_string()])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server process starts");
        let mut control = Control::of(&mut child);
        let line = control.read_line();
        let addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the {} server did not start: {line:?}", kind.arg()));
        ServerProcess {
            child,
            control: Some(control),
            addr,
        }
    }

    /// Starts `binary serve` on a new data directory `dir` (HTTPS on a free loopback port), and
    /// once it accepts connections pins every thread it has to `cpu` (threads it starts later
    /// inherit that).
    pub fn spawn_binary(binary: &Path, cpu: Option<usize>, dir: &Path) -> Self {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (https, http) = (free_port(), free_port());
        let child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--bind", "127.0.0.1", "--hostname", "Direwolf"])
            .args([
                "--https-port",
                &https.to_string(),
                "--http-port",
                &http.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], https));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} serve did not listen",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(cpu) = cpu {
            pin_process(child.id(), cpu);
        }
        ServerProcess {
            child,
            control: None,
            addr,
        }
    }

    /// The process's CPU time so far.
    pub fn cpu_time(&mut self) -> Duration {
        let Some(control) = &mut self.control else {
            return proc_cpu_time(self.child.id());
        };
        let micros: u64 = control.ask("cpu").parse().expect("CPU time in microseconds");
        Duration::from_micros(micros)
    }
}

/// Pins every thread of process `pid` to `cpu`.
fn pin_process(pid: u32, cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).expect("a CPU number within the set");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            let _ = sched_setaffinity(Pid::from_raw(tid), &set);
        }
    }
}

/// User + system CPU time of process `pid`, every thread (those ended too), from `/proc`.
fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc stat");
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<u64> = after_name
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a tick count"))
        .collect();
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_secs_f64((fields[0] + fields[1]) as f64 / ticks_per_second as f64)
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A bench server stops when its stdin closes (a profiler it runs under then writes its
        // output); kill what is still running after a while.
        if self.control.take().is_some() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// If this process was started as a server, runs it and returns true.
pub fn run_if_server() -> bool {
    let Some(args) = child_args(SERVER_ARG) else {
        return false;
    };
    let [kind, cpu, body_len, dir] = &args[..] else {
        panic!("usage: {SERVER_ARG} ours|bare CPU|- BODY_LEN DIR");
    };
    if let Ok(cpu) = cpu.parse::<usize>() {
        pin_to(&[cpu]);
    }
    // The runtime of `direwolf serve` (bins/src/serve/mod.rs).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .expect("a runtime");
    let stop = answer_commands();
    match kind.as_str() {
        "ours" => runtime.block_on(serve_ours(PathBuf::from(dir), stop)),
        "bare" => runtime.block_on(serve_bare(
            PathBuf::from(dir),
            body_len.parse().expect("a body length"),
            stop,
        )),
        other => panic!("unknown server {other}"),
    }
    true
}

/// Pins the calling thread, and so every thread it starts afterwards, to `cpus`.
pub fn pin_to(cpus: &[usize]) {
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(*cpu).expect("a CPU number within the set");
    }
    sched_setaffinity(Pid::from_raw(0), &set).expect("pinning to allowed CPUs");
}

/// Answers `cpu` lines on stdin from a thread of its own; the receiver fires when stdin closes.
fn answer_commands() -> oneshot::Receiver<()> {
    let (closed, stop) = oneshot::channel();
    std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "cpu" {
                let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
                let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
                let total = micros(usage.user_time()) + micros(usage.system_time());
                let _ = writeln!(stdout, "{total}");
                let _ = stdout.flush();
            }
        }
        let _ = closed.send(());
    });
    stop
}

fn ready(addr: SocketAddr) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ready {addr}");
    let _ = stdout.flush();
}

async fn serve_ours(dir: PathBuf, stop: oneshot::Receiver<()>) {
    // The log set-up of `direwolf serve` (bins/src/telemetry.rs), on a non-terminal stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let stores = PersistentStores::open(&dir).expect("the data directory").stores();
    let server = MoonlightServer::builder()
        .with_stores(stores)
        .with_bind_addrs(vec!["127.0.0.1".parse().expect("an address")])
        .with_http_port(0)
        .with_https_port(0)
        .with_mdns(false)
        .build()
        .await
        .expect("the server starts");
    ready(server.https_addrs()[0]);
    let _ = server
        .run_until(async {
            let _ = stop.await;
        })
        .await;
}

/// The bare server's TLS configuration, written out here rather than taken from
/// `direwolf_moonlight::tls`, so that a difference in our configuration shows.
fn bare_tls_config(dir: &Path) -> Arc<ServerConfig> {
    let read =
        |file| std::fs::read_to_string(dir.join(file)).expect("the identity written for the bare server");
    let identity = LoadedIdentity::new(direwolf_core::ServerIdentity {
        cert_pem: read(BARE_CERT_FILE),
        key_pem: read(BARE_KEY_FILE),
        unique_id: "u".into(),
    })
    .expect("the server identity");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyClientCert::new(&provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der()], identity.key_der())
        .expect("the test certificate and key");
    // A full handshake per connection, as on our server.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn serve_bare(dir: PathBuf, body_len: usize, mut stop: oneshot::Receiver<()>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(bare_tls_config(&dir));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let response: Arc<[u8]> = {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml; charset=utf-8\r\nconnection: close\r\ncontent-length: {body_len}\r\n\r\n"
        );
        let mut bytes = head.into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', body_len));
        bytes.into()
    };
    ready(listener.local_addr().expect("a bound address"));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, response) = (acceptor.clone(), response.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tls.write_all(&response).await;
            let _ = tls.shutdown().await;
        });
    }
}
