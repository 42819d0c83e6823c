//! The HTTP side: routing of the real REST paths, failure injection, the request log, and the
//! requests on resources (discovery is in `discovery.rs`, watch streams in `watch.rs`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::registry::ResourceType;
use super::request::{
    Body, Query, Refused, ResourcePath, Route, Shared, error_response, json_response, represent, route,
    selectors,
};
use super::state::{DeleteOpts, Deleted, WriteCtx, output};
use super::status::ApiError;
use super::watch::{line, watch};
use super::{Fault, RequestRecord, discovery};

/// The Kubernetes verb of a request.
fn verb_of(method: &Method, route: &Option<Route>, query: &Query) -> &'static str {
    let named = matches!(route, Some(Route::Resource(ResourcePath { name: Some(_), .. })));
    match *method {
        Method::GET if !named && matches!(route, Some(Route::Resource(_))) => {
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
    match route {
        Route::Resource(path) => {
            let target = Target::resolve(shared, req.method(), path)?;
            serve_resource(shared, req, target, query).await
        }
        _ if req.method() != Method::GET => Err(not_allowed()),
        discovery => discovery::serve(shared, discovery),
    }
}

fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

/// A request on a resource, resolved against the registry.
struct Target {
    rt: Arc<ResourceType>,
    /// The namespace in the path (none for cluster-scoped kinds and lists across namespaces).
    namespace: Option<String>,
    /// `namespace`, or empty.
    ns: String,
    name: Option<String>,
    /// The `/status` subresource.
    status: bool,
}

impl Target {
    fn resolve(shared: &Shared, method: &Method, path: ResourcePath) -> Result<Self, ApiError> {
        let rt = shared
            .state
            .lock()
            .registry
            .get(&path.group, &path.version, &path.plural)
            .ok_or_else(ApiError::no_route)?;
        let across_namespaces = path.namespace.is_none() && path.name.is_none() && method == Method::GET;
        if rt.namespaced != path.namespace.is_some() && !across_namespaces {
            return Err(ApiError::no_route());
        }
        let status = match path.sub.as_deref() {
            None => false,
            Some("status") if rt.status_subresource => true,
            Some(_) => return Err(ApiError::no_route()),
        };
        Ok(Target {
            rt,
            ns: path.namespace.clone().unwrap_or_default(),
            namespace: path.namespace,
            name: path.name,
            status,
        })
    }
}

/// What a request on a resource carries besides its path.
struct Payload {
    /// `Accept: ...;as=PartialObjectMetadata`.
    meta_only: bool,
    /// The media type of the body.
    content_type: String,
    /// Field manager and dry run.
    ctx: WriteCtx,
    body: Bytes,
}

impl Payload {
    async fn read(req: Request<Incoming>, query: &Query) -> Result<Self, ApiError> {
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let meta_only = header(header::ACCEPT).is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let content_type = header(header::CONTENT_TYPE)
            .map(|s| s.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let user_agent = header(header::USER_AGENT)
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
        Ok(Payload {
            meta_only,
            content_type,
            ctx,
            body,
        })
    }

    /// The body as a JSON (or YAML) object.
    fn object(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body)
            .or_else(|_| serde_saphyr::from_slice(&self.body))
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
    }
}

async fn serve_resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    target: Target,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let payload = Payload::read(req, query).await?;
    let (rt, ns) = (&target.rt, target.ns.as_str());
    match (method, target.name.as_deref()) {
        (Method::GET, None) if query.flag("watch") => {
            watch(shared, rt.clone(), target.namespace, query, payload.meta_only)
        }
        (Method::GET, None) => list(shared, &target, query, payload.meta_only),
        (Method::GET, Some(name)) => {
            let mut obj = shared.state.lock().get(rt, ns, name)?;
            if target.status {
                // GET /status answers the whole object, as the API server does.
                obj = output(rt, &obj);
            }
            Ok(json_response(StatusCode::OK, &represent(obj, payload.meta_only)))
        }
        (Method::POST, None) => {
            let obj = shared
                .state
                .lock()
                .create(rt, ns, payload.object()?, &payload.ctx)?;
            Ok(json_response(StatusCode::CREATED, &obj))
        }
        (Method::PUT, Some(name)) => {
            let body = payload.object()?;
            let obj = shared
                .state
                .lock()
                .replace(rt, ns, name, body, target.status, &payload.ctx)?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::PATCH, Some(name)) => patch(shared, &target, name, query, &payload),
        (Method::DELETE, Some(name)) if !target.status => delete(shared, &target, name, query, &payload),
        (Method::DELETE, None) => delete_collection(shared, &target, query, &payload),
        _ => Err(not_allowed()),
    }
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &Query,
    meta_only: bool,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(query)?;
    let limit = query.get("limit").and_then(|l| l.parse().ok());
    let list = shared.state.lock().list(
        &target.rt,
        target.namespace.as_deref(),
        &labels,
        &fields,
        limit,
        query.get("continue"),
    )?;
    Ok(json_response(StatusCode::OK, &represent(list, meta_only)))
}

/// PATCH: server-side apply (201 when it creates) or a merge, strategic or JSON patch.
fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    query: &Query,
    payload: &Payload,
) -> Result<Response<Body>, ApiError> {
    let (rt, ns, status) = (&target.rt, target.ns.as_str(), target.status);
    let mut state = shared.state.lock();
    if payload.content_type != "application/apply-patch+yaml" {
        let obj = state.patch(
            rt,
            ns,
            name,
            &payload.content_type,
            &payload.body,
            status,
            &payload.ctx,
        )?;
        return Ok(json_response(StatusCode::OK, &obj));
    }
    if query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::invalid_field(
            rt,
            "",
            "fieldManager",
            "FieldValueRequired",
            "Required value: is required for apply patch".into(),
        ));
    }
    let existed = state.get(rt, ns, name).is_ok();
    let obj = state.apply(
        rt,
        ns,
        name,
        &payload.body,
        status,
        query.flag("force"),
        &payload.ctx,
    )?;
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(code, &obj))
}

/// DELETE of one object: 202 with the object while finalizers hold it, else 200.
fn delete(
    shared: &Shared,
    target: &Target,
    name: &str,
    query: &Query,
    payload: &Payload,
) -> Result<Response<Body>, ApiError> {
    let rt = &target.rt;
    let opts = delete_opts(&payload.body, query)?;
    match shared.state.lock().delete(rt, &target.ns, name, &opts)? {
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

/// DELETE of every selected object; answers the list of what was deleted.
fn delete_collection(
    shared: &Shared,
    target: &Target,
    query: &Query,
    payload: &Payload,
) -> Result<Response<Body>, ApiError> {
    let rt = &target.rt;
    let opts = delete_opts(&payload.body, query)?;
    let (labels, fields) = selectors(query)?;
    let mut state = shared.state.lock();
    let list = state.list(rt, target.namespace.as_deref(), &labels, &fields, None, None)?;
    let mut items = Vec::new();
    for item in list["items"].as_array().cloned().unwrap_or_default() {
        let field = |f: &str| {
            item.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match state.delete(rt, &field("namespace"), &field("name"), &opts) {
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
