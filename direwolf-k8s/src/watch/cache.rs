//! A reflector cache with a write-through overlay.
//!
//! Reads come from a shared [`Reflector`] (one watch per kind, see [`Watches`](super::Watches)).
//! A write made through this process is recorded in an overlay at once, so `get` sees it before the watch delivers it
//! (pairing phase 5 follows phase 4 immediately, `docs/protocol/moonlight-http.md` § Phase 5).
//! An overlay entry gives way as soon as the reflector holds the same or a newer resourceVersion
//! of the object, or after [`OVERLAY_TTL`] (a bound on how long a write by this process can
//! shadow a change made elsewhere that the watch failed to deliver).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};
use parking_lot::Mutex;
use tracing::debug;

use super::NotReady;
use super::reflector::Reflector;

/// How long a write by this process may shadow the watch's view of the same object.
pub(crate) const OVERLAY_TTL: Duration = Duration::from_secs(30);

/// A write or delete made by this process that the watch may not have delivered yet.
#[derive(Debug)]
struct Pending<K> {
    /// The object as the API server returned it, or `None` for a delete.
    object: Option<Arc<K>>,
    /// Its resourceVersion (for a delete, that of the last version seen).
    resource_version: Option<String>,
    /// When it was recorded.
    at: Instant,
}

/// Whether resourceVersion `seen` (from the watch) is at least `written`.
///
/// resourceVersions are opaque strings; every API server in use (etcd-backed or the emulator)
/// makes them decimal integers, which are compared numerically. Anything else only compares
/// equal.
fn caught_up(seen: Option<&str>, written: Option<&str>) -> bool {
    match (seen, written) {
        (Some(seen), Some(written)) => match (seen.parse::<u64>(), written.parse::<u64>()) {
            (Ok(seen), Ok(written)) => seen >= written,
            _ => seen == written,
        },
        _ => false,
    }
}

/// A watched, namespaced kind with a write-through overlay.
pub(crate) struct Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    reflector: Arc<Reflector<K>>,
    overlay: Mutex<HashMap<String, Pending<K>>>,
}

impl<K> fmt::Debug for Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("reflector", &self.reflector)
            .finish_non_exhaustive()
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// An overlay over `reflector`'s view.
    pub(crate) fn new(reflector: Arc<Reflector<K>>) -> Arc<Self> {
        Arc::new(Cache {
            reflector,
            overlay: Mutex::new(HashMap::new()),
        })
    }

    /// The watch's view alone, without this process's writes.
    pub(crate) fn reflector(&self) -> &Arc<Reflector<K>> {
        &self.reflector
    }

    /// Whether the initial list has completed.
    pub(crate) fn is_ready(&self) -> bool {
        self.reflector.is_ready()
    }

    /// Waits up to `timeout` for the initial list.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Result<(), NotReady> {
        self.reflector.wait_ready(timeout).await
    }

    /// The object named `name` as this process knows it: the newer of the watch's copy and this
    /// process's last write.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<K>> {
        let seen = self.reflector.get(name);
        let mut overlay = self.overlay.lock();
        let Some(pending) = overlay.get(name) else {
            return seen;
        };
        let stale = pending.at.elapsed() > OVERLAY_TTL
            || seen.as_ref().is_some_and(|s| {
                let seen_rv = s.resource_version();
                match &pending.object {
                    Some(_) => caught_up(seen_rv.as_deref(), pending.resource_version.as_deref()),
                    // A delete: a copy newer than the deleted one is a re-creation.
                    None => {
                        !caught_up(pending.resource_version.as_deref(), seen_rv.as_deref())
                            && seen_rv.is_some()
                            && pending.resource_version.is_some()
                    }
                }
            });
        if stale {
            overlay.remove(name);
            return seen;
        }
        pending.object.clone()
    }

    /// Every object, watch and overlay merged.
    pub(crate) fn list(&self) -> Vec<Arc<K>> {
        let mut names: Vec<String> = self.reflector.state().iter().map(|o| o.name_any()).collect();
        names.extend(self.overlay.lock().keys().cloned());
        names.sort();
        names.dedup();
        names.iter().filter_map(|name| self.get(name)).collect()
    }

    /// Records an object the API server returned for a write by this process.
    pub(crate) fn wrote(&self, object: K) {
        let name = object.name_any();
        let resource_version = object.resource_version();
        let mut overlay = self.overlay.lock();
        // Keep the newest of concurrent writes of one object.
        if let Some(existing) = overlay.get(&name)
            && existing.object.is_some()
            && caught_up(existing.resource_version.as_deref(), resource_version.as_deref())
            && existing.resource_version != resource_version
        {
            return;
        }
        debug!(
            kind = self.reflector.kind(),
            name, "write recorded in the overlay"
        );
        overlay.insert(
            name,
            Pending {
                object: Some(Arc::new(object)),
                resource_version,
                at: Instant::now(),
            },
        );
    }

    /// Records that this process deleted `name`, whose last known resourceVersion was
    /// `resource_version`.
    pub(crate) fn deleted(&self, name: &str, resource_version: Option<String>) {
        self.overlay.lock().insert(
            name.to_owned(),
            Pending {
                object: None,
                resource_version,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::caught_up;

    #[test]
    fn resource_versions_compare_numerically() {
        assert!(caught_up(Some("10"), Some("9")));
        assert!(caught_up(Some("10"), Some("10")));
        assert!(!caught_up(Some("9"), Some("10")));
        assert!(caught_up(Some("abc"), Some("abc")));
        assert!(!caught_up(Some("abd"), Some("abc")));
        assert!(!caught_up(None, Some("1")));
        assert!(!caught_up(Some("1"), None));
    }
}
