//! What the data directory and the database file must be before the database is opened.
//!
//! The database holds the server's private key and the list of paired clients, so whoever can
//! replace it can pair a device of their own or impersonate the server. As OpenOptions's
//! `StrictModes` does for `~/.ssh`, an unsafe setup is refused with the command that fixes it,
//! rather than used with a warning that is easy to miss:
//!
//! * the data directory must belong to this process's user (or to root) and be writable by no
//!   group and no other user;
//! * the database must be a regular file, not a symbolic link, belonging to this process's user;
//!   a wider mode than 0600 is narrowed to 0600 (with a warning);
//! * an existing database file is never replaced: an empty one is refused as damaged. A new
//!   database is created under a temporary name and renamed into place, so that an empty
//!   [`DB_FILE_NAME`](super::DB_FILE_NAME) can only come from damage, not from a crash during
//!   creation.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::PersistentError;

/// Refuses a data directory other users could write to or that another user owns.
pub(super) fn check_dir(dir: &Path) -> Result<(), PersistentError> {
    let meta = std::fs::metadata(dir).map_err(|source| PersistentError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let unsafe_dir = |reason: String| PersistentError::Unsafe {
        path: dir.to_owned(),
        reason,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".to_owned()));
    }
    let uid = effective_uid(dir)?;
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(unsafe_dir(format!(
            "belongs to uid {}, not to this process's uid {uid}; run `chown {uid} {}` or run \
             direwolf as its owner",
            meta.uid(),
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by {} (mode {mode:04o}), who could replace the database; run `chmod \
             0700 {}`",
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            dir.display()
        )));
    }
    Ok(())
}

/// Opens the existing database file for reading and writing, or `None` if there is none.
pub(super) fn open_existing(path: &Path) -> Result<Option<File>, PersistentError> {
    let io_error = |source| PersistentError::Io {
        path: path.to_owned(),
        source,
    };
    let link = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    check_file(path, &link)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    // The file opened is the one checked above, not a link put in its place since.
    if (meta.dev(), meta.ino()) != (link.dev(), link.ino()) {
        return Err(PersistentError::Unsafe {
            path: path.to_owned(),
            reason: "was replaced while it was being opened".to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error)?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:04o}"),
            "the database holds the server's private key: narrowed its mode to 0600"
        );
    }
    Ok(Some(file))
}

/// The checks of [`check_dir`] and, on an existing database file at `path`, those of
/// [`open_existing`], creating, changing and opening nothing (the database may be in use).
pub(super) fn check_without_opening(dir: &Path, path: &Path) -> Result<(), PersistentError> {
    if !dir.exists() {
        return Ok(());
    }
    check_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(link) => check_file(path, &link),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PersistentError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Refuses a database file (`link`: its `lstat`) that is a symbolic link, not a regular file,
/// another user's, or empty.
fn check_file(path: &Path, link: &Metadata) -> Result<(), PersistentError> {
    let unsafe_file = |reason: String| PersistentError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    if link.file_type().is_symlink() {
        return Err(unsafe_file(
            "is a symbolic link; direwolf opens only the file itself: move the file into the \
             data directory in place of the link"
                .to_owned(),
        ));
    }
    if !link.is_file() {
        return Err(unsafe_file("is not a regular file".to_owned()));
    }
    let uid = effective_uid(path)?;
    if link.uid() != uid {
        return Err(unsafe_file(format!(
            "belongs to uid {}, not to this process's uid {uid}; run `chown {uid} {}` or run \
             direwolf as its owner",
            link.uid(),
            path.display()
        )));
    }
    if link.len() == 0 {
        return Err(PersistentError::Damaged {
            path: path.to_owned(),
            detail: "the file is empty".to_owned(),
        });
    }
    Ok(())
}

/// Creates an empty database at `path` through a temporary file renamed into place, with
/// `init` writing the new file's first content.
pub(super) fn create_new(
    path: &Path,
    init: impl FnOnce(File) -> Result<(), PersistentError>,
) -> Result<(), PersistentError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| PersistentError::Io { path, source }
    };
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = Path::new(&temp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(temp)
        .map_err(io_error(temp))?;
    init(file)?;
    std::fs::rename(temp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    Ok(())
}

/// This process's effective user id, from `/proc/self/status`.
fn effective_uid(checking: &Path) -> Result<u32, PersistentError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|source| PersistentError::Io {
        path: "/proc/self/status".into(),
        source,
    })?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| PersistentError::Unsafe {
            path: checking.to_owned(),
            reason: "cannot be checked: /proc/self/status shows no effective user id".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_is_read() {
        let uid = effective_uid(Path::new("/")).unwrap();
        // The owner of a file this process creates is its effective uid.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), uid);
    }
}
