//! The admin API of `direwolf serve`: its token and certificate files in the data directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use direwolf_core::admin::{AdminApi, AdminServer, AdminToken, CERT_FILE};
use direwolf_core::{Launcher, PinBroker, Stores};
use tracing::info;

/// Serves the admin API (`crate::admin_port`) as `configure` completes it (serve's local
/// accounts, single sign-on). Creates the token file once, and writes the certificate to
/// `CERT_FILE` for the CLI on this machine.
pub async fn start(
    data_dir: &Path,
    listen: &crate::listen::ListenArgs,
    port: u16,
    stores: &Stores,
    broker: Arc<dyn PinBroker>,
    launcher: Arc<dyn Launcher>,
    configure: impl FnOnce(AdminApi) -> AdminApi,
) -> anyhow::Result<Vec<AdminServer>> {
    let token_path = AdminToken::path_in(data_dir);
    let token = AdminToken::load_or_create(data_dir)
        .with_context(|| format!("cannot create or read the admin token {}", token_path.display()))?;
    let identity = stores
        .identity
        .load()
        .await?
        .context("the server identity is missing after the server started")?;
    write_cert(&data_dir.join(CERT_FILE), &identity.cert_pem)?;
    let servers = crate::admin_port::start(listen, port, stores, broker, launcher, token, configure).await?;
    info!(token = %token_path.display(), "admin API token file (send it as Authorization: Bearer)");
    Ok(servers)
}

/// Writes the server certificate (public) for the CLI, mode 0644, unless it is there already.
fn write_cert(path: &Path, pem: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == pem) {
        return Ok(());
    }
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
