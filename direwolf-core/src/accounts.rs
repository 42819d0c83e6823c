//! Local accounts: passwords hashed with Argon2id (stored as PHC strings, never the password),
//! and one-time pairing links an administrator issues for a user.
//!
//! * [`PasswordHash::new`] checks the length policy ([`check_password`]) and hashes with a fresh
//!   random salt; [`PasswordHash::verify`] leaves the constant-time comparison to `argon2`.
//!   Hashing is deliberately slow (tens of milliseconds): call it off the async workers
//!   ([`PasswordHash::new_blocking`], [`PasswordHash::verify_blocking`]).
//! * [`PairingLinks`] holds links in memory: a random 32-byte token (base64url, no padding) is
//!   given out once; only its SHA-256 is kept. A link names a user and expires
//!   ([`DEFAULT_LINK_TTL`], at most [`MAX_LINK_TTL`]). Its PIN going out
//!   [reserves](PairingLinks::reserve) it ([`LinkError::InUse`] meanwhile); the pairing succeeding
//!   [consumes](PairingLinks::consume) it (then [`LinkError::Used`]), failing
//!   [gives it back](PairingLinks::restore). A reservation nobody ends (the client gave up) lapses
//!   after [`RESERVATION_TTL`].
//!
//! ```
//! use direwolf_core::accounts::PasswordHash;
//!
//! let hash = PasswordHash::new("correct horse battery").expect("a valid password");
//! assert!(hash.as_phc().starts_with("$argon2id$"));
//! assert!(hash.verify("correct horse battery"));
//! assert!(!hash.verify("wrong horse battery"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as Phc};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::unix_now;
use crate::ids::UserName;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The most characters a password may have.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a password is refused: a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PasswordError(String);

/// Checks the password policy: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_CHARS`] characters, no control characters.
///
/// # Errors
/// A [`PasswordError`] saying which rule the password breaks (never the password).
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordError(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError(
            "the password must not contain control characters (such as a newline)".into(),
        ));
    }
    Ok(())
}

/// An Argon2id hash of a password as a PHC string (`$argon2id$v=19$m=…`). Its `Debug` shows
/// nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

impl PasswordHash {
    /// Hashes `password` (after [`check_password`]) with a fresh random salt.
    ///
    /// # Errors
    /// The policy's [`PasswordError`]; hashing itself does not fail with the default parameters.
    pub fn new(password: &str) -> Result<Self, PasswordError> {
        check_password(password)?;
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError(format!("salt: {e}")))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| PasswordError(format!("cannot hash the password: {e}")))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// [`PasswordHash::new`] on tokio's blocking pool.
    ///
    /// # Errors
    /// As [`PasswordHash::new`].
    pub async fn new_blocking(password: String) -> Result<Self, PasswordError> {
        tokio::task::spawn_blocking(move || PasswordHash::new(&password))
            .await
            .map_err(|e| PasswordError(format!("cannot hash the password: {e}")))?
    }

    /// Whether `password` is the one hashed. A stored string that is not a PHC hash matches
    /// nothing.
    pub fn verify(&self, password: &str) -> bool {
        // No valid password is longer (4 bytes per character at most).
        if password.len() > 4 * MAX_PASSWORD_CHARS {
            return false;
        }
        match Phc::new(&self.0) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// [`PasswordHash::verify`] on tokio's blocking pool.
    pub async fn verify_blocking(&self, password: String) -> bool {
        let hash = self.clone();
        tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false)
    }

    /// The PHC string (what is stored).
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

/// How long a pairing link lasts unless the administrator says otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest a pairing link may last.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a reservation holds when its pairing neither succeeds nor fails (longer than a
/// pairing handshake may take after its PIN).
pub const RESERVATION_TTL: Duration = Duration::from_secs(180);
/// The most links kept at once; expired and used ones are dropped first.
const MAX_LINKS: usize = 1024;

/// Why a pairing link cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No such link was issued (or it was forgotten after a restart).
    #[error("this pairing link is not valid; ask your administrator for a new one")]
    Unknown,
    /// The link is past its expiry.
    #[error("this pairing link has expired; ask your administrator for a new one")]
    Expired,
    /// The link was already used to pair a client.
    #[error("this pairing link was already used; ask your administrator for a new one")]
    Used,
    /// A client is pairing with this link right now.
    #[error("this pairing link is pairing a client right now; if that pairing fails, try again in a moment")]
    InUse,
}

/// A link just issued: the token (given out once) and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLink {
    /// The bearer token, base64url without padding (43 characters).
    pub token: String,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Fresh,
    /// Its PIN went out at this time (Unix seconds); the pairing has not ended yet.
    Reserved(u64),
    Used,
}

#[derive(Debug, Clone)]
struct Link {
    user: UserName,
    expires_at: u64,
    state: LinkState,
}

impl Link {
    /// Whether a new pairing may use the link at `now`.
    fn usable(&self, now: u64) -> Result<UserName, LinkError> {
        match self.state {
            LinkState::Used => Err(LinkError::Used),
            _ if self.expires_at <= now => Err(LinkError::Expired),
            LinkState::Reserved(since) if now < since.saturating_add(RESERVATION_TTL.as_secs()) => {
                Err(LinkError::InUse)
            }
            _ => Ok(self.user.clone()),
        }
    }
}

/// One-time pairing links, kept in memory by the SHA-256 of their token (a restart forgets
/// them). Cheap to clone; clones share the links.
#[derive(Debug, Clone, Default)]
pub struct PairingLinks {
    links: Arc<Mutex<HashMap<[u8; 32], Link>>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl PairingLinks {
    /// Issues a link for `user`, valid for `ttl` (clamped to [`MAX_LINK_TTL`]).
    pub fn issue(&self, user: UserName, ttl: Duration) -> IssuedLink {
        self.issue_at(user, ttl, unix_now())
    }

    fn issue_at(&self, user: UserName, ttl: Duration, now: u64) -> IssuedLink {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let expires_at = now.saturating_add(ttl.min(MAX_LINK_TTL).as_secs());
        let mut links = self.links.lock();
        if links.len() >= MAX_LINKS {
            links.retain(|_, l| l.state != LinkState::Used && l.expires_at > now);
        }
        if links.len() >= MAX_LINKS {
            // Still full of live links: the one expiring first goes.
            if let Some(oldest) = links.iter().min_by_key(|(_, l)| l.expires_at).map(|(k, _)| *k) {
                links.remove(&oldest);
            }
        }
        links.insert(
            digest(&token),
            Link {
                user,
                expires_at,
                state: LinkState::Fresh,
            },
        );
        IssuedLink { token, expires_at }
    }

    /// The user `token` pairs for, if a new pairing may use it now.
    ///
    /// # Errors
    /// [`LinkError`] when the link is unknown, expired, used or in use.
    pub fn check(&self, token: &str) -> Result<UserName, LinkError> {
        self.check_at(token, unix_now())
    }

    fn check_at(&self, token: &str, now: u64) -> Result<UserName, LinkError> {
        let links = self.links.lock();
        links.get(&digest(token)).ok_or(LinkError::Unknown)?.usable(now)
    }

    /// Reserves `token` for the pairing its PIN is going to: [`PairingLinks::check`], then
    /// [`LinkError::InUse`] for everyone else until [`PairingLinks::consume`],
    /// [`PairingLinks::restore`] or [`RESERVATION_TTL`].
    ///
    /// # Errors
    /// As [`PairingLinks::check`].
    pub fn reserve(&self, token: &str) -> Result<UserName, LinkError> {
        self.reserve_at(token, unix_now())
    }

    fn reserve_at(&self, token: &str, now: u64) -> Result<UserName, LinkError> {
        let mut links = self.links.lock();
        let link = links.get_mut(&digest(token)).ok_or(LinkError::Unknown)?;
        let user = link.usable(now)?;
        link.state = LinkState::Reserved(now);
        Ok(user)
    }

    /// Uses `token` up: its pairing succeeded. Later uses get [`LinkError::Used`].
    pub fn consume(&self, token: &str) {
        if let Some(link) = self.links.lock().get_mut(&digest(token)) {
            link.state = LinkState::Used;
        }
    }

    /// Gives a reserved `token` back: its PIN could not be delivered or its pairing failed.
    pub fn restore(&self, token: &str) {
        if let Some(link) = self.links.lock().get_mut(&digest(token))
            && matches!(link.state, LinkState::Reserved(_))
        {
            link.state = LinkState::Fresh;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_salted_and_verified() {
        let a = PasswordHash::new("hunter2hunter2").unwrap();
        let b = PasswordHash::new("hunter2hunter2").unwrap();
        assert!(a.as_phc().starts_with("$argon2id$v=19$"), "{}", a.as_phc());
        assert!(!a.as_phc().contains("hunter2"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.verify("hunter2hunter2") && b.verify("hunter2hunter2"));
        assert!(!a.verify("hunter2hunter3"));
        assert!(!a.verify(""));
        assert_eq!(format!("{a:?}"), "PasswordHash(..)");
        // What is stored is the PHC string alone.
        let json = serde_json::to_string(&a).unwrap();
        let back: PasswordHash = serde_json::from_str(&json).unwrap();
        assert!(back.verify("hunter2hunter2"));
        assert!(!PasswordHash("not a hash".into()).verify("hunter2hunter2"));
    }

    #[test]
    fn the_password_policy() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("ééééééé😀").is_ok(), "characters, not bytes");
        let short = check_password("1234567").unwrap_err().to_string();
        assert!(short.contains("at least 8"), "{short}");
        assert!(check_password(&"é".repeat(MAX_PASSWORD_CHARS)).is_ok());
        let long = check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).unwrap_err();
        assert!(long.to_string().contains("at most 1024"), "{long}");
        assert!(check_password("12345678\n").is_err());
        assert!(PasswordHash::new("short").is_err());
    }

    #[test]
    fn a_link_is_reserved_then_used_once() {
        let links = PairingLinks::default();
        let bob: UserName = "bob".parse().unwrap();
        let issued = links.issue_at(bob.clone(), DEFAULT_LINK_TTL, 1000);
        assert_eq!(issued.token.len(), 43, "32 bytes, base64url without padding");
        assert_eq!(issued.expires_at, 1000 + 15 * 60);
        assert_eq!(links.check_at(&issued.token, 1001), Ok(bob.clone()));
        // Its PIN goes out: nobody else may use it meanwhile.
        assert_eq!(links.reserve_at(&issued.token, 1001), Ok(bob.clone()));
        assert_eq!(links.check_at(&issued.token, 1002), Err(LinkError::InUse));
        assert_eq!(links.reserve_at(&issued.token, 1002), Err(LinkError::InUse));
        // The pairing failed (a mistyped PIN): usable again.
        links.restore(&issued.token);
        assert_eq!(links.reserve_at(&issued.token, 1003), Ok(bob.clone()));
        // The pairing succeeded: used up, even if it expired meanwhile; restore cannot undo it.
        links.consume(&issued.token);
        links.restore(&issued.token);
        assert_eq!(links.check_at(&issued.token, 1004), Err(LinkError::Used));
        assert_eq!(links.reserve_at(&issued.token, 5000), Err(LinkError::Used));
        assert_eq!(links.check_at("not-issued", 1002), Err(LinkError::Unknown));
        // Only the digest is kept.
        let stored = format!("{:?}", links.links.lock().keys().collect::<Vec<_>>());
        assert!(!stored.contains(&issued.token));
    }

    #[test]
    fn a_reservation_nobody_ends_lapses() {
        let links = PairingLinks::default();
        let issued = links.issue_at("bob".parse().unwrap(), DEFAULT_LINK_TTL, 1000);
        links.reserve_at(&issued.token, 1000).unwrap();
        let lapse = 1000 + RESERVATION_TTL.as_secs();
        assert_eq!(links.check_at(&issued.token, lapse - 1), Err(LinkError::InUse));
        assert!(links.reserve_at(&issued.token, lapse).is_ok());
    }

    #[test]
    fn links_expire_and_live_at_most_a_day() {
        let links = PairingLinks::default();
        let user: UserName = "bob".parse().unwrap();
        let short = links.issue_at(user.clone(), Duration::from_secs(60), 1000);
        assert!(links.check_at(&short.token, 1059).is_ok());
        assert_eq!(links.check_at(&short.token, 1060), Err(LinkError::Expired));
        assert_eq!(links.reserve_at(&short.token, 2000), Err(LinkError::Expired));
        let long = links.issue_at(user, Duration::from_secs(7 * 24 * 3600), 1000);
        assert_eq!(long.expires_at, 1000 + 24 * 3600);
    }
}
