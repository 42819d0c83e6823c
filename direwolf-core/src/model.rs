//! The domain objects: users, apps, pairings, sessions, and the server's own identity.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::accounts::PasswordHash;
use crate::error::Error;
use crate::ids::{AesKey, AppId, Fingerprint, RiKeyId, SessionId, UserName};

pub use crate::clock::unix_now;

/// A person. Pairings and sessions belong to a user; Kubernetes mode attaches resource caps and
/// device volumes to it (`docs/protocol/kubernetes.md` § User), which the core does not need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's name (a DNS-1123 label).
    pub name: UserName,
    /// A name to show people, if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The apps this user may see and launch; `None`: every app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<AppId>>,
    /// The password of a local account, hashed (`None`: the user has no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordHash>,
    /// Whether the user administers this direwolf (the first local account does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl User {
    /// A user with only a name (every app allowed).
    pub fn new(name: UserName) -> Self {
        User {
            name,
            display_name: None,
            apps: None,
            password: None,
            admin: false,
        }
    }

    /// Whether this user may see and launch `app`.
    pub fn may_use(&self, app: AppId) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(&app))
    }
}

/// Something a user can launch, as the app list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// The Moonlight app id (`ID` in `/applist`, `appid` in `/launch`).
    pub id: AppId,
    /// The title shown in the client's grid (non-empty).
    pub title: String,
    /// Whether clients may offer HDR for it (`IsHdrSupported`).
    #[serde(default)]
    pub hdr_supported: bool,
}

impl App {
    /// Builds an app, refusing a blank or over-long (> 255 characters) title.
    pub fn new(id: AppId, title: impl Into<String>) -> Result<Self, Error> {
        let title = title.into();
        if title.trim().is_empty() || title.chars().count() > 255 {
            return Err(Error::invalid(
                "app title",
                "a title is 1 to 255 characters and not blank",
            ));
        }
        Ok(App {
            id,
            title,
            hdr_supported: false,
        })
    }

    /// Sets [`App::hdr_supported`].
    pub fn with_hdr(mut self, hdr: bool) -> Self {
        self.hdr_supported = hdr;
        self
    }
}

/// Cover art of an app, served by `/appasset`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppAsset {
    /// MIME type; clients decode PNG reliably (`docs/protocol/moonlight-http.md` § App art).
    pub content_type: String,
    /// The image bytes.
    pub bytes: Vec<u8>,
}

impl AppAsset {
    /// A PNG image. Checks the PNG signature.
    pub fn png(bytes: Vec<u8>) -> Result<Self, Error> {
        const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
        if !bytes.starts_with(SIGNATURE) {
            return Err(Error::invalid("app image", "not a PNG file (bad signature)"));
        }
        Ok(AppAsset {
            content_type: "image/png".to_owned(),
            bytes,
        })
    }
}

impl fmt::Debug for AppAsset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppAsset")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A trusted client certificate and the user it acts for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    /// SHA-256 of the certificate's DER; the key every HTTPS request is authorised by.
    pub fingerprint: Fingerprint,
    /// The client certificate as PEM, exactly as received in pairing phase 1.
    pub cert_pem: String,
    /// The user this client acts for.
    pub user: UserName,
    /// The `devicename` the client sent, if any (clients send `roth`; informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// When the pairing completed (Unix seconds).
    pub paired_at: u64,
}

impl fmt::Debug for Pairing {
    // The certificate is public but long; logs show the fingerprint only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairing")
            .field("fingerprint", &self.fingerprint)
            .field("user", &self.user)
            .field("device_name", &self.device_name)
            .field("paired_at", &self.paired_at)
            .finish_non_exhaustive()
    }
}

/// A video mode `W x H @ F` (`mode` launch parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VideoMode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Refresh rate in frames per second (clients send 0 above 60 only to GFE).
    pub fps: u32,
}

impl VideoMode {
    /// Wolf's default when a client sends no mode: 1920x1080x60.
    pub const DEFAULT: VideoMode = VideoMode {
        width: 1920,
        height: 1080,
        fps: 60,
    };
}

impl Default for VideoMode {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::str::FromStr for VideoMode {
    type Err = Error;

    /// Parses `WxHxF`, e.g. `1920x1080x60`; width and height 1..=16384, fps 0..=1000.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("mode", format!("{s:?} is not WIDTHxHEIGHTxFPS"));
        let mut parts = s.split('x');
        let mut next = || -> Result<u32, Error> { parts.next().ok_or_else(bad)?.parse().map_err(|_| bad()) };
        let (width, height, fps) = (next()?, next()?, next()?);
        if parts.next().is_some()
            || !(1..=16384).contains(&width)
            || !(1..=16384).contains(&height)
            || fps > 1000
        {
            return Err(bad());
        }
        Ok(VideoMode { width, height, fps })
    }
}

impl fmt::Display for VideoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.width, self.height, self.fps)
    }
}

/// The keys a client sends with every `/launch` and `/resume`; a new pair on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamKeys {
    /// `rikey`: keys the control stream (AES-GCM) and audio (AES-CBC).
    pub aes_key: AesKey,
    /// `rikeyid`: the audio IV base.
    pub aes_iv: RiKeyId,
}

/// The stereo `surroundAudioInfo` value, `(0x3 << 16) | 2`, the default when absent.
pub const STEREO_SURROUND_AUDIO_INFO: u32 = 196_610;

/// Everything the streaming side needs from a `/launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// Who launches (from the client certificate → pairing → user).
    pub user: UserName,
    /// The pairing (client certificate) that made the request.
    pub pairing: Fingerprint,
    /// The app to start.
    pub app: AppId,
    /// The client's address as the HTTPS connection saw it.
    pub client_ip: IpAddr,
    /// The local address the client reached us on; stream ports must be on this address.
    pub server_ip: IpAddr,
    /// Requested video mode.
    pub mode: VideoMode,
    /// `surroundAudioInfo`: `(channelMask << 16) | channelCount`.
    pub surround_audio_info: u32,
    /// Stream keys.
    pub keys: StreamKeys,
    /// The client asked for HDR (`hdrMode=1`).
    pub hdr: bool,
    /// Play audio on the host too (`localAudioPlayMode=1`).
    pub host_audio: bool,
    /// Gamepads attached at launch (`remoteControllersBitmap`).
    pub gamepads: u16,
}

impl LaunchRequest {
    /// Audio channel count: `surroundAudioInfo & 0xFFFF` (2, 6 or 8).
    pub fn audio_channels(&self) -> u16 {
        (self.surround_audio_info & 0xFFFF) as u16
    }
}

/// A `/resume`: new keys and possibly a new client address for the user's running session.
/// `appid` and `mode` may be absent (python sends neither) and are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// Who resumes.
    pub user: UserName,
    /// The pairing that made the request.
    pub pairing: Fingerprint,
    /// The client's address now.
    pub client_ip: IpAddr,
    /// The local address the client reached us on.
    pub server_ip: IpAddr,
    /// The new keys.
    pub keys: StreamKeys,
    /// `surroundAudioInfo`, if sent.
    pub surround_audio_info: Option<u32>,
}

/// Where a session is in its life (`docs/protocol/kubernetes.md` § Session phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionPhase {
    /// Recorded; nothing provisioned yet.
    Pending,
    /// Ports, workload and stream registration in progress.
    Initializing,
    /// The stream URL is published; waiting for the client's RTSP handshake and pings.
    WaitForPing,
    /// The client is connected.
    Streaming,
    /// The client went away but the session (and the game) is kept for a resume.
    Paused,
    /// Over; resources are released.
    Ended,
}

/// Where a session's stream is reached and which streaming host carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPlacement {
    /// The `sessionUrl0` handed to the client: `rtsp://<host>:<port>`.
    pub session_url: String,
    /// The name of the streaming host (Wolf) that runs it.
    pub host: String,
    /// The id that host gave the session (Wolf's `session_id`).
    pub host_session_id: String,
    /// Public stream ports of the session, if a relay or allocator assigned them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<StreamPorts>,
}

/// The four per-session stream ports on the public address (`docs/protocol/streaming-ports.md`
/// § Port table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPorts {
    /// RTSP, TCP.
    pub rtsp: u16,
    /// Control (ENet), UDP.
    pub control: u16,
    /// Video RTP, UDP.
    pub video: u16,
    /// Audio RTP, UDP.
    pub audio: u16,
}

impl StreamPorts {
    /// The ports Wolf listens on unless told otherwise, which are also Moonlight's standard
    /// ports: RTSP 48010 (`WOLF_RTSP_SETUP_PORT`), control 47999 (`WOLF_CONTROL_PORT`), video
    /// 48100 (`WOLF_VIDEO_PING_PORT`) and audio 48200 (`WOLF_AUDIO_PING_PORT`).
    pub const WOLF_DEFAULT: StreamPorts = StreamPorts {
        rtsp: 48010,
        control: 47999,
        video: 48100,
        audio: 48200,
    };
}

/// One stream of one app for one user, as the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// Its user.
    pub user: UserName,
    /// The pairing that launched (or last resumed) it.
    pub pairing: Fingerprint,
    /// The app.
    pub app: AppId,
    /// The client's address at the last launch or resume.
    pub client_ip: IpAddr,
    /// The video mode.
    pub mode: VideoMode,
    /// `surroundAudioInfo`.
    pub surround_audio_info: u32,
    /// The current keys.
    pub keys: StreamKeys,
    /// Lifecycle phase.
    pub phase: SessionPhase,
    /// Where it streams from, once placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<StreamPlacement>,
    /// Creation time (Unix seconds).
    pub created_at: u64,
}

impl Session {
    /// A new pending session for a launch request.
    pub fn from_launch(request: &LaunchRequest) -> Self {
        Session {
            id: SessionId::generate(&request.user, request.app),
            user: request.user.clone(),
            pairing: request.pairing.clone(),
            app: request.app,
            client_ip: request.client_ip,
            mode: request.mode,
            surround_audio_info: request.surround_audio_info,
            keys: request.keys,
            phase: SessionPhase::Pending,
            placement: None,
            created_at: unix_now(),
        }
    }
}

/// The server's own identity: the certificate every client pins, its key, and the `uniqueid`
/// `/serverinfo` reports. Must be stable across restarts and identical on every replica.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerIdentity {
    /// The self-signed RSA-2048 certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
    /// The server `uniqueid` (a UUID string).
    pub unique_id: String,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("unique_id", &self.unique_id)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_modes() {
        let m: VideoMode = "1920x1080x60".parse().unwrap();
        assert_eq!(m, VideoMode::DEFAULT);
        assert_eq!(m.to_string(), "1920x1080x60");
        assert_eq!("3840x2160x0".parse::<VideoMode>().unwrap().fps, 0);
        for bad in [
            "",
            "1920x1080",
            "1920x1080x60x1",
            "0x1080x60",
            "axbxc",
            "1920x1080x-1",
            "99999x1x1",
        ] {
            assert!(bad.parse::<VideoMode>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn app_titles_and_assets() {
        let id = AppId::new(1).unwrap();
        assert!(App::new(id, " ").is_err());
        assert!(App::new(id, "Steam").is_ok());
        assert!(AppAsset::png(b"GIF89a".to_vec()).is_err());
        assert!(AppAsset::png(b"\x89PNG\r\n\x1a\nrest".to_vec()).is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let id = ServerIdentity {
            cert_pem: "CERT".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----SECRET".into(),
            unique_id: "u".into(),
        };
        assert!(!format!("{id:?}").contains("SECRET"));
    }
}
