//! The emulator's object store: objects, the global resourceVersion counter, the bounded change
//! history that watches replay from, and the write semantics (create, update, patch, apply,
//! delete, finalizers, garbage collection).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::fields::{self, Scope};
use super::registry::{Registry, ResourceType, StorageKey};
use super::schema;
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

const FOREGROUND: &str = "foregroundDeletion";

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

    /// Checks body's apiVersion/kind against the endpoint and fills them in.
    fn check_type(rt: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
        let Some(map) = body.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        };
        if let Some(kind) = map.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if let Some(av) = map.get("apiVersion").and_then(Value::as_str) {
            let (group, _) = super::registry::split_api_version(av);
            if group != rt.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version()
                )));
            }
        }
        map.insert("apiVersion".into(), json!(rt.api_version()));
        map.insert("kind".into(), json!(rt.kind));
        if !map.get("metadata").is_some_and(Value::is_object) {
            map.insert("metadata".into(), json!({}));
        }
        Ok(())
    }

    /// POST: creates an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        Self::check_type(rt, &mut body)?;
        self.insert_new(rt, ns, body, ctx, true)
    }

    fn insert_new(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
        track: bool,
    ) -> Result<Value, ApiError> {
        let meta = meta_mut(&mut obj);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid_field(
                        rt,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required".into(),
                    ));
                }
            }
        }
        if let Some(detail) = invalid_name(&name) {
            return Err(ApiError::invalid_field(
                rt,
                &name,
                "metadata.name",
                "FieldValueInvalid",
                detail,
            ));
        }
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if track {
            meta.remove("managedFields");
        }
        let ns_key = if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let key = rt.storage_key();
        if self.lookup(&key, &ns_key, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.validate(rt, &name, &mut obj, None)?;
        let now = self.now();
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        if tracks_generation(rt) {
            meta.insert("generation".into(), json!(1));
        }
        if track {
            fields::track_update(None, &mut obj, rt, scope_of(rt, false), &ctx.manager, &now);
        }
        if is_crd(rt) {
            set_crd_status(&mut obj);
        }
        if ctx.dry_run {
            return Ok(output(rt, &obj));
        }
        let rv = self.bump();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        if is_crd(rt) {
            self.registry
                .register_crd(&obj)
                .map_err(|e| ApiError::invalid_field(rt, &name, "spec", "FieldValueInvalid", e))?;
        }
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns_key, name), obj.clone());
        self.record(&key, ChangeKind::Added, obj.clone(), None);
        self.collect_garbage();
        Ok(output(rt, &obj))
    }

    /// Schema validation (custom resources: structural schema, then CEL rules) and CRD
    /// well-formedness. `old` is the stored object for updates (CEL transition rules).
    fn validate(
        &self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if let Some(schema) = &rt.schema {
            let errors = schema::process(obj, schema);
            if !errors.is_empty() {
                return Err(ApiError::invalid(rt, name, &errors));
            }
            let errors = schema::cel(obj, schema, old);
            if !errors.is_empty() {
                return Err(ApiError::invalid(rt, name, &errors));
            }
        }
        if is_crd(rt) {
            let mut scratch = Registry::default();
            scratch
                .register_crd(obj)
                .map_err(|e| ApiError::invalid(rt, name, &[crd_error(&e)]))?;
        }
        Ok(())
    }

    fn current(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lookup(&rt.storage_key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// PUT (main resource or `/status`).
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut body: Value,
        status: bool,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        Self::check_type(rt, &mut body)?;
        let current = self.current(rt, ns, name)?;
        let body_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        check_rv_precondition(rt, name, &current, &body)?;
        let new = merge_for_write(&current, body, rt, status);
        self.commit_update(rt, ns, name, current, new, status, ctx, true)
    }

    /// PATCH with a JSON merge patch, a strategic merge patch (treated as a merge patch) or a
    /// JSON patch.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
        status: bool,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let current = self.current(rt, ns, name)?;
        let mut doc = current.clone();
        match content_type {
            "application/merge-patch+json" => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("patch body must be a JSON object"));
                }
                json_patch::merge(&mut doc, &p);
            }
            "application/strategic-merge-patch+json" => {
                if rt.crd_name.is_some() {
                    return Err(ApiError::unsupported_media_type(
                        "strategic merge patch is not supported for custom resources",
                    ));
                }
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("patch body must be a JSON object"));
                }
                fields::strategic_merge(&mut doc, &p, rt, &mut Vec::new());
            }
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                for op in p.0 {
                    // As the API server's JSON patch library does, `test` of a null value
                    // succeeds on a missing path (kube's finalizer helper relies on it).
                    if let json_patch::PatchOperation::Test(t) = &op
                        && t.value.is_null()
                        && doc.pointer(t.path.as_str()).is_none()
                    {
                        continue;
                    }
                    json_patch::patch(&mut doc, &[op]).map_err(|e| {
                        ApiError::invalid_field(
                            rt,
                            name,
                            "",
                            "FieldValueInvalid",
                            format!("Invalid value: {e}"),
                        )
                    })?;
                }
            }
            other => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                )));
            }
        }
        Self::check_type(rt, &mut doc)?;
        if doc.pointer("/metadata/name") != current.pointer("/metadata/name") {
            return Err(ApiError::bad_request(
                "metadata.name cannot be changed by a patch",
            ));
        }
        check_rv_precondition(rt, name, &current, &doc)?;
        let new = merge_for_write(&current, doc, rt, status);
        self.commit_update(rt, ns, name, current, new, status, ctx, true)
    }

    /// PATCH with `application/apply-patch+yaml` (server-side apply); creates the object if it
    /// does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        status: bool,
        force: bool,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let mut applied: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        };
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        let has = |k: &str| {
            applied
                .get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !has("apiVersion") || !has("kind") {
            return Err(ApiError::bad_request(format!(
                "invalid object type: {}, Kind={}",
                applied.get("apiVersion").and_then(Value::as_str).unwrap_or("/"),
                applied.get("kind").and_then(Value::as_str).unwrap_or_default()
            )));
        }
        Self::check_type(rt, &mut applied)?;
        match applied.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        let scope = scope_of(rt, status);
        // Keep only what this endpoint may write; server-owned metadata is never applied.
        if let Some(m) = applied.as_object_mut() {
            match scope {
                Scope::NoStatus => {
                    m.remove("status");
                }
                Scope::StatusOnly => {
                    m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
                }
                Scope::All => {}
            }
        }
        let rv_precondition = applied.pointer("/metadata/resourceVersion").cloned();
        if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(f);
            }
            if scope == Scope::StatusOnly {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        }
        let now = self.now();
        let ns_key = if rt.namespaced { ns } else { "" };
        let Some(current) = self.lookup(&rt.storage_key(), ns_key, name).cloned() else {
            if status {
                return Err(ApiError::not_found(rt, name));
            }
            let plan = fields::apply(None, &applied, rt, scope, &ctx.manager, force, &now);
            let mut obj = plan.object;
            meta_mut(&mut obj).insert("name".into(), json!(name));
            return self.insert_new(rt, ns, obj, ctx, false);
        };
        if let Some(rv) = rv_precondition
            && current.pointer("/metadata/resourceVersion") != Some(&rv)
        {
            return Err(ApiError::stale(rt, name));
        }
        let plan = fields::apply(Some(&current), &applied, rt, scope, &ctx.manager, force, &now);
        if !plan.conflicts.is_empty() {
            return Err(ApiError::apply_conflicts(rt, name, &plan.conflicts));
        }
        let managed = plan.object.pointer("/metadata/managedFields").cloned();
        let mut new = merge_for_write(&current, plan.object, rt, status);
        // Ownership comes from the apply plan, not from the stored object.
        let meta = meta_mut(&mut new);
        match managed {
            Some(m) => meta.insert("managedFields".into(), m),
            None => meta.remove("managedFields"),
        };
        self.commit_update(rt, ns, name, current, new, status, ctx, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
        status: bool,
        ctx: &WriteCtx,
        track: bool,
    ) -> Result<Value, ApiError> {
        let being_deleted = old.pointer("/metadata/deletionTimestamp").is_some();
        if being_deleted {
            let old_f = finalizers(&old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid_field(
                    rt,
                    name,
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added
                            .iter()
                            .map(|f| format!("\"{f}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        self.validate(rt, name, &mut new, Some(&old))?;
        // Generation tracks the spec: it changes when anything but metadata (and status, where
        // status is a subresource) changes.
        if tracks_generation(rt) && changed_outside_metadata(&old, &new, rt.status_subresource) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        let now = self.now();
        if track {
            fields::track_update(Some(&old), &mut new, rt, scope_of(rt, status), &ctx.manager, &now);
        }
        if is_crd(rt) {
            set_crd_status(&mut new);
        }
        if same_ignoring_bookkeeping(&old, &new) {
            return Ok(output(rt, &old));
        }
        if ctx.dry_run {
            return Ok(output(rt, &new));
        }
        let key = rt.storage_key();
        let ns_key = if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        if being_deleted && finalizers(&new).is_empty() {
            self.remove(&key, &ns_key, name, new.clone(), Some(old));
            self.collect_garbage();
            return Ok(output(rt, &new));
        }
        let rv = self.bump();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        if is_crd(rt) {
            self.registry
                .register_crd(&new)
                .map_err(|e| ApiError::invalid(rt, name, &[crd_error(&e)]))?;
        }
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns_key, name.to_string()), new.clone());
        self.record(&key, ChangeKind::Modified, new.clone(), Some(old));
        self.collect_garbage();
        Ok(output(rt, &new))
    }

    /// Removes an object now: DELETED event, CRD unregistration.
    fn remove(&mut self, key: &StorageKey, ns: &str, name: &str, mut last: Value, old: Option<Value>) {
        let Some(objects) = self.objects.get_mut(key) else {
            return;
        };
        if objects.remove(&(ns.to_string(), name.to_string())).is_none() {
            return;
        }
        let rv = self.bump();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(key, ChangeKind::Deleted, last.clone(), old);
        if key.group.is_empty() && key.plural == "namespaces" {
            // Deleting a Namespace deletes everything in it (at once: there is no Terminating
            // phase and no namespace controller).
            let keys: Vec<StorageKey> = self.objects.keys().cloned().collect();
            for k in keys {
                let names: Vec<String> = self
                    .objects
                    .get(&k)
                    .map(|m| {
                        m.keys()
                            .filter(|(o_ns, _)| o_ns == name)
                            .map(|(_, n)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for n in names {
                    if let Some(obj) = self.lookup(&k, name, &n).cloned() {
                        self.remove(&k, name, &n, obj, None);
                    }
                }
            }
        }
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            // Deleting a CRD deletes all its custom resources.
            if let (Some(group), Some(plural)) = (
                last.pointer("/spec/group").and_then(Value::as_str),
                last.pointer("/spec/names/plural").and_then(Value::as_str),
            ) {
                let cr_key = StorageKey {
                    group: group.to_string(),
                    plural: plural.to_string(),
                };
                let crs: Vec<(ObjKey, Value)> = self
                    .objects
                    .remove(&cr_key)
                    .map(|m| m.into_iter().collect())
                    .unwrap_or_default();
                for (_, mut cr) in crs {
                    let rv = self.bump();
                    meta_mut(&mut cr).insert("resourceVersion".into(), json!(rv.to_string()));
                    self.record(&cr_key, ChangeKind::Deleted, cr, None);
                }
            }
            self.registry.unregister_crd(name);
        }
    }

    /// DELETE one object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deleted, ApiError> {
        let ns_key = if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let key = rt.storage_key();
        let current = self.current(rt, &ns_key, name)?;
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(want) = &opts.uid
            && *want != uid
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
            ));
        }
        let rv = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(want) = &opts.resource_version
            && *want != rv
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        if opts.dry_run {
            return Ok(Deleted::Gone(output(rt, &current)));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deleted::Pending(output(rt, &current)));
        }
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        match policy {
            "Orphan" => self.orphan_dependents(&uid),
            "Background" | "Foreground" => {}
            other => {
                return Err(ApiError::invalid_field(
                    rt,
                    name,
                    "propagationPolicy",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                ));
            }
        }
        let mut fin = finalizers(&current);
        if policy == "Foreground" && !fin.iter().any(|f| f == FOREGROUND) {
            fin.push(FOREGROUND.to_string());
        }
        if fin.is_empty() {
            self.remove(&key, &ns_key, name, current.clone(), None);
            self.collect_garbage();
            return Ok(Deleted::Gone(output(rt, &current)));
        }
        let mut new = current.clone();
        let now = self.now();
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let meta = meta_mut(&mut new);
        meta.insert("finalizers".into(), json!(fin));
        meta.insert("deletionTimestamp".into(), json!(now));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if tracks_generation(rt) {
            meta.insert("generation".into(), json!(generation + 1));
        }
        let rv = self.bump();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns_key.clone(), name.to_string()), new.clone());
        self.record(&key, ChangeKind::Modified, new.clone(), Some(current));
        self.collect_garbage();
        // Garbage collection may already have completed a foreground deletion.
        let latest = self.lookup(&key, &ns_key, name).cloned().unwrap_or(new);
        Ok(Deleted::Pending(output(rt, &latest)))
    }

    /// Removes owner references to `owner_uid` from every dependent.
    fn orphan_dependents(&mut self, owner_uid: &str) {
        let mut edits = Vec::new();
        for (key, objs) in &self.objects {
            for ((ns, name), obj) in objs {
                if owner_uids(obj).iter().any(|u| u == owner_uid) {
                    edits.push((key.clone(), ns.clone(), name.clone(), obj.clone()));
                }
            }
        }
        for (key, ns, name, old) in edits {
            let mut new = old.clone();
            retain_owner_refs(&mut new, |u| u != owner_uid);
            self.store_modified(&key, &ns, &name, old, new);
        }
    }

    fn store_modified(&mut self, key: &StorageKey, ns: &str, name: &str, old: Value, mut new: Value) {
        let rv = self.bump();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), new.clone());
        self.record(key, ChangeKind::Modified, new, Some(old));
    }

    /// The garbage collector, run synchronously to a fixpoint after every write: dependents
    /// whose owners are all gone are deleted (background), dangling owner references next to
    /// live owners are removed, dependents of an owner in foreground deletion are deleted, and
    /// the owner's `foregroundDeletion` finalizer is removed once no dependent with
    /// `blockOwnerDeletion: true` remains.
    fn collect_garbage(&mut self) {
        for _ in 0..1000 {
            let mut live: BTreeMap<String, bool> = BTreeMap::new(); // uid -> in foreground deletion
            for objs in self.objects.values() {
                for obj in objs.values() {
                    if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
                        let fg = obj.pointer("/metadata/deletionTimestamp").is_some()
                            && finalizers(obj).iter().any(|f| f == FOREGROUND);
                        live.insert(uid.to_string(), fg);
                    }
                }
            }
            let mut action = None;
            'scan: for (key, objs) in &self.objects {
                for ((ns, name), obj) in objs {
                    let owners = owner_uids(obj);
                    if owners.is_empty() {
                        if obj.pointer("/metadata/deletionTimestamp").is_some()
                            && finalizers(obj).iter().any(|f| f == FOREGROUND)
                        {
                            let uid = obj
                                .pointer("/metadata/uid")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            if !self.has_blocking_dependents(uid) {
                                action = Some(Gc::DropForeground(key.clone(), ns.clone(), name.clone()));
                                break 'scan;
                            }
                        }
                        continue;
                    }
                    let alive: Vec<&String> = owners.iter().filter(|u| live.contains_key(*u)).collect();
                    let solid = alive.iter().any(|u| live.get(*u) == Some(&false));
                    let being_deleted = obj.pointer("/metadata/deletionTimestamp").is_some();
                    if !solid && !being_deleted {
                        action = Some(Gc::Delete(key.clone(), ns.clone(), name.clone()));
                        break 'scan;
                    }
                    if solid && alive.len() < owners.len() {
                        action = Some(Gc::DropDangling(key.clone(), ns.clone(), name.clone()));
                        break 'scan;
                    }
                    if being_deleted && finalizers(obj).iter().any(|f| f == FOREGROUND) {
                        let uid = obj
                            .pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !self.has_blocking_dependents(uid) {
                            action = Some(Gc::DropForeground(key.clone(), ns.clone(), name.clone()));
                            break 'scan;
                        }
                    }
                }
            }
            let Some(action) = action else { return };
            match action {
                Gc::Delete(key, ns, name) => {
                    let Some(rt) = self.registry.any_version(&key) else {
                        // Type no longer served: drop silently.
                        if let Some(m) = self.objects.get_mut(&key) {
                            m.remove(&(ns, name));
                        }
                        continue;
                    };
                    // Dependents are deleted with the default (background) propagation, also
                    // when their owner is in foreground deletion.
                    let opts = DeleteOpts::default();
                    if self.delete(&rt, &ns, &name, &opts).is_err() {
                        return;
                    }
                }
                Gc::DropDangling(key, ns, name) => {
                    let Some(old) = self.lookup(&key, &ns, &name).cloned() else {
                        continue;
                    };
                    let mut new = old.clone();
                    let live_uids: BTreeSet<String> = live.keys().cloned().collect();
                    retain_owner_refs(&mut new, |u| live_uids.contains(u));
                    self.store_modified(&key, &ns, &name, old, new);
                }
                Gc::DropForeground(key, ns, name) => {
                    let Some(old) = self.lookup(&key, &ns, &name).cloned() else {
                        continue;
                    };
                    let mut new = old.clone();
                    let remaining: Vec<String> =
                        finalizers(&old).into_iter().filter(|f| f != FOREGROUND).collect();
                    if remaining.is_empty() {
                        self.remove(&key, &ns, &name, new, Some(old));
                    } else {
                        meta_mut(&mut new).insert("finalizers".into(), json!(remaining));
                        self.store_modified(&key, &ns, &name, old, new);
                    }
                }
            }
        }
        tracing::warn!("garbage collector did not reach a fixpoint in 1000 steps");
    }

    fn has_blocking_dependents(&self, uid: &str) -> bool {
        self.objects.values().flat_map(|m| m.values()).any(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(uid)
                            && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                    })
                })
        })
    }

    /// The stored object with this uid, if any (for tests and seeding).
    pub fn all_objects(&self) -> impl Iterator<Item = (&StorageKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| m.values().map(move |v| (k, v)))
    }
}

enum Gc {
    Delete(StorageKey, String, String),
    DropDangling(StorageKey, String, String),
    DropForeground(StorageKey, String, String),
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

/// Whether the kind has `metadata.generation`: custom resources, CRDs, Deployments and Pods
/// (Pods populate it from 1.33, KEP-5067; UNVERIFIED whether ungated); ConfigMaps, Secrets, Services, PVCs, Events,
/// Leases, Namespaces and ServiceAccounts have none.
fn tracks_generation(rt: &ResourceType) -> bool {
    rt.crd_name.is_some()
        || matches!(
            (rt.group.as_str(), rt.plural.as_str()),
            ("apiextensions.k8s.io", "customresourcedefinitions") | ("apps", "deployments") | ("", "pods")
        )
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

fn crd_error(message: &str) -> schema::FieldError {
    let (field, detail) = message.split_once(": ").unwrap_or(("spec", message));
    schema::FieldError {
        field: field.to_string(),
        reason: "FieldValueInvalid",
        detail: detail.to_string(),
    }
}

/// What the CRD controllers set once names are accepted: `Established` and `NamesAccepted`
/// conditions, `acceptedNames` and `storedVersions`.
fn set_crd_status(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let created = crd
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(Value::Null);
    let condition = |ty: &str, reason: &str, message: &str| json!({"type": ty, "status": "True", "lastTransitionTime": created, "reason": reason, "message": message});
    if let Some(m) = crd.as_object_mut() {
        m.insert(
            "status".into(),
            json!({
                "acceptedNames": names,
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "storedVersions": storage,
            }),
        );
    }
}

fn scope_of(rt: &ResourceType, status: bool) -> Scope {
    if status {
        Scope::StatusOnly
    } else if rt.status_subresource {
        Scope::NoStatus
    } else {
        Scope::All
    }
}

/// Builds the object to store from the current one and what the client sent: server-owned
/// metadata is kept; with a status subresource, the main resource keeps the stored status and
/// `/status` changes only the status.
fn merge_for_write(current: &Value, incoming: Value, rt: &ResourceType, status: bool) -> Value {
    if status {
        let mut new = current.clone();
        if let Some(m) = new.as_object_mut() {
            match incoming.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        return new;
    }
    let mut new = incoming;
    let cur_meta = current
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = meta_mut(&mut new);
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        match cur_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    if rt.status_subresource
        && let Some(m) = new.as_object_mut()
    {
        match current.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    new
}

fn check_rv_precondition(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    body: &Value,
) -> Result<(), ApiError> {
    match body.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        Some(rv)
            if !rv.is_empty()
                && Some(rv)
                    != current
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str) =>
        {
            Err(ApiError::stale(rt, name))
        }
        _ => Ok(()),
    }
}

fn changed_outside_metadata(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_subresource {
            m.remove("status");
        }
        m
    };
    strip(old) != strip(new)
}

fn same_ignoring_bookkeeping(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            // Ownership changes count, their timestamps do not.
            if let Some(entries) = meta.get_mut("managedFields").and_then(Value::as_array_mut) {
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
            meta.remove("resourceVersion");
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
        }
        v
    };
    strip(old) == strip(new)
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

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn retain_owner_refs(obj: &mut Value, keep: impl Fn(&str) -> bool) {
    let meta = meta_mut(obj);
    let refs: Vec<Value> = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|r| r.get("uid").and_then(Value::as_str).is_some_and(&keep))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if refs.is_empty() {
        meta.remove("ownerReferences");
    } else {
        meta.insert("ownerReferences".into(), Value::Array(refs));
    }
}

/// `None` if `name` is a valid DNS-1123 subdomain, else the API server's message.
fn invalid_name(name: &str) -> Option<String> {
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        None
    } else {
        Some(format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ))
    }
}

/// Five characters from the alphabet the API server uses for generateName suffixes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

/// A random (version 4) UUID.
fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
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

    #[test]
    fn names() {
        assert!(invalid_name("ok-name.x").is_none());
        assert!(invalid_name("Bad").is_some());
        assert!(invalid_name("-x").is_some());
    }
}
