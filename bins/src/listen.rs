//! The Moonlight listening flags that `serve` and `proxy` share.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use direwolf_moonlight::oidc::{DEFAULT_USER_CLAIM, OidcConfig, OidcLogin};
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

    /// The login proxy's sign-out address (oauth2-proxy: `/oauth2/sign_out`): "Log out" in the
    /// web UI, for someone the proxy logged in, goes there, else the proxy logs them in again.
    /// A path on the web UI's origin or an http(s) URL.
    #[arg(
        long,
        value_name = "URL",
        env = "DIREWOLF_TRUSTED_PROXY_SIGN_OUT",
        requires = "trusted_proxies",
        value_parser = parse_sign_out
    )]
    pub trusted_proxy_sign_out: Option<String>,

    /// Accept PINs entered without login (without `--trusted-proxy`'s identity, single sign-on, a
    /// password or a pairing link): their pairings go to the user the form names, else the
    /// default user. Without it such PINs are refused, on a fresh install too.
    #[arg(long)]
    pub allow_unauthenticated_pin: bool,

    /// OpenID Connect issuer URL: the PIN page offers "Log in with single sign-on" (authorization
    /// code with PKCE) and the pairing belongs to the user the provider names. Needs
    /// `--oidc-client-id`.
    #[arg(
        long,
        value_name = "URL",
        env = "DIREWOLF_OIDC_ISSUER",
        requires = "oidc_client_id"
    )]
    pub oidc_issuer: Option<String>,

    /// The client ID direwolf is registered with at the OpenID Connect provider.
    #[arg(
        long,
        value_name = "ID",
        env = "DIREWOLF_OIDC_CLIENT_ID",
        requires = "oidc_issuer"
    )]
    pub oidc_client_id: Option<String>,

    /// A file holding the client secret (confidential clients); without it direwolf is a public
    /// client and relies on PKCE alone.
    #[arg(
        long,
        value_name = "PATH",
        env = "DIREWOLF_OIDC_CLIENT_SECRET_FILE",
        requires = "oidc_issuer"
    )]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// The redirect URL registered at the provider. Default: `http://HOST/pin/oidc/callback`,
    /// HOST being the address (and port) the PIN page was opened at.
    #[arg(
        long,
        value_name = "URL",
        env = "DIREWOLF_OIDC_REDIRECT_URL",
        requires = "oidc_issuer"
    )]
    pub oidc_redirect_url: Option<String>,

    /// The redirect URL registered at the provider for the web UI on the admin port. Default:
    /// `https://HOST/ui/oidc/callback`, HOST being the address (and port) the web UI was opened
    /// at.
    #[arg(
        long,
        value_name = "URL",
        env = "DIREWOLF_OIDC_ADMIN_REDIRECT_URL",
        requires = "oidc_issuer"
    )]
    pub oidc_admin_redirect_url: Option<String>,

    /// The ID token claim naming the user (made a user name as `--trusted-proxy` names are); when
    /// the token lacks it, the local part of `email`.
    #[arg(long, value_name = "CLAIM", env = "DIREWOLF_OIDC_USER_CLAIM", default_value = DEFAULT_USER_CLAIM)]
    pub oidc_user_claim: String,
}

/// An address (a /32 or /128) or a CIDR network.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network (10.0.0.0/8)"))
}

/// A login proxy's sign-out address the admin port will take (a path or an http(s) URL).
pub fn parse_sign_out(text: &str) -> Result<String, String> {
    direwolf_core::admin::identity_headers::TrustedProxies::default()
        .with_sign_out(text)
        .map(|_| text.to_owned())
}

impl ListenArgs {
    /// Sets the ports, the PIN page's logins and, when any were given, the addresses on
    /// `builder`; the single sign-on it configured, for the admin port's web UI too.
    ///
    /// # Errors
    /// An unreadable client secret file or an unusable OpenID Connect setting.
    pub fn apply(
        &self,
        builder: MoonlightServerBuilder,
    ) -> anyhow::Result<(MoonlightServerBuilder, Option<Arc<OidcLogin>>)> {
        let oidc = self.oidc()?.map(Arc::new);
        let builder = match &oidc {
            Some(oidc) => builder.with_oidc(oidc.clone()),
            None => builder,
        };
        self.log_pin_logins();
        let builder = builder
            .with_http_port(self.http_port)
            .with_https_port(self.https_port)
            .with_trusted_proxies(TrustedProxies {
                networks: self.trusted_proxies.clone(),
                allow_unauthenticated: self.allow_unauthenticated_pin,
            });
        let builder = if self.bind.is_empty() {
            builder
        } else {
            builder.with_bind_addrs(self.bind.clone())
        };
        Ok((builder, oidc))
    }

    /// Says at start-up who may enter a PIN.
    fn log_pin_logins(&self) {
        if self.allow_unauthenticated_pin {
            tracing::warn!(
                "--allow-unauthenticated-pin: a PIN entered without login is accepted, and whoever opens \
                 a PIN page link decides which user the pairing belongs to"
            );
        } else if self.trusted_proxies.is_empty() && self.oidc_issuer.is_none() {
            tracing::info!(
                "a PIN is accepted only from someone who logged in: a user with a password (direwolf user \
                 add and direwolf user passwd, direwolf serve only), a pairing link (direwolf pairing link), \
                 an administrator's approval (direwolf pairing approve), or with --trusted-proxy or \
                 --oidc-issuer; --allow-unauthenticated-pin accepts PINs without login"
            );
        }
    }

    /// The single sign-on of the `--oidc-*` flags, if configured.
    fn oidc(&self) -> anyhow::Result<Option<OidcLogin>> {
        let (Some(issuer), Some(client_id)) = (&self.oidc_issuer, &self.oidc_client_id) else {
            return Ok(None);
        };
        let client_secret = match &self.oidc_client_secret_file {
            None => None,
            Some(path) => {
                let secret = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --oidc-client-secret-file {}", path.display()))?;
                let secret = secret.trim().to_owned();
                anyhow::ensure!(
                    !secret.is_empty(),
                    "--oidc-client-secret-file {} is empty",
                    path.display()
                );
                Some(secret)
            }
        };
        if let Some(url) = &self.oidc_admin_redirect_url {
            anyhow::ensure!(
                url.starts_with("https://") && url.len() > "https://".len(),
                "--oidc-admin-redirect-url {url:?} must be an https URL (the admin port is HTTPS)"
            );
        }
        let oidc = OidcLogin::new(OidcConfig {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret,
            redirect_url: self.oidc_redirect_url.clone(),
            user_claim: self.oidc_user_claim.clone(),
        })
        .context("--oidc-issuer and the other --oidc-* flags")?;
        tracing::info!(
            oidc.issuer = %issuer,
            oidc.client_id = %client_id,
            confidential = oidc.config().client_secret.is_some(),
            "PIN page single sign-on enabled"
        );
        Ok(Some(oidc))
    }
}
