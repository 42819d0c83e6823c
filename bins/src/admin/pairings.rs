//! `direwolf pairing list|approve|revoke`.

use hyper::Method;
use serde_json::json;

use super::commands::{pretty, rows, segment, text, when};
use super::table::render;
use super::{Connection, Output, call, json_body};

/// `direwolf pairing …`
#[derive(Debug, clap::Args)]
pub struct PairingCommand {
    #[command(flatten)]
    pub(super) connection: Connection,
    #[command(subcommand)]
    pub(super) verb: PairingVerb,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum PairingVerb {
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

impl PairingCommand {
    /// Runs the verb; returns what to print.
    pub(super) async fn run(self) -> anyhow::Result<String> {
        pairing(&self.connection, self.verb).await
    }
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
