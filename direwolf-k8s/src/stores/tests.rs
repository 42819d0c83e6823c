//! Unit tests of the pure parts: conversions both ways, WebP to PNG.

use std::net::IpAddr;

use direwolf_core::model::STEREO_SURROUND_AUDIO_INFO;
use direwolf_core::{
    AesKey, App, AppAsset, AppId, Fingerprint, Pairing, RiKeyId, ServerIdentity, Session, SessionPhase,
    StreamKeys, StreamPlacement, StreamPorts, User, VideoMode,
};
use kube::ResourceExt;

use super::convert::*;
use crate::crd::{self, annotations, labels};

fn pairing() -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(b"cert"),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        user: "alice".parse().unwrap(),
        device_name: Some("roth".into()),
        paired_at: 1_790_000_000,
    }
}

fn session() -> Session {
    Session {
        id: "alice-1-x7k2q".parse().unwrap(),
        user: "alice".parse().unwrap(),
        pairing: Fingerprint::of_der(b"cert"),
        app: AppId::new(1).unwrap(),
        client_ip: "2001:db8::7".parse::<IpAddr>().unwrap(),
        mode: VideoMode {
            width: 2560,
            height: 1440,
            fps: 120,
        },
        surround_audio_info: STEREO_SURROUND_AUDIO_INFO,
        keys: StreamKeys {
            aes_key: "773448F67992470C5C62848D361E1025".parse::<AesKey>().unwrap(),
            aes_iv: "-123456789".parse::<RiKeyId>().unwrap(),
        },
        phase: SessionPhase::Streaming,
        placement: Some(StreamPlacement {
            session_url: "rtsp://10.0.0.7:48010".into(),
            host: "alice-test-pattern".into(),
            host_session_id: "42".into(),
            ports: Some(StreamPorts {
                rtsp: 48010,
                control: 47999,
                video: 48100,
                audio: 48200,
            }),
        }),
        created_at: 1_790_000_123,
    }
}

#[test]
fn pairing_round_trips_through_the_object() {
    let object = pairing_object(&pairing()).unwrap();
    assert_eq!(object.name_any(), pairing().fingerprint.as_str());
    assert_eq!(
        object.labels().get(labels::USER).map(String::as_str),
        Some("alice")
    );
    assert_eq!(pairing_from(&object).unwrap(), pairing());
}

#[test]
fn unusable_pairings_are_errors_not_panics() {
    let mut object = pairing_object(&pairing()).unwrap();
    object.metadata.name = Some("not-a-fingerprint".into());
    assert!(pairing_from(&object).is_err());
    let mut object = pairing_object(&pairing()).unwrap();
    object.spec.user_reference.name = "Not A Label".into();
    assert!(pairing_from(&object).is_err());
}

#[test]
fn user_round_trips_and_owns_only_the_display_name_apps_and_admin() {
    let user = User {
        name: "alice".parse().unwrap(),
        display_name: Some("Alice 🎮".into()),
        apps: Some(vec![AppId::new(3).unwrap()]),
        ..User::new("alice".parse().unwrap())
    };
    let object = user_object(&user);
    assert_eq!(
        serde_json::to_value(&object.spec).unwrap(),
        serde_json::json!({"displayName": "Alice 🎮", "apps": [3]})
    );
    assert_eq!(user_from(&object).unwrap(), user);

    // An administrator: `spec.admin` written and read back; a person's is left out.
    let admin = User {
        admin: true,
        ..User::new("root".parse().unwrap())
    };
    let object = user_object(&admin);
    assert_eq!(
        serde_json::to_value(&object.spec).unwrap(),
        serde_json::json!({"admin": true})
    );
    assert_eq!(user_from(&object).unwrap(), admin);
}

#[test]
fn app_objects_carry_art_by_media_type_and_check_the_title() {
    let app = App::new(AppId::new(7).unwrap(), "Desktop")
        .unwrap()
        .with_hdr(true);
    let png = AppAsset::png(b"\x89PNG\r\n\x1a\nrest".to_vec()).unwrap();
    let object = app_object("app-7", &app, Some(&png)).unwrap();
    assert_eq!(
        object.spec.app_asset_png.as_ref().map(|b| b.0.clone()),
        Some(png.bytes.clone())
    );
    assert!(object.spec.app_asset_webp.is_none());
    assert_eq!(app_from(&object).unwrap(), app);
    let webp = AppAsset {
        content_type: "image/webp".into(),
        bytes: b"RIFF....WEBP".to_vec(),
    };
    assert!(
        app_object("app-7", &app, Some(&webp))
            .unwrap()
            .spec
            .app_asset_webp
            .is_some()
    );
    let gif = AppAsset {
        content_type: "image/gif".into(),
        bytes: b"GIF89a".to_vec(),
    };
    assert!(matches!(
        direwolf_core::Error::from(app_object("app-7", &app, Some(&gif)).unwrap_err()),
        direwolf_core::Error::Invalid {
            what: "app image",
            ..
        }
    ));
    let long = App::new(AppId::new(7).unwrap(), "x".repeat(64)).unwrap();
    assert!(matches!(
        direwolf_core::Error::from(app_object("app-7", &long, None).unwrap_err()),
        direwolf_core::Error::Invalid {
            what: "app title",
            ..
        }
    ));
    assert_eq!(app_object_name(AppId::new(7).unwrap()), "app-7");
}

#[test]
fn webp_art_becomes_png() {
    // The test-pattern example's art: a 32x48 lossless WebP.
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/app-test-pattern.yaml"
    ))
    .expect("the example exists");
    let app: crd::App = serde_saphyr::from_str(&yaml).expect("a valid App");
    let webp = app.spec.app_asset_webp.expect("the example has WebP art").0;
    let png = webp_to_png(AppId::new(1).unwrap(), &webp).unwrap();
    let asset = AppAsset::png(png.clone()).expect("a PNG signature");
    let decoded = image::load_from_memory_with_format(&asset.bytes, image::ImageFormat::Png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (32, 48));
    let original = image::load_from_memory_with_format(&webp, image::ImageFormat::WebP).unwrap();
    assert_eq!(
        decoded.to_rgba8(),
        original.to_rgba8(),
        "conversion must be lossless"
    );

    let err = webp_to_png(AppId::new(1).unwrap(), b"RIFF\x10\0\0\0WEBPgarbage").unwrap_err();
    assert!(err.to_string().contains("app 1"), "{err}");
}

#[test]
fn session_round_trips_through_spec_and_status() {
    let session = session();
    let mut object = session_object(&session, "test-pattern").unwrap();
    assert_eq!(
        object.labels().get(labels::USER).map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        object.labels().get(labels::APP_NAME).map(String::as_str),
        Some("test-pattern")
    );
    assert_eq!(
        object.labels().get(labels::SESSION).map(String::as_str),
        Some("true")
    );
    assert_eq!(
        object.annotations().get(annotations::PAIRING).map(String::as_str),
        Some(session.pairing.as_str())
    );
    assert_eq!(object.spec.game_reference.app_id, Some(1));
    object.status = Some(session_status(&session).unwrap());
    object.metadata.uid = Some("uid-1".into());
    let keys = crate::keys::keys_secret(&object, &session.keys);
    let keys = Some(&keys);
    assert_eq!(session_from(&object, keys, |_| None).unwrap(), session);
    assert!(
        session_from(&object, None, |_| None).is_err(),
        "a Session without its keys Secret is unusable"
    );

    // A Session written without the app id (by hand) resolves the App by name.
    object.spec.game_reference.app_id = None;
    assert_eq!(
        session_from(&object, keys, |name| (name == "test-pattern")
            .then(|| AppId::new(1).unwrap()))
        .unwrap(),
        session
    );
    assert!(
        session_from(&object, keys, |_| None).is_err(),
        "an unknown App is an error"
    );
}

#[test]
fn session_without_status_is_pending_and_zero_ports_are_invalid() {
    let mut session = session();
    session.phase = SessionPhase::Pending;
    session.placement = None;
    let object = session_object(&session, "x").unwrap();
    let keys = crate::keys::keys_secret(&object, &session.keys);
    assert_eq!(session_from(&object, Some(&keys), |_| None).unwrap(), session);

    let mut bad = self::session();
    if let Some(placement) = bad.placement.as_mut() {
        placement.ports = Some(StreamPorts {
            rtsp: 0,
            control: 1,
            video: 2,
            audio: 3,
        });
    }
    assert!(session_status(&bad).is_err());
}

#[test]
fn identity_round_trips_through_the_secret() {
    let identity = ServerIdentity {
        cert_pem: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n".into(),
        unique_id: "dd7c60f6-4b88-4ef1-be07-eeec72f96080".into(),
    };
    let secret = identity_secret("direwolf-identity", &identity);
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(identity_from(&secret).unwrap(), identity);
    let mut broken = secret.clone();
    broken.data.as_mut().unwrap().remove(identity_keys::KEY);
    assert!(identity_from(&broken).is_err());
}
