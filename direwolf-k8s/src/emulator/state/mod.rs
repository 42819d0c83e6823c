//! The emulator's object store: objects, the global resourceVersion counter, the bounded change
//! history that watches replay from, and reads. The write semantics live beside it:
//! `write.rs` (create, replace, validation and bookkeeping), `patch.rs` (patch and server-side
//! apply), `delete.rs` (delete, finalizers, removal) and `gc.rs` (garbage collection).

mod delete;
mod gc;
mod patch;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::registry::{Registry, ResourceType, StorageKey};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including deletionTimestamp being set).
    Modified,
    /// Removed from the store.
    Deleted,
}

/// One change, as recorded in the history and broadcast to watches.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub key: StorageKey,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for deletions: the last state, with the deletion's rv).
    pub object: Value,
    /// The object before the change (for label-selector transitions of watches).
    pub old: Option<Value>,
}

/// Per-request write options.
#[derive(Clone, Debug)]
pub(crate) struct WriteCtx {
    /// Field manager recorded in managedFields.
    pub manager: String,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

/// Deletion options (body `DeleteOptions` and query parameters).
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Outcome of a delete request.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// Removed now; the last state.
    Gone(Value),
    /// Finalizers pending: the object with its deletionTimestamp.
    Pending(Value),
}

type ObjKey = (String, String);

/// Changes to replay plus a receiver for later ones.
pub(crate) type Subscription = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// All state of one emulator.
#[derive(Debug)]
pub(crate) struct State {
    /// Served resource types.
    pub registry: Registry,
    objects: BTreeMap<StorageKey, BTreeMap<ObjKey, Value>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Changes with rv <= floor are no longer retained.
    floor: u64,
    /// Maximum number of retained changes.
    pub history_limit: usize,
    tx: broadcast::Sender<Arc<Change>>,
    /// Added to the wall clock for server-set timestamps.
    pub clock_offset: Duration,
}

/// The finalizer of an object in foreground deletion.
const FOREGROUND: &str = "foregroundDeletion";

/// The key of an object of `rt` in namespace `ns` (none for cluster-scoped kinds).
fn ns_key(rt: &ResourceType, ns: &str) -> String {
    if rt.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

impl State {
    /// An empty store serving the built-in kinds.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            floor: 1,
            history_limit,
            tx,
            clock_offset: Duration::ZERO,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// Server time as an RFC 3339 timestamp with second precision.
    pub fn now(&self) -> String {
        let t = SystemTime::now() + self.clock_offset;
        rfc3339(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        )
    }

    /// Forgets all retained history (like an etcd compaction): watches from any earlier
    /// resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    fn record(&mut self, key: &StorageKey, kind: ChangeKind, object: Value, old: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.rv,
            key: key.clone(),
            kind,
            object,
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(change);
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Changes of `key` after `from` plus a receiver for later ones, taken atomically; 410 if
    /// `from` is older than the retained history.
    pub fn subscribe(&self, key: &StorageKey, from: u64) -> Result<Subscription, ApiError> {
        if from < self.floor {
            return Err(ApiError::gone(format!(
                "too old resource version: {from} ({})",
                self.floor + 1
            )));
        }
        let replay = self
            .history
            .iter()
            .filter(|c| c.rv > from && c.key == *key)
            .cloned()
            .collect();
        Ok((replay, self.tx.subscribe()))
    }

    /// Every stored object of a resource in `ns` (all namespaces if `None`), sorted by
    /// namespace and name.
    pub fn snapshot(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&rt.storage_key())
            .map(|m| {
                m.iter()
                    .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
                    .map(|(_, v)| output(rt, v))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lookup(&self, key: &StorageKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(key)?.get(&(ns.to_string(), name.to_string()))
    }

    /// GET one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lookup(&rt.storage_key(), ns, name)
            .map(|o| output(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// LIST with selectors and optional pagination.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields_sel: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let start = match continue_token {
            Some(t) if !t.is_empty() => Some(decode_continue(t).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: illegal base64 data at input byte 0")
            })?),
            _ => None,
        };
        let mut matching: Vec<(ObjKey, Value)> = self
            .objects
            .get(&rt.storage_key())
            .map(|m| {
                m.iter()
                    .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
                    .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
                    .filter(|(_, v)| labels.matches(v) && fields_sel.matches(v))
                    .map(|(k, v)| (k.clone(), output(rt, v)))
                    .collect()
            })
            .unwrap_or_default();
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if let Some(limit) = limit.filter(|l| *l > 0)
            && matching.len() > limit
        {
            let remaining = matching.len() - limit;
            matching.truncate(limit);
            if let Some((last, _)) = matching.last() {
                metadata["continue"] = json!(encode_continue(last));
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": matching.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        }))
    }

    /// Every stored object with its resource (for tests and seeding).
    pub fn all_objects(&self) -> impl Iterator<Item = (&StorageKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| m.values().map(move |v| (k, v)))
    }
}

/// The object as served by `rt`'s version.
pub(crate) fn output(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    o
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("just made an object");
    if !map.get("metadata").is_some_and(Value::is_object) {
        map.insert("metadata".into(), json!({}));
    }
    map.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("just made metadata an object")
}

fn encode_continue(key: &ObjKey) -> String {
    format!("{}/{}", key.0, key.1)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<ObjKey> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let (ns, name) = s.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let k = ("ns".to_string(), "a.b".to_string());
        assert_eq!(decode_continue(&encode_continue(&k)), Some(k));
        assert_eq!(decode_continue("zz"), None);
    }
}
