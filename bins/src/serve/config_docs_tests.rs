//! Keeps `docs/configuration.md` honest: every `toml` block of it is accepted by the loader, and
//! the keys its tables list are exactly the keys the loader accepts.
//!
//! The accepted keys are not written down here: they are read from the loader itself, from the
//! "unknown field `zz_probe`, expected one of …" error it gives for a key it does not know, for
//! the top level and for every key that the loader accepts as a table (`[key]` or `[[key]]`). A
//! key added to the loader and not to the reference, or listed in the reference and not accepted,
//! fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{Config, ConfigError};

/// The reference.
const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// A file with the PNG signature, enough for an `image`.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

/// A key no loader accepts.
const PROBE: &str = "zz_probe";

/// The contents of every ```toml block of `markdown`.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "a ```toml block of the reference is not closed"
    );
    blocks
}

/// The section of `markdown` under the heading whose text is `heading` (up to the next heading of
/// the same or a higher level; `#` lines inside code blocks are not headings).
fn section<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let level = |line: &str| line.chars().take_while(|c| *c == '#').count();
    let mut offset = 0;
    let mut start: Option<(usize, usize)> = None;
    let mut in_code = false;
    for line in markdown.split_inclusive('\n') {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let n = if in_code { 0 } else { level(line) };
        if n > 0 {
            match start {
                Some((from, at)) if n <= at => return Some(&markdown[from..offset]),
                None if line[n..].trim() == heading => start = Some((offset + line.len(), n)),
                _ => {}
            }
        }
        offset += line.len();
    }
    start.map(|(from, _)| &markdown[from..])
}

/// The keys a section's table lists: rows that start with `` | `key` | ``.
fn listed_keys(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// The keys the loader accepts where `text` puts the unknown key [`PROBE`], or `None` when the
/// loader refuses `text` for another reason (the probed key is not a table of that shape).
fn accepted_keys(text: &str) -> Option<BTreeSet<String>> {
    let error = match Config::parse(text, Path::new("/probe/direwolf.toml")) {
        Err(ConfigError::Syntax { message, .. }) => message,
        other => panic!("{text:?}: expected an unknown-field error, got {other:?}"),
    };
    let (_, expected) = error.split_once(&format!("unknown field `{PROBE}`, expected"))?;
    let expected = expected.lines().next().unwrap_or_default();
    let keys: BTreeSet<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys in {error:?}");
    Some(keys)
}

/// Every table the loader accepts, keyed by its header as the reference writes it (`[relay]`,
/// `[[wolf]]`), with its keys; the top level under the header `""`.
fn loader_tables() -> BTreeMap<String, BTreeSet<String>> {
    let top = accepted_keys(&format!("{PROBE} = 1\n")).expect("the top level refuses unknown keys");
    let mut tables = BTreeMap::from([(String::new(), top.clone())]);
    for key in &top {
        for header in [format!("[{key}]"), format!("[[{key}]]")] {
            if let Some(keys) = accepted_keys(&format!("{header}\n{PROBE} = 1\n")) {
                tables.insert(header, keys);
            }
        }
    }
    tables
}

/// The reference's section for a table header (`""`: the top level).
fn section_of(header: &str) -> &'static str {
    let heading = if header.is_empty() {
        "Top-level keys".to_owned()
    } else {
        format!("`{header}`")
    };
    section(REFERENCE, &heading).unwrap_or_else(|| panic!("docs/configuration.md has no section {heading}"))
}

#[test]
fn every_toml_block_of_the_reference_is_accepted() {
    let blocks = toml_blocks(REFERENCE);
    assert!(blocks.len() >= 3, "the reference has its examples");
    for block in blocks {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The loader reads the images an example names: give it PNG files at those paths.
        let table: toml::Table = toml::from_str(&block).unwrap_or_else(|e| panic!("{block}\n{e}"));
        let apps = table.get("apps").and_then(toml::Value::as_array);
        for image in apps.into_iter().flatten().filter_map(|app| app.get("image")) {
            let image = dir.path().join(image.as_str().expect("image is a string"));
            std::fs::create_dir_all(image.parent().expect("a parent")).expect("create the directory");
            std::fs::write(&image, PNG).expect("write the image");
        }
        if let Err(error) = Config::parse(&block, &dir.path().join("direwolf.toml")) {
            panic!("docs/configuration.md has a toml block the loader refuses:\n{block}\n{error}");
        }
    }
}

#[test]
fn the_reference_lists_exactly_the_keys_the_loader_accepts() {
    let tables = loader_tables();
    assert!(
        tables.len() >= 5,
        "the top level and at least [[apps]], [[wolf]], [relay], [pool]: {tables:?}"
    );
    for (header, keys) in &tables {
        let listed = listed_keys(section_of(header));
        assert_eq!(
            &listed, keys,
            "docs/configuration.md section for {header:?} lists {listed:?}; the loader accepts {keys:?}"
        );
    }
}

#[test]
fn the_complete_example_uses_every_key() {
    let example = section(REFERENCE, "A complete example").expect("a complete example");
    let block = toml_blocks(example).into_iter().next().expect("its toml block");
    let has_line = |wanted: &dyn Fn(&str) -> bool| block.lines().any(|l| wanted(l.trim()));
    let tables = loader_tables();
    for (header, keys) in &tables {
        assert!(
            header.is_empty() || has_line(&|l| l == header),
            "the complete example lacks {header}"
        );
        for key in keys {
            // A key is used as `key = ...`, or as a table the example opens.
            let as_table = [format!("[{key}]"), format!("[[{key}]]")]
                .into_iter()
                .any(|h| tables.contains_key(&h) && has_line(&|l| l == h));
            let as_value = has_line(&|l| l.starts_with(&format!("{key} =")));
            assert!(
                as_table || as_value,
                "the complete example does not use {key} (of {header:?})"
            );
        }
    }
}

#[test]
fn the_helpers_find_what_they_should() {
    let md =
        "# A\ntext\n## B\n| `x` | y |\n| `z` | w |\n### C\n| `q` | r |\n## D\n```toml\n# c\na = 1\n```\n";
    assert_eq!(
        listed_keys(section(md, "B").expect("B")),
        BTreeSet::from(["x".to_owned(), "z".to_owned(), "q".to_owned()])
    );
    assert_eq!(
        listed_keys(section(md, "C").expect("C")),
        BTreeSet::from(["q".to_owned()])
    );
    assert!(section(md, "E").is_none());
    assert_eq!(toml_blocks(md), vec!["# c\na = 1\n".to_owned()]);
    assert_eq!(section(md, "D"), Some("```toml\n# c\na = 1\n```\n"));
    assert_eq!(
        accepted_keys(&format!("[pool]\n{PROBE} = 1\n")),
        Some(BTreeSet::from(["host_lost_after".to_owned()]))
    );
    assert_eq!(accepted_keys(&format!("[[pool]]\n{PROBE} = 1\n")), None);
}
