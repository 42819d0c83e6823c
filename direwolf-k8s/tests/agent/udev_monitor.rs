//! Test support for the controller relay: a network namespace (`ip netns`), the agent's netlink
//! socket opened inside it, and a real libudev monitor (python3 calling libudev.so.1 through
//! ctypes) running inside it with the agent's udev directory mounted on its `/run/udev`, as the
//! game container of a stream pod sees it. Needs root.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use direwolf_k8s::agent::udev::NetlinkSink;
use direwolf_wolf_client::SessionId;
use direwolf_wolf_client::events::DeviceEvent;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The joypad Wolf announces for session `id`: one uevent of its event node and its udev
/// database entry.
pub fn joypad(id: SessionId) -> DeviceEvent {
    let props = [
        ("ACTION", "add"),
        ("CURRENT_TAGS", ":seat:uaccess:"),
        ("DEVNAME", "/dev/input/event21"),
        ("DEVPATH", "/devices/virtual/input/input77/event21"),
        ("ID_INPUT", "1"),
        ("ID_INPUT_JOYSTICK", "1"),
        ("MAJOR", "13"),
        ("MINOR", "65"),
        ("SEQNUM", "4711"),
        ("SUBSYSTEM", "input"),
        ("TAGS", ":seat:uaccess:"),
    ];
    DeviceEvent {
        session_id: id,
        udev_events: vec![
            props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ],
        udev_hw_db_entries: vec![(
            "c13:65".to_owned(),
            ["E:ID_INPUT=1", "E:ID_INPUT_JOYSTICK=1", "G:seat", "G:uaccess"]
                .map(str::to_owned)
                .to_vec(),
        )],
    }
}

/// A network namespace, deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// `ip netns add` a fresh one.
    pub fn create() -> Result<NetNs, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dw-udev-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(NetNs { name })
    }

    /// Opens the agent's netlink socket inside the namespace (from a thread that entered it;
    /// the socket stays in the namespace it was created in).
    pub fn open_sink(&self) -> Result<NetlinkSink, String> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))?;
            NetlinkSink::open().map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_owned())?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The monitor: prints `ready` once receiving, then one JSON line per device.
const MONITOR_PY: &str = r#"
import ctypes, json, select, sys
from ctypes import c_void_p, c_char_p, c_int
lib = ctypes.CDLL("libudev.so.1")
def sig(name, res, *args):
    f = getattr(lib, name); f.restype = res; f.argtypes = list(args); return f
udev_new = sig("udev_new", c_void_p)
new_mon = sig("udev_monitor_new_from_netlink", c_void_p, c_void_p, c_char_p)
match_sub = sig("udev_monitor_filter_add_match_subsystem_devtype", c_int, c_void_p, c_char_p, c_char_p)
match_tag = sig("udev_monitor_filter_add_match_tag", c_int, c_void_p, c_char_p)
enable = sig("udev_monitor_enable_receiving", c_int, c_void_p)
get_fd = sig("udev_monitor_get_fd", c_int, c_void_p)
receive = sig("udev_monitor_receive_device", c_void_p, c_void_p)
action = sig("udev_device_get_action", c_char_p, c_void_p)
props = sig("udev_device_get_properties_list_entry", c_void_p, c_void_p)
name = sig("udev_list_entry_get_name", c_char_p, c_void_p)
value = sig("udev_list_entry_get_value", c_char_p, c_void_p)
nxt = sig("udev_list_entry_get_next", c_void_p, c_void_p)
unref = sig("udev_device_unref", c_void_p, c_void_p)
mon = new_mon(udev_new(), b"udev")
assert mon, "no monitor"
# In-kernel filters: the subsystem hash and the tag bloom of the header must be right.
assert match_sub(mon, b"input", None) == 0
assert match_tag(mon, b"seat") == 0
assert enable(mon) == 0, "cannot enable receiving"
fd = get_fd(mon)
print("ready", flush=True)
while True:
    select.select([fd], [], [])
    dev = receive(mon)
    if not dev:
        continue
    out, e = {}, props(dev)
    while e:
        out[name(e).decode()] = (value(e) or b"").decode()
        e = nxt(e)
    print(json.dumps({"action": (action(dev) or b"").decode(), "properties": out}), flush=True)
    unref(dev)
"#;

/// One device the monitor received.
#[derive(Debug, serde::Deserialize)]
pub struct MonitorEvent {
    /// `add`, `remove`.
    pub action: String,
    /// Its properties.
    pub properties: HashMap<String, String>,
}

/// The running monitor.
pub struct Monitor {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    _script: tempfile::NamedTempFile,
}

impl Monitor {
    /// Starts the monitor in `netns` with `udev_dir` on its `/run/udev` and waits until it
    /// receives.
    pub async fn start(netns: &NetNs, udev_dir: &Path) -> Result<Monitor, String> {
        let mut script = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut script, MONITOR_PY.as_bytes()).map_err(|e| e.to_string())?;
        // `ip netns exec` runs the command in a mount namespace of its own, so the mounts stay
        // there.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/udev && mount --bind \"$1\" /run/udev && exec python3 \"$2\"")
            .arg("sh")
            .arg(udev_dir)
            .arg(script.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the monitor: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await {
            Ok(Some(line)) if line == "ready" => Ok(Monitor {
                child,
                lines,
                _script: script,
            }),
            other => Err(format!("the monitor did not start: {other:?}")),
        }
    }

    /// The next device received.
    pub async fn next(&mut self) -> Option<MonitorEvent> {
        let line = self.lines.next_line().await.ok()??;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("monitor line {line:?}: {e}")))
    }

    /// Stops the monitor.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
