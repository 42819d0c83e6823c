//! The admin token: a random bearer token kept in the data directory (file `admin-token`, mode
//! 0600), created once and read by the CLI on the same machine.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// Random bytes in a generated token (256 bits), written as 64 hex digits.
const TOKEN_BYTES: usize = 32;
/// The shortest token accepted from a file (128 bits as hex).
const MIN_TOKEN_CHARS: usize = 32;

/// The bearer token of the admin API. Secret: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// A fresh random token (256 bits from the OS generator).
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        AdminToken(hex::encode(bytes))
    }

    /// A token given as text (from a file or the command line): trimmed, at least 32 visible
    /// ASCII characters.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] when the text is too short or has other characters.
    pub fn parse(text: &str) -> io::Result<Self> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_CHARS || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an admin token is at least {MIN_TOKEN_CHARS} visible ASCII characters"),
            ));
        }
        Ok(AdminToken(text.to_owned()))
    }

    /// The path of the token file in `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(TOKEN_FILE)
    }

    /// Reads the token of `dir`, creating it first (mode 0600, never replaced) when there is
    /// none. A file readable by others is narrowed to 0600.
    ///
    /// # Errors
    /// The directory or file cannot be read or written, or the file holds no valid token.
    pub fn load_or_create(dir: &Path) -> io::Result<Self> {
        let path = Self::path_in(dir);
        let token = Self::generate();
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(token.0.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()?;
                return Ok(token);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mode = fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            tracing::warn!(path = %path.display(), "the admin token file was readable by others: narrowed to 0600");
        }
        Self::read(&path)
    }

    /// Reads a token file.
    ///
    /// # Errors
    /// The file cannot be read or holds no valid token.
    pub fn read(path: &Path) -> io::Result<Self> {
        let text = fs::read_to_string(path)?;
        Self::parse(&text).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// Whether `presented` is this token. Compares SHA-256 digests, so the time taken says
    /// nothing about how much of the token matched.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        expected
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The token itself, to send in an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_random() {
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::load_or_create(dir.path()).unwrap();
        assert_eq!(first.expose().len(), 64);
        let mode = fs::metadata(AdminToken::path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AdminToken::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again, "the token is kept across restarts");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, AdminToken::load_or_create(other.path()).unwrap());
        assert!(!format!("{first:?}").contains(first.expose()));
    }

    #[test]
    fn a_loose_file_is_narrowed_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = AdminToken::path_in(dir.path());
        fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let token = AdminToken::load_or_create(dir.path()).unwrap();
        assert_eq!(token.expose(), "0123456789abcdef0123456789abcdef");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(&path, "short").unwrap();
        assert!(AdminToken::load_or_create(dir.path()).is_err());
    }

    #[test]
    fn matching() {
        let token = AdminToken::generate();
        assert!(token.matches(token.expose()));
        assert!(!token.matches(""));
        assert!(!token.matches(&token.expose()[1..]));
        assert!(!token.matches(&format!("{}x", token.expose())));
    }
}
