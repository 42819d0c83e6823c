//! The database heals after an I/O error: on a small tmpfs, a write that meets a full disk is
//! answered as failed, readiness reports it, and once space is freed the database is reopened
//! and writes succeed, without a restart. Needs root (to mount the tmpfs).

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{Fingerprint, Pairing, PairingStore, UserName};

/// Size of the tmpfs.
const TMPFS_BYTES: usize = 8 << 20;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={TMPFS_BYTES},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A pairing whose certificate takes `size` bytes, so that storing it needs fresh pages.
fn pairing(n: u8, size: usize) -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(&[n; 32]),
        cert_pem: "A".repeat(size),
        user: UserName::default_user(),
        device_name: None,
        paired_at: 1_700_000_000,
    }
}

/// Fills the file system of `dir` with a file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xa5_u8; 64 << 10];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_a_write_and_the_database_heals_once_space_is_freed() {
    if !support::is_root("a_full_disk_fails_a_write_and_the_database_heals_once_space_is_freed") {
        return;
    }
    let tmpfs = Tmpfs::mount();
    let data = tmpfs.path().join("data");
    let stores = PersistentStores::open(&data).expect("open the database");
    let pairings = stores.pairing_store();
    pairings.put(pairing(1, 100)).await.expect("a first write");

    let filler = fill(tmpfs.path());
    let err = pairings
        .put(pairing(2, 1 << 20))
        .await
        .expect_err("a write on a full disk fails");
    eprintln!("the write on a full disk: {err}");
    let unready = stores
        .health()
        .expect_err("readiness reports the closed database");
    assert!(unready.contains("I/O error"), "{unready}");
    // Still full: a write fails again, clearly.
    let again = pairings
        .put(pairing(3, 100))
        .await
        .expect_err("a write while the disk is full fails");
    assert!(again.to_string().contains("cannot be reopened yet"), "{again}");
    assert_eq!(
        pairings.get(&pairing(3, 100).fingerprint).await.expect("get"),
        None
    );

    std::fs::remove_file(filler).expect("free the space");
    // No call needed: the database is reopened in the background, and readiness comes back.
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(why) = stores.health() {
        assert!(
            Instant::now() < deadline,
            "still not ready 15 s after space was freed: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pairings
        .put(pairing(4, 1 << 20))
        .await
        .expect("a write after space was freed");
    let stored: Vec<_> = pairings
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.fingerprint)
        .collect();
    assert!(stored.contains(&pairing(1, 100).fingerprint), "{stored:?}");
    assert!(stored.contains(&pairing(4, 100).fingerprint), "{stored:?}");
    assert!(!stored.contains(&pairing(3, 100).fingerprint), "{stored:?}");

    // And it is all on disk.
    drop(pairings);
    drop(stores);
    let stores = PersistentStores::open(&data).expect("reopen the database");
    let after = stores.pairing_store().list().await.expect("list");
    assert_eq!(after.len(), stored.len(), "{after:?}");
}
