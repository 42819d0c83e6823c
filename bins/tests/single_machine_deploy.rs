//! The single-machine deployment (`deploy/single-machine/`) as written: `direwolf.service`'s
//! `ExecStart` and the compose file's `direwolf` service each run the `direwolf` binary under test
//! against a fake Wolf listening on the socket `direwolf.toml` names, and the compose file is
//! validated against the Compose specification's schema.
//!
//! What systemd or Docker would provide is replaced by temporary directories: `%S` and `%E` (the
//! state and configuration roots) for the unit, every volume for the compose service. The only
//! additions to the command lines are [`ISOLATION`] flags (loopback, free HTTP, HTTPS and admin ports, no
//! mDNS), so these tests can run beside others on one machine; and the `[[wolf]]` ports of the
//! copied `direwolf.toml` become the fake Wolf's, which are free ones.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Yaml;
use support::{DIREWOLF, Direwolf, Proc};

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(60);

/// Appended to the deployed command lines: loopback only, free ports (the admin port too), no mDNS.
const ISOLATION: [&str; 9] = [
    "--bind",
    "127.0.0.1",
    "--http-port",
    "0",
    "--https-port",
    "0",
    "--admin-port",
    "0",
    "--no-mdns",
];

/// The version of check-jsonschema that scripts/test-all installs.
const CHECK_JSONSCHEMA: &str = "0.39.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/single-machine")
}

fn read_deployed(name: &str) -> String {
    let path = deploy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The systemd unit.

/// A unit file's assignments, in order: (section, key, value).
struct Unit(Vec<(String, String, String)>);

impl Unit {
    /// Parses a unit file: `[Section]` headers, `Key=Value` lines, `#` and `;` comments, lines
    /// continued by a trailing backslash.
    fn parse(text: &str) -> Unit {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = full
                .split_once('=')
                .unwrap_or_else(|| panic!("not a Key=Value line: {full:?}"));
            entries.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
        }
        Unit(entries)
    }

    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The one value of `key` in `section`.
    fn value(&self, section: &str, key: &str) -> &str {
        match self.values(section, key).as_slice() {
            [one] => one,
            other => panic!("[{section}] {key}= must be set once, found {other:?}"),
        }
    }
}

/// Resolves the specifiers of a unit's command line: `%%` and the ones in `specifiers`; any other
/// is a test failure (this test would not know what systemd puts there).
fn resolve_specifiers(word: &str, specifiers: &[(char, &Path)]) -> String {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next().unwrap_or_else(|| panic!("a lone % in {word:?}"));
        if spec == '%' {
            out.push('%');
            continue;
        }
        let (_, value) = specifiers
            .iter()
            .find(|(s, _)| *s == spec)
            .unwrap_or_else(|| panic!("specifier %{spec} in {word:?} is not one this test provides"));
        out.push_str(value.to_str().expect("UTF-8 temporary path"));
    }
    out
}

/// Splits an `ExecStart=` command line into words (whitespace-separated, `"…"` and `'…'` quoting)
/// and resolves its specifiers. Variables (`$FOO`) and escapes are refused: this test would not
/// expand them as systemd does.
fn exec_start_words(line: &str, specifiers: &[(char, &Path)]) -> Vec<String> {
    assert!(
        !line.contains('$') && !line.contains('\\'),
        "ExecStart= uses variables or escapes, which this test does not expand: {line:?}"
    );
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line:?}");
    if in_word {
        words.push(word);
    }
    words.iter().map(|w| resolve_specifiers(w, specifiers)).collect()
}

#[test]
fn unit_command_lines_split_as_systemd_splits_them() {
    let root = Path::new("/tmp/root");
    assert_eq!(
        exec_start_words(
            "/bin/x serve  --config \"%E/a b/c.toml\" --data-dir '%S/d' 100%%",
            &[('E', root), ('S', root)]
        ),
        [
            "/bin/x",
            "serve",
            "--config",
            "/tmp/root/a b/c.toml",
            "--data-dir",
            "/tmp/root/d",
            "100%"
        ]
    );
    let unit = Unit::parse("# c\n[Service]\nExecStart=/bin/x \\\n  serve\n; c\nA = 1\n[Install]\nA=2\n");
    assert_eq!(unit.value("Service", "ExecStart"), "/bin/x  serve");
    assert_eq!(unit.value("Service", "A"), "1");
    assert_eq!(unit.value("Install", "A"), "2");
}

// ---------------------------------------------------------------------------------------------
// The fake Wolf and the configuration.

/// A fake Wolf (the `fake_wolf` example) with its API on `socket` and its stream ports on free
/// loopback ports.
struct FakeWolf {
    /// Killed when dropped.
    _proc: Proc,
    /// RTSP, video, audio, control.
    ports: [u16; 4],
}

impl FakeWolf {
    fn start(socket: &Path) -> FakeWolf {
        std::fs::create_dir_all(socket.parent().expect("socket directory")).expect("socket directory");
        let proc = Proc::spawn(
            "fake wolf",
            Command::new(support::fake_wolf_binary())
                .arg("--socket")
                .arg(socket)
                .args(["--stream-ip", "127.0.0.1"])
                .args(["--rtsp-port", "0", "--video-port", "0"])
                .args(["--audio-port", "0", "--control-port", "0"])
                .args(["--app", "1=Desktop"]),
        );
        let line = proc.wait_for("fake wolf ready ", STEP);
        let json = &line[line.find('{').unwrap_or_else(|| panic!("no ports in {line:?}"))..];
        let bound: serde_json::Value = serde_json::from_str(json).expect("the fake's ports as JSON");
        let port = |name: &str| {
            bound[name]
                .as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .unwrap_or_else(|| panic!("{name} in {json}"))
                .port()
        };
        FakeWolf {
            ports: [port("rtsp"), port("video"), port("audio"), port("control")],
            _proc: proc,
        }
    }
}

/// The `[[wolf]]` entry of a parsed direwolf.toml (there is exactly one).
fn only_wolf(config: &mut toml::Table) -> &mut toml::Table {
    let wolves = config
        .get_mut("wolf")
        .and_then(toml::Value::as_array_mut)
        .expect("direwolf.toml has [[wolf]] entries");
    assert_eq!(wolves.len(), 1, "direwolf.toml has one [[wolf]]");
    wolves[0].as_table_mut().expect("a [[wolf]] table")
}

/// The deployed direwolf.toml, parsed.
fn deployed_config() -> toml::Table {
    read_deployed("direwolf.toml")
        .parse()
        .expect("direwolf.toml is TOML")
}

/// Writes to `path` the deployed direwolf.toml with its Wolf API at `api` (the socket as
/// direwolf sees it) and its Wolf ports the fake's.
fn write_config(path: &Path, api: &Path, wolf: &FakeWolf) -> toml::Table {
    let mut config = deployed_config();
    let entry = only_wolf(&mut config);
    entry.insert("api".into(), api.to_str().expect("UTF-8 path").into());
    for (key, port) in ["rtsp_port", "video_port", "audio_port", "control_port"]
        .into_iter()
        .zip(wolf.ports)
    {
        assert!(entry.contains_key(key), "direwolf.toml sets {key}");
        entry.insert(key.into(), i64::from(port).into());
    }
    std::fs::create_dir_all(path.parent().expect("config directory")).expect("config directory");
    std::fs::write(path, toml::to_string(&config).expect("TOML")).expect("write the configuration");
    config
}

// ---------------------------------------------------------------------------------------------
// Talking to the running server.

/// The next datagram on `socket` (its read timeout set), or a failure quoting `server`.
fn notification(socket: &UnixDatagram, server: &Proc) -> String {
    let mut buf = [0u8; 512];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no notification on NOTIFY_SOCKET ({e})\n{}", server.tail()),
    }
}

/// A datagram socket for `NOTIFY_SOCKET` at `path`.
fn notify_socket(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).expect("bind the notification socket");
    socket.set_read_timeout(Some(STEP)).expect("read timeout");
    socket
}

/// `GET /serverinfo` over HTTP on 127.0.0.1; (status, body).
fn serverinfo(http_port: u16) -> (u16, String) {
    let request = format!(
        "GET /serverinfo?uniqueid=0123456789ABCDEF HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\n\
         Connection: close\r\n\r\n"
    );
    support::http_exchange(SocketAddr::from(([127, 0, 0, 1], http_port)), &request)
}

/// What every run checks once the server has started: `/serverinfo` answers with the configured
/// hostname, and the log says the configured Wolf was reached.
fn check_running(server: &Direwolf, config: &toml::Table) {
    let hostname = config["hostname"].as_str().expect("direwolf.toml sets hostname");
    let (status, body) = serverinfo(server.http_port);
    assert_eq!(status, 200, "/serverinfo: {body}");
    assert!(
        body.contains(&format!("<hostname>{hostname}</hostname>"))
            && body.contains(&format!("<HttpsPort>{}</HttpsPort>", server.https_port)),
        "/serverinfo names the configured host and the HTTPS port: {body}"
    );
    let mut config = config.clone();
    let name = only_wolf(&mut config)["name"]
        .as_str()
        .expect("the Wolf's name")
        .to_owned();
    support::wait_until("the log says the Wolf was reached", STEP, || {
        server.proc.printed(&format!("Wolf reached wolf={name} "))
    });
}

// ---------------------------------------------------------------------------------------------
// (a) direwolf.service

#[test]
fn the_systemd_unit_starts_direwolf_which_notifies_ready_and_stopping() {
    let unit = Unit::parse(&read_deployed("direwolf.service"));
    assert_eq!(unit.value("Service", "Type"), "notify");
    let state_dir = unit.value("Service", "StateDirectory");
    let config_dir = unit.value("Service", "ConfigurationDirectory");

    let tmp = tempfile::tempdir().expect("temporary directory");
    let (state_root, config_root) = (tmp.path().join("var-lib"), tmp.path().join("etc"));
    // What systemd creates before starting the service.
    let state = state_root.join(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state)
        .expect("the state directory");
    let config_path = config_root.join(config_dir).join("direwolf.toml");

    let wolf_socket = tmp.path().join("run-wolf/wolf.sock");
    let wolf = FakeWolf::start(&wolf_socket);
    let config = write_config(&config_path, &wolf_socket, &wolf);

    let argv = exec_start_words(
        unit.value("Service", "ExecStart"),
        &[('S', &state_root), ('E', &config_root)],
    );
    assert!(
        argv[0].starts_with('/') && argv[0].ends_with("/direwolf"),
        "ExecStart= runs an absolute path to direwolf: {argv:?}"
    );
    let flag = |name: &str| {
        let at = argv
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("ExecStart= passes {name}: {argv:?}"));
        PathBuf::from(&argv[at + 1])
    };
    assert_eq!(flag("--data-dir"), state, "the data lives in StateDirectory=");
    assert_eq!(
        flag("--config"),
        config_path,
        "the configuration is in ConfigurationDirectory="
    );

    let notify_path = tmp.path().join("notify");
    let notify = notify_socket(&notify_path);
    let mut command = Command::new(DIREWOLF);
    command
        .args(&argv[1..])
        .args(ISOLATION)
        // A service starts with a clean environment, plus what systemd sets for it.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("STATE_DIRECTORY", &state)
        .env("CONFIGURATION_DIRECTORY", config_root.join(config_dir))
        .env("RUST_BACKTRACE", "0");
    for assignment in unit.values("Service", "Environment") {
        let (key, value) = assignment
            .split_once('=')
            .unwrap_or_else(|| panic!("Environment={assignment}"));
        command.env(key, value);
    }
    let proc = Proc::spawn("direwolf.service", &mut command);

    assert_eq!(notification(&notify, &proc), "READY=1\n");
    let server = Direwolf::started(proc, "direwolf serve started", STEP);
    check_running(&server, &config);
    server.proc.stop();
    let mut buf = [0u8; 64];
    let stopping = notify
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert_eq!(stopping.ok().as_deref(), Some("STOPPING=1\n"), "after SIGTERM");
    drop(wolf);
}

#[test]
fn the_unit_keeps_its_sandbox_and_reaches_wolf_through_a_group() {
    let unit = Unit::parse(&read_deployed("direwolf.service"));
    for (key, value) in [
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("SupplementaryGroups", "wolf-api"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(unit.value("Service", key), value, "{key}=");
    }
    // The helper that hands Wolf's socket to that group watches the socket direwolf.toml names.
    let mut config = deployed_config();
    let api = only_wolf(&mut config)["api"].as_str().expect("api").to_owned();
    let path = Unit::parse(&read_deployed("wolf-socket-access.path"));
    assert_eq!(path.value("Path", "PathChanged"), api);
    let helper = read_deployed("wolf-socket-access.service");
    assert!(
        helper.contains(&api) && helper.contains("wolf-api"),
        "wolf-socket-access.service changes {api} for group wolf-api"
    );
    assert!(
        unit.value("Unit", "Wants").contains("wolf-socket-access.path"),
        "direwolf.service pulls the socket watch in"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) docker-compose.yml

fn compose() -> Yaml {
    // Read into JSON values: Compose keys are strings, and its scalars are JSON's.
    serde_saphyr::from_str(&read_deployed("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(service.is_object(), "docker-compose.yml has a service {name}");
    service
}

/// A service's environment (map or `KEY=VALUE` list form).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let scalar = |v: &Yaml| match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("an environment value: {other:?}"),
    };
    match &service["environment"] {
        Yaml::Null => BTreeMap::new(),
        Yaml::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Yaml::Array(list) => list
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("environment: {other:?}"),
    }
}

/// How a service's container paths map to this test's stand-ins: volume targets in the container
/// and their sources on a temporary "host".
struct Mounts(Vec<(PathBuf, PathBuf)>);

impl Mounts {
    /// The short-syntax volumes of `service`: host paths under `host`, named volumes under
    /// `volumes`, and paths relative to the compose file as given by `relative`.
    fn of(service: &Yaml, host: &Path, volumes: &Path, relative: &Path) -> Mounts {
        let list = service["volumes"].as_array().cloned().unwrap_or_default();
        let mounts = list
            .iter()
            .map(|v| {
                let spec = v
                    .as_str()
                    .unwrap_or_else(|| panic!("a short-syntax volume: {v:?}"));
                let mut parts = spec.split(':');
                let (source, target) = (
                    parts.next().unwrap_or_default(),
                    parts
                        .next()
                        .unwrap_or_else(|| panic!("volume {spec:?} has a target")),
                );
                let stand_in = if let Some(rest) = source.strip_prefix("./") {
                    relative.join(rest)
                } else if let Some(rest) = source.strip_prefix('/') {
                    host.join(rest)
                } else {
                    volumes.join(source)
                };
                (PathBuf::from(target), stand_in)
            })
            .collect();
        Mounts(mounts)
    }

    /// Where the container path `path` is on the stand-in host (the longest volume target that
    /// contains it); `None` when no volume holds it.
    fn resolve(&self, path: &Path) -> Option<PathBuf> {
        self.0
            .iter()
            .filter(|(target, _)| path.starts_with(target))
            .max_by_key(|(target, _)| target.components().count())
            .map(|(target, source)| {
                let rest = path.strip_prefix(target).expect("a prefix");
                if rest.components().next().is_none() {
                    source.clone()
                } else {
                    source.join(rest)
                }
            })
    }

    /// `value` with a container path rewritten to its stand-in (other values as they are). A
    /// path outside every volume is a failure: the container's root file system is read-only and
    /// not shared.
    fn rewrite(&self, value: &str) -> String {
        if !value.starts_with('/') {
            return value.to_owned();
        }
        let path = Path::new(value);
        assert!(
            path.components().all(|c| !matches!(c, Component::ParentDir)),
            "{value}: no .. in container paths"
        );
        self.resolve(path)
            .unwrap_or_else(|| panic!("{value} is on no volume of the service"))
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }
}

/// The strings of a `command:` (list form, or a string split at whitespace).
fn command_words(service: &Yaml) -> Vec<String> {
    match &service["command"] {
        Yaml::Array(list) => list
            .iter()
            .map(|w| w.as_str().expect("a command word").to_owned())
            .collect(),
        Yaml::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        other => panic!("the direwolf service has a command: {other:?}"),
    }
}

/// The container path a service names with environment variable `var` or, failing that, with
/// command-line flag `flag`.
fn named_path(service: &Yaml, var: &str, flag: &str) -> String {
    if let Some(value) = environment(service).get(var) {
        return value.clone();
    }
    let words = command_words(service);
    words
        .iter()
        .position(|w| w == flag)
        .and_then(|at| words.get(at + 1).cloned())
        .unwrap_or_else(|| panic!("the service sets {var} or passes {flag}"))
}

#[test]
fn the_compose_service_runs_direwolf_against_wolfs_shared_socket() {
    let compose = compose();
    let (direwolf, wolf_service) = (service(&compose, "direwolf"), service(&compose, "wolf"));
    assert!(
        direwolf["entrypoint"].is_null(),
        "the image's entrypoint (direwolf) runs the command"
    );

    let tmp = tempfile::tempdir().expect("temporary directory");
    let (host, volumes, project) = (
        tmp.path().join("host"),
        tmp.path().join("volumes"),
        tmp.path().join("project"),
    );
    let mounts = Mounts::of(direwolf, &host, &volumes, &project);
    let wolf_mounts = Mounts::of(wolf_service, &host, &volumes, &project);
    for (_, source) in &mounts.0 {
        // What Docker creates: named volumes and missing host directories.
        if !source.starts_with(&project) {
            std::fs::create_dir_all(source).expect("a volume's stand-in");
        }
    }

    // Wolf's socket where Wolf creates it, and where direwolf.toml says it is, both seen from
    // the host: one file, through a shared volume.
    let socket_in_wolf = environment(wolf_service)
        .get("WOLF_SOCKET_PATH")
        .cloned()
        .expect("the wolf service sets WOLF_SOCKET_PATH");
    let socket_on_host = wolf_mounts
        .resolve(Path::new(&socket_in_wolf))
        .unwrap_or_else(|| panic!("WOLF_SOCKET_PATH {socket_in_wolf} is on a volume of the wolf service"));
    let mut deployed = deployed_config();
    let api = only_wolf(&mut deployed)["api"].as_str().expect("api").to_owned();
    let api_on_host = PathBuf::from(mounts.rewrite(&api));
    assert_eq!(
        api_on_host, socket_on_host,
        "direwolf's [[wolf]] api ({api}) must be Wolf's WOLF_SOCKET_PATH ({socket_in_wolf}) through a \
         shared volume"
    );
    let wolf = FakeWolf::start(&socket_on_host);

    // The mounted direwolf.toml, with the socket at its stand-in (this process has no mount
    // namespace) and the fake Wolf's ports.
    let config_file = mounts
        .0
        .iter()
        .map(|(_, source)| source)
        .find(|source| source.starts_with(&project))
        .cloned()
        .expect("the direwolf service mounts a file of the project");
    assert_eq!(config_file, project.join("direwolf.toml"));
    let config = write_config(&config_file, &api_on_host, &wolf);
    assert_eq!(
        PathBuf::from(mounts.rewrite(&named_path(direwolf, "DIREWOLF_CONFIG", "--config"))),
        config_file,
        "direwolf reads the mounted direwolf.toml"
    );
    let data = PathBuf::from(mounts.rewrite(&named_path(direwolf, "DIREWOLF_DATA_DIR", "--data-dir")));
    assert!(
        data.starts_with(&volumes),
        "the data directory is a named volume (it outlives the container): {}",
        data.display()
    );

    let mut command = Command::new(DIREWOLF);
    command
        .args(command_words(direwolf).iter().map(|w| mounts.rewrite(w)))
        .args(ISOLATION)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("RUST_BACKTRACE", "0");
    for (key, value) in environment(direwolf) {
        command.env(key, mounts.rewrite(&value));
    }
    let proc = Proc::spawn("compose direwolf", &mut command);
    let server = Direwolf::started(proc, "direwolf serve started", STEP);
    assert!(
        std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some()),
        "the database is in the data volume {}",
        data.display()
    );
    check_running(&server, &config);
    // `docker stop` sends SIGTERM.
    server.proc.stop();
    drop(wolf);
}

#[test]
fn wolf_is_moved_to_the_ports_direwolf_toml_names() {
    let compose = compose();
    let (direwolf, wolf) = (service(&compose, "direwolf"), service(&compose, "wolf"));
    for (name, s) in [("direwolf", direwolf), ("wolf", wolf)] {
        assert_eq!(
            s["network_mode"].as_str(),
            Some("host"),
            "{name} uses the host network"
        );
    }
    assert_eq!(
        wolf["image"].as_str(),
        Some("ghcr.io/games-on-whales/wolf:stable")
    );
    let env = environment(wolf);
    let port = |var: &str| -> u16 {
        env.get(var)
            .unwrap_or_else(|| panic!("the wolf service sets {var}"))
            .parse()
            .unwrap_or_else(|e| panic!("{var}: {e}"))
    };
    let mut config = deployed_config();
    let relay = config["relay"]["port_range"]
        .as_str()
        .expect("direwolf.toml sets [relay] port_range")
        .to_owned();
    let (first, last) = relay.split_once('-').expect("FIRST-LAST");
    let relay: std::ops::RangeInclusive<u16> = first.parse().expect("first")..=last.parse().expect("last");
    let entry = only_wolf(&mut config);
    let configured = |key: &str| -> u16 {
        let value = entry[key].as_integer().unwrap_or_else(|| panic!("{key}"));
        u16::try_from(value).unwrap_or_else(|_| panic!("{key} = {value}"))
    };
    for (var, key) in [
        ("WOLF_RTSP_SETUP_PORT", "rtsp_port"),
        ("WOLF_VIDEO_PING_PORT", "video_port"),
        ("WOLF_AUDIO_PING_PORT", "audio_port"),
        ("WOLF_CONTROL_PORT", "control_port"),
    ] {
        assert_eq!(port(var), configured(key), "{var} = {key} of direwolf.toml");
    }
    let mut wolf_ports: Vec<u16> = [
        "WOLF_HTTP_PORT",
        "WOLF_HTTPS_PORT",
        "WOLF_RTSP_SETUP_PORT",
        "WOLF_VIDEO_PING_PORT",
        "WOLF_AUDIO_PING_PORT",
        "WOLF_CONTROL_PORT",
    ]
    .iter()
    .map(|var| port(var))
    .collect();
    for p in &wolf_ports {
        assert!(
            ![47984, 47989, 5353].contains(p) && !relay.contains(p),
            "Wolf's port {p} collides with direwolf's (47984, 47989, mDNS, relay {relay:?})"
        );
    }
    wolf_ports.sort_unstable();
    wolf_ports.dedup();
    assert_eq!(wolf_ports.len(), 6, "Wolf's six ports are distinct");
    // Wolf's socket is in a directory both services mount from the host.
    let socket = env.get("WOLF_SOCKET_PATH").expect("WOLF_SOCKET_PATH");
    let dir = Path::new(socket).parent().expect("a directory");
    for (name, s) in [("direwolf", direwolf), ("wolf", wolf)] {
        let mounted = s["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .any(|v| v.split(':').nth(1) == dir.to_str());
        assert!(mounted, "{name} mounts {}", dir.display());
    }
}

// ---------------------------------------------------------------------------------------------
// (c) The Compose specification's schema

/// `python3 -m check_jsonschema --builtin-schema vendor.compose-spec FILE`: its success and
/// output. Fails the test, with instructions, when check-jsonschema is missing.
fn check_compose_schema(file: &Path) -> (bool, String) {
    let probe = Command::new("python3")
        .args(["-m", "check_jsonschema", "--version"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains(CHECK_JSONSCHEMA) => {}
        Ok(out) => panic!(
            "check-jsonschema {CHECK_JSONSCHEMA} is not installed ({}{}): run scripts/test-all, which \
             installs it (pip install check-jsonschema=={CHECK_JSONSCHEMA})",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}): install Python 3 and run scripts/test-all"),
    }
    // The schema is the one check-jsonschema ships: nothing is downloaded.
    let out = Proc::spawn(
        "check-jsonschema",
        Command::new("python3")
            .args([
                "-m",
                "check_jsonschema",
                "--builtin-schema",
                "vendor.compose-spec",
            ])
            .arg(file),
    )
    .finish(STEP);
    (out.status.success(), format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let (ok, report) = check_compose_schema(&deploy_dir().join("docker-compose.yml"));
    assert!(
        ok,
        "docker-compose.yml against the Compose specification's schema:\n{report}"
    );

    // The same file with a misspelt key must be refused: the validator really checks.
    let tmp = tempfile::tempdir().expect("temporary directory");
    let broken = tmp.path().join("docker-compose.yml");
    let text = read_deployed("docker-compose.yml");
    assert!(text.contains("    network_mode: host\n"));
    std::fs::write(
        &broken,
        text.replacen("    network_mode: host\n", "    network_mod: host\n", 1),
    )
    .expect("write");
    let (ok, report) = check_compose_schema(&broken);
    assert!(
        !ok && report.contains("network_mod"),
        "a compose file with an unknown key must fail validation: {report}"
    );
}
