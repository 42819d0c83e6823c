//! The private error of the Kubernetes stores, how it maps to [`direwolf_core::Error`], and the
//! bounded retry of transient API failures.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

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

    /// The request did not get an answer (connection refused or reset, timeout, TLS).
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

    /// The reflector cache did not finish its initial list in time.
    #[error("the {kind} cache is not synced after {waited:?}")]
    NotReady {
        /// The kind whose cache is not ready.
        kind: &'static str,
        /// How long the caller waited.
        waited: Duration,
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
            other => KubeStoreError::Transport {
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
            KubeStoreError::Api { code, .. } if code == 429 || code >= 500 => Error::Unavailable {
                message: err.to_string(),
            },
            KubeStoreError::Transport { .. } | KubeStoreError::NotReady { .. } => Error::Unavailable {
                message: err.to_string(),
            },
            KubeStoreError::Invalid { what, message } => Error::Invalid { what, message },
            other => Error::backend(BACKEND, other),
        }
    }
}

/// How often and how long transient failures are retried.
///
/// The budget bounds the whole call, including retries the `kube::Client` makes on its own
/// (its default layer retries 429/503/504 up to 15 times with growing delays): a store call
/// answers within the budget, with `Unavailable` if the API server did not accept the write.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (the first included).
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub initial_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Upper bound of the whole operation, retries included.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            budget: Duration::from_secs(15),
        }
    }
}

/// Whether a client error may go away by itself: 429, 5xx, or no answer at all.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

fn timed_out(budget: Duration) -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within the {budget:?} budget"),
    )))
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails for a non-transient reason, or the attempts or the
    /// budget are used up. Returns the last error in the latter cases.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut delay = self.initial_delay;
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout_at(deadline, op()).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(self.budget)),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(err)
                    if attempt < self.attempts
                        && is_transient(&err)
                        && tokio::time::Instant::now() + delay < deadline =>
                {
                    warn!(operation = what, attempt, error = %err, "transient API error, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for code in [429, 500, 503, 504] {
            assert!(
                matches!(Error::from(api(code, "x")), Error::Unavailable { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            Error::from(api(403, "Forbidden")),
            Error::Backend { backend: BACKEND, .. }
        ));
        let not_ready = KubeStoreError::NotReady {
            kind: "app",
            waited: Duration::from_secs(1),
        };
        assert!(matches!(Error::from(not_ready), Error::Unavailable { .. }));
    }

    #[test]
    fn transient_errors() {
        let status = |code| kube::Error::Api(kube::core::Status::failure("m", "r").with_code(code).boxed());
        assert!(is_transient(&status(429)));
        assert!(is_transient(&status(500)));
        assert!(is_transient(&status(503)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&status(409)));
        assert!(!is_transient(&status(422)));
        assert!(is_transient(&kube::Error::Service("connection refused".into())));
    }

    #[tokio::test]
    async fn the_budget_bounds_a_hanging_call() {
        let policy = RetryPolicy {
            budget: Duration::from_millis(200),
            ..RetryPolicy::default()
        };
        let started = std::time::Instant::now();
        let result: Result<(), _> = policy.run("test", std::future::pending).await;
        assert!(matches!(result, Err(kube::Error::Service(_))));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn retry_is_bounded_and_stops_on_permanent_errors() {
        let policy = RetryPolicy::default();
        let mut calls = 0;
        let result: Result<(), _> = policy
            .run("test", || {
                calls += 1;
                std::future::ready(Err(kube::Error::Api(
                    kube::core::Status::failure("busy", "TooManyRequests")
                        .with_code(429)
                        .boxed(),
                )))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, policy.attempts);

        let mut calls = 0;
        let result: Result<(), _> = policy
            .run("test", || {
                calls += 1;
                std::future::ready(Err(kube::Error::Api(
                    kube::core::Status::failure("gone", "NotFound")
                        .with_code(404)
                        .boxed(),
                )))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a 404 is not retried");

        let mut calls = 0;
        let result = policy
            .run("test", || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err(kube::Error::Api(
                        kube::core::Status::failure("x", "x").with_code(500).boxed(),
                    ))
                } else {
                    Ok(calls)
                };
                std::future::ready(outcome)
            })
            .await;
        assert_eq!(result.ok(), Some(3));
    }
}
