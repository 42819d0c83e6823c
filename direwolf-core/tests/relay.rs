//! Integration tests of `direwolf_core::relay` on 127.0.0.1 against a fake Wolf written here: a
//! tiny RTSP responder with Wolf V6's SETUP answers and UDP sockets that answer pings.

use std::net::SocketAddr;
use std::time::Duration;

use direwolf_core::StreamPorts;
use direwolf_core::relay::{PortAllocError, Relay, RelayError, StreamKind};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

mod relay_support;

use relay_support::*;

#[tokio::test]
async fn rtsp_handshake_is_rewritten_and_closed() {
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21000..=21039)).expect("relay");
    let s = relay
        .open_session(session(&wolf, LOCAL))
        .await
        .expect("open session");
    let port = s.ports().rtsp;

    let options = format!(
        "OPTIONS rtsp://0.0.0.0:{port} RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\n\r\n"
    );
    let answer = rtsp(port, &options, true).await;
    assert_eq!(answer, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
    let describe = format!(
        "DESCRIBE rtsp://203.0.113.9:{port} RTSP/1.0\r\nCSeq: 2\r\nX-GS-ClientVersion: 14\r\nHost: 203.0.113.9\r\nAccept: application/sdp\r\n\r\n"
    );
    let answer = rtsp(port, &describe, false).await;
    assert!(answer.ends_with("a=x-ss-general.featureFlags: 3\r\n"), "{answer}");

    let (audio, video, control) = handshake(&s).await;
    assert_eq!(
        (video, audio, control),
        (s.ports().video, s.ports().audio, s.ports().control)
    );
    assert_eq!(
        s.wolf_udp_addr(StreamKind::Audio),
        wolf.audio.local_addr().expect("a")
    );
    assert_eq!(
        s.wolf_udp_addr(StreamKind::Video),
        wolf.video.local_addr().expect("a")
    );
    assert_eq!(
        s.wolf_udp_addr(StreamKind::Control),
        wolf.control.local_addr().expect("a")
    );
    assert_eq!(s.secrets().ping_payload, Some(*SECRET));
    assert_eq!(s.secrets().connect_data, Some(CONNECT_DATA));

    let body = "v=0\r\na=x-nv-video[0].clientViewportWd:1920 \r\n";
    let announce = format!(
        "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\nSession: DEADBEEFCAFE\r\nContent-type: application/sdp\r\nContent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        rtsp(port, &announce, true).await,
        "RTSP/1.0 200 OK\r\nCSeq: 6\r\n\r\n"
    );

    let seen = wolf.requests();
    assert_eq!(seen.len(), 6);
    assert!(
        seen[0].starts_with(&format!(
            "OPTIONS rtsp://10.99.0.7:{port} RTSP/1.0\r\nCSeq: 1\r\n"
        )),
        "{}",
        seen[0]
    );
    assert!(seen[1].starts_with(&format!(
        "DESCRIBE rtsp://10.99.0.7:{port} RTSP/1.0\r\nCSeq: 2\r\n"
    )));
    for r in &seen {
        assert!(r.contains("\r\nHost: 10.99.0.7\r\n"), "{r}");
        assert!(!r.contains("0.0.0.0") && !r.contains("203.0.113.9"), "{r}");
    }
    assert!(seen[5].ends_with(&format!("\r\n\r\n{body}")));
    let st = s.stats();
    assert_eq!(st.rtsp.relayed, 6);
    assert_eq!(st.rtsp.rejected_requests, 0);
}

#[tokio::test]
async fn pings_reach_wolf_and_media_returns_from_the_public_port() {
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21040..=21079)).expect("relay");
    let s = relay
        .open_session(session(&wolf, LOCAL))
        .await
        .expect("open session");
    handshake(&s).await;
    let public_video = SocketAddr::new(LOCAL, s.ports().video);

    let client = UdpSocket::bind((LOCAL, 0)).await.expect("client socket");
    client.send_to(&ping(1), public_video).await.expect("send ping");
    let (got, relay_upstream) = recv(&wolf.video, "the ping at Wolf's video port").await;
    assert_eq!(got, ping(1));
    // Wolf streams to the ping's source, from its ping socket.
    for seq in 0..50u8 {
        wolf.video
            .send_to(&[seq; 1400], relay_upstream)
            .await
            .expect("rtp");
    }
    for seq in 0..50u8 {
        let (rtp, from) = recv(&client, "RTP at the client").await;
        assert_eq!(
            from, public_video,
            "media must come from the public port the client pinged"
        );
        assert_eq!(rtp, vec![seq; 1400]);
    }
    // Control: bidirectional through the same mapping.
    let public_control = SocketAddr::new(LOCAL, s.ports().control);
    client
        .send_to(&enet_connect(CONNECT_DATA), public_control)
        .await
        .expect("connect");
    let (_, control_upstream) = recv(&wolf.control, "ENet CONNECT at Wolf").await;
    wolf.control
        .send_to(b"verify-connect", control_upstream)
        .await
        .expect("send");
    let (reply, from) = recv(&client, "the control reply").await;
    assert_eq!((reply.as_slice(), from), (&b"verify-connect"[..], public_control));

    stats_settle().await;
    let st = s.stats();
    assert_eq!(st.video.to_wolf_packets, 1);
    assert_eq!(st.video.to_wolf_bytes, 20);
    assert_eq!(st.video.to_client_packets, 50);
    assert_eq!(st.video.to_client_bytes, 50 * 1400);
    assert_eq!(st.video.mappings_active, 1);
    assert_eq!(st.control.to_client_packets, 1);
    assert_eq!(relay.stats().len(), 1);
    assert_eq!(
        relay.totals().video,
        st.video,
        "one open session: the totals are its own"
    );

    // A closed session's counters stay in the totals (they feed monitoring counters).
    s.close().await;
    let totals = relay.totals();
    assert_eq!(relay.stats().len(), 0);
    assert_eq!(totals.sessions_closed, 1);
    assert_eq!(totals.video.to_client_packets, 50);
    assert_eq!(totals.control.to_client_packets, 1);
    assert_eq!(totals.video.mappings_active, 0, "a closed session maps nothing");

    let metrics = direwolf_core::metrics::Metrics::new();
    metrics.register_collector(direwolf_core::metrics::RelayCollector::new(relay.clone()));
    let text = metrics.render();
    for line in [
        r#"direwolf_relay_packets_total{stream="video",direction="to_client"} 50"#,
        r#"direwolf_relay_bytes_total{stream="video",direction="to_wolf"} 20"#,
        r#"direwolf_relay_drops_total{stream="audio",reason="not_admitted"} 0"#,
        r#"direwolf_relay_mappings_active{stream="video"} 0"#,
        "direwolf_relay_sessions 0",
        "direwolf_relay_sessions_closed_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn strangers_and_garbage_are_dropped_until_they_prove_the_secret() {
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21080..=21119)).expect("relay");
    // The session's client is elsewhere: 127.0.0.1 is a stranger.
    let s = relay
        .open_session(session(&wolf, "198.51.100.7".parse().expect("ip")))
        .await
        .expect("open");
    let public_audio = SocketAddr::new(LOCAL, s.ports().audio);
    let public_control = SocketAddr::new(LOCAL, s.ports().control);
    let stranger = UdpSocket::bind((LOCAL, 0)).await.expect("socket");

    // Before SETUP no secret is known: even a well-formed ping is refused.
    stranger.send_to(&ping(1), public_audio).await.expect("send");
    handshake(&s).await;
    stranger.send_to(b"garbage", public_audio).await.expect("send");
    stranger.send_to(b"PING", public_audio).await.expect("send");
    stranger
        .send_to(&enet_connect(CONNECT_DATA + 1), public_control)
        .await
        .expect("send");
    stats_settle().await;
    let st = s.stats();
    assert_eq!(st.audio.drops.not_admitted, 3);
    assert_eq!(st.control.drops.not_admitted, 1);
    assert_eq!(st.audio.mappings_created, 0);

    // The secret admits the endpoint, and then anything from it is forwarded.
    stranger.send_to(&ping(2), public_audio).await.expect("send");
    assert_eq!(recv(&wolf.audio, "the admitted ping").await.0, ping(2));
    stranger.send_to(b"PING", public_audio).await.expect("send");
    assert_eq!(
        recv(&wolf.audio, "a packet from the admitted endpoint").await.0,
        b"PING"
    );
    stranger
        .send_to(&enet_connect(CONNECT_DATA), public_control)
        .await
        .expect("send");
    assert_eq!(
        recv(&wolf.control, "the admitted CONNECT").await.0,
        enet_connect(CONNECT_DATA)
    );
    let st = s.stats();
    assert_eq!(st.audio.mappings_created, 1);
    assert_eq!(st.control.mappings_created, 1);
    assert_eq!(st.audio.drops.not_admitted, 3);
}

#[tokio::test]
async fn mappings_are_bounded_and_expire_when_idle() {
    let wolf = FakeWolf::start().await;
    let mut cfg = config(21120..=21159);
    cfg.max_mappings_per_stream = 2;
    cfg.udp_idle_timeout = Duration::from_millis(300);
    let relay = Relay::new(cfg).expect("relay");
    let s = relay.open_session(session(&wolf, LOCAL)).await.expect("open");
    handshake(&s).await;
    let public_video = SocketAddr::new(LOCAL, s.ports().video);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(UdpSocket::bind((LOCAL, 0)).await.expect("socket"));
    }
    for (i, c) in clients.iter().enumerate() {
        c.send_to(&ping(i as u32 + 1), public_video).await.expect("send");
    }
    recv(&wolf.video, "first ping").await;
    recv(&wolf.video, "second ping").await;
    stats_settle().await;
    let st = s.stats().video;
    assert_eq!(
        (st.mappings_created, st.mappings_active, st.drops.mapping_limit),
        (2, 2, 1)
    );

    // After the idle timeout both mappings go and the third client gets in.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let st = s.stats().video;
    assert_eq!((st.mappings_expired, st.mappings_active), (2, 0));
    clients[2].send_to(&ping(9), public_video).await.expect("send");
    assert_eq!(recv(&wolf.video, "the third client's ping").await.0, ping(9));
    assert_eq!(s.stats().video.mappings_active, 1);
}

#[tokio::test]
async fn rtsp_garbage_and_dead_wolf_close_the_connection_and_count() {
    let wolf = FakeWolf::start().await;
    let mut cfg = config(21160..=21199);
    cfg.rtsp.request_timeout = Duration::from_millis(300);
    cfg.rtsp.max_request_header_bytes = 1024;
    let relay = Relay::new(cfg).expect("relay");
    let s = relay.open_session(session(&wolf, LOCAL)).await.expect("open");
    let port = s.ports().rtsp;
    assert_eq!(rtsp(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await, "");
    assert_eq!(rtsp(port, &"A".repeat(5000), false).await, "");
    // A client that never finishes its request is cut off by the request timeout.
    assert_eq!(
        rtsp(port, "OPTIONS rtsp://0.0.0.0:1 RTSP/1.0\r\nCSeq: 1\r\n", false).await,
        ""
    );
    assert!(wolf.requests().is_empty(), "nothing reaches Wolf");
    assert_eq!(s.stats().rtsp.rejected_requests, 3);

    // Wolf not listening: the client sees a close, the relay counts.
    let dead = TcpListener::bind((LOCAL, 0))
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut cfg = session(&wolf, LOCAL);
    cfg.wolf_rtsp = dead;
    let s2 = relay.open_session(cfg).await.expect("open");
    let options = "OPTIONS rtsp://0.0.0.0:1 RTSP/1.0\r\nCSeq: 1\r\nHost: 0.0.0.0\r\n\r\n";
    assert_eq!(rtsp(s2.ports().rtsp, options, false).await, "");
    assert_eq!(s2.stats().rtsp.upstream_errors, 1);
}

async fn ports_are_free(p: StreamPorts) -> bool {
    TcpListener::bind((LOCAL, p.rtsp)).await.is_ok()
        && UdpSocket::bind((LOCAL, p.video)).await.is_ok()
        && UdpSocket::bind((LOCAL, p.audio)).await.is_ok()
        && UdpSocket::bind((LOCAL, p.control)).await.is_ok()
}

#[tokio::test]
async fn close_frees_ports_and_exhaustion_is_typed() {
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21200..=21203)).expect("relay with one port set");
    let s = relay.open_session(session(&wolf, LOCAL)).await.expect("open");
    let ports = s.ports();
    assert!(!ports_are_free(ports).await, "the session holds its ports");
    match relay.open_session(session(&wolf, LOCAL)).await {
        Err(RelayError::Ports(PortAllocError::Exhausted { capacity: 1, .. })) => {}
        other => panic!("expected exhaustion, got {other:?}"),
    }
    // Traffic in flight does not keep the ports.
    let client = UdpSocket::bind((LOCAL, 0)).await.expect("socket");
    client
        .send_to(&ping(1), (LOCAL, ports.video))
        .await
        .expect("send");
    stats_settle().await;
    s.close().await;
    assert!(
        ports_are_free(ports).await,
        "close() must release every public socket"
    );
    assert_eq!(relay.allocator().in_use(), 0);
    assert_eq!(relay.session_count(), 0);
    let again = relay
        .open_session(session(&wolf, LOCAL))
        .await
        .expect("the set is free again");
    assert_eq!(again.ports(), ports);
    drop(again);
    assert_eq!(relay.allocator().in_use(), 0, "drop frees the lease");

    relay.shutdown();
    assert!(matches!(
        relay.open_session(session(&wolf, LOCAL)).await,
        Err(RelayError::ShutDown)
    ));
}

/// The datagram number `seq` of flow `flow` in the batching tests: mixed sizes (runs of 1,400,
/// shorter and longer ones, a 1-byte and an empty one), contents derived from both numbers.
fn burst_datagram(flow: u8, seq: u32) -> Vec<u8> {
    let len = match seq % 13 {
        4 => 700,
        7 => 1,
        9..=10 => 1200,
        11 => 9000,
        12 => 0,
        _ => 1400,
    };
    let mut d: Vec<u8> = (0..len).map(|i| (i as u32 + seq) as u8 ^ flow).collect();
    if len >= 5 {
        d[0] = flow;
        d[1..5].copy_from_slice(&seq.to_be_bytes());
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_mixed_sizes_arrive_intact_and_in_order_per_flow() {
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21240..=21279)).expect("relay");
    let s = relay
        .open_session(session(&wolf, LOCAL))
        .await
        .expect("open session");
    handshake(&s).await;
    let public_video = SocketAddr::new(LOCAL, s.ports().video);
    // Two clients, two mappings: each flow must stay whole and ordered.
    let mut clients = Vec::new();
    let mut upstreams = Vec::new();
    for seq in 0..2u32 {
        let client = UdpSocket::bind((LOCAL, 0)).await.expect("client socket");
        client.send_to(&ping(seq), public_video).await.expect("ping");
        let (_, upstream) = recv(&wolf.video, "a ping at Wolf").await;
        clients.push(client);
        upstreams.push(upstream);
    }
    const ROUNDS: u32 = 30;
    const BURST: u32 = 39;
    let mut buf = vec![0u8; 65536];
    let mut expected_bytes = 0u64;
    for round in 0..ROUNDS {
        // A back-to-back burst per round, interleaved between the flows, small enough for the
        // default socket buffers; then every datagram must arrive before the next round.
        for seq in round * BURST..(round + 1) * BURST {
            for (flow, upstream) in upstreams.iter().enumerate() {
                let d = burst_datagram(flow as u8, seq);
                expected_bytes += d.len() as u64;
                wolf.video.send_to(&d, upstream).await.expect("burst send");
            }
        }
        for (flow, client) in clients.iter().enumerate() {
            for seq in round * BURST..(round + 1) * BURST {
                let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("flow {flow}: datagram {seq} lost (timed out)"))
                    .expect("recv");
                assert_eq!(from, public_video);
                assert!(
                    buf[..n] == burst_datagram(flow as u8, seq)[..],
                    "flow {flow}: datagram {seq} reordered, merged or damaged ({n} bytes)"
                );
            }
        }
    }
    stats_settle().await;
    let st = s.stats();
    assert_eq!(st.video.to_client_packets, u64::from(2 * ROUNDS * BURST));
    assert_eq!(st.video.to_client_bytes, expected_bytes);
    assert_eq!(st.video.drops.send_to_client, 0);
    assert_eq!(st.video.drops.recv_errors, 0);
}

#[tokio::test]
async fn a_gso_datagram_from_wolf_reaches_the_client_as_its_segments() {
    use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
    let wolf = FakeWolf::start().await;
    let relay = Relay::new(config(21280..=21319)).expect("relay");
    let s = relay
        .open_session(session(&wolf, LOCAL))
        .await
        .expect("open session");
    handshake(&s).await;
    let public_video = SocketAddr::new(LOCAL, s.ports().video);
    let client = UdpSocket::bind((LOCAL, 0)).await.expect("client socket");
    client.send_to(&ping(1), public_video).await.expect("ping");
    let (_, upstream) = recv(&wolf.video, "the ping at Wolf").await;

    // Wolf (or a GSO-capable sender in front of it) sends 5 × 1,000 bytes + 300 as one GSO send;
    // on loopback the relay's GRO-enabled socket receives it as one buffer with a stride.
    let state = UdpSocketState::new(UdpSockRef::from(&*wolf.video)).expect("quinn-udp state");
    assert!(
        state.max_gso_segments() > 1,
        "this kernel offers no UDP GSO (Linux ≥ 4.18 does); the test needs it"
    );
    let contents: Vec<u8> = (0..5300u32).map(|i| (i / 1000) as u8 + (i % 7) as u8).collect();
    let transmit = Transmit {
        destination: upstream,
        ecn: None,
        contents: &contents,
        segment_size: Some(1000),
        src_ip: None,
    };
    wolf.video
        .async_io(tokio::io::Interest::WRITABLE, || {
            state.try_send(UdpSockRef::from(&*wolf.video), &transmit)
        })
        .await
        .expect("gso send");
    for (i, want) in contents.chunks(1000).enumerate() {
        let (got, from) = recv(&client, &format!("segment {i} at the client")).await;
        assert_eq!(from, public_video);
        assert!(
            got == want,
            "segment {i}: {} bytes, wrong contents or order",
            got.len()
        );
    }
    // A plain datagram after it still arrives on its own.
    wolf.video.send_to(b"tail", upstream).await.expect("send");
    assert_eq!(recv(&client, "the trailing datagram").await.0, b"tail");
    stats_settle().await;
    let st = s.stats();
    assert_eq!(st.video.to_client_packets, 7);
    assert_eq!(st.video.to_client_bytes, 5304);
}
