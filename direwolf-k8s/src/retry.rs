//! Which API failures are transient, and the bounded retry of them.
//!
//! [`is_transient`] is the one answer to "may this error go away by itself?" in this crate: the
//! stores, the launcher and the PIN broker retry exactly these errors (with a [`RetryPolicy`]) and
//! report them as `Unavailable` (try again later) rather than as a backend failure.
//!
//! | Error | Transient | Why |
//! |---|---|---|
//! | 429 Too Many Requests | yes | API priority and fairness sheds load; it asks to come back |
//! | 500, 502, 503, 504 | yes | the API server or etcd is overloaded, restarting or timed out |
//! | 408 Request Timeout | yes | a timeout |
//! | other 5xx (501, 505, ...) | no | the server does not support the request; it will not learn |
//! | 400, 404, 405, 409, 415, 422 | no | the request itself is wrong or conflicts; the caller decides |
//! | 401, 403 | no | credentials or RBAC: a person has to fix them |
//! | 410 Gone | no | the resourceVersion is compacted away: repeating the request cannot help, a fresh list does (`kube::runtime::watcher` re-lists on its own) |
//! | no answer (connection refused or reset, timeout, TLS handshake, broken event stream) | yes | the API server is unreachable for now |
//! | anything else (undecodable answer, request not buildable, configuration) | no | a bug or a misconfiguration |

use std::future::Future;
use std::time::Duration;

use tracing::warn;

/// Whether an HTTP status of the API server may go away by itself (see the [module
/// docs](self)).
pub fn is_transient_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a client error may go away by itself: a transient status
/// ([`is_transient_status`]) or no answer at all (see the [module docs](self)).
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => is_transient_status(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether `err` is the API server's answer with HTTP status `code`.
pub(crate) fn has_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
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

fn timed_out(budget: Duration) -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within the {budget:?} budget"),
    )))
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails for a non-transient reason ([`is_transient`]), or the
    /// attempts or the budget are used up. Returns the last error in the latter cases.
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

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("m", "r").with_code(code).boxed())
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "boom")
    }

    /// The one table of transient errors (issue 10: three differing copies became this one).
    #[test]
    fn transient_errors() {
        let table: Vec<(&str, kube::Error, bool)> = vec![
            ("408", status(408), true),
            ("429", status(429), true),
            ("500", status(500), true),
            ("502", status(502), true),
            ("503", status(503), true),
            ("504", status(504), true),
            ("501", status(501), false),
            ("505", status(505), false),
            ("400", status(400), false),
            ("401", status(401), false),
            ("403", status(403), false),
            ("404", status(404), false),
            ("405", status(405), false),
            ("409", status(409), false),
            ("410 on a watch", status(410), false),
            ("415", status(415), false),
            ("422", status(422), false),
            (
                "connection refused",
                kube::Error::Service(Box::new(io(std::io::ErrorKind::ConnectionRefused))),
                true,
            ),
            ("budget timeout", timed_out(Duration::from_secs(1)), true),
            (
                "event stream broken",
                kube::Error::ReadEvents(io(std::io::ErrorKind::UnexpectedEof)),
                true,
            ),
            (
                "undecodable answer",
                kube::Error::SerdeError(serde_json::from_str::<u8>("x").expect_err("not a number")),
                false,
            ),
            ("no TLS stack", kube::Error::TlsRequired, false),
            (
                "not UTF-8",
                kube::Error::FromUtf8(String::from_utf8(vec![0xff]).expect_err("not UTF-8")),
                false,
            ),
        ];
        for (what, err, transient) in &table {
            assert_eq!(is_transient(err), *transient, "{what}: {err}");
            if let kube::Error::Api(status) = err {
                assert_eq!(is_transient_status(status.code), *transient, "{what}");
            }
        }
    }

    #[test]
    fn statuses_are_recognised() {
        assert!(has_status(&status(404), 404));
        assert!(!has_status(&status(409), 404));
        assert!(!has_status(&kube::Error::TlsRequired, 404));
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
                std::future::ready(Err(status(429)))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, policy.attempts);

        let mut calls = 0;
        let result: Result<(), _> = policy
            .run("test", || {
                calls += 1;
                std::future::ready(Err(status(404)))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a 404 is not retried");

        let mut calls = 0;
        let result = policy
            .run("test", || {
                calls += 1;
                let outcome = if calls < 3 { Err(status(500)) } else { Ok(calls) };
                std::future::ready(outcome)
            })
            .await;
        assert_eq!(result.ok(), Some(3));
    }
}
