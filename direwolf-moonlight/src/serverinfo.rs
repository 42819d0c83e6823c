//! `/serverinfo` (`docs/protocol/moonlight-http.md` § Server info).

use std::net::Ipv4Addr;

use direwolf_core::AppId;

use crate::xml::{Node, XmlReply};

/// `appversion`: the Sunshine/Wolf constant (generation 7, Sunshine extensions;
/// `docs/protocol/moonlight-http.md` § Advertised versions).
pub const APP_VERSION: &str = "7.1.431.-1";
/// `GfeVersion`.
pub const GFE_VERSION: &str = "3.23.0.74";
/// `MaxLumaPixelsHEVC` when HEVC is offered.
pub const MAX_LUMA_PIXELS_HEVC: u64 = 1_869_449_984;
/// `ServerCodecModeSupport` default: H.264 | HEVC Main (`0x101`), as Wolf with HEVC.
pub const DEFAULT_CODEC_MODE_SUPPORT: u32 = 257;
/// The SCM_HEVC bit.
pub const SCM_HEVC: u32 = 0x100;

/// One `DisplayMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Refresh rate.
    pub refresh_rate: u32,
}

impl DisplayMode {
    /// A mode.
    pub const fn new(width: u32, height: u32, refresh_rate: u32) -> Self {
        DisplayMode {
            width,
            height,
            refresh_rate,
        }
    }
}

/// Wolf's 15 display modes, in Wolf's order.
pub const WOLF_DISPLAY_MODES: [DisplayMode; 15] = [
    DisplayMode::new(1280, 720, 120),
    DisplayMode::new(1280, 720, 60),
    DisplayMode::new(1280, 720, 30),
    DisplayMode::new(1920, 1080, 120),
    DisplayMode::new(1920, 1080, 60),
    DisplayMode::new(1920, 1080, 30),
    DisplayMode::new(2560, 1440, 120),
    DisplayMode::new(2560, 1440, 90),
    DisplayMode::new(2560, 1440, 60),
    DisplayMode::new(3840, 2160, 120),
    DisplayMode::new(3840, 2160, 90),
    DisplayMode::new(3840, 2160, 60),
    DisplayMode::new(7680, 4320, 120),
    DisplayMode::new(7680, 4320, 90),
    DisplayMode::new(7680, 4320, 60),
];

/// Everything a `/serverinfo` reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo<'a> {
    /// `hostname`.
    pub hostname: &'a str,
    /// `uniqueid`: the stable server UUID.
    pub unique_id: &'a str,
    /// `ServerCodecModeSupport` (non-zero).
    pub codec_mode_support: u32,
    /// `HttpsPort`.
    pub https_port: u16,
    /// `ExternalPort` (the HTTP port).
    pub external_port: u16,
    /// `mac`.
    pub mac: &'a str,
    /// `LocalIP`.
    pub local_ip: Ipv4Addr,
    /// `SupportedDisplayMode`.
    pub display_modes: &'a [DisplayMode],
    /// `PairStatus`: the request came over HTTPS from a paired certificate.
    pub paired: bool,
    /// The app of the caller's running session (HTTPS only); `None` ⇒ FREE and `currentgame` 0.
    pub current_game: Option<AppId>,
}

impl ServerInfo<'_> {
    /// The XML reply, in Wolf's element order.
    pub fn to_xml(&self) -> XmlReply {
        let luma = if self.codec_mode_support & SCM_HEVC != 0 {
            MAX_LUMA_PIXELS_HEVC
        } else {
            0
        };
        let modes = self
            .display_modes
            .iter()
            .map(|m| {
                Node::Parent(
                    "DisplayMode",
                    vec![
                        Node::leaf("Width", m.width),
                        Node::leaf("Height", m.height),
                        Node::leaf("RefreshRate", m.refresh_rate),
                    ],
                )
            })
            .collect();
        let (current, state) = match self.current_game {
            Some(app) => (app.get(), "SUNSHINE_SERVER_BUSY"),
            None => (0, "SUNSHINE_SERVER_FREE"),
        };
        XmlReply::ok()
            .leaf("hostname", self.hostname)
            .leaf("appversion", APP_VERSION)
            .leaf("GfeVersion", GFE_VERSION)
            .leaf("uniqueid", self.unique_id)
            .leaf("MaxLumaPixelsHEVC", luma)
            .leaf("ServerCodecModeSupport", self.codec_mode_support)
            .leaf("HttpsPort", self.https_port)
            .leaf("ExternalPort", self.external_port)
            .leaf("mac", self.mac)
            .leaf("LocalIP", self.local_ip)
            .child(Node::Parent("SupportedDisplayMode", modes))
            .leaf("PairStatus", u8::from(self.paired))
            .leaf("currentgame", current)
            .leaf("state", state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTPS body of a busy client, 2 023 bytes (`docs/protocol/moonlight-http.md` § Test
    /// vectors).
    const GOLDEN_HTTPS: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\"><hostname>Direwolf</hostname><appversion>7.1.431.-1</appversion><GfeVersion>3.23.0.74</GfeVersion><uniqueid>1f0e4c2a-7b3d-4e59-9a61-3c2d8e0b5f47</uniqueid><MaxLumaPixelsHEVC>1869449984</MaxLumaPixelsHEVC><ServerCodecModeSupport>257</ServerCodecModeSupport><HttpsPort>47984</HttpsPort><ExternalPort>47989</ExternalPort><mac>00:00:00:00:00:00</mac><LocalIP>203.0.113.10</LocalIP><SupportedDisplayMode><DisplayMode><Width>1280</Width><Height>720</Height><RefreshRate>120</RefreshRate></DisplayMode><DisplayMode><Width>1280</Width><Height>720</Height><RefreshRate>60</RefreshRate></DisplayMode><DisplayMode><Width>1280</Width><Height>720</Height><RefreshRate>30</RefreshRate></DisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>120</RefreshRate></DisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>60</RefreshRate></DisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>30</RefreshRate></DisplayMode><DisplayMode><Width>2560</Width><Height>1440</Height><RefreshRate>120</RefreshRate></DisplayMode><DisplayMode><Width>2560</Width><Height>1440</Height><RefreshRate>90</RefreshRate></DisplayMode><DisplayMode><Width>2560</Width><Height>1440</Height><RefreshRate>60</RefreshRate></DisplayMode><DisplayMode><Width>3840</Width><Height>2160</Height><RefreshRate>120</RefreshRate></DisplayMode><DisplayMode><Width>3840</Width><Height>2160</Height><RefreshRate>90</RefreshRate></DisplayMode><DisplayMode><Width>3840</Width><Height>2160</Height><RefreshRate>60</RefreshRate></DisplayMode><DisplayMode><Width>7680</Width><Height>4320</Height><RefreshRate>120</RefreshRate></DisplayMode><DisplayMode><Width>7680</Width><Height>4320</Height><RefreshRate>90</RefreshRate></DisplayMode><DisplayMode><Width>7680</Width><Height>4320</Height><RefreshRate>60</RefreshRate></DisplayMode></SupportedDisplayMode><PairStatus>1</PairStatus><currentgame>2</currentgame><state>SUNSHINE_SERVER_BUSY</state></root>";

    fn direwolf(paired: bool, current_game: Option<AppId>) -> String {
        ServerInfo {
            hostname: "Direwolf",
            unique_id: "1f0e4c2a-7b3d-4e59-9a61-3c2d8e0b5f47",
            codec_mode_support: DEFAULT_CODEC_MODE_SUPPORT,
            https_port: 47984,
            external_port: 47989,
            mac: "00:00:00:00:00:00",
            local_ip: Ipv4Addr::new(203, 0, 113, 10),
            display_modes: &WOLF_DISPLAY_MODES,
            paired,
            current_game,
        }
        .to_xml()
        .render()
    }

    #[test]
    fn golden_https_and_http() {
        let https = direwolf(true, Some(AppId::new(2).unwrap()));
        assert_eq!(https.len(), 2023);
        assert_eq!(https, GOLDEN_HTTPS);
        let http = GOLDEN_HTTPS.replace(
            "<PairStatus>1</PairStatus><currentgame>2</currentgame><state>SUNSHINE_SERVER_BUSY</state>",
            "<PairStatus>0</PairStatus><currentgame>0</currentgame><state>SUNSHINE_SERVER_FREE</state>",
        );
        assert_eq!(direwolf(false, None), http);
    }

    /// Wolf's test body (HTTP, idle) with two display modes (`docs/protocol/moonlight-http.md`
    /// § Test vectors).
    #[test]
    fn golden_wolf() {
        let modes = [DisplayMode::new(1920, 1080, 60), DisplayMode::new(1024, 768, 30)];
        let body = ServerInfo {
            hostname: "Wolf",
            unique_id: "0000-1111-2222-3333",
            codec_mode_support: 257,
            https_port: 47984,
            external_port: 47989,
            mac: "AA:BB:CC:DD",
            local_ip: Ipv4Addr::new(192, 168, 99, 1),
            display_modes: &modes,
            paired: false,
            current_game: None,
        }
        .to_xml()
        .render();
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\"><hostname>Wolf</hostname><appversion>7.1.431.-1</appversion><GfeVersion>3.23.0.74</GfeVersion><uniqueid>0000-1111-2222-3333</uniqueid><MaxLumaPixelsHEVC>1869449984</MaxLumaPixelsHEVC><ServerCodecModeSupport>257</ServerCodecModeSupport><HttpsPort>47984</HttpsPort><ExternalPort>47989</ExternalPort><mac>AA:BB:CC:DD</mac><LocalIP>192.168.99.1</LocalIP><SupportedDisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>60</RefreshRate></DisplayMode><DisplayMode><Width>1024</Width><Height>768</Height><RefreshRate>30</RefreshRate></DisplayMode></SupportedDisplayMode><PairStatus>0</PairStatus><currentgame>0</currentgame><state>SUNSHINE_SERVER_FREE</state></root>"
        );
    }

    #[test]
    fn no_hevc_means_zero_luma() {
        let body = ServerInfo {
            hostname: "h",
            unique_id: "u",
            codec_mode_support: 1,
            https_port: 1,
            external_port: 2,
            mac: "m",
            local_ip: Ipv4Addr::LOCALHOST,
            display_modes: &[],
            paired: false,
            current_game: None,
        }
        .to_xml()
        .render();
        assert!(body.contains("<MaxLumaPixelsHEVC>0</MaxLumaPixelsHEVC>"));
        assert!(body.contains("<SupportedDisplayMode/>"));
    }
}
