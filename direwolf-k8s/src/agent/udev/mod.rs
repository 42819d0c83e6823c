//! Controllers in the game container: what Wolf's Docker runner does with games-on-whales'
//! fake-udev, done by the agent for the pod.
//!
//! Wolf announces each virtual input device of a session with a `PlugDeviceEvent` (and its end
//! with an `UnplugDeviceEvent`): `udev_events`, the uevents udev would broadcast, and
//! `udev_hw_db_entries`, the udev database files (`c<major>:<minor>` with lines such as
//! `E:ID_INPUT_JOYSTICK=1`). Games (SDL, libinput) learn about devices only through udev, and a
//! container has no udev. So, like Wolf's runner, [`DeviceRelay`]:
//!
//! * keeps `<udev dir>/control` (libudev only listens to udev's group when it exists) and writes
//!   each database entry to `<udev dir>/data/<name>`, the lines joined by `\n`; the directory is
//!   the game container's `/run/udev` (a volume shared with the agent);
//! * sends each uevent ([`message`]) to udev's netlink group in the pod's network namespace
//!   ([`sink`]), where the game's libudev monitor receives it;
//! * on unplug removes the entries and sends the uevents again with `ACTION=remove`.
//!
//! Wolf's runner also creates the device node (`mknod DEVNAME`) inside the container; the agent
//! cannot reach the game container's `/dev`, so the pod must give the game the nodes (the
//! User's device volumes, e.g. `/dev/input`). Entry names that are not a plain file name are
//! refused (Wolf would write outside the directory).

pub mod message;
pub mod sink;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use direwolf_wolf_client::events::DeviceEvent;

pub use message::Uevent;
pub use sink::{NetlinkSink, UeventSink};

/// Replays Wolf's device events into a udev directory and a [`UeventSink`].
pub struct DeviceRelay {
    dir: PathBuf,
    sink: Arc<dyn UeventSink>,
    seqnum: AtomicU64,
}

impl std::fmt::Debug for DeviceRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRelay")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DeviceRelay {
    /// A relay writing under `dir` (the game's `/run/udev`) and sending to `sink`; creates
    /// `dir/data` and `dir/control`.
    ///
    /// # Errors
    /// The directories or the control file cannot be created.
    pub fn new(dir: impl Into<PathBuf>, sink: Arc<dyn UeventSink>) -> io::Result<Self> {
        let dir = dir.into();
        let data = dir.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| annotate(e, "cannot create the udev database directory", &data))?;
        let control = dir.join("control");
        if !control.exists() {
            std::fs::File::create(&control)
                .map_err(|e| annotate(e, "cannot create the udev control file", &control))?;
        }
        Ok(DeviceRelay {
            dir,
            sink,
            seqnum: AtomicU64::new(1),
        })
    }

    /// The udev directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A device was plugged: writes its database entries, then sends its uevents.
    ///
    /// # Errors
    /// The first entry or uevent that failed (the others are still tried).
    pub fn plug(&self, event: &DeviceEvent) -> io::Result<()> {
        let mut first_error = None;
        for (name, lines) in &event.udev_hw_db_entries {
            if let Err(e) = self.write_entry(name, lines) {
                first_error.get_or_insert(e);
            }
        }
        for props in &event.udev_events {
            if let Err(e) = self.send(props, None) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A device was unplugged: removes its database entries, then sends its uevents with
    /// `ACTION=remove`.
    ///
    /// # Errors
    /// The first entry or uevent that failed (the others are still tried).
    pub fn unplug(&self, event: &DeviceEvent) -> io::Result<()> {
        let mut first_error = None;
        for (name, _) in &event.udev_hw_db_entries {
            let removed = self
                .entry_path(name)
                .and_then(|path| match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(annotate(e, "cannot remove the udev database entry", &path))
                    }
                    _ => Ok(()),
                });
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        for props in &event.udev_events {
            if let Err(e) = self.send(props, Some("remove")) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn entry_path(&self, name: &str) -> io::Result<PathBuf> {
        let plain =
            !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0');
        if !plain {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("udev database entry name {name:?} is not a plain file name"),
            ));
        }
        Ok(self.dir.join("data").join(name))
    }

    fn write_entry(&self, name: &str, lines: &[String]) -> io::Result<()> {
        let path = self.entry_path(name)?;
        std::fs::write(&path, lines.join("\n"))
            .map_err(|e| annotate(e, "cannot write the udev database entry", &path))
    }

    /// Sends one uevent; `ACTION` forced to `action` if given, `ACTION=add` and an own
    /// `SEQNUM` added when Wolf sent none (libudev drops events without them).
    fn send(&self, props: &HashMap<String, String>, action: Option<&str>) -> io::Result<()> {
        let mut event = Uevent {
            properties: props.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        if let Some(action) = action {
            event.properties.insert("ACTION".into(), action.into());
        }
        event
            .properties
            .entry("ACTION".into())
            .or_insert_with(|| "add".into());
        event
            .properties
            .entry("SEQNUM".into())
            .or_insert_with(|| self.seqnum.fetch_add(1, Ordering::Relaxed).to_string());
        self.sink.send(&event).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "uevent {} {}: {e}",
                    event.get("ACTION").unwrap_or_default(),
                    event.get("DEVPATH").unwrap_or("(no DEVPATH)")
                ),
            )
        })
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use direwolf_wolf_client::SessionId;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Uevent>>);

    impl UeventSink for Recorder {
        fn send(&self, event: &Uevent) -> io::Result<()> {
            self.0.lock().push(event.clone());
            Ok(())
        }
    }

    fn device() -> DeviceEvent {
        DeviceEvent {
            session_id: SessionId::new(1),
            udev_events: vec![HashMap::from([
                ("ACTION".to_owned(), "add".to_owned()),
                ("DEVPATH".to_owned(), "/devices/virtual/input/input9".to_owned()),
                ("SUBSYSTEM".to_owned(), "input".to_owned()),
            ])],
            udev_hw_db_entries: vec![(
                "c13:65".to_owned(),
                vec!["E:ID_INPUT=1".to_owned(), "E:ID_INPUT_JOYSTICK=1".to_owned()],
            )],
        }
    }

    #[test]
    fn plug_writes_entries_and_sends_then_unplug_removes() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Recorder::default());
        let relay = DeviceRelay::new(dir.path(), sink.clone()).unwrap();
        assert!(dir.path().join("control").exists());
        relay.plug(&device()).unwrap();
        let entry = dir.path().join("data/c13:65");
        assert_eq!(
            std::fs::read_to_string(&entry).unwrap(),
            "E:ID_INPUT=1\nE:ID_INPUT_JOYSTICK=1"
        );
        relay.unplug(&device()).unwrap();
        assert!(!entry.exists());
        let sent = sink.0.lock().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].get("ACTION"), Some("add"));
        assert_eq!(sent[1].get("ACTION"), Some("remove"));
        assert!(sent[0].get("SEQNUM").is_some(), "a SEQNUM is added");
    }

    #[test]
    fn entry_names_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let relay = DeviceRelay::new(dir.path(), Arc::new(Recorder::default())).unwrap();
        let mut ev = device();
        ev.udev_hw_db_entries = vec![("../escape".to_owned(), vec![])];
        let err = relay.plug(&ev).unwrap_err();
        assert!(err.to_string().contains("not a plain file name"), "{err}");
        assert!(!dir.path().join("escape").exists());
    }
}
