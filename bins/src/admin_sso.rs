//! The web UI's single sign-on (`direwolf_core::admin::ui_sso`) over the PIN page's OpenID
//! Connect login (`direwolf_moonlight::oidc`): one provider, one client, the same checks; the
//! admin port's own redirect URL (`--oidc-admin-redirect-url`, else `https://HOST/ui/oidc/callback`).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use direwolf_core::UserName;
use direwolf_core::admin::ui_sso::{SingleSignOn, SsoError, SsoStart};
use direwolf_moonlight::oidc::{OidcError, OidcLogin};

/// The PIN page's OpenID Connect login, as the web UI uses it.
#[derive(Debug)]
pub struct OidcWebUi(pub Arc<OidcLogin>);

fn refusal(e: &OidcError) -> SsoError {
    SsoError {
        status: e.status(),
        message: e.to_string(),
    }
}

#[async_trait]
impl SingleSignOn for OidcWebUi {
    async fn begin(&self, client: IpAddr, redirect_uri: &str) -> Result<SsoStart, SsoError> {
        let start = self
            .0
            .begin_web_ui(client, redirect_uri)
            .await
            .map_err(|e| refusal(&e))?;
        Ok(SsoStart {
            location: start.location,
            state: start.state,
        })
    }

    async fn finish(&self, client: IpAddr, query: &str) -> Result<UserName, SsoError> {
        self.0.finish_web_ui(client, query).await.map_err(|e| refusal(&e))
    }
}

/// The web UI's single sign-on for the admin port, if `--oidc-*` configured one.
pub fn web_ui(
    oidc: Option<Arc<OidcLogin>>,
    redirect_url: Option<String>,
) -> Option<(Arc<dyn SingleSignOn>, Option<String>)> {
    oidc.map(|oidc| (Arc::new(OidcWebUi(oidc)) as Arc<dyn SingleSignOn>, redirect_url))
}
