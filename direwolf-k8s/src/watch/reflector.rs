//! [`reflect`]: the one place a watch is started. A [`Reflector`] is a watch of one kind in one
//! namespace feeding a read-only store, with readiness (the initial list has completed) and
//! change notifications.
//!
//! Readiness is tracked here rather than with `Store::wait_until_ready`: that future is backed
//! by a one-shot channel that remembers only the last waker, so a readiness probe
//! (`now_or_never`, e.g. `/readyz`) polled while a start-up wait was pending silently replaced
//! the waiter's waker, and the wait then lasted until its timeout.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use super::NotReady;

/// A watched kind in one namespace; the watch stops when the reflector is dropped.
pub(crate) struct Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    kind: &'static str,
    namespace: String,
    reader: Store<K>,
    /// Whether the initial list has completed; notified after every event the watch delivers.
    listed: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl<K> fmt::Debug for Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reflector")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<K> Drop for Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `api` (one namespace, narrowed by `config`) in a background task. A failing
/// watch is retried with kube's default backoff. Must run inside a Tokio runtime.
pub(crate) fn reflect<K>(
    kind: &'static str,
    namespace: &str,
    api: Api<K>,
    config: watcher::Config,
) -> Arc<Reflector<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let listed = Arc::new(watch::channel(false).0);
    let notify = listed.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // The store has applied the event by now: after `InitDone` it holds the list.
                Ok(event) => notify.send_modify(|listed| *listed |= matches!(event, Event::InitDone)),
                Err(err) => warn!(kind, error = %err, "watch failed; retrying with backoff"),
            }
        }
    });
    Arc::new(Reflector {
        kind,
        namespace: namespace.to_owned(),
        reader,
        listed,
        task,
    })
}

impl<K> Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// The kind, as named in logs and errors (`"app"`, ...).
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// The object named `name`, as the watch last delivered it.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<K>> {
        self.reader.get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// Every object, as the watch last delivered them.
    pub(crate) fn state(&self) -> Vec<Arc<K>> {
        self.reader.state()
    }

    /// Whether the initial list has completed.
    pub(crate) fn is_ready(&self) -> bool {
        *self.listed.borrow()
    }

    /// Waits up to `timeout` for the initial list. Any number of callers may wait at once.
    pub(crate) fn wait_ready(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), NotReady>> + Send + 'static {
        let (mut listed, kind) = (self.listed.subscribe(), self.kind);
        async move {
            match tokio::time::timeout(timeout, listed.wait_for(|listed| *listed)).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(NotReady {
                    kind,
                    waited: timeout,
                }),
            }
        }
    }

    /// Yields once after each burst of watch events from now on (bursts may be merged: a
    /// slow reader sees one item for many events).
    pub(crate) fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.listed.subscribe(), |mut receiver| async move {
            receiver.changed().await.ok().map(|()| ((), receiver))
        })
    }
}

/// A started reflector of any kind, for readiness across kinds.
pub(crate) trait Readiness: Send + Sync {
    /// The kind.
    fn kind(&self) -> &'static str;
    /// Whether the initial list has completed.
    fn is_ready(&self) -> bool;
    /// Waits up to `timeout` for the initial list.
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'static, Result<(), NotReady>>;
}

impl<K> Readiness for Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn kind(&self) -> &'static str {
        Reflector::kind(self)
    }

    fn is_ready(&self) -> bool {
        Reflector::is_ready(self)
    }

    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'static, Result<(), NotReady>> {
        Reflector::wait_ready(self, timeout).boxed()
    }
}
