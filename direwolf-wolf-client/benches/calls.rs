//! Calls per second over the unix socket: the typed client versus raw hyper requests, same request
//! (`GET /api/v1/sessions`), same socket, same fake Wolf, same run, interleaved rounds.
//!
//! Usage: `cargo bench -p direwolf-wolf-client --features fake --bench calls`

use std::time::{Duration, Instant};

use bytes::Bytes;
use direwolf_wolf_client::WolfVersion;
use direwolf_wolf_client::fake::FakeWolf;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const ROUNDS: usize = 10;
const CALLS: usize = 2000;

async fn raw_call(path: &std::path::Path) -> usize {
    let io = tokio::net::UnixStream::connect(path).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get("/api/v1/sessions")
        .header(http::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    body.len()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let wolf = FakeWolf::builder()
            .version(WolfVersion::V6)
            .unix(dir.path().join("wolf.sock"))
            .start()
            .await
            .expect("fake wolf");
        wolf.add_app(FakeWolf::sample_app(1u32, "App"));
        let client = wolf.client().expect("client");
        // One session so the body is a realistic list, parsed by the client.
        let add = direwolf_wolf_client::types::AddSessionRequest {
            client_ip: "203.0.113.7".into(),
            aes_key: "773448F67992470C5C62848D361E1025".into(),
            aes_iv: "1311662065".into(),
            rtsp_fake_ip: "10.96.12.34".into(),
            video_width: 1920,
            video_height: 1080,
            video_refresh_rate: 60,
            audio_channel_count: 2,
            app_id: None,
            client_id: None,
            client_settings: None,
        };
        client.add_session(&add).await.expect("add session");
        let path = wolf.socket_path().expect("unix").to_path_buf();
        for _ in 0..200 {
            client.sessions().await.expect("warm-up client");
            raw_call(&path).await;
        }
        let (mut t_client, mut t_raw) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            // Alternate which side goes first so drift in machine load hits both equally.
            for side in [round % 2, 1 - round % 2] {
                let t = Instant::now();
                if side == 0 {
                    for _ in 0..CALLS {
                        let s = client.sessions().await.expect("client call");
                        std::hint::black_box(s);
                    }
                    t_client += t.elapsed();
                } else {
                    for _ in 0..CALLS {
                        std::hint::black_box(raw_call(&path).await);
                    }
                    t_raw += t.elapsed();
                }
            }
        }
        let n = (ROUNDS * CALLS) as f64;
        let client_rate = n / t_client.as_secs_f64();
        let raw_rate = n / t_raw.as_secs_f64();
        println!("unix socket GET /api/v1/sessions, {ROUNDS} interleaved rounds x {CALLS} sequential calls");
        println!("  raw hyper (baseline): {raw_rate:>10.0} calls/s");
        println!("  WolfClient::sessions: {client_rate:>10.0} calls/s");
        println!(
            "  ratio client/raw:     {:>10.3} (target >= 0.9)",
            client_rate / raw_rate
        );
    });
}
