//! The pieces of a request and its answer that the routes share: the response body type and
//! JSON answers, the query string, the route of a path, selectors, and the handlers' shared
//! state.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::selector::{FieldSelector, LabelSelector};
use super::state::State;
use super::status::ApiError;
use super::{FaultRule, RequestRecord};

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

pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
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
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Applies the requested representation to a get or list response.
pub(crate) fn represent(v: Value, meta_only: bool) -> Value {
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
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Self {
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

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }

    pub(crate) fn flag(&self, k: &str) -> bool {
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
pub(crate) enum Route {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/<version>` or `/apis/<group>/<version>`.
    Resources(String, String),
    /// A resource, an object or a subresource.
    Resource(ResourcePath),
}

/// The path of a request on a resource.
#[derive(Debug)]
pub(crate) struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub(crate) fn route(path: &str) -> Option<Route> {
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
        Some(Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.map(String::from),
            plural: plural.to_string(),
            name: name.map(String::from),
            sub: sub.map(String::from),
        }))
    };
    match rest {
        [] => Some(Route::Resources(group.to_string(), version.to_string())),
        ["namespaces", _] | ["namespaces"] => resource(None, rest),
        ["namespaces", _, "status" | "finalize"] if group.is_empty() => resource(None, rest),
        ["namespaces", ns, r @ ..] => resource(Some(ns), r),
        r => resource(None, r),
    }
}

/// The label and field selectors of a list, watch or deletecollection.
pub(crate) fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/api/v1/namespaces/ns/pods/p/status"),
            Some(Route::Resource(ResourcePath { ref namespace, ref plural, ref name, ref sub, .. }))
            if namespace.as_deref() == Some("ns") && plural == "pods" && name.as_deref() == Some("p") && sub.as_deref() == Some("status")));
        assert!(matches!(route("/api/v1/namespaces/ns"),
            Some(Route::Resource(ResourcePath { ref namespace, ref plural, ref name, .. }))
            if namespace.is_none() && plural == "namespaces" && name.as_deref() == Some("ns")));
        assert!(matches!(route("/apis/apps/v1/deployments"),
            Some(Route::Resource(ResourcePath { ref namespace, ref plural, .. })) if namespace.is_none() && plural == "deployments"));
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
