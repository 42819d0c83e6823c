//! `direwolf user add|list|remove`.

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
        } => {
            let created = call(
                &client,
                Method::POST,
                "/users",
                json_body(&json!({"name": name, "display_name": display_name, "apps": apps})),
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
                    &["NAME", "DISPLAY NAME", "APPS"],
                    &rows(
                        &list,
                        &[&|u| text(&u["name"]), &|u| text(&u["display_name"]), &|u| {
                            apps_of(u)
                        }],
                    ),
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

/// A user's apps for the table: their ids, or `all`.
fn apps_of(user: &serde_json::Value) -> String {
    match user["apps"].as_array() {
        None => "all".to_owned(),
        Some(ids) => ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(","),
    }
}
