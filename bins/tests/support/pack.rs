//! The pack's end-to-end tests (`pack_e2e.rs`, `shared_ports_e2e.rs`): fake Wolfs in network
//! namespaces and moonlight-python drivers talking to `direwolf serve` at [`DW_IP`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{DIREWOLF, Namespaces, Proc, driver_args, in_netns, ip, run};

pub const PIN: &str = "4821";
pub const SUBNET: &str = "10.77.0";
/// direwolf's address on the bridge of its namespace.
pub const DW_IP: &str = "10.77.0.1";
pub const STEP: Duration = Duration::from_secs(30);

pub fn require_tools() {
    let uid = run(Command::new("id").arg("-u"), "id -u");
    assert_eq!(
        uid.trim(),
        "0",
        "this test creates network namespaces and must run as root"
    );
    super::require_moonlight_python();
    run(Command::new("nft").arg("--version"), "nft (package nftables)");
}

pub struct Wolf {
    pub proc: Proc,
    records: PathBuf,
    args: Vec<String>,
    ns: String,
}

impl Wolf {
    pub fn start(bin: &Path, ns: &str, name: &str, dir: &Path, ip: &str) -> Wolf {
        let records = dir.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&records);
        let args: Vec<String> = [
            "--socket",
            dir.join(format!("{name}.sock")).to_str().expect("utf-8"),
            "--stream-ip",
            ip,
            "--app",
            "1=Desktop",
            "--records",
            records.to_str().expect("utf-8"),
            // Video filler only at the start: moonlight-common-c would otherwise end the stream
            // 10 s after the first video packet for lack of a decodable frame.
            "--video-rtp-pings",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Wolf {
            proc: Self::spawn(bin, ns, name, &args),
            records,
            args,
            ns: ns.to_owned(),
        }
    }

    pub fn spawn(bin: &Path, ns: &str, name: &str, args: &[String]) -> Proc {
        let proc = Proc::spawn(name, in_netns(ns, bin).args(args));
        proc.wait_for("fake wolf ready", STEP);
        proc
    }

    pub fn restart(&mut self, bin: &Path) {
        self.proc.kill();
        let _ = std::fs::remove_file(&self.records);
        self.proc = Self::spawn(bin, &self.ns, self.proc.name(), &self.args);
    }

    /// The fake's stream report (written every 200 ms).
    pub fn report(&self) -> Value {
        super::poll(Duration::from_secs(5), Duration::from_millis(50), || {
            let text = std::fs::read_to_string(&self.records).ok()?;
            serde_json::from_str::<Value>(&text).ok()
        })
        .unwrap_or_else(|| panic!("no records from {}\n{}", self.proc.name(), self.proc.tail()))
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.report()["sessions"].as_array().cloned().unwrap_or_default()
    }

    /// Whether a session of this Wolf received audio pings, and has the whole RTSP handshake
    /// (through PLAY) and the ENet connect on record: a client streams on it. The fake writes
    /// its report every 200 ms, so a report with the first ping may predate the PLAY.
    pub fn has_stream(&self) -> bool {
        self.sessions().iter().any(|s| {
            let played = s["rtsp_requests"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r.as_str().is_some_and(|r| r.starts_with("PLAY")))
            });
            let connected = s["enet_connects"].as_array().is_some_and(|c| !c.is_empty());
            s["audio_pings"].as_u64().unwrap_or(0) > 0 && played && connected
        })
    }
}

pub fn driver(ns: &str, client_dir: &Path, args: &[&str], script: &str) -> Proc {
    Proc::spawn(
        &format!("{script} {}", args[0]),
        in_netns(ns, "python3").args(driver_args(script, DW_IP, 47989, client_dir, args)),
    )
}

pub fn pair(server: &Proc, ns: &str, client_dir: &Path, user: &str) {
    let pairing = driver(ns, client_dir, &["pair", "--pin", PIN], "driver.py");
    let line = server.wait_for("Insert pin at http://", STEP);
    let (_, secret) = super::pin_link(&line);
    let post = driver(
        ns,
        client_dir,
        &["post-pin", "--pin", PIN, "--secret", secret, "--user", user],
        "pack_driver.py",
    );
    let posted = post.report(STEP);
    assert_eq!(
        posted["status"], 200,
        "the PIN page must accept the PIN: {posted}"
    );
    let paired = pairing.report(STEP);
    assert_eq!(paired["ok"], true, "pairing must succeed: {paired}");
}

/// Starts a stream of Desktop from `ns` that lasts until `stop` exists (at most 40 s).
pub fn stream(ns: &str, client_dir: &Path, stop: &Path, extra: &[&str]) -> Proc {
    let until = stop.to_str().expect("utf-8");
    let mut args = vec!["stream", "--app", "Desktop", "--until", until, "--max-secs", "40"];
    args.extend_from_slice(extra);
    driver(ns, client_dir, &args, "pack_driver.py")
}

pub fn serverinfo(ns: &str, client_dir: &Path) -> Value {
    let p = driver(ns, client_dir, &["serverinfo"], "pack_driver.py");
    let r = p.report(STEP);
    assert_eq!(r["ok"], true, "serverinfo failed: {r}");
    r
}

/// RTP counters in a client namespace: packets carrying the fake Wolf's SSRC, by payload type.
pub fn install_rtp_counters(ns: &str) {
    let rules = "table inet dwe2e {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
                 meta l4proto udp @th,128,32 0x57464f4c @th,72,8 97 counter comment \"audio\"\n  \
                 meta l4proto udp @th,128,32 0x57464f4c @th,72,8 96 counter comment \"video\"\n }\n}\n";
    let file = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&file, rules).expect("write nft rules");
    run(in_netns(ns, "nft").arg("-f").arg(&file), "nft -f (RTP counters)");
    let _ = std::fs::remove_file(file);
}

/// (audio, video) RTP packets the client namespace received from a fake Wolf.
pub fn rtp_counts(ns: &str) -> (u64, u64) {
    let text = run(
        in_netns(ns, "nft").args(["list", "table", "inet", "dwe2e"]),
        "nft list",
    );
    let count = |kind: &str| {
        text.lines()
            .find(|l| l.contains(&format!("comment \"{kind}\"")))
            .and_then(|l| l.split("packets ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {kind} counter in {text}"))
    };
    (count("audio"), count("video"))
}

/// Which fake Wolfs (indices) have a client streaming (see [`Wolf::has_stream`]).
pub fn wolves_streaming(wolves: &[Wolf]) -> Vec<usize> {
    wolves
        .iter()
        .enumerate()
        .filter(|(_, w)| w.has_stream())
        .map(|(i, _)| i)
        .collect()
}

/// `direwolf serve` in namespace `ns` with the configuration file `config`, its data under
/// `root`, its metrics on `metrics` and logging at `rust_log`.
pub fn serve_in(ns: &str, root: &Path, config: &Path, metrics: &str, rust_log: &str) -> Proc {
    Proc::spawn(
        "direwolf",
        &mut serve_command_in(ns, root, config, metrics, rust_log),
    )
}

/// The command [`serve_in`] runs, for a test that changes its environment.
pub fn serve_command_in(ns: &str, root: &Path, config: &Path, metrics: &str, rust_log: &str) -> Command {
    let data = root.join("data");
    let mut command = in_netns(ns, DIREWOLF);
    command
        .args([
            "serve",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--bind",
            "0.0.0.0",
            "--no-mdns",
            "--pin-timeout",
            "60",
            "--metrics-bind",
            metrics,
            // Pairings go to the form's user: who enters the PIN is not what these tests are about.
            "--allow-unauthenticated-pin",
        ])
        .env("RUST_LOG", rust_log);
    command
}

/// The namespaces of a run (named `STEM<pid>-<role>`): direwolf (`dw`) with a bridge, and one veth into the bridge for
/// each of client 1 (`c1`), client 2 (`c2`), Wolf A (`wa`) and Wolf B (`wb`).
pub fn pack_net(stem: &str) -> Namespaces {
    let mut net = Namespaces::new(&format!("{stem}{}", std::process::id()));
    let dw = net.add("dw");
    ip(&["-n", &dw, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &dw, "addr", "add", &format!("{DW_IP}/24"), "dev", "br0"]);
    ip(&["-n", &dw, "link", "set", "br0", "up"]);
    for (role, host) in [("c1", 11), ("c2", 12), ("wa", 21), ("wb", 22)] {
        let other = net.add(role);
        // Created inside the direwolf namespace, one end moved: names never clash with
        // another run's.
        let veth = format!("v{role}");
        ip(&[
            "-n", &dw, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
        ]);
        ip(&["-n", &dw, "link", "set", "eth0", "netns", &other]);
        ip(&["-n", &dw, "link", "set", &veth, "master", "br0", "up"]);
        let addr = format!("{SUBNET}.{host}/24");
        ip(&["-n", &other, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &other, "link", "set", "eth0", "up"]);
    }
    net
}
