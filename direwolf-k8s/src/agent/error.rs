//! The agent's errors: what ends `direwolf agent` with a failure.

use std::path::PathBuf;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A required setting is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Something that is not a unix socket sits where Wolf's socket belongs.
    #[error(
        "{path} exists but is not a unix socket (file type: {kind}); Wolf's API socket must be \
         there (check WOLF_SOCKET_PATH and the wolf-cfg volume)"
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The health port cannot be served.
    #[error("cannot serve the health port {addr}: {source}")]
    Health {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The udev directory or the netlink socket cannot be set up.
    #[error("cannot set up the controllers' udev relay: {0}")]
    Udev(std::io::Error),
    /// A warm pod's Wolf did not open its socket in time, or the pod went away unclaimed.
    #[error("warm pod {pod}: {reason}")]
    Warm {
        /// The pod.
        pod: String,
        /// What happened.
        reason: String,
    },
    /// The Kubernetes API refused a request that retrying cannot fix.
    #[error("{what}: {source}")]
    Kube {
        /// What the agent was doing.
        what: String,
        /// The cause.
        source: kube::Error,
    },
}
