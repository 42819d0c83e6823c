//! Watch streams: the initial events, the replay of the history from a resourceVersion, live
//! changes, bookmarks, timeouts and 410 Gone.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::registry::ResourceType;
use super::request::{Body, Query, Shared, partial_metadata, selectors};
use super::selector::{FieldSelector, LabelSelector};
use super::state::{Change, ChangeKind, output};
use super::status::ApiError;

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

/// One line of a watch stream.
pub(crate) fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// The events to send before following live changes.
struct WatchStart {
    /// Objects to announce as ADDED (a watch from "now" or with `sendInitialEvents`).
    initial: Vec<Value>,
    /// Retained changes after the requested resourceVersion.
    replay: Vec<Arc<Change>>,
    /// Later changes; `None` with `gone`.
    rx: Option<broadcast::Receiver<Arc<Change>>>,
    /// The resourceVersion the watch starts from.
    start_rv: u64,
    /// 410 Gone: the requested resourceVersion is older than the retained history.
    gone: Option<ApiError>,
}

/// How the stream behaves over time.
struct WatchTiming {
    /// `timeoutSeconds` (default 30 minutes).
    timeout: Duration,
    /// `allowWatchBookmarks`.
    bookmarks: bool,
    /// `sendInitialEvents`: a BOOKMARK marks the end of the initial events.
    send_initial: bool,
    bookmark_interval: Duration,
}

/// Answers a watch request with a stream of JSON lines.
pub(crate) fn watch(
    shared: &Arc<Shared>,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    query: &Query,
    meta_only: bool,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(query)?;
    let filter = WatchFilter {
        rt,
        meta_only,
        namespace,
        labels,
        fields,
    };
    let timing = WatchTiming {
        timeout: query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs),
        bookmarks: query.flag("allowWatchBookmarks"),
        send_initial: query.flag("sendInitialEvents"),
        bookmark_interval: *shared.bookmark_interval.lock(),
    };
    let start = start(shared, &filter, query, timing.send_initial)?;
    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(stream(tx, filter, start, timing, shared.shutdown.clone()));
    let body = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(StreamBody::new(body)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Where the watch starts, taken atomically with its subscription to later changes.
fn start(
    shared: &Shared,
    filter: &WatchFilter,
    query: &Query,
    send_initial: bool,
) -> Result<WatchStart, ApiError> {
    let rv_param = query.get("resourceVersion").unwrap_or_default();
    let state = shared.state.lock();
    let from_now = send_initial || rv_param.is_empty() || rv_param == "0";
    let start_rv = if from_now {
        state.current_rv()
    } else {
        rv_param
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?
    };
    let initial: Vec<Value> = if from_now {
        state
            .snapshot(&filter.rt, filter.namespace.as_deref())
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect()
    } else {
        Vec::new()
    };
    Ok(match state.subscribe(&filter.rt.storage_key(), start_rv) {
        Ok((replay, rx)) => WatchStart {
            initial,
            replay,
            rx: Some(rx),
            start_rv,
            gone: None,
        },
        Err(e) => WatchStart {
            initial: Vec::new(),
            replay: Vec::new(),
            rx: None,
            start_rv,
            gone: Some(e),
        },
    })
}

/// A BOOKMARK at `rv`; `initial_end` marks the end of the initial events.
fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        &json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}}),
    )
}

/// An ERROR event.
fn error_event(e: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.to_status()}))
}

/// Feeds the stream until the client goes away, the timeout passes or the emulator stops.
async fn stream(
    tx: mpsc::Sender<Bytes>,
    filter: WatchFilter,
    start: WatchStart,
    timing: WatchTiming,
    shutdown: CancellationToken,
) {
    if let Some(e) = &start.gone {
        // As the API server's watch cache does: a 200 stream carrying one ERROR event.
        let _ = tx.send(error_event(e)).await;
        return;
    }
    let Some(last_rv) = send_start(&tx, &filter, &start, timing.send_initial).await else {
        return;
    };
    if let Some(rx) = start.rx {
        follow(&tx, &filter, rx, last_rv, &timing, &shutdown).await;
    }
}

/// Sends the initial events and the replay; returns the last resourceVersion sent, or `None` if
/// the client went away.
async fn send_start(
    tx: &mpsc::Sender<Bytes>,
    filter: &WatchFilter,
    start: &WatchStart,
    send_initial: bool,
) -> Option<u64> {
    for obj in &start.initial {
        let added = line(&json!({"type": "ADDED", "object": filter.render(obj)}));
        tx.send(added).await.ok()?;
    }
    if send_initial {
        tx.send(bookmark(&filter.rt, start.start_rv, true)).await.ok()?;
    }
    let mut last_rv = start.start_rv;
    for c in &start.replay {
        last_rv = last_rv.max(c.rv);
        if let Some(ev) = filter.event(c) {
            tx.send(line(&ev)).await.ok()?;
        }
    }
    Some(last_rv)
}

/// Sends live changes (and bookmarks) until the client goes away, the timeout passes, the
/// emulator stops, or the watch falls behind the history (410).
async fn follow(
    tx: &mpsc::Sender<Bytes>,
    filter: &WatchFilter,
    mut rx: broadcast::Receiver<Arc<Change>>,
    mut last_rv: u64,
    timing: &WatchTiming,
    shutdown: &CancellationToken,
) {
    let deadline = tokio::time::sleep(timing.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(timing.bookmark_interval);
    ticker.reset();
    loop {
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut deadline => {
                if timing.bookmarks {
                    let _ = tx.send(bookmark(&filter.rt, last_rv, false)).await;
                }
                return;
            }
            _ = ticker.tick(), if timing.bookmarks => tx.send(bookmark(&filter.rt, last_rv, false)).await,
            msg = rx.recv() => match msg {
                Ok(c) if c.rv <= last_rv => continue,
                Ok(c) => {
                    last_rv = c.rv;
                    match filter.event(&c) {
                        Some(ev) => tx.send(line(&ev)).await,
                        None => continue,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let e = ApiError::gone(format!("watch fell behind; too old resource version: {last_rv}"));
                    let _ = tx.send(error_event(&e)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tx.closed() => return,
        };
        if sent.is_err() {
            return;
        }
    }
}
