//! What registering the stream needs, gathered: the Session's stream parameters, its
//! `status.ports` (written by the operator) and the stream keys from the keys Secret (written by
//! the proxy right after the Session). Missing pieces are waited for: the ports on the Session
//! watch, the Secret with back-off (the agent's Role allows only `get` on it).

use std::net::Ipv4Addr;

use direwolf_wolf_client::Secret;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::Api;
use tokio::sync::watch;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::session::SessionView;
use crate::crd::{SessionConfig, SessionPorts};
use crate::stream;

/// The stream keys as Wolf takes them.
#[derive(Clone)]
pub struct StreamKeys {
    /// 32 hex digits.
    pub aes_key: Secret<String>,
    /// The IV as an unsigned 32-bit decimal (Moonlight's `rikeyid`, signed spellings converted).
    pub aes_iv: Secret<String>,
}

impl std::fmt::Debug for StreamKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKeys(<redacted>)")
    }
}

/// Everything registration needs.
#[derive(Debug, Clone)]
pub struct StreamInputs {
    /// The Session's stream parameters.
    pub config: SessionConfig,
    /// The Session's public ports.
    pub ports: SessionPorts,
    /// The keys.
    pub keys: StreamKeys,
    /// The fake RTSP IP ([`stream::fake_rtsp_ip`] of the pod's IP).
    pub fake_ip: Ipv4Addr,
}

impl StreamInputs {
    /// `rtsp://<fake ip>:<ports.rtsp>`.
    pub fn stream_url(&self) -> String {
        format!("rtsp://{}:{}", self.fake_ip, self.ports.rtsp)
    }
}

/// Why the inputs could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The Session went away meanwhile.
    #[error("the Session is gone")]
    SessionGone,
    /// The keys Secret holds something Wolf cannot take (the stream cannot start).
    #[error("the keys Secret {secret}: {problem}")]
    BadKeys {
        /// The Secret's name.
        secret: String,
        /// What is wrong (never the key itself).
        problem: String,
    },
}

/// Waits for the Session to carry `status.ports`; its config and ports.
async fn wait_for_ports(
    rx: &mut watch::Receiver<SessionView>,
) -> Result<(SessionConfig, SessionPorts), InputsError> {
    let mut logged = false;
    loop {
        match &*rx.borrow_and_update() {
            SessionView::Gone => return Err(InputsError::SessionGone),
            SessionView::Present(s) => {
                if let Some(ports) = s.status.as_ref().and_then(|st| st.ports) {
                    return Ok((s.spec.config.clone(), ports));
                }
                if !logged {
                    info!("waiting for the operator to write status.ports");
                    logged = true;
                }
            }
            SessionView::Unknown => {}
        }
        if rx.changed().await.is_err() {
            return Err(InputsError::SessionGone);
        }
    }
}

/// Reads the keys Secret, retrying with `backoff` while it is missing or unreadable.
async fn read_keys(
    secrets: &Api<KubeSecret>,
    name: &str,
    backoff: &mut Backoff,
) -> Result<StreamKeys, InputsError> {
    loop {
        match secrets.get_opt(name).await {
            Ok(Some(secret)) => return parse_keys(name, &secret),
            Ok(None) => info!(secret = name, "the keys Secret does not exist yet; waiting"),
            Err(e) => warn!(secret = name, error = %e, "cannot read the keys Secret; retrying"),
        }
        backoff.wait().await;
    }
}

fn parse_keys(name: &str, secret: &KubeSecret) -> Result<StreamKeys, InputsError> {
    let keys = crate::keys::stream_keys(secret).map_err(|problem| InputsError::BadKeys {
        secret: name.to_owned(),
        problem,
    })?;
    Ok(StreamKeys {
        aes_key: Secret::new(keys.aes_key.to_hex()),
        aes_iv: Secret::new(keys.aes_iv.bits().to_string()),
    })
}

/// Gathers the inputs: the ports from the Session watch, then the keys Secret.
///
/// # Errors
/// [`InputsError::SessionGone`] if the Session went away; [`InputsError::BadKeys`].
pub async fn gather(
    rx: &mut watch::Receiver<SessionView>,
    secrets: &Api<KubeSecret>,
    session: &str,
    fake_ip: Ipv4Addr,
    mut backoff: Backoff,
) -> Result<StreamInputs, InputsError> {
    let (config, ports) = wait_for_ports(rx).await?;
    let keys = read_keys(secrets, &stream::keys_secret_name(session), &mut backoff).await?;
    Ok(StreamInputs {
        config,
        ports,
        keys,
        fake_ip,
    })
}
