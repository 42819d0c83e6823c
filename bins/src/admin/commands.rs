//! What the admin subcommands share: the command enum, its dispatch, and the helpers that turn
//! the API's JSON into table cells.

use serde_json::Value;

pub use super::apps::AppCommand;
pub use super::pairings::PairingCommand;
pub use super::sessions::SessionCommand;
use super::table::time;
pub use super::users::UserCommand;

/// Any admin subcommand.
#[derive(Debug)]
pub enum AdminCommand {
    /// `user`
    User(UserCommand),
    /// `app`
    App(AppCommand),
    /// `pairing`
    Pairing(PairingCommand),
    /// `session`
    Session(SessionCommand),
}

/// A path segment, percent-encoded where it is not a plain identifier.
pub(super) fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn when(value: &Value) -> String {
    value.as_u64().map(time).unwrap_or_default()
}

pub(super) fn rows(list: &Value, columns: &[&dyn Fn(&Value) -> String]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| columns.iter().map(|c| c(item)).collect())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    )
}

/// Runs one command; returns what to print.
pub async fn execute(command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::User(c) => c.run().await,
        AdminCommand::App(c) => c.run().await,
        AdminCommand::Pairing(c) => c.run().await,
        AdminCommand::Session(c) => c.run().await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Output;
    use super::super::pairings::PairingVerb;
    use super::*;

    /// Regression: a verb's argument named like a global connection flag (`fingerprint`) made
    /// clap panic when the verb ran.
    #[test]
    fn every_verb_parses_with_the_connection_flags() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        enum Top {
            User(UserCommand),
            App(AppCommand),
            Pairing(PairingCommand),
            Session(SessionCommand),
        }
        let fp = "0".repeat(64);
        for argv in [
            vec!["user", "add", "alice", "--display-name", "A"],
            vec!["user", "list"],
            vec!["user", "remove", "alice", "--force"],
            vec!["app", "add", "T", "--id", "3", "--hdr", "--image", "x.png"],
            vec!["app", "list"],
            vec!["app", "remove", "3"],
            vec!["pairing", "list"],
            vec![
                "pairing",
                "approve",
                "0123456789ABCDEF",
                "--pin",
                "1234",
                "--user",
                "bob",
            ],
            vec!["pairing", "revoke", &fp, "--stop-sessions"],
            vec!["session", "list"],
            vec!["session", "stop", "s1"],
        ] {
            let mut full = vec!["direwolf"];
            full.extend(argv.iter().copied());
            full.extend([
                "--fingerprint",
                &fp,
                "--token",
                "t",
                "--url",
                "https://h:1",
                "--output",
                "json",
            ]);
            let parsed = Top::try_parse_from(&full).unwrap_or_else(|e| panic!("{full:?}: {e}"));
            let connection = match &parsed {
                Top::User(c) => &c.connection,
                Top::App(c) => &c.connection,
                Top::Pairing(c) => &c.connection,
                Top::Session(c) => &c.connection,
            };
            assert_eq!(
                connection.fingerprint.as_ref().map(|f| f.as_str()),
                Some(fp.as_str())
            );
            assert_eq!(connection.output, Output::Json);
            if let Top::Pairing(PairingCommand {
                verb: PairingVerb::Revoke { pairing, .. },
                ..
            }) = &parsed
            {
                assert_eq!(pairing, &fp);
            }
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("alice"), "alice");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
    }
}
