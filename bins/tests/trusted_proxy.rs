//! Who enters the PIN owns the pairing: `direwolf serve --trusted-proxy` believes the user an
//! authenticating reverse proxy names, refuses identity headers from anyone else and PINs
//! entered without the proxy. The client is the real Moonlight client (moonlight-python).

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{DRIVER_TIMEOUT, Direwolf, Proc, pin_link, serve_command, spawn_driver};

/// The trusted proxy's address (the test connects from it); 127.0.0.1 is an outsider.
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// POSTs a PIN as the page's script does, from `from`, with extra header lines.
fn post_pin_from(from: Ipv4Addr, http_port: u16, pin: &str, secret: &str, extra: &str) -> (u16, String) {
    let body = format!(r#"{{"pin":"{pin}","secret":"{secret}","user":"mallory"}}"#);
    let request = format!(
        "POST /pin/ HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind the source address");
    let server = SocketAddr::from(([127, 0, 0, 1], http_port));
    socket
        .connect_timeout(&server.into(), Duration::from_secs(10))
        .expect("connect");
    let mut stream = std::net::TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("answer");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    (status, body)
}

#[test]
fn the_user_the_trusted_proxy_names_owns_the_pairing_and_nobody_else_may_say() {
    support::require_moonlight_python();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let server = Proc::spawn(
        "direwolf serve",
        serve_command(&tmp.path().join("data")).args(["--trusted-proxy", "127.0.0.2"]),
    );
    let server = Direwolf::started(server, "direwolf serve started", Duration::from_secs(120));
    let client = tmp.path().join("client");
    let driver = spawn_driver(server.http_port, &client, &["pair", "--pin", "4821"]);
    let line = server.proc.wait_for("Insert pin at http://", DRIVER_TIMEOUT);
    let (_, secret) = pin_link(&line);
    let port = server.http_port;

    // Someone else claims to be the admin: refused, whatever the claim.
    let spoofed = post_pin_from(
        Ipv4Addr::LOCALHOST,
        port,
        "4821",
        secret,
        "X-Forwarded-User: admin\r\n",
    );
    assert_eq!(spoofed.0, 403, "{spoofed:?}");
    assert!(spoofed.1.contains("trusted proxies"), "{spoofed:?}");
    // Without the proxy nobody may enter the PIN, not even naming a user in the form.
    let anonymous = post_pin_from(Ipv4Addr::LOCALHOST, port, "4821", secret, "");
    assert_eq!(anonymous.0, 401, "{anonymous:?}");
    // Through the proxy: its user owns the pairing, not the form's `mallory`.
    let proxied = post_pin_from(
        PROXY,
        port,
        "4821",
        secret,
        "X-Forwarded-Email: Alice.Smith@example.com\r\n",
    );
    assert_eq!(proxied, (200, "OK".to_owned()));
    let paired = driver.json_result(DRIVER_TIMEOUT);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
    let line = server.proc.wait_for("client paired", Duration::from_secs(10));
    assert!(line.contains("user=alice-smith"), "{line}");
    assert!(
        server
            .proc
            .printed_line_with(&["identity headers from an untrusted address refused"]),
        "the spoofing attempt is logged\n{}",
        server.proc.tail()
    );
    assert!(!server.proc.printed("4821"), "the PIN is never logged");
}
