//! Readiness and stopping notifications to a service manager (systemd's `Type=notify`, the
//! `sd_notify(3)` protocol).
//!
//! When `NOTIFY_SOCKET` is set, [`Notifier::ready`] and [`Notifier::stopping`] send `READY=1` and
//! `STOPPING=1`, each as one datagram, to that `AF_UNIX` socket: a path such as
//! `/run/systemd/notify`, or, with a leading `@`, a Linux abstract socket. Without it they do
//! nothing. A notification that cannot be sent is logged as a warning the first time (later ones
//! at debug level) and never stops the server: the service manager then times the start-up out
//! on its own.
//!
//! The protocol is one `sendto` of `KEY=VALUE` lines, done here with the standard library: the
//! `sd-notify` crate (0.5) treats an `@` address as a file name, so it cannot reach an abstract
//! socket.

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{debug, warn};

/// The environment variable naming the service manager's socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file (an absolute path).
    Path(PathBuf),
    /// A Linux abstract socket: the name after the `@`.
    Abstract(Vec<u8>),
}

impl Target {
    /// The target a `NOTIFY_SOCKET` value names, or why it names none.
    fn parse(value: OsString) -> Result<Target, String> {
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'/') => Ok(Target::Path(PathBuf::from(value))),
            Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(bytes[1..].to_vec())),
            _ => Err(format!(
                "{NOTIFY_SOCKET}={value:?} is neither an absolute socket path nor an @abstract name"
            )),
        }
    }

    /// Sends `message` as one datagram, without blocking.
    fn send(&self, message: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        match self {
            Target::Path(path) => socket.connect(path)?,
            Target::Abstract(name) => connect_abstract(&socket, name)?,
        }
        let sent = socket.send(message.as_bytes())?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", message.len()),
            ));
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_abstract(socket: &UnixDatagram, name: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt as _;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.connect_addr(&addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn connect_abstract(_socket: &UnixDatagram, _name: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// Tells the service manager, if any, about start-up and shutdown.
#[derive(Debug)]
pub struct Notifier {
    /// `None`: no `NOTIFY_SOCKET`, nothing to do.
    target: Option<Result<Target, String>>,
    /// Whether a failure was already logged as a warning.
    warned: AtomicBool,
}

impl Notifier {
    /// The notifier of the socket in `NOTIFY_SOCKET` (none when unset or empty).
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os(NOTIFY_SOCKET))
    }

    fn new(value: Option<OsString>) -> Notifier {
        Notifier {
            target: value.filter(|v| !v.is_empty()).map(Target::parse),
            warned: AtomicBool::new(false),
        }
    }

    /// `READY=1`: start-up is complete (listeners bound, store open).
    pub fn ready(&self) {
        self.notify("READY=1\n");
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\n");
    }

    /// Completes with `shutdown`, having sent `STOPPING=1` as it did.
    pub async fn stopping_after(&self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stopping();
    }

    fn notify(&self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        let state = message.trim_end();
        let result = match target {
            Ok(target) => target.send(message).map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        match result {
            Ok(()) => debug!(state, "notified the service manager"),
            Err(error) if !self.warned.swap(true, Ordering::Relaxed) => warn!(
                state,
                %error,
                "cannot notify the service manager through NOTIFY_SOCKET (later failures are logged \
                 at debug level)"
            ),
            Err(error) => debug!(state, %error, "cannot notify the service manager"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A datagram listener with a receive timeout, so a missing notification fails the test.
    fn listener(socket: UnixDatagram) -> UnixDatagram {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        socket
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_and_stopping_reach_a_socket_path() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("notify");
        let socket = listener(UnixDatagram::bind(&path).expect("bind"));
        let notifier = Notifier::new(Some(path.into_os_string()));
        notifier.ready();
        assert_eq!(receive(&socket), "READY=1\n");
        notifier.stopping();
        assert_eq!(receive(&socket), "STOPPING=1\n");
        assert!(!notifier.warned.load(Ordering::Relaxed));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ready_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("direwolf-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let socket = listener(UnixDatagram::bind_addr(&addr).expect("bind"));
        let notifier = Notifier::new(Some(format!("@{name}").into()));
        notifier.ready();
        assert_eq!(receive(&socket), "READY=1\n");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        for value in [None, Some(OsString::new())] {
            let notifier = Notifier::new(value);
            assert!(notifier.target.is_none());
            notifier.ready();
            notifier.stopping();
            assert!(!notifier.warned.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn failures_are_warned_once_and_never_fatal() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for value in [
            dir.path().join("nobody-listens").into_os_string(),
            "relative/notify".into(),
            "@".into(),
        ] {
            let notifier = Notifier::new(Some(value.clone()));
            assert!(!notifier.warned.load(Ordering::Relaxed));
            notifier.ready();
            assert!(notifier.warned.load(Ordering::Relaxed), "{value:?}");
            notifier.stopping();
        }
        assert!(Target::parse("relative".into()).is_err());
        assert_eq!(
            Target::parse("@name".into()),
            Ok(Target::Abstract(b"name".to_vec()))
        );
    }

    #[tokio::test]
    async fn stopping_is_sent_when_shutdown_begins() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("notify");
        let socket = listener(UnixDatagram::bind(&path).expect("bind"));
        let notifier = Notifier::new(Some(path.into_os_string()));
        let (begin, shutdown) = tokio::sync::oneshot::channel::<()>();
        let waiting = notifier.stopping_after(async {
            let _ = shutdown.await;
        });
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "nothing happens before shutdown begins"
        );
        socket.set_nonblocking(true).expect("non-blocking");
        let mut buf = [0u8; 64];
        assert_eq!(
            socket.recv(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "no STOPPING=1 before shutdown"
        );
        socket.set_nonblocking(false).expect("blocking");
        begin.send(()).expect("the waiter is alive");
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("completes once shutdown begins");
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }
}
