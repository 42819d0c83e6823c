//! [`Context`]: what every reconcile shares (client, caches, port allocator, Event recorder,
//! leadership), and the API writes it makes, each retried on transient failures.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::metrics::Metrics as Registry;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Unit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::config::OperatorConfig;
use super::error::Error;
use super::ports::PortAllocator;
use super::warm::Removal;
use crate::crd::{App, Session, SessionPhase, User};
use crate::retry::{RetryPolicy, has_status};

/// The reconciler's metric families. [`Metrics::register`] exports them; unregistered, they
/// count for nobody.
///
/// - `direwolf_operator_reconciles_total{result}` and
///   `direwolf_operator_reconcile_duration_seconds{result}`, `result` `ok` or `error`;
/// - `direwolf_operator_reconcile_errors_total{category}`, by [`Error::category`];
/// - `direwolf_operator_sessions_ended_total`, `direwolf_operator_stream_pods_created_total`
///   (cold and warm pods);
/// - `direwolf_operator_warm_pods{state}`: unclaimed warm pods at the last pool pass, `ready`,
///   `starting` or `terminating`;
/// - `direwolf_operator_warm_claims_total{outcome,reason}`: launches of Apps with a warm pool,
///   `outcome` `warm` (reason `none`) or `cold_fallback` with why;
/// - `direwolf_operator_warm_pods_removed_total{reason}`: `broken`, `idle`, `surplus`.
#[derive(Debug, Clone)]
pub struct Metrics {
    reconciles: Family<[(&'static str, &'static str); 1], Counter>,
    durations: Family<[(&'static str, &'static str); 1], Histogram>,
    errors: Family<[(&'static str, String); 1], Counter>,
    endings: Counter,
    pods_created: Counter,
    warm_pods: Family<[(&'static str, &'static str); 1], Gauge>,
    warm_claims: Family<[(&'static str, &'static str); 2], Counter>,
    warm_removed: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            errors: Family::default(),
            endings: Counter::default(),
            pods_created: Counter::default(),
            warm_pods: Family::default(),
            warm_claims: Family::default(),
            warm_removed: Family::default(),
        }
    }
}

impl Metrics {
    /// Exports the families in `registry`: both results, and the categories that are not HTTP
    /// statuses, at 0 from the start.
    pub fn register(&self, registry: &Registry) {
        for result in ["ok", "error"] {
            let _ = self.reconciles.get_or_create(&[("result", result)]);
            let _ = self.durations.get_or_create(&[("result", result)]);
        }
        for category in ["transport", "cache", "malformed"] {
            let _ = self.errors.get_or_create(&[("category", category.to_owned())]);
        }
        registry.register(
            "operator_reconciles",
            "Session reconciles run, by result.",
            self.reconciles.clone(),
        );
        registry.register_with_unit(
            "operator_reconcile_duration",
            "Time of one Session reconcile, by result.",
            Unit::Seconds,
            self.durations.clone(),
        );
        registry.register(
            "operator_reconcile_errors",
            "Failed reconciles (retried with backoff), by category: the API server's status code, transport, cache or malformed.",
            self.errors.clone(),
        );
        registry.register(
            "operator_sessions_ended",
            "Sessions ended by the operator.",
            self.endings.clone(),
        );
        registry.register(
            "operator_stream_pods_created",
            "Stream pods created.",
            self.pods_created.clone(),
        );
        for state in WARM_STATES {
            let _ = self.warm_pods.get_or_create(&[("state", state)]);
        }
        let _ = self
            .warm_claims
            .get_or_create(&[("outcome", "warm"), ("reason", "none")]);
        for why in [Removal::Broken, Removal::Idle, Removal::Surplus] {
            let _ = self.warm_removed.get_or_create(&[("reason", why.label())]);
        }
        registry.register(
            "operator_warm_pods",
            "Unclaimed warm pods at the last pool pass, by state: ready, starting, terminating.",
            self.warm_pods.clone(),
        );
        registry.register(
            "operator_warm_claims",
            "Launches of Apps with a warm pool, by outcome (warm, cold_fallback) and the fallback's reason.",
            self.warm_claims.clone(),
        );
        registry.register(
            "operator_warm_pods_removed",
            "Warm pods deleted by the pool, by reason: broken, idle, surplus.",
            self.warm_removed.clone(),
        );
    }

    /// Claims so far with `outcome` and `reason`.
    pub fn warm_claims(&self, outcome: &'static str, reason: &'static str) -> u64 {
        self.warm_claims
            .get_or_create(&[("outcome", outcome), ("reason", reason)])
            .get()
    }

    pub(crate) fn warm_claimed(&self, outcome: &'static str, reason: &'static str) {
        self.warm_claims
            .get_or_create(&[("outcome", outcome), ("reason", reason)])
            .inc();
    }

    pub(crate) fn warm_pod_removed(&self, why: Removal) {
        self.warm_removed.get_or_create(&[("reason", why.label())]).inc();
    }

    /// Sets the warm pod gauge from the unclaimed pods of one pass.
    pub(crate) fn warm_pods_seen<'a>(&self, pods: impl Iterator<Item = &'a Pod>) {
        let mut counts = [0i64; 3];
        for pod in pods {
            let state = if pod.metadata.deletion_timestamp.is_some() {
                2
            } else if super::decide::pod_ready(pod) {
                0
            } else {
                1
            };
            counts[state] += 1;
        }
        for (state, count) in WARM_STATES.iter().zip(counts) {
            self.warm_pods.get_or_create(&[("state", *state)]).set(count);
        }
    }

    /// Reconciles run so far, with either result.
    pub fn reconciles(&self) -> u64 {
        ["ok", "error"]
            .iter()
            .map(|r| self.reconciles.get_or_create(&[("result", *r)]).get())
            .sum()
    }

    /// Stream pods created so far.
    pub fn pods_created(&self) -> u64 {
        self.pods_created.get()
    }

    pub(crate) fn reconciled<T>(&self, elapsed: Duration, result: &Result<T, Error>) {
        let label = match result {
            Ok(_) => "ok",
            Err(e) => {
                self.errors.get_or_create(&[("category", e.category())]).inc();
                "error"
            }
        };
        self.reconciles.get_or_create(&[("result", label)]).inc();
        self.durations
            .get_or_create(&[("result", label)])
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn ended(&self) {
        self.endings.inc();
    }

    pub(crate) fn pod_created(&self) {
        self.pods_created.inc();
    }
}

/// The states of `direwolf_operator_warm_pods`.
const WARM_STATES: [&str; 3] = ["ready", "starting", "terminating"];

/// The phase each Session had when last reconciled in this term of leadership.
#[derive(Debug, Default)]
pub(crate) struct PhaseLog(Mutex<HashMap<String, SessionPhase>>);

impl PhaseLog {
    /// Records `now` for `name`; the phase before, if this term saw another one.
    pub(crate) fn observe(&self, name: &str, now: SessionPhase) -> Option<SessionPhase> {
        let before = self.0.lock().insert(name.to_owned(), now);
        before.filter(|b| *b != now)
    }

    /// Forgets a Session that is gone.
    pub(crate) fn forget(&self, name: &str) {
        self.0.lock().remove(name);
    }
}

/// The caches a term of leadership reconciles from.
#[derive(Clone)]
pub(crate) struct Caches {
    pub sessions: Store<Session>,
    pub apps: Store<App>,
    pub users: Store<User>,
    pub pods: Store<Pod>,
}

/// What every reconcile of one term of leadership shares.
pub(crate) struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub ports: Arc<PortAllocator>,
    pub caches: Caches,
    pub is_leader: watch::Receiver<bool>,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// The phase of each Session at its last reconcile (for the phase Events).
    pub phases: PhaseLog,
    /// Consecutive failures per Session, for the backoff of [`super::run`]'s error policy.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Set once every cache has completed its initial list.
    pub synced: watch::Receiver<bool>,
    /// Sets [`Context::synced`].
    pub synced_tx: Arc<watch::Sender<bool>>,
}

impl Context {
    /// Whether this replica may write now.
    pub fn leading(&self) -> bool {
        *self.is_leader.borrow()
    }

    /// Waits until every cache has completed its initial list (an App missing from an empty
    /// cache must not end its Sessions).
    pub async fn wait_synced(&self) -> Result<(), Error> {
        let mut synced = self.synced.clone();
        match tokio::time::timeout(Duration::from_secs(60), synced.wait_for(|s| *s)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::NotSynced("App, User, pod or Session")),
        }
    }

    /// An API handle of `K` in the operator's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// A cached object of the namespace by name.
    pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Server-side applies `obj` (named `name`) as `manager`, forcing ownership.
    pub async fn apply<K>(&self, name: &str, obj: &K, manager: &str) -> Result<K, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let api = self.api::<K>();
        let params = PatchParams::apply(manager).force();
        let patch = Patch::Apply(obj);
        self.retry
            .run("apply", || api.patch(name, &params, &patch))
            .await
            .map_err(Error::api(format!("apply {} {name}", K::kind(&()))))
    }

    /// Creates `obj`; an object of that name already there counts as created.
    pub async fn create_if_absent<K>(&self, name: &str, obj: &K) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let api = self.api::<K>();
        let params = PostParams::default();
        match self.retry.run("create", || api.create(&params, obj)).await {
            Ok(created) => Ok(Some(created)),
            // A conflict means it exists; unless it does not (then the create is retried).
            Err(err) if has_status(&err, 409) => match self.get::<K>(name).await? {
                Some(_) => Ok(None),
                None => Err(Error::api(format!("create {} {name}", K::kind(&())))(err)),
            },
            Err(err) => Err(Error::api(format!("create {} {name}", K::kind(&())))(err)),
        }
    }

    /// Deletes `name`; already gone is fine. Returns whether it was there.
    pub async fn delete<K>(&self, name: &str) -> Result<bool, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let api = self.api::<K>();
        let params = DeleteParams::background();
        match self.retry.run("delete", || api.delete(name, &params)).await {
            Ok(_) => Ok(true),
            Err(err) if has_status(&err, 404) => Ok(false),
            Err(err) => Err(Error::api(format!("delete {} {name}", K::kind(&())))(err)),
        }
    }

    /// Reads `name` from the API server (not the cache).
    pub async fn get<K>(&self, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let api = self.api::<K>();
        self.retry
            .run("get", || api.get_opt(name))
            .await
            .map_err(Error::api(format!("get {} {name}", K::kind(&()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_families_are_exported_from_the_start() {
        let registry = Registry::new();
        Metrics::default().register(&registry);
        let text = registry.render();
        for line in [
            "# TYPE direwolf_operator_warm_pods gauge",
            "direwolf_operator_warm_pods{state=\"terminating\"} 0",
            "direwolf_operator_warm_claims_total{outcome=\"warm\",reason=\"none\"} 0",
            "direwolf_operator_warm_pods_removed_total{reason=\"idle\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
