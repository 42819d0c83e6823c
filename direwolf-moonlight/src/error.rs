//! The errors of building and running a server.

use std::net::SocketAddr;

use crate::identity::IdentityError;

/// Why a server could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The identity store failed.
    #[error("the identity store failed: {0}")]
    IdentityStore(#[source] direwolf_core::Error),
    /// The server identity could not be generated or the stored one is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The rustls configuration could not be built from the identity.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No address was given to listen on.
    #[error("no address to listen on")]
    NoBindAddress,
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// `Result` with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
