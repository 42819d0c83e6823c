//! The HTTP side: routing of the real REST paths, discovery documents, watch streams, failure
//! injection and the request log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{Change, ChangeKind, DeleteOpts, Deleted, State, WriteCtx, output};
use super::status::ApiError;
use super::{Fault, FaultRule, RequestRecord};

/// Response body type: a full JSON document or a stream of watch lines.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Everything the connection handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The object store.
    pub state: Mutex<State>,
    /// Pending injected failures.
    pub faults: Mutex<Vec<FaultRule>>,
    /// Every request seen.
    pub log: Mutex<Vec<RequestRecord>>,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Mutex<Duration>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// `host:port` the server listens on.
    pub address: String,
}

/// The error a request handler returns to make hyper drop the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection refused by an injected fault")]
pub(crate) struct Refused;

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status());
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_u64)
        && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The `PartialObjectMetadata` form of an object (`Accept: ...;as=PartialObjectMetadata`).
fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Applies the requested representation to a get or list response.
fn represent(v: Value, meta_only: bool) -> Value {
    if !meta_only {
        return v;
    }
    match v.get("items").and_then(Value::as_array) {
        Some(items) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": v.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        None => partial_metadata(&v),
    }
}

/// Parsed query string.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a request goes.
#[derive(Debug)]
enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Resource {
        group: String,
        version: String,
        namespace: Option<String>,
        plural: String,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match s.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["apis", g] => return Some(Route::Group((*g).to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let resource = |namespace: Option<&str>, r: &[&str]| -> Option<Route> {
        let (plural, name, sub) = match r {
            [p] => (*p, None, None),
            [p, n] => (*p, Some(*n), None),
            [p, n, sub] => (*p, Some(*n), Some(*sub)),
            _ => return None,
        };
        Some(Route::Resource {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.map(String::from),
            plural: plural.to_string(),
            name: name.map(String::from),
            sub: sub.map(String::from),
        })
    };
    match rest {
        [] => Some(Route::Resources(group.to_string(), version.to_string())),
        ["namespaces", _] | ["namespaces"] => resource(None, rest),
        ["namespaces", _, "status" | "finalize"] if group.is_empty() => resource(None, rest),
        ["namespaces", ns, r @ ..] => resource(Some(ns), r),
        r => resource(None, r),
    }
}

/// The Kubernetes verb of a request.
fn verb_of(method: &Method, route: &Option<Route>, query: &Query) -> &'static str {
    let named = matches!(route, Some(Route::Resource { name: Some(_), .. }));
    match *method {
        Method::GET if !named && matches!(route, Some(Route::Resource { .. })) => {
            if query.flag("watch") {
                "watch"
            } else {
                "list"
            }
        }
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// Serves one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Refused> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(String::from);
    let query = Query::parse(raw_query.as_deref());
    let route = route(&path);
    let verb = verb_of(&method, &route, &query);

    let fault = {
        let mut faults = shared.faults.lock();
        let hit = faults.iter_mut().find(|f| f.matches(verb, &path));
        hit.map(|f| {
            f.remaining = f.remaining.saturating_sub(1);
            f.fault.clone()
        })
        .inspect(|_| faults.retain(|f| f.remaining > 0))
    };
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query.clone().unwrap_or_default(),
        verb: verb.to_string(),
        status: 0,
        injected: fault.is_some(),
    };
    let result = match fault {
        Some(Fault::Refuse) => {
            shared.log.lock().push(record);
            return Err(Refused);
        }
        // A watch that is too old is answered as the watch cache does: 200 and an ERROR event.
        Some(Fault::Status(410)) if verb == "watch" => {
            let e = ApiError::gone("too old resource version (injected)");
            let body = line(&json!({"type": "ERROR", "object": e.to_status()}));
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
        }
        Some(Fault::Status(code)) => Ok(error_response(&ApiError::injected(code))),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            serve(&shared, req, route, &query).await
        }
        None => serve(&shared, req, route, &query).await,
    };
    let resp = result.unwrap_or_else(|e| error_response(&e));
    record.status = resp.status().as_u16();
    tracing::debug!(method = %record.method, path = %record.path, status = record.status, "emulator request");
    shared.log.lock().push(record);
    Ok(resp)
}

async fn serve(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    route: Option<Route>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let Some(route) = route else {
        return Err(ApiError::no_route());
    };
    let method = req.method().clone();
    if method != Method::GET && !matches!(route, Route::Resource { .. }) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    match route {
        Route::Version => Ok(json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-direwolf-emulator",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "emulated", "compiler": "rustc",
                "platform": "linux/amd64"
            }),
        )),
        Route::CoreVersions => Ok(json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.address}]}),
        )),
        Route::Groups => {
            let groups = api_groups(&shared.state.lock());
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ))
        }
        Route::Group(g) => {
            let groups = api_groups(&shared.state.lock());
            let found = groups
                .into_iter()
                .find(|x| x["name"] == json!(g))
                .ok_or_else(ApiError::no_route)?;
            let mut found = found;
            found["kind"] = json!("APIGroup");
            found["apiVersion"] = json!("v1");
            Ok(json_response(StatusCode::OK, &found))
        }
        Route::Resources(g, v) => {
            let state = shared.state.lock();
            let rts: Vec<&Arc<ResourceType>> = state
                .registry
                .all()
                .filter(|rt| rt.group == g && rt.version == v)
                .collect();
            if rts.is_empty() {
                return Err(ApiError::no_route());
            }
            let mut resources = Vec::new();
            for rt in rts {
                resources.push(json!({
                    "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                    "kind": rt.kind, "shortNames": rt.short_names,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                }));
                if rt.status_subresource {
                    resources.push(json!({
                        "name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                        "kind": rt.kind, "verbs": ["get", "patch", "update"],
                    }));
                }
            }
            let gv = if g.is_empty() { v } else { format!("{g}/{v}") };
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
            ))
        }
        Route::Resource {
            group,
            version,
            namespace,
            plural,
            name,
            sub,
        } => {
            let rt = shared
                .state
                .lock()
                .registry
                .get(&group, &version, &plural)
                .ok_or_else(ApiError::no_route)?;
            if rt.namespaced != namespace.is_some()
                && !(namespace.is_none() && name.is_none() && method == Method::GET)
            {
                return Err(ApiError::no_route());
            }
            let status = match sub.as_deref() {
                None => false,
                Some("status") if rt.status_subresource => true,
                Some(_) => return Err(ApiError::no_route()),
            };
            let ns = namespace.clone().unwrap_or_default();
            let meta_only = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or_default().trim().to_string())
                .unwrap_or_default();
            let user_agent = req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split('/').next().unwrap_or_default().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into());
            let ctx = WriteCtx {
                manager: query.get("fieldManager").map(String::from).unwrap_or(user_agent),
                dry_run: query.get("dryRun") == Some("All"),
            };
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?
                .to_bytes();
            let parse = |b: &Bytes| -> Result<Value, ApiError> {
                serde_json::from_slice(b)
                    .or_else(|_| serde_yaml::from_slice(b))
                    .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
            };
            match (method, name) {
                (Method::GET, None) if query.flag("watch") => watch(shared, rt, namespace, query, meta_only),
                (Method::GET, None) => {
                    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                        .map_err(ApiError::bad_request)?;
                    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                        .map_err(ApiError::bad_request)?;
                    let limit = query.get("limit").and_then(|l| l.parse().ok());
                    let list = shared.state.lock().list(
                        &rt,
                        namespace.as_deref(),
                        &labels,
                        &fields,
                        limit,
                        query.get("continue"),
                    )?;
                    Ok(json_response(StatusCode::OK, &represent(list, meta_only)))
                }
                (Method::GET, Some(name)) => {
                    let mut obj = shared.state.lock().get(&rt, &ns, &name)?;
                    if status {
                        // GET /status answers the whole object, as the API server does.
                        obj = output(&rt, &obj);
                    }
                    Ok(json_response(StatusCode::OK, &represent(obj, meta_only)))
                }
                (Method::POST, None) => {
                    let obj = shared.state.lock().create(&rt, &ns, parse(&body)?, &ctx)?;
                    Ok(json_response(StatusCode::CREATED, &obj))
                }
                (Method::PUT, Some(name)) => {
                    let obj = shared
                        .state
                        .lock()
                        .replace(&rt, &ns, &name, parse(&body)?, status, &ctx)?;
                    Ok(json_response(StatusCode::OK, &obj))
                }
                (Method::PATCH, Some(name)) => {
                    let mut state = shared.state.lock();
                    if content_type == "application/apply-patch+yaml" {
                        if query.get("fieldManager").is_none_or(str::is_empty) {
                            return Err(ApiError::invalid_field(
                                &rt,
                                "",
                                "fieldManager",
                                "FieldValueRequired",
                                "Required value: is required for apply patch".into(),
                            ));
                        }
                        let existed = state.get(&rt, &ns, &name).is_ok();
                        let obj = state.apply(&rt, &ns, &name, &body, status, query.flag("force"), &ctx)?;
                        let code = if existed {
                            StatusCode::OK
                        } else {
                            StatusCode::CREATED
                        };
                        Ok(json_response(code, &obj))
                    } else {
                        let obj = state.patch(&rt, &ns, &name, &content_type, &body, status, &ctx)?;
                        Ok(json_response(StatusCode::OK, &obj))
                    }
                }
                (Method::DELETE, Some(name)) if !status => {
                    let opts = delete_opts(&body, query)?;
                    match shared.state.lock().delete(&rt, &ns, &name, &opts)? {
                        // Not deleted yet (finalizers): 202 Accepted with the object.
                        Deleted::Pending(obj) => Ok(json_response(StatusCode::ACCEPTED, &obj)),
                        // These kinds answer the deleted object (kubernetes/kubernetes#59501),
                        // all others a Success Status.
                        Deleted::Gone(obj)
                            if rt.group.is_empty()
                                && matches!(
                                    rt.plural.as_str(),
                                    "pods" | "persistentvolumeclaims" | "namespaces" | "serviceaccounts"
                                ) =>
                        {
                            Ok(json_response(StatusCode::OK, &obj))
                        }
                        Deleted::Gone(obj) => Ok(json_response(
                            StatusCode::OK,
                            &json!({
                                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                            "uid": obj.pointer("/metadata/uid")},
                            }),
                        )),
                    }
                }
                (Method::DELETE, None) => {
                    let opts = delete_opts(&body, query)?;
                    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                        .map_err(ApiError::bad_request)?;
                    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                        .map_err(ApiError::bad_request)?;
                    let mut state = shared.state.lock();
                    let list = state.list(&rt, namespace.as_deref(), &labels, &fields, None, None)?;
                    let mut items = Vec::new();
                    for item in list["items"].as_array().cloned().unwrap_or_default() {
                        let item_ns = item
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let item_name = item
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        match state.delete(&rt, item_ns, item_name, &opts) {
                            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o),
                            Err(e) if e.code == 404 => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                                "metadata": {"resourceVersion": state.current_rv().to_string()}, "items": items}),
                    ))
                }
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
    }
}

fn delete_opts(body: &Bytes, query: &Query) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        propagation: query.get("propagationPolicy").map(String::from),
        dry_run: query.get("dryRun") == Some("All"),
        ..DeleteOpts::default()
    };
    if !body.is_empty() {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        opts.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    Ok(opts)
}

fn api_groups(state: &State) -> Vec<Value> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rt in state.registry.all().filter(|rt| !rt.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, vs)) if !vs.contains(&rt.version) => vs.push(rt.version.clone()),
            Some(_) => {}
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect()
}

/// Filters of one watch.
struct WatchFilter {
    rt: Arc<ResourceType>,
    meta_only: bool,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns));
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watch sees for a change, with objects moving in or out of the selection
    /// reported as ADDED or DELETED.
    fn event(&self, c: &Change) -> Option<Value> {
        if c.key != self.rt.storage_key() {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.old.as_ref().is_some_and(|o| self.matches(o));
        let ty = match c.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Deleted if now || before => "DELETED",
            ChangeKind::Modified if now && before => "MODIFIED",
            ChangeKind::Modified if now => "ADDED",
            ChangeKind::Modified if before => "DELETED",
            _ => return None,
        };
        Some(json!({"type": ty, "object": self.render(&c.object)}))
    }

    fn render(&self, obj: &Value) -> Value {
        let o = output(&self.rt, obj);
        if self.meta_only { partial_metadata(&o) } else { o }
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn watch(
    shared: &Arc<Shared>,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    query: &Query,
    meta_only: bool,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        rt: rt.clone(),
        meta_only,
        namespace,
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?,
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let rv_param = query.get("resourceVersion").unwrap_or_default();
    let bookmark_interval = *shared.bookmark_interval.lock();

    let (initial, replay, rx, start_rv, gone) = {
        let state = shared.state.lock();
        let from_now = send_initial || rv_param.is_empty() || rv_param == "0";
        let start = if from_now {
            state.current_rv()
        } else {
            rv_param
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?
        };
        let initial: Vec<Value> = if from_now {
            state
                .snapshot(&rt, filter.namespace.as_deref())
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect()
        } else {
            Vec::new()
        };
        match state.subscribe(&rt.storage_key(), start) {
            Ok((replay, rx)) => (initial, replay, Some(rx), start, None),
            Err(e) => (Vec::new(), Vec::new(), None, start, Some(e)),
        }
    };

    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        if let Some(e) = gone {
            // As the API server's watch cache does: a 200 stream carrying one ERROR event.
            let _ = tx
                .send(line(&json!({"type": "ERROR", "object": e.to_status()})))
                .await;
            return;
        }
        for obj in initial {
            if tx
                .send(line(&json!({"type": "ADDED", "object": filter.render(&obj)})))
                .await
                .is_err()
            {
                return;
            }
        }
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            line(
                &json!({"type": "BOOKMARK", "object": {"kind": filter.rt.kind, "apiVersion": filter.rt.api_version(), "metadata": meta}}),
            )
        };
        if send_initial && tx.send(bookmark(start_rv, true)).await.is_err() {
            return;
        }
        let mut last_rv = start_rv;
        for c in replay {
            last_rv = last_rv.max(c.rv);
            if let Some(ev) = filter.event(&c)
                && tx.send(line(&ev)).await.is_err()
            {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.reset();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(bookmark(last_rv, false)).await;
                    }
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                msg = rx.recv() => match msg {
                    Ok(c) => {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(ev) = filter.event(&c)
                            && tx.send(line(&ev)).await.is_err() {
                                return;
                            }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone(format!("watch fell behind; too old resource version: {last_rv}"));
                        let _ = tx.send(line(&json!({"type": "ERROR", "object": e.to_status()}))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/api/v1/namespaces/ns/pods/p/status"),
            Some(Route::Resource { ref namespace, ref plural, ref name, ref sub, .. })
            if namespace.as_deref() == Some("ns") && plural == "pods" && name.as_deref() == Some("p") && sub.as_deref() == Some("status")));
        assert!(matches!(route("/api/v1/namespaces/ns"),
            Some(Route::Resource { ref namespace, ref plural, ref name, .. })
            if namespace.is_none() && plural == "namespaces" && name.as_deref() == Some("ns")));
        assert!(matches!(route("/apis/apps/v1/deployments"),
            Some(Route::Resource { ref namespace, ref plural, .. }) if namespace.is_none() && plural == "deployments"));
        assert!(
            matches!(route("/apis/apps/v1"), Some(Route::Resources(ref g, ref v)) if g == "apps" && v == "v1")
        );
        assert!(matches!(route("/apis/apps"), Some(Route::Group(ref g)) if g == "apps"));
        assert!(route("/healthz").is_none());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("app%3Dweb%2Ctier+in+%28a%29"),
            "app=web,tier in (a)"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
