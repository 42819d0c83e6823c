//! `direwolf pairing list|approve|revoke|link`.

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
    /// Issue a one-time pairing link for a user: whoever opens it may enter one PIN without a
    /// password, and the pairing belongs to that user. Prints the link.
    Link {
        /// The user the pairing will belong to.
        user: String,
        /// How long the link lasts (such as 90s, 15m, 2h; at most 24h).
        #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_ttl)]
        ttl: u64,
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
        PairingVerb::Link { user, ttl } => {
            let link = call(
                &client,
                Method::POST,
                &format!("/users/{}/pairing-links", segment(&user)),
                json_body(&json!({ "ttl_seconds": ttl })),
            )
            .await?;
            Ok(if json_out {
                pretty(&link)
            } else {
                format!(
                    "{}\n(one pairing for {user}; expires {})\n",
                    text(&link["url"]),
                    when(&link["expires_at"])
                )
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

/// A link lifetime in seconds: a number with a unit (`s`, `m`, `h`), 1 second to 24 hours.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?}: expected a number with s, m or h (15m)")),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| format!("{text:?}: a link lasts between 1s and 24h"))?;
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn link_lifetimes() {
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        for bad in ["25h", "0m", "15", "m", "1.5h", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
