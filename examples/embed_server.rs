//! Embeds the direwolf Moonlight server in a program with its own app catalog.
//!
//! Purpose: the smallest complete GameStream host. Moonlight clients can find it, pair with it
//! (the PIN link appears in the log as `Insert pin at http://HOST:PORT/pin/#SECRET`), and list
//! its two apps; launching answers with an explanation because no streaming host is attached.
//!
//! Usage: `cargo run -p direwolf-examples --example embed_server [HTTP_PORT HTTPS_PORT] [--no-mdns]`
//! (defaults 47989 and 47984), then add this machine's address in Moonlight.

use std::sync::Arc;

use direwolf_core::memory::InMemoryAppCatalog;
use direwolf_core::{App, AppId, NoStreamingHost, Stores};
use direwolf_moonlight::MoonlightServer;
use direwolf_moonlight::trusted_proxy::TrustedProxies;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mdns = !args.iter().any(|a| a == "--no-mdns");
    let mut ports = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|p| p.parse::<u16>());
    let http_port = ports.next().transpose()?.unwrap_or(47989);
    let https_port = ports.next().transpose()?.unwrap_or(47984);

    // Our own catalog: two apps, no cover art.
    let apps = InMemoryAppCatalog::with_apps([
        (App::new(AppId::new(1)?, "Desktop")?, None),
        (
            App::new(AppId::new(2)?, "Steam Big Picture")?.with_hdr(true),
            None,
        ),
    ]);
    let stores = Stores {
        apps: Arc::new(apps),
        ..Stores::in_memory()
    };

    let server = MoonlightServer::builder()
        .with_stores(stores)
        .with_launcher(Arc::new(NoStreamingHost))
        .with_hostname("Embedded Direwolf")
        .with_http_port(http_port)
        .with_https_port(https_port)
        .with_mdns(mdns)
        // No logins here: whoever opens the PIN page link may pair (refused by default).
        .with_trusted_proxies(TrustedProxies {
            networks: vec![],
            allow_unauthenticated: true,
        })
        .build()
        .await?;
    tracing::info!(http = ?server.http_addrs(), https = ?server.https_addrs(), "serving; Ctrl-C stops");
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
