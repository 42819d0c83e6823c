//! Who may enter a PIN at the installed proxies: their `--trusted-proxy` (and its sign-out
//! address), `--oidc-*` and `--allow-unauthenticated-pin` flags. Without any of them a PIN
//! entered on the page is refused (the proxy has no local passwords); an administrator can still
//! approve one through the admin API.

use ipnet::IpNet;

/// Where the proxies find the Secret of `--oidc-client-secret`.
pub const OIDC_SECRET_DIR: &str = "/var/run/secrets/direwolf/oidc";
/// The key of that Secret holding the client secret.
pub const OIDC_SECRET_KEY: &str = "client-secret";

/// The install flags that become the proxy's login flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PinLoginArgs {
    /// An authenticating reverse proxy (address or CIDR) in front of the proxies' HTTP port whose
    /// `X-Forwarded-User` names who enters a PIN (the proxy's `--trusted-proxy`); repeat for
    /// several.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = crate::listen::parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// The login proxy's sign-out address (oauth2-proxy: `/oauth2/sign_out`), where the web UI's
    /// "Log out" sends someone the proxy logged in (the proxy's `--trusted-proxy-sign-out`).
    #[arg(long, value_name = "URL", requires = "trusted_proxies", value_parser = crate::listen::parse_sign_out)]
    pub trusted_proxy_sign_out: Option<String>,

    /// Single sign-on on the PIN page at this OpenID Connect issuer (the proxy's
    /// `--oidc-issuer`). Needs `--oidc-client-id`.
    #[arg(long, value_name = "URL", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,

    /// The client ID registered at the provider (a public client: PKCE, unless
    /// `--oidc-client-secret` names its secret).
    #[arg(long, value_name = "ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,

    /// A confidential client: the Secret (in the namespace, created beforehand) whose key
    /// `client-secret` holds the client secret; mounted read-only into the proxies, whose
    /// `--oidc-client-secret-file` reads it.
    #[arg(long, value_name = "SECRET", requires = "oidc_issuer", value_parser = super::flags::secret_name)]
    pub oidc_client_secret: Option<String>,

    /// Let the proxies accept PINs entered without login (whoever opens the PIN page link picks
    /// the user): the proxy's `--allow-unauthenticated-pin`.
    #[arg(long)]
    pub allow_unauthenticated_pin: bool,
}

impl PinLoginArgs {
    /// The proxy's arguments for these flags.
    pub fn proxy_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for net in &self.trusted_proxies {
            args.extend(["--trusted-proxy".to_owned(), net.to_string()]);
        }
        if let Some(sign_out) = &self.trusted_proxy_sign_out {
            args.extend(["--trusted-proxy-sign-out".to_owned(), sign_out.clone()]);
        }
        if let (Some(issuer), Some(client)) = (&self.oidc_issuer, &self.oidc_client_id) {
            args.extend([
                "--oidc-issuer".to_owned(),
                issuer.clone(),
                "--oidc-client-id".to_owned(),
                client.clone(),
            ]);
        }
        if self.oidc_client_secret.is_some() {
            let file = format!("{OIDC_SECRET_DIR}/{OIDC_SECRET_KEY}");
            args.extend(["--oidc-client-secret-file".to_owned(), file]);
        }
        if self.allow_unauthenticated_pin {
            args.push("--allow-unauthenticated-pin".to_owned());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_becomes_the_proxys() {
        assert!(
            PinLoginArgs::default().proxy_args().is_empty(),
            "nothing allowed silently"
        );
        let all = PinLoginArgs {
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
            trusted_proxy_sign_out: Some("/oauth2/sign_out".into()),
            oidc_issuer: Some("https://id.example.com".into()),
            oidc_client_id: Some("direwolf".into()),
            oidc_client_secret: Some("direwolf-oidc".into()),
            allow_unauthenticated_pin: true,
        };
        assert_eq!(
            all.proxy_args().join(" "),
            "--trusted-proxy 10.0.0.0/8 --trusted-proxy-sign-out /oauth2/sign_out --oidc-issuer https://id.example.com --oidc-client-id direwolf \
             --oidc-client-secret-file /var/run/secrets/direwolf/oidc/client-secret --allow-unauthenticated-pin"
        );
    }
}
