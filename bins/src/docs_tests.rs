//! Keeps `docs/` honest about the binary and about the code's citations of it:
//!
//! * every flag and environment variable of every subcommand appears in the section of
//!   `docs/configuration.md` for that subcommand (read from clap's own definition of the CLI);
//! * every citation `docs/<file>.md § <section>` in the repository names a file that exists and
//!   a heading of it. A bare `§ <section>` refers to the last file cited before it in the same
//!   source file (in a page of `docs/`, to that page itself if the last cited file has no such
//!   heading).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;

/// The configuration reference.
const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bins is inside the repository")
        .to_owned()
}

/// The text under `### <heading>` up to the next `#`-heading.
fn subsection<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let marker = format!("\n### {heading}\n");
    let start = markdown
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/configuration.md has no section ### {heading}"))
        + marker.len();
    let rest = &markdown[start..];
    let end = rest.find("\n#").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// The heading of the section on the admin commands' connection flags.
const ADMIN_CONNECTION: &str = "Connecting to the admin API";

#[test]
fn every_flag_and_environment_variable_is_documented() {
    let cli = Cli::command();
    // The flags every subcommand takes: between the heading of the flags and the first
    // subcommand's section.
    let (_, flags) = REFERENCE
        .split_once("\n## Command-line flags and environment variables\n")
        .expect("docs/configuration.md has a section on the flags");
    let global = flags
        .split("\n### ")
        .next()
        .expect("text before the first subcommand");
    for arg in cli.get_arguments() {
        if let Some(long) = arg.get_long().filter(|l| *l != "help" && *l != "version") {
            assert!(
                global.contains(&format!("`--{long}")),
                "docs/configuration.md does not document the global flag --{long}"
            );
        }
    }
    let mut documented = 0;
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        if matches!(name, "version" | "crd" | "completion" | "man") {
            assert!(
                REFERENCE.contains(&format!("`direwolf {name}")),
                "docs/configuration.md does not mention direwolf {name}"
            );
            continue;
        }
        let section = subsection(REFERENCE, &format!("`direwolf {name}`"));
        documented += 1;
        // The admin commands' connection flags (global to each of them) have a section of
        // their own; their verbs' flags are in the command's section.
        let connection = subsection(REFERENCE, ADMIN_CONNECTION);
        let verbs = sub.get_subcommands().flat_map(|verb| verb.get_arguments());
        for arg in sub.get_arguments().chain(verbs) {
            let Some(long) = arg.get_long().filter(|l| *l != "help") else {
                continue;
            };
            if global.contains(&format!("`--{long}")) {
                continue;
            }
            let section = if arg.is_global_set() { connection } else { section };
            assert!(
                section.contains(&format!("`--{long}")),
                "docs/configuration.md § `direwolf {name}` does not document --{long}"
            );
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    section.contains(&format!("`{env}`")),
                    "docs/configuration.md § `direwolf {name}` does not name {env} (of --{long})"
                );
            }
        }
    }
    assert!(
        documented >= 5,
        "serve, relay, proxy, operator and agent have sections"
    );
}

/// The headings of a markdown text, without the `#`s (`#` lines in code blocks are not headings).
fn headings(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    markdown
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            !in_code && l.starts_with('#')
        })
        .map(|l| l.trim_start_matches('#').trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The files of the repository worth reading for citations (no build output, no git data).
fn repository_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "node_modules") {
                repository_files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// `text` with comment markers at line starts removed and lines joined by single spaces, so
/// that a citation wrapped over comment lines reads as one.
fn joined(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_start();
        let line = ["//!", "///", "//", "#", "*"]
            .iter()
            .find_map(|m| line.strip_prefix(m))
            .unwrap_or(line);
        out.push_str(line.trim());
        out.push(' ');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The citation problems of one file's text: `(cited file, section text)` pairs that do not
/// resolve. `docs` maps `docs/<file>.md` to its headings; `own` is the file's own path when it is
/// a page of `docs/`.
fn unresolved(text: &str, docs: &BTreeMap<String, Vec<String>>, own: Option<&str>) -> Vec<String> {
    let text = joined(text);
    let mut problems = Vec::new();
    let mut current: Option<String> = None;
    let mut rest = text.as_str();
    while let Some(at) = rest.find(['§', 'd']) {
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix('§') {
            let section = after.trim_start();
            rest = after;
            if section.starts_with('<') {
                continue; // the placeholder `§ <section>` of the convention itself
            }
            let matches = |file: &str| {
                docs.get(file)
                    .is_some_and(|hs| hs.iter().any(|h| section.starts_with(h.as_str())))
            };
            let found = current.as_deref().is_some_and(matches) || own.is_some_and(matches);
            if !found {
                let shown: String = section
                    .chars()
                    .take(60)
                    .take_while(|c| !"§`);,".contains(*c))
                    .collect();
                let file = current.as_deref().unwrap_or("(no file)");
                problems.push(format!("{file} § {}", shown.trim()));
            }
        } else if let Some(path) = tail
            .strip_prefix("docs/")
            .map(|p| p.split(|c: char| !(c.is_ascii_alphanumeric() || "-_/.".contains(c))))
            .and_then(|mut p| p.next())
            .map(|p| p.trim_end_matches('.'))
            .filter(|p| p.ends_with(".md"))
        {
            let file = format!("docs/{path}");
            rest = &tail[file.len()..];
            if !docs.contains_key(&file) {
                problems.push(format!("{file} does not exist"));
            }
            current = Some(file);
        } else {
            rest = &tail[1..];
        }
    }
    problems
}

/// The pages of `docs/` and their headings, keyed `docs/<file>.md`.
fn doc_pages(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    repository_files(&root.join("docs"), &mut files);
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let key = p
                .strip_prefix(root)
                .expect("inside the repository")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("a readable page");
            (key, headings(&text))
        })
        .collect()
}

#[test]
fn citations_of_the_docs_name_real_pages_and_sections() {
    let root = root();
    let docs = doc_pages(&root);
    assert!(
        docs.contains_key("docs/protocol/moonlight-http.md") && docs.len() >= 8,
        "{docs:?}"
    );
    let mut files = Vec::new();
    repository_files(&root, &mut files);
    let mut problems = Vec::new();
    let mut citing = 0;
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not text
        };
        let relative = path
            .strip_prefix(&root)
            .expect("inside the repository")
            .to_string_lossy()
            .into_owned();
        if relative == "bins/src/docs_tests.rs" {
            continue; // this file, whose examples are deliberately broken
        }
        if text.contains("docs/") && text.contains('§') {
            citing += 1;
        }
        let own = docs.contains_key(&relative).then_some(relative.as_str());
        problems.extend(
            unresolved(&text, &docs, own)
                .into_iter()
                .map(|p| format!("{relative}: {p}")),
        );
    }
    assert!(citing >= 50, "the code cites docs/ ({citing} files found)");
    assert!(
        problems.is_empty(),
        "citations that name no page or heading:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_citation_reader_resolves_and_refuses() {
    let docs = BTreeMap::from([
        (
            "docs/a.md".to_owned(),
            vec!["Ports".to_owned(), "How Wolf matches traffic".to_owned()],
        ),
        ("docs/b.md".to_owned(), vec!["Pairing".to_owned()]),
    ]);
    let ok = "//! see `docs/a.md` § How Wolf\n//! matches traffic, and § Ports.\nfn f() {}\n\
              /// Bare: § Ports; other: `docs/b.md` § Pairing.\n# docs/x § <section>";
    assert_eq!(unresolved(ok, &docs, None), Vec::<String>::new());
    let bad = "// `docs/a.md` § Pairing\n// § 5.1\n// `docs/c.md` § Ports";
    assert_eq!(
        unresolved(bad, &docs, None),
        vec![
            "docs/a.md § Pairing".to_owned(),
            "docs/a.md § 5.1".to_owned(),
            "docs/c.md does not exist".to_owned(),
            "docs/c.md § Ports".to_owned(),
        ]
    );
    // In a page of docs/, a bare § may name the page's own heading.
    assert_eq!(
        unresolved("`docs/b.md` § Pairing, then § Ports.", &docs, Some("docs/a.md")),
        Vec::<String>::new()
    );
    assert_eq!(
        unresolved("no file, § Ports", &docs, None),
        vec!["(no file) § Ports".to_owned()]
    );
}
