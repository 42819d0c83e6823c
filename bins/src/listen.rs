//! The Moonlight listening flags that `serve` and `proxy` share.

use std::net::IpAddr;

use direwolf_moonlight::server::{DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, MoonlightServerBuilder};

/// Where the Moonlight server listens.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on; repeat for several. Default: every IPv4 and IPv6 address.
    #[arg(long = "bind", value_name = "IP")]
    pub bind: Vec<IpAddr>,

    /// GameStream HTTP port (pairing, PIN page). 0 picks a free port.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_HTTP_PORT)]
    pub http_port: u16,

    /// GameStream HTTPS port. 0 picks a free port.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_HTTPS_PORT)]
    pub https_port: u16,
}

impl ListenArgs {
    /// Sets the ports and, when any were given, the addresses on `builder`.
    pub fn apply(&self, builder: MoonlightServerBuilder) -> MoonlightServerBuilder {
        let builder = builder
            .with_http_port(self.http_port)
            .with_https_port(self.https_port);
        if self.bind.is_empty() {
            builder
        } else {
            builder.with_bind_addrs(self.bind.clone())
        }
    }
}
