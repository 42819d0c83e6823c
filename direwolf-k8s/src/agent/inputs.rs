//! What registering the stream needs, gathered: the Session's stream parameters, its
//! `status.ports` (written by the operator) and the stream keys from the keys Secret (written by
//! the proxy right after the Session). Missing pieces are waited for: the ports on the Session
//! watch, the Secret with back-off (the agent's Role allows only `get` on it).

use std::net::Ipv4Addr;

use direwolf_wolf_client::Secret;
use direwolf_wolf_client::backoff::Backoff;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::Api;
use tokio::sync::watch;
use tracing::{info, warn};

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
    /// The revision of the keys ([`crate::keys::keys_revision`]).
    pub keys_revision: i64,
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

/// Waits for the Session to carry `status.ports`; its config, ports and keys revision.
async fn wait_for_ports(
    rx: &mut watch::Receiver<SessionView>,
) -> Result<(SessionConfig, SessionPorts, i64), InputsError> {
    let mut logged = false;
    loop {
        match &*rx.borrow_and_update() {
            SessionView::Gone => return Err(InputsError::SessionGone),
            SessionView::Present(s) => {
                if let Some(ports) = s.status.as_ref().and_then(|st| st.ports) {
                    return Ok((s.spec.config.clone(), ports, s.spec.keys_revision.unwrap_or(0)));
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

/// Reads the keys Secret, retrying with `backoff` while it is missing, unreadable or older than
/// revision `at_least`; the keys and their revision.
///
/// # Errors
/// [`InputsError::BadKeys`].
pub async fn read_keys(
    secrets: &Api<KubeSecret>,
    name: &str,
    at_least: i64,
    backoff: &mut Backoff,
) -> Result<(StreamKeys, i64), InputsError> {
    loop {
        match secrets.get_opt(name).await {
            Ok(Some(secret)) => {
                let revision = crate::keys::keys_revision(&secret);
                if revision >= at_least {
                    return Ok((parse_keys(name, &secret)?, revision));
                }
                info!(
                    secret = name,
                    revision, at_least, "the keys Secret is older than the Session; waiting"
                );
            }
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
    let (config, ports, wanted) = wait_for_ports(rx).await?;
    let name = stream::keys_secret_name(session);
    let (keys, keys_revision) = read_keys(secrets, &name, wanted, &mut backoff).await?;
    Ok(StreamInputs {
        config,
        ports,
        keys,
        fake_ip,
        keys_revision,
    })
}
