//! Query-string parsing for GameStream requests (`docs/protocol/moonlight-http.md` § Requests).
//!
//! Names match case-insensitively, `%XX` is decoded, empty `name=value` pairs (python's `&&`) are
//! ignored, parameter order does not matter, and the first occurrence of a name wins. Sizes are
//! bounded so a hostile request cannot make the server allocate much.

/// The longest query accepted, in bytes (the phase-1 URL carries a hex PEM of ~2 000 characters;
/// moonlight-embedded allocates 16 KiB for a URL).
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// The most parameters accepted.
pub const MAX_PARAMS: usize = 64;

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Longer than [`MAX_QUERY_LEN`].
    #[error("query string too long ({0} bytes, at most {MAX_QUERY_LEN})")]
    TooLong(usize),
    /// More than [`MAX_PARAMS`] parameters.
    #[error("too many query parameters (at most {MAX_PARAMS})")]
    TooManyParams,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in the query string")]
    BadPercentEncoding,
    /// Decoded bytes are not UTF-8.
    #[error("the query string is not UTF-8 after percent-decoding")]
    NotUtf8,
}

/// A parsed query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses the part of a URI after `?` (`None` or empty: no parameters).
    ///
    /// # Errors
    /// See [`QueryError`].
    pub fn parse(raw: Option<&str>) -> Result<Self, QueryError> {
        let raw = raw.unwrap_or("");
        if raw.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong(raw.len()));
        }
        let mut pairs = Vec::new();
        for component in raw.split('&') {
            let (name, value) = component.split_once('=').unwrap_or((component, ""));
            if name.is_empty() {
                continue;
            }
            if pairs.len() == MAX_PARAMS {
                return Err(QueryError::TooManyParams);
            }
            pairs.push((percent_decode(name)?, percent_decode(value)?));
        }
        Ok(Query { pairs })
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of (non-empty) parameters.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Decodes `%XX` sequences (either hex case). `+` is kept as is: GameStream values never encode
/// spaces.
///
/// # Errors
/// [`QueryError::BadPercentEncoding`], [`QueryError::NotUtf8`].
pub fn percent_decode(text: &str) -> Result<String, QueryError> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadPercentEncoding)?;
            let hi = hex_value(hex[0]).ok_or(QueryError::BadPercentEncoding)?;
            let lo = hex_value(hex[1]).ok_or(QueryError::BadPercentEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn python_double_ampersand_and_case() {
        let q = Query::parse(Some(
            "uniqueid=0123456789ABCDEF&&gcpersist=0&&corever=1&RIKEY=ab%2Fc&flag",
        ))
        .unwrap();
        assert_eq!(q.len(), 5);
        assert_eq!(q.get("uniqueid"), Some("0123456789ABCDEF"));
        assert_eq!(q.get("UniqueId"), Some("0123456789ABCDEF"));
        assert_eq!(q.get("rikey"), Some("ab/c"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert!(Query::parse(None).unwrap().is_empty());
        assert!(Query::parse(Some("&&=x&")).unwrap().is_empty());
        assert_eq!(Query::parse(Some("a=1&a=2")).unwrap().get("A"), Some("1"));
    }

    #[test]
    fn bad_queries() {
        assert_eq!(Query::parse(Some("a=%4")), Err(QueryError::BadPercentEncoding));
        assert_eq!(Query::parse(Some("a=%zz")), Err(QueryError::BadPercentEncoding));
        assert_eq!(Query::parse(Some("a=%ff")), Err(QueryError::NotUtf8));
        let long = "a".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(
            Query::parse(Some(&long)),
            Err(QueryError::TooLong(MAX_QUERY_LEN + 1))
        );
        let many = vec!["x=1"; MAX_PARAMS + 1].join("&");
        assert_eq!(Query::parse(Some(&many)), Err(QueryError::TooManyParams));
    }

    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn encoded_pairs_round_trip(pairs in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9]{0,8}", any::<String>()), 0..10)) {
            let raw = pairs.iter().map(|(n, v)| format!("{n}={}", encode(v))).collect::<Vec<_>>().join("&&");
            let q = Query::parse(Some(&raw)).unwrap();
            prop_assert_eq!(q.len(), pairs.len());
            for (name, value) in &pairs {
                let first = pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
                prop_assert_eq!(q.get(&name.to_ascii_uppercase()), first);
                let _ = value;
            }
        }

        #[test]
        fn arbitrary_input_never_panics(raw in ".{0,300}") {
            let _ = Query::parse(Some(&raw));
        }
    }
}
