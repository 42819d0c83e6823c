//! Damaged and unsafe data directories: refused with a clear error, never replaced, and no redb
//! panic reaching the caller.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use direwolf_core::persistent::{DB_FILE_NAME, PersistentStores, check_data_dir};
use direwolf_core::{Fingerprint, Pairing, PairingStore, UserName};

const DAMAGED: &str = "database damaged: restore it from a backup or move it away to start afresh";

fn pairing() -> Pairing {
    Pairing {
        fingerprint: Fingerprint::of_der(&[1; 32]),
        cert_pem: "-----BEGIN CERTIFICATE-----\n1\n-----END CERTIFICATE-----\n".into(),
        user: UserName::default_user(),
        device_name: None,
        paired_at: 1_700_000_000,
    }
}

/// A data directory with a database holding one pairing; returns the database file.
fn database(dir: &Path) -> PathBuf {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stores = PersistentStores::open(dir).expect("open a fresh database");
    rt.block_on(stores.pairing_store().put(pairing()))
        .expect("store a pairing");
    stores.path().to_owned()
}

/// Opening `dir` fails; returns the error's text.
fn refused(dir: &Path) -> String {
    match PersistentStores::open(dir) {
        Ok(_) => panic!("{} was opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Damages the database with `damage`, then checks the open is refused as damaged and the file
/// is left as it was.
fn refused_as_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> String {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let file = database(tmp.path());
    let mut bytes = std::fs::read(&file).expect("read the database");
    damage(&mut bytes);
    std::fs::write(&file, &bytes).expect("write the damaged database");
    let err = refused(tmp.path());
    assert!(err.contains(DAMAGED), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&file).expect("read it again"),
        bytes,
        "the file was changed"
    );
    err
}

#[test]
fn an_empty_database_is_refused_not_replaced() {
    let err = refused_as_damaged(Vec::clear);
    assert!(err.contains("the file is empty"), "{err}");
}

#[test]
fn a_truncated_database_is_refused_without_a_panic() {
    // redb 3 panics on this one ("assertion failed: storage.raw_file_len()? >= ...").
    let err = refused_as_damaged(|bytes| bytes.truncate(bytes.len() / 2));
    assert!(err.contains("redb stopped on it"), "{err}");
}

#[test]
fn a_database_with_a_zeroed_header_is_refused() {
    refused_as_damaged(|bytes| bytes[..4096].fill(0));
}

#[test]
fn a_database_with_zeroed_pages_is_refused_without_a_panic() {
    // redb 3 panics on this one ("internal error: entered unreachable code"): every page after
    // the header is zeroed, valid header.
    let err = refused_as_damaged(|bytes| bytes[4096..].fill(0));
    assert!(err.contains("redb stopped on it"), "{err}");
}

#[test]
fn a_new_database_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    database(tmp.path());
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list the data directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [DB_FILE_NAME]);
}

#[test]
fn a_directory_others_can_write_is_refused() {
    for (mode, who) in [(0o777, "every user"), (0o770, "its group")] {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("data directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = refused(&dir);
        assert!(err.contains(who) && err.contains("chmod 0700"), "{err}");
        assert!(!dir.join(DB_FILE_NAME).exists(), "a database was created");
    }
}

#[test]
fn a_readable_database_is_narrowed_to_0600() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let file = database(tmp.path());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(PersistentStores::open(tmp.path()).expect("open"));
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_symlinked_database_is_refused() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let elsewhere = tmp.path().join("elsewhere");
    let target = database(&elsewhere);
    let before = std::fs::read(&target).expect("read the database");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("data directory");
    symlink(&target, dir.join(DB_FILE_NAME)).expect("symlink");
    let err = refused(&dir);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&target).expect("read it again"), before);
}

#[test]
fn a_directory_or_database_of_another_user_is_refused() {
    if !support::is_root("a_directory_or_database_of_another_user_is_refused") {
        return;
    }
    const OTHER: u32 = 4242;
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("data directory");
    std::os::unix::fs::chown(&dir, Some(OTHER), None).expect("chown the directory");
    let err = refused(&dir);
    assert!(err.contains("belongs to uid 4242"), "{err}");
    assert!(!dir.join(DB_FILE_NAME).exists(), "a database was created");

    let tmp = tempfile::tempdir().expect("temporary directory");
    let file = database(tmp.path());
    std::os::unix::fs::chown(&file, Some(OTHER), None).expect("chown the database");
    let err = refused(tmp.path());
    assert!(err.contains("belongs to uid 4242"), "{err}");
    assert_eq!(std::fs::metadata(&file).expect("stat").uid(), OTHER);
}

#[test]
fn the_checks_run_without_opening_or_changing_anything() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let missing = tmp.path().join("missing");
    check_data_dir(&missing).expect("a missing directory would be created");
    assert!(!missing.exists(), "the check created the directory");

    // Beside a server using the database.
    let dir = tmp.path().join("data");
    let stores = PersistentStores::open(&dir).expect("open");
    check_data_dir(&dir).expect("an open, safe database passes");
    drop(stores);

    let file = dir.join(DB_FILE_NAME);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    check_data_dir(&dir).expect("a mode that open narrows passes");
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "the check changed the mode");

    std::fs::write(&file, b"").expect("empty the database");
    let err = check_data_dir(&dir)
        .expect_err("an empty database fails")
        .to_string();
    assert!(err.contains(DAMAGED), "{err}");

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = check_data_dir(&dir)
        .expect_err("a 0777 directory fails")
        .to_string();
    assert!(err.contains("chmod 0700"), "{err}");
}
