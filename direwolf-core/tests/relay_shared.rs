//! Shared-ports mode of `direwolf_core::relay` on 127.0.0.1: several sessions on one port set,
//! told apart by the fake IP their RTSP requests echo, their ping payloads and their ENet connect
//! data, against fake Wolfs with distinct secrets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use direwolf_core::relay::{Relay, SessionRelay, SessionRelayConfig, SharedPorts, StreamKind};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::timeout;

mod relay_support;

use relay_support::*;

const SECRET_B: [u8; 16] = *b"Zz9#pQ!r2Lk$mN7x";
const CONNECT_B: u32 = 12_345;
const FAKE_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 8);

/// A shared-ports relay on `base` (RTSP), `base+1` (video), `base+2` (audio), `base+3`
/// (control), with own RTSP ports from `base+10..=base+11`.
fn shared_relay(base: u16) -> Relay {
    let mut c = config(base + 10..=base + 13);
    c.shared_ports = Some(SharedPorts {
        rtsp: base,
        video: base + 1,
        audio: base + 2,
        control: base + 3,
    });
    Relay::new(c).expect("shared relay")
}

fn session_of(wolf: &FakeWolf, client: IpAddr, fake: Ipv4Addr) -> SessionRelayConfig {
    let mut s = session(wolf, client);
    s.fake_rtsp_ip = fake;
    s
}

fn request(line: &str, cseq: u32, host: Ipv4Addr) -> String {
    format!("{line} RTSP/1.0\r\nCSeq: {cseq}\r\nX-GS-ClientVersion: 14\r\nHost: {host}\r\n\r\n")
}

/// One RTSP transaction from a chosen local address.
async fn rtsp_from(from: Ipv4Addr, port: u16, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).expect("bind");
    let mut conn = timeout(WAIT, socket.connect(SocketAddr::new(LOCAL, port)))
        .await
        .expect("connect in time")
        .expect("connect");
    conn.write_all(text.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    match timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .expect("closed in time")
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    String::from_utf8(answer).expect("utf-8")
}

/// The three SETUPs and PLAY through `port`, echoing `host`; returns the UDP ports announced.
async fn handshake_via(from: Ipv4Addr, port: u16, host: Ipv4Addr) -> Vec<u16> {
    let mut ports = Vec::new();
    for (cseq, stream) in [(3, "audio/0/0"), (4, "video/0/0"), (5, "control/13/0")] {
        let answer = rtsp_from(
            from,
            port,
            &request(&format!("SETUP streamid={stream}"), cseq, host),
        )
        .await;
        let announced = answer
            .lines()
            .find_map(|l| l.strip_prefix("Transport: server_port="))
            .unwrap_or_else(|| panic!("a SETUP answer through the shared port: {answer:?}"));
        ports.push(announced.trim().parse().expect("port"));
    }
    let played = rtsp_from(from, port, &request("PLAY /", 7, host)).await;
    assert!(played.starts_with("RTSP/1.0 200"), "{played}");
    ports
}

async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

#[tokio::test]
async fn two_sessions_of_one_address_share_the_ports_and_never_see_each_other() {
    let (wolf_a, wolf_b) = (
        FakeWolf::start().await,
        FakeWolf::start_with(SECRET_B, CONNECT_B).await,
    );
    let relay = shared_relay(22010);
    let a = relay
        .open_session(session_of(&wolf_a, LOCAL, FAKE_IP))
        .await
        .expect("session A");
    assert!(a.on_shared_ports());
    assert_eq!(
        (
            a.ports().rtsp,
            a.ports().video,
            a.ports().audio,
            a.ports().control
        ),
        (22010, 22011, 22012, 22013)
    );
    // A second launch from the same address while A is still in its handshake: a client sending
    // 0.0.0.0 could not be told apart on the shared RTSP port, so B gets an RTSP port of its own.
    let b = relay
        .open_session(session_of(&wolf_b, LOCAL, FAKE_B))
        .await
        .expect("session B");
    assert_eq!(b.ports().rtsp, 22020, "B's own RTSP port, from the range");
    assert_eq!(b.ports().video, 22011, "B's media still on the shared ports");

    let shared_udp = [22012, 22011, 22013];
    assert_eq!(
        handshake_via(Ipv4Addr::LOCALHOST, 22010, FAKE_IP).await,
        shared_udp
    );
    assert_eq!(
        handshake_via(Ipv4Addr::LOCALHOST, b.ports().rtsp, Ipv4Addr::UNSPECIFIED).await,
        shared_udp
    );
    assert_eq!(wolf_a.requests().len(), 4, "A's four requests reached A's Wolf");
    assert_eq!(wolf_b.requests().len(), 4, "B's four requests reached B's Wolf");
    assert!(wolf_b.requests().iter().all(|r| r.contains("Host: 10.99.0.8")));

    // Both clients ping the one video port from the same address: each reaches its own Wolf.
    let video = SocketAddr::new(LOCAL, 22011);
    let (client_a, client_b) = (
        UdpSocket::bind((LOCAL, 0)).await.expect("a"),
        UdpSocket::bind((LOCAL, 0)).await.expect("b"),
    );
    client_a.send_to(&ping(1), video).await.expect("ping a");
    client_b
        .send_to(&ping_with(&SECRET_B, 1), video)
        .await
        .expect("ping b");
    let (got_a, upstream_a) = recv(&wolf_a.video, "A's ping at A's Wolf").await;
    let (got_b, upstream_b) = recv(&wolf_b.video, "B's ping at B's Wolf").await;
    assert_eq!((got_a, got_b), (ping(1), ping_with(&SECRET_B, 1)));
    wolf_a
        .video
        .send_to(b"rtp-for-a", upstream_a)
        .await
        .expect("rtp a");
    wolf_b
        .video
        .send_to(b"rtp-for-b", upstream_b)
        .await
        .expect("rtp b");
    assert_eq!(recv(&client_a, "A's RTP").await, (b"rtp-for-a".to_vec(), video));
    assert_eq!(recv(&client_b, "B's RTP").await, (b"rtp-for-b".to_vec(), video));

    // Control by connect data.
    let control = SocketAddr::new(LOCAL, 22013);
    client_b
        .send_to(&enet_connect(CONNECT_B), control)
        .await
        .expect("connect b");
    let (_, control_b) = recv(&wolf_b.control, "B's CONNECT at B's Wolf").await;
    wolf_b.control.send_to(b"verify", control_b).await.expect("reply");
    assert_eq!(
        recv(&client_b, "B's control reply").await,
        (b"verify".to_vec(), control)
    );

    // A stranger's wrong payload, a wrong connect data and a legacy ping of an address with two
    // sessions reach nobody, each counted by its reason.
    let stranger = UdpSocket::bind((LOCAL, 0)).await.expect("stranger");
    stranger
        .send_to(&ping_with(b"0123456789abcdef", 1), video)
        .await
        .expect("send");
    stranger
        .send_to(&enet_connect(CONNECT_B + 1), control)
        .await
        .expect("send");
    stranger.send_to(b"PING", video).await.expect("send");
    settle().await;
    let drops = relay.totals().video.drops;
    assert_eq!((drops.unknown_secret, drops.ambiguous_source), (1, 1));
    assert_eq!(relay.totals().control.drops.unknown_secret, 1);
    assert_eq!(
        a.stats().udp(StreamKind::Video).to_wolf_packets,
        1,
        "A's Wolf saw only A's ping"
    );
    assert_eq!(b.stats().udp(StreamKind::Video).to_wolf_packets, 1);

    // Once A ends, its secret opens nothing and B carries on.
    a.close().await;
    stranger.send_to(&ping(2), video).await.expect("send");
    client_b
        .send_to(&ping_with(&SECRET_B, 2), video)
        .await
        .expect("ping b");
    assert_eq!(
        recv(&wolf_b.video, "B's second ping").await.0,
        ping_with(&SECRET_B, 2)
    );
    settle().await;
    assert_eq!(relay.totals().video.drops.unknown_secret, 2);
    drop(b);
}

#[tokio::test]
async fn rtsp_goes_by_the_echoed_fake_ip_else_by_the_one_session_of_the_address() {
    let (wolf_a, wolf_b) = (
        FakeWolf::start().await,
        FakeWolf::start_with(SECRET_B, CONNECT_B).await,
    );
    let relay = shared_relay(22030);
    let (ip_a, ip_b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let _a = relay
        .open_session(session_of(&wolf_a, IpAddr::V4(ip_a), FAKE_IP))
        .await
        .expect("a");
    let b = relay
        .open_session(session_of(&wolf_b, IpAddr::V4(ip_b), FAKE_B))
        .await
        .expect("b");
    assert_eq!(b.ports().rtsp, 22030, "another address: the shared RTSP port");

    let options =
        |host: Ipv4Addr| format!("OPTIONS rtsp://{host}:22030 RTSP/1.0\r\nCSeq: 1\r\nHost: {host}\r\n\r\n");
    // The echo decides, whoever sends it.
    assert!(
        rtsp_from(ip_a, 22030, &options(FAKE_B))
            .await
            .starts_with("RTSP/1.0 200")
    );
    assert_eq!((wolf_a.requests().len(), wolf_b.requests().len()), (0, 1));
    // 0.0.0.0: the address decides.
    assert!(
        rtsp_from(ip_a, 22030, &options(Ipv4Addr::UNSPECIFIED))
            .await
            .starts_with("RTSP/1.0 200")
    );
    assert_eq!((wolf_a.requests().len(), wolf_b.requests().len()), (1, 1));
    assert!(
        wolf_a.requests()[0].contains("rtsp://10.99.0.7:22030"),
        "rewritten to A's fake IP"
    );
    // An unknown fake IP, or 0.0.0.0 from an address with no session: closed unanswered.
    let unknown = Ipv4Addr::new(10, 99, 0, 99);
    assert_eq!(rtsp_from(ip_a, 22030, &options(unknown)).await, "");
    assert_eq!(
        rtsp_from(
            Ipv4Addr::new(127, 0, 0, 4),
            22030,
            &options(Ipv4Addr::UNSPECIFIED)
        )
        .await,
        ""
    );
    assert_eq!((wolf_a.requests().len(), wolf_b.requests().len()), (1, 1));
    settle().await;
    let rtsp = relay.totals().rtsp;
    assert_eq!((rtsp.unrouted, rtsp.relayed, rtsp.connections), (2, 2, 6));
}

#[tokio::test]
async fn shared_ports_that_are_taken_are_a_bind_error_naming_the_port() {
    let _holder = std::net::UdpSocket::bind((LOCAL, 22052)).expect("hold the audio port");
    let error = Relay::new({
        let mut c = config(22060..=22063);
        c.shared_ports = Some(SharedPorts {
            rtsp: 22050,
            video: 22051,
            audio: 22052,
            control: 22053,
        });
        c
    })
    .expect_err("the audio port is taken");
    assert!(error.to_string().contains("127.0.0.1:22052"), "{error}");
    assert!(error.to_string().contains("audio"), "{error}");
}

#[tokio::test]
async fn a_session_handle_is_the_only_thing_keeping_its_routes() {
    let wolf = FakeWolf::start().await;
    let relay = shared_relay(22070);
    let s: SessionRelay = relay
        .open_session(session_of(&wolf, LOCAL, FAKE_IP))
        .await
        .expect("open");
    handshake_via(Ipv4Addr::LOCALHOST, 22070, FAKE_IP).await;
    let client = UdpSocket::bind((LOCAL, 0)).await.expect("client");
    client.send_to(&ping(1), (LOCAL, 22071)).await.expect("ping");
    recv(&wolf.video, "the ping").await;
    drop(s);
    assert_eq!(relay.session_count(), 0);
    client.send_to(&ping(2), (LOCAL, 22071)).await.expect("ping");
    settle().await;
    assert_eq!(
        relay.totals().video.drops.unknown_secret,
        1,
        "the route died with its session"
    );
    // The shared ports outlive their sessions: a new one works at once.
    let again = relay
        .open_session(session_of(&wolf, LOCAL, FAKE_IP))
        .await
        .expect("reopen");
    assert_eq!(again.ports().rtsp, 22070);
}

#[tokio::test]
async fn a_ping_with_the_secret_from_a_new_address_is_admitted_as_roaming_and_counted() {
    let wolf = FakeWolf::start().await;
    let relay = shared_relay(22090);
    let s = relay
        .open_session(session_of(&wolf, LOCAL, FAKE_IP))
        .await
        .expect("open");
    handshake_via(Ipv4Addr::LOCALHOST, 22090, FAKE_IP).await;
    let video = SocketAddr::new(LOCAL, 22091);
    let client = UdpSocket::bind((LOCAL, 0)).await.expect("client");
    client.send_to(&ping(1), video).await.expect("ping");
    recv(&wolf.video, "the client's ping").await;
    // Someone else (or the client after its address changed) with the session's payload: the
    // secret is the evidence Wolf itself accepts, so the relay admits it, and says how.
    let elsewhere = UdpSocket::bind(("127.0.0.5", 0)).await.expect("elsewhere");
    elsewhere.send_to(&ping(2), video).await.expect("ping");
    assert_eq!(recv(&wolf.video, "the roaming ping").await.0, ping(2));
    let admissions = s.stats().video.admissions;
    assert_eq!((admissions.client_ip, admissions.ping_secret), (1, 1));
    let metrics = direwolf_core::metrics::Metrics::new();
    metrics.register_collector(direwolf_core::metrics::RelayCollector::new(relay.clone()));
    let text = metrics.render();
    let line = r#"direwolf_relay_admissions_total{stream="video",by="ping_secret"} 1"#;
    assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_unknown_sources_is_counted_and_leaves_a_streaming_session_alone() {
    let wolf = FakeWolf::start().await;
    let relay = shared_relay(22110);
    let s = relay
        .open_session(session_of(&wolf, LOCAL, FAKE_IP))
        .await
        .expect("open");
    handshake_via(Ipv4Addr::LOCALHOST, 22110, FAKE_IP).await;
    let video = SocketAddr::new(LOCAL, 22111);
    let client = UdpSocket::bind((LOCAL, 0)).await.expect("client");
    client.send_to(&ping(1), video).await.expect("ping");
    let (_, upstream) = recv(&wolf.video, "the client's ping").await;

    // 64 sources × 500 datagrams: wrong payloads, legacy pings and garbage, from addresses no
    // session has.
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        for source in 0..64u8 {
            let socket = UdpSocket::bind((Ipv4Addr::new(127, 0, 1, source), 0))
                .await
                .expect("flood socket");
            for i in 0..500u32 {
                let datagram = match i % 3 {
                    0 => ping_with(b"0123456789abcdef", i),
                    1 => b"PING".to_vec(),
                    _ => vec![source; 300],
                };
                if socket.send_to(&datagram, video).await.is_ok() {
                    sent += 1;
                }
            }
            tokio::task::yield_now().await;
        }
        sent
    });
    // Meanwhile the session streams: its pings go through and its RTP comes back.
    let mut seq = 2;
    while !flood.is_finished() {
        client.send_to(&ping(seq), video).await.expect("ping");
        wolf.video.send_to(&[7; 1200], upstream).await.expect("rtp");
        let (rtp, _) = recv(&client, "RTP during the flood").await;
        assert_eq!(rtp, vec![7; 1200]);
        seq += 1;
    }
    let sent = flood.await.expect("flood task");
    settle().await;
    let drops = relay.totals().video.drops;
    let dropped = drops.unknown_secret + drops.unknown_source + drops.ambiguous_source;
    assert!(dropped > 0 && dropped <= sent, "{dropped} of {sent} counted");
    assert_eq!(drops.ambiguous_source, 0);
    let video_stats = s.stats().video;
    assert_eq!(video_stats.mappings_active, 1, "no flood source got a mapping");
    assert!(video_stats.to_wolf_packets <= u64::from(seq - 1));
    // Everything that reached Wolf is the client's (the kernel drops some of its pings too when
    // the flood fills the shared socket's buffer).
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = wolf.video.try_recv_from(&mut buf) {
        assert_eq!(
            &buf[..16],
            SECRET,
            "only the client's pings reach Wolf: {:?}",
            &buf[..n]
        );
    }
}

#[tokio::test]
async fn slow_connections_of_one_address_cannot_hold_the_shared_rtsp_port() {
    use tokio::io::AsyncReadExt;
    let wolf = FakeWolf::start().await;
    let relay = shared_relay(22130);
    let other = Ipv4Addr::new(127, 0, 0, 6);
    let _s = relay
        .open_session(session_of(&wolf, IpAddr::V4(other), FAKE_IP))
        .await
        .expect("open");
    // Eight connections that never send a request: one address's whole allowance.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            timeout(WAIT, tokio::net::TcpStream::connect((LOCAL, 22130)))
                .await
                .expect("connect in time")
                .expect("connect"),
        );
    }
    settle().await;
    // A ninth from that address is closed at once, unanswered.
    let mut ninth = timeout(WAIT, tokio::net::TcpStream::connect((LOCAL, 22130)))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, ninth.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another address is served meanwhile.
    let options = format!("OPTIONS rtsp://{FAKE_IP}:22130 RTSP/1.0\r\nCSeq: 1\r\nHost: {FAKE_IP}\r\n\r\n");
    assert!(
        rtsp_from(other, 22130, &options)
            .await
            .starts_with("RTSP/1.0 200")
    );
    assert_eq!(relay.totals().rtsp.rejected_connection_limit, 1);
    drop(held);
}
