//! [`KubePairingStore`]: pairings as `Pairing` objects named by fingerprint.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{Fingerprint, Pairing, PairingStore, Result};
use kube::api::{DeleteParams, Patch};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use super::convert::{pairing_from, pairing_object};
use super::error::KubeStoreError;
use super::{Settings, apply_params};
use crate::crd::{self, field_managers};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// Pairings kept as `Pairing` custom resources in one namespace.
#[derive(Debug, Clone)]
pub struct KubePairingStore {
    api: Api<crd::Pairing>,
    cache: Arc<Cache<crd::Pairing>>,
    pub(super) settings: Settings,
}

impl KubePairingStore {
    /// Starts watching the Pairings of `namespace` (a watch of its own). Must be called inside a
    /// Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_watches(&Watches::new(client, namespace))
    }

    /// Reads the Pairing watch of `watches`.
    pub(super) fn with_watches(watches: &Watches) -> Self {
        KubePairingStore {
            api: watches.api(),
            cache: watches.pairings(),
            settings: Settings::default(),
        }
    }

    /// Whether the cache has completed its initial list.
    pub fn ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// Waits up to `timeout` for the initial list.
    ///
    /// # Errors
    /// `Unavailable` on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        Ok(self.cache.wait_ready(timeout).await?)
    }
}

#[async_trait]
impl PairingStore for KubePairingStore {
    async fn get(&self, fingerprint: &Fingerprint) -> Result<Option<Pairing>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        match self.cache.get(fingerprint.as_str()) {
            Some(object) => Ok(Some(pairing_from(&object)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, pairing: Pairing) -> Result<()> {
        let object = pairing_object(&pairing)?;
        let name = pairing.fingerprint.to_string();
        let params = apply_params(field_managers::PROXY_PAIRING);
        let apply = Patch::Apply(&object);
        let written = self
            .settings
            .retry
            .run("apply pairing", || self.api.patch(&name, &params, &apply))
            .await
            .map_err(|e| KubeStoreError::from_kube("apply", "pairing", &name, e))?;
        debug!(pairing.fingerprint = %pairing.fingerprint, user = %pairing.user, "pairing stored");
        self.cache.wrote(written);
        Ok(())
    }

    async fn delete(&self, fingerprint: &Fingerprint) -> Result<bool> {
        let name = fingerprint.as_str();
        let known = self.cache.get(name).and_then(|o| o.resource_version());
        let delete_params = DeleteParams::default();
        let result = self
            .settings
            .retry
            .run("delete pairing", || self.api.delete(name, &delete_params))
            .await;
        match result {
            Ok(_) => {
                self.cache.deleted(name, known);
                Ok(true)
            }
            Err(e) => {
                let err = KubeStoreError::from_kube("delete", "pairing", name, e);
                if err.is_not_found() {
                    self.cache.deleted(name, known);
                    Ok(false)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<Pairing>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let mut out: Vec<Pairing> = self
            .cache
            .list()
            .iter()
            .filter_map(|object| match pairing_from(object) {
                Ok(pairing) => Some(pairing),
                Err(err) => {
                    warn!(error = %err, "skipping an unusable Pairing");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Ok(out)
    }
}
