//! The server side of Moonlight pairing (`docs/protocol/moonlight-http.md` § Pairing): a state
//! machine per in-flight handshake, keyed by a correlation key that is never an identity.
//!
//! Phases 2–4 arrive on new plain-HTTP connections and carry nothing but the client's `uniqueid`
//! (shared by most clients) to tie them to phase 1, so in-flight entries are keyed by
//! `(client IP, uniqueid)` ([`PairingKey`], § In-flight pairings). The identity established by a
//! pairing is the certificate received in phase 1; phase 4 hands back a [`CompletedPairing`] that
//! the caller persists before replying.
//!
//! Phase 1 is held until a person types the PIN: [`PairingManager::begin`] records the client
//! certificate and salt and returns a [`HeldPhase1`] whose `superseded` receiver fires when a
//! newer attempt with the same key replaces it; [`PairingManager::pin_entered`] derives the key
//! once the PIN arrives and returns `plaincert`. [`Phase1`] (`phase1.rs`) runs phase 1 from
//! request to reply around those two: the PIN broker entry, the PIN page URL in the log, the
//! wait, and the clean-up however the held request ends. The request handlers only route to
//! it and to the phase 2–4 methods. Unit tests are in `tests.rs`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use direwolf_core::{Fingerprint, PairSecret, Pin, UserName};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::crypto::{CertificateInfo, aes_ecb_decrypt, aes_ecb_encrypt, derive_key, sha256};
use crate::identity::LoadedIdentity;
use crate::source::{FailureTable, PrefixLengths, Source};
use crate::xml::XmlReply;

pub mod admission;
mod phase1;

pub use phase1::{Phase1, Phase1Request};

/// The correlation key of one in-flight handshake: client IP and the `uniqueid` string. Not an
/// identity (`docs/protocol/moonlight-http.md` § Client identity): most clients send
/// `0123456789ABCDEF`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PairingKey {
    ip: IpAddr,
    unique_id: String,
}

impl PairingKey {
    /// The longest `uniqueid` kept (longer ones are truncated; real ones have at most 16).
    pub const MAX_UNIQUE_ID: usize = 64;

    /// Builds a key; a missing `uniqueid` is the empty string.
    pub fn new(ip: IpAddr, unique_id: Option<&str>) -> Self {
        let mut unique_id = unique_id.unwrap_or("").to_owned();
        if unique_id.len() > Self::MAX_UNIQUE_ID {
            let mut cut = Self::MAX_UNIQUE_ID;
            while !unique_id.is_char_boundary(cut) {
                cut -= 1;
            }
            unique_id.truncate(cut);
        }
        PairingKey { ip, unique_id }
    }

    /// The client address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// A pairing request the server refuses: an XML status and message, with `<paired>0</paired>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pairing refused ({status}): {message}")]
pub struct PairReject {
    /// The XML `status_code`.
    pub status: u32,
    /// The `status_message`.
    pub message: String,
}

impl PairReject {
    fn new(status: u32, message: impl Into<String>) -> Self {
        PairReject {
            status,
            message: message.into(),
        }
    }

    /// A 400 with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// "No pairing in progress" (unknown or expired in-flight entry).
    pub fn no_pairing() -> Self {
        Self::bad_request(NO_PAIRING)
    }

    /// The reply: `<root status_code=".." status_message=".."><paired>0</paired></root>`.
    pub fn to_xml(&self) -> XmlReply {
        XmlReply::error(self.status, self.message.clone()).leaf("paired", 0)
    }
}

/// Message for an unknown in-flight entry.
pub const NO_PAIRING: &str = "No pairing in progress";
/// Message for a held phase 1 replaced by a newer attempt.
pub const SUPERSEDED: &str = "Superseded by a newer pairing attempt";
/// Message for a held phase 1 evicted to make room for requests from elsewhere.
pub const EVICTED: &str =
    "Too many pairings are waiting for a PIN from this network; the oldest was dropped for a newer one";
/// Message for a phase 1 whose PIN never came.
pub const PIN_TIMED_OUT: &str = "PIN entry timed out";

/// What phase 4 established, to persist before replying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPairing {
    /// The client certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The client certificate PEM as received.
    pub cert_pem: String,
    /// The user it belongs to (from the PIN submission, else the server's default).
    pub user: UserName,
    /// The client's `devicename`.
    pub device_name: Option<String>,
}

/// The outcome of phase 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase4 {
    /// Hash and signature check out: persist, then reply `paired` 1.
    Paired(CompletedPairing),
    /// Wrong PIN or a bad signature: reply `paired` 0 with status 200.
    Mismatch,
}

/// A phase 1 waiting for its PIN.
#[derive(Debug)]
pub struct HeldPhase1 {
    /// Identifies this attempt among attempts with the same key.
    pub generation: u64,
    /// Fires, with the reason ([`SUPERSEDED`] or [`EVICTED`]), when a newer phase 1 with the
    /// same key replaces this one or admission evicts it.
    pub superseded: oneshot::Receiver<&'static str>,
    /// PIN broker entries of held requests evicted to admit this one: the caller closes them
    /// before opening its own, so that the broker has room.
    pub evicted: Vec<PairSecret>,
}

/// Bounds of the pairing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingLimits {
    /// In-flight handshakes at once (held phase 1s included).
    pub max_in_flight: usize,
    /// Phase 1s held for a PIN at once, from all sources; at most the PIN broker's capacity
    /// (64 for the in-memory broker). When full, the busiest source's oldest makes way.
    pub max_held: usize,
    /// Phase 1s held for a PIN at once per source (see [`PairingLimits::prefixes`]); a
    /// newcomer from a source at its share replaces that source's oldest.
    pub max_held_per_source: usize,
    /// How addresses group into one source for the held and failure limits (IPv4 /24, IPv6 /64).
    pub prefixes: PrefixLengths,
    /// How long a handshake may take from the PIN to phase 4 (clients need milliseconds).
    pub handshake_ttl: Duration,
    /// Failed pairings (phase-4 mismatch, or an abandoned handshake after phase 2) tolerated per
    /// source (address prefix, [`PairingLimits::prefixes`]) within [`PairingLimits::failure_window`] before phase 1 is refused.
    pub max_failures_per_ip: usize,
    /// The window of [`PairingLimits::max_failures_per_ip`].
    pub failure_window: Duration,
}

impl Default for PairingLimits {
    fn default() -> Self {
        PairingLimits {
            max_in_flight: 128,
            max_held: 64,
            max_held_per_source: 4,
            prefixes: PrefixLengths::default(),
            handshake_ttl: Duration::from_secs(120),
            max_failures_per_ip: 10,
            failure_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Supplies the 16-byte randoms SS and SC (tests inject fixed values, vector C of
/// `docs/protocol/moonlight-http.md` § Test vectors).
pub type RandomSource = Arc<dyn Fn() -> [u8; 16] + Send + Sync>;

fn os_random() -> [u8; 16] {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

enum Phase {
    /// Phase 1 is held for the PIN.
    AwaitingPin {
        superseded: Option<oneshot::Sender<&'static str>>,
        /// The PIN broker entry, once opened.
        secret: Option<PairSecret>,
    },
    /// Phase 1 answered; waiting for `clientchallenge`.
    CertSent { key: [u8; 16] },
    /// Phase 2 answered; waiting for `serverchallengeresp`.
    ChallengeSent {
        key: [u8; 16],
        ss: [u8; 16],
        sc: [u8; 16],
    },
    /// Phase 3 answered; waiting for `clientpairingsecret`.
    SecretSent { sc: [u8; 16], client_hash: Vec<u8> },
}

impl Phase {
    fn number(&self) -> u8 {
        match self {
            Phase::AwaitingPin { .. } => 0,
            Phase::CertSent { .. } => 1,
            Phase::ChallengeSent { .. } => 2,
            Phase::SecretSent { .. } => 3,
        }
    }
}

struct Entry {
    generation: u64,
    client: Arc<CertificateInfo>,
    salt: [u8; 16],
    device_name: Option<String>,
    user: Option<UserName>,
    /// The PIN broker entry the PIN came through (kept past phase 1: the PIN page learns how
    /// the pairing it delivered a PIN to ended).
    pin_secret: Option<PairSecret>,
    phase: Phase,
    /// Set when the PIN arrives; entries past phase 1 expire `handshake_ttl` after it.
    since: Instant,
}

struct State {
    entries: HashMap<PairingKey, Entry>,
    next_generation: u64,
    failures: FailureTable,
}

/// Sources kept in the failure table; past it, failures are counted together (never ignored).
const MAX_FAILURE_SOURCES: usize = 4096;

impl Entry {
    /// Ends a held phase 1 from outside: tells its request why and hands back its broker entry.
    fn end_held(self, reason: &'static str) -> Option<PairSecret> {
        match self.phase {
            Phase::AwaitingPin { superseded, secret } => {
                if let Some(tx) = superseded {
                    let _ = tx.send(reason);
                }
                secret
            }
            _ => None,
        }
    }
}

/// The in-flight pairing handshakes of one server.
pub struct PairingManager {
    identity: Arc<LoadedIdentity>,
    limits: PairingLimits,
    random: RandomSource,
    state: Mutex<State>,
}

impl fmt::Debug for PairingManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingManager")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The longest salt accepted (legacy ios sends 20 bytes; 16 is standard).
const MAX_SALT: usize = 64;
/// The longest `clientpairingsecret` accepted: 16 bytes plus a signature of a key of at most
/// 8192 bits.
const MAX_CLIENT_SECRET: usize = 16 + 1024;

fn decode_hex(what: &str, text: &str) -> Result<Vec<u8>, PairReject> {
    hex::decode(text).map_err(|_| PairReject::bad_request(format!("Invalid {what}: not a hex string")))
}

/// The salt (its first 16 bytes) and client certificate of a phase-1 request.
fn phase1_inputs(
    salt_hex: Option<&str>,
    client_cert_hex: Option<&str>,
) -> Result<([u8; 16], CertificateInfo), PairReject> {
    let salt_hex = salt_hex.ok_or_else(|| PairReject::bad_request("Missing salt parameter"))?;
    let cert_hex = client_cert_hex.ok_or_else(|| PairReject::bad_request("Missing clientcert parameter"))?;
    let salt_bytes = decode_hex("salt", salt_hex)?;
    if salt_bytes.len() < 16 {
        return Err(PairReject::bad_request("Salt too short"));
    }
    if salt_bytes.len() > MAX_SALT {
        return Err(PairReject::bad_request("Salt too long"));
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&salt_bytes[..16]);
    let pem_bytes = decode_hex("clientcert", cert_hex)?;
    let pem = String::from_utf8(pem_bytes)
        .map_err(|_| PairReject::bad_request("Invalid clientcert: not a PEM certificate"))?;
    let client = CertificateInfo::from_pem(&pem)
        .map_err(|e| PairReject::bad_request(format!("Invalid clientcert: {e}")))?;
    crate::client_cert::check_usable_for_tls(&client)
        .map_err(|why| PairReject::bad_request(format!("Invalid clientcert: {why}")))?;
    Ok((salt, client))
}

impl PairingManager {
    /// A manager signing with `identity`, using OS randomness.
    pub fn new(identity: Arc<LoadedIdentity>, limits: PairingLimits) -> Self {
        Self::with_random(identity, limits, Arc::new(os_random))
    }

    /// A manager with an injected source of SS/SC (called twice per phase 2: SS, then SC).
    pub fn with_random(identity: Arc<LoadedIdentity>, limits: PairingLimits, random: RandomSource) -> Self {
        PairingManager {
            identity,
            limits,
            random,
            state: Mutex::new(State {
                entries: HashMap::new(),
                next_generation: 0,
                failures: FailureTable::new(
                    limits.failure_window,
                    MAX_FAILURE_SOURCES,
                    limits.max_failures_per_ip,
                ),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> PairingLimits {
        self.limits
    }

    /// Number of in-flight handshakes (held ones included).
    pub fn in_flight(&self) -> usize {
        self.state.lock().entries.len()
    }

    fn purge(&self, state: &mut State, now: Instant) {
        let ttl = self.limits.handshake_ttl;
        state
            .entries
            .retain(|_, e| matches!(e.phase, Phase::AwaitingPin { .. }) || now.duration_since(e.since) < ttl);
        state.failures.purge(now);
    }

    fn source(&self, ip: IpAddr) -> Source {
        Source::of(ip, self.limits.prefixes)
    }

    fn record_failure(&self, state: &mut State, ip: IpAddr) {
        state.failures.record(self.source(ip), Instant::now());
    }

    /// Makes room for a held phase 1 from `source`: evicts what admission says, returning the
    /// evicted requests' broker entries.
    fn admit(&self, state: &mut State, source: Source) -> Vec<PairSecret> {
        let mut evicted = Vec::new();
        loop {
            let held: Vec<admission::Held<&PairingKey>> = state
                .entries
                .iter()
                .filter(|(_, e)| matches!(e.phase, Phase::AwaitingPin { .. }))
                .map(|(k, e)| admission::Held {
                    source: self.source(k.ip),
                    since: e.since,
                    key: k,
                })
                .collect();
            let victim = admission::eviction(
                &held,
                source,
                self.limits.max_held_per_source,
                self.limits.max_held,
            )
            .cloned();
            let Some(victim) = victim else {
                return evicted;
            };
            if let Some(entry) = state.entries.remove(&victim) {
                tracing::debug!(client = %victim.ip, "held pairing evicted for a newer one");
                evicted.extend(entry.end_held(EVICTED));
            }
        }
    }

    /// Phase 1 (`phrase=getservercert`): validates `salt` and `clientcert`, replaces any entry
    /// with the same key (its held request, if any, is told it was superseded) and records a new
    /// one waiting for the PIN. [`Phase1::run`] drives the rest of phase 1.
    ///
    /// # Errors
    /// A [`PairReject`] for a bad salt or certificate, too many failures from this source, or
    /// too many handshakes in flight. Too many held phase 1s evict older ones instead
    /// ([`admission`]).
    pub fn begin(
        &self,
        key: PairingKey,
        salt_hex: Option<&str>,
        client_cert_hex: Option<&str>,
        device_name: Option<&str>,
    ) -> Result<HeldPhase1, PairReject> {
        let (salt, client) = phase1_inputs(salt_hex, client_cert_hex)?;
        let device_name = device_name.map(|d| d.chars().take(64).collect());
        let now = Instant::now();
        let mut state = self.state.lock();
        self.purge(&mut state, now);
        let source = self.source(key.ip);
        if state.failures.count(source, now) >= self.limits.max_failures_per_ip {
            return Err(PairReject::new(
                429,
                "Too many failed pairing attempts from this network; try again later",
            ));
        }
        let mut evicted = Vec::new();
        if let Some(old) = state.entries.remove(&key) {
            evicted.extend(old.end_held(SUPERSEDED));
        }
        evicted.extend(self.admit(&mut state, source));
        if state.entries.len() >= self.limits.max_in_flight {
            return Err(PairReject::new(
                503,
                "Too many pairings in progress; try again later",
            ));
        }
        state.next_generation += 1;
        let generation = state.next_generation;
        let (tx, rx) = oneshot::channel();
        let entry = Entry {
            generation,
            client: Arc::new(client),
            salt,
            device_name,
            user: None,
            pin_secret: None,
            phase: Phase::AwaitingPin {
                superseded: Some(tx),
                secret: None,
            },
            since: now,
        };
        state.entries.insert(key, entry);
        Ok(HeldPhase1 {
            generation,
            superseded: rx,
            evicted,
        })
    }

    /// Records the PIN broker entry of a held phase 1 (so that evicting it can close the entry).
    /// False if the request is no longer held (superseded or evicted meanwhile).
    pub fn attach_secret(&self, key: &PairingKey, generation: u64, secret: &PairSecret) -> bool {
        let mut state = self.state.lock();
        match state.entries.get_mut(key) {
            Some(Entry {
                generation: g,
                phase: Phase::AwaitingPin { secret: slot, .. },
                ..
            }) if *g == generation => {
                *slot = Some(secret.clone());
                true
            }
            _ => false,
        }
    }

    /// The PIN for a held phase 1 arrived: derives the key and returns `plaincert`.
    ///
    /// # Errors
    /// [`SUPERSEDED`] if the entry was replaced or abandoned meanwhile.
    pub fn pin_entered(
        &self,
        key: &PairingKey,
        generation: u64,
        pin: &Pin,
        user: Option<UserName>,
    ) -> Result<String, PairReject> {
        let mut state = self.state.lock();
        let entry = state
            .entries
            .get_mut(key)
            .filter(|e| e.generation == generation && matches!(e.phase, Phase::AwaitingPin { .. }))
            .ok_or_else(|| PairReject::bad_request(SUPERSEDED))?;
        let k = derive_key(&entry.salt, pin.expose()).map_err(|e| PairReject::bad_request(e.to_string()))?;
        if let Phase::AwaitingPin { secret, .. } = &mut entry.phase {
            entry.pin_secret = secret.take();
        }
        entry.phase = Phase::CertSent { key: k };
        entry.user = user;
        entry.since = Instant::now();
        Ok(self.identity.plaincert_hex())
    }

    /// Ends a held phase 1 that will not complete (timeout, client gone): removes its entry if it
    /// is still this generation's and still waiting for the PIN.
    pub fn abandon_held(&self, key: &PairingKey, generation: u64) {
        let mut state = self.state.lock();
        if state
            .entries
            .get(key)
            .is_some_and(|e| e.generation == generation && matches!(e.phase, Phase::AwaitingPin { .. }))
        {
            state.entries.remove(key);
        }
    }

    /// Looks up an entry for phase `expected_previous + 1`. A wrong phase drops the entry (unless
    /// its phase 1 is still held, which belongs to another request).
    fn entry_for<'a>(
        state: &'a mut State,
        key: &PairingKey,
        expected_previous: u8,
        phase_name: &str,
        ttl: Duration,
    ) -> Result<&'a mut Entry, PairReject> {
        let now = Instant::now();
        let (generation, phase, expired) = match state.entries.get(key) {
            None => return Err(PairReject::no_pairing()),
            Some(e) => (
                e.generation,
                e.phase.number(),
                e.phase.number() > 0 && now.duration_since(e.since) >= ttl,
            ),
        };
        if expired {
            state.entries.remove(key);
            return Err(PairReject::no_pairing());
        }
        if phase != expected_previous {
            if phase != 0 {
                state.entries.remove(key);
            }
            return Err(PairReject::bad_request(format!(
                "Out of order call to {phase_name}"
            )));
        }
        let entry = state.entries.get_mut(key).ok_or_else(PairReject::no_pairing)?;
        debug_assert_eq!(entry.generation, generation);
        Ok(entry)
    }

    /// Phase 2 (`clientchallenge`): returns `challengeresponse` (hex).
    ///
    /// # Errors
    /// Unknown entry, wrong phase, or a malformed challenge.
    pub fn client_challenge(&self, key: &PairingKey, challenge_hex: &str) -> Result<String, PairReject> {
        let challenge = decode_hex("clientchallenge", challenge_hex)?;
        if challenge.len() != 16 {
            return Err(PairReject::bad_request(
                "Invalid clientchallenge: expected 16 bytes",
            ));
        }
        let mut state = self.state.lock();
        let entry = Self::entry_for(&mut state, key, 1, "clientchallenge", self.limits.handshake_ttl)?;
        let Phase::CertSent { key: k } = entry.phase else {
            return Err(PairReject::no_pairing());
        };
        let reject = |e: crate::crypto::CryptoError| PairReject::bad_request(e.to_string());
        let c = aes_ecb_decrypt(&k, &challenge).map_err(reject)?;
        let ss = (self.random)();
        let sc = (self.random)();
        let h = sha256(&[&c, self.identity.cert().signature(), &ss]);
        let mut plain = Vec::with_capacity(48);
        plain.extend_from_slice(&h);
        plain.extend_from_slice(&sc);
        let response = aes_ecb_encrypt(&k, &plain).map_err(reject)?;
        entry.phase = Phase::ChallengeSent { key: k, ss, sc };
        Ok(hex::encode_upper(response))
    }

    /// Phase 3 (`serverchallengeresp`): keeps the client's hash and returns `pairingsecret`
    /// (hex of `SS ‖ Sign(SS)`).
    ///
    /// # Errors
    /// Unknown entry, wrong phase, a malformed response, or a signing failure.
    pub fn server_challenge_response(
        &self,
        key: &PairingKey,
        response_hex: &str,
    ) -> Result<String, PairReject> {
        let response = decode_hex("serverchallengeresp", response_hex)?;
        if response.len() != 32 {
            return Err(PairReject::bad_request(
                "Invalid serverchallengeresp: expected 32 bytes",
            ));
        }
        let (k, ss, sc, generation) = {
            let mut state = self.state.lock();
            let entry = Self::entry_for(
                &mut state,
                key,
                2,
                "serverchallengeresp",
                self.limits.handshake_ttl,
            )?;
            let Phase::ChallengeSent { key: k, ss, sc } = entry.phase else {
                return Err(PairReject::no_pairing());
            };
            (k, ss, sc, entry.generation)
        };
        // Sign outside the lock: other handshakes need not wait for the RSA operation.
        let signature = self
            .identity
            .signer()
            .sign(&ss)
            .map_err(|e| PairReject::new(500, format!("Internal error: {e}")))?;
        let client_hash =
            aes_ecb_decrypt(&k, &response).map_err(|e| PairReject::bad_request(e.to_string()))?;
        let mut state = self.state.lock();
        let entry = state
            .entries
            .get_mut(key)
            .filter(|e| e.generation == generation && e.phase.number() == 2)
            .ok_or_else(PairReject::no_pairing)?;
        entry.phase = Phase::SecretSent { sc, client_hash };
        let mut secret = Vec::with_capacity(16 + signature.len());
        secret.extend_from_slice(&ss);
        secret.extend_from_slice(&signature);
        Ok(hex::encode_upper(secret))
    }

    /// Phase 4 (`clientpairingsecret`): checks the client's hash (the PIN) and its signature.
    /// The entry is removed either way; a mismatch counts as a failed pairing for the address.
    ///
    /// # Errors
    /// Unknown entry, wrong phase, or a malformed secret.
    pub fn client_pairing_secret(&self, key: &PairingKey, secret_hex: &str) -> Result<Phase4, PairReject> {
        let secret = decode_hex("clientpairingsecret", secret_hex)?;
        if secret.len() <= 16 {
            return Err(PairReject::bad_request("Client pairing secret too short"));
        }
        if secret.len() > MAX_CLIENT_SECRET {
            return Err(PairReject::bad_request("Client pairing secret too long"));
        }
        let entry = {
            let mut state = self.state.lock();
            Self::entry_for(
                &mut state,
                key,
                3,
                "clientpairingsecret",
                self.limits.handshake_ttl,
            )?;
            state.entries.remove(key).ok_or_else(PairReject::no_pairing)?
        };
        let Phase::SecretSent { sc, client_hash } = &entry.phase else {
            return Err(PairReject::no_pairing());
        };
        let (cs, client_signature) = secret.split_at(16);
        let expected = sha256(&[sc, entry.client.signature(), cs]);
        let hash_ok = client_hash[..] == expected[..];
        let signature_ok = entry.client.verify(cs, client_signature);
        if !(hash_ok && signature_ok) {
            let mut state = self.state.lock();
            self.record_failure(&mut state, key.ip);
            return Ok(Phase4::Mismatch);
        }
        let user = entry.user.clone().unwrap_or_else(UserName::default_user);
        Ok(Phase4::Paired(CompletedPairing {
            fingerprint: entry.client.fingerprint(),
            cert_pem: entry.client.pem().to_owned(),
            user,
            device_name: entry.device_name.clone(),
        }))
    }

    /// `/unpair`: abandons the in-flight handshake under `key`, unless its phase 1 is still held
    /// (that one ends through its own timeout or connection). Never touches stored pairings.
    /// Returns whether an entry was removed. An abandoned handshake that got past phase 2 counts
    /// as a failed pairing for the address (clients call `/unpair` after detecting a wrong PIN).
    pub fn unpair(&self, key: &PairingKey) -> bool {
        let mut state = self.state.lock();
        let phase = match state.entries.get(key) {
            None => return false,
            Some(e) => e.phase.number(),
        };
        if phase == 0 {
            return false;
        }
        state.entries.remove(key);
        if phase >= 2 {
            self.record_failure(&mut state, key.ip);
        }
        true
    }

    /// The PIN broker entry whose PIN the handshake under `key` uses, once the PIN arrived.
    pub fn pin_secret_of(&self, key: &PairingKey) -> Option<PairSecret> {
        self.state
            .lock()
            .entries
            .get(key)
            .and_then(|e| e.pin_secret.clone())
    }

    /// The user recorded for the entry under `key` (tests and diagnostics).
    pub fn user_of(&self, key: &PairingKey) -> Option<UserName> {
        self.state.lock().entries.get(key).and_then(|e| e.user.clone())
    }
}

#[cfg(test)]
mod tests;
