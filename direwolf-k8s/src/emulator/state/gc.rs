//! The garbage collector: owner references, orphaning and foreground deletion.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{DeleteOpts, FOREGROUND, State, meta_mut};
use crate::emulator::registry::StorageKey;

/// One step of the garbage collector, on the object named by (resource, namespace, name).
enum Gc {
    /// Every owner is gone: delete the dependent.
    Delete(StorageKey, String, String),
    /// Some owners are gone, a live one remains: drop the references to the gone ones.
    DropDangling(StorageKey, String, String),
    /// No blocking dependent is left: drop the owner's `foregroundDeletion` finalizer.
    DropForeground(StorageKey, String, String),
}

impl State {
    /// The garbage collector, run synchronously to a fixpoint after every write: dependents
    /// whose owners are all gone are deleted (background), dangling owner references next to
    /// live owners are removed, dependents of an owner in foreground deletion are deleted, and
    /// the owner's `foregroundDeletion` finalizer is removed once no dependent with
    /// `blockOwnerDeletion: true` remains.
    pub(super) fn collect_garbage(&mut self) {
        for _ in 0..1000 {
            let live = self.live_uids();
            let Some(step) = self.next_gc_step(&live) else {
                return;
            };
            if !self.gc_step(step, &live) {
                return;
            }
        }
        tracing::warn!("garbage collector did not reach a fixpoint in 1000 steps");
    }

    /// The uid of every stored object, and whether it is in foreground deletion.
    fn live_uids(&self) -> BTreeMap<String, bool> {
        self.objects
            .values()
            .flat_map(|objs| objs.values())
            .filter_map(|obj| Some((uid_of(obj)?.to_string(), in_foreground_deletion(obj))))
            .collect()
    }

    /// The first step the collector has to take, if any.
    fn next_gc_step(&self, live: &BTreeMap<String, bool>) -> Option<Gc> {
        for (key, objs) in &self.objects {
            for ((ns, name), obj) in objs {
                let at = || (key.clone(), ns.clone(), name.clone());
                let owners = owner_uids(obj);
                let foreground_done = in_foreground_deletion(obj)
                    && !self.has_blocking_dependents(uid_of(obj).unwrap_or_default());
                if owners.is_empty() {
                    if foreground_done {
                        let (key, ns, name) = at();
                        return Some(Gc::DropForeground(key, ns, name));
                    }
                    continue;
                }
                let alive: Vec<&String> = owners.iter().filter(|u| live.contains_key(*u)).collect();
                let solid = alive.iter().any(|u| live.get(*u) == Some(&false));
                let being_deleted = obj.pointer("/metadata/deletionTimestamp").is_some();
                let (key, ns, name) = at();
                if !solid && !being_deleted {
                    return Some(Gc::Delete(key, ns, name));
                }
                if solid && alive.len() < owners.len() {
                    return Some(Gc::DropDangling(key, ns, name));
                }
                if foreground_done {
                    return Some(Gc::DropForeground(key, ns, name));
                }
            }
        }
        None
    }

    /// Takes one step; `false` when the collector must stop.
    fn gc_step(&mut self, step: Gc, live: &BTreeMap<String, bool>) -> bool {
        match step {
            Gc::Delete(key, ns, name) => {
                let Some(rt) = self.registry.any_version(&key) else {
                    // Type no longer served: drop silently.
                    if let Some(m) = self.objects.get_mut(&key) {
                        m.remove(&(ns, name));
                    }
                    return true;
                };
                // Dependents are deleted with the default (background) propagation, also
                // when their owner is in foreground deletion.
                self.delete(&rt, &ns, &name, &DeleteOpts::default()).is_ok()
            }
            Gc::DropDangling(key, ns, name) => {
                if let Some(old) = self.lookup(&key, &ns, &name).cloned() {
                    let mut new = old.clone();
                    retain_owner_refs(&mut new, |u| live.contains_key(u));
                    self.store_modified(&key, &ns, &name, old, new);
                }
                true
            }
            Gc::DropForeground(key, ns, name) => {
                if let Some(old) = self.lookup(&key, &ns, &name).cloned() {
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
                true
            }
        }
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
}

fn uid_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid").and_then(Value::as_str)
}

/// Whether `obj` is being deleted in the foreground (waiting for its blocking dependents).
fn in_foreground_deletion(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers(obj).iter().any(|f| f == FOREGROUND)
}

pub(super) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub(super) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn retain_owner_refs(obj: &mut Value, keep: impl Fn(&str) -> bool) {
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
