//! The private error of the Kubernetes stores and how it maps to [`direwolf_core::Error`].

use crate::retry::{is_transient, is_transient_status};

/// The name of this backend in [`direwolf_core::Error::Backend`].
pub(crate) const BACKEND: &str = "kubernetes";

/// What went wrong in a Kubernetes store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeStoreError {
    /// The API server answered with an error status.
    #[error("{verb} {kind} {key:?}: API server said {code} {reason}: {message}")]
    Api {
        /// What was attempted (`create`, `apply`, ...).
        verb: &'static str,
        /// The kind of core object (`"pairing"`, ...).
        kind: &'static str,
        /// Its key.
        key: String,
        /// HTTP status code.
        code: u16,
        /// The Status reason (`AlreadyExists`, `Conflict`, `Invalid`, ...).
        reason: String,
        /// The server's message (for 422, names the field).
        message: String,
    },

    /// The request did not get an answer (connection refused or reset, timeout, TLS): a
    /// transient client error ([`is_transient`]).
    #[error("{verb} {kind} {key:?}: cannot reach the API server: {source}")]
    Transport {
        /// What was attempted.
        verb: &'static str,
        /// The kind of core object.
        kind: &'static str,
        /// Its key.
        key: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// The client could not make the request or read its answer (configuration, an answer that
    /// does not decode): retrying does not help.
    #[error("{verb} {kind} {key:?}: {source}")]
    Client {
        /// What was attempted.
        verb: &'static str,
        /// The kind of core object.
        kind: &'static str,
        /// Its key.
        key: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// An object in the cluster cannot be represented as a core value.
    #[error("{kind} {name:?} in the cluster is not usable: {message}")]
    Unusable {
        /// The kind.
        kind: &'static str,
        /// The object name.
        name: String,
        /// Why.
        message: String,
    },

    /// A value cannot be stored as a custom resource (fails the CRD's rules).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The field or type.
        what: &'static str,
        /// Why.
        message: String,
    },

    /// Cover art could not be converted to PNG.
    #[error("cover art of app {app} cannot be converted to PNG: {source}")]
    Image {
        /// The app id.
        app: u32,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
}

impl KubeStoreError {
    /// Wraps a client error with what was attempted.
    pub(crate) fn from_kube(
        verb: &'static str,
        kind: &'static str,
        key: impl Into<String>,
        err: kube::Error,
    ) -> Self {
        let key = key.into();
        match err {
            kube::Error::Api(status) => KubeStoreError::Api {
                verb,
                kind,
                key,
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other if is_transient(&other) => KubeStoreError::Transport {
                verb,
                kind,
                key,
                source: Box::new(other),
            },
            other => KubeStoreError::Client {
                verb,
                kind,
                key,
                source: Box::new(other),
            },
        }
    }

    /// Whether this is the API server's 404.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, KubeStoreError::Api { code: 404, .. })
    }

    /// Whether this is the API server's 409.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, KubeStoreError::Api { code: 409, .. })
    }
}

impl From<KubeStoreError> for direwolf_core::Error {
    fn from(err: KubeStoreError) -> Self {
        use direwolf_core::Error;
        match err {
            KubeStoreError::Api {
                kind, key, code: 404, ..
            } => Error::NotFound { kind, key },
            KubeStoreError::Api {
                kind,
                key,
                code: 409,
                ref reason,
                ..
            } if reason == "AlreadyExists" => Error::AlreadyExists { kind, key },
            KubeStoreError::Api {
                kind,
                key,
                code: 409,
                message,
                ..
            } => Error::Conflict { kind, key, message },
            KubeStoreError::Api {
                kind,
                code: 400 | 422,
                message,
                ..
            } => Error::Invalid { what: kind, message },
            KubeStoreError::Api { code, .. } if is_transient_status(code) => Error::Unavailable {
                message: err.to_string(),
            },
            KubeStoreError::Transport { .. } => Error::Unavailable {
                message: err.to_string(),
            },
            KubeStoreError::Invalid { what, message } => Error::Invalid { what, message },
            other => Error::backend(BACKEND, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::watch::NotReady;

    fn api(code: u16, reason: &str) -> KubeStoreError {
        let status = kube::core::Status::failure("boom on spec.id", reason).with_code(code);
        KubeStoreError::from_kube("apply", "app", "app-7", kube::Error::Api(status.boxed()))
    }

    #[test]
    fn api_errors_map_to_core_variants() {
        use direwolf_core::Error;
        assert!(
            matches!(Error::from(api(404, "NotFound")), Error::NotFound { kind: "app", ref key } if key == "app-7")
        );
        assert!(matches!(
            Error::from(api(409, "AlreadyExists")),
            Error::AlreadyExists { kind: "app", .. }
        ));
        assert!(matches!(
            Error::from(api(409, "Conflict")),
            Error::Conflict { kind: "app", .. }
        ));
        match Error::from(api(422, "Invalid")) {
            Error::Invalid { what: "app", message } => assert!(message.contains("spec.id"), "{message}"),
            other => panic!("422 must be Invalid, got {other:?}"),
        }
        for code in [408, 429, 500, 503, 504] {
            assert!(
                matches!(Error::from(api(code, "x")), Error::Unavailable { .. }),
                "{code}"
            );
        }
        for code in [403, 410, 501] {
            assert!(
                matches!(
                    Error::from(api(code, "x")),
                    Error::Backend { backend: BACKEND, .. }
                ),
                "{code}"
            );
        }
        let not_ready = NotReady {
            kind: "app",
            waited: Duration::from_secs(1),
        };
        assert!(matches!(Error::from(not_ready), Error::Unavailable { .. }));
    }

    #[test]
    fn client_errors_map_by_the_transient_classifier() {
        use direwolf_core::Error;
        let refused = kube::Error::Service("connection refused".into());
        let refused = KubeStoreError::from_kube("get", "app", "app-7", refused);
        assert!(matches!(Error::from(refused), Error::Unavailable { .. }));
        // An answer that does not decode is not an outage: retrying it gives the same answer.
        let garbled = kube::Error::SerdeError(serde_json::from_str::<u8>("x").expect_err("not a number"));
        let garbled = KubeStoreError::from_kube("get", "app", "app-7", garbled);
        assert!(matches!(
            Error::from(garbled),
            Error::Backend { backend: BACKEND, .. }
        ));
    }
}
