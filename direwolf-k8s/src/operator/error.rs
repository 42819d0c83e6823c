//! What can go wrong while reconciling a Session.

/// A failed reconcile step; the Session is reconciled again after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call, e.g. `apply pod alice-desktop-x7k2p`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A cache did not complete its initial list in time.
    #[error("the {0} cache is not synced")]
    NotSynced(&'static str),
    /// The Session lacks what the API server always sets (name, namespace, uid).
    #[error("the Session lacks {0}")]
    Malformed(&'static str),
}

impl Error {
    /// An API error with what was being done.
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }

    /// A short category for logs and metrics: the HTTP status, `transport`, `cache` or
    /// `malformed`.
    pub fn category(&self) -> String {
        match self {
            Error::Api {
                source: kube::Error::Api(status),
                ..
            } => status.code.to_string(),
            Error::Api { .. } => "transport".to_owned(),
            Error::NotSynced(_) => "cache".to_owned(),
            Error::Malformed(_) => "malformed".to_owned(),
        }
    }

    /// The API server's refusal of an object as written (400, 403 from an admission or policy,
    /// 422): retrying the same object cannot succeed. Returns its message.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Error::Api {
                source: kube::Error::Api(status),
                ..
            } if matches!(status.code, 400 | 403 | 422) => Some(&status.message),
            _ => None,
        }
    }
}
