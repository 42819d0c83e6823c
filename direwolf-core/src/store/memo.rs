//! [`MemoAppCatalog`]: an [`AppCatalog`] decorator that keeps the app list and the art it
//! returned for a short time.
//!
//! A client showing its app grid asks for `/applist` and then one `/appasset` per app. With a
//! catalog whose reads are costly (the Kubernetes one walks its cache, converts every App object
//! and checks id clashes on each call) the decorator answers repeats from the last result for at
//! most its `ttl`, so a change made elsewhere (an App edited with kubectl) shows up at most `ttl`
//! later than the backend sees it; writes through the decorator are visible at once (they clear
//! the memo).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::ids::AppId;
use crate::model::{App, AppAsset};
use crate::store::AppCatalog;
use async_trait::async_trait;
use parking_lot::Mutex;

/// The default lifetime of a memoised answer.
pub const DEFAULT_MEMO_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Memo {
    list: Option<(Instant, Arc<Vec<App>>)>,
    assets: HashMap<AppId, (Instant, Option<AppAsset>)>,
}

/// Memoises `list`, `get` and `asset` of an inner catalog: repeats within `ttl` are answered
/// from the last result, and writes through the decorator clear the memo.
pub struct MemoAppCatalog<T> {
    inner: T,
    ttl: Duration,
    memo: Mutex<Memo>,
}

impl<T: fmt::Debug> fmt::Debug for MemoAppCatalog<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoAppCatalog")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<T: AppCatalog> MemoAppCatalog<T> {
    /// Wraps `inner`, keeping answers for `ttl`.
    pub fn new(inner: T, ttl: Duration) -> Self {
        MemoAppCatalog {
            inner,
            ttl,
            memo: Mutex::default(),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    async fn listed(&self) -> Result<Arc<Vec<App>>> {
        if let Some((at, list)) = &self.memo.lock().list
            && self.fresh(*at)
        {
            return Ok(list.clone());
        }
        let list = Arc::new(self.inner.list().await?);
        self.memo.lock().list = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

#[async_trait]
impl<T: AppCatalog> AppCatalog for MemoAppCatalog<T> {
    async fn list(&self) -> Result<Vec<App>> {
        Ok(self.listed().await?.as_ref().clone())
    }

    async fn get(&self, id: AppId) -> Result<Option<App>> {
        Ok(self.listed().await?.iter().find(|a| a.id == id).cloned())
    }

    async fn asset(&self, id: AppId) -> Result<Option<AppAsset>> {
        if let Some((at, asset)) = self.memo.lock().assets.get(&id)
            && self.fresh(*at)
        {
            return Ok(asset.clone());
        }
        let asset = self.inner.asset(id).await?;
        self.memo
            .lock()
            .assets
            .insert(id, (Instant::now(), asset.clone()));
        Ok(asset)
    }

    async fn put(&self, app: App, asset: Option<AppAsset>) -> Result<()> {
        let result = self.inner.put(app, asset).await;
        *self.memo.lock() = Memo::default();
        result
    }

    async fn delete(&self, id: AppId) -> Result<bool> {
        let result = self.inner.delete(id).await;
        *self.memo.lock() = Memo::default();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryAppCatalog;

    fn app(id: u32, title: &str) -> App {
        App::new(AppId::new(id).unwrap(), title).unwrap()
    }

    #[tokio::test]
    async fn repeats_are_memoised_for_the_ttl_and_writes_clear_the_memo() {
        let inner = Arc::new(InMemoryAppCatalog::default());
        let memo = MemoAppCatalog::new(inner.clone(), Duration::from_millis(200));
        memo.put(app(1, "Desktop"), None).await.unwrap();
        assert_eq!(memo.list().await.unwrap(), vec![app(1, "Desktop")]);

        // A change that bypasses the decorator is seen only after the ttl.
        inner.put(app(2, "Steam"), None).await.unwrap();
        assert_eq!(memo.list().await.unwrap().len(), 1);
        assert!(memo.get(AppId::new(2).unwrap()).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(memo.list().await.unwrap().len(), 2);
        assert_eq!(
            memo.get(AppId::new(2).unwrap()).await.unwrap(),
            Some(app(2, "Steam"))
        );

        // Writes through the decorator are visible at once.
        assert!(memo.delete(AppId::new(1).unwrap()).await.unwrap());
        assert_eq!(memo.list().await.unwrap(), vec![app(2, "Steam")]);
        assert!(memo.asset(AppId::new(2).unwrap()).await.unwrap().is_none());
    }
}
