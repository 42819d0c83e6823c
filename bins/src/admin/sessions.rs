//! `direwolf session list|stop`.

use hyper::Method;
use serde_json::json;

use super::commands::{pretty, rows, segment, text, when};
use super::table::render;
use super::{Connection, Output, call};

/// `direwolf session …`
#[derive(Debug, clap::Args)]
pub struct SessionCommand {
    #[command(flatten)]
    pub(super) connection: Connection,
    #[command(subcommand)]
    pub(super) verb: SessionVerb,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum SessionVerb {
    /// List the sessions.
    List,
    /// Stop a session (the game ends, the client is disconnected).
    Stop {
        /// The session id (from `session list`).
        id: String,
    },
}

impl SessionCommand {
    /// Runs the verb; returns what to print.
    pub(super) async fn run(self) -> anyhow::Result<String> {
        session(&self.connection, self.verb).await
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
