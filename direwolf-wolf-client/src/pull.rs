//! The line-oriented answer of `POST /api/v1/docker/images/pull` (`docs/protocol/wolf-api.md`
//! § Utilities).

use std::time::Duration;

use hyper::Response;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::client::{PullStream, Raw, error_from};
use crate::error::{Error, WolfErrorKind};
use crate::lines::{LineError, LineReader};
use crate::transport::ConnGuard;
use crate::types::PullProgress;
use crate::version::paths;

const ENDPOINT: &str = paths::DOCKER_PULL;

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Progress(PullProgress),
    Done { success: bool },
}

struct State {
    lines: LineReader,
    _guard: ConnGuard,
    idle: Duration,
    done: bool,
}

pub(crate) fn pull_stream(
    resp: Response<Incoming>,
    guard: ConnGuard,
    idle: Duration,
    limit: usize,
) -> PullStream {
    let state = State {
        lines: LineReader::new(resp.into_body(), limit),
        _guard: guard,
        idle,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = next(&mut st).await;
        match item {
            Some(Ok(p)) => Some((Ok(p), st)),
            Some(Err(e)) => {
                st.done = true;
                Some((Err(e), st))
            }
            None => None,
        }
    }))
}

async fn next(st: &mut State) -> Option<Result<PullProgress, Error>> {
    loop {
        let line = match st.lines.next_line(st.idle).await {
            Ok(Some(line)) => line,
            Ok(None) => return Some(Err(Error::Truncated { endpoint: ENDPOINT })),
            Err(LineError::Idle) => {
                return Some(Err(Error::Timeout {
                    endpoint: ENDPOINT,
                    after: st.idle,
                }));
            }
            Err(LineError::TooLong) => {
                return Some(Err(Error::BodyTooLarge {
                    endpoint: ENDPOINT,
                    limit: st.lines_limit(),
                }));
            }
            Err(LineError::Broken(e)) => {
                tracing::debug!(error = &e as &dyn std::error::Error, "docker pull stream broken");
                return Some(Err(Error::Truncated { endpoint: ENDPOINT }));
            }
        };
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"HTTP/1.") {
            // Wolf writes a second status line into the stream when the pull fails midway.
            let status = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            return Some(Err(read_embedded_error(st, status).await));
        }
        return match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Progress(p)) => Some(Ok(p)),
            Ok(Line::Done { success: true }) => {
                st.done = true;
                None
            }
            Ok(Line::Done { success: false }) => Some(Err(error_from(
                ENDPOINT,
                Raw {
                    status: 200,
                    body: bytes::Bytes::from(line),
                },
            ))),
            Err(source) => Some(Err(Error::InvalidJson {
                endpoint: ENDPOINT,
                source,
            })),
        };
    }
}

async fn read_embedded_error(st: &mut State, status: u16) -> Error {
    // Skip the header lines up to the blank line, then the rest is the JSON error body.
    let mut in_headers = true;
    let mut body = Vec::new();
    loop {
        match st.lines.next_line(st.idle).await {
            Ok(Some(line)) if in_headers => in_headers = !line.is_empty(),
            Ok(Some(line)) => body.extend_from_slice(&line),
            _ => break,
        }
    }
    match error_from(
        ENDPOINT,
        Raw {
            status,
            body: body.into(),
        },
    ) {
        e @ Error::Wolf { .. } => e,
        _ => Error::Wolf {
            endpoint: ENDPOINT,
            status,
            kind: WolfErrorKind::PullFailed,
            message: "Failed to pull image".into(),
        },
    }
}

impl State {
    fn lines_limit(&self) -> usize {
        self.lines.limit()
    }
}
