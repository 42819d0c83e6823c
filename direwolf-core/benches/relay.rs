//! Relay benchmark: throughput and added latency of `direwolf_core::relay` against `socat` UDP
//! forwarding and in-kernel forwarding (nftables DNAT), all measured in the same run over the
//! same topology of three network namespaces joined by veth pairs:
//!
//! ```text
//!  client ns (sink) 10.77.1.2 ── 10.77.1.1 [forwarder ns] 10.77.2.1 ── 10.77.2.2 (source) wolf ns
//! ```
//!
//! The source plays Wolf: it waits for a ping on each of its video ports, then sends 1,400-byte
//! datagrams (sequence + send timestamp) to the ping's source. The sink plays Moonlight: it pings
//! through the forwarder and reads what arrives. Variants of the forwarder:
//! `direct` (plain IP routing in the middle namespace, the latency floor), `kernel` (nftables
//! DNAT with conntrack), `socat` (one `socat UDP4-LISTEN … UDP4:…` per session), `relay` (this crate,
//! on a current-thread runtime, a port set per session), `fast` (the same relay with its kernel
//! fast path: it admits each sink, then nftables DNAT/SNAT carries the flow; measured from 1 s
//! after the first datagram, once the flows are the kernel's) and `shared` (the same relay in
//! shared-ports mode: every session on one port set, each sink first sending a video SETUP through
//! the shared RTSP port so that the relay learns the session's ping payload from the source's
//! answer, then pinging the one shared video port with it). Each session's sink has an address of
//! its own, as distinct clients do. `egress` is the proof of concept's plan (Wolf streams to the
//! client itself): the pings reach Wolf through the forwarder's DNAT, and Wolf's host sends the
//! media straight to the client over a link of its own, its source rewritten to the proxy's address
//! and port (SNAT on Wolf's host), so no forwarder touches the media. `floor` is not a forwarder:
//! it opens the relay's sockets, passes the pings to Wolf and reads Wolf's datagrams in `recvmmsg`
//! batches, then discards them; its CPU
//! time is what any forwarder built on sockets pays before sending anything (it has no latency).
//! `socat`, `relay` and `floor` are pinned to CPU 1, source and sink to CPU 0; forwarders and the
//! sink run SCHED_FIFO (`chrt -f 20`), the source at nice -15, so that other work on a shared
//! machine disturbs the measurement less (autogroup defeats nice alone). `relay.sh` runs the
//! benchmark itself on CPU 0, and with `DW_BENCH_ISOLATE=1` moves every other task it can off
//! CPU 1 for the run (a task that keeps waking there, starved by the SCHED_FIFO forwarder, is
//! eventually given the core for a millisecond or more by the kernel's fair-server, which showed
//! as millisecond latency tails). Forwarder CPU time (`cpu%`) is the forwarder processes' own
//! run time from /proc, giving packets per CPU-second; `core1%` and `si%` are CPU 1's busy and
//! softirq shares from /proc/stat, which the kernel samples at its timer tick and which can alias
//! with the 1 ms pattern (they read near 0 when the work always ends between ticks).
//!
//! **Receive processing** happens on the receiving side's core, as between separate machines:
//! RPS steers what arrives in the forwarder's namespace to CPU 1 and what arrives at the client
//! or at Wolf to CPU 0 (without it veth runs the receiver's whole stack, socket wake-ups
//! included, on the sender's core, so the forwarder would pay for the client's receive path and
//! the source for the forwarder's). `DW_BENCH_RPS=0` turns that off.
//!
//! **Latency** is the time from the source's send timestamp to the kernel's receive timestamp of
//! the datagram at the client's interface (`SO_TIMESTAMPNS`); "app p99" is to the moment the
//! sink thread read it, which adds the sink's own scheduling on its shared core.
//!
//! **Traffic shape.** Paced runs send each session's datagrams of every 1 ms tick back to back
//! (interleaved across sessions); `DW_BENCH_PATTERN=frames` sends them as 60 fps video frames
//! instead, each frame's datagrams back to back, the sessions' frame clocks spread over the
//! frame interval. `DW_BENCH_SOURCE_GSO=1` makes the source send each burst as UDP GSO sends: the
//! same datagrams on the wire, but a source cheap enough to offer far more; arriving at a socket
//! with UDP_GRO (the relay's) such a send stays one buffer, as NIC receive offload (GRO) delivers
//! a burst of one flow, while other sockets and forwarded traffic get it split.
//!
//! Needs root, iproute2, taskset, socat and nft: run `direwolf-core/benches/relay.sh`, which
//! installs them, or `cargo bench -p direwolf-core --bench relay` when they are present.
//! `DW_BENCH_SECONDS` (default 3) sets the length of each measurement; `DW_BENCH_ONLY=<n>:<paced|max>`
//! runs one scenario; `DW_BENCH_VARIANTS=relay,direct` runs only those forwarders (the summary
//! lines need direct, kernel, socat and relay).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use direwolf_core::StreamPorts;
use direwolf_core::relay::{FastPath, Relay, RelayConfig, SessionRelayConfig, SharedPorts, WolfPorts};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use serde_json::{Value, json};

#[path = "support/netns.rs"]
mod netns;

use netns::{Topology, run};

const PACKET: usize = 1400;
const RATE_MBIT: f64 = 150.0;
const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const WOLF: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

fn public_video(i: usize) -> u16 {
    40001 + 4 * i as u16
}

fn wolf_video(i: usize) -> u16 {
    48100 + i as u16
}

fn wolf_rtsp(i: usize) -> u16 {
    48010 + i as u16
}

/// Session `i`'s client address (the topology gives the sink 10.77.1.10 to .25).
fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 1, 10 + i as u8)
}

/// Session `i`'s ping payload, as Wolf announces it in the SETUP answer.
fn ping_secret(i: usize) -> [u8; 16] {
    let mut secret = *b"Ab3$x~Zq!9Lm#2R0";
    secret[15] = b'A' + i as u8;
    secret
}

/// Session `i`'s fake RTSP IP.
fn fake_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 10 + i as u8)
}

/// The shared-ports variant's port set: RTSP, video, audio, control.
const SHARED: [u16; 4] = [39000, 39001, 39002, 39003];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set for this role"))
}

fn env_num(name: &str) -> u64 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} must be a number"))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn main() {
    match std::env::var("DW_BENCH_ROLE").as_deref() {
        Ok("source") => source(),
        Ok("sink") => sink(),
        Ok("relay") => relay_role(false),
        Ok("fast") => relay_role(true),
        Ok("shared") => shared_role(),
        Ok("floor") => floor_role(),
        _ => orchestrate(),
    }
}

// ---------------------------------------------------------------- roles

/// Wolf: wait for one ping per port, then send for `DW_BENCH_SECONDS` at `DW_BENCH_PPS` per
/// session (0: as fast as possible), in 1 ms batches.
fn source() {
    let n = env_num("DW_BENCH_SESSIONS") as usize;
    let pps = env_num("DW_BENCH_PPS");
    let secs = env_num("DW_BENCH_SECONDS");
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|i| UdpSocket::bind((WOLF, wolf_video(i))).expect("source bind"))
        .collect();
    for i in 0..n {
        let listener = std::net::TcpListener::bind((WOLF, wolf_rtsp(i))).expect("source RTSP bind");
        std::thread::spawn(move || answer_setups(listener, i));
    }
    let mut buf = [0u8; 2048];
    for s in &sockets {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (_, from) = s
            .recv_from(&mut buf)
            .expect("no ping reached the source within 10 s");
        s.connect(from).expect("connect to the ping's source");
    }
    // DW_BENCH_SOURCE_GSO=1: each session's packets of a tick leave as UDP GSO sends (the kernel
    // splits them into the same 1,400-byte datagrams), which makes the source cheap enough to
    // offer more than the forwarders can take on this two-core machine.
    let gso: Option<Vec<(UdpSocketState, SocketAddr)>> =
        (std::env::var("DW_BENCH_SOURCE_GSO").as_deref() == Ok("1")).then(|| {
            sockets
                .iter()
                .map(|s| {
                    let state = UdpSocketState::new(UdpSockRef::from(s)).expect("quinn-udp state");
                    assert!(state.max_gso_segments() > 1, "no UDP GSO on this kernel");
                    (state, s.peer_addr().expect("connected"))
                })
                .collect()
        });
    let mut burst = Vec::with_capacity(64 * PACKET);
    let mut packet = [0u8; PACKET];
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    if std::env::var("DW_BENCH_PATTERN").as_deref() == Ok("frames") && pps != 0 {
        return source_frames(&sockets, gso.as_deref(), pps, start, end);
    }
    let mut seq = 0u64;
    let (mut sent, mut errors) = (0u64, 0u64);
    let tick = Duration::from_millis(1);
    let mut next = start;
    while Instant::now() < end {
        let due = if pps == 0 {
            64
        } else {
            let elapsed = next.duration_since(start).as_secs_f64() + tick.as_secs_f64();
            ((elapsed * pps as f64) as u64).saturating_sub(seq)
        };
        if let Some(gso) = &gso {
            for (s, (state, peer)) in sockets.iter().zip(gso) {
                let (ok, failed) = send_gso_burst(s, state, *peer, seq, due, &mut burst);
                (sent, errors) = (sent + ok, errors + failed);
            }
            seq += due;
        }
        for _ in 0..if gso.is_some() { 0 } else { due } {
            for s in &sockets {
                packet[..8].copy_from_slice(&seq.to_be_bytes());
                packet[8..16].copy_from_slice(&now_ns().to_be_bytes());
                match s.send(&packet) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
            }
            seq += 1;
        }
        if pps != 0 {
            next += tick;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
    }
    println!(
        "SOURCE {}",
        json!({"sent": sent, "errors": errors, "secs": start.elapsed().as_secs_f64()})
    );
}

/// Wolf's RTSP, as far as the shared-ports variant needs it: every request gets a SETUP answer
/// naming session `i`'s video port and ping payload.
fn answer_setups(listener: std::net::TcpListener, i: usize) {
    use std::io::{Read, Write};
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut request = Vec::new();
        let mut chunk = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        let secret = String::from_utf8_lossy(&ping_secret(i)).into_owned();
        let answer = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port={}\r\nX-SS-Ping-Payload: {secret}\r\n\r\n",
            wolf_video(i)
        );
        let _ = conn.write_all(answer.as_bytes());
    }
}

/// Moonlight's video SETUP through the relay's RTSP port `rtsp`, echoing session `i`'s fake IP,
/// from session `i`'s client address; returns the video port the answer names.
fn setup_video(rtsp: SocketAddr, i: usize) -> u16 {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(IpAddr::V4(client_ip(i)), 0).into())
        .expect("bind the client address");
    socket
        .connect_timeout(&rtsp.into(), Duration::from_secs(5))
        .expect("connect to the relay's RTSP port");
    let mut conn = std::net::TcpStream::from(socket);
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 4\r\nX-GS-ClientVersion: 14\r\nHost: {}\r\n\r\n",
        fake_ip(i)
    );
    conn.write_all(request.as_bytes()).expect("send SETUP");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("SETUP answer");
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Transport: server_port="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no video port in the SETUP answer {answer:?}"))
}

/// Send `count` datagrams numbered from `first_seq` as UDP GSO sends of up to 46 (46 × 1,400
/// bytes fit one UDP datagram's payload); returns (sent, failed).
fn send_gso_burst(
    socket: &UdpSocket,
    state: &UdpSocketState,
    peer: SocketAddr,
    first_seq: u64,
    count: u64,
    burst: &mut Vec<u8>,
) -> (u64, u64) {
    let mut packet = [0u8; PACKET];
    let (mut sent, mut failed, mut seq) = (0, 0, first_seq);
    while seq < first_seq + count {
        let chunk = (first_seq + count - seq).min(46);
        burst.clear();
        for _ in 0..chunk {
            packet[..8].copy_from_slice(&seq.to_be_bytes());
            packet[8..16].copy_from_slice(&now_ns().to_be_bytes());
            burst.extend_from_slice(&packet);
            seq += 1;
        }
        let transmit = Transmit {
            destination: peer,
            ecn: None,
            contents: burst,
            segment_size: Some(PACKET),
            src_ip: None,
        };
        loop {
            match state.try_send(UdpSockRef::from(socket), &transmit) {
                Ok(()) => sent += chunk,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
                Err(_) => failed += chunk,
            }
            break;
        }
    }
    (sent, failed)
}

/// Video frames as a game stream sends them: each session sends one frame of `pps / FPS`
/// datagrams every 1/FPS s, back to back, one datagram per syscall (or, with `gso`, up to 46 per
/// GSO send); the sessions' frame clocks are spread evenly over the frame interval (independent
/// streams are not in phase).
fn source_frames(
    sockets: &[UdpSocket],
    gso: Option<&[(UdpSocketState, SocketAddr)]>,
    pps: u64,
    start: Instant,
    end: Instant,
) {
    const FPS: u64 = 60;
    let n = sockets.len();
    let interval = Duration::from_secs(1) / FPS as u32;
    let mut next: Vec<Instant> = (0..n).map(|i| start + interval * i as u32 / n as u32).collect();
    let mut frames = vec![0u64; n];
    let mut packet = [0u8; PACKET];
    let mut burst = Vec::with_capacity(46 * PACKET);
    let (mut sent, mut errors, mut seq) = (0u64, 0u64, 0u64);
    loop {
        let (i, due) = next
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .map(|(i, t)| (i, *t))
            .expect("at least one session");
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // Datagrams of frame k: the ones due by its end, so the rate is exact over time.
        frames[i] += 1;
        let count = frames[i] * pps / FPS - (frames[i] - 1) * pps / FPS;
        if let Some(gso) = gso {
            let (state, peer) = &gso[i];
            let (ok, failed) = send_gso_burst(&sockets[i], state, *peer, seq, count, &mut burst);
            (sent, errors, seq) = (sent + ok, errors + failed, seq + count);
        } else {
            for _ in 0..count {
                packet[..8].copy_from_slice(&seq.to_be_bytes());
                packet[8..16].copy_from_slice(&now_ns().to_be_bytes());
                match sockets[i].send(&packet) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
                seq += 1;
            }
        }
        next[i] += interval;
    }
    println!(
        "SOURCE {}",
        json!({"sent": sent, "errors": errors, "secs": start.elapsed().as_secs_f64()})
    );
}

/// Moonlight: ping each target every 50 ms from one socket per session; record arrivals.
fn sink() {
    let targets: Vec<SocketAddr> = env("DW_BENCH_TARGETS")
        .split(',')
        .map(|t| t.parse().expect("target address"))
        .collect();
    let secs = env_num("DW_BENCH_SECONDS");
    let rtsp: Option<SocketAddr> = std::env::var("DW_BENCH_RTSP")
        .ok()
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().expect("RTSP address"));
    let handles: Vec<_> = targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| {
            std::thread::spawn(move || {
                if let Some(rtsp) = rtsp {
                    assert_eq!(
                        setup_video(rtsp, i),
                        target.port(),
                        "SETUP names the shared video port"
                    );
                }
                sink_one(target, i, secs)
            })
        })
        .collect();
    let results: Vec<Value> = handles
        .into_iter()
        .map(|h| h.join().expect("sink thread"))
        .collect();
    println!("SINK {}", Value::Array(results));
}

/// One session of the sink. Latency is measured twice: from the source's send timestamp to the
/// kernel's receive timestamp of the datagram on the sink's interface (`SO_TIMESTAMPNS`: when the
/// forwarder's packet arrived, which is what a forwarder adds), and to the moment the sink
/// thread read it (which also counts the sink's own scheduling on its shared core).
fn sink_one(target: SocketAddr, i: usize, secs: u64) -> Value {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind((client_ip(i), 0)).expect("sink bind");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    setsockopt(&s, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    // Room for a few whole video frames, as a streaming client has: a 150 Mbit/s frame is
    // 300 KiB, and forwarders that batch deliver it in bursts.
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4 << 20)
        .expect("SO_RCVBUF");
    let deadline = Instant::now() + Duration::from_secs(secs + 12);
    let skip = Duration::from_millis(
        std::env::var("DW_BENCH_SKIP_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(200),
    );
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut lat_ns: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut app_lat_ns: Vec<u32> = Vec::with_capacity(1 << 20);
    let (mut received, mut bytes) = (0u64, 0u64);
    let mut last_ping: Option<Instant> = None;
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    loop {
        let now = Instant::now();
        if now > deadline || last.is_some_and(|l| now.duration_since(l) > Duration::from_millis(700)) {
            break;
        }
        if last_ping.is_none_or(|p| now.duration_since(p) > Duration::from_millis(50)) {
            let mut ping = [0u8; 20];
            ping[..16].copy_from_slice(&ping_secret(i));
            let _ = s.send_to(&ping, target);
            last_ping = Some(now);
        }
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) else {
            continue;
        };
        let n = msg.bytes;
        let kernel_ns = msg.cmsgs().into_iter().flatten().find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(ts) => {
                Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
            }
            _ => None,
        });
        if n < 16 {
            continue;
        }
        let t = now_ns();
        let arrived = Instant::now();
        let first_at = *first.get_or_insert(arrived);
        last = Some(arrived);
        received += 1;
        bytes += n as u64;
        let sent = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
        // Skip the first 200 ms (ARP, mappings, caches), or DW_BENCH_SKIP_MS.
        if arrived.duration_since(first_at) > skip {
            let clamp = |d: u64| d.min(u64::from(u32::MAX)) as u32;
            lat_ns.push(clamp(
                kernel_ns
                    .expect("SO_TIMESTAMPNS on every datagram")
                    .saturating_sub(sent),
            ));
            app_lat_ns.push(clamp(t.saturating_sub(sent)));
        }
    }
    let window = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let pct = |v: &mut Vec<u32>, p: f64| -> u64 {
        v.sort_unstable();
        if v.is_empty() {
            0
        } else {
            u64::from(v[((v.len() - 1) as f64 * p) as usize])
        }
    };
    json!({"received": received, "bytes": bytes, "window": window,
           "p50": pct(&mut lat_ns, 0.5), "p90": pct(&mut lat_ns, 0.9), "p99": pct(&mut lat_ns, 0.99),
           "p999": pct(&mut lat_ns, 0.999), "max": pct(&mut lat_ns, 1.0),
           "over_1ms": lat_ns.iter().filter(|&&l| l > 1_000_000).count(),
           "app_p99": pct(&mut app_lat_ns, 0.99), "samples": lat_ns.len()})
}

/// The relay engine on a current-thread runtime, one session per `DW_BENCH_SESSIONS`; with
/// `fast`, its kernel fast path on (the relay admits each sink, the kernel carries the flow).
fn relay_role(fast: bool) {
    let n = env_num("DW_BENCH_SESSIONS") as usize;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut config = RelayConfig::new(IpAddr::V4(PUBLIC), 1..=4);
        if fast {
            config.fast_path = Some(FastPath::start().await.expect("the kernel fast path starts"));
        }
        let relay = Relay::new(config).expect("relay");
        let mut sessions = Vec::new();
        for i in 0..n {
            let base = public_video(i) - 1;
            let ports = StreamPorts {
                rtsp: base,
                video: base + 1,
                audio: base + 2,
                control: base + 3,
            };
            let mut cfg = SessionRelayConfig::new(
                IpAddr::V4(client_ip(i)),
                SocketAddr::new(IpAddr::V4(WOLF), 48010),
                Ipv4Addr::new(10, 99, 0, 7),
            );
            cfg.wolf_ports = WolfPorts {
                video: wolf_video(i),
                audio: 48200 + i as u16,
                control: 47000 + i as u16,
            };
            sessions.push(
                relay
                    .open_session_on(ports, cfg)
                    .await
                    .expect("open bench session"),
            );
        }
        println!("READY");
        std::future::pending::<()>().await;
    });
}

/// The relay in shared-ports mode: every session on the [`SHARED`] port set, its ping payload
/// learned from the SETUP answer the sink's request draws from the source, as in a real session.
fn shared_role() {
    let n = env_num("DW_BENCH_SESSIONS") as usize;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut config = RelayConfig::new(IpAddr::V4(PUBLIC), 30000..=30015);
        config.shared_ports = Some(SharedPorts {
            rtsp: SHARED[0],
            video: SHARED[1],
            audio: SHARED[2],
            control: SHARED[3],
        });
        let relay = Relay::new(config).expect("shared relay");
        let mut sessions = Vec::new();
        for i in 0..n {
            let wolf = SocketAddr::new(IpAddr::V4(WOLF), wolf_rtsp(i));
            let cfg = SessionRelayConfig::new(IpAddr::V4(client_ip(i)), wolf, fake_ip(i));
            let session = relay.open_session(cfg).await.expect("open bench session");
            assert_eq!(
                session.ports().rtsp,
                SHARED[0],
                "distinct clients share the RTSP port"
            );
            sessions.push(session);
        }
        println!("READY");
        std::future::pending::<()>().await;
    });
}

/// The socket-receive floor: per session, the two sockets a relay has (public, and upstream
/// connected to Wolf, both with the relay's 1 MiB buffers), pings passed to Wolf, and Wolf's
/// datagrams read in `recvmmsg` batches as the relay reads them, then discarded. This is what any
/// forwarder built on sockets pays before it sends anything.
fn floor_role() {
    use quinn_udp::RecvMeta;
    use tokio::io::Interest;
    const SLOTS: usize = 32;
    const SLOT: usize = 1 << 16;
    let n = env_num("DW_BENCH_SESSIONS") as usize;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let socket = |bind: SocketAddr, connect: Option<SocketAddr>| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
        s.set_recv_buffer_size(1 << 20).expect("SO_RCVBUF");
        s.set_send_buffer_size(1 << 20).expect("SO_SNDBUF");
        s.set_nonblocking(true).expect("nonblocking");
        s.bind(&bind.into()).expect("bind");
        if let Some(peer) = connect {
            s.connect(&peer.into()).expect("connect");
        }
        UdpSocket::from(s)
    };
    runtime.block_on(async move {
        for i in 0..n {
            let public = tokio::net::UdpSocket::from_std(socket(
                SocketAddr::new(IpAddr::V4(PUBLIC), public_video(i)),
                None,
            ))
            .expect("register public");
            let wolf = SocketAddr::new(IpAddr::V4(WOLF), wolf_video(i));
            let std_upstream = socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), Some(wolf));
            let state = UdpSocketState::new(UdpSockRef::from(&std_upstream)).expect("quinn-udp state");
            let upstream = tokio::net::UdpSocket::from_std(std_upstream).expect("register upstream");
            tokio::spawn(async move {
                let mut ping = [0u8; 2048];
                let mut buf = vec![0u8; SLOTS * SLOT];
                let mut meta = [RecvMeta::default(); SLOTS];
                loop {
                    tokio::select! {
                        r = public.recv_from(&mut ping) => {
                            if let Ok((len, _)) = r {
                                let _ = upstream.send(&ping[..len]).await;
                            }
                        }
                        r = upstream.readable() => {
                            if r.is_err() {
                                continue;
                            }
                            let _ = upstream.try_io(Interest::READABLE, || {
                                let mut slots = buf.chunks_exact_mut(SLOT).map(std::io::IoSliceMut::new);
                                let mut iovs: [std::io::IoSliceMut<'_>; SLOTS] =
                                    std::array::from_fn(|_| slots.next().expect("SLOTS slots"));
                                state.recv(UdpSockRef::from(&upstream), &mut iovs, &mut meta)
                            });
                        }
                    }
                }
            });
        }
        println!("READY");
        std::future::pending::<()>().await;
    });
}

// ---------------------------------------------------------------- orchestration

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Direct,
    Kernel,
    Egress,
    Socat,
    Relay,
    Fast,
    Shared,
    Floor,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Kernel => "kernel",
            Variant::Egress => "egress",
            Variant::Socat => "socat",
            Variant::Relay => "relay",
            Variant::Fast => "fast",
            Variant::Shared => "shared",
            Variant::Floor => "floor",
        }
    }
}

/// The running forwarder of one measurement; stopped on drop.
struct Forwarder {
    children: Vec<Child>,
    nft_netns: Vec<String>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.nft_netns {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "ip", "dwbench"])
                .status();
        }
    }
}

impl Forwarder {
    /// utime + stime of the forwarder processes, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        self.children
            .iter()
            .map(|c| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap_or_default();
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                // After the command name, field 3 (state) is index 0: utime (14) and stime (15).
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                num(11) + num(12)
            })
            .sum()
    }
}

/// Load an nftables rule set into a namespace (table `ip dwbench`, removed by [`Forwarder`]).
fn nft(ns: &str, rules: &str) {
    let path = std::env::temp_dir().join(format!("dwbench-{}-{ns}.nft", std::process::id()));
    std::fs::write(&path, rules).expect("write nft rules");
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            path.to_str().expect("utf-8 path"),
        ],
    );
    let _ = std::fs::remove_file(path);
}

/// The forwarder's namespace DNATs each session's public video port to Wolf (`kernel`; the
/// pings of `egress`).
fn install_dnat(t: &Topology, n: usize) {
    let mut rules =
        String::from("table ip dwbench {\n chain pre {\n  type nat hook prerouting priority -100;\n");
    for i in 0..n {
        rules.push_str(&format!(
            "  ip daddr {PUBLIC} udp dport {} dnat to {WOLF}:{}\n",
            public_video(i),
            wolf_video(i)
        ));
    }
    rules.push_str(" }\n}\n");
    nft(&t.r, &rules);
}

/// The proof of concept's plan, Wolf streaming to the client itself: Wolf's host sends the media
/// straight to the client over its own link, with the proxy's address and port as source. Pings
/// reach Wolf untracked (so that Wolf's first datagram opens the connection the SNAT applies to),
/// media is marked onto the direct link (routing table 77) and its source rewritten.
fn install_egress_snat(t: &Topology, n: usize) {
    let mut rules = String::from(
        "table ip dwbench {\n chain raw {\n  type filter hook prerouting priority -300;\n  udp dport 48100-48199 notrack\n }\n \
         chain steer {\n  type route hook output priority -150;\n  ip daddr 10.77.1.0/24 udp sport 48100-48199 meta mark set 0x77\n }\n \
         chain post {\n  type nat hook postrouting priority 100;\n",
    );
    for i in 0..n {
        rules.push_str(&format!(
            "  ip daddr 10.77.1.0/24 udp sport {} snat to {PUBLIC}:{}\n",
            wolf_video(i),
            public_video(i)
        ));
    }
    rules.push_str(" }\n}\n");
    nft(&t.w, &rules);
}

fn start_forwarder(t: &Topology, v: Variant, n: usize) -> Forwarder {
    let mut f = Forwarder {
        children: Vec::new(),
        nft_netns: Vec::new(),
    };
    match v {
        Variant::Direct => {}
        Variant::Kernel => {
            install_dnat(t, n);
            f.nft_netns.push(t.r.clone());
        }
        Variant::Egress => {
            install_dnat(t, n);
            f.nft_netns.push(t.r.clone());
            install_egress_snat(t, n);
            f.nft_netns.push(t.w.clone());
        }
        Variant::Socat => {
            for i in 0..n {
                let child = Command::new("ip")
                    .args([
                        "netns", "exec", &t.r, "chrt", "-f", "20", "taskset", "-c", "1", "socat", "-b",
                        "65536",
                    ])
                    .arg(format!("UDP4-LISTEN:{},bind={PUBLIC},reuseaddr", public_video(i)))
                    .arg(format!("UDP4:{WOLF}:{}", wolf_video(i)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start socat");
                f.children.push(child);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Variant::Relay | Variant::Fast | Variant::Shared | Variant::Floor => {
            let exe = std::env::current_exe().expect("bench binary");
            let mut child = Command::new("ip")
                .args(["netns", "exec", &t.r, "chrt", "-f", "20", "taskset", "-c", "1"])
                .arg(exe)
                .env("DW_BENCH_ROLE", v.name())
                .env("DW_BENCH_SESSIONS", n.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the relay");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("piped stdout"))
                .read_line(&mut line)
                .expect("relay output");
            assert_eq!(line.trim(), "READY", "the relay did not start");
            f.children.push(child);
        }
    }
    f
}

/// (busy, softirq, total) jiffies of CPU 1 from /proc/stat.
fn cpu1_jiffies() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu1 ")) else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, v.get(6).copied().unwrap_or(0), total)
}

struct Measurement {
    pps: f64,
    loss: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    app_p99_us: f64,
    cpu: f64,
    core_busy: f64,
    core_softirq: f64,
}

fn measure(t: &Topology, v: Variant, n: usize, pps_per_session: u64, secs: u64) -> Measurement {
    let fwd = start_forwarder(t, v, n);
    let exe = std::env::current_exe().expect("bench binary");
    let targets: Vec<String> = (0..n)
        .map(|i| match v {
            Variant::Direct => format!("{WOLF}:{}", wolf_video(i)),
            Variant::Shared => format!("{PUBLIC}:{}", SHARED[1]),
            _ => format!("{PUBLIC}:{}", public_video(i)),
        })
        .collect();
    let role = |ns: &str, role: &str| {
        let mut c = Command::new("ip");
        // The sink runs SCHED_FIFO so that arrivals are timestamped at once; the source (a busy
        // loop at max rate) stays in the normal class so it cannot starve the sink.
        let sched: &[&str] = if role == "sink" {
            &["chrt", "-f", "20"]
        } else {
            &["nice", "-n", "-15"]
        };
        c.args(["netns", "exec", ns])
            .args(sched)
            .args(["taskset", "-c", "0"])
            .arg(&exe)
            .env("DW_BENCH_ROLE", role)
            .env("DW_BENCH_SESSIONS", n.to_string())
            .env("DW_BENCH_PPS", pps_per_session.to_string())
            .env("DW_BENCH_SECONDS", secs.to_string())
            // The fast path hands a flow to the kernel once a ping came through it (its worker
            // reads the counters every 250 ms): measure the kernel's part only.
            .env("DW_BENCH_SKIP_MS", if v == Variant::Fast { "1000" } else { "200" })
            .env("DW_BENCH_TARGETS", targets.join(","))
            .env(
                "DW_BENCH_RTSP",
                if v == Variant::Shared {
                    format!("{PUBLIC}:{}", SHARED[0])
                } else {
                    String::new()
                },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        c
    };
    let source = role(&t.w, "source").spawn().expect("start source");
    std::thread::sleep(Duration::from_millis(200));
    let ticks0 = fwd.cpu_ticks();
    let core0 = cpu1_jiffies();
    let sink = role(&t.c, "sink").spawn().expect("start sink");
    let source = source.wait_with_output().expect("source output");
    let ticks1 = fwd.cpu_ticks();
    let core1 = cpu1_jiffies();
    let sink = if v == Variant::Floor {
        // Nothing comes back through the floor: stop the sink instead of waiting out its deadline.
        let mut sink = sink;
        let _ = sink.kill();
        let _ = sink.wait();
        None
    } else {
        Some(sink.wait_with_output().expect("sink output"))
    };
    drop(fwd);
    let parse = |out: &[u8], prefix: &str| -> Value {
        let text = String::from_utf8_lossy(out);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{} x{n}: no `{prefix}` line in {text:?}", v.name()));
        serde_json::from_str(line).expect("json")
    };
    let src = parse(&source.stdout, "SOURCE ");
    let sent = src["sent"].as_f64().unwrap_or(0.0);
    let src_secs = src["secs"].as_f64().unwrap_or(1.0);
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let mut m = Measurement {
        pps: sent / src_secs,
        loss: f64::NAN,
        p50_us: f64::NAN,
        p90_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        app_p99_us: f64::NAN,
        cpu: ticks1.saturating_sub(ticks0) as f64 / ticks_per_s / src_secs,
        core_busy: (core1.0 - core0.0) as f64 / (core1.2 - core0.2).max(1) as f64,
        core_softirq: (core1.1 - core0.1) as f64 / (core1.2 - core0.2).max(1) as f64,
    };
    let Some(sink) = sink else {
        // The floor: what the source offered, all of it read (nothing is sent on).
        return m;
    };
    let snk = parse(&sink.stdout, "SINK ");
    if std::env::var("DW_BENCH_DEBUG").as_deref() == Ok("1") {
        for s in snk.as_array().into_iter().flatten() {
            println!("  {} {s}", v.name());
        }
    }
    let sessions = snk.as_array().expect("sink prints an array");
    let received: f64 = sessions
        .iter()
        .map(|s| s["received"].as_f64().unwrap_or(0.0))
        .sum();
    let window = sessions
        .iter()
        .map(|s| s["window"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max)
        .max(1e-3);
    // Latency: the worst session's percentile.
    let worst = |k: &str| {
        sessions
            .iter()
            .map(|s| s[k].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max)
            / 1000.0
    };
    m.pps = received / window;
    m.loss = if sent > 0.0 { 1.0 - received / sent } else { 1.0 };
    m.p50_us = worst("p50");
    m.p90_us = worst("p90");
    m.p99_us = worst("p99");
    m.p999_us = worst("p999");
    m.app_p99_us = worst("app_p99");
    m
}

fn orchestrate() {
    for tool in ["ip", "taskset", "socat", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "`{tool}` is required; run direwolf-core/benches/relay.sh (installs socat and nftables)"
        );
    }
    let secs: u64 = std::env::var("DW_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let topo = Topology::create();
    let rate_pps = (RATE_MBIT * 1e6 / (PACKET * 8) as f64).round() as u64;
    println!(
        "relay benchmark: {PACKET}-byte UDP, {secs} s per run, forwarder on CPU 1, source+sink on CPU 0, receive processing on the receiver's core: {}, source sends {}",
        if std::env::var("DW_BENCH_RPS").as_deref() == Ok("0") {
            "off (DW_BENCH_RPS=0)"
        } else {
            "on"
        },
        match (
            std::env::var("DW_BENCH_SOURCE_GSO").as_deref() == Ok("1"),
            std::env::var("DW_BENCH_PATTERN").as_deref() == Ok("frames"),
        ) {
            (true, true) =>
                "GSO bursts (DW_BENCH_SOURCE_GSO=1), paced runs as 60 fps video frames (DW_BENCH_PATTERN=frames)",
            (true, false) => "GSO bursts (DW_BENCH_SOURCE_GSO=1), paced runs in 1 ms ticks",
            (false, true) =>
                "one datagram per syscall, paced runs as 60 fps video frames (DW_BENCH_PATTERN=frames)",
            (false, false) => "one datagram per syscall, paced runs in 1 ms ticks",
        }
    );
    // DW_BENCH_ONLY=<sessions>:<paced|max> runs one scenario.
    let only = std::env::var("DW_BENCH_ONLY").unwrap_or_default();
    // DW_BENCH_VARIANTS=relay,direct runs only those forwarders (ratios need direct, kernel,
    // socat and relay).
    let variants = std::env::var("DW_BENCH_VARIANTS").unwrap_or_default();
    for (label, pps) in [("paced 150 Mbit/s per session", rate_pps), ("max rate", 0)] {
        for n in [1usize, 8] {
            let tag = format!("{n}:{}", if pps == 0 { "max" } else { "paced" });
            if !only.is_empty() && only != tag {
                continue;
            }
            println!("\n== {n} session(s), {label} ==");
            println!(
                "{:<8} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11} {:>7} {:>6}",
                "variant",
                "pkt/s",
                "Mbit/s",
                "loss%",
                "p50 µs",
                "p90 µs",
                "p99 µs",
                "p99.9 µs",
                "app p99",
                "cpu%",
                "pkt/cpu-s",
                "core1%",
                "si%"
            );
            let mut results = Vec::new();
            for v in [
                Variant::Direct,
                Variant::Kernel,
                Variant::Egress,
                Variant::Socat,
                Variant::Relay,
                Variant::Fast,
                Variant::Shared,
                Variant::Floor,
            ] {
                if !variants.is_empty() && !variants.split(',').any(|name| name == v.name()) {
                    continue;
                }
                let m = measure(&topo, v, n, pps, secs);
                let per_cpu = if m.cpu > 0.0 { m.pps / m.cpu } else { f64::NAN };
                println!(
                    "{:<8} {:>10.0} {:>9.1} {:>7.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.1} {:>11.0} {:>7.1} {:>6.1}",
                    v.name(),
                    m.pps,
                    m.pps * (PACKET * 8) as f64 / 1e6,
                    m.loss * 100.0,
                    m.p50_us,
                    m.p90_us,
                    m.p99_us,
                    m.p999_us,
                    m.app_p99_us,
                    m.cpu * 100.0,
                    per_cpu,
                    m.core_busy * 100.0,
                    m.core_softirq * 100.0
                );
                results.push((v, m, per_cpu));
            }
            if ![Variant::Direct, Variant::Kernel, Variant::Socat, Variant::Relay]
                .iter()
                .all(|v| results.iter().any(|r| r.0 == *v))
            {
                continue;
            }
            let get = |v: Variant| results.iter().find(|r| r.0 == v).expect("measured");
            let (d, k, s, r) = (
                get(Variant::Direct),
                get(Variant::Kernel),
                get(Variant::Socat),
                get(Variant::Relay),
            );
            println!(
                "ratios: relay/socat pkt/s {:.2}x, relay/socat pkt per cpu-s {:.2}x, relay/kernel pkt/s {:.2}x",
                r.1.pps / s.1.pps,
                r.2 / s.2,
                r.1.pps / k.1.pps
            );
            println!(
                "added latency vs direct (µs): relay p50 {:+.1} p99 {:+.1} | socat p50 {:+.1} p99 {:+.1} | kernel p50 {:+.1} p99 {:+.1}",
                r.1.p50_us - d.1.p50_us,
                r.1.p99_us - d.1.p99_us,
                s.1.p50_us - d.1.p50_us,
                s.1.p99_us - d.1.p99_us,
                k.1.p50_us - d.1.p50_us,
                k.1.p99_us - d.1.p99_us
            );
            if let Some(f) = results.iter().find(|r| r.0 == Variant::Fast) {
                println!(
                    "fast path: added p50 {:+.1} µs, p99 {:+.1} µs vs direct; p99 fast/kernel {:.2}x; pkt per cpu-s fast/relay {:.1}x",
                    f.1.p50_us - d.1.p50_us,
                    f.1.p99_us - d.1.p99_us,
                    f.1.p99_us / k.1.p99_us,
                    f.2 / r.2
                );
            }
            if let Some(e) = results.iter().find(|r| r.0 == Variant::Egress) {
                println!(
                    "egress SNAT on Wolf's host: added p50 {:+.1} µs, p99 {:+.1} µs vs direct",
                    e.1.p50_us - d.1.p50_us,
                    e.1.p99_us - d.1.p99_us
                );
            }
            if let Some(sh) = results.iter().find(|r| r.0 == Variant::Shared) {
                println!(
                    "shared ports: shared/relay pkt per cpu-s {:.2}x, pkt/s {:.2}x; added p99 vs direct {:+.1} µs (relay {:+.1})",
                    sh.2 / r.2,
                    sh.1.pps / r.1.pps,
                    sh.1.p99_us - d.1.p99_us,
                    r.1.p99_us - d.1.p99_us
                );
            }
            if let Some(f) = results.iter().find(|r| r.0 == Variant::Floor) {
                println!(
                    "socket-receive floor: {:.1}% CPU for what the source offered; relay CPU / floor {:.2}x",
                    f.1.cpu * 100.0,
                    r.1.cpu / f.1.cpu
                );
            }
        }
    }
    drop(topo);
}
