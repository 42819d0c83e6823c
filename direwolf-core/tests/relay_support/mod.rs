//! A fake Wolf for the relay's integration tests on 127.0.0.1: a tiny RTSP responder with Wolf
//! V6's SETUP answers and UDP sockets, plus Moonlight-style requests, pings and ENet CONNECTs.
#![allow(dead_code)] // each test file uses its own part

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use direwolf_core::relay::{RelayConfig, SessionRelay, SessionRelayConfig, WolfPorts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const FAKE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 7);
pub const SECRET: &[u8; 16] = b"Ab3$x~Zq!9Lm#2Rt";
pub const CONNECT_DATA: u32 = 3_735_928_559;
pub const WAIT: Duration = Duration::from_secs(5);

/// A fake Wolf: RTSP on a TCP port, video/audio/control on UDP ports (all ephemeral).
pub struct FakeWolf {
    pub rtsp: SocketAddr,
    pub video: Arc<UdpSocket>,
    pub audio: Arc<UdpSocket>,
    pub control: Arc<UdpSocket>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FakeWolf {
    pub async fn start() -> FakeWolf {
        Self::start_with(*SECRET, CONNECT_DATA).await
    }

    /// A fake Wolf whose sessions have this ping payload and connect data.
    pub async fn start_with(secret: [u8; 16], connect_data: u32) -> FakeWolf {
        let listener = TcpListener::bind((LOCAL, 0)).await.expect("bind fake Wolf RTSP");
        let rtsp = listener.local_addr().expect("address");
        let udp = || async { Arc::new(UdpSocket::bind((LOCAL, 0)).await.expect("bind fake Wolf UDP")) };
        let (video, audio, control) = (udp().await, udp().await, udp().await);
        let ports = WolfPorts {
            video: video.local_addr().expect("a").port(),
            audio: audio.local_addr().expect("a").port(),
            control: control.local_addr().expect("a").port(),
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let request = read_rtsp_request(&mut conn).await;
                    let answer = wolf_answer(&request, ports, &secret, connect_data);
                    seen.lock().expect("lock").push(request);
                    conn.write_all(answer.as_bytes()).await.expect("write answer");
                    // Wolf answers and closes.
                });
            }
        });
        FakeWolf {
            rtsp,
            video,
            audio,
            control,
            requests,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

pub async fn read_rtsp_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("relay must deliver the request")
            .expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-length: "))
                .map_or(0, |v| v.trim().parse::<usize>().expect("length"));
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
        assert!(n > 0, "relay closed before the request was complete: {text:?}");
    }
}

/// Wolf V6-style answers (headers alphabetical, CRLF; `docs/protocol/streaming-ports.md` § RTSP
/// handshake).
pub fn wolf_answer(request: &str, ports: WolfPorts, secret: &[u8; 16], connect_data: u32) -> String {
    let cseq = request
        .lines()
        .find_map(|l| l.strip_prefix("CSeq: "))
        .unwrap_or("0")
        .trim()
        .to_owned();
    let secret = std::str::from_utf8(secret).expect("ascii");
    let first = request.lines().next().unwrap_or("");
    if first.starts_with("SETUP streamid=audio") {
        format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port={}\r\nX-SS-Ping-Payload: {secret}\r\n\r\n",
            ports.audio
        )
    } else if first.starts_with("SETUP streamid=video") {
        format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port={}\r\nX-SS-Ping-Payload: {secret}\r\n\r\n",
            ports.video
        )
    } else if first.starts_with("SETUP streamid=control") {
        format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port={}\r\nX-SS-Connect-Data: {connect_data}\r\n\r\n",
            ports.control
        )
    } else if first.starts_with("DESCRIBE") {
        let sdp = "a=fmtp:97 surround-params=21101\r\na=x-ss-general.featureFlags: 3\r\n";
        format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    } else {
        format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n")
    }
}

/// One Moonlight-style RTSP transaction: connect, write (in pieces if `split`), read until close.
pub async fn rtsp(port: u16, request: &str, split: bool) -> String {
    let mut conn = timeout(WAIT, TcpStream::connect((LOCAL, port)))
        .await
        .expect("connect timed out")
        .expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    if split {
        for piece in request.as_bytes().chunks(7) {
            conn.write_all(piece).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        conn.write_all(request.as_bytes()).await.expect("write");
    }
    let mut answer = Vec::new();
    let read = timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .expect("the relay must close the connection after the answer");
    match read {
        Ok(_) => {}
        // Closing with unread request bytes (refused garbage) makes the kernel send a reset.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    String::from_utf8(answer).expect("utf-8 answer")
}

pub fn config(range: std::ops::RangeInclusive<u16>) -> RelayConfig {
    let mut c = RelayConfig::new(LOCAL, range);
    c.socket_buffer_bytes = 0;
    c
}

pub fn session(wolf: &FakeWolf, client_ip: IpAddr) -> SessionRelayConfig {
    let mut s = SessionRelayConfig::new(client_ip, wolf.rtsp, FAKE_IP);
    // Defaults point at ports nobody listens on: the learned ports must be used.
    s.wolf_ports = WolfPorts {
        video: 9,
        audio: 9,
        control: 9,
    };
    s
}

pub fn setup(stream: &str, cseq: u32) -> String {
    format!(
        "SETUP streamid={stream} RTSP/1.0\r\nCSeq: {cseq}\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\nTransport: unicast;X-GS-ClientPort=50000-50001\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
    )
}

/// Run the three SETUPs; returns the public ports the client was told.
pub async fn handshake(relay: &SessionRelay) -> (u16, u16, u16) {
    let port_of = |answer: &str| -> u16 {
        let t = answer
            .lines()
            .find_map(|l| l.strip_prefix("Transport: server_port="))
            .expect("transport");
        t.trim().parse().expect("port")
    };
    let audio = port_of(&rtsp(relay.ports().rtsp, &setup("audio/0/0", 3), false).await);
    let video = port_of(&rtsp(relay.ports().rtsp, &setup("video/0/0", 4), false).await);
    let control = port_of(&rtsp(relay.ports().rtsp, &setup("control/13/0", 5), false).await);
    (audio, video, control)
}

pub fn ping(seq: u32) -> Vec<u8> {
    ping_with(SECRET, seq)
}

/// A Moonlight ping carrying `secret`.
pub fn ping_with(secret: &[u8; 16], seq: u32) -> Vec<u8> {
    let mut p = secret.to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

pub fn enet_connect(data: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0x8FFFu16.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&[0x82, 0xFF, 0, 1, 0, 0, 0, 0]);
    for v in [1392u32, 32768, 0x30, 0, 0, 5000, 2, 2, 77] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p.extend_from_slice(&data.to_be_bytes());
    p
}

pub async fn recv(socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("recv");
    buf.truncate(n);
    (buf, from)
}

pub async fn stats_settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}
