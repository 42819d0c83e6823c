//! Writes that create or replace an object: POST and PUT, the validation every write passes, and
//! the bookkeeping of a stored write (uid, generation, managedFields, CRD status).

use serde_json::{Value, json};

use super::gc::finalizers;
use super::{ChangeKind, State, WriteCtx, meta_mut, ns_key, output};
use crate::emulator::fields::{self, Scope};
use crate::emulator::registry::{Registry, ResourceType};
use crate::emulator::schema::{self, FieldError};
use crate::emulator::status::ApiError;

/// Metadata only the server sets: dropped from what a client creates or applies.
pub(super) const SERVER_OWNED: [&str; 7] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

impl State {
    /// Checks body's apiVersion/kind against the endpoint and fills them in.
    pub(super) fn check_type(rt: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
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
            let (group, _) = crate::emulator::registry::split_api_version(av);
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

    /// Stores a new object (a create, or an apply that creates). `track`: record managedFields
    /// as an update by `ctx.manager` (an apply has recorded them already).
    pub(super) fn insert_new(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
        track: bool,
    ) -> Result<Value, ApiError> {
        let name = settle_new_name(rt, ns, &mut obj, track)?;
        let ns_key = ns_key(rt, ns);
        let key = rt.storage_key();
        if self.lookup(&key, &ns_key, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        // The name is validated with the rest of the object (found on the real control plane,
        // issue 11: a bad name and a failing CEL rule are reported together).
        let name_errors = invalid_name(&name)
            .map(|detail| FieldError::new("metadata.name", "FieldValueInvalid", detail))
            .into_iter()
            .collect();
        self.validate(rt, &name, &mut obj, None, name_errors)?;
        self.stamp_new(rt, &mut obj, ctx, track);
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

    /// What the server sets on a new object: uid, creationTimestamp, generation, managedFields
    /// (if `track`) and, for a CRD, its status.
    fn stamp_new(&self, rt: &ResourceType, obj: &mut Value, ctx: &WriteCtx, track: bool) {
        let now = self.now();
        let meta = meta_mut(obj);
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        if tracks_generation(rt) {
            meta.insert("generation".into(), json!(1));
        }
        if track {
            fields::track_update(None, obj, rt, scope_of(rt, false), &ctx.manager, &now);
        }
        if is_crd(rt) {
            set_crd_status(obj);
        }
    }

    /// Validation as the API server's custom-resource strategy does it: metadata (`errors`
    /// holds the name's), the structural schema, then the CEL rules unless an earlier error
    /// blocks them; every error in one answer. Then CRD well-formedness. `old` is the stored
    /// object for updates (CEL transition rules).
    fn validate(
        &self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
        mut errors: Vec<FieldError>,
    ) -> Result<(), ApiError> {
        if rt.group.is_empty() && rt.kind == "Secret" {
            fold_string_data(obj);
        }
        if let Some(detail) = annotations_too_long(obj) {
            errors.push(FieldError::new(
                "metadata.annotations",
                "FieldValueTooLong",
                detail,
            ));
        }
        if let Some(schema) = &rt.schema {
            errors.extend(schema::process(obj, schema));
            let rules = schema::cel_unless_blocked(obj, schema, old, &errors);
            errors.extend(rules);
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(rt, name, &errors));
        }
        if is_crd(rt) {
            let mut scratch = Registry::default();
            scratch
                .register_crd(obj)
                .map_err(|e| ApiError::invalid(rt, name, &[crd_error(&e)]))?;
        }
        Ok(())
    }

    pub(super) fn current(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
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

    /// Stores `new` in place of `old` (after a replace, patch or apply): validation, generation,
    /// managedFields (if `track`), no-op detection, and removal once a deleted object's last
    /// finalizer is gone.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_update(
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
            forbid_new_finalizers(rt, name, &old, &new)?;
        }
        self.validate(rt, name, &mut new, Some(&old), Vec::new())?;
        self.stamp_update(rt, &old, &mut new, scope_of(rt, status), ctx, track);
        if same_ignoring_bookkeeping(&old, &new) {
            return Ok(output(rt, &old));
        }
        if ctx.dry_run {
            return Ok(output(rt, &new));
        }
        let key = rt.storage_key();
        let ns_key = ns_key(rt, ns);
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

    /// What the server updates on a changed object: the generation (which tracks the spec: it
    /// changes when anything but metadata, and status where status is a subresource, changes),
    /// managedFields (if `track`) and, for a CRD, its status.
    fn stamp_update(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: &mut Value,
        scope: Scope,
        ctx: &WriteCtx,
        track: bool,
    ) {
        if tracks_generation(rt) && changed_outside_metadata(old, new, rt.status_subresource) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(new).insert("generation".into(), json!(generation + 1));
        }
        let now = self.now();
        if track {
            fields::track_update(Some(old), new, rt, scope, &ctx.manager, &now);
        }
        if is_crd(rt) {
            set_crd_status(new);
        }
    }
}

/// Settles the namespace and the name (from `generateName` if need be) of a new object and
/// drops the metadata only the server sets; returns the name.
fn settle_new_name(rt: &ResourceType, ns: &str, obj: &mut Value, track: bool) -> Result<String, ApiError> {
    let meta = meta_mut(obj);
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
    for f in SERVER_OWNED {
        meta.remove(f);
    }
    if track {
        meta.remove("managedFields");
    }
    Ok(name)
}

/// An object being deleted may lose finalizers, never gain one.
fn forbid_new_finalizers(rt: &ResourceType, name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    let old_f = finalizers(old);
    let added: Vec<String> = finalizers(new)
        .into_iter()
        .filter(|f| !old_f.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_field(
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
    ))
}

/// Whether the kind has `metadata.generation`: custom resources, CRDs, Deployments and Pods
/// (Pods populate it from 1.33, KEP-5067; UNVERIFIED whether ungated); ConfigMaps, Secrets, Services, PVCs, Events,
/// Leases, Namespaces and ServiceAccounts have none.
pub(super) fn tracks_generation(rt: &ResourceType) -> bool {
    rt.crd_name.is_some()
        || matches!(
            (rt.group.as_str(), rt.plural.as_str()),
            ("apiextensions.k8s.io", "customresourcedefinitions") | ("apps", "deployments") | ("", "pods")
        )
}

pub(super) fn is_crd(rt: &ResourceType) -> bool {
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

pub(super) fn scope_of(rt: &ResourceType, status: bool) -> Scope {
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
pub(super) fn merge_for_write(current: &Value, incoming: Value, rt: &ResourceType, status: bool) -> Value {
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

pub(super) fn check_rv_precondition(
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

/// The API server's limit on the annotations of one object, keys and values added up (found on
/// the real control plane, issue 11: `kubectl apply` of the App CRD stores the whole CRD in the
/// last-applied annotation, which is then refused; the emulator used to accept it).
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// `None` if the annotations of `obj` fit the API server's limit, else its message.
fn annotations_too_long(obj: &Value) -> Option<String> {
    let annotations = obj.pointer("/metadata/annotations")?.as_object()?;
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    (size > ANNOTATIONS_LIMIT).then(|| format!("Too long: may not be more than {ANNOTATIONS_LIMIT} bytes"))
}

/// Five characters from the alphabet the API server uses for generateName suffixes.
/// A Secret's write-only `stringData` merged into `data` (base64), as the API server does;
/// `stringData` wins over `data` for the same key and is never stored.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (key, value) in strings {
        if let (Some(text), Some(data)) = (value.as_str(), data.as_object_mut()) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, Value::String(encoded));
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(invalid_name("ok-name.x").is_none());
        assert!(invalid_name("Bad").is_some());
        assert!(invalid_name("-x").is_some());
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut secret = json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "z", "c": "w"}});
        fold_string_data(&mut secret);
        assert_eq!(secret, json!({"data": {"a": "eA==", "b": "eg==", "c": "dw=="}}));
    }

    #[test]
    fn annotations_over_256_kib_are_refused() {
        let with = |len: usize| json!({"metadata": {"annotations": {"a": "x".repeat(len)}}});
        assert_eq!(annotations_too_long(&with(ANNOTATIONS_LIMIT - 1)), None);
        assert_eq!(
            annotations_too_long(&with(ANNOTATIONS_LIMIT)).as_deref(),
            Some("Too long: may not be more than 262144 bytes")
        );
        assert_eq!(annotations_too_long(&json!({"metadata": {}})), None);
    }
}
