//! A line reader over a streaming hyper body (for SSE and the Docker pull stream).

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why no line could be read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// Nothing arrived within the idle time.
    Idle,
    /// A line is longer than the limit.
    TooLong,
    /// The connection failed mid-body.
    Broken(hyper::Error),
}

pub(crate) struct LineReader {
    body: Incoming,
    buf: Vec<u8>,
    scanned: usize,
    limit: usize,
    eof: bool,
}

impl LineReader {
    pub(crate) fn new(body: Incoming, limit: usize) -> Self {
        LineReader {
            body,
            buf: Vec::with_capacity(1024),
            scanned: 0,
            limit,
            eof: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The next line without its `\n` / `\r\n`; `Ok(None)` at the end of the body (a final line
    /// without terminator is returned first).
    pub(crate) async fn next_line(&mut self, idle: Duration) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                if end > self.limit {
                    return Err(LineError::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scanned = 0;
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.limit {
                return Err(LineError::TooLong);
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.scanned = 0;
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            match tokio::time::timeout(idle, self.body.frame()).await {
                Err(_) => return Err(LineError::Idle),
                Ok(None) => self.eof = true,
                Ok(Some(Err(e))) => return Err(LineError::Broken(e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
