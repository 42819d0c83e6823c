//! Pure conversions between the core values and the custom resources (and the identity Secret).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU16;

use direwolf_core::{
    App as CoreApp, AppId, Fingerprint, Pairing as CorePairing, ServerIdentity, Session as CoreSession,
    SessionId, StreamPlacement, StreamPorts, User as CoreUser, UserName, VideoMode,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::error::KubeStoreError;
use crate::crd::{
    self, AppReference, AppSpec, Base64Bytes, PairingReference, PairingSpec, SessionConfig, SessionPorts,
    SessionSpec, SessionStatus, UserReference, UserSpec, annotations, labels,
};

/// Keys of the identity Secret.
pub(crate) mod identity_keys {
    /// The certificate (PEM); the standard key of a `kubernetes.io/tls` Secret.
    pub const CERT: &str = "tls.crt";
    /// The private key (PEM).
    pub const KEY: &str = "tls.key";
    /// The server `uniqueid`.
    pub const UNIQUE_ID: &str = "uniqueid";
}

fn unusable(kind: &'static str, name: &str, message: impl ToString) -> KubeStoreError {
    KubeStoreError::Unusable {
        kind,
        name: name.to_owned(),
        message: message.to_string(),
    }
}

fn time_of(seconds: u64) -> Result<Time, KubeStoreError> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map(Time)
        .ok_or_else(|| KubeStoreError::Invalid {
            what: "time",
            message: format!("{seconds} is out of range"),
        })
}

fn seconds_of(time: &Time) -> u64 {
    u64::try_from(time.0.as_second()).unwrap_or(0)
}

// ---- Pairing ----

/// The Pairing object for a core pairing (named by its fingerprint).
pub(crate) fn pairing_object(pairing: &CorePairing) -> Result<crd::Pairing, KubeStoreError> {
    let mut object = crd::Pairing::new(
        pairing.fingerprint.as_str(),
        PairingSpec {
            client_cert_pem: pairing.cert_pem.clone(),
            user_reference: UserReference {
                name: pairing.user.to_string(),
            },
            device_name: pairing.device_name.clone(),
            paired_at: Some(time_of(pairing.paired_at)?),
        },
    );
    object.metadata.labels = Some(BTreeMap::from([(
        labels::USER.to_owned(),
        pairing.user.to_string(),
    )]));
    Ok(object)
}

/// The core pairing a Pairing object describes.
pub(crate) fn pairing_from(object: &crd::Pairing) -> Result<CorePairing, KubeStoreError> {
    let name = object.name_any();
    let fingerprint: Fingerprint = name.parse().map_err(|e| unusable("pairing", &name, e))?;
    let user: UserName = object
        .spec
        .user_reference
        .name
        .parse()
        .map_err(|e| unusable("pairing", &name, e))?;
    let paired_at = object
        .spec
        .paired_at
        .as_ref()
        .or(object.metadata.creation_timestamp.as_ref())
        .map(seconds_of)
        .unwrap_or(0);
    Ok(CorePairing {
        fingerprint,
        cert_pem: object.spec.client_cert_pem.clone(),
        user,
        device_name: object.spec.device_name.clone(),
        paired_at,
    })
}

// ---- User ----

/// The fields of a User this store owns (server-side apply leaves the rest alone).
pub(crate) fn user_object(user: &CoreUser) -> crd::User {
    crd::User::new(
        user.name.as_str(),
        UserSpec {
            display_name: user.display_name.clone(),
            apps: user.apps.as_ref().map(|apps| {
                apps.iter()
                    .filter_map(|id| i32::try_from(id.get()).ok())
                    .collect()
            }),
            admin: user.admin,
            ..UserSpec::default()
        },
    )
}

/// The core user a User object describes.
pub(crate) fn user_from(object: &crd::User) -> Result<CoreUser, KubeStoreError> {
    let name = object.name_any();
    let apps = match &object.spec.apps {
        None => None,
        Some(ids) => Some(
            ids.iter()
                .map(|id| {
                    u32::try_from(*id)
                        .ok()
                        .and_then(|id| AppId::new(id).ok())
                        .ok_or_else(|| {
                            unusable("user", &name, format!("app id {id} is not a positive integer"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(CoreUser {
        name: name.parse().map_err(|e| unusable("user", &name, e))?,
        display_name: object.spec.display_name.clone(),
        apps,
        // Local accounts (passwords) are a single-machine feature; Kubernetes users log in
        // through single sign-on or a login proxy.
        password: None,
        admin: object.spec.admin,
    })
}

// ---- App ----

/// The object name a new App with this id gets.
pub(crate) fn app_object_name(id: AppId) -> String {
    format!("app-{id}")
}

/// Whether a media type is PNG or WebP (the two kinds of art an App holds).
pub(crate) enum ArtKind {
    /// `image/png`.
    Png,
    /// `image/webp`.
    WebP,
}

/// The fields of an App this store owns: title, id, HDR flag and art.
pub(crate) fn app_object(
    name: &str,
    app: &CoreApp,
    asset: Option<&direwolf_core::AppAsset>,
) -> Result<crd::App, KubeStoreError> {
    let title_len = app.title.chars().count();
    if !(1..=63).contains(&title_len) {
        return Err(KubeStoreError::Invalid {
            what: "app title",
            message: format!("an App title is 1 to 63 characters, this one has {title_len}"),
        });
    }
    let id = i32::try_from(app.id.get()).map_err(|_| KubeStoreError::Invalid {
        what: "app id",
        message: format!("{} does not fit a signed 32-bit integer", app.id),
    })?;
    let (mut png, mut webp) = (None, None);
    if let Some(asset) = asset {
        match art_kind(&asset.content_type)? {
            ArtKind::Png => png = Some(Base64Bytes(asset.bytes.clone())),
            ArtKind::WebP => webp = Some(Base64Bytes(asset.bytes.clone())),
        }
    }
    Ok(crd::App::new(
        name,
        AppSpec {
            title: app.title.clone(),
            id,
            is_hdr_supported: app.hdr_supported,
            app_asset_webp: webp,
            app_asset_png: png,
            template: None,
            volume_claim_template: None,
            wolf_config: crd::WolfConfig::default(),
            warm_pool: None,
            gpu: None,
        },
    ))
}

/// Which art field a media type goes to.
pub(crate) fn art_kind(content_type: &str) -> Result<ArtKind, KubeStoreError> {
    match content_type.split(';').next().map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("image/png") => Ok(ArtKind::Png),
        Some(t) if t.eq_ignore_ascii_case("image/webp") => Ok(ArtKind::WebP),
        _ => Err(KubeStoreError::Invalid {
            what: "app image",
            message: format!("{content_type:?} is neither image/png nor image/webp"),
        }),
    }
}

/// The core app an App object describes.
pub(crate) fn app_from(object: &crd::App) -> Result<CoreApp, KubeStoreError> {
    let name = object.name_any();
    let id = u32::try_from(object.spec.id)
        .ok()
        .and_then(|id| AppId::new(id).ok())
        .ok_or_else(|| {
            unusable(
                "app",
                &name,
                format!("spec.id {} is not in 1..=2147483647", object.spec.id),
            )
        })?;
    let app = CoreApp::new(id, object.spec.title.clone()).map_err(|e| unusable("app", &name, e))?;
    Ok(app.with_hdr(object.spec.is_hdr_supported))
}

/// Decodes WebP art and encodes it as PNG (what every client displays).
pub(crate) fn webp_to_png(app: AppId, webp: &[u8]) -> Result<Vec<u8>, KubeStoreError> {
    use image::ImageFormat;
    let image_err = |source| KubeStoreError::Image {
        app: app.get(),
        source,
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(webp), ImageFormat::WebP);
    let mut limits = image::Limits::default();
    // Cover art is a few hundred pixels wide; refuse decompression bombs.
    limits.max_image_width = Some(8192);
    limits.max_image_height = Some(8192);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let decoded = reader.decode().map_err(image_err)?;
    let mut png = std::io::Cursor::new(Vec::new());
    decoded.write_to(&mut png, ImageFormat::Png).map_err(image_err)?;
    Ok(png.into_inner())
}

// ---- Session ----

/// The Session object for a new core session: the one Session builder of direwolf (the session
/// store's and the launcher's). `app_name` is the App object the session runs.
pub(crate) fn session_object(session: &CoreSession, app_name: &str) -> Result<crd::Session, KubeStoreError> {
    let id = i32::try_from(session.app.get()).map_err(|_| KubeStoreError::Invalid {
        what: "app id",
        message: format!("{} does not fit a signed 32-bit integer", session.app),
    })?;
    let mut object = crd::Session::new(
        session.id.as_str(),
        SessionSpec {
            user_reference: UserReference {
                name: session.user.to_string(),
            },
            game_reference: AppReference {
                name: app_name.to_owned(),
                app_id: Some(id),
            },
            pairing_reference: PairingReference {
                name: session.pairing.to_string(),
            },
            gateway: None,
            keys_revision: None,
            config: session_config(session),
        },
    );
    object.metadata = session_metadata(session, app_name);
    Ok(object)
}

/// The labels and annotations of a Session (`docs/protocol/kubernetes.md` § Names, labels and
/// annotations).
pub(crate) fn session_metadata(session: &CoreSession, app_name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(session.id.to_string()),
        labels: Some(BTreeMap::from([
            (labels::SESSION.to_owned(), "true".to_owned()),
            (labels::USER.to_owned(), session.user.to_string()),
            (labels::APP_NAME.to_owned(), app_name.to_owned()),
        ])),
        annotations: Some(BTreeMap::from([
            (annotations::PAIRING.to_owned(), session.pairing.to_string()),
            (annotations::CREATED_AT.to_owned(), session.created_at.to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The stream parameters of a session.
pub(crate) fn session_config(session: &CoreSession) -> SessionConfig {
    SessionConfig {
        client_ip: Some(session.client_ip.to_string()),
        video_width: i32::try_from(session.mode.width).unwrap_or(i32::MAX),
        video_height: i32::try_from(session.mode.height).unwrap_or(i32::MAX),
        video_refresh_rate: i32::try_from(session.mode.fps).unwrap_or(i32::MAX),
        surround_audio_flags: i64::from(session.surround_audio_info),
    }
}

/// The status fields this store owns: phase and placement.
pub(crate) fn session_status(session: &CoreSession) -> Result<SessionStatus, KubeStoreError> {
    let placement = session.placement.as_ref();
    let ports = match placement.and_then(|p| p.ports) {
        Some(ports) => {
            let port = |n: u16, what: &str| {
                NonZeroU16::new(n).ok_or_else(|| KubeStoreError::Invalid {
                    what: "stream ports",
                    message: format!("the {what} port is 0"),
                })
            };
            Some(SessionPorts {
                rtsp: port(ports.rtsp, "RTSP")?,
                control: port(ports.control, "control")?,
                video_rtp: port(ports.video, "video")?,
                audio_rtp: port(ports.audio, "audio")?,
            })
        }
        None => None,
    };
    Ok(SessionStatus {
        phase: Some(session.phase.into()),
        ports,
        wolf_session_id: placement.map(|p| p.host_session_id.clone()),
        stream_url: placement.map(|p| p.session_url.clone()),
        host: placement.map(|p| p.host.clone()),
        ..SessionStatus::default()
    })
}

/// The core session a Session object and its keys Secret describe (`None`: the Secret is
/// missing). `app_id_of` resolves an App object name to its id, for Sessions written without
/// `gameReference.appID`.
pub(crate) fn session_from(
    object: &crd::Session,
    keys: Option<&Secret>,
    app_id_of: impl Fn(&str) -> Option<AppId>,
) -> Result<CoreSession, KubeStoreError> {
    let name = object.name_any();
    let bad = |e: &dyn std::fmt::Display| unusable("session", &name, e);
    let spec = &object.spec;
    let id: SessionId = name.parse().map_err(|e| bad(&e))?;
    let user: UserName = spec.user_reference.name.parse().map_err(|e| bad(&e))?;
    let pairing: Fingerprint = spec.pairing_reference.name.parse().map_err(|e| bad(&e))?;
    let app = match spec.game_reference.app_id {
        Some(id) => u32::try_from(id).ok().and_then(|id| AppId::new(id).ok()),
        None => app_id_of(&spec.game_reference.name),
    }
    .ok_or_else(|| bad(&format!("App {:?} is unknown", spec.game_reference.name)))?;
    let config = &spec.config;
    let client_ip: IpAddr = config
        .client_ip
        .as_deref()
        .ok_or_else(|| bad(&"spec.config.clientIP is missing"))?
        .parse()
        .map_err(|e| bad(&e))?;
    let dimension =
        |v: i32, what: &str| u32::try_from(v).map_err(|_| bad(&format!("{what} {v} is negative")));
    let mode = VideoMode {
        width: dimension(config.video_width, "videoWidth")?,
        height: dimension(config.video_height, "videoHeight")?,
        fps: dimension(config.video_refresh_rate, "videoRefreshRate")?,
    };
    let surround_audio_info = u32::try_from(config.surround_audio_flags).map_err(|_| {
        bad(&format!(
            "surroundAudioFlags {} is out of range",
            config.surround_audio_flags
        ))
    })?;
    let keys = keys
        .ok_or_else(|| bad(&"its keys Secret is missing"))
        .and_then(|secret| crate::keys::stream_keys(secret).map_err(|e| bad(&e)))?;
    let status = object.status.clone().unwrap_or_default();
    let placement = status.stream_url.map(|session_url| StreamPlacement {
        session_url,
        host: status
            .host
            .clone()
            .or_else(|| status.deployment_name.clone())
            .unwrap_or_default(),
        host_session_id: status.wolf_session_id.clone().unwrap_or_default(),
        ports: status.ports.map(|p| StreamPorts {
            rtsp: p.rtsp.get(),
            control: p.control.get(),
            video: p.video_rtp.get(),
            audio: p.audio_rtp.get(),
        }),
    });
    let created_at = object
        .annotations()
        .get(annotations::CREATED_AT)
        .and_then(|s| s.parse().ok())
        .or_else(|| object.metadata.creation_timestamp.as_ref().map(seconds_of))
        .unwrap_or(0);
    Ok(CoreSession {
        id,
        user,
        pairing,
        app,
        client_ip,
        mode,
        surround_audio_info,
        keys,
        phase: status
            .phase
            .map(Into::into)
            .unwrap_or(direwolf_core::SessionPhase::Pending),
        placement,
        created_at,
    })
}

// ---- Identity ----

/// The identity Secret.
pub(crate) fn identity_secret(name: &str, identity: &ServerIdentity) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (labels::NAME.to_owned(), labels::DIREWOLF.to_owned()),
                (labels::COMPONENT.to_owned(), "proxy".to_owned()),
                (labels::MANAGED_BY.to_owned(), labels::DIREWOLF.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            (
                identity_keys::CERT.to_owned(),
                ByteString(identity.cert_pem.clone().into_bytes()),
            ),
            (
                identity_keys::KEY.to_owned(),
                ByteString(identity.key_pem.clone().into_bytes()),
            ),
            (
                identity_keys::UNIQUE_ID.to_owned(),
                ByteString(identity.unique_id.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The identity an identity Secret holds.
pub(crate) fn identity_from(secret: &Secret) -> Result<ServerIdentity, KubeStoreError> {
    let name = secret.name_any();
    let field = |key: &str| -> Result<String, KubeStoreError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| unusable("identity", &name, format!("the Secret has no {key:?}")))?;
        String::from_utf8(bytes).map_err(|_| unusable("identity", &name, format!("{key:?} is not UTF-8")))
    };
    Ok(ServerIdentity {
        cert_pem: field(identity_keys::CERT)?,
        key_pem: field(identity_keys::KEY)?,
        unique_id: field(identity_keys::UNIQUE_ID)?,
    })
}
