//! The one error type every core trait returns.
//!
//! Callers branch on the semantic variants (`NotFound`, `AlreadyExists`, `Conflict`, `Unavailable`,
//! `Invalid`); each backend keeps a private error enum and maps it into [`Error::Backend`] with the
//! backend's name, the way `object_store` does.

use std::error::Error as StdError;

/// A boxed error from a backend, kept as the source of [`Error::Backend`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors of the core traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{kind} {key:?} not found")]
    NotFound {
        /// What kind of object was looked up (`"pairing"`, `"user"`, ...).
        kind: &'static str,
        /// The key that was looked up.
        key: String,
    },

    /// The object exists already and the operation required that it did not.
    #[error("{kind} {key:?} already exists")]
    AlreadyExists {
        /// What kind of object.
        kind: &'static str,
        /// Its key.
        key: String,
    },

    /// A concurrent writer changed the object; retry with fresh data.
    #[error("conflicting update of {kind} {key:?}: {message}")]
    Conflict {
        /// What kind of object.
        kind: &'static str,
        /// Its key.
        key: String,
        /// What the backend said.
        message: String,
    },

    /// The backend cannot serve the request now (down, overloaded, over a limit); retrying later
    /// may succeed.
    #[error("unavailable: {message}")]
    Unavailable {
        /// A sentence a person understands.
        message: String,
    },

    /// The input is not acceptable (fails validation); retrying the same input will fail again.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid (a field or type name).
        what: &'static str,
        /// Why.
        message: String,
    },

    /// Any other failure of a backend.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// The backend's name (`"memory"`, `"redb"`, `"kubernetes"`, ...).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: &'static str, key: impl ToString) -> Self {
        Error::NotFound {
            kind,
            key: key.to_string(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: &'static str, message: impl ToString) -> Self {
        Error::Invalid {
            what,
            message: message.to_string(),
        }
    }

    /// Shorthand for [`Error::Unavailable`].
    pub fn unavailable(message: impl ToString) -> Self {
        Error::Unavailable {
            message: message.to_string(),
        }
    }

    /// Wraps a backend's own error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. } | Error::Unavailable { .. } | Error::Backend { .. }
        )
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
