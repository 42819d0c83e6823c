//! `direwolf app add|list|remove`: an image is checked before the app is added, and the app is
//! taken back out when the server refuses the image.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use direwolf_core::admin::image::{MAX_IMAGE_BYTES, check_png};
use hyper::Method;
use serde_json::{Value, json};

use super::commands::{pretty, rows, segment, text};
use super::table::render;
use super::{Connection, Output, call, json_body};

/// `direwolf app …`
#[derive(Debug, clap::Args)]
pub struct AppCommand {
    #[command(flatten)]
    pub(super) connection: Connection,
    #[command(subcommand)]
    pub(super) verb: AppVerb,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum AppVerb {
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

impl AppCommand {
    /// Runs the verb; returns what to print.
    pub(super) async fn run(self) -> anyhow::Result<String> {
        app(&self.connection, self.verb).await
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
