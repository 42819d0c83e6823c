#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use direwolf_wolf_client::WolfVersion;
use direwolf_wolf_client::fake::FakeWolf;
use direwolf_wolf_client::ids::AppId;
use direwolf_wolf_client::secret::Secret;
use direwolf_wolf_client::types::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CERT: &str = "A VERY VALID CERTIFICATE";

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after 10 s: {what} never completed (hang)"))
}

pub async fn fake(version: WolfVersion) -> (FakeWolf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wolf = FakeWolf::builder()
        .version(version)
        .unix(dir.path().join("wolf.sock"))
        .keepalive_interval(Duration::from_millis(50))
        .start()
        .await
        .expect("fake wolf starts");
    (wolf, dir)
}

/// Sends raw bytes to the fake's socket and reads until it closes.
pub async fn raw(wolf: &FakeWolf, request: &[u8]) -> Vec<u8> {
    within("raw exchange with the fake", async {
        let mut s = tokio::net::UnixStream::connect(wolf.socket_path().expect("unix"))
            .await
            .expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    })
    .await
}

pub async fn raw_post(wolf: &FakeWolf, path: &str, body: &str) -> String {
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    String::from_utf8(raw(wolf, req.as_bytes()).await).expect("utf8")
}

pub async fn raw_get(wolf: &FakeWolf, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    String::from_utf8(raw(wolf, req.as_bytes()).await).expect("utf8")
}

pub fn ok(body: &str) -> String {
    format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

pub fn status(code: u16, body: &str) -> String {
    format!(
        "HTTP/1.0 {code} OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn add_request() -> AddSessionRequest {
    AddSessionRequest {
        client_ip: "203.0.113.7".into(),
        aes_key: Secret::new("773448F67992470C5C62848D361E1025".into()),
        aes_iv: Secret::new("1311662065".into()),
        rtsp_fake_ip: "10.96.12.34".into(),
        video_width: 1920,
        video_height: 1080,
        video_refresh_rate: 60,
        audio_channel_count: 2,
        app_id: None,
        client_id: None,
        client_settings: None,
    }
}

pub fn app(id: u32) -> App {
    FakeWolf::sample_app(AppId::from(id), "Firefox")
}

pub fn start_request(id: direwolf_wolf_client::ids::SessionId) -> StartSessionRequest {
    StartSessionRequest {
        session_id: id,
        video_session: VideoSession {
            display_mode: DisplayMode {
                width: 1920,
                height: 1080,
                refresh_rate: 60,
            },
            gst_pipeline: "videotestsrc".into(),
            render_node: String::new(),
            session_id: id,
            port: 48100,
            timeout_ms: 7000,
            wait_for_ping: true,
            packet_size: 1392,
            frames_with_invalid_ref_threshold: 0,
            fec_percentage: 20,
            min_required_fec_packets: 2,
            bitrate_kbps: 15000,
            slices_per_frame: 1,
            color_range: ColorRange::Mpeg,
            color_space: ColorSpace::Bt709,
            client_ip: "203.0.113.7".into(),
            rtp_secret_payload: Some(Secret::new([7; 16])),
        },
        audio_session: AudioSession {
            gst_pipeline: "audiotestsrc".into(),
            session_id: id,
            encrypt_audio: true,
            aes_key: Secret::new("773448F67992470C5C62848D361E1025".into()),
            aes_iv: Secret::new("1311662065".into()),
            port: 48200,
            wait_for_ping: true,
            client_ip: "203.0.113.7".into(),
            rtp_secret_payload: Some(Secret::new([9; 16])),
            packet_duration: 5,
            audio_mode: AudioMode {
                channels: 2,
                streams: 1,
                coupled_streams: 1,
                speakers: vec![Speaker::FrontLeft, Speaker::FrontRight],
                bitrate: 96000,
                sample_rate: 48000,
            },
        },
    }
}

pub fn lobby_request(pin: Option<Vec<u8>>, multi_user: bool) -> CreateLobbyRequest {
    CreateLobbyRequest {
        profile_id: "user".into(),
        name: "Party".into(),
        icon_png_path: None,
        multi_user,
        pin: pin.map(Secret::new),
        stop_when_everyone_leaves: true,
        video_settings: VideoSettings {
            width: 1920,
            height: 1080,
            refresh_rate: 60,
            wayland_render_node: "/dev/dri/renderD128".into(),
            runner_render_node: "/dev/dri/renderD128".into(),
            video_producer_buffer_caps: "video/x-raw".into(),
        },
        audio_settings: AudioSettings { channel_count: 2 },
        client_settings: None,
        runner_state_folder: "/state".into(),
        runner: Runner::Process {
            run_cmd: "sleep 1".into(),
        },
    }
}
