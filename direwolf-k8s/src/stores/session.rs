//! [`KubeSessionStore`]: sessions as `Session` objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{Error, Result, Session, SessionId, SessionPhase, SessionStore};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::app::KubeAppCatalog;
use super::convert::{
    app_object_name, session_config, session_from, session_metadata, session_object, session_status,
};
use super::error::KubeStoreError;
use super::{Settings, apply_params};
use crate::crd::{self, field_managers};
use crate::keys::apply_keys;
use crate::retry::RetryPolicy;
use crate::stream::{SESSION_LABEL, keys_secret_name};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// Whether `stored` is what `object` asked for: the same spec and annotations (the
/// annotations carry the creation time, so two requests alike in all else still differ).
fn same_request(stored: &crd::Session, object: &crd::Session) -> bool {
    stored.spec == object.spec && stored.annotations() == object.annotations()
}

/// Creates the Session `object` and returns it as stored: the one Session create of direwolf,
/// used by [`KubeSessionStore`] and the launcher.
///
/// A 409 is resolved by reading the object back. If this call attempted the create more than
/// once and the stored object is [the same request](same_request), an earlier attempt landed
/// and its answer was lost: the object is ours. Any other stored object is a clash
/// (`AlreadyExists`). A conflict with nothing stored (injected, or the object was deleted
/// meanwhile) is retried, a few rounds.
///
/// # Errors
/// `AlreadyExists` on a clash; `Unavailable` if the API server did not take the create in
/// time or it kept conflicting with nothing stored; the API server's refusal otherwise.
pub(crate) async fn create_session(
    api: &Api<crd::Session>,
    retry: &RetryPolicy,
    object: &crd::Session,
) -> Result<crd::Session> {
    let name = object.name_any();
    let post_params = PostParams::default();
    for _ in 0..3 {
        let attempts = AtomicU32::new(0);
        let created = retry
            .run("create session", || {
                attempts.fetch_add(1, Ordering::Relaxed);
                api.create(&post_params, object)
            })
            .await
            .map_err(|e| KubeStoreError::from_kube("create", "session", &name, e));
        match created {
            Ok(written) => return Ok(written),
            Err(err) if err.is_conflict() => {}
            Err(err) => return Err(err.into()),
        }
        let existing = retry
            .run("get session", || api.get_opt(&name))
            .await
            .map_err(|e| KubeStoreError::from_kube("get", "session", &name, e))?;
        match existing {
            Some(existing) if attempts.load(Ordering::Relaxed) > 1 && same_request(&existing, object) => {
                return Ok(existing);
            }
            Some(_) => {
                return Err(Error::AlreadyExists {
                    kind: "session",
                    key: name,
                });
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Err(Error::unavailable(format!(
        "creating session {name} kept conflicting with nothing stored"
    )))
}

/// Sessions kept as `Session` custom resources in one namespace.
///
/// `create` posts the object (so exactly one of concurrent creators wins) with the spec, labels and
/// annotations of `docs/protocol/kubernetes.md` § Names, labels and annotations; `gameReference`
/// names the App object with the session's app id (or `app-<id>` if the catalog has none) and
/// records the id. `update` merge-patches the spec (so it fails with `NotFound` instead of
/// re-creating) and applies the phase and placement to the status subresource; the operator's
/// status fields are left alone.
#[derive(Debug, Clone)]
pub struct KubeSessionStore {
    api: Api<crd::Session>,
    /// The Sessions' keys Secrets (`crate::keys`): the keys are not in the Session.
    secrets: Api<Secret>,
    cache: Arc<Cache<crd::Session>>,
    pub(super) apps: KubeAppCatalog,
    pub(super) settings: Settings,
}

impl KubeSessionStore {
    /// Starts watching the Sessions and Apps of `namespace` (watches of its own). Must be
    /// called inside a Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        let watches = Watches::new(client, namespace);
        Self::with_watches(&watches, &KubeAppCatalog::with_watches(&watches))
    }

    /// Reads the Session watch of `watches`, and resolves apps through `apps`.
    pub(super) fn with_watches(watches: &Watches, apps: &KubeAppCatalog) -> Self {
        KubeSessionStore {
            api: watches.api(),
            secrets: watches.api(),
            cache: watches.sessions(),
            apps: apps.clone(),
            settings: Settings::default(),
        }
    }

    /// Whether the Session and App caches have completed their initial lists.
    pub fn ready(&self) -> bool {
        self.cache.is_ready() && self.apps.ready()
    }

    /// Waits up to `timeout` for the initial lists.
    ///
    /// # Errors
    /// `Unavailable` on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.cache.wait_ready(timeout).await?;
        self.apps.wait_ready(timeout).await
    }

    fn convert(&self, object: &crd::Session, keys: Option<&Secret>) -> Result<Session> {
        Ok(session_from(object, keys, |name| self.apps.id_of(name))?)
    }

    /// The keys Secret of Session `name`, if any.
    async fn keys_of(&self, name: &str) -> Result<Option<Secret>> {
        let secret = keys_secret_name(name);
        Ok(self
            .settings
            .retry
            .run("get session keys", || self.secrets.get_opt(&secret))
            .await
            .map_err(|e| KubeStoreError::from_kube("get", "secret", &secret, e))?)
    }

    /// Every Session keys Secret, by Session name.
    async fn all_keys(&self) -> Result<HashMap<String, Secret>> {
        let params = ListParams::default().labels(SESSION_LABEL);
        let listed = self
            .settings
            .retry
            .run("list session keys", || self.secrets.list(&params))
            .await
            .map_err(|e| KubeStoreError::from_kube("list", "secret", "session keys", e))?;
        Ok(listed
            .items
            .into_iter()
            .filter_map(|secret| Some((secret.labels().get(SESSION_LABEL)?.clone(), secret)))
            .collect())
    }

    /// Writes the keys Secret of the stored Session `object`.
    async fn write_keys(&self, object: &crd::Session, session: &Session) -> Result<()> {
        apply_keys(&self.secrets, &self.settings.retry, object, &session.keys)
            .await
            .map_err(|e| {
                KubeStoreError::from_kube("apply", "secret", keys_secret_name(session.id.as_str()), e)
            })?;
        Ok(())
    }

    /// Applies phase and placement to the status subresource.
    async fn apply_status(&self, session: &Session) -> Result<crd::Session> {
        let name = session.id.as_str();
        let body = json!({
            "apiVersion": crd::Session::api_version(&()),
            "kind": crd::Session::kind(&()),
            "metadata": { "name": name },
            "status": session_status(session)?,
        });
        let params = apply_params(field_managers::PROXY_SESSION_STATUS);
        let apply = Patch::Apply(&body);
        let written = self
            .settings
            .retry
            .run("apply session status", || {
                self.api.patch_status(name, &params, &apply)
            })
            .await
            .map_err(|e| KubeStoreError::from_kube("apply status", "session", name, e))?;
        Ok(written)
    }

    fn needs_status(session: &Session) -> bool {
        session.phase != SessionPhase::Pending || session.placement.is_some()
    }
}

#[async_trait]
impl SessionStore for KubeSessionStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        self.wait_ready(self.settings.ready_timeout).await?;
        let Some(object) = self.cache.get(id.as_str()) else {
            return Ok(None);
        };
        let keys = self.keys_of(id.as_str()).await?;
        self.convert(&object, keys.as_ref()).map(Some)
    }

    async fn list(&self) -> Result<Vec<Session>> {
        self.wait_ready(self.settings.ready_timeout).await?;
        let keys = self.all_keys().await?;
        let mut out: Vec<Session> = self
            .cache
            .list()
            .iter()
            .filter_map(
                |object| match self.convert(object, keys.get(&object.name_any())) {
                    Ok(session) => Some(session),
                    Err(err) => {
                        warn!(error = %err, "skipping an unusable Session");
                        None
                    }
                },
            )
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn create(&self, session: Session) -> Result<()> {
        self.wait_ready(self.settings.ready_timeout).await?;
        let app_name = self
            .apps
            .object_name(session.app)
            .unwrap_or_else(|| app_object_name(session.app));
        let object = session_object(&session, &app_name)?;
        let name = session.id.as_str();
        let mut written = create_session(&self.api, &self.settings.retry, &object).await?;
        self.write_keys(&written, &session).await?;
        if Self::needs_status(&session) {
            written = self.apply_status(&session).await?;
        }
        info!(session = name, user = %session.user, app = %session.app, "session created");
        self.cache.wrote(written);
        Ok(())
    }

    async fn update(&self, session: Session) -> Result<()> {
        let name = session.id.as_str();
        let app_name = self
            .cache
            .get(name)
            .map(|o| o.spec.game_reference.name.clone())
            .or_else(|| self.apps.object_name(session.app))
            .unwrap_or_else(|| app_object_name(session.app));
        let object = session_object(&session, &app_name)?;
        let patch = json!({
            "metadata": {
                "labels": session_metadata(&session, &app_name).labels,
                "annotations": session_metadata(&session, &app_name).annotations,
            },
            "spec": {
                "userReference": object.spec.user_reference,
                "gameReference": object.spec.game_reference,
                "pairingReference": object.spec.pairing_reference,
                "config": session_config(&session),
            },
        });
        let merge = Patch::Merge(&patch);
        let merge_params = PatchParams::default();
        let written = self
            .settings
            .retry
            .run("patch session", || self.api.patch(name, &merge_params, &merge))
            .await
            .map_err(|e| KubeStoreError::from_kube("patch", "session", name, e))?;
        self.write_keys(&written, &session).await?;
        self.cache.wrote(written);
        let written = self.apply_status(&session).await?;
        debug!(session = name, phase = ?session.phase, "session updated");
        self.cache.wrote(written);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Session>> {
        let name = id.as_str();
        let known = self.cache.get(name);
        // Read before the deletion: the Secret goes with its Session.
        let keys = self.keys_of(name).await?;
        let delete_params = DeleteParams::default();
        let result = self
            .settings
            .retry
            .run("delete session", || self.api.delete(name, &delete_params))
            .await;
        match result {
            Ok(outcome) => {
                self.cache
                    .deleted(name, known.as_ref().and_then(|o| o.resource_version()));
                // The API server answers with the deleted object, or with a Status.
                let last = match outcome.left() {
                    Some(object) => Some(self.convert(&object, keys.as_ref())?),
                    None => known.map(|o| self.convert(&o, keys.as_ref())).transpose()?,
                };
                info!(session = name, "session deleted");
                Ok(last)
            }
            Err(e) => {
                let err = KubeStoreError::from_kube("delete", "session", name, e);
                if err.is_not_found() {
                    self.cache.deleted(name, known.and_then(|o| o.resource_version()));
                    Ok(None)
                } else {
                    Err(err.into())
                }
            }
        }
    }
}
