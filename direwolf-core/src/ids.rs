//! Validated identifiers and small secret-carrying values.
//!
//! Every identifier here is checked when it is built, so a value of one of these types is always
//! well formed; secrets ([`AesKey`], [`Pin`]) never print their content through `Debug`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::Error;

macro_rules! string_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// The identity of a paired Moonlight client: lower-case hex SHA-256 of its certificate's DER
/// (64 characters), as in the proof of concept and `docs/protocol/moonlight-http.md`
/// § Client identity.
///
/// Never derived from the client's `uniqueid`, which most clients share.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a certificate given as DER bytes.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(hex::encode(Sha256::digest(der)))
    }

    /// The 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Accepts 64 hex digits in either case and normalises to lower case.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("fingerprint", "expected 64 hex digits (SHA-256)"));
        }
        Ok(Fingerprint(s.to_ascii_lowercase()))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

string_serde!(Fingerprint);

/// The name of a user: a DNS-1123 label (lower-case letters, digits and `-`, 1 to 63 characters,
/// starting and ending with a letter or digit), so that it can name Kubernetes objects.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// The user every pairing belongs to when nobody says otherwise (single-machine mode).
    pub const DEFAULT: &'static str = "default";

    /// The default user, [`UserName::DEFAULT`].
    pub fn default_user() -> Self {
        UserName(Self::DEFAULT.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is a DNS-1123 label (what Kubernetes accepts as most object names' segments).
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

impl FromStr for UserName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if !is_dns1123_label(s) {
            return Err(Error::invalid(
                "user name",
                format!(
                    "{s:?} is not a DNS-1123 label (1-63 lower-case letters, digits or '-', \
                     starting and ending with a letter or digit)"
                ),
            ));
        }
        Ok(UserName(s.to_owned()))
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

string_serde!(UserName);

/// A Moonlight application id: a non-zero decimal integer that fits in a signed 32-bit integer
/// (android parses it with `Integer.parseInt`; `docs/protocol/moonlight-http.md` § App list).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct AppId(u32);

impl AppId {
    /// The largest id every client accepts.
    pub const MAX: u32 = i32::MAX as u32;

    /// Builds an id, refusing 0 and values above [`AppId::MAX`].
    pub fn new(id: u32) -> Result<Self, Error> {
        if id == 0 || id > Self::MAX {
            return Err(Error::invalid(
                "app id",
                format!("{id} is not in 1..={}", Self::MAX),
            ));
        }
        Ok(AppId(id))
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for AppId {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self, Error> {
        AppId::new(value)
    }
}

impl From<AppId> for u32 {
    fn from(id: AppId) -> u32 {
        id.0
    }
}

impl FromStr for AppId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let n: u32 = s
            .parse()
            .map_err(|_| Error::invalid("app id", format!("{s:?} is not a decimal integer")))?;
        AppId::new(n)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({})", self.0)
    }
}

/// The identifier of a stream session in direwolf's stores: a DNS-1123 label, so it can name a
/// Kubernetes `Session`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id `<user>-<app>-<5 random characters>`, shortened to stay a valid label.
    pub fn generate(user: &UserName, app: AppId) -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::thread_rng();
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect();
        let mut prefix = format!("{}-{}", user.as_str(), app.get());
        prefix.truncate(63 - 6);
        let prefix = prefix.trim_end_matches('-');
        SessionId(format!("{prefix}-{suffix}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if !is_dns1123_label(s) {
            return Err(Error::invalid(
                "session id",
                format!("{s:?} is not a DNS-1123 label"),
            ));
        }
        Ok(SessionId(s.to_owned()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

string_serde!(SessionId);

/// The 16-byte AES-128 key a client sends as `rikey` on `/launch` and `/resume`.
///
/// Secret: `Debug` prints `AesKey(<redacted>)`; [`AesKey::to_hex`] is for handing it to Wolf.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AesKey([u8; 16]);

impl AesKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        AesKey(bytes)
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Upper-case hex, as Wolf's `aes_key` expects.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }
}

impl FromStr for AesKey {
    type Err = Error;

    /// Parses 32 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 16];
        if s.len() != 32 {
            return Err(Error::invalid("rikey", "expected 32 hex digits"));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::invalid("rikey", "expected 32 hex digits"))?;
        Ok(AesKey(out))
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

impl Serialize for AesKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AesKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The `rikeyid` launch parameter: the first four bytes of the client's audio IV as a
/// big-endian signed 32-bit integer (`docs/protocol/moonlight-http.md` § Stream keys). Clients
/// send it signed; some send the unsigned range; both are accepted and mean the same 32 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub struct RiKeyId(u32);

impl RiKeyId {
    /// From the 32 bits.
    pub fn from_bits(bits: u32) -> Self {
        RiKeyId(bits)
    }

    /// The 32 bits as unsigned (what Wolf's `stoul` yields).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The signed decimal form clients send.
    pub fn signed(self) -> i32 {
        self.0 as i32
    }

    /// The audio IV for RTP sequence number `seq`: `BE32(rikeyid + seq) ‖ 0×12`
    /// (`docs/protocol/moonlight-http.md` § Stream keys, § Test vectors: vector D).
    pub fn audio_iv(self, seq: u16) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..4].copy_from_slice(&self.0.wrapping_add(u32::from(seq)).to_be_bytes());
        iv
    }
}

impl TryFrom<i64> for RiKeyId {
    type Error = Error;

    fn try_from(n: i64) -> Result<Self, Error> {
        if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) {
            Ok(RiKeyId(n as u32))
        } else {
            Err(Error::invalid("rikeyid", format!("{n} is not a 32-bit integer")))
        }
    }
}

impl From<RiKeyId> for i64 {
    fn from(id: RiKeyId) -> i64 {
        i64::from(id.0)
    }
}

impl FromStr for RiKeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let n: i64 = s
            .parse()
            .map_err(|_| Error::invalid("rikeyid", format!("{s:?} is not a decimal integer")))?;
        RiKeyId::try_from(n)
    }
}

impl fmt::Debug for RiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret on its own (it is an IV), but keep logs short and uniform.
        write!(f, "RiKeyId({})", self.signed())
    }
}

/// A PIN typed by a person on the PIN page: exactly four ASCII digits, as every official client
/// generates. Secret: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// The digits, for key derivation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Pin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("pin", "a PIN is exactly four digits"));
        }
        Ok(Pin(s.to_owned()))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// The secret that names one pending PIN entry (`/pin/#SECRET`): 16 upper-case hex characters
/// (8 random bytes), as Wolf generates.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PairSecret(String);

impl PairSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        PairSecret(hex::encode_upper(bytes))
    }

    /// The secret as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PairSecret {
    type Err = Error;

    /// Accepts 16 hex digits in either case.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("pair secret", "expected 16 hex digits"));
        }
        Ok(PairSecret(s.to_ascii_uppercase()))
    }
}

impl fmt::Debug for PairSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is a capability for a pending pairing; show only a prefix.
        write!(f, "PairSecret({}…)", &self.0[..4])
    }
}

string_serde!(PairSecret);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_der_is_lower_hex_sha256() {
        let fp = Fingerprint::of_der(b"abc");
        assert_eq!(
            fp.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let upper: Fingerprint = fp.as_str().to_ascii_uppercase().parse().unwrap();
        assert_eq!(upper, fp);
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("g".repeat(64).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn user_names_are_dns_labels() {
        assert!("alice".parse::<UserName>().is_ok());
        assert!("a-1".parse::<UserName>().is_ok());
        for bad in ["", "-a", "a-", "Alice", "a_b", &"a".repeat(64)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn app_ids_are_positive_i32() {
        assert!(AppId::new(0).is_err());
        assert!(AppId::new(AppId::MAX + 1).is_err());
        assert_eq!("42".parse::<AppId>().unwrap().get(), 42);
        assert!("-1".parse::<AppId>().is_err());
        assert!("x".parse::<AppId>().is_err());
    }

    #[test]
    fn session_ids_are_labels() {
        let user: UserName = "a".repeat(63).parse().unwrap();
        let id = SessionId::generate(&user, AppId::new(7).unwrap());
        assert!(is_dns1123_label(id.as_str()), "{id:?}");
        let id = SessionId::generate(&UserName::default_user(), AppId::new(7).unwrap());
        assert!(id.as_str().starts_with("default-7-"));
    }

    #[test]
    fn aes_key_parses_either_case_and_is_redacted() {
        let key: AesKey = "773448F67992470C5C62848D361E1025".parse().unwrap();
        let lower: AesKey = "773448f67992470c5c62848d361e1025".parse().unwrap();
        assert_eq!(key, lower);
        assert_eq!(key.to_hex(), "773448F67992470C5C62848D361E1025");
        assert_eq!(format!("{key:?}"), "AesKey(<redacted>)");
        assert!("773448F6".parse::<AesKey>().is_err());
        assert!("Z73448F67992470C5C62848D361E1025".parse::<AesKey>().is_err());
    }

    /// `docs/protocol/moonlight-http.md` § Test vectors, vector D.
    #[test]
    fn rikeyid_audio_iv_vector_d() {
        let id: RiKeyId = "1311662065".parse().unwrap();
        assert_eq!(
            hex::encode_upper(id.audio_iv(0)),
            "4E2E5FF1000000000000000000000000"
        );
        assert_eq!(
            hex::encode_upper(id.audio_iv(1)),
            "4E2E5FF2000000000000000000000000"
        );
        assert_eq!(
            hex::encode_upper(id.audio_iv(65535)),
            "4E2F5FF0000000000000000000000000"
        );
        let id: RiKeyId = "-123456789".parse().unwrap();
        assert_eq!(id.bits(), 0xF8A4_32EB);
        assert_eq!(
            hex::encode_upper(id.audio_iv(0)),
            "F8A432EB000000000000000000000000"
        );
        assert_eq!(
            hex::encode_upper(id.audio_iv(1)),
            "F8A432EC000000000000000000000000"
        );
        assert_eq!(
            hex::encode_upper(id.audio_iv(65535)),
            "F8A532EA000000000000000000000000"
        );
        let from_iv = RiKeyId::from_bits(u32::from_be_bytes([0xB4, 0xA0, 0xC3, 0xD2]));
        assert_eq!(from_iv.signed(), -1264532526);
        // The unsigned spelling of the same bits is accepted too.
        assert_eq!("4156628789".parse::<RiKeyId>().unwrap().signed(), -138338507);
        assert!("4294967296".parse::<RiKeyId>().is_err());
        assert!("".parse::<RiKeyId>().is_err());
    }

    #[test]
    fn pins_are_four_digits_and_redacted() {
        let pin: Pin = "0123".parse().unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        for bad in ["123", "12345", "12a4", ""] {
            assert!(bad.parse::<Pin>().is_err());
        }
    }

    #[test]
    fn pair_secrets() {
        let s = PairSecret::generate();
        assert_eq!(s.as_str().len(), 16);
        assert_eq!(s.as_str().parse::<PairSecret>().unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.as_str()[4..]));
        assert!("abcdef0123456789".parse::<PairSecret>().unwrap().as_str() == "ABCDEF0123456789");
    }
}
