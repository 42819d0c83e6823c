//! [`Operator`]: checks the CRDs, then, for every term of leadership, watches Sessions, Apps,
//! Users and stream pods (and, outside the relay exposure, the Sessions' Services) of the
//! namespace and runs the Session reconciler on them
//! (`kube::runtime::Controller`), stopping when leadership is lost or on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::config::OperatorConfig;
use super::context::{Caches, Context, Metrics};
use super::error::Error;
use super::pool;
use super::ports::PortAllocator;
use super::reconcile::reconcile;
use crate::crd::{App, Session, User, labels};
use crate::retry::RetryPolicy;

/// Why the operator cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The direwolf CRDs are not installed.
    #[error(
        "the direwolf CustomResourceDefinitions are not installed: run `direwolf crd | kubectl apply --server-side -f -`"
    )]
    NoCrds,
    /// Listing Sessions failed (unreachable API server, no permission).
    #[error(
        "cannot list Sessions in namespace {namespace:?} (is the API server reachable and may this account list them?): {source}"
    )]
    Unreachable {
        /// The namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// The Session operator of one namespace; see the [module docs](self).
#[derive(Clone)]
pub struct Operator {
    client: Client,
    config: OperatorConfig,
    ports: Arc<PortAllocator>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// The Session cache of the current term of leadership, if leading.
    sessions: Arc<parking_lot::Mutex<Option<Store<Session>>>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("namespace", &self.config.namespace)
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// An operator with `config`, not running yet.
    pub fn new(client: Client, config: OperatorConfig) -> Self {
        Operator {
            client,
            ports: Arc::new(match config.shared_ports {
                Some(shared) => PortAllocator::shared(shared),
                None => PortAllocator::new(config.port_range),
            }),
            config,
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
            sessions: Arc::default(),
        }
    }

    /// Whether the operator can do its job: standing by (not leading), or leading with every
    /// cache synced (what `/readyz` reports).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The phase of every Session, from the leader's cache (a Session without a status is
    /// `Pending`); empty on a replica that is not leading.
    pub fn session_phases(&self) -> Vec<direwolf_core::SessionPhase> {
        let Some(store) = self.sessions.lock().clone() else {
            return Vec::new();
        };
        store
            .state()
            .iter()
            .map(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.phase)
                    .map_or(direwolf_core::SessionPhase::Pending, Into::into)
            })
            .collect()
    }

    /// The reconciler's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes: reconciles while `is_leader` is true and writes nothing
    /// otherwise.
    ///
    /// # Errors
    /// [`RunError`] if the CRDs are missing or the API server cannot be reached at start.
    pub async fn run(
        self,
        mut is_leader: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        self.check_crds().await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shutdown_task = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stopping = stop_rx.clone();
        loop {
            self.ready.store(true, Ordering::Relaxed);
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => break,
                leader = is_leader.wait_for(|l| *l) => if leader.is_err() {
                    info!("the leadership channel closed; stopping");
                    break;
                },
            }
            info!(namespace = %self.config.namespace, "leading: reconciling Sessions");
            self.ready.store(false, Ordering::Relaxed);
            self.term(is_leader.clone(), stop_rx.clone()).await;
            if *stopping.borrow() {
                break;
            }
            info!("leadership lost: standing by");
        }
        shutdown_task.abort();
        info!("operator stopped");
        Ok(())
    }

    async fn check_crds(&self) -> Result<(), RunError> {
        let api: Api<Session> = Api::namespaced(self.client.clone(), &self.config.namespace);
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(RunError::NoCrds),
            Err(source) => Err(RunError::Unreachable {
                namespace: self.config.namespace.clone(),
                source,
            }),
        }
    }

    /// One term of leadership: runs the controller until leadership is lost or shutdown.
    async fn term(&self, is_leader: watch::Receiver<bool>, stop: watch::Receiver<bool>) {
        let ns = self.config.namespace.as_str();
        let controller = Controller::new(
            Api::<Session>::namespaced(self.client.clone(), ns),
            watcher::Config::default(),
        );
        let sessions = controller.store();
        // Apps, Users and stream pods are watched by tasks of their own (so their caches fill
        // whatever the controller does); each change names the Sessions to reconcile.
        let (triggers_tx, triggers) = mpsc::channel::<ObjectRef<Session>>(1024);
        let worker = format!("{}={}", labels::APP, labels::APP_WORKER);
        // Warm pool changes (Apps, warm pods, claimed ones too: a claim is a change of the
        // pool) wake the pool task.
        let wake = Arc::new(Notify::new());
        let (pods, pods_task) = self.follow::<Pod>(
            watcher::Config::default().labels(&worker),
            slim_pod,
            triggers_tx.clone(),
            {
                let ns = ns.to_owned();
                let wake = wake.clone();
                move |pod: &Pod| {
                    if pod.labels().contains_key(labels::WARM) {
                        wake.notify_one();
                    }
                    owning_session(pod, &ns).into_iter().collect()
                }
            },
        );
        // Outside the relay, each Session's Service: its load-balancer address brings the
        // Session back at once (`publish.rs` reads the Service itself).
        let services_task = self.config.exposure.wolf_on_public_ports().then(|| {
            let ns = ns.to_owned();
            self.follow::<Service>(
                watcher::Config::default().labels(&worker),
                slim,
                triggers_tx.clone(),
                move |service: &Service| owning_session(service, &ns).into_iter().collect(),
            )
            .1
        });
        let (apps, apps_task) = self.follow::<App>(watcher::Config::default(), slim, triggers_tx.clone(), {
            let sessions = sessions.clone();
            let wake = wake.clone();
            move |app: &App| {
                wake.notify_one();
                sessions_of(&sessions, |s| s.spec.game_reference.name == app.name_any())
            }
        });
        let (users, users_task) = self.follow::<User>(watcher::Config::default(), slim, triggers_tx, {
            let sessions = sessions.clone();
            move |user: &User| sessions_of(&sessions, |s| s.spec.user_reference.name == user.name_any())
        });
        *self.sessions.lock() = Some(sessions.clone());
        let caches = Caches {
            sessions,
            apps,
            users,
            pods,
        };
        let ctx = Arc::new(self.context(caches.clone(), is_leader.clone()));
        let sync_task = tokio::spawn(mark_synced(caches, ctx.synced_tx.clone(), self.ready.clone()));
        let pool_task = tokio::spawn(pool::run(ctx.clone(), wake));
        let triggers = futures::stream::unfold(triggers, |mut rx| async move {
            rx.recv().await.map(|object| (object, rx))
        });
        controller
            .reconcile_on(triggers)
            .with_config(ControllerConfig::default().concurrency(self.config.concurrency))
            .graceful_shutdown_on(stop_on(is_leader, stop))
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| {
                match result {
                    Ok((object, _)) => {
                        ctx.failures.lock().remove(&object.name);
                    }
                    Err(kube::runtime::controller::Error::ReconcilerFailed(err, _)) => {
                        debug!(error = %err, "reconcile failed (handled by the error policy)")
                    }
                    Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                        debug!(%object, "a change named a Session that is gone")
                    }
                    Err(err) => warn!(error = %err, "controller error"),
                }
                std::future::ready(())
            })
            .await;
        *self.sessions.lock() = None;
        for task in [pods_task, apps_task, users_task, sync_task, pool_task]
            .into_iter()
            .chain(services_task)
        {
            task.abort();
        }
    }

    /// Watches `K` into a cache in a task of its own, each object made `slim` first; every change (deletion included) sends
    /// the Sessions `affected` names.
    fn follow<K>(
        &self,
        config: watcher::Config,
        slim: fn(&mut K),
        triggers: mpsc::Sender<ObjectRef<Session>>,
        affected: impl Fn(&K) -> Vec<ObjectRef<Session>> + Send + 'static,
    ) -> (Store<K>, tokio::task::JoinHandle<()>)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (store, writer) = reflector::store::<K>();
        let api = Api::<K>::namespaced(self.client.clone(), &self.config.namespace);
        let task = tokio::spawn(async move {
            let mut changes = std::pin::pin!(
                watcher(api, config)
                    .default_backoff()
                    .modify(slim)
                    .reflect(writer)
                    .touched_objects()
            );
            while let Some(change) = changes.next().await {
                match change {
                    Ok(object) => {
                        for session in affected(&object) {
                            if triggers.send(session).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => warn!(kind = K::kind(&()).as_ref(), error = %err, "watch failed; retrying"),
                }
            }
        });
        (store, task)
    }

    fn context(&self, caches: Caches, is_leader: watch::Receiver<bool>) -> Context {
        let reporter = Reporter {
            controller: self.config.reporter.clone(),
            instance: self.config.instance.clone(),
        };
        let (synced_tx, synced) = watch::channel(false);
        Context {
            client: self.client.clone(),
            config: self.config.clone(),
            recorder: Recorder::new(self.client.clone(), reporter),
            ports: self.ports.clone(),
            caches,
            is_leader,
            retry: RetryPolicy::default(),
            metrics: self.metrics.clone(),
            phases: Default::default(),
            failures: Default::default(),
            synced_tx: Arc::new(synced_tx),
            synced,
        }
    }
}

/// A future completing when leadership is lost or shutdown begins (Send and Sync, as the
/// controller wants: a task watches both and fires a oneshot).
fn stop_on(
    mut is_leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = is_leader.wait_for(|l| !*l) => {},
            _ = stop.wait_for(|s| *s) => {},
        }
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// The Sessions of the cache that `refers` selects.
fn sessions_of(sessions: &Store<Session>, refers: impl Fn(&Session) -> bool) -> Vec<ObjectRef<Session>> {
    sessions
        .state()
        .iter()
        .filter(|s| refers(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Session owning a pod or Service (its controller owner reference).
fn owning_session(object: &impl ResourceExt, namespace: &str) -> Option<ObjectRef<Session>> {
    object
        .owner_references()
        .iter()
        .find(|o| o.kind == "Session" && o.controller == Some(true))
        .map(|o| ObjectRef::new(&o.name).within(namespace))
}

/// Marks the context synced (and the operator ready) once every cache has its initial list.
async fn mark_synced(caches: Caches, synced: Arc<watch::Sender<bool>>, ready: Arc<AtomicBool>) {
    // The Session cache is the controller's: it reconciles nothing before that is synced. (Its
    // readiness is waited for by the controller alone: the store's readiness wakes only one
    // waiter.)
    let all = async {
        caches.apps.wait_until_ready().await?;
        caches.users.wait_until_ready().await?;
        caches.pods.wait_until_ready().await
    };
    if all.await.is_ok() {
        let _ = synced.send(true);
        ready.store(true, Ordering::Relaxed);
    }
}

/// Requeues a failed Session with a per-Session exponential backoff (200 ms doubling to 30 s).
/// What the operator never reads of an object: who wrote which field (`managedFields`, often
/// larger than the object).
fn slim<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
}

/// What the operator reads of a stream pod: its metadata and status; the spec is its own
/// making, and a pod's largest part.
fn slim_pod(pod: &mut Pod) {
    slim(pod);
    pod.spec = None;
}

fn error_policy(session: Arc<Session>, err: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures.lock();
        let n = map.entry(session.name_any()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_millis(200)
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(8)))
        .min(Duration::from_secs(30));
    super::events::reconcile_failed(&session, err, failures, &ctx);
    let category = err.category();
    if category == "409" {
        // A guarded write lost to a newer version (the agent wrote the phase meanwhile): read
        // again and redo, as optimistic concurrency means to.
        debug!(session = %session.name_any(), error = %err, failures, ?delay, "the Session changed meanwhile; reconciling again");
    } else {
        warn!(session = %session.name_any(), category, error = %err, failures, ?delay, "reconcile failed; retrying");
    }
    Action::requeue(delay)
}
