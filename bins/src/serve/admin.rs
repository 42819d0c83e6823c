//! The admin API of `direwolf serve`: its token and certificate files in the data directory, and
//! its HTTPS listeners.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use direwolf_core::admin::{AdminApi, AdminServer, AdminToken, CERT_FILE};
use direwolf_core::{Launcher, PinBroker, Stores};
use direwolf_moonlight::identity::LoadedIdentity;
use tracing::info;

/// Serves the admin API on `port` of every `bind` address (default: every IPv6 and IPv4
/// address), with the server's own certificate. Creates the token file once, and writes the
/// certificate to `CERT_FILE` for the CLI on this machine.
pub async fn start(
    data_dir: &Path,
    bind: &[IpAddr],
    port: u16,
    stores: &Stores,
    broker: Arc<dyn PinBroker>,
    launcher: Arc<dyn Launcher>,
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
    let loaded = LoadedIdentity::new(identity).context("the stored server identity is unusable")?;
    let tls = direwolf_moonlight::tls::admin_server_config(&loaded).context("admin TLS configuration")?;
    let api = AdminApi::new(stores, broker, launcher, token);
    let addrs: Vec<IpAddr> = if bind.is_empty() {
        vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
    } else {
        bind.to_vec()
    };
    let mut servers = Vec::with_capacity(addrs.len());
    let mut port = port;
    for ip in addrs {
        let server = match AdminServer::bind(SocketAddr::new(ip, port), api.clone(), tls.clone()).await {
            Ok(server) => server,
            // No IPv6 on this machine: every IPv4 address instead.
            Err(_) if bind.is_empty() => {
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                AdminServer::bind(any, api.clone(), tls.clone())
                    .await
                    .with_context(|| format!("cannot bind the admin port {any}"))?
            }
            Err(e) => return Err(e).with_context(|| format!("cannot bind the admin port {ip} {port}")),
        };
        // Port 0 picks a free port once; every address then uses it.
        port = server.local_addr().port();
        servers.push(server);
    }
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
