//! Identifiers used by Wolf and the hashes Wolf derives them with (`docs/protocol/wolf-api.md`
//! § Identifiers).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValidationError;

/// The seed libstdc++ passes to `_Hash_bytes` for `std::hash<std::string>`.
pub const LIBSTDCXX_HASH_SEED: u64 = 0xc70f_6907;

/// The session id of every session created through the API without a `client_id` (V5b+): Wolf uses a
/// dummy client whose certificate is the empty string, so the id is `std::hash("")`.
pub const CLIENTLESS_SESSION_ID: u64 = 6_142_509_188_972_423_790;

/// libstdc++'s `_Hash_bytes` (a MurmurHash2 64-bit variant), as used by `std::hash<std::string>`
/// on 64-bit GCC builds (§ Identifiers).
pub fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    fn mix(v: u64) -> u64 {
        v ^ (v >> R)
    }
    let len = data.len() as u64;
    let mut h = seed ^ len.wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let k = mix(u64::from_le_bytes(bytes).wrapping_mul(M)).wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut bytes = [0u8; 8];
        bytes[..tail.len()].copy_from_slice(tail);
        h ^= u64::from_le_bytes(bytes);
        h = h.wrapping_mul(M);
    }
    mix(mix(h).wrapping_mul(M))
}

/// `std::hash<std::string>` of libstdc++ (x86-64 / aarch64).
pub fn std_string_hash(s: &str) -> u64 {
    hash_bytes(s.as_bytes(), LIBSTDCXX_HASH_SEED)
}

/// The `client_id` Wolf assigns to a paired client: the libstdc++ string hash of the certificate
/// exactly as Wolf stores it (the PEM text received during pairing).
pub fn client_id_for_cert(pem: &str) -> u64 {
    std_string_hash(pem)
}

/// The id Wolf derives for an app loaded from its configuration: a djb2-style hash (seed 5385,
/// `h = h * 33 + c` over signed chars) of `icon_png_path + title`, reinterpreted as a signed 32-bit
/// integer, absolute value (§ Identifiers).
pub fn app_id_for(icon_png_path: &str, title: &str) -> u32 {
    let mut h: u64 = 5385;
    for &b in icon_png_path.as_bytes().iter().chain(title.as_bytes()) {
        // `char` is signed on x86-64: bytes >= 0x80 are added as negative values.
        let c = i64::from(b as i8);
        h = h.wrapping_mul(33).wrapping_add(c as u64);
    }
    // Truncation to the low 32 bits is the point of the reinterpretation.
    (h as u32 as i32).unsigned_abs()
}

/// Checks that `s` is what Wolf's `std::stoull` accepts without throwing and without a sign or
/// whitespace trick: `^[0-9]{1,20}$` and `<= u64::MAX` (`docs/protocol/wolf-api.md` § Crash
/// hazards).
pub fn parse_wolf_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Held as a `u64`, so every value is one Wolf can parse; sent as a decimal string and read
        /// from either a string or a JSON number (Wolf before V5 wrote numbers in events).
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a numeric id.
            pub const fn new(id: u64) -> Self {
                Self(id)
            }

            /// The numeric value.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            /// Accepts exactly `^[0-9]{1,20}$` with a value `<= u64::MAX`.
            fn from_str(s: &str) -> Result<Self, ValidationError> {
                parse_wolf_u64(s)
                    .map(Self)
                    .ok_or_else(|| ValidationError::InvalidId { field: $what, value: s.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(U64Visitor($what)).map(Self)
            }
        }
    };
}

numeric_id!(
    /// A Wolf stream-session id (equal to the `client_id` of the owning client, § Identifiers).
    SessionId,
    "session_id"
);
numeric_id!(
    /// The id of a client paired with Wolf: [`client_id_for_cert`] of its certificate.
    ClientId,
    "client_id"
);

impl SessionId {
    /// The id every client-less API session gets ([`CLIENTLESS_SESSION_ID`]).
    pub const CLIENTLESS: SessionId = SessionId(CLIENTLESS_SESSION_ID);
}

impl From<ClientId> for SessionId {
    /// A session's id is the id of the client that owns it.
    fn from(id: ClientId) -> Self {
        SessionId(id.0)
    }
}

struct U64Visitor(&'static str);

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as a decimal string or an unsigned 64-bit number", self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_wolf_u64(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }
    };
}

string_id!(
    /// An app id. Wolf treats it as a string; Moonlight needs it to parse as a 32-bit integer.
    AppId
);
string_id!(
    /// A lobby id (a UUID generated by Wolf).
    LobbyId
);
string_id!(
    /// A profile id, chosen by whoever creates the profile.
    ProfileId
);

impl From<u32> for AppId {
    fn from(id: u32) -> Self {
        AppId(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libstdcxx_hash_vectors() {
        assert_eq!(std_string_hash(""), 6_142_509_188_972_423_790);
        assert_eq!(
            std_string_hash("A VERY VALID CERTIFICATE"),
            10_594_003_729_173_467_913
        );
        assert_eq!(std_string_hash("abc"), 3_663_726_644_998_027_833);
        assert_eq!(std_string_hash("12345678"), 10_113_836_418_918_046_885);
        assert_eq!(client_id_for_cert(""), CLIENTLESS_SESSION_ID);
        assert_eq!(
            client_id_for_cert("A VERY VALID CERTIFICATE"),
            10_594_003_729_173_467_913
        );
    }

    #[test]
    fn app_id_vector() {
        assert_eq!(app_id_for("firefox.png", "Firefox"), 304_556_286);
    }

    #[test]
    fn ids_accept_only_what_stoull_accepts() {
        assert_eq!("42".parse::<SessionId>().unwrap().get(), 42);
        assert_eq!(
            "18446744073709551615".parse::<SessionId>().unwrap().get(),
            u64::MAX
        );
        assert_eq!("007".parse::<ClientId>().unwrap().get(), 7);
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            " 1",
            "1 ",
            "18446744073709551616",
            "123456789012345678901",
            "1e5",
        ] {
            let err = bad.parse::<SessionId>().unwrap_err();
            assert!(
                matches!(
                    err,
                    ValidationError::InvalidId {
                        field: "session_id",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ids_serialise_as_strings_and_read_strings_or_numbers() {
        let id = SessionId::new(u64::MAX);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"18446744073709551615\"");
        let from_number: SessionId = serde_json::from_str("18446744073709551615").unwrap();
        let from_string: SessionId = serde_json::from_str("\"18446744073709551615\"").unwrap();
        assert_eq!(from_number, id);
        assert_eq!(from_string, id);
        assert!(serde_json::from_str::<SessionId>("\"x1\"").is_err());
        assert!(serde_json::from_str::<SessionId>("-3").is_err());
        assert!(serde_json::from_str::<SessionId>("1.5").is_err());
    }
}
