//! An in-process Kubernetes API-server emulator, test support only (feature `emulator`).
//!
//! [`ApiServerEmulator::start`] listens on `127.0.0.1:0` (plain HTTP) and serves the real REST
//! paths (`/api/v1/...`, `/apis/<group>/<version>/...`, discovery, `/version`) faithfully
//! enough for the unmodified `kube::Client`, `kube::Api` and `kube::runtime` (watcher, reflector,
//! Controller) to run against it: get/list/create/replace/merge, JSON and server-side-apply
//! patches, delete and deletecollection, the status subresource, resourceVersion conflicts,
//! finalizers and `deletionTimestamp`, ownerReference garbage collection, label and field
//! selectors, and watch streams with bookmarks. Creating a `CustomResourceDefinition` makes its
//! resources servable, with structural-schema pruning, defaulting and validation.
//!
//! Test knobs: [`ApiServerEmulator::inject`] fails the next requests matching a verb/path with a
//! status code, a delay or a dropped connection; [`ApiServerEmulator::requests`] is the request
//! log ([`ApiServerEmulator::requests_by_resource`] counts it); [`ApiServerEmulator::compact`] forgets the watch history (watches from older
//! resourceVersions then get 410 Gone); [`ApiServerEmulator::advance_clock`] moves server
//! timestamps.
//!
//! CEL `x-kubernetes-validations` rules (including transition rules with `oldSelf`) are
//! evaluated with kube-cel's validation engine.
//!
//! Not modelled (the full gap list is a comment at the top of this module's source):
//! admission, authentication and RBAC, namespace lifecycle, version conversion, protobuf,
//! built-in controllers, and the finer points of server-side apply.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use direwolf_k8s::emulator::ApiServerEmulator;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//!
//! let emulator = ApiServerEmulator::start().await?;
//! let cms: Api<ConfigMap> = Api::default_namespaced(emulator.client());
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("settings".into());
//! cms.create(&PostParams::default(), &cm).await?;
//! assert!(cms.get("settings").await?.metadata.uid.is_some());
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```

// Gaps (what the emulator does not model), kept here next to the code:
// - No authentication, authorization (RBAC), admission webhooks or admission plugins; built-in
//   kinds are not validated beyond metadata.name (a Pod without containers is accepted).
// - No controllers besides the garbage collector and the CRD "Established" status: Deployments
//   never create ReplicaSets/Pods, Pods never run, Services get no clusterIP, PVCs stay unbound.
// - Namespaces are not required to exist; deleting one removes its contents at once (no
//   Terminating phase, no `kubernetes` finalizer, finalizers of the contents are bypassed).
// - CRD versions: objects are stored once and served under every served version without
//   conversion (apiVersion is rewritten); no conversion webhooks; no scale subresource;
//   additionalPrinterColumns and selectableFields ignored; `format`, `uniqueItems`,
//   `allOf/anyOf/oneOf/not` and list-type uniqueness are not checked; metadata of custom
//   objects is not validated against the schema. CEL rules run through kube-cel (its function
//   coverage and cost limits, not the API server's; rules run only when the structural schema
//   accepted the object; messageExpression/fieldPath/reason as kube-cel implements them).
// - Server-side apply: ownership is tracked per leaf field; associative lists are merged by key
//   only for x-kubernetes-list-type=map/set in CRD schemas and a fixed table of built-in lists
//   (ownerReferences by uid, finalizers as a set, containers/volumes/env by name, ports,
//   conditions by type); other lists are atomic. Empty parent maps are not pruned after a field
//   is removed. Apply does not convert between versions. Client-supplied managedFields are
//   ignored. Strategic merge patch uses the same small list-key table (unknown keyed lists are
//   replaced); only the `$patch: delete` element directive is honoured, `$setElementOrder`,
//   `$retainKeys`, `$deleteFromPrimitiveList` and `$patch: replace` are dropped.
// - Deleting a CRD removes its custom objects at once, bypassing their finalizers (the real
//   API server keeps the CRD Terminating until its objects are gone).
// - Garbage collection runs synchronously inside the write that triggers it (the real one is
//   asynchronous); owners are matched by uid only.
// - resourceVersion: list ignores resourceVersion/resourceVersionMatch (always the latest state);
//   pagination is not a consistent snapshot; list of a resourceVersion in the future is not
//   rejected. Watch history is a bounded window of changes (default 10 000).
// - deletionGracePeriodSeconds is always 0 (no graceful pod termination); no TTLs, no events
//   compaction, no Lease expiry.
// - Discovery: only the legacy (unaggregated) documents; no OpenAPI (/openapi/v2, /openapi/v3).
// - Only JSON (no protobuf, no CBOR), HTTP/1.1 only, no TLS, no table output (`as=Table`).

mod discovery;
mod fields;
mod registry;
mod request;
mod schema;
mod selector;
mod server;
mod state;
mod status;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::request::Shared;
use self::state::{State, WriteCtx};

/// Errors of the emulator's own API (not the Kubernetes API it serves).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The loopback listener could not be bound.
    #[error("binding the emulator listener on 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
    /// The `kube::Client` pointed at the emulator could not be built.
    #[error("building a kube client for the emulator: {0}")]
    Client(#[source] Box<kube::Error>),
    /// The emulator URL did not parse (cannot happen for a bound socket address).
    #[error("emulator URL {url} is not a valid URI")]
    Url {
        /// The URL.
        url: String,
    },
    /// A seed document is not valid YAML.
    #[error("seed document {index} is not valid YAML: {source}")]
    Yaml {
        /// Zero-based index of the document in the stream (empty documents are not counted).
        index: usize,
        /// Parser error (boxed: it is large).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A seed document has no `apiVersion`, `kind` or `metadata.name`.
    #[error("seed document {index} lacks apiVersion, kind or metadata.name")]
    MissingTypeOrName {
        /// Zero-based index of the document.
        index: usize,
    },
    /// A seed document's kind is not served (yet): CRDs must come before their objects.
    #[error("seed document {index}: the emulator serves no {api_version} {kind}")]
    UnknownKind {
        /// Zero-based index of the document.
        index: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// The emulator rejected a seed document as the API server would.
    #[error("seed document {index} ({kind} {name}) rejected with {code}: {message}")]
    Rejected {
        /// Zero-based index of the document.
        index: usize,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// The HTTP status the API would have answered.
        code: u16,
        /// The Status message.
        message: String,
    },
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status with a matching `Status` object (e.g. 409 Conflict, 410 Gone,
    /// 429 TooManyRequests with `Retry-After: 1`, 500 InternalError, 503). A 410 on a `watch`
    /// is sent as the API server sends it: a 200 stream with one ERROR event (code 410).
    Status(u16),
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Refuse,
}

/// A rule injecting a [`Fault`] into the next `times` requests matching a verb and a path
/// prefix.
#[derive(Clone, Debug)]
pub struct FaultRule {
    verb: Option<String>,
    path_prefix: Option<String>,
    remaining: usize,
    fault: Fault,
}

impl FaultRule {
    /// A rule answering `code` to the next matching request.
    pub fn status(code: u16) -> Self {
        Self::new(Fault::Status(code))
    }

    /// A rule delaying the next matching request.
    pub fn delay(d: Duration) -> Self {
        Self::new(Fault::Delay(d))
    }

    /// A rule dropping the connection of the next matching request.
    pub fn refuse() -> Self {
        Self::new(Fault::Refuse)
    }

    /// A rule with this fault, matching every request once.
    pub fn new(fault: Fault) -> Self {
        Self {
            verb: None,
            path_prefix: None,
            remaining: 1,
            fault,
        }
    }

    /// Only requests of this Kubernetes verb: `get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`, `deletecollection`.
    #[must_use]
    pub fn with_verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_string());
        self
    }

    /// Only requests whose path starts with this prefix (e.g.
    /// `/api/v1/namespaces/default/configmaps`).
    #[must_use]
    pub fn with_path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    /// Applies to the next `n` matching requests instead of one.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = n;
        self
    }

    fn matches(&self, verb: &str, path: &str) -> bool {
        self.remaining > 0
            && self.verb.as_deref().is_none_or(|v| v == verb)
            && self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// One request as seen by the emulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...).
    pub verb: String,
    /// HTTP status answered (0 if the connection was refused by a fault).
    pub status: u16,
    /// Whether an injected fault applied.
    pub injected: bool,
}

/// Tunables of an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// How many changes the watch history keeps; watches from older resourceVersions get 410.
    pub history_limit: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Where to listen (plain HTTP); default `127.0.0.1:0`, a free port.
    pub listen: SocketAddr,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// An in-process Kubernetes API server on 127.0.0.1 (see the module docs). Stops on
/// [`shutdown`](Self::shutdown) or drop.
pub struct ApiServerEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    client: kube::Client,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServerEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ApiServerEmulator {
    /// Starts an emulator with the default configuration.
    ///
    /// # Errors
    /// [`EmulatorError::Bind`] if the loopback port cannot be bound, [`EmulatorError::Client`]
    /// if the kube client cannot be built.
    pub async fn start() -> Result<Self, EmulatorError> {
        Self::start_with(EmulatorConfig::default()).await
    }

    /// Starts an emulator with `config`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(EmulatorError::Bind)?;
        let addr = listener.local_addr().map_err(EmulatorError::Bind)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config.history_limit.max(1))),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(config.bookmark_interval),
            shutdown: CancellationToken::new(),
            address: addr.to_string(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        let url = format!("http://{addr}");
        let uri: http::Uri = url.parse().map_err(|_| EmulatorError::Url { url: url.clone() })?;
        let kube_config = kube::Config::new(uri);
        let client = kube::Client::try_from(kube_config).map_err(|e| EmulatorError::Client(Box::new(e)))?;
        tracing::debug!(%addr, "API-server emulator listening");
        Ok(Self {
            shared,
            addr,
            client,
            accept: Some(accept),
        })
    }

    /// A `kube::Client` pointed at this emulator (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: the listener closes, open connections and watches end.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.accept.take() {
            // The accept loop ends promptly once cancelled; a join error means it panicked,
            // which leaves nothing to clean up.
            let _ = task.await;
        }
    }

    /// Adds a fault rule; rules are consulted in insertion order and consumed as they match.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().push(rule);
    }

    /// Removes all pending fault rules.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().clear();
    }

    /// Every request served so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().clone()
    }

    /// How many requests of Kubernetes verb `verb` (`watch`, `list`, ...) were served, by
    /// resource (the last path segment: `apps`, `secrets`, ...).
    pub fn requests_by_resource(&self, verb: &str) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for request in self.shared.log.lock().iter().filter(|r| r.verb == verb) {
            let resource = request.path.rsplit('/').next().unwrap_or_default();
            *counts.entry(resource.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.log.lock().clear();
    }

    /// Moves the server clock (creationTimestamp, deletionTimestamp, managedFields times)
    /// forward by `d`.
    pub fn advance_clock(&self, d: Duration) {
        self.shared.state.lock().clock_offset += d;
    }

    /// Forgets the watch history, as an etcd compaction does: a watch from any resourceVersion
    /// older than the current one gets a 410 Gone ERROR event.
    pub fn compact(&self) {
        self.shared.state.lock().compact();
    }

    /// Changes the BOOKMARK interval for watches started afterwards.
    pub fn set_bookmark_interval(&self, d: Duration) {
        *self.shared.bookmark_interval.lock() = d;
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().current_rv()
    }

    /// Every stored object (all kinds), as stored.
    pub fn objects(&self) -> Vec<Value> {
        self.shared
            .state
            .lock()
            .all_objects()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Seeds objects from a multi-document YAML stream (e.g. `examples/*.yaml`), in order:
    /// each document is server-side applied with field manager `emulator-seed` and `force`,
    /// so it is created or updated; a document's `status` is applied through the status
    /// subresource too. Namespaced objects without a namespace go to `default`. CRDs must come
    /// before objects of their kinds; a `kind: List` document contributes its items. Returns the
    /// stored objects.
    ///
    /// # Errors
    /// [`EmulatorError::Yaml`], [`EmulatorError::MissingTypeOrName`],
    /// [`EmulatorError::UnknownKind`], or [`EmulatorError::Rejected`] with the API error the
    /// server would answer (e.g. 422 for a schema violation). A YAML error is reported before
    /// anything is applied; documents before a rejected one stay applied.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, EmulatorError> {
        let mut docs = Vec::new();
        let mut reader = yaml.as_bytes();
        for (index, doc) in serde_saphyr::read::<_, Value>(&mut reader).enumerate() {
            let value = doc.map_err(|source| EmulatorError::Yaml {
                index,
                source: Box::new(source),
            })?;
            // A `kind: List` (as `kubectl get -o yaml` prints) contributes its items.
            match value.get("items").and_then(Value::as_array) {
                Some(items)
                    if value
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List")) =>
                {
                    docs.extend(items.iter().cloned().map(|item| (index, item)));
                }
                _ => docs.push((index, value)),
            }
        }
        let mut out = Vec::new();
        for (index, value) in docs {
            if value.is_null() {
                continue;
            }
            let s = |p: &str| value.pointer(p).and_then(Value::as_str).map(String::from);
            let (Some(api_version), Some(kind), Some(name)) =
                (s("/apiVersion"), s("/kind"), s("/metadata/name"))
            else {
                return Err(EmulatorError::MissingTypeOrName { index });
            };
            let mut state = self.shared.state.lock();
            let rt =
                state
                    .registry
                    .by_kind(&api_version, &kind)
                    .ok_or_else(|| EmulatorError::UnknownKind {
                        index,
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                    })?;
            let ns = s("/metadata/namespace").unwrap_or_else(|| "default".into());
            let ctx = WriteCtx {
                manager: "emulator-seed".into(),
                dry_run: false,
            };
            let rejected = |e: status::ApiError| EmulatorError::Rejected {
                index,
                kind: kind.clone(),
                name: name.clone(),
                code: e.code,
                message: e.message,
            };
            let body = serde_json::to_vec(&value).unwrap_or_default();
            let mut obj = state
                .apply(&rt, &ns, &name, &body, false, true, &ctx)
                .map_err(rejected)?;
            if rt.status_subresource && value.get("status").is_some() {
                obj = state
                    .apply(&rt, &ns, &name, &body, true, true, &ctx)
                    .map_err(rejected)?;
            }
            out.push(obj);
        }
        Ok(out)
    }
}

impl Drop for ApiServerEmulator {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let token = shared.shutdown.clone();
                    let service = hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        () = token.cancelled() => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}
