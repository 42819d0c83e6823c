//! `direwolf user|app|pairing|session …`: the admin API from the command line.
//!
//! The connection comes from `--url`/`DIREWOLF_URL` (default `https://127.0.0.1:47990`), the token
//! from `--token`/`DIREWOLF_TOKEN` or else the data directory's `admin-token`, and the server's
//! certificate from `--fingerprint`/`DIREWOLF_FINGERPRINT` or else the data directory's
//! `server-cert.pem` (the data directory: `--data-dir`, else `direwolf serve`'s default).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use direwolf_core::Fingerprint;
use direwolf_core::admin::{AdminToken, CERT_FILE};
use hyper::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use self::client::AdminClient;

mod apps;
mod client;
mod commands;
mod pairings;
mod sessions;
mod table;
mod users;

pub use commands::{AdminCommand, AppCommand, PairingCommand, SessionCommand, UserCommand};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Readable tables.
    Table,
    /// The API's JSON.
    Json,
}

/// Where the admin API is and how to trust it (every admin subcommand takes these).
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The admin API of a running `direwolf serve` (or `proxy`).
    #[arg(
        long,
        value_name = "URL",
        env = "DIREWOLF_URL",
        default_value = "https://127.0.0.1:47990",
        global = true
    )]
    pub url: String,

    /// The admin token. Default: the `admin-token` file of the data directory.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DIREWOLF_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,

    /// SHA-256 (64 hex digits) of the server's certificate, to trust a remote server. Default: the
    /// certificate in the data directory (`server-cert.pem`).
    #[arg(long, value_name = "SHA256HEX", env = "DIREWOLF_FINGERPRINT", global = true)]
    pub fingerprint: Option<Fingerprint>,

    /// The server's data directory, where the token and certificate are read from. Default:
    /// `direwolf serve`'s.
    #[arg(long, value_name = "DIR", env = "DIREWOLF_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// `table` (readable) or `json`.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

impl Connection {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => crate::serve::default_data_dir(),
        }
    }

    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.trim().to_owned());
        }
        let path = AdminToken::path_in(&self.data_dir()?);
        let token = AdminToken::read(&path).with_context(|| {
            format!(
                "no admin token: pass --token (or DIREWOLF_TOKEN), or --data-dir of the server; cannot read {}",
                path.display()
            )
        })?;
        Ok(token.expose().to_owned())
    }

    fn fingerprint(&self) -> anyhow::Result<Fingerprint> {
        if let Some(fingerprint) = &self.fingerprint {
            return Ok(fingerprint.clone());
        }
        let path = self.data_dir()?.join(CERT_FILE);
        let hint = || {
            format!(
                "cannot trust the server: pass --fingerprint (or DIREWOLF_FINGERPRINT), or --data-dir of \
                 the server; cannot read a certificate from {}",
                path.display()
            )
        };
        let der = CertificateDer::from_pem_file(&path).with_context(hint)?;
        Ok(Fingerprint::of_der(&der))
    }

    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.url, self.token()?, self.fingerprint()?)
    }
}

/// One call's result, decoded: JSON, or an error with the server's message.
async fn call(
    client: &AdminClient,
    method: Method,
    path: &str,
    body: Option<(&'static str, Vec<u8>)>,
) -> anyhow::Result<Value> {
    let answer = client.send(method, path, body).await?;
    if answer.status.is_success() {
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&answer.body).context("the server's answer is not JSON");
    }
    let message = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned());
    match answer.status {
        StatusCode::UNAUTHORIZED => bail!("the server refused the token ({message})"),
        status => bail!("{message} (HTTP {})", status.as_u16()),
    }
}

/// A JSON body.
fn json_body(value: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", value.to_string().into_bytes()))
}

/// Runs an admin subcommand: prints its result, or one `error:` line; the exit status says
/// which.
pub fn run(command: AdminCommand) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(commands::execute(command)));
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
