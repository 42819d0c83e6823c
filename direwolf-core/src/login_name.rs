//! A name a login proxy or an identity provider gives someone, as a direwolf user name (a
//! DNS-1123 label): the part before any `@`, lower-cased, each character other than a letter,
//! digit or `-` made `-`, cut to 63 characters (`John.Doe@example.com` → `john-doe`). Two names
//! that differ only there are one direwolf user; a name that leaves nothing usable is refused.

use crate::ids::UserName;

/// `claimed` as a direwolf user name (see the module docs), or `None`.
pub fn user_name(claimed: &str) -> Option<UserName> {
    let local = claimed.trim().split('@').next().unwrap_or("");
    let mapped: String = local
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = trimmed.get(..trimmed.len().min(63))?.trim_end_matches('-');
    cut.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_mapped_to_labels() {
        let name = |s| user_name(s).map(|u| u.as_str().to_owned());
        assert_eq!(name("Alice"), Some("alice".into()));
        assert_eq!(name("john_doe@corp"), Some("john-doe".into()));
        assert_eq!(name("-x-"), Some("x".into()));
        let long = "a".repeat(80);
        assert_eq!(name(&long).map(|s| s.len()), Some(63));
        assert_eq!(name(""), None);
        assert_eq!(name("..."), None);
    }
}
