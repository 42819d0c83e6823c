//! `direwolf serve --check` and `direwolf relay --check` as processes: a good configuration
//! passes and names each Wolf's API version and apps; each kind of mistake is named in one
//! `error:` line and the exit status is 1. Also the health port of `serve` and `relay`.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::{Finished, Proc, direwolf, fake_wolf_binary, field};

const STEP: Duration = Duration::from_secs(60);

/// A port free on loopback for TCP (released at once).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Four consecutive ports free on loopback for both TCP and UDP, as `FIRST-LAST`.
fn free_range() -> String {
    for _ in 0..200 {
        let first = free_port().saturating_sub(4).max(20_000);
        let free = (first..first + 4).all(|port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return format!("{first}-{}", first + 3);
        }
    }
    panic!("no four consecutive free ports on loopback");
}

/// A fake Wolf on `socket` with app `7` (Steam) and its stream side on free loopback ports.
fn fake_wolf(socket: &Path) -> Proc {
    let bin = fake_wolf_binary();
    let mut command = std::process::Command::new(bin);
    command
        .arg("--socket")
        .arg(socket)
        .args(["--stream-ip", "127.0.0.1", "--app", "7=Steam"]);
    for flag in ["--rtsp-port", "--video-port", "--audio-port", "--control-port"] {
        command.args([flag, &free_port().to_string()]);
    }
    let wolf = Proc::spawn("fake wolf", &mut command);
    wolf.wait_for("fake wolf ready", STEP);
    wolf
}

/// A configuration with app 1 running Wolf app `7` on one Wolf at `socket`, plus `extra` lines.
fn config(dir: &Path, socket: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("direwolf.toml");
    let text = format!(
        "{extra}\n[[apps]]\ntitle = \"Steam\"\nid = 1\nwolf_app_id = \"7\"\n\n[relay]\nport_range = \"{}\"\n\n\
         [[wolf]]\nname = \"den\"\napi = \"{}\"\nstream_address = \"127.0.0.1\"\n",
        free_range(),
        socket.display()
    );
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// `direwolf serve --check` with `config`, on loopback and the given HTTP port (and a free admin
/// port).
fn serve_check(dir: &Path, config: &Path, http_port: u16) -> Finished {
    serve_check_admin(dir, config, http_port, free_port())
}

/// `direwolf serve --check` with `config`, on loopback and the given HTTP and admin ports.
fn serve_check_admin(dir: &Path, config: &Path, http_port: u16, admin_port: u16) -> Finished {
    let mut command = direwolf();
    command
        .args(["serve", "--check", "--bind", "127.0.0.1"])
        .args([
            "--http-port",
            &http_port.to_string(),
            "--https-port",
            &free_port().to_string(),
            "--admin-port",
            &admin_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "off");
    Proc::spawn("direwolf serve --check", &mut command).finish(STEP)
}

/// The `error:` lines of a check.
fn errors(finished: &Finished) -> Vec<&str> {
    finished
        .stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[test]
fn a_good_configuration_passes_and_names_the_wolf_version_and_apps() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let socket = tmp.path().join("wolf.sock");
    let _wolf = fake_wolf(&socket);
    let config = config(tmp.path(), &socket, "hostname = \"den\"");
    let finished = serve_check(tmp.path(), &config, free_port());
    assert!(finished.status.success(), "{}", finished.stdout);
    let out = &finished.stdout;
    assert!(errors(&finished).is_empty(), "{out}");
    assert!(out.contains("ok: wolf den ("), "{out}");
    assert!(
        out.contains(": API V") && out.contains("apps: ") && out.contains('7'),
        "{out}"
    );
    assert!(
        out.contains("data directory") && out.contains("will be created"),
        "{out}"
    );
    assert!(out.contains("relay ports") && out.contains("are free"), "{out}");
    assert!(out.contains("ok: admin port "), "{out}");
    assert_eq!(out.lines().last(), Some("check passed"), "{out}");
    assert!(!tmp.path().join("data").exists(), "a check creates nothing");

    // An admin port in use is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = taken.local_addr().expect("its address").port();
    let finished = serve_check_admin(tmp.path(), &config, free_port(), port);
    assert!(!finished.status.success(), "{}", finished.stdout);
    assert!(
        errors(&finished)
            .iter()
            .any(|l| l.starts_with("error: admin port") && l.contains("in use")),
        "{}",
        finished.stdout
    );
}

#[test]
fn each_mistake_is_named_in_one_line_and_the_check_fails() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let socket = tmp.path().join("wolf.sock");
    let _wolf = fake_wolf(&socket);
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port in use");
    let taken_port = taken.local_addr().expect("address").port();
    let good = std::fs::read_to_string(config(tmp.path(), &socket, "")).expect("read");
    let with = |from: &str, to: &str| {
        assert!(good.contains(from), "{from:?} not in the configuration");
        good.replacen(from, to, 1)
    };
    let cases = [
        (
            "unknown key",
            format!("colour = \"red\"\n{good}"),
            free_port(),
            "unknown field `colour`",
        ),
        (
            "missing image",
            with("id = 1\n", "id = 1\nimage = \"art/nowhere.png\"\n"),
            free_port(),
            "cannot read the image",
        ),
        (
            "unreachable Wolf",
            with(&socket.display().to_string(), "/nonexistent/wolf.sock"),
            free_port(),
            "wolf den (",
        ),
        (
            "port in use",
            good.clone(),
            taken_port,
            "is in use by another program",
        ),
        (
            "shared RTSP port in use",
            with(
                "[relay]\n",
                &format!("[relay]\nshared = true\nrtsp_port = {taken_port}\n"),
            ),
            free_port(),
            "shared relay ports: rtsp:",
        ),
        (
            "reversed port range",
            reversed_range(&good),
            free_port(),
            "is reversed",
        ),
        (
            "host name where an IP is needed",
            with("stream_address = \"127.0.0.1\"", "stream_address = \"wolf.lan\""),
            free_port(),
            "stream_address \"wolf.lan\" must be an IP address",
        ),
        (
            "an app Wolf does not have",
            with("wolf_app_id = \"7\"", "wolf_app_id = \"8\""),
            free_port(),
            "wolf_app_id \"8\" is not an app of wolf den",
        ),
    ];
    for (what, text, http_port, needle) in cases {
        let config = tmp.path().join("case.toml");
        std::fs::write(&config, text).expect("write the case");
        let finished = serve_check(tmp.path(), &config, http_port);
        let out = &finished.stdout;
        assert_eq!(finished.status.code(), Some(1), "{what}: exit status\n{out}");
        let errors = errors(&finished);
        assert_eq!(errors.len(), 1, "{what}: one error line\n{out}");
        assert!(
            errors[0].contains(needle),
            "{what}: {needle:?} not in {:?}",
            errors[0]
        );
        assert_eq!(
            out.lines().last(),
            Some("check failed: 1 problem"),
            "{what}\n{out}"
        );
    }
    drop(taken);
}

/// `good` with its relay port range written LAST-FIRST.
fn reversed_range(good: &str) -> String {
    let start = good.find("port_range = \"").expect("a port range") + "port_range = \"".len();
    let len = good[start..].find('"').expect("closing quote");
    let (first, last) = good[start..start + len].split_once('-').expect("FIRST-LAST");
    format!("{}{last}-{first}{}", &good[..start], &good[start + len..])
}

#[test]
fn the_relay_check_names_a_port_in_use_and_a_silent_wolf() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("a port in use");
    let video = taken.local_addr().expect("address").port();
    let wolf_rtsp = TcpListener::bind("127.0.0.1:0").expect("Wolf's RTSP port");
    let relay = |video: u16, target_rtsp: u16| {
        let mut command = direwolf();
        command
            .args([
                "relay",
                "--check",
                "--listen",
                "127.0.0.1",
                "--target",
                "127.0.0.1",
            ])
            .args(["--rtsp", &free_port().to_string(), "--video", &video.to_string()])
            .args([
                "--audio",
                &free_port().to_string(),
                "--control",
                &free_port().to_string(),
            ])
            .args(["--target-rtsp", &target_rtsp.to_string()])
            .env("RUST_LOG", "off");
        Proc::spawn("direwolf relay --check", &mut command).finish(STEP)
    };
    let rtsp_port = wolf_rtsp.local_addr().expect("address").port();
    let good = relay(free_port(), rtsp_port);
    assert!(good.status.success(), "{}", good.stdout);
    assert!(good.stdout.contains("answers"), "{}", good.stdout);
    drop(wolf_rtsp);
    let bad = relay(video, rtsp_port);
    assert_eq!(bad.status.code(), Some(1), "{}", bad.stdout);
    let errors = errors(&bad);
    assert_eq!(errors.len(), 2, "{}", bad.stdout);
    assert!(
        errors[0].contains(&format!("video port: {video}/udp on 127.0.0.1 is in use")),
        "{errors:?}"
    );
    assert!(errors[1].contains("Wolf's RTSP port"), "{errors:?}");
}

/// `GET path` on `addr`: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    support::http_exchange(addr, &request)
}

#[test]
fn serve_is_ready_once_a_wolf_answers_and_says_when_it_comes_back() {
    fake_wolf_binary(); // Built before the server starts, so the Wolf comes up soon after it.
    let tmp = tempfile::tempdir().expect("temporary directory");
    let socket = tmp.path().join("wolf.sock");
    let config = config(tmp.path(), &socket, "");
    let mut command = support::serve_command(&tmp.path().join("data"));
    command
        .arg("--config")
        .arg(&config)
        .args(["--health-bind", "127.0.0.1:0"]);
    let server = Proc::spawn("direwolf serve", &mut command);
    let health: SocketAddr = field(&server.wait_for("health port", STEP), "addr=")
        .parse()
        .expect("address");
    assert_eq!(get(health, "/livez").0, 200);
    server.wait_for("direwolf serve started", STEP);
    let (status, body) = get(health, "/readyz");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: no Wolf answers (den)\n")
    );
    assert!(server.printed("Wolf not reached"), "{}", server.tail());
    let _wolf = fake_wolf(&socket);
    server.wait_for("Wolf back", STEP);
    support::wait_until("/readyz says ready", STEP, || get(health, "/readyz").0 == 200);
    let (status, metrics) = get(health, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("direwolf_pairing_attempts_total{outcome=\"paired\"} 0\n"),
        "the health port serves the metrics too: {metrics}"
    );
}

#[test]
fn the_relay_serves_its_health_port_once_its_ports_are_bound() {
    let mut command = direwolf();
    command
        .args([
            "relay",
            "--listen",
            "127.0.0.1",
            "--target",
            "127.0.0.1",
            "--health-bind",
            "127.0.0.1:0",
        ])
        .args([
            "--rtsp",
            &free_port().to_string(),
            "--video",
            &free_port().to_string(),
        ])
        .args([
            "--audio",
            &free_port().to_string(),
            "--control",
            &free_port().to_string(),
        ])
        .env("RUST_LOG", "info");
    let relay = Proc::spawn("direwolf relay", &mut command);
    let health: SocketAddr = field(&relay.wait_for("health port", STEP), "addr=")
        .parse()
        .expect("address");
    relay.wait_for("relaying", STEP);
    assert_eq!(get(health, "/livez").0, 200);
    assert_eq!(get(health, "/readyz"), (200, "ok\n".to_owned()));
    relay.stop();
}

#[test]
fn an_unsafe_data_directory_fails_the_check() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let socket = tmp.path().join("wolf.sock");
    let _wolf = fake_wolf(&socket);
    let config = config(tmp.path(), &socket, "");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("data directory");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let finished = serve_check(tmp.path(), &config, free_port());
    assert!(!finished.status.success(), "{}", finished.stdout);
    let errors = errors(&finished);
    assert_eq!(errors.len(), 1, "{}", finished.stdout);
    assert!(
        errors[0].contains("writable by every user") && errors[0].contains("chmod 0700"),
        "{}",
        errors[0]
    );
    assert!(!data.join("direwolf.redb").exists(), "a check creates nothing");
}

#[test]
fn the_wolf_api_socket_path_is_checked_without_creating_it() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let check = |socket: &Path| {
        let mut command = direwolf();
        command
            .args(["serve", "--check", "--bind", "127.0.0.1"])
            .args(["--http-port", &free_port().to_string()])
            .args(["--https-port", &free_port().to_string()])
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("--wolf-api-socket")
            .arg(socket)
            .env("RUST_LOG", "off");
        Proc::spawn("direwolf serve --check --wolf-api-socket", &mut command).finish(STEP)
    };
    let fresh = tmp.path().join("wolf.sock");
    let finished = check(&fresh);
    assert!(finished.status.success(), "{}", finished.stdout);
    assert!(
        finished.stdout.contains("ok: Wolf API socket") && finished.stdout.contains("will be created"),
        "{}",
        finished.stdout
    );
    assert!(!fresh.exists(), "a check creates nothing");
    assert_eq!(std::fs::read_dir(tmp.path()).expect("list").count(), 0);

    let file = tmp.path().join("not-a-socket");
    std::fs::write(&file, "x").expect("a regular file");
    let finished = check(&file);
    assert!(!finished.status.success(), "{}", finished.stdout);
    let errors = errors(&finished);
    assert_eq!(errors.len(), 1, "{}", finished.stdout);
    assert!(
        errors[0].contains("Wolf API socket") && errors[0].contains("not a socket"),
        "{}",
        errors[0]
    );
}
