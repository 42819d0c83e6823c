//! DELETE: preconditions, propagation policies, finalizers and `deletionTimestamp`, and the
//! removal of an object (with what goes with it: a Namespace's contents, a CRD's objects).

use serde_json::{Value, json};

use super::gc::{finalizers, owner_uids, retain_owner_refs};
use super::write::tracks_generation;
use super::{ChangeKind, DeleteOpts, Deleted, FOREGROUND, ObjKey, State, meta_mut, ns_key, output};
use crate::emulator::registry::{ResourceType, StorageKey};
use crate::emulator::status::ApiError;

impl State {
    /// DELETE one object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deleted, ApiError> {
        let ns_key = ns_key(rt, ns);
        let key = rt.storage_key();
        let current = self.current(rt, &ns_key, name)?;
        let uid = check_preconditions(rt, name, &current, opts)?;
        if opts.dry_run {
            return Ok(Deleted::Gone(output(rt, &current)));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deleted::Pending(output(rt, &current)));
        }
        let policy = propagation_policy(rt, name, opts)?;
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
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
        let deleting = self.deleting(rt, &current, fin);
        let new = self.store_modified(&key, &ns_key, name, current, deleting);
        self.collect_garbage();
        // Garbage collection may already have completed a foreground deletion.
        let latest = self.lookup(&key, &ns_key, name).cloned().unwrap_or(new);
        Ok(Deleted::Pending(output(rt, &latest)))
    }

    /// `current` marked for deletion, waiting for `finalizers`.
    fn deleting(&self, rt: &ResourceType, current: &Value, finalizers: Vec<String>) -> Value {
        let mut new = current.clone();
        let now = self.now();
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let meta = meta_mut(&mut new);
        meta.insert("finalizers".into(), json!(finalizers));
        meta.insert("deletionTimestamp".into(), json!(now));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if tracks_generation(rt) {
            meta.insert("generation".into(), json!(generation + 1));
        }
        new
    }

    /// Removes an object now: DELETED event, CRD unregistration.
    pub(super) fn remove(
        &mut self,
        key: &StorageKey,
        ns: &str,
        name: &str,
        mut last: Value,
        old: Option<Value>,
    ) {
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

    /// Stores `new` in place of `old` with the next resourceVersion, and returns it as stored.
    pub(super) fn store_modified(
        &mut self,
        key: &StorageKey,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
    ) -> Value {
        let rv = self.bump();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), new.clone());
        self.record(key, ChangeKind::Modified, new.clone(), Some(old));
        new
    }
}

/// Checks the uid and resourceVersion preconditions of a delete; returns the object's uid.
fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    opts: &DeleteOpts,
) -> Result<String, ApiError> {
    let meta = |field: &str| {
        current
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let uid = meta("uid");
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::conflict(
            rt,
            name,
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    let rv = meta("resourceVersion");
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
    Ok(uid)
}

/// The propagation policy of a delete (default `Background`).
fn propagation_policy<'a>(rt: &ResourceType, name: &str, opts: &'a DeleteOpts) -> Result<&'a str, ApiError> {
    match opts.propagation.as_deref().unwrap_or("Background") {
        policy @ ("Orphan" | "Background" | "Foreground") => Ok(policy),
        other => Err(ApiError::invalid_field(
            rt,
            name,
            "propagationPolicy",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )),
    }
}
