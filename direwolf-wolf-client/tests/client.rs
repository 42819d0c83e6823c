//! Every endpoint through the typed client against the fake, on each version profile.

mod common;

use common::*;
use direwolf_wolf_client::error::{Error, ValidationError, WolfErrorKind};
use direwolf_wolf_client::fake::{FakeWolf, PullPlan};
use direwolf_wolf_client::ids::{AppId, ClientId, SessionId};
use direwolf_wolf_client::types::*;
use direwolf_wolf_client::version::paths;
use direwolf_wolf_client::{WolfClient, WolfVersion};
use futures::StreamExt;

#[tokio::test]
async fn version_detection_on_each_profile_is_cached() {
    for v in [
        WolfVersion::V3,
        WolfVersion::V4,
        WolfVersion::V5,
        WolfVersion::V5b,
        WolfVersion::V6,
    ] {
        let (wolf, _d) = fake(v).await;
        let client = wolf.client().unwrap();
        assert_eq!(within("detect", client.version()).await.unwrap(), v);
        let served = wolf.requests_served();
        assert_eq!(within("detect again", client.version()).await.unwrap(), v);
        assert_eq!(wolf.requests_served(), served, "detection must be cached");
    }
}

#[tokio::test]
async fn old_versions_get_typed_unsupported_and_nothing_is_sent() {
    let (wolf, _d) = fake(WolfVersion::V4).await;
    let client = wolf.client().unwrap();
    within("detect", client.version()).await.unwrap();
    let before = wolf.requests_served();
    let err = within("lobbies", client.lobbies()).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Unsupported {
            endpoint: paths::LOBBIES,
            detected_version: WolfVersion::V4,
            required: WolfVersion::V5
        }
    ));
    assert!(matches!(
        within("profiles", client.profiles()).await,
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        within("icon", client.get_icon("a.png")).await,
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        within("pull", client.pull_image("x")).await,
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(wolf.requests_served(), before);
    // V3 still has sessions/start.
    let (wolf3, _d3) = fake(WolfVersion::V3).await;
    assert_eq!(
        within("v3", wolf3.client().unwrap().version()).await.unwrap(),
        WolfVersion::V3
    );
}

#[tokio::test]
async fn pairing_endpoints() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    assert!(
        within("pending", client.pending_pair_requests())
            .await
            .unwrap()
            .is_empty()
    );
    wolf.add_pending_pair("0123456789ABCDEF", "192.0.2.10");
    let pending = within("pending", client.pending_pair_requests()).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].client_ip, "192.0.2.10");
    let bad = PairClientRequest {
        pair_secret: "FFFF".into(),
        pin: "1234".into(),
    };
    let err = within("pair bad", client.pair_client(&bad)).await.unwrap_err();
    assert_eq!(err.wolf_kind(), Some(WolfErrorKind::InvalidPairSecret));
    let good = PairClientRequest {
        pair_secret: pending[0].pair_secret.clone(),
        pin: "1234".into(),
    };
    within("pair", client.pair_client(&good)).await.unwrap();
    assert!(
        wolf.pending_pairs().is_empty(),
        "V6 removes the pending entry on success"
    );

    let id = wolf.add_paired_client(CERT);
    let clients = within("clients", client.clients()).await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_id, id);
    let upd = UpdateClientSettingsRequest {
        client_id: id,
        app_state_folder: None,
        settings: Some(PartialClientSettings {
            run_uid: Some(42),
            ..Default::default()
        }),
    };
    within("settings", client.update_client_settings(&upd))
        .await
        .unwrap();
    assert_eq!(wolf.clients()[0].settings.as_ref().unwrap().run_uid, 42);
    let missing = UpdateClientSettingsRequest {
        client_id: ClientId::new(1),
        ..upd.clone()
    };
    let err = within("settings missing", client.update_client_settings(&missing))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Wolf {
            status: 404,
            kind: WolfErrorKind::ClientNotFound,
            ..
        }
    ));
    within("unpair", client.unpair_client(id)).await.unwrap();
    let err = within("unpair again", client.unpair_client(id))
        .await
        .unwrap_err();
    assert_eq!(err.wolf_kind(), Some(WolfErrorKind::ClientNotFound));
    assert!(!wolf.would_have_crashed());
}

#[tokio::test]
async fn apps_and_profiles_endpoints() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    within("add app", client.add_app(&app(304_556_286)))
        .await
        .unwrap();
    let apps = within("apps", client.apps()).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, AppId::from(304_556_286));
    assert!(
        !apps[0].start_audio_server,
        "Wolf does not copy start_audio_server"
    );
    within("delete app", client.delete_app(&AppId::from(304_556_286)))
        .await
        .unwrap();
    within("delete absent app", client.delete_app(&AppId::from(1)))
        .await
        .unwrap();
    assert!(within("apps", client.apps()).await.unwrap().is_empty());

    let profiles = within("profiles", client.profiles()).await.unwrap();
    assert_eq!(profiles.len(), 1);
    let p = Profile {
        name: "Kids".into(),
        id: "kids".into(),
        icon_png_path: String::new(),
        pin: Some(vec![1, 2].into()),
        apps: vec![app(3)],
    };
    within("add profile", client.add_profile(&p)).await.unwrap();
    let got = within("profiles", client.profiles()).await.unwrap();
    assert_eq!(got[1], p);
    within("remove", client.remove_profile("kids")).await.unwrap();
    within("remove absent", client.remove_profile("kids"))
        .await
        .unwrap();
    assert_eq!(wolf.profiles().len(), 1);
}

#[tokio::test]
async fn session_lifecycle_v6() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    let id = within("add", client.add_session(&add_request())).await.unwrap();
    assert_eq!(id, SessionId::CLIENTLESS);
    let sessions = within("list", client.sessions()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_id(), id);
    assert_eq!(sessions[0].rtsp_fake_ip.as_deref(), Some("10.96.12.34"));
    assert_eq!(
        sessions[0].aes_key.as_ref().unwrap().expose(),
        "773448F67992470C5C62848D361E1025"
    );
    assert!(
        !format!("{:?}", sessions[0]).contains("773448F6"),
        "AES key must not appear in Debug"
    );

    within("start", client.start_session(&start_request(id)))
        .await
        .unwrap();
    within("input", client.send_input(id, "0a0b")).await.unwrap();
    let runner = StartRunnerRequest {
        stop_stream_when_over: false,
        runner: Runner::Process { run_cmd: "x".into() },
        session_id: id,
    };
    within("runner", client.start_runner(&runner)).await.unwrap();
    within("pause", client.pause_session(id)).await.unwrap();
    within("stop", client.stop_session(id)).await.unwrap();
    let err = within("stop again", client.stop_session(id)).await.unwrap_err();
    assert_eq!(err.wolf_kind(), Some(WolfErrorKind::InvalidSessionId));
    let err = within("runner on gone session", client.start_runner(&runner))
        .await
        .unwrap_err();
    assert_eq!(err.wolf_kind(), Some(WolfErrorKind::InvalidSessionId));
    assert!(!wolf.would_have_crashed(), "{:?}", wolf.crashes());
}

#[tokio::test]
async fn sessions_with_paired_client_on_v4_and_v5() {
    for v in [WolfVersion::V4, WolfVersion::V5] {
        let (wolf, _d) = fake(v).await;
        let cid = wolf.add_paired_client(CERT);
        wolf.add_app(app(9));
        let client = wolf.client().unwrap();
        let err = within("add without client", client.add_session(&add_request()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Validation {
                    source: ValidationError::MissingField { field: "app_id", .. },
                    ..
                }
            ),
            "{err}"
        );
        let mut req = add_request();
        req.app_id = Some(AppId::from(9));
        req.client_id = Some(cid);
        req.client_settings = Some(ClientSettings {
            motion_controller_override: None,
            ..Default::default()
        });
        let id = within("add", client.add_session(&req)).await.unwrap();
        assert_eq!(id, SessionId::from(cid));
        let unknown_app = AddSessionRequest {
            app_id: Some(AppId::from(8)),
            ..req.clone()
        };
        let err = within("bad app", client.add_session(&unknown_app))
            .await
            .unwrap_err();
        assert_eq!(err.wolf_kind(), Some(WolfErrorKind::InvalidAppId));
        let unknown_client = AddSessionRequest {
            client_id: Some(ClientId::new(5)),
            ..req.clone()
        };
        let err = within("bad client", client.add_session(&unknown_client))
            .await
            .unwrap_err();
        assert_eq!(err.wolf_kind(), Some(WolfErrorKind::InvalidClientId));
        // Pre-V5 nested session ids are sent as numbers; the fake requires the V4 fields.
        within("start", client.start_session(&start_request(id)))
            .await
            .unwrap();
        within("stop", client.stop_session(id)).await.unwrap();
        assert!(!wolf.would_have_crashed(), "{v}: {:?}", wolf.crashes());
    }
}

#[tokio::test]
async fn client_validation_refuses_before_sending() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    within("detect", client.version()).await.unwrap();
    let before = wolf.requests_served();
    for (req, expect) in [
        (
            AddSessionRequest {
                rtsp_fake_ip: String::new(),
                ..add_request()
            },
            "rtsp",
        ),
        (
            AddSessionRequest {
                rtsp_fake_ip: "host.example".into(),
                ..add_request()
            },
            "rtsp",
        ),
        (
            AddSessionRequest {
                aes_key: "xyz".into(),
                ..add_request()
            },
            "key",
        ),
        (
            AddSessionRequest {
                aes_iv: "99999999999".into(),
                ..add_request()
            },
            "iv",
        ),
        (
            AddSessionRequest {
                aes_iv: "-1".into(),
                ..add_request()
            },
            "iv",
        ),
        (
            AddSessionRequest {
                client_settings: Some(ClientSettings {
                    motion_controller_override: None,
                    ..Default::default()
                }),
                ..add_request()
            },
            "motion",
        ),
    ] {
        let err = within("validate", client.add_session(&req)).await.unwrap_err();
        let Error::Validation { source, .. } = &err else {
            panic!("{expect}: {err}")
        };
        let ok = match expect {
            "rtsp" => matches!(source, ValidationError::InvalidRtspFakeIp(_)),
            "key" => matches!(source, ValidationError::InvalidAesKey),
            "iv" => matches!(source, ValidationError::InvalidAesIv),
            _ => matches!(
                source,
                ValidationError::MissingField {
                    field: "client_settings.motion_controller_override",
                    ..
                }
            ),
        };
        assert!(ok, "{expect}: {err}");
    }
    assert!(matches!(
        within("hex", client.send_input(SessionId::new(1), "0g")).await,
        Err(Error::Validation {
            source: ValidationError::InvalidHex,
            ..
        })
    ));
    assert!(matches!(
        within("icon", client.get_icon("a=b")).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        within("icon", client.get_icon("a b")).await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(
        wolf.requests_served(),
        before,
        "nothing may be sent for invalid requests"
    );
    // sessions/start on an unknown session: refused after listing, Wolf not crashed.
    let err = within(
        "start unknown",
        client.start_session(&start_request(SessionId::new(77))),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation {
            source: ValidationError::SessionNotFound(_),
            ..
        }
    ));
    let mut no_secret = start_request(SessionId::new(77));
    no_secret.video_session.rtp_secret_payload = None;
    assert!(matches!(
        within("no secret", client.start_session(&no_secret)).await,
        Err(Error::Validation {
            source: ValidationError::MissingField { .. },
            ..
        })
    ));
    assert!(!wolf.would_have_crashed());
    assert!("abc".parse::<SessionId>().is_err());
}

#[tokio::test]
async fn lobbies_endpoints() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    let sid = within("add", client.add_session(&add_request())).await.unwrap();
    let open = within("create", client.create_lobby(&lobby_request(None, false)))
        .await
        .unwrap();
    let locked = within(
        "create",
        client.create_lobby(&lobby_request(Some(vec![1, 2, 3, 4]), true)),
    )
    .await
    .unwrap();
    let lobbies = within("list", client.lobbies()).await.unwrap();
    assert_eq!(lobbies.len(), 2);
    assert!(lobbies[1].pin_required && !lobbies[0].pin_required);
    let join = |lobby_id, pin: Option<Vec<u8>>, s| JoinLobbyRequest {
        lobby_id,
        moonlight_session_id: s,
        pin: pin.map(Into::into),
    };
    let e = within(
        "bad pin",
        client.join_lobby(&join(locked.clone(), Some(vec![9]), sid)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::InvalidPin));
    let e = within("bad lobby", client.join_lobby(&join("nope".into(), None, sid)))
        .await
        .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::InvalidLobbyId));
    let e = within(
        "bad session",
        client.join_lobby(&join(open.clone(), None, SessionId::new(3))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::LobbyOrSessionNotFound));
    within("join", client.join_lobby(&join(open.clone(), None, sid)))
        .await
        .unwrap();
    assert_eq!(wolf.lobbies()[0].connected_sessions, vec![sid]);
    within(
        "leave",
        client.leave_lobby(&LeaveLobbyRequest {
            lobby_id: open.clone(),
            moonlight_session_id: sid,
        }),
    )
    .await
    .unwrap();
    assert!(wolf.lobbies()[0].connected_sessions.is_empty());
    let e = within(
        "stop bad pin",
        client.stop_lobby(&StopLobbyRequest {
            lobby_id: locked.clone(),
            pin: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::InvalidPin));
    within(
        "stop",
        client.stop_lobby(&StopLobbyRequest {
            lobby_id: locked,
            pin: Some(vec![1, 2, 3, 4].into()),
        }),
    )
    .await
    .unwrap();
    within(
        "stop",
        client.stop_lobby(&StopLobbyRequest {
            lobby_id: open.clone(),
            pin: None,
        }),
    )
    .await
    .unwrap();
    let e = within(
        "stop gone",
        client.stop_lobby(&StopLobbyRequest {
            lobby_id: open,
            pin: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::InvalidLobbyId));
}

#[tokio::test]
async fn utils_docker_and_schema_endpoints() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf.client().unwrap();
    wolf.add_icon("a.png", b"\x89PNG-bytes".to_vec());
    assert_eq!(
        &within("icon", client.get_icon("a.png")).await.unwrap()[..],
        b"\x89PNG-bytes"
    );
    let e = within("icon missing", client.get_icon("b.png"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Wolf {
            status: 404,
            kind: WolfErrorKind::IconNotFound,
            ..
        }
    ));
    wolf.add_image(
        "ghcr.io/x:1",
        serde_json::json!({"Id": "sha256:1", "RepoTags": ["ghcr.io/x:1"]}),
    );
    assert_eq!(
        within("inspect", client.inspect_image("ghcr.io/x:1"))
            .await
            .unwrap()["Id"],
        "sha256:1"
    );
    let e = within("inspect missing", client.inspect_image("nope"))
        .await
        .unwrap_err();
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::ImageNotFound));

    let layer = |n| PullProgress {
        layer_id: format!("l{n}"),
        current_progress: n,
        total: 10,
    };
    wolf.add_pull(
        "ok",
        PullPlan {
            layers: vec![layer(1), layer(2)],
            fail_after: None,
        },
    );
    wolf.add_pull(
        "half",
        PullPlan {
            layers: vec![layer(1), layer(2)],
            fail_after: Some(1),
        },
    );
    let got: Vec<_> = within("pull", client.pull_image("ok").await.unwrap().collect::<Vec<_>>()).await;
    assert_eq!(
        got.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        vec![layer(1), layer(2)]
    );
    let got: Vec<_> = within(
        "pull half",
        client.pull_image("half").await.unwrap().collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap(), &layer(1));
    assert_eq!(
        got[1].as_ref().unwrap_err().wolf_kind(),
        Some(WolfErrorKind::PullFailed)
    );
    let e = within("pull unknown", client.pull_image("unknown"))
        .await
        .err()
        .expect("unknown image fails");
    assert_eq!(e.wolf_kind(), Some(WolfErrorKind::PullFailed));

    let doc = within("schema", client.openapi_schema()).await.unwrap();
    assert_eq!(doc["info"]["title"], "Wolf API");
    assert_eq!(doc["paths"].as_object().unwrap().len(), 28);
}

#[tokio::test]
async fn tcp_transport_works_too() {
    let wolf = FakeWolf::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let client = wolf.client().unwrap();
    assert!(
        within("tcp sessions", client.sessions())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        within("tcp version", client.version()).await.unwrap(),
        WolfVersion::V6
    );
    let c2 = WolfClient::tcp(wolf.addr().unwrap().to_string()).unwrap();
    assert!(within("tcp clients", c2.clients()).await.unwrap().is_empty());
}

#[tokio::test]
async fn pinned_version_skips_detection() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    let client = wolf
        .client_builder()
        .with_version(WolfVersion::V4)
        .build()
        .unwrap();
    assert!(matches!(
        within("lobbies", client.lobbies()).await,
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(wolf.requests_served(), 0);
}

#[tokio::test]
async fn v5b_accepts_clientless_sessions_and_v4_keeps_pending_pairs() {
    let (wolf, _d) = fake(WolfVersion::V5b).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    assert_eq!(
        within("add", client.add_session(&add_request())).await.unwrap(),
        SessionId::CLIENTLESS
    );
    let listed = within("list", client.sessions()).await.unwrap();
    assert_eq!(
        listed[0]
            .client_settings
            .as_ref()
            .unwrap()
            .motion_controller_override,
        None,
        "no V6 field on V5b"
    );

    let (wolf, _d) = fake(WolfVersion::V4).await;
    let client = wolf.client().unwrap();
    wolf.add_pending_pair("00112233AABBCCDD", "192.0.2.1");
    let req = PairClientRequest {
        pair_secret: "00112233AABBCCDD".into(),
        pin: "0000".into(),
    };
    within("pair", client.pair_client(&req)).await.unwrap();
    assert_eq!(
        wolf.pending_pairs().len(),
        1,
        "before 2025-11-18 the pending entry stays"
    );
}

#[tokio::test]
async fn debug_output_never_contains_secrets() {
    let (wolf, _d) = fake(WolfVersion::V6).await;
    wolf.add_app(app(1));
    let client = wolf.client().unwrap();
    let id = within("add", client.add_session(&add_request())).await.unwrap();
    let start = start_request(id);
    let lobby = lobby_request(Some(vec![4, 3, 2, 1]), true);
    let dumps = [
        format!("{:?}", add_request()),
        format!("{start:?}"),
        format!("{lobby:?}"),
        format!("{:?}", within("list", client.sessions()).await.unwrap()),
        format!("{client:?}"),
    ];
    for d in dumps {
        assert!(
            !d.contains("773448F6") && !d.contains("1311662065") && !d.contains("4, 3, 2, 1"),
            "{d}"
        );
    }
}
