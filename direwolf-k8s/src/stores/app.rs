//! [`KubeAppCatalog`]: apps as `App` objects; WebP art converted to PNG once and cached.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use direwolf_core::{App, AppAsset, AppCatalog, AppId, Result};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, warn};

use super::convert::{app_from, app_object, app_object_name, webp_to_png};
use super::error::KubeStoreError;
use super::{Settings, apply_params};
use crate::crd::{self, field_managers, reasons};
use crate::watch::Watches;
use crate::watch::cache::Cache;

/// An event recorder (which has no `Debug` of its own).
#[derive(Clone)]
struct EventSink(Recorder);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

/// The clashes already reported: (id, names of the Apps sharing it).
type ClashLog = Mutex<BTreeSet<(AppId, Vec<String>)>>;

/// A PNG converted from WebP art, valid while the WebP bytes are the same.
#[derive(Debug)]
struct Converted {
    source_hash: u64,
    source_len: usize,
    png: Arc<Vec<u8>>,
}

/// Apps kept as `App` custom resources in one namespace.
///
/// Apps sharing one `spec.id` are all left out of [`AppCatalog::list`] and [`AppCatalog::get`]
/// and reported once per clash with a warning (reason [`reasons::DUPLICATE_APP_ID`]). `put`
/// writes the App that has the id, or creates `app-<id>`; it owns only the title, id, HDR flag
/// and art, so pod templates written by administrators are kept.
#[derive(Debug, Clone)]
pub struct KubeAppCatalog {
    api: Api<crd::App>,
    pub(super) cache: Arc<Cache<crd::App>>,
    pub(super) settings: Settings,
    converted: Arc<Mutex<HashMap<String, Converted>>>,
    reported_clashes: Arc<ClashLog>,
    recorder: Option<EventSink>,
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl KubeAppCatalog {
    /// Starts watching the Apps of `namespace` (a watch of its own). Must be called inside a
    /// Tokio runtime.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_watches(&Watches::new(client, namespace))
    }

    /// Reads the App watch of `watches`.
    pub(super) fn with_watches(watches: &Watches) -> Self {
        KubeAppCatalog {
            api: watches.api(),
            cache: watches.apps(),
            settings: Settings::default(),
            converted: Arc::default(),
            reported_clashes: Arc::default(),
            recorder: None,
        }
    }

    /// Also reports App id clashes as Warning Events (reason
    /// [`reasons::DUPLICATE_APP_ID`]) on every App involved, so `kubectl describe app` shows
    /// them.
    #[must_use]
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(EventSink(recorder));
        self
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

    /// Every usable App object by id (several objects for a clashing id).
    fn by_id(&self) -> BTreeMap<AppId, Vec<Arc<crd::App>>> {
        let mut map: BTreeMap<AppId, Vec<Arc<crd::App>>> = BTreeMap::new();
        for object in self.cache.list() {
            match app_from(&object) {
                Ok(app) => map.entry(app.id).or_default().push(object),
                Err(err) => warn!(error = %err, "skipping an unusable App"),
            }
        }
        map
    }

    /// The one App object with `id`, or `None` if there is none or several (reported).
    fn unique(&self, id: AppId) -> Option<Arc<crd::App>> {
        let mut objects = self.by_id().remove(&id).unwrap_or_default();
        match objects.len() {
            1 => objects.pop(),
            0 => None,
            _ => {
                self.report_clash(id, &objects);
                None
            }
        }
    }

    /// Warns once per set of Apps sharing an id, and publishes an Event on each of them if a
    /// recorder is set.
    fn report_clash(&self, id: AppId, objects: &[Arc<crd::App>]) {
        let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        names.sort();
        let mut reported = self.reported_clashes.lock();
        if !reported.insert((id, names.clone())) {
            return;
        }
        drop(reported);
        warn!(
            app = %id,
            objects = ?names,
            reason = reasons::DUPLICATE_APP_ID,
            "several Apps share one spec.id; all of them are left out of the app list"
        );
        let (Some(recorder), Ok(runtime)) = (
            self.recorder.as_ref().map(|r| r.0.clone()),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let note = format!(
            "Apps {} share spec.id {id}; all of them are left out of the app list until the ids are unique",
            names.join(", ")
        );
        let references: Vec<_> = objects.iter().map(|o| o.object_ref(&())).collect();
        runtime.spawn(async move {
            let event = Event {
                type_: EventType::Warning,
                reason: reasons::DUPLICATE_APP_ID.to_owned(),
                note: Some(note),
                action: "ListApps".to_owned(),
                secondary: None,
            };
            for reference in references {
                if let Err(err) = recorder.publish(&event, &reference).await {
                    warn!(error = %err, "could not publish the DuplicateAppID event");
                }
            }
        });
    }

    /// The App object name for the app with `id`, from the catalog (used by the session store).
    pub(super) fn object_name(&self, id: AppId) -> Option<String> {
        self.unique(id).map(|o| o.name_any())
    }

    /// The id of the App object `name`.
    pub(super) fn id_of(&self, name: &str) -> Option<AppId> {
        self.cache.get(name).and_then(|o| app_from(&o).ok()).map(|a| a.id)
    }

    fn png_from_webp(&self, object: &crd::App, id: AppId, webp: &[u8]) -> Result<Vec<u8>> {
        let name = object.name_any();
        let source_hash = hash_of(webp);
        let mut converted = self.converted.lock();
        if let Some(hit) = converted.get(&name)
            && hit.source_hash == source_hash
            && hit.source_len == webp.len()
        {
            return Ok(hit.png.as_ref().clone());
        }
        drop(converted);
        let png = Arc::new(webp_to_png(id, webp)?);
        debug!(app = %id, webp = webp.len(), png = png.len(), "converted WebP art to PNG");
        converted = self.converted.lock();
        converted.insert(
            name,
            Converted {
                source_hash,
                source_len: webp.len(),
                png: png.clone(),
            },
        );
        Ok(png.as_ref().clone())
    }
}

#[async_trait]
impl AppCatalog for KubeAppCatalog {
    async fn list(&self) -> Result<Vec<App>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let mut out = Vec::new();
        for (id, objects) in self.by_id() {
            if objects.len() > 1 {
                self.report_clash(id, &objects);
                continue;
            }
            out.extend(objects.first().and_then(|o| app_from(o).ok()));
        }
        Ok(out)
    }

    async fn get(&self, id: AppId) -> Result<Option<App>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        Ok(self.unique(id).map(|o| app_from(&o)).transpose()?)
    }

    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let Some(object) = self.unique(id) else {
            return Ok(None);
        };
        let png = match (&object.spec.app_asset_png, &object.spec.app_asset_webp) {
            (Some(png), _) => png.0.clone(),
            (None, Some(webp)) => self.png_from_webp(&object, id, &webp.0)?,
            (None, None) => return Ok(None),
        };
        let asset = AppAsset::png(png).map_err(|e| KubeStoreError::Unusable {
            kind: "app",
            name: object.name_any(),
            message: format!("appAssetPNG: {e}"),
        })?;
        Ok(Some(asset))
    }

    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let existing = self.by_id().remove(&app.id).unwrap_or_default();
        let name = match existing.as_slice() {
            [] => app_object_name(app.id),
            [one] => one.name_any(),
            several => {
                self.report_clash(app.id, several);
                return Err(direwolf_core::Error::Conflict {
                    kind: "app",
                    key: app.id.to_string(),
                    message: format!("{} App objects share this id; remove all but one", several.len()),
                });
            }
        };
        let object = app_object(&name, &app, asset.as_ref())?;
        // Only the fields this store owns: leave wolfConfig (and its defaults) to their owners.
        let mut body =
            serde_json::to_value(&object).map_err(|e| direwolf_core::Error::backend("kubernetes", e))?;
        if let Some(spec) = body.get_mut("spec").and_then(|s| s.as_object_mut()) {
            spec.remove("wolfConfig");
        }
        let params = apply_params(field_managers::PROXY_APP);
        let apply = Patch::Apply(&body);
        let mut written = self
            .settings
            .retry
            .run("apply app", || self.api.patch(&name, &params, &apply))
            .await
            .map_err(|e| KubeStoreError::from_kube("apply", "app", &name, e))?;
        // Art written by another field manager survives an apply without art; "no art" means none.
        let stale_art = match asset.as_ref().map(|a| super::convert::art_kind(&a.content_type)) {
            None => written.spec.app_asset_png.is_some() || written.spec.app_asset_webp.is_some(),
            Some(Ok(super::convert::ArtKind::Png)) => written.spec.app_asset_webp.is_some(),
            Some(Ok(super::convert::ArtKind::WebP)) => written.spec.app_asset_png.is_some(),
            Some(Err(_)) => false,
        };
        if stale_art {
            let mut clear = serde_json::Map::new();
            if asset.is_none() || written.spec.app_asset_png.is_some() && object.spec.app_asset_png.is_none()
            {
                clear.insert("appAssetPNG".into(), serde_json::Value::Null);
            }
            if asset.is_none()
                || written.spec.app_asset_webp.is_some() && object.spec.app_asset_webp.is_none()
            {
                clear.insert("appAssetWebP".into(), serde_json::Value::Null);
            }
            let patch = json!({ "spec": clear });
            let merge = Patch::Merge(&patch);
            let merge_params = PatchParams::default();
            written = self
                .settings
                .retry
                .run("clear app art", || self.api.patch(&name, &merge_params, &merge))
                .await
                .map_err(|e| KubeStoreError::from_kube("patch", "app", &name, e))?;
        }
        debug!(app = %app.id, object = name, "app stored");
        self.cache.wrote(written);
        Ok(())
    }

    async fn delete(&self, id: AppId) -> Result<bool> {
        self.cache.wait_ready(self.settings.ready_timeout).await?;
        let objects = self.by_id().remove(&id).unwrap_or_default();
        let mut deleted = false;
        let delete_params = DeleteParams::default();
        for object in objects {
            let name = object.name_any();
            let result = self
                .settings
                .retry
                .run("delete app", || self.api.delete(&name, &delete_params))
                .await;
            match result {
                Ok(_) => deleted = true,
                Err(e) => {
                    let err = KubeStoreError::from_kube("delete", "app", &name, e);
                    if !err.is_not_found() {
                        return Err(err.into());
                    }
                }
            }
            self.cache.deleted(&name, object.resource_version());
            self.converted.lock().remove(&name);
        }
        Ok(deleted)
    }
}
