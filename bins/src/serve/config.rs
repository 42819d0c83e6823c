//! The configuration file of a single-machine direwolf (`direwolf serve --config FILE`).
//!
//! A TOML file; every key is optional except where noted, and unknown keys are errors. The
//! reference of every key (type, default, meaning) with complete examples is
//! `docs/configuration.md`; its tests (`config_docs_tests.rs`) parse every example of it with
//! [`Config::parse`] and check that it lists exactly the keys the loader accepts (the `Raw*`
//! structs below, which refuse unknown fields).
//!
//! Every error names the file and, where it comes from one place in it, the line.
//!
//! [`Config::load`] reads a file, [`Config::parse`] a text (the unit tests below show both).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use direwolf_core::relay::SharedPorts;
use direwolf_core::{App, AppAsset, AppId, StreamPorts};
use serde::Deserialize;
use toml::Spanned;

/// How long a Wolf running sessions may stay unreachable before they are ended, unless
/// `[pool] host_lost_after` says otherwise.
const DEFAULT_HOST_LOST_AFTER: Duration = Duration::from_secs(20);

/// The largest app image accepted (clients show small cover art; this guards against a wrong
/// file being named).
pub const MAX_IMAGE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{path}, line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The column (1-based, in characters).
        column: usize,
        /// The parser's message, on one line.
        message: String,
    },

    /// A value is well typed but not acceptable.
    #[error("{path}, line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },

    /// Two apps have the same id.
    #[error("{path}, line {line}: app id {id} is already used by the app at line {first_line}")]
    DuplicateAppId {
        /// The file.
        path: PathBuf,
        /// The line of the second use.
        line: usize,
        /// The line of the first use.
        first_line: usize,
        /// The id.
        id: AppId,
    },

    /// An app's image could not be read.
    #[error("{path}, line {line}: cannot read the image {image} of app {id}: {source}")]
    ImageRead {
        /// The configuration file.
        path: PathBuf,
        /// The line of the `image` key.
        line: usize,
        /// The app.
        id: AppId,
        /// The image file.
        image: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// An app's image is not a PNG file (or too large).
    #[error("{path}, line {line}: the image {image} of app {id} {reason}")]
    BadImage {
        /// The configuration file.
        path: PathBuf,
        /// The line of the `image` key.
        line: usize,
        /// The app.
        id: AppId,
        /// The image file.
        image: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The server name clients show, if set.
    pub hostname: Option<String>,
    /// The apps, in file order, with their images loaded.
    pub apps: Vec<AppConfig>,
    /// The `[[wolf]]` streaming hosts, in file order (empty: no streaming).
    pub wolves: Vec<WolfConfig>,
    /// The `[relay]` settings (defaults when the table is absent).
    pub relay: RelaySettings,
    /// `[pool] host_lost_after`: how long a Wolf running sessions may stay unreachable before
    /// they are ended (default 20 s).
    pub host_lost_after: Duration,
    /// `allow_unauthenticated_pin = true`: accept PINs entered without login (as the flag
    /// `--allow-unauthenticated-pin`; either one allows it).
    pub allow_unauthenticated_pin: bool,
}

/// How direwolf reaches a Wolf's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WolfApi {
    /// Wolf's unix socket (an absolute path).
    Unix(PathBuf),
    /// Plain HTTP at `host:port` (a proxy in front of the socket), from `tcp://host:port`.
    Tcp(String),
}

/// One `[[wolf]]` entry: a Wolf instance sessions can be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WolfConfig {
    /// Unique name (logs, session placement).
    pub name: String,
    /// Where its API is.
    pub api: WolfApi,
    /// The IP its stream ports are reached at.
    pub stream_address: std::net::IpAddr,
    /// RTSP port (Wolf default 48010).
    pub rtsp_port: u16,
    /// Video ping port (Wolf default 48100).
    pub video_port: u16,
    /// Audio ping port (Wolf default 48200).
    pub audio_port: u16,
    /// Control (ENet) port (Wolf default 47999).
    pub control_port: u16,
    /// Sessions at once (at least 1; default 1).
    pub capacity: usize,
}

/// The `[relay]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// The address the relay listens on; `None`: decided from the bind addresses.
    pub public_address: Option<std::net::IpAddr>,
    /// Public ports handed to sessions (four each).
    pub port_range: RangeInclusive<u16>,
    /// Idle time after which a client's UDP mapping is forgotten.
    pub udp_idle_timeout: Duration,
    /// `shared = true`: every session on this one port set (`port_range` then only holds RTSP
    /// ports for launches the shared RTSP port cannot tell apart).
    pub shared: Option<SharedPorts>,
    /// `fast_path = true`: hand admitted flows to the kernel (nftables), where it can.
    pub fast_path: bool,
}

impl Default for RelaySettings {
    /// No fixed address, ports 40000-40999, 60 s idle timeout, a port set per session.
    fn default() -> Self {
        RelaySettings {
            public_address: None,
            port_range: 40000..=40999,
            udp_idle_timeout: Duration::from_secs(60),
            shared: None,
            fast_path: false,
        }
    }
}

/// One `[[apps]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The app as the catalog holds it.
    pub app: App,
    /// The image file, resolved against the configuration file's directory.
    pub image: Option<PathBuf>,
    /// The image's content.
    pub asset: Option<AppAsset>,
    /// The Wolf `app_id` to run for it (`None`: Wolf's placeholder app).
    pub wolf_app_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    wolf: Vec<RawWolf>,
    relay: Option<Spanned<RawRelay>>,
    pool: Option<RawPool>,
    allow_unauthenticated_pin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    host_lost_after: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWolf {
    name: Spanned<String>,
    api: Spanned<String>,
    stream_address: Spanned<String>,
    rtsp_port: Option<Spanned<u16>>,
    video_port: Option<Spanned<u16>>,
    audio_port: Option<Spanned<u16>>,
    control_port: Option<Spanned<u16>>,
    capacity: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    public_address: Option<Spanned<String>>,
    port_range: Option<Spanned<String>>,
    udp_idle_timeout: Option<Spanned<u64>>,
    shared: Option<bool>,
    fast_path: Option<bool>,
    rtsp_port: Option<Spanned<u16>>,
    video_port: Option<Spanned<u16>>,
    audio_port: Option<Spanned<u16>>,
    control_port: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    title: Spanned<String>,
    id: Spanned<AppId>,
    image: Option<Spanned<PathBuf>>,
    #[serde(default)]
    hdr: bool,
    wolf_app_id: Option<Spanned<String>>,
}

/// The text being parsed and its path: turns spans into lines and errors.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    /// The 1-based line of a span's start.
    fn line(&self, span: Range<usize>) -> usize {
        self.text
            .get(..span.start)
            .map_or(1, |before| before.matches('\n').count() + 1)
    }

    /// A parser error on one line: its position and message, without the quoted source.
    fn syntax(&self, error: &toml::de::Error) -> ConfigError {
        let start = error.span().map_or(0, |span| span.start);
        let line_start = self
            .text
            .get(..start)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let column = self
            .text
            .get(line_start..start)
            .map_or(1, |b| b.chars().count() + 1);
        ConfigError::Syntax {
            path: self.path.to_owned(),
            line: self.line(start..start),
            column,
            message: error.message().split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// An IP address; a host name is refused by name (nothing here resolves names).
    fn ip(&self, value: Spanned<String>, what: impl FnOnce() -> String) -> Result<IpAddr, ConfigError> {
        let span = value.span();
        let text = value.into_inner();
        text.parse().map_err(|_| {
            let message = format!(
                "{} {text:?} must be an IP address (host names are not resolved)",
                what()
            );
            self.invalid(span, message)
        })
    }

    fn invalid(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(span),
            message,
        }
    }

    /// A name-like value: `max` bytes at most, not blank, no control characters.
    fn name(
        &self,
        value: Spanned<String>,
        max: usize,
        what: impl FnOnce(&str) -> String,
    ) -> Result<String, ConfigError> {
        let span = value.span();
        let value = value.into_inner();
        if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
            let message = format!(
                "{} must be 1 to {max} bytes without control characters",
                what(&value)
            );
            return Err(self.invalid(span, message));
        }
        Ok(value)
    }

    /// A number of seconds from 1 to 86400.
    fn seconds(&self, value: Spanned<u64>, what: &str) -> Result<Duration, ConfigError> {
        let span = value.span();
        let secs = value.into_inner();
        if !(1..=86_400).contains(&secs) {
            return Err(self.invalid(span, format!("{what} {secs} must be 1 to 86400 seconds")));
        }
        Ok(Duration::from_secs(secs))
    }

    fn apps(&self, raw: Vec<RawApp>) -> Result<Vec<AppConfig>, ConfigError> {
        let mut first_use: HashMap<AppId, usize> = HashMap::new();
        let mut apps = Vec::with_capacity(raw.len());
        for raw_app in raw {
            let id_line = self.line(raw_app.id.span());
            if let Some(&first_line) = first_use.get(raw_app.id.get_ref()) {
                return Err(ConfigError::DuplicateAppId {
                    path: self.path.to_owned(),
                    line: id_line,
                    first_line,
                    id: *raw_app.id.get_ref(),
                });
            }
            first_use.insert(*raw_app.id.get_ref(), id_line);
            apps.push(self.app(raw_app)?);
        }
        Ok(apps)
    }

    fn app(&self, raw: RawApp) -> Result<AppConfig, ConfigError> {
        let id = raw.id.into_inner();
        let title_span = raw.title.span();
        let app = App::new(id, raw.title.into_inner())
            .map_err(|e| self.invalid(title_span, format!("app {id}: {e}")))?
            .with_hdr(raw.hdr);
        let (image, asset) = match raw.image {
            None => (None, None),
            Some(image) => {
                let (image, asset) = self.image(id, image)?;
                (Some(image), Some(asset))
            }
        };
        let wolf_app_id = raw
            .wolf_app_id
            .map(|w| self.name(w, 255, |w| format!("app {id}: wolf_app_id {w:?}")))
            .transpose()?;
        Ok(AppConfig {
            app,
            image,
            asset,
            wolf_app_id,
        })
    }

    /// Loads an app's image, resolved against the configuration file's directory.
    fn image(&self, id: AppId, image: Spanned<PathBuf>) -> Result<(PathBuf, AppAsset), ConfigError> {
        let line = self.line(image.span());
        let base = self.path.parent().unwrap_or(Path::new(""));
        let image = base.join(image.into_inner());
        let path = self.path.to_owned();
        let asset = load_png(&image).map_err(|e| match e {
            ImageProblem::Io(source) => ConfigError::ImageRead {
                path,
                line,
                id,
                image: image.clone(),
                source,
            },
            ImageProblem::Bad(reason) => ConfigError::BadImage {
                path,
                line,
                id,
                image: image.clone(),
                reason,
            },
        })?;
        Ok((image, asset))
    }

    fn wolves(&self, raw: Vec<RawWolf>) -> Result<Vec<WolfConfig>, ConfigError> {
        let mut wolves: Vec<WolfConfig> = Vec::with_capacity(raw.len());
        for w in raw {
            let name_span = w.name.span();
            let wolf = self.wolf(w)?;
            if wolves.iter().any(|o| o.name == wolf.name) {
                let message = format!("two [[wolf]] entries are named {:?}", wolf.name);
                return Err(self.invalid(name_span, message));
            }
            wolves.push(wolf);
        }
        Ok(wolves)
    }

    fn wolf(&self, w: RawWolf) -> Result<WolfConfig, ConfigError> {
        let name = self.name(w.name, 63, |name| format!("wolf name {name:?}"))?;
        let api = self.wolf_api(&name, w.api)?;
        let port = |p: Option<Spanned<u16>>, default: u16, what: &str| match p {
            None => Ok(default),
            Some(p) if *p.get_ref() == 0 => {
                Err(self.invalid(p.span(), format!("wolf {name}: {what} must not be 0")))
            }
            Some(p) => Ok(p.into_inner()),
        };
        let capacity = match w.capacity {
            None => 1,
            Some(c) if *c.get_ref() == 0 => {
                return Err(self.invalid(c.span(), format!("wolf {name}: capacity must be at least 1")));
            }
            Some(c) => c.into_inner(),
        };
        let wolf = StreamPorts::WOLF_DEFAULT;
        Ok(WolfConfig {
            rtsp_port: port(w.rtsp_port, wolf.rtsp, "rtsp_port")?,
            video_port: port(w.video_port, wolf.video, "video_port")?,
            audio_port: port(w.audio_port, wolf.audio, "audio_port")?,
            control_port: port(w.control_port, wolf.control, "control_port")?,
            capacity,
            api,
            stream_address: self.ip(w.stream_address, || format!("wolf {name}: stream_address"))?,
            name,
        })
    }

    /// `tcp://HOST:PORT` or an absolute socket path.
    fn wolf_api(&self, name: &str, api: Spanned<String>) -> Result<WolfApi, ConfigError> {
        let span = api.span();
        let text = api.into_inner();
        if let Some(addr) = text.strip_prefix("tcp://") {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
            if !port_ok || addr.contains('/') {
                return Err(self.invalid(span, format!("wolf {name}: api {text:?} must be tcp://HOST:PORT")));
            }
            return Ok(WolfApi::Tcp(addr.to_owned()));
        }
        let path = PathBuf::from(&text);
        if !path.is_absolute() {
            let message =
                format!("wolf {name}: api {text:?} must be an absolute socket path or tcp://HOST:PORT");
            return Err(self.invalid(span, message));
        }
        Ok(WolfApi::Unix(path))
    }

    fn relay(&self, raw: Option<Spanned<RawRelay>>) -> Result<RelaySettings, ConfigError> {
        let mut relay = RelaySettings::default();
        let Some(raw) = raw else {
            return Ok(relay);
        };
        let table = raw.span();
        let mut r = raw.into_inner();
        relay.public_address = r
            .public_address
            .take()
            .map(|a| self.ip(a, || "relay public_address".to_owned()))
            .transpose()?;
        if let Some(range) = r.port_range.take() {
            relay.port_range = self.port_range(range)?;
        }
        if let Some(t) = r.udp_idle_timeout.take() {
            relay.udp_idle_timeout = self.seconds(t, "relay udp_idle_timeout")?;
        }
        relay.fast_path = r.fast_path.take().unwrap_or(false);
        relay.shared = self.shared_ports(r, table)?;
        Ok(relay)
    }

    /// The shared port set of `shared = true`; its port keys are refused without it.
    fn shared_ports(&self, r: RawRelay, table: Range<usize>) -> Result<Option<SharedPorts>, ConfigError> {
        let keys = [
            ("rtsp_port", r.rtsp_port),
            ("video_port", r.video_port),
            ("audio_port", r.audio_port),
            ("control_port", r.control_port),
        ];
        if r.shared != Some(true) {
            if let Some((key, Some(port))) = keys.into_iter().find(|(_, p)| p.is_some()) {
                return Err(self.invalid(
                    port.span(),
                    format!("relay {key} applies only with shared = true"),
                ));
            }
            return Ok(None);
        }
        let mut ports = SharedPorts::default();
        for (key, port) in keys {
            let Some(port) = port else { continue };
            if *port.get_ref() == 0 {
                return Err(self.invalid(port.span(), format!("relay {key} must not be 0")));
            }
            let slot = match key {
                "rtsp_port" => &mut ports.rtsp,
                "video_port" => &mut ports.video,
                "audio_port" => &mut ports.audio,
                _ => &mut ports.control,
            };
            *slot = port.into_inner();
        }
        let udp = [ports.video, ports.audio, ports.control];
        if udp[0] == udp[1] || udp[1] == udp[2] || udp[0] == udp[2] {
            return Err(self.invalid(
                table,
                format!(
                    "relay video_port, audio_port and control_port must differ (they are {}, {}, {})",
                    udp[0], udp[1], udp[2]
                ),
            ));
        }
        Ok(Some(ports))
    }

    /// `FIRST-LAST`, at least four ports (one session), none of them 0.
    fn port_range(&self, range: Spanned<String>) -> Result<RangeInclusive<u16>, ConfigError> {
        let span = range.span();
        let text = range.into_inner();
        let parsed = text
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
        match parsed {
            Some((a, b)) if a > 0 && b >= a && u32::from(b) - u32::from(a) >= 3 => Ok(a..=b),
            Some((a, b)) if b < a => Err(self.invalid(
                span,
                format!("relay port_range {text:?} is reversed: write it FIRST-LAST, as \"{b}-{a}\""),
            )),
            _ => Err(self.invalid(
                span,
                format!("relay port_range {text:?} must be FIRST-LAST with 0 < FIRST and at least 4 ports"),
            )),
        }
    }
}

impl Config {
    /// Reads and validates `path`, loading the app images it names.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`]: unreadable file, bad TOML or unknown key (with line and column),
    /// invalid hostname or title, duplicate app id, unreadable or non-PNG image.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text` as if read from `path` (images are resolved against its directory).
    ///
    /// # Errors
    ///
    /// As [`Config::load`], except [`ConfigError::Read`] of the file itself.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = Source { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| source.syntax(&e))?;
        let hostname = raw
            .hostname
            .map(|name| source.name(name, 255, |name| format!("hostname {name:?}")))
            .transpose()?;
        let host_lost_after = match raw.pool.and_then(|p| p.host_lost_after) {
            Some(t) => source.seconds(t, "pool host_lost_after")?,
            None => DEFAULT_HOST_LOST_AFTER,
        };
        Ok(Config {
            path: path.to_owned(),
            hostname,
            apps: source.apps(raw.apps)?,
            wolves: source.wolves(raw.wolf)?,
            relay: source.relay(raw.relay)?,
            host_lost_after,
            allow_unauthenticated_pin: raw.allow_unauthenticated_pin.unwrap_or(false),
        })
    }

    /// The apps and their art, ready for an app catalog.
    pub fn catalog(&self) -> Vec<(App, Option<AppAsset>)> {
        self.apps
            .iter()
            .map(|a| (a.app.clone(), a.asset.clone()))
            .collect()
    }
}

/// The catalog of a server started without a configuration file: one app, `Desktop` (id 1), so
/// a client has something to show.
pub fn default_catalog() -> Vec<(App, Option<AppAsset>)> {
    let app = App::new(AppId::new(1).expect("1 is a valid app id"), "Desktop").expect("a valid title");
    vec![(app, None)]
}

enum ImageProblem {
    Io(io::Error),
    Bad(String),
}

fn load_png(path: &Path) -> Result<AppAsset, ImageProblem> {
    let size = std::fs::metadata(path).map_err(ImageProblem::Io)?.len();
    if size > MAX_IMAGE_BYTES {
        return Err(ImageProblem::Bad(format!(
            "is {size} bytes, more than the {MAX_IMAGE_BYTES} accepted"
        )));
    }
    let bytes = std::fs::read(path).map_err(ImageProblem::Io)?;
    AppAsset::png(bytes)
        .map_err(|_| ImageProblem::Bad("is not a PNG file (it lacks the PNG signature)".into()))
}

#[cfg(test)]
#[path = "config_docs_tests.rs"]
mod docs_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/direwolf/direwolf.toml"))
    }

    #[test]
    fn full_file_with_images() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("art")).unwrap();
        std::fs::write(dir.path().join("art/steam.png"), PNG).unwrap();
        let path = dir.path().join("direwolf.toml");
        std::fs::write(
            &path,
            "hostname = \"living-room\"\n\n[[apps]]\ntitle = \"Desktop\"\nid = 1\n\n[[apps]]\n\
             title = \"Steam 🎮\"\nid = 2\nimage = \"art/steam.png\"\nhdr = true\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.hostname.as_deref(), Some("living-room"));
        assert_eq!(config.apps.len(), 2);
        assert_eq!(
            config.apps[0].app,
            App::new(AppId::new(1).unwrap(), "Desktop").unwrap()
        );
        assert!(config.apps[0].asset.is_none());
        assert_eq!(config.apps[1].app.title, "Steam 🎮");
        assert!(config.apps[1].app.hdr_supported);
        assert_eq!(
            config.apps[1].image.as_deref(),
            Some(dir.path().join("art/steam.png").as_path())
        );
        assert_eq!(config.apps[1].asset.as_ref().unwrap().bytes, PNG);
        let catalog = config.catalog();
        assert_eq!(catalog.len(), 2);
        assert_eq!(catalog[1].1.as_ref().unwrap().content_type, "image/png");
    }

    #[test]
    fn wolf_pool_and_relay() {
        let config = parse(
            "[[apps]]\ntitle = \"A\"\nid = 1\nwolf_app_id = \"steam\"\n\n[relay]\npublic_address = \"10.0.0.1\"\n\
             port_range = \"41000-41099\"\nudp_idle_timeout = 30\n\n[[wolf]]\nname = \"a\"\napi = \"/run/a.sock\"\n\
             stream_address = \"10.0.0.2\"\n\n[[wolf]]\nname = \"b\"\napi = \"tcp://10.0.0.3:8080\"\n\
             stream_address = \"10.0.0.3\"\nrtsp_port = 1\ncapacity = 2\n",
        )
        .unwrap();
        assert_eq!(config.apps[0].wolf_app_id.as_deref(), Some("steam"));
        assert_eq!(config.relay.public_address, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(config.relay.port_range, 41000..=41099);
        assert_eq!(config.relay.udp_idle_timeout.as_secs(), 30);
        assert_eq!(config.wolves.len(), 2);
        let a = &config.wolves[0];
        assert_eq!(a.api, WolfApi::Unix("/run/a.sock".into()));
        assert_eq!(
            (
                a.rtsp_port,
                a.video_port,
                a.audio_port,
                a.control_port,
                a.capacity
            ),
            (48010, 48100, 48200, 47999, 1)
        );
        let b = &config.wolves[1];
        assert_eq!(b.api, WolfApi::Tcp("10.0.0.3:8080".into()));
        assert_eq!((b.rtsp_port, b.capacity), (1, 2));
        assert_eq!(parse("").unwrap().relay, RelaySettings::default());
        assert_eq!(config.relay.shared, None, "a port set per session by default");
        let shared = parse("[relay]\nshared = true\nrtsp_port = 8554\n")
            .unwrap()
            .relay
            .shared;
        assert_eq!(
            shared,
            Some(SharedPorts {
                rtsp: 8554,
                ..SharedPorts::default()
            }),
            "Moonlight's ports but for the one overridden"
        );
        assert_eq!(parse("").unwrap().host_lost_after.as_secs(), 20);
        assert_eq!(
            parse("[pool]\nhost_lost_after = 3\n")
                .unwrap()
                .host_lost_after
                .as_secs(),
            3
        );

        let wolf = "[[wolf]]\nname = \"a\"\napi = \"/a\"\nstream_address = \"10.0.0.2\"\n";
        for (text, needle) in [
            (format!("{wolf}{wolf}"), "two [[wolf]]"),
            (format!("{wolf}capacity = 0\n"), "capacity"),
            (format!("{wolf}video_port = 0\n"), "video_port"),
            (format!("{wolf}gpu = 1\n"), "gpu"),
            (
                "[[wolf]]\nname = \"a\"\napi = \"rel.sock\"\nstream_address = \"10.0.0.2\"\n".to_owned(),
                "absolute",
            ),
            (
                "[[wolf]]\nname = \"a\"\napi = \"tcp://x\"\nstream_address = \"10.0.0.2\"\n".to_owned(),
                "tcp://HOST:PORT",
            ),
            (
                "[[wolf]]\nname = \"a\"\napi = \"/a\"\nstream_address = \"wolf.lan\"\n".to_owned(),
                "stream_address \"wolf.lan\" must be an IP address",
            ),
            (
                "[relay]\npublic_address = \"router.lan\"\n".to_owned(),
                "public_address \"router.lan\" must be an IP address",
            ),
            ("[relay]\nport_range = \"40999-40000\"\n".to_owned(), "reversed"),
            ("[relay]\nport_range = \"5-6\"\n".to_owned(), "at least 4"),
            ("[relay]\nudp_idle_timeout = 0\n".to_owned(), "udp_idle_timeout"),
            ("[relay]\nport = 1\n".to_owned(), "port"),
            (
                "[relay]\nrtsp_port = 48010\n".to_owned(),
                "only with shared = true",
            ),
            (
                "[relay]\nshared = true\nvideo_port = 0\n".to_owned(),
                "video_port must not be 0",
            ),
            (
                "[relay]\nshared = true\naudio_port = 48100\n".to_owned(),
                "must differ",
            ),
            ("[pool]\nhost_lost_after = 0\n".to_owned(), "host_lost_after"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("line"), "{text:?}: {err}");
        }
    }

    #[test]
    fn empty_file_is_valid() {
        let config = parse("").unwrap();
        assert_eq!(config.hostname, None);
        assert!(config.apps.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_line_numbers() {
        let err = parse("hostname = \"a\"\nport = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(
            text.contains("line 2, column 1") && text.contains("port"),
            "{text}"
        );
        assert!(
            text.contains("direwolf.toml") && !text.contains('\n'),
            "one line: {text}"
        );

        let err = parse("[[apps]]\ntitle = \"A\"\nid = 1\ncolour = \"red\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 4") && text.contains("colour"), "{text}");
    }

    #[test]
    fn duplicate_app_ids_are_errors() {
        let err = parse("[[apps]]\ntitle = \"A\"\nid = 5\n\n[[apps]]\ntitle = \"B\"\nid = 5\n").unwrap_err();
        match &err {
            ConfigError::DuplicateAppId {
                line, first_line, id, ..
            } => {
                assert_eq!((*line, *first_line, id.get()), (7, 3, 5));
            }
            other => panic!("expected DuplicateAppId, got {other:?}"),
        }
        assert!(
            err.to_string().contains("line 7") && err.to_string().contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        for (text, needle) in [
            ("[[apps]]\ntitle = \"A\"\nid = 0\n", "line 3"),
            ("[[apps]]\ntitle = \"A\"\nid = 4294967296\n", "line 3"),
            ("[[apps]]\ntitle = \"A\"\nid = \"x\"\n", "line 3"),
            ("[[apps]]\ntitle = \"   \"\nid = 1\n", "line 2"),
            ("[[apps]]\nid = 1\n", "title"),
            ("hostname = \"\"\n", "line 1"),
            ("hostname = \"a\\nb\"\n", "hostname"),
            ("hostname = 3\n", "line 1"),
            ("[[apps]\n", "line 1"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(needle), "{text:?} gave {err}");
        }
    }

    #[test]
    fn images_must_be_readable_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(dir.path().join("cover.jpg"), b"\xff\xd8\xff\xe0JFIF").unwrap();
        let err =
            Config::parse("[[apps]]\ntitle = \"A\"\nid = 1\nimage = \"cover.jpg\"\n", &path).unwrap_err();
        assert!(matches!(err, ConfigError::BadImage { line: 4, .. }), "{err:?}");
        assert!(
            err.to_string().contains("cover.jpg") && err.to_string().contains("not a PNG"),
            "{err}"
        );

        let err = Config::parse(
            "[[apps]]\ntitle = \"A\"\nid = 1\nimage = \"missing.png\"\n",
            &path,
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::ImageRead { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.png"), "{err}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load(Path::new("/nonexistent/direwolf.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/direwolf.toml"));
    }

    #[test]
    fn default_catalog_is_one_desktop() {
        let catalog = default_catalog();
        assert_eq!(catalog.len(), 1);
        assert_eq!(
            (catalog[0].0.id.get(), catalog[0].0.title.as_str()),
            (1, "Desktop")
        );
    }
}
