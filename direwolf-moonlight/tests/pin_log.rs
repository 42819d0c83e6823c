//! The Wolf-compatible log line that tells a person where to type the PIN.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::*;
use tokio::net::TcpStream;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn phase_1_logs_the_pin_url_and_never_the_pin() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .init();
    let h = Harness::start().await;
    let client = Client::vector_c();
    let phase1 = {
        let (addr, path) = (h.http, phase1_path(&client));
        tokio::spawn(
            async move { request(TcpStream::connect(addr).await.unwrap(), "GET", &path, None).await },
        )
    };
    let secret = h.pending_secret().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The line names the client's address and device name, so people pairing at once can tell
    // their links apart.
    let expected = format!(
        "Insert pin at http://127.0.0.1:{}/pin/#{secret} (client 127.0.0.1, device \"roth\")",
        h.http.port()
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.ends_with(&expected)),
        "{log}"
    );
    h.post_pin(&format!(r#"{{"pin":"9876","secret":"{secret}"}}"#))
        .await;
    within("phase 1", phase1).await.unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!log.contains("9876"), "the PIN must never be logged: {log}");
    h.shutdown().await;
}
