//! The load generator of the HTTPS load benchmark, in a process of its own (the bench binary run
//! again with [`GENERATOR_ARG`]) at the lowest priority (`nice -n 19`; `DW_BENCH_NICE` sets
//! another niceness, 0 none) on every CPU.
//!
//! The client's own RSA signature costs about as much as the server's, so a generator held to
//! the CPUs the server does not use could not keep the server busy. At the lowest priority it
//! uses the other CPUs and whatever the server leaves of its own, and the server, pinned to its
//! CPU at normal priority, gets that CPU whenever it has work. (On a machine busy with other
//! work the generator at the lowest priority may starve: the figures then show the server's
//! CPU well under 100 % busy.)
//!
//! Commands on its stdin, one answer line each: `probe ADDR` (one request; the reply body's
//! length) and `run ADDR CONCURRENCY MILLIS` (`CONCURRENCY` connections at a time, each a new
//! TLS connection with the client certificate, until the time is up; the number of requests).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

use crate::servers::{Control, child_args};
use crate::support::{CLIENT_KEY, Client, client_config};

/// The first argument of the load generator process.
pub const GENERATOR_ARG: &str = "--dw-bench-load";

const REQUEST: &[u8] =
    b"GET /serverinfo?uniqueid=0123456789ABCDEF&uuid=0c9f HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// A running load generator (stopped when dropped).
pub struct Generator {
    child: Child,
    control: Control,
    /// Its niceness (0 also when `nice` was not found).
    pub niceness: u8,
}

impl Generator {
    /// Starts a generator whose client presents the certificate in `client_cert` (PEM) with the
    /// test client key.
    pub fn spawn(client_cert: &Path) -> Self {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let start = |command: &mut Command| {
            command
                .args([GENERATOR_ARG.as_ref(), client_cert.as_os_str()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        };
        let niceness: u8 = std::env::var("DW_BENCH_NICE")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(19);
        let niced = (niceness > 0)
            .then(|| start(Command::new("nice").arg(format!("-n{niceness}")).arg(&exe)).ok())
            .flatten();
        let (mut child, niceness) = match niced {
            Some(child) => (child, niceness),
            None => (
                start(&mut Command::new(&exe)).expect("the load generator starts"),
                0,
            ),
        };
        Generator {
            control: Control::of(&mut child),
            child,
            niceness,
        }
    }

    fn ask(&mut self, command: &str) -> u64 {
        let answer = self.control.ask(command);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("the load generator failed: {answer:?}"))
    }

    /// One request to `addr`; the length of the reply body.
    pub fn probe(&mut self, addr: SocketAddr) -> usize {
        self.ask(&format!("probe {addr}")) as usize
    }

    /// `concurrency` connections at a time to `addr` for `length`; the requests answered.
    pub fn run(&mut self, addr: SocketAddr, concurrency: usize, length: Duration) -> u64 {
        self.ask(&format!("run {addr} {concurrency} {}", length.as_millis()))
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// If this process was started as the load generator, runs it and returns true.
pub fn run_if_generator() -> bool {
    let Some(args) = child_args(GENERATOR_ARG) else {
        return false;
    };
    let cert_pem = std::fs::read_to_string(&args[0]).expect("the client certificate");
    let client = Client {
        cert_pem,
        key_pem: CLIENT_KEY.into(),
    };
    let connector = TlsConnector::from(client_config(Some(&client)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("a command");
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words[..] {
            ["probe", addr] => rt
                .block_on(one_request(addr.parse().expect("an address"), &connector))
                .expect("a reply from the server") as u64,
            ["run", addr, concurrency, millis] => run(
                &rt,
                &connector,
                addr.parse().expect("an address"),
                concurrency.parse().expect("a concurrency"),
                Duration::from_millis(millis.parse().expect("milliseconds")),
            ),
            _ => panic!("unknown command {line:?}"),
        };
        writeln!(stdout, "{answer}").expect("answering");
        stdout.flush().expect("answering");
    }
    true
}

fn run(
    rt: &Runtime,
    connector: &TlsConnector,
    addr: SocketAddr,
    concurrency: usize,
    length: Duration,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + length;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (connector, done) = (connector.clone(), done.clone());
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    one_request(addr, &connector)
                        .await
                        .expect("a reply from the server");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("a load task");
        }
    });
    done.load(Ordering::Relaxed)
}

/// One request on a new TLS connection; returns the length of the reply body.
async fn one_request(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<usize> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(REQUEST).await?;
    let mut reply = Vec::with_capacity(4096);
    tls.read_to_end(&mut reply).await?;
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .filter(|_| reply.starts_with(b"HTTP/1.1 200 "))
        .ok_or_else(|| std::io::Error::other("not an HTTP 200 reply"))?;
    Ok(reply.len() - head_end - 4)
}
