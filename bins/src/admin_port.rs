//! The admin API's listeners, shared by `serve` and `proxy`: the server's own certificate, on
//! `--admin-port` of the `--bind` addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use direwolf_core::admin::identity_headers::TrustedProxies;
use direwolf_core::admin::{AdminApi, AdminServer, AdminToken};
use direwolf_core::{Launcher, PinBroker, Stores};
use direwolf_moonlight::identity::LoadedIdentity;

use crate::listen::ListenArgs;

/// The admin API's default port: where Sunshine users find their web UI.
pub const DEFAULT_ADMIN_PORT: u16 = 47990;

/// Serves the admin API over `stores`, `broker` and `launcher`, bearing `token`, as `configure`
/// completes it (local accounts in single-machine mode, single sign-on), on `port` of every
/// `--bind` address of `listen` (default: every IPv6 and IPv4 address), with the stored server
/// identity (the Moonlight server has created it by now). Identity headers from anyone but
/// `listen`'s `--trusted-proxy` addresses are refused.
pub async fn start(
    listen: &ListenArgs,
    port: u16,
    stores: &Stores,
    broker: Arc<dyn PinBroker>,
    launcher: Arc<dyn Launcher>,
    token: AdminToken,
    configure: impl FnOnce(AdminApi) -> AdminApi,
) -> anyhow::Result<Vec<AdminServer>> {
    let identity = stores
        .identity
        .load()
        .await?
        .context("the server identity is missing after the server started")?;
    let loaded = LoadedIdentity::new(identity).context("the stored server identity is unusable")?;
    let tls = direwolf_moonlight::tls::admin_server_config(&loaded).context("admin TLS configuration")?;
    let mut proxies = TrustedProxies::new(&listen.trusted_proxies);
    if let Some(sign_out) = &listen.trusted_proxy_sign_out {
        proxies = proxies.with_sign_out(sign_out).map_err(anyhow::Error::msg)?;
    }
    let api = configure(AdminApi::new(stores, broker, launcher, token).with_trusted_proxies(proxies));
    let bind = listen.bind.as_slice();
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
    Ok(servers)
}
