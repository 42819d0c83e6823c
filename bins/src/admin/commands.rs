//! The verbs: `user add|list|remove`, `app add|list|remove`, `pairing list|approve|revoke`,
//! `session list|stop`, each one or two admin API calls.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use direwolf_core::admin::image::{MAX_IMAGE_BYTES, check_png};
use hyper::Method;
use serde_json::{Value, json};

use super::table::{render, time};
use super::{Connection, Output, call, json_body};

/// `direwolf user …`
#[derive(Debug, clap::Args)]
pub struct UserCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    verb: UserVerb,
}

#[derive(Debug, clap::Subcommand)]
enum UserVerb {
    /// Create a user.
    Add {
        /// The name (lower-case letters, digits and '-', at most 63).
        name: String,
        /// A name to show people.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
    },
    /// List the users.
    List,
    /// Delete a user and the user's pairings (their clients are refused at once).
    Remove {
        /// The name.
        name: String,
        /// End the user's running sessions (without it, a user who streams is kept).
        #[arg(long)]
        force: bool,
    },
}

/// `direwolf app …`
#[derive(Debug, clap::Args)]
pub struct AppCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    verb: AppVerb,
}

#[derive(Debug, clap::Subcommand)]
enum AppVerb {
    /// Add an app.
    Add {
        /// The title clients show.
        title: String,
        /// The Moonlight app id. Default: one more than the largest.
        #[arg(long, value_name = "N")]
        id: Option<u32>,
        /// Clients may offer HDR for it.
        #[arg(long)]
        hdr: bool,
        /// Its box art: a PNG file of at most 2 MiB.
        #[arg(long, value_name = "FILE")]
        image: Option<PathBuf>,
    },
    /// List the apps.
    List,
    /// Remove an app.
    Remove {
        /// The app id.
        id: u32,
    },
}

/// `direwolf pairing …`
#[derive(Debug, clap::Args)]
pub struct PairingCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    verb: PairingVerb,
}

#[derive(Debug, clap::Subcommand)]
enum PairingVerb {
    /// List the paired clients and the pairings waiting for a PIN.
    List,
    /// Enter the PIN a pairing client shows, for a pairing waiting for it.
    Approve {
        /// The pending pairing's secret (from `pairing list`, or the PIN page link).
        secret: String,
        /// The four digits the client shows.
        #[arg(long, value_name = "PIN")]
        pin: String,
        /// The user the pairing will belong to. Default: the server's default user.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Revoke a pairing: its client is refused from its next request.
    Revoke {
        /// The client certificate's fingerprint (from `pairing list`).
        #[arg(value_name = "FINGERPRINT")]
        pairing: String,
        /// Also end the sessions the client started.
        #[arg(long)]
        stop_sessions: bool,
    },
}

/// `direwolf session …`
#[derive(Debug, clap::Args)]
pub struct SessionCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    verb: SessionVerb,
}

#[derive(Debug, clap::Subcommand)]
enum SessionVerb {
    /// List the sessions.
    List,
    /// Stop a session (the game ends, the client is disconnected).
    Stop {
        /// The session id (from `session list`).
        id: String,
    },
}

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
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn when(value: &Value) -> String {
    value.as_u64().map(time).unwrap_or_default()
}

fn rows(list: &Value, columns: &[&dyn Fn(&Value) -> String]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| columns.iter().map(|c| c(item)).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    )
}

/// Runs one command; returns what to print.
pub async fn execute(command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::User(c) => user(&c.connection, c.verb).await,
        AdminCommand::App(c) => app(&c.connection, c.verb).await,
        AdminCommand::Pairing(c) => pairing(&c.connection, c.verb).await,
        AdminCommand::Session(c) => session(&c.connection, c.verb).await,
    }
}

async fn user(connection: &Connection, verb: UserVerb) -> anyhow::Result<String> {
    let client = connection.client()?;
    let json_out = connection.output == Output::Json;
    match verb {
        UserVerb::Add { name, display_name } => {
            let created = call(
                &client,
                Method::POST,
                "/users",
                json_body(&json!({"name": name, "display_name": display_name})),
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
                    &["NAME", "DISPLAY NAME"],
                    &rows(&list, &[&|u| text(&u["name"]), &|u| text(&u["display_name"])]),
                )
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

async fn app(connection: &Connection, verb: AppVerb) -> anyhow::Result<String> {
    let json_out = connection.output == Output::Json;
    match verb {
        AppVerb::Add {
            title,
            id,
            hdr,
            image,
        } => {
            // The image is checked before anything is created, so a bad file changes nothing.
            let image = match image {
                Some(path) => {
                    let bytes =
                        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    if bytes.len() > MAX_IMAGE_BYTES {
                        bail!("{} is larger than {MAX_IMAGE_BYTES} bytes", path.display());
                    }
                    check_png(&bytes).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
                    Some(bytes)
                }
                None => None,
            };
            let client = connection.client()?;
            let body = json!({"title": title, "id": id, "hdr_supported": hdr});
            let mut created = call(&client, Method::POST, "/apps", json_body(&body)).await?;
            let id = text(&created["id"]);
            if let Some(bytes) = image {
                let path = format!("/apps/{}/image", segment(&id));
                if let Err(error) = call(&client, Method::PUT, &path, Some(("image/png", bytes))).await {
                    // Take the app back out: it is added with its image or not at all.
                    let undone =
                        call(&client, Method::DELETE, &format!("/apps/{}", segment(&id)), None).await;
                    return Err(match undone {
                        Ok(_) => error.context("the image was refused, so the app was not added"),
                        Err(e) => error.context(format!(
                            "the image was refused, and app {id} could not be removed again: {e:#}"
                        )),
                    });
                }
                created["has_image"] = Value::Bool(true);
            }
            Ok(if json_out {
                pretty(&created)
            } else {
                format!("added app {id} {:?}\n", text(&created["title"]))
            })
        }
        AppVerb::List => {
            let list = call(&connection.client()?, Method::GET, "/apps", None).await?;
            Ok(if json_out {
                pretty(&list)
            } else {
                render(
                    &["ID", "TITLE", "HDR", "IMAGE"],
                    &rows(
                        &list,
                        &[
                            &|a| text(&a["id"]),
                            &|a| text(&a["title"]),
                            &|a| yes(&a["hdr_supported"]),
                            &|a| yes(&a["has_image"]),
                        ],
                    ),
                )
            })
        }
        AppVerb::Remove { id } => {
            call(
                &connection.client()?,
                Method::DELETE,
                &format!("/apps/{id}"),
                None,
            )
            .await?;
            Ok(if json_out {
                pretty(&json!({"removed": id}))
            } else {
                format!("removed app {id}\n")
            })
        }
    }
}

fn yes(value: &Value) -> String {
    if value.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

async fn pairing(connection: &Connection, verb: PairingVerb) -> anyhow::Result<String> {
    let client = connection.client()?;
    let json_out = connection.output == Output::Json;
    match verb {
        PairingVerb::List => {
            let paired = call(&client, Method::GET, "/pairings", None).await?;
            let pending = call(&client, Method::GET, "/pending-pairings", None).await?;
            if json_out {
                return Ok(pretty(&json!({"pairings": paired, "pending": pending})));
            }
            let paired = render(
                &["FINGERPRINT", "USER", "DEVICE", "PAIRED"],
                &rows(
                    &paired,
                    &[
                        &|p| text(&p["fingerprint"]),
                        &|p| text(&p["user"]),
                        &|p| text(&p["device_name"]),
                        &|p| when(&p["paired_at"]),
                    ],
                ),
            );
            let pending = render(
                &["SECRET", "CLIENT", "DEVICE", "WAITING SINCE"],
                &rows(
                    &pending,
                    &[
                        &|p| text(&p["secret"]),
                        &|p| text(&p["client_ip"]),
                        &|p| text(&p["device_name"]),
                        &|p| when(&p["opened_at"]),
                    ],
                ),
            );
            Ok(format!(
                "Paired clients:\n{paired}\nWaiting for a PIN:\n{pending}"
            ))
        }
        PairingVerb::Approve { secret, pin, user } => {
            let path = format!("/pending-pairings/{}/approve", segment(&secret));
            call(
                &client,
                Method::POST,
                &path,
                json_body(&json!({"pin": pin, "user": user})),
            )
            .await?;
            let whose = user.as_deref().unwrap_or("the default user");
            Ok(if json_out {
                pretty(&json!({"approved": secret, "user": user}))
            } else {
                format!("PIN delivered: the client finishes pairing for {whose}\n")
            })
        }
        PairingVerb::Revoke {
            pairing,
            stop_sessions,
        } => {
            let query = if stop_sessions { "?stop_sessions=true" } else { "" };
            call(
                &client,
                Method::DELETE,
                &format!("/pairings/{}{query}", segment(&pairing)),
                None,
            )
            .await?;
            Ok(if json_out {
                pretty(&json!({"revoked": pairing}))
            } else {
                format!("revoked pairing {pairing}\n")
            })
        }
    }
}

async fn session(connection: &Connection, verb: SessionVerb) -> anyhow::Result<String> {
    let client = connection.client()?;
    let json_out = connection.output == Output::Json;
    match verb {
        SessionVerb::List => {
            let list = call(&client, Method::GET, "/sessions", None).await?;
            Ok(if json_out {
                pretty(&list)
            } else {
                render(
                    &["ID", "USER", "APP", "PHASE", "CLIENT", "MODE", "HOST", "STARTED"],
                    &rows(
                        &list,
                        &[
                            &|s| text(&s["id"]),
                            &|s| text(&s["user"]),
                            &|s| text(&s["app"]),
                            &|s| text(&s["phase"]),
                            &|s| text(&s["client_ip"]),
                            &|s| text(&s["mode"]),
                            &|s| text(&s["host"]),
                            &|s| when(&s["created_at"]),
                        ],
                    ),
                )
            })
        }
        SessionVerb::Stop { id } => {
            call(
                &client,
                Method::DELETE,
                &format!("/sessions/{}", segment(&id)),
                None,
            )
            .await?;
            Ok(if json_out {
                pretty(&json!({"stopped": id}))
            } else {
                format!("stopped session {id}\n")
            })
        }
    }
}

#[cfg(test)]
mod tests {
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
