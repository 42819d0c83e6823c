//! `direwolf user add|list|remove|passwd`.

use hyper::Method;
use serde_json::json;

use super::commands::{pretty, rows, segment, text};
use super::table::render;
use super::{Connection, Output, call, json_body};

/// `direwolf user …`
#[derive(Debug, clap::Args)]
pub struct UserCommand {
    #[command(flatten)]
    pub(super) connection: Connection,
    #[command(subcommand)]
    pub(super) verb: UserVerb,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum UserVerb {
    /// Create a user.
    Add {
        /// The name (lower-case letters, digits and '-', at most 63).
        name: String,
        /// A name to show people.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// The only apps the user may see and launch (ids, comma-separated); default every app.
        #[arg(long, value_name = "ID,…", value_delimiter = ',')]
        apps: Option<Vec<u32>>,
        /// Make the user an administrator (for a user who logs in to the web UI only through
        /// single sign-on; the first user given a password becomes one anyway).
        #[arg(long)]
        admin: bool,
    },
    /// List the users.
    List,
    /// Set a user's password (a local account, for the PIN page's login), read from the first
    /// line of standard input. The first user given a password becomes an administrator.
    Passwd {
        /// The name.
        name: String,
        /// Read the password from standard input (the only way; accepted for clarity in scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user and the user's pairings (their clients are refused at once).
    Remove {
        /// The name.
        name: String,
        /// End the user's running sessions (without it, a user who streams is kept).
        #[arg(long)]
        force: bool,
    },
}

impl UserCommand {
    /// Runs the verb; returns what to print.
    pub(super) async fn run(self) -> anyhow::Result<String> {
        user(&self.connection, self.verb).await
    }
}

async fn user(connection: &Connection, verb: UserVerb) -> anyhow::Result<String> {
    let client = connection.client()?;
    let json_out = connection.output == Output::Json;
    match verb {
        UserVerb::Add {
            name,
            display_name,
            apps,
            admin,
        } => {
            let created = call(
                &client,
                Method::POST,
                "/users",
                json_body(&json!({"name": name, "display_name": display_name, "apps": apps, "admin": admin})),
            )
            .await?;
            Ok(if json_out {
                pretty(&created)
            } else {
                format!("created user {}\n", text(&created["name"]))
            })
        }
        UserVerb::List => {
            let list = call(&client, Method::GET, "/users", None).await?;
            Ok(if json_out {
                pretty(&list)
            } else {
                render(
                    &["NAME", "DISPLAY NAME", "APPS", "PASSWORD", "ADMIN"],
                    &rows(
                        &list,
                        &[
                            &|u| text(&u["name"]),
                            &|u| text(&u["display_name"]),
                            &|u| apps_of(u),
                            &|u| yes_no(&u["has_password"]),
                            &|u| yes_no(&u["admin"]),
                        ],
                    ),
                )
            })
        }
        UserVerb::Passwd { name, .. } => {
            let password = password_from(std::io::stdin().lock())?;
            let updated = call(
                &client,
                Method::PUT,
                &format!("/users/{}/password", segment(&name)),
                json_body(&json!({ "password": password })),
            )
            .await?;
            Ok(if json_out {
                pretty(&updated)
            } else if updated["admin"] == true {
                format!("password set for {name} (an administrator)\n")
            } else {
                format!("password set for {name}\n")
            })
        }
        UserVerb::Remove { name, force } => {
            let path = format!(
                "/users/{}{}",
                segment(&name),
                if force { "?force=true" } else { "" }
            );
            call(&client, Method::DELETE, &path, None).await?;
            Ok(if json_out {
                pretty(&json!({"removed": name}))
            } else {
                format!("removed user {name}\n")
            })
        }
    }
}

/// The password on the first line of `input`, which must not be a terminal (it would show the
/// password as it is typed).
fn password_from(input: impl std::io::BufRead + std::io::IsTerminal) -> anyhow::Result<String> {
    if input.is_terminal() {
        anyhow::bail!(
            "give the password on standard input, not typed at the terminal (it would be shown): \
             read -rs PW && printf '%s\\n' \"$PW\" | direwolf user passwd NAME"
        );
    }
    read_password(input)
}

fn read_password(mut input: impl std::io::BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(password.to_owned())
}

/// A user's apps for the table: their ids, or `all`.
fn apps_of(user: &serde_json::Value) -> String {
    match user["apps"].as_array() {
        None => "all".to_owned(),
        Some(ids) => ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(","),
    }
}

fn yes_no(value: &serde_json::Value) -> String {
    if value.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line() {
        assert_eq!(read_password(&b"s3cret pass\nrest"[..]).unwrap(), "s3cret pass");
        assert_eq!(read_password(&b"crlf line\r\n"[..]).unwrap(), "crlf line");
        assert_eq!(read_password(&b"no newline"[..]).unwrap(), "no newline");
        assert!(read_password(&b"\n"[..]).is_err());
        assert!(read_password(&b""[..]).is_err());
    }
}
