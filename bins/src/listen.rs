//! The Moonlight listening flags that `serve` and `proxy` share.

use std::net::IpAddr;

use direwolf_moonlight::server::{DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, MoonlightServerBuilder};
use direwolf_moonlight::trusted_proxy::TrustedProxies;
use ipnet::IpNet;

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

    /// An authenticating reverse proxy (address or CIDR) whose `X-Forwarded-User` (else
    /// `X-Forwarded-Email`) names who enters a PIN; repeat for several. Once one is given, a PIN
    /// entered without it is refused. Identity headers from anyone else are always refused.
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "DIREWOLF_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Still accept PINs entered without login (without `--trusted-proxy`'s identity, and, once
    /// a user has a password, without a password or pairing link): their pairings go to the user
    /// the form names, else the default user.
    #[arg(long)]
    pub allow_unauthenticated_pin: bool,
}

/// An address (a /32 or /128) or a CIDR network.
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network (10.0.0.0/8)"))
}

impl ListenArgs {
    /// Sets the ports and, when any were given, the addresses on `builder`.
    pub fn apply(&self, builder: MoonlightServerBuilder) -> MoonlightServerBuilder {
        if self.trusted_proxies.is_empty() {
            tracing::warn!(
                "no --trusted-proxy: unless users have passwords (direwolf user passwd, direwolf serve \
                 only), whoever opens a PIN page link decides which user a pairing belongs to"
            );
        }
        let builder = builder
            .with_http_port(self.http_port)
            .with_https_port(self.https_port)
            .with_trusted_proxies(TrustedProxies {
                networks: self.trusted_proxies.clone(),
                allow_unauthenticated: self.allow_unauthenticated_pin,
            });
        if self.bind.is_empty() {
            builder
        } else {
            builder.with_bind_addrs(self.bind.clone())
        }
    }
}
