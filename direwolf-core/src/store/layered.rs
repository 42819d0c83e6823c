//! [`LayeredAppCatalog`]: apps a configuration file defines, which only that file changes, over
//! a catalog that keeps the apps added at run time (by the admin API or the Wolf API).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::AppCatalog;
use crate::error::{Error, Result};
use crate::ids::AppId;
use crate::model::{App, AppAsset};

/// The apps of a fixed layer (a configuration file), then those of an added layer (an embedded
/// store, so that they survive a restart).
///
/// * Reads see both layers; where an added app has the id or the title of a fixed one, the fixed
///   one is seen and the added one is left out ([`LayeredAppCatalog::shadowed`] names them).
/// * Writes go to the added layer. Changing or removing a fixed app is a
///   [`Error::Conflict`]: the file is its source of truth.
///
/// ```
/// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # runtime.block_on(async {
/// use std::sync::Arc;
/// use direwolf_core::memory::InMemoryAppCatalog;
/// use direwolf_core::store::{AppCatalog, LayeredAppCatalog};
/// use direwolf_core::{App, AppId};
///
/// let file = Arc::new(InMemoryAppCatalog::with_apps(vec![(
///     App::new(AppId::new(1)?, "Desktop")?,
///     None,
/// )]));
/// let catalog = LayeredAppCatalog::new(file, Arc::new(InMemoryAppCatalog::default()));
/// catalog.put(App::new(AppId::new(2)?, "Steam")?, None).await?;
/// assert_eq!(catalog.list().await?.len(), 2);
/// assert!(catalog.delete(AppId::new(1)?).await.is_err(), "the file's app stays");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LayeredAppCatalog {
    fixed: Arc<dyn AppCatalog>,
    added: Arc<dyn AppCatalog>,
}

impl LayeredAppCatalog {
    /// `fixed` (never written through this catalog) over `added`.
    pub fn new(fixed: Arc<dyn AppCatalog>, added: Arc<dyn AppCatalog>) -> Self {
        LayeredAppCatalog { fixed, added }
    }

    /// The added apps that a fixed app hides (same id or same title).
    pub async fn shadowed(&self) -> Result<Vec<App>> {
        let fixed = self.fixed.list().await?;
        let ids: HashSet<AppId> = fixed.iter().map(|a| a.id).collect();
        let titles: HashSet<&str> = fixed.iter().map(|a| a.title.as_str()).collect();
        Ok(self
            .added
            .list()
            .await?
            .into_iter()
            .filter(|a| ids.contains(&a.id) || titles.contains(a.title.as_str()))
            .collect())
    }

    async fn refuse_fixed(&self, id: AppId, what: &str) -> Result<()> {
        match self.fixed.get(id).await? {
            Some(app) => Err(Error::Conflict {
                kind: "app",
                key: id.to_string(),
                message: format!(
                    "{:?} is defined in the configuration file: {what} it there",
                    app.title
                ),
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl AppCatalog for LayeredAppCatalog {
    async fn list(&self) -> Result<Vec<App>> {
        let mut apps = self.fixed.list().await?;
        let shadowed: HashSet<AppId> = self.shadowed().await?.iter().map(|a| a.id).collect();
        apps.extend(
            self.added
                .list()
                .await?
                .into_iter()
                .filter(|a| !shadowed.contains(&a.id)),
        );
        apps.sort_by_key(|a| a.id);
        Ok(apps)
    }

    async fn get(&self, id: AppId) -> Result<Option<App>> {
        if let Some(app) = self.fixed.get(id).await? {
            return Ok(Some(app));
        }
        let Some(app) = self.added.get(id).await? else {
            return Ok(None);
        };
        let hidden = self.fixed.list().await?.iter().any(|f| f.title == app.title);
        Ok((!hidden).then_some(app))
    }

    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> {
        if self.fixed.get(id).await?.is_some() {
            return self.fixed.asset(id).await;
        }
        match self.get(id).await? {
            Some(_) => self.added.asset(id).await,
            None => Ok(None),
        }
    }

    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> {
        self.refuse_fixed(app.id, "change").await?;
        self.added.put(app, asset).await
    }

    async fn delete(&self, id: AppId) -> Result<bool> {
        self.refuse_fixed(id, "remove").await?;
        self.added.delete(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryAppCatalog;

    fn app(id: u32, title: &str) -> App {
        App::new(AppId::new(id).expect("id"), title).expect("app")
    }

    fn layered(fixed: Vec<App>) -> (LayeredAppCatalog, Arc<InMemoryAppCatalog>) {
        let fixed = InMemoryAppCatalog::with_apps(fixed.into_iter().map(|a| (a, None)));
        let added = Arc::new(InMemoryAppCatalog::default());
        (LayeredAppCatalog::new(Arc::new(fixed), added.clone()), added)
    }

    #[tokio::test]
    async fn with_no_fixed_app_it_is_a_catalog_like_any_other() {
        let (catalog, _) = layered(Vec::new());
        crate::conformance::app_catalog(&catalog).await;
    }

    #[tokio::test]
    async fn added_apps_go_to_the_added_layer_and_fixed_ones_stay() {
        let (catalog, added) = layered(vec![app(1, "Desktop")]);
        catalog.put(app(2, "Steam"), None).await.expect("put");
        assert_eq!(added.list().await.expect("list"), vec![app(2, "Steam")]);
        let ids: Vec<u32> = catalog
            .list()
            .await
            .expect("list")
            .iter()
            .map(|a| a.id.get())
            .collect();
        assert_eq!(ids, [1, 2]);
        for refused in [
            catalog.put(app(1, "Other"), None).await.err(),
            catalog.delete(AppId::new(1).expect("id")).await.err(),
        ] {
            let error = refused.expect("refused").to_string();
            assert!(error.contains("configuration file"), "{error}");
        }
        assert!(catalog.delete(AppId::new(2).expect("id")).await.expect("delete"));
    }

    #[tokio::test]
    async fn a_fixed_app_hides_an_added_one_of_its_id_or_title() {
        let (catalog, added) = layered(vec![app(1, "Desktop")]);
        added.put(app(1, "Old"), None).await.expect("put");
        added.put(app(5, "Desktop"), None).await.expect("put");
        added.put(app(6, "Steam"), None).await.expect("put");
        let titles: Vec<String> = catalog
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|a| a.title)
            .collect();
        assert_eq!(titles, ["Desktop", "Steam"]);
        assert_eq!(catalog.get(AppId::new(5).expect("id")).await.expect("get"), None);
        assert_eq!(catalog.shadowed().await.expect("shadowed").len(), 2);
    }
}
