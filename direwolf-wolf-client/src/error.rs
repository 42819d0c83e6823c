//! Errors of the Wolf client.

use std::path::PathBuf;
use std::time::Duration;

use crate::version::WolfVersion;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to Wolf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was refused before anything was sent, because Wolf would have crashed or
    /// misbehaved on it (`docs/protocol/wolf-api.md` § Crash hazards) or because it is malformed.
    #[error("invalid request to {endpoint}: {source}")]
    Validation {
        /// The endpoint (path) the request was for.
        endpoint: &'static str,
        /// What is wrong.
        #[source]
        source: ValidationError,
    },
    /// The Wolf in front does not have this endpoint (detected from its OpenAPI schema).
    #[error(
        "{endpoint} is not supported by the Wolf in front (detected {detected_version}, needs {required})"
    )]
    Unsupported {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The version detected for the running Wolf.
        detected_version: WolfVersion,
        /// The first version with this endpoint.
        required: WolfVersion,
    },
    /// The unix socket file does not exist (Wolf not started yet, or wrong path).
    #[error("Wolf socket {path} does not exist (is Wolf running and the directory mounted?)")]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// Nothing accepts connections at the address (socket file left over, or Wolf down).
    #[error("connection to Wolf at {target} refused (is Wolf running?)")]
    ConnectionRefused {
        /// The socket path or TCP address.
        target: String,
    },
    /// Any other failure to connect.
    #[error("cannot connect to Wolf at {target}: {source}")]
    Connect {
        /// The socket path or TCP address.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The call did not finish within the configured time.
    #[error("{endpoint}: Wolf did not answer within {after:?}")]
    Timeout {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// Wolf closed the connection without sending a response (it may have crashed).
    #[error("{endpoint}: Wolf closed the connection without answering")]
    ClosedWithoutResponse {
        /// The endpoint (path).
        endpoint: &'static str,
    },
    /// Wolf answered `{"success":false,"error":...}`.
    #[error("{endpoint}: Wolf answered {status} with error {message:?}")]
    Wolf {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The known meaning of `message`, if any.
        kind: WolfErrorKind,
        /// The error text exactly as Wolf sent it.
        message: String,
    },
    /// Wolf answered 404 with an empty body: the route does not exist on this Wolf.
    #[error("{endpoint}: Wolf has no such route (404)")]
    RouteNotFound {
        /// The endpoint (path).
        endpoint: &'static str,
    },
    /// Wolf answered with an unexpected status and a body that is not its JSON error shape (e.g. the
    /// plain-text rejection of chunked requests).
    #[error("{endpoint}: Wolf answered {status}: {body:?}")]
    UnexpectedResponse {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The body, lossily decoded and cut to 512 bytes.
        body: String,
    },
    /// The body is not the JSON expected (malformed, wrong shape, or cut short).
    #[error("{endpoint}: Wolf's answer is not the expected JSON: {source}")]
    InvalidJson {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The connection closed before the announced `Content-Length` body arrived.
    #[error("{endpoint}: Wolf's answer was cut short")]
    Truncated {
        /// The endpoint (path).
        endpoint: &'static str,
    },
    /// The response body is larger than the configured limit.
    #[error("{endpoint}: Wolf's answer is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes received are not an HTTP response.
    #[error("{endpoint}: HTTP protocol error: {source}")]
    Protocol {
        /// The endpoint (path).
        endpoint: &'static str,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// The client configuration is invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The [`WolfErrorKind`] if this is an error answered by Wolf.
    pub fn wolf_kind(&self) -> Option<WolfErrorKind> {
        match self {
            Error::Wolf { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (Wolf down, slow, or cut the connection).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::SocketMissing { .. }
                | Error::ConnectionRefused { .. }
                | Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::ClosedWithoutResponse { .. }
                | Error::Truncated { .. }
        )
    }
}

/// Known error messages of Wolf, so callers can branch without matching text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WolfErrorKind {
    /// `Invalid session_id` (unknown session, or several sessions share the id).
    InvalidSessionId,
    /// `Invalid client_id`.
    InvalidClientId,
    /// `Invalid app_id`.
    InvalidAppId,
    /// `Client not found`.
    ClientNotFound,
    /// `Invalid pair secret`.
    InvalidPairSecret,
    /// `Invalid lobby ID`.
    InvalidLobbyId,
    /// `Invalid PIN`.
    InvalidPin,
    /// `Lobby setup timed out`.
    LobbySetupTimeout,
    /// `Lobby join timed out`.
    LobbyJoinTimeout,
    /// `Lobby or session not found`.
    LobbyOrSessionNotFound,
    /// `Lobby is full`.
    LobbyFull,
    /// `Moonlight profile not found` / `No moonlight profile found`.
    MoonlightProfileNotFound,
    /// `Icon not found`.
    IconNotFound,
    /// `Image not found`.
    ImageNotFound,
    /// `Failed to pull image`.
    PullFailed,
    /// `Invalid request format...` or a JSON parse error reported by Wolf.
    InvalidRequest,
    /// Any other message.
    Other,
}

impl WolfErrorKind {
    /// Classifies a Wolf error message.
    pub fn from_message(message: &str) -> Self {
        match message {
            "Invalid session_id" => Self::InvalidSessionId,
            "Invalid client_id" => Self::InvalidClientId,
            "Invalid app_id" => Self::InvalidAppId,
            "Client not found" => Self::ClientNotFound,
            "Invalid pair secret" => Self::InvalidPairSecret,
            "Invalid lobby ID" => Self::InvalidLobbyId,
            "Invalid PIN" => Self::InvalidPin,
            "Lobby setup timed out" => Self::LobbySetupTimeout,
            "Lobby join timed out" => Self::LobbyJoinTimeout,
            "Lobby or session not found" => Self::LobbyOrSessionNotFound,
            "Lobby is full" => Self::LobbyFull,
            "Moonlight profile not found" | "No moonlight profile found" => Self::MoonlightProfileNotFound,
            "Icon not found" => Self::IconNotFound,
            "Image not found" => Self::ImageNotFound,
            "Failed to pull image" => Self::PullFailed,
            m if m.starts_with("Invalid request format") || m.starts_with("Field named") => {
                Self::InvalidRequest
            }
            _ => Self::Other,
        }
    }
}

/// Why a request was refused before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An id is not `^[0-9]{1,20}$` with a value `<= u64::MAX` (Wolf's `stoull` would throw and the
    /// whole Wolf process would exit).
    #[error("{field} {value:?} is not a decimal unsigned 64-bit integer")]
    InvalidId {
        /// The field.
        field: &'static str,
        /// The rejected text.
        value: String,
    },
    /// `rtsp_fake_ip` must be a non-empty dotted-decimal IPv4 address.
    #[error("rtsp_fake_ip {0:?} is not a dotted-decimal IPv4 address")]
    InvalidRtspFakeIp(String),
    /// `aes_key` must be 32 hexadecimal characters (the value is not shown).
    #[error("aes_key is not 32 hexadecimal characters")]
    InvalidAesKey,
    /// `aes_iv` must be a decimal unsigned 32-bit integer (the value is not shown).
    #[error("aes_iv is not a decimal unsigned 32-bit integer")]
    InvalidAesIv,
    /// `sessions/start` for a session Wolf does not have (Wolf would crash).
    #[error("session {0} does not exist on this Wolf")]
    SessionNotFound(crate::ids::SessionId),
    /// `input_packet_hex` is not an even number of hexadecimal characters.
    #[error("input_packet_hex is not an even-length hexadecimal string")]
    InvalidHex,
    /// A query parameter value Wolf cannot receive (empty, contains `=`, `&`, `#`, space or control
    /// characters; Wolf does no percent-decoding).
    #[error("{field} {value:?} cannot be passed in Wolf's query string")]
    InvalidQueryValue {
        /// The parameter.
        field: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A field the detected Wolf version requires is missing.
    #[error("{field} is required by Wolf {version}")]
    MissingField {
        /// The field.
        field: &'static str,
        /// The detected version.
        version: WolfVersion,
    },
}
