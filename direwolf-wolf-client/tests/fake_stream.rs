//! The fake Wolf's streaming side: RTSP as Wolf V6 answers it, pings binding the stream, RTP back
//! from the ping socket, ENet CONNECT verified.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use direwolf_wolf_client::fake::FakeWolf;
use direwolf_wolf_client::fake::stream::StreamConfig;
use direwolf_wolf_client::types::AddSessionRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

async fn rtsp(addr: SocketAddr, request: &str) -> String {
    let mut s = timeout(T, TcpStream::connect(addr))
        .await
        .expect("rtsp connect timed out")
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the fake did not close the RTSP connection after answering")
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn header<'a>(resp: &'a str, name: &str) -> &'a str {
    resp.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {resp:?}"))
}

fn session(fake_ip: &str) -> AddSessionRequest {
    AddSessionRequest {
        client_ip: "127.0.0.1".into(),
        aes_key: "773448F67992470C5C62848D361E1025".into(),
        aes_iv: "1311662065".into(),
        rtsp_fake_ip: fake_ip.into(),
        video_width: 1280,
        video_height: 720,
        video_refresh_rate: 60,
        audio_channel_count: 2,
        app_id: None,
        client_id: None,
        client_settings: None,
    }
}

#[tokio::test]
async fn rtsp_handshake_ping_and_rtp() {
    let dir = tempfile::tempdir().unwrap();
    let wolf = FakeWolf::builder()
        .unix(dir.path().join("wolf.sock"))
        .stream(StreamConfig::ephemeral("127.0.0.1".parse().unwrap()))
        .start()
        .await
        .unwrap();
    wolf.add_app(FakeWolf::sample_app("1", "Desktop"));
    let ports = wolf.stream_ports().unwrap();
    let client = wolf.client().unwrap();

    // No session yet: not found.
    let r = rtsp(
        ports.rtsp,
        "OPTIONS rtsp://10.9.9.9:48010 RTSP/1.0\r\nCSeq: 1\r\nHost: 10.9.9.9\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 404"), "{r}");
    // A DNS name as host: Wolf's grammar fails.
    let r = rtsp(
        ports.rtsp,
        "OPTIONS rtsp://wolf.local:48010 RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 400"), "{r}");

    let id = client.add_session(&session("10.1.2.3")).await.unwrap();
    let r = rtsp(ports.rtsp, "OPTIONS rtsp://10.1.2.3:48010 RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 10.1.2.3\r\n\r\n").await;
    assert_eq!(r, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
    let r = rtsp(
        ports.rtsp,
        "DESCRIBE rtsp://10.1.2.3:48010 RTSP/1.0\r\nCSeq: 2\r\nHost: 10.1.2.3\r\n\r\n",
    )
    .await;
    assert!(
        r.contains("surround-params=21101") && r.contains("a=x-ss-general.featureFlags: 3"),
        "{r}"
    );
    // Host 0.0.0.0: falls back to the TCP source IP (the session's client_ip is 127.0.0.1).
    let audio = rtsp(
        ports.rtsp,
        "SETUP streamid=audio/0/0 RTSP/1.0\r\nCSeq: 3\r\nHost: 0.0.0.0\r\n\r\n",
    )
    .await;
    let names: Vec<&str> = audio
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        names,
        ["CSeq", "Session", "Transport", "X-SS-Ping-Payload"],
        "{audio}"
    );
    assert_eq!(header(&audio, "Session"), "DEADBEEFCAFE;timeout = 90");
    assert_eq!(
        header(&audio, "Transport"),
        format!("server_port={}", ports.audio.port())
    );
    let ping = header(&audio, "X-SS-Ping-Payload").to_owned();
    assert!(
        ping.len() == 16 && ping.bytes().all(|b| (33..=126).contains(&b)),
        "{ping:?}"
    );
    let video = rtsp(
        ports.rtsp,
        "SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 4\r\nHost: 10.1.2.3\r\n\r\n",
    )
    .await;
    assert_eq!(header(&video, "X-SS-Ping-Payload"), ping);
    let control = rtsp(
        ports.rtsp,
        "SETUP streamid=control/13/0 RTSP/1.0\r\nCSeq: 5\r\nHost: 10.1.2.3\r\n\r\n",
    )
    .await;
    let connect_data: u32 = header(&control, "X-SS-Connect-Data").parse().unwrap();
    let body = "v=0\r\na=x-nv-video[0].clientViewportWd:1280 \r\na=x-nv-general.featureFlags:167 \r\n";
    let r = rtsp(
        ports.rtsp,
        &format!("ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nHost: 10.1.2.3\r\nContent-length: {}\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 200 OK"), "{r}");

    // A wrong secret is ignored; the right one binds the stream and RTP comes back from the port.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut wrong = b"0123456789abcdef".to_vec();
    wrong.extend_from_slice(&1u32.to_be_bytes());
    sock.send_to(&wrong, ports.audio).await.unwrap();
    let mut good = ping.as_bytes().to_vec();
    good.extend_from_slice(&1u32.to_be_bytes());
    sock.send_to(&good, ports.audio).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("no RTP after a good ping")
        .unwrap();
    assert_eq!(from, ports.audio);
    assert!(
        n >= 12 && buf[0] == 0x80 && buf[1] == 97,
        "not RTP-looking: {:?}",
        &buf[..12]
    );

    // ENet CONNECT with the connect data is verified.
    let enet = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut p = Vec::new();
    p.extend_from_slice(&(0x0FFFu16 | 0x8000).to_be_bytes());
    p.extend_from_slice(&7u16.to_be_bytes());
    p.extend_from_slice(&[0x82, 0xFF, 0, 1, 0, 0, 0xFF, 0xFF]);
    for v in [1392u32, 32768, 0x30, 0, 0, 5000, 2, 2, 99, connect_data] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    enet.send_to(&p, ports.control).await.unwrap();
    let (n, _) = timeout(T, enet.recv_from(&mut buf))
        .await
        .expect("no VERIFY_CONNECT")
        .unwrap();
    assert_eq!(n, 4 + 8 + 44);
    assert_eq!(buf[12] & 0x0F, 3);

    let report = wolf.stream_report();
    assert_eq!(report.unmatched_pings, 1);
    assert_eq!(report.rtsp_rejected.len(), 2, "{:?}", report.rtsp_rejected);
    let rec = &report.sessions[0];
    assert_eq!(rec.session_id, id.to_string());
    assert_eq!(rec.rtsp_requests.len(), 6, "{:?}", rec.rtsp_requests);
    assert!(rec.announced);
    assert_eq!((rec.audio_pings, rec.video_pings), (1, 0));
    assert_eq!(rec.audio_ping_sources, vec![sock.local_addr().unwrap()]);
    assert_eq!(rec.audio_rtp_sent, 3);
    assert_eq!(rec.enet_connects, vec![enet.local_addr().unwrap()]);

    // Video: answered (default: every ping). Audio RTP still queued is skipped.
    sock.send_to(&good, ports.video).await.unwrap();
    let mut video = None;
    for _ in 0..10 {
        let (_, from) = timeout(T, sock.recv_from(&mut buf))
            .await
            .expect("no video RTP after a good video ping")
            .unwrap();
        if from == ports.video {
            video = Some(buf[1]);
            break;
        }
    }
    assert_eq!(video, Some(96), "video RTP (payload type 96) from the video port");

    // Once the session is stopped its secret no longer matches.
    client.stop_session(id).await.unwrap();
    sock.send_to(&good, ports.audio).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(wolf.stream_report().unmatched_pings, 2);
}

#[tokio::test]
async fn video_rtp_can_be_limited_to_the_first_pings() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::ephemeral("127.0.0.1".parse().unwrap());
    config.video_rtp_pings = Some(1);
    let wolf = FakeWolf::builder()
        .unix(dir.path().join("wolf.sock"))
        .stream(config)
        .start()
        .await
        .unwrap();
    wolf.add_app(FakeWolf::sample_app("1", "Desktop"));
    let ports = wolf.stream_ports().unwrap();
    wolf.client()
        .unwrap()
        .add_session(&session("10.1.2.4"))
        .await
        .unwrap();
    let setup = rtsp(
        ports.rtsp,
        "SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 1\r\nHost: 10.1.2.4\r\n\r\n",
    )
    .await;
    let mut ping = header(&setup, "X-SS-Ping-Payload").as_bytes().to_vec();
    ping.extend_from_slice(&1u32.to_be_bytes());
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    sock.send_to(&ping, ports.video).await.unwrap();
    timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("the first video ping is answered")
        .unwrap();
    for _ in 0..3 {
        let _ = timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await;
    }
    sock.send_to(&ping, ports.video).await.unwrap();
    assert!(
        timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
            .await
            .is_err(),
        "the second video ping must not be answered"
    );
    let rec = &wolf.stream_report().sessions[0];
    assert_eq!((rec.video_pings, rec.video_rtp_sent), (2, 3));
}
