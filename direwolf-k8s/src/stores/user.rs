//! [`KubeUserStore`]: users as `User` objects.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{Result, User, UserName, UserStore};
use kube::api::{DeleteParams, Patch};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use super::convert::{user_from, user_object};
use super::error::KubeStoreError;
use super::{Settings, apply_params};
use crate::crd::{self, field_managers};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// Users kept as `User` custom resources in one namespace. `put` owns only `spec.displayName`,
/// `spec.apps` and `spec.admin` (each only when set);
/// caps, volumes and sidecar policies written by administrators are left alone.
#[derive(Debug, Clone)]
pub struct KubeUserStore {
    api: Api<crd::User>,
    cache: Arc<Cache<crd::User>>,
    pub(super) settings: Settings,
}

impl KubeUserStore {
    /// Starts watching the Users of `namespace` (a watch of its own). Must be called inside a
    /// Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_watches(&Watches::new(client, namespace))
    }

    /// Reads the User watch of `watches`.
    pub(super) fn with_watches(watches: &Watches) -> Self {
        KubeUserStore {
            api: watches.api(),
            cache: watches.users(),
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
impl UserStore for KubeUserStore {
    async fn get(&self, name: &UserName) -> Result<Option<User>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        match self.cache.get(name.as_str()) {
            Some(object) => Ok(Some(user_from(&object)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, user: User) -> Result<()> {
        let object = user_object(&user);
        let name = user.name.as_str();
        let params = apply_params(field_managers::PROXY_USER);
        let apply = Patch::Apply(&object);
        let written = self
            .settings
            .retry
            .run("apply user", || self.api.patch(name, &params, &apply))
            .await
            .map_err(|e| KubeStoreError::from_kube("apply", "user", name, e))?;
        debug!(user = %user.name, "user stored");
        self.cache.wrote(written);
        Ok(())
    }

    async fn delete(&self, name: &UserName) -> Result<bool> {
        let name = name.as_str();
        let known = self.cache.get(name).and_then(|o| o.resource_version());
        let delete_params = DeleteParams::default();
        let result = self
            .settings
            .retry
            .run("delete user", || self.api.delete(name, &delete_params))
            .await;
        match result {
            Ok(_) => {
                self.cache.deleted(name, known);
                Ok(true)
            }
            Err(e) => {
                let err = KubeStoreError::from_kube("delete", "user", name, e);
                if err.is_not_found() {
                    self.cache.deleted(name, known);
                    Ok(false)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<User>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let mut out: Vec<User> = self
            .cache
            .list()
            .iter()
            .filter_map(|object| match user_from(object) {
                Ok(user) => Some(user),
                Err(err) => {
                    warn!(error = %err, "skipping an unusable User");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
