//! [`KubeIdentityStore`]: the server identity in a Secret every replica shares.

use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{IdentityStore, Result, ServerIdentity};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::info;

use super::convert::{identity_from, identity_secret};
use super::error::KubeStoreError;
use crate::retry::RetryPolicy;

/// The server identity (certificate, private key, `uniqueid`) in one `kubernetes.io/tls`
/// Secret. `create_if_absent` creates it and, when another replica won the race (409), returns
/// the one that replica stored, so every replica converges on one identity.
#[derive(Debug, Clone)]
pub struct KubeIdentityStore {
    api: Api<Secret>,
    name: String,
    pub(super) retry: RetryPolicy,
}

impl KubeIdentityStore {
    /// The identity in Secret `name` of `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        KubeIdentityStore {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            retry: RetryPolicy::default(),
        }
    }

    async fn read(&self) -> Result<Option<ServerIdentity>> {
        let secret = self
            .retry
            .run("get identity", || self.api.get_opt(&self.name))
            .await
            .map_err(|e| KubeStoreError::from_kube("get", "identity", &self.name, e))?;
        Ok(secret.as_ref().map(identity_from).transpose()?)
    }
}

#[async_trait]
impl IdentityStore for KubeIdentityStore {
    async fn load(&self) -> Result<Option<ServerIdentity>> {
        self.read().await
    }

    async fn create_if_absent(&self, identity: ServerIdentity) -> Result<ServerIdentity> {
        let secret = identity_secret(&self.name, &identity);
        let post_params = PostParams::default();
        // A few rounds: the Secret may be deleted between our 409 and our read.
        for _ in 0..3 {
            let created = self
                .retry
                .run("create identity", || self.api.create(&post_params, &secret))
                .await;
            match created {
                Ok(stored) => {
                    info!(
                        secret = self.name,
                        unique_id = identity.unique_id,
                        "server identity created"
                    );
                    return Ok(identity_from(&stored)?);
                }
                Err(e) => {
                    let err = KubeStoreError::from_kube("create", "identity", &self.name, e);
                    if !err.is_conflict() {
                        return Err(err.into());
                    }
                }
            }
            if let Some(stored) = self.read().await? {
                return Ok(stored);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(direwolf_core::Error::unavailable(format!(
            "the identity Secret {:?} keeps appearing and disappearing",
            self.name
        )))
    }
}
