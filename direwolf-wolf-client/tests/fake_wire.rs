//! The fake's bytes on the wire, checked against the exact bodies Wolf writes
//! (`docs/protocol/wolf-api.md` § HTTP dialect, § The fake Wolf).

mod common;

use common::*;
use direwolf_wolf_client::WolfVersion;
use direwolf_wolf_client::fake::{CHUNKED_REJECTION, SSE_HEAD};
use direwolf_wolf_client::types::ClientSettings;
use direwolf_wolf_client::types::PartialClientSettings;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn pending_pairs_empty_is_exact() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    assert_eq!(
        raw_get(&wolf, "/api/v1/pair/pending").await,
        ok(r#"{"success":true,"requests":[]}"#)
    );
}

#[tokio::test]
async fn unknown_route_and_other_methods_are_404_with_empty_body() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    assert_eq!(
        raw_get(&wolf, "/api/v1/nope").await,
        "HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        raw_get(&wolf, "/api/v1/sessions/").await,
        "HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n"
    );
    // PATCH is read as GET: the documented PATCH route does not exist.
    let r = raw(&wolf, b"PATCH /api/v1/clients/1/settings HTTP/1.0\r\n\r\n").await;
    assert_eq!(r, b"HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n");
    // PATCH /api/v1/sessions is GET /api/v1/sessions.
    let r = raw(&wolf, b"PATCH /api/v1/sessions HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        String::from_utf8(r).unwrap(),
        ok(r#"{"success":true,"sessions":[]}"#)
    );
    // GET on a POST route is unknown.
    assert_eq!(
        raw_get(&wolf, "/api/v1/sessions/add").await,
        "HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n"
    );
}

#[tokio::test]
async fn chunked_requests_are_refused_with_the_52_byte_text() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    assert_eq!(CHUNKED_REJECTION.len(), 52);
    let r = raw(
        &wolf,
        b"POST /api/v1/sessions/add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(
        String::from_utf8(r).unwrap(),
        "HTTP/1.0 500 OK\r\nContent-Length: 52\r\n\r\nChunked encoding not supported, use HTTP/1.0 instead"
    );
}

#[tokio::test]
async fn clients_list_has_floats_widened_like_wolf() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let id = wolf.add_paired_client(CERT);
    assert_eq!(id.get(), 10_594_003_729_173_467_913);
    let client = wolf.client().unwrap();
    let settings = PartialClientSettings {
        h_scroll_acceleration: Some(10.2),
        ..Default::default()
    };
    within(
        "update settings",
        client.update_client_settings(&direwolf_wolf_client::types::UpdateClientSettingsRequest {
            client_id: id,
            app_state_folder: Some("some/folder".into()),
            settings: Some(settings),
        }),
    )
    .await
    .unwrap();
    let body = r#"{"success":true,"clients":[{"client_id":"10594003729173467913","app_state_folder":"some/folder","settings":{"run_uid":1000,"run_gid":1000,"controllers_override":[],"mouse_acceleration":1.0,"v_scroll_acceleration":1.0,"h_scroll_acceleration":10.199999809265137,"motion_controller_override":"AUTO"}}]}"#;
    assert_eq!(raw_get(&wolf, "/api/v1/clients").await, ok(body));
    let _ = ClientSettings::default();
}

#[tokio::test]
async fn clientless_session_id_and_collision() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let body = r#"{"client_ip":"203.0.113.7","aes_key":"773448F67992470C5C62848D361E1025","aes_iv":"1311662065","rtsp_fake_ip":"10.96.12.34","video_width":1920,"video_height":1080,"video_refresh_rate":60,"audio_channel_count":2}"#;
    assert_eq!(
        raw_post(&wolf, "/api/v1/sessions/add", body).await,
        ok(r#"{"success":true,"session_id":"6142509188972423790"}"#)
    );
    assert_eq!(
        raw_post(&wolf, "/api/v1/sessions/add", body).await,
        ok(r#"{"success":true,"session_id":"6142509188972423790"}"#)
    );
    assert_eq!(wolf.sessions().len(), 2);
    // Lookups by the shared id now fail.
    assert_eq!(
        raw_post(
            &wolf,
            "/api/v1/sessions/pause",
            r#"{"session_id":"6142509188972423790"}"#
        )
        .await,
        status(500, r#"{"success":false,"error":"Invalid session_id"}"#)
    );
    // Wolf ending the session removes both.
    wolf.end_session(direwolf_wolf_client::ids::SessionId::CLIENTLESS);
    assert!(wolf.sessions().is_empty());
}

#[tokio::test]
async fn missing_required_field_is_500_with_error_text() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let r = raw_post(&wolf, "/api/v1/sessions/add", r#"{"aes_key":"x"}"#).await;
    assert_eq!(
        r,
        status(
            500,
            r#"{"success":false,"error":"Field named 'client_ip' not found."}"#
        )
    );
    let r = raw_post(
        &wolf,
        "/api/v1/pair/client",
        r#"{"pair_secret":"AB","pin":"1234","extra":1}"#,
    )
    .await;
    assert_eq!(
        r,
        status(500, r#"{"success":false,"error":"Invalid pair secret"}"#)
    );
}

#[tokio::test]
async fn ids_that_crash_wolf_close_without_answer_and_are_recorded() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    for (path, body) in [
        ("/api/v1/sessions/stop", r#"{"session_id":"abc"}"#),
        ("/api/v1/sessions/pause", r#"{"session_id":""}"#),
        (
            "/api/v1/sessions/input",
            r#"{"session_id":"18446744073709551616","input_packet_hex":"00"}"#,
        ),
        (
            "/api/v1/clients/settings",
            r#"{"client_id":"x","app_state_folder":null,"settings":null}"#,
        ),
        (
            "/api/v1/runners/start",
            r#"{"stop_stream_when_over":true,"runner":{"type":"process","run_cmd":"x"},"session_id":"-1"}"#,
        ),
        (
            "/api/v1/sessions/add",
            r#"{"client_ip":"1","aes_key":"k","aes_iv":"1","rtsp_fake_ip":"1.2.3.4","video_width":1,"video_height":1,"video_refresh_rate":1,"audio_channel_count":2,"client_id":"nope"}"#,
        ),
    ] {
        assert_eq!(
            raw_post(&wolf, path, body).await,
            "",
            "{path} should close without answering"
        );
    }
    assert_eq!(wolf.crashes().len(), 6, "{:?}", wolf.crashes());
    // unpair/client catches the exception instead.
    assert_eq!(
        raw_post(&wolf, "/api/v1/unpair/client", r#"{"client_id":"abc"}"#).await,
        status(500, r#"{"success":false,"error":"stoull"}"#)
    );
    assert_eq!(wolf.crashes().len(), 6);
}

#[tokio::test]
async fn sessions_start_with_unknown_numeric_id_crashes() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let body = serde_json::to_string(&start_request(direwolf_wolf_client::ids::SessionId::new(5))).unwrap();
    assert_eq!(raw_post(&wolf, "/api/v1/sessions/start", &body).await, "");
    assert!(wolf.would_have_crashed());
}

#[tokio::test]
async fn runners_start_success_closes_with_zero_bytes() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let id = wolf.add_paired_client(CERT);
    wolf.add_app(app(1));
    let mut req = add_request();
    req.client_id = Some(id);
    within("add", wolf.client().unwrap().add_session(&req))
        .await
        .unwrap();
    let body = format!(
        r#"{{"stop_stream_when_over":false,"runner":{{"type":"process","run_cmd":"x"}},"session_id":"{id}"}}"#
    );
    assert_eq!(raw_post(&wolf, "/api/v1/runners/start", &body).await, "");
    assert!(!wolf.would_have_crashed());
    let r = raw_post(
        &wolf,
        "/api/v1/runners/start",
        r#"{"stop_stream_when_over":false,"runner":{"type":"process","run_cmd":"x"},"session_id":"1"}"#,
    )
    .await;
    assert_eq!(
        r,
        status(500, r#"{"success":false,"error":"Invalid session_id"}"#)
    );
}

#[tokio::test]
async fn default_profiles_match_wolf_test_output() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    assert_eq!(
        raw_get(&wolf, "/api/v1/profiles").await,
        ok(r#"{"success":true,"profiles":[{"name":"User","id":"user","icon_png_path":"","apps":[]}]}"#)
    );
}

#[tokio::test]
async fn sse_head_events_and_keepalives() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let s = tokio::net::UnixStream::connect(wolf.socket_path().unwrap())
        .await
        .unwrap();
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(b"GET /api/v1/events HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; SSE_HEAD.len()];
    within("sse head", tokio::io::AsyncReadExt::read_exact(&mut r, &mut head))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(head).unwrap(), SSE_HEAD);
    within(
        "subscriber",
        wolf.wait_for_subscribers(1, std::time::Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let mut line = String::new();
    within("keepalive", r.read_line(&mut line)).await.unwrap();
    assert_eq!(line, ":keepalive\n");
    wolf.inject_event(
        "wolf::core::events::IDRRequestEvent",
        &serde_json::json!({"session_id": "42"}),
    );
    let mut got = String::new();
    loop {
        let mut l = String::new();
        within("event lines", r.read_line(&mut l)).await.unwrap();
        if l.starts_with(':') || (l == "\n" && got.is_empty()) {
            continue;
        }
        got.push_str(&l);
        if l == "\n" {
            break;
        }
    }
    assert_eq!(
        got,
        "event: wolf::core::events::IDRRequestEvent\ndata: {\"session_id\":\"42\"}\n\n"
    );
}

#[tokio::test]
async fn pre_v5_events_carry_numeric_ids() {
    let (wolf, _d) = fake(WolfVersion::V4).await;
    let s = tokio::net::UnixStream::connect(wolf.socket_path().unwrap())
        .await
        .unwrap();
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(b"GET /api/v1/events HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    within(
        "subscriber",
        wolf.wait_for_subscribers(1, std::time::Duration::from_secs(5)),
    )
    .await
    .unwrap();
    wolf.inject_event(
        "wolf::core::events::PauseStreamEvent",
        &serde_json::json!({"session_id": "18446744073709551615"}),
    );
    loop {
        let mut l = String::new();
        within("event line", r.read_line(&mut l)).await.unwrap();
        if l.starts_with("data:") {
            assert_eq!(l, "data: {\"session_id\":18446744073709551615}\n");
            break;
        }
    }
}

#[tokio::test]
async fn get_icon_has_content_type_and_query_rules() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_icon("icons/a.png", vec![0x89, b'P', b'N', b'G']);
    let r = raw(
        &wolf,
        b"GET /api/v1/utils/get-icon?icon_path=icons/a.png HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(
        r,
        b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\nContent-Type: image/png\r\n\r\n\x89PNG"
    );
    assert_eq!(
        raw_get(&wolf, "/api/v1/utils/get-icon?path=x").await,
        status(
            400,
            r#"{"success":false,"error":"Invalid request format, expects 'icon_path' as a query parameter"}"#
        )
    );
    assert_eq!(
        raw_get(&wolf, "/api/v1/utils/get-icon?icon_path=missing.png").await,
        status(404, r#"{"success":false,"error":"Icon not found"}"#)
    );
}

#[tokio::test]
async fn v4_profile_has_no_profiles_and_old_session_order() {
    let (wolf, _d) = fake(WolfVersion::V4).await;
    assert_eq!(
        raw_get(&wolf, "/api/v1/profiles").await,
        "HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        raw_get(&wolf, "/api/v1/lobbies").await,
        "HTTP/1.0 404 OK\r\nContent-Length: 0\r\n\r\n"
    );
    let id = wolf.add_paired_client(CERT);
    wolf.add_app(app(7));
    // V4 requires app_id, client_id and client_settings.
    let body = r#"{"client_ip":"203.0.113.7","aes_key":"773448F67992470C5C62848D361E1025","aes_iv":"1311662065","rtsp_fake_ip":"10.96.12.34","video_width":1920,"video_height":1080,"video_refresh_rate":60,"audio_channel_count":2}"#;
    assert_eq!(
        raw_post(&wolf, "/api/v1/sessions/add", body).await,
        status(
            500,
            r#"{"success":false,"error":"Field named 'app_id' not found."}"#
        )
    );
    let body = format!(
        r#"{{"app_id":"7","client_id":"{id}","client_ip":"203.0.113.7","aes_key":"773448F67992470C5C62848D361E1025","aes_iv":"1311662065","rtsp_fake_ip":"10.96.12.34","video_width":1920,"video_height":1080,"video_refresh_rate":60,"audio_channel_count":2,"client_settings":{{"run_uid":1000,"run_gid":1000,"controllers_override":["XBOX"],"mouse_acceleration":1.0,"v_scroll_acceleration":1.0,"h_scroll_acceleration":1.0}}}}"#
    );
    assert_eq!(
        raw_post(&wolf, "/api/v1/sessions/add", &body).await,
        ok(&format!(r#"{{"success":true,"session_id":"{id}"}}"#))
    );
    let expected = format!(
        r#"{{"success":true,"sessions":[{{"app_id":"7","client_id":"{id}","client_ip":"203.0.113.7","aes_key":"773448F67992470C5C62848D361E1025","aes_iv":"1311662065","rtsp_fake_ip":"10.96.12.34","video_width":1920,"video_height":1080,"video_refresh_rate":60,"audio_channel_count":2,"client_settings":{{"run_uid":1000,"run_gid":1000,"controllers_override":["XBOX"],"mouse_acceleration":1.0,"v_scroll_acceleration":1.0,"h_scroll_acceleration":1.0}}}}]}}"#
    );
    assert_eq!(raw_get(&wolf, "/api/v1/sessions").await, ok(&expected));
}

#[tokio::test]
async fn v6_rejects_client_settings_without_motion_override() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let body = r#"{"client_ip":"203.0.113.7","aes_key":"773448F67992470C5C62848D361E1025","aes_iv":"1311662065","rtsp_fake_ip":"10.96.12.34","video_width":1920,"video_height":1080,"video_refresh_rate":60,"audio_channel_count":2,"client_settings":{"run_uid":1000,"run_gid":1000,"controllers_override":[],"mouse_acceleration":1.0,"v_scroll_acceleration":1.0,"h_scroll_acceleration":1.0}}"#;
    assert_eq!(
        raw_post(&wolf, "/api/v1/sessions/add", body).await,
        status(
            500,
            r#"{"success":false,"error":"Field named 'motion_controller_override' not found."}"#
        )
    );
}

#[tokio::test]
async fn docker_pull_stream_bytes() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_pull(
        "img",
        direwolf_wolf_client::fake::PullPlan {
            layers: vec![direwolf_wolf_client::types::PullProgress {
                layer_id: "l1".into(),
                current_progress: 5,
                total: 10,
            }],
            fail_after: None,
        },
    );
    assert_eq!(
        raw_post(&wolf, "/api/v1/docker/images/pull", r#"{"image_name":"img"}"#).await,
        "HTTP/1.0 200 OK\r\n\r\n{\"layer_id\":\"l1\",\"current_progress\":5,\"total\":10}\r\n{\"success\":true}\r\n"
    );
    // An unparsable body gets no answer at all (and is not a crash).
    assert_eq!(raw_post(&wolf, "/api/v1/docker/images/pull", "{").await, "");
    assert!(!wolf.would_have_crashed());
}
