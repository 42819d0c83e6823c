//! Field ownership (`metadata.managedFields`, `FieldsV1`) and the server-side-apply merge.
//!
//! A field set is a set of paths; each segment is written as in `FieldsV1`: `f:<name>` for an
//! object field, `k:<json>` for an element of an associative list (keyed by the list's map keys),
//! `v:<json>` for an element of a set list. Leaves are scalars, atomic lists and empty objects;
//! an associative-list element is also recorded as a leaf of its own (the `.` marker of
//! `FieldsV1`), so that dropping it from an applied configuration removes the whole element.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::registry::{ListType, ResourceType};

/// A path in `FieldsV1` segment notation.
pub(crate) type FieldPath = Vec<String>;
/// A set of owned fields.
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Which part of the object a write may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything but `status` (main resource of a kind with a status subresource).
    NoStatus,
    /// Only `status` (the status subresource).
    StatusOnly,
    /// Everything (kinds without a status subresource).
    All,
}

/// Metadata fields owned by the server, never by a field manager.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The leaf paths of `obj` within `scope`.
pub(crate) fn leaves(obj: &Value, rt: &ResourceType, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => continue,
            "status" if scope == Scope::NoStatus => continue,
            "status" => {}
            _ if scope == Scope::StatusOnly => continue,
            _ => {}
        }
        let mut path = vec![format!("f:{k}")];
        let mut keys = vec![k.clone()];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(format!("f:{mk}"));
                    keys.push(mk.clone());
                    walk(mv, rt, &mut path, &mut keys, &mut out);
                    path.pop();
                    keys.pop();
                }
            }
            continue;
        }
        walk(v, rt, &mut path, &mut keys, &mut out);
    }
    out
}

fn walk(v: &Value, rt: &ResourceType, path: &mut FieldPath, keys: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                keys.push(k.clone());
                walk(child, rt, path, keys, out);
                path.pop();
                keys.pop();
            }
        }
        Value::Array(items) => match rt.list_type(keys) {
            ListType::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                for item in items {
                    path.push(format!("v:{}", compact(item)));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListType::Map(map_keys)
                if !map_keys.is_empty() && items.iter().all(|i| element_key(i, &map_keys).is_some()) =>
            {
                for item in items {
                    let Some(key) = element_key(item, &map_keys) else {
                        continue;
                    };
                    path.push(key);
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            if map_keys.contains(k) {
                                continue;
                            }
                            path.push(format!("f:{k}"));
                            keys.push(k.clone());
                            walk(child, rt, path, keys, out);
                            path.pop();
                            keys.pop();
                        }
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `k:{"name":"x"}` for an element of an associative list, if it carries every key.
fn element_key(item: &Value, map_keys: &[String]) -> Option<String> {
    let m = item.as_object()?;
    let mut key = Map::new();
    for k in map_keys {
        key.insert(k.clone(), m.get(k)?.clone());
    }
    Some(format!("k:{}", compact(&Value::Object(key))))
}

/// The value at a field path.
pub(crate) fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = step(cur, seg)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        cur.as_object()?.get(f)
    } else if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array()?
            .iter()
            .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
    } else if let Some(v) = seg.strip_prefix("v:") {
        let val: Value = serde_json::from_str(v).ok()?;
        cur.as_array()?.iter().find(|item| **item == val)
    } else {
        None
    }
}

/// Removes the field at `path` (an element, for `k:`/`v:` segments).
pub(crate) fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parent_path {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.as_object_mut().and_then(|m| m.get_mut(f))
        } else if seg.starts_with("k:") || seg.starts_with("v:") {
            let idx = index_of(cur, seg);
            match (idx, cur.as_array_mut()) {
                (Some(i), Some(a)) => a.get_mut(i),
                _ => None,
            }
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(i) = index_of(cur, last)
        && let Some(a) = cur.as_array_mut()
    {
        a.remove(i);
    }
}

fn index_of(cur: &Value, seg: &str) -> Option<usize> {
    let target = step(cur, seg)?;
    cur.as_array()?.iter().position(|i| std::ptr::eq(i, target))
}

/// Merges an applied configuration into `target` (server-side apply): objects merge field by
/// field, associative lists element by element, set lists as a union, atomic lists and scalars
/// are replaced.
pub(crate) fn merge_applied(target: &mut Value, applied: &Value, rt: &ResourceType, keys: &mut Vec<String>) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, av) in a {
                keys.push(k.clone());
                match t.get_mut(k) {
                    Some(tv) => merge_applied(tv, av, rt, keys),
                    None => {
                        t.insert(k.clone(), av.clone());
                    }
                }
                keys.pop();
            }
        }
        (Value::Array(t), Value::Array(a)) => match rt.list_type(keys) {
            ListType::Set => {
                for item in a {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            }
            ListType::Map(map_keys)
                if !map_keys.is_empty()
                    && a.iter()
                        .chain(t.iter())
                        .all(|i| element_key(i, &map_keys).is_some()) =>
            {
                for item in a {
                    let key = element_key(item, &map_keys);
                    match t.iter_mut().find(|ti| element_key(ti, &map_keys) == key) {
                        Some(ti) => merge_applied(ti, item, rt, keys),
                        None => t.push(item.clone()),
                    }
                }
            }
            _ => *t = a.clone(),
        },
        (t, a) => *t = a.clone(),
    }
}

/// Strategic merge patch for built-in kinds: like a JSON merge patch (null deletes a field),
/// except that lists with a merge key (the built-in list table: containers by name,
/// ownerReferences by uid, ...) merge element by element, an element carrying
/// `"$patch": "delete"` is removed, set lists (finalizers) take the union, and other lists are
/// replaced. Other `$` directives (`$setElementOrder`, `$retainKeys`,
/// `$deleteFromPrimitiveList`) are dropped.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value, rt: &ResourceType, keys: &mut Vec<String>) {
    let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) else {
        *target = strip_directives(patch);
        return;
    };
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        keys.push(k.clone());
        match (t.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic_merge(tv, pv, rt, keys),
            (Some(Value::Array(ta)), Value::Array(pa)) => match rt.list_type(keys) {
                ListType::Map(map_keys) if !map_keys.is_empty() => {
                    for item in pa {
                        let key = element_key(item, &map_keys);
                        let pos = key.as_ref().and_then(|key| {
                            ta.iter()
                                .position(|ti| element_key(ti, &map_keys).as_ref() == Some(key))
                        });
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                ta.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic_merge(&mut ta[i], item, rt, keys),
                            (None, false) => ta.push(strip_directives(item)),
                        }
                    }
                }
                ListType::Set => {
                    for item in pa {
                        if !ta.contains(item) {
                            ta.push(item.clone());
                        }
                    }
                }
                _ => *ta = pa.iter().map(strip_directives).collect(),
            },
            _ => {
                t.insert(k.clone(), strip_directives(pv));
            }
        }
        keys.pop();
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// One `managedFields` entry, parsed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `""` or `status`.
    pub subresource: String,
    /// apiVersion the fields were written with.
    pub api_version: String,
    /// When the entry last changed.
    pub time: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub(crate) fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let mut fields = FieldSet::new();
            if let Some(tree) = e.get("fieldsV1") {
                tree_to_paths(tree, &mut Vec::new(), &mut fields);
            }
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                subresource: s("subresource"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields,
            }
        })
        .collect()
}

fn tree_to_paths(tree: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = tree.as_object() else { return };
    if m.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (k, v) in m {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        path.push(k.clone());
        tree_to_paths(v, path, out);
        path.pop();
    }
}

fn node_at<'a>(root: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = root;
    for seg in path {
        cur = cur.get_mut(seg)?.as_object_mut()?;
    }
    Some(cur)
}

fn paths_to_tree(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur.entry(seg.clone()).or_insert_with(|| json!({}));
            cur = match entry.as_object_mut() {
                Some(m) => m,
                None => break,
            };
        }
    }
    // A path that is both a leaf and a prefix of others is marked with ".".
    for path in fields {
        if let Some(node) = node_at(&mut root, path)
            && !node.is_empty()
            && !node.contains_key(".")
        {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// Writes `metadata.managedFields` (entries with no fields are dropped, as the API server does).
pub(crate) fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": paths_to_tree(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = super::state::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Renders a path as Kubernetes prints it in apply conflicts, e.g. `.spec.replicas`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:").or_else(|| seg.strip_prefix("v:")) {
            s.push('[');
            s.push_str(k);
            s.push(']');
        }
    }
    s
}

/// Updates ownership after a non-apply write by `manager`: fields whose value changed (or
/// appeared) move to `manager`; fields that no longer exist are dropped from every manager.
pub(crate) fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    rt: &ResourceType,
    scope: Scope,
    manager: &str,
    now: &str,
) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_leaves = leaves(new, rt, scope);
    let changed: FieldSet = new_leaves
        .iter()
        .filter(|p| old.and_then(|o| get_at(o, p)) != get_at(new, p))
        .cloned()
        .collect();
    let all_new = leaves(new, rt, Scope::All);
    let subresource = if scope == Scope::StatusOnly { "status" } else { "" };
    for e in &mut entries {
        e.fields.retain(|p| all_new.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let api_version = rt.api_version();
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version;
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                subresource: subresource.into(),
                api_version,
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    write_managed(new, &entries);
}

/// Result of planning an apply.
pub(crate) struct ApplyPlan {
    /// The merged object (managed fields updated).
    pub object: Value,
    /// Conflicts `(manager, field)`; non-empty only when not forced.
    pub conflicts: Vec<(String, String)>,
}

/// Server-side apply of `applied` by `manager` onto `current` (`None` = create).
pub(crate) fn apply(
    current: Option<&Value>,
    applied: &Value,
    rt: &ResourceType,
    scope: Scope,
    manager: &str,
    force: bool,
    now: &str,
) -> ApplyPlan {
    let subresource = if scope == Scope::StatusOnly { "status" } else { "" };
    let applier = Applier { manager, subresource };
    let applied_set = leaves(applied, rt, scope);
    let mut entries = current.map(read_managed).unwrap_or_default();
    let mut object = current.cloned().unwrap_or_else(|| json!({}));
    let conflicts = match current {
        Some(cur) => applier.conflicts(cur, applied, &applied_set, &entries),
        None => BTreeMap::new(),
    };
    if !conflicts.is_empty() && !force {
        let list = conflicts
            .iter()
            .flat_map(|(p, ms)| ms.iter().map(move |m| (m.clone(), display_path(p))))
            .collect();
        return ApplyPlan {
            object,
            conflicts: list,
        };
    }
    // Forced: the conflicting fields change hands.
    for e in entries.iter_mut().filter(|e| !applier.owns(e)) {
        e.fields.retain(|p| !conflicts.contains_key(p));
    }
    applier.drop_unapplied(&mut object, &applied_set, &entries);
    merge_applied(&mut object, applied, rt, &mut Vec::new());

    let api_version = rt.api_version();
    entries.retain(|e| !applier.owns(e));
    let all_new = leaves(&object, rt, Scope::All);
    for e in &mut entries {
        e.fields.retain(|p| all_new.contains(p));
    }
    entries.push(ManagedEntry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        subresource: subresource.into(),
        api_version,
        time: now.to_string(),
        fields: applied_set,
    });
    write_managed(&mut object, &entries);
    ApplyPlan {
        object,
        conflicts: Vec::new(),
    }
}

/// The field manager of an apply, on the main resource or a subresource.
struct Applier<'a> {
    manager: &'a str,
    subresource: &'a str,
}

impl Applier<'_> {
    /// Whether `e` is this manager's earlier apply.
    fn owns(&self, e: &ManagedEntry) -> bool {
        e.manager == self.manager && e.operation == "Apply" && e.subresource == self.subresource
    }

    /// Fields owned by another manager whose value the applied configuration changes, with
    /// their owners.
    fn conflicts(
        &self,
        current: &Value,
        applied: &Value,
        applied_set: &FieldSet,
        entries: &[ManagedEntry],
    ) -> BTreeMap<FieldPath, Vec<String>> {
        let mut conflicts: BTreeMap<FieldPath, Vec<String>> = BTreeMap::new();
        for e in entries.iter().filter(|e| !self.owns(e)) {
            for p in e.fields.intersection(applied_set) {
                if p.last()
                    .is_some_and(|s| s.starts_with("k:") || s.starts_with("v:"))
                {
                    continue;
                }
                if get_at(current, p) != get_at(applied, p) {
                    conflicts.entry(p.clone()).or_default().push(e.manager.clone());
                }
            }
        }
        conflicts
    }

    /// Removes the fields this manager applied before, no longer applies, and nobody else owns.
    fn drop_unapplied(&self, object: &mut Value, applied_set: &FieldSet, entries: &[ManagedEntry]) {
        let previously: FieldSet = entries
            .iter()
            .filter(|e| self.owns(e))
            .flat_map(|e| e.fields.clone())
            .collect();
        let others: FieldSet = entries
            .iter()
            .filter(|e| !self.owns(e))
            .flat_map(|e| e.fields.clone())
            .collect();
        let mut dropped: Vec<&FieldPath> = previously
            .iter()
            .filter(|p| !applied_set.contains(*p) && !others.contains(*p))
            .collect();
        // Remove deeper paths first so that element indices stay valid.
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(object, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::registry::Registry;

    fn deployments() -> std::sync::Arc<ResourceType> {
        Registry::with_builtins()
            .get("apps", "v1", "deployments")
            .expect("builtin")
    }

    #[test]
    fn fieldsv1_round_trip() {
        let rt = deployments();
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "b"}, "finalizers": ["f"],
            "ownerReferences": [{"uid": "u1", "name": "o", "kind": "K", "apiVersion": "v1"}]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let set = leaves(&obj, &rt, Scope::NoStatus);
        let mut o2 = obj.clone();
        write_managed(
            &mut o2,
            &[ManagedEntry {
                manager: "m".into(),
                operation: "Apply".into(),
                subresource: String::new(),
                api_version: "apps/v1".into(),
                time: "t".into(),
                fields: set.clone(),
            }],
        );
        let back = read_managed(&o2);
        assert_eq!(back[0].fields, set);
        let tree = &o2["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(
            tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."].is_object()
        );
        assert!(tree["f:metadata"]["f:finalizers"]["v:\"f\""].is_object());
    }

    #[test]
    fn apply_conflicts_and_force() {
        let rt = deployments();
        let now = "2026-01-01T00:00:00Z";
        let a = json!({"spec": {"replicas": 1, "paused": false}});
        let first = apply(None, &a, &rt, Scope::NoStatus, "alice", false, now).object;
        let b = json!({"spec": {"replicas": 2}});
        let plan = apply(Some(&first), &b, &rt, Scope::NoStatus, "bob", false, now);
        assert_eq!(
            plan.conflicts,
            vec![("alice".to_string(), ".spec.replicas".to_string())]
        );
        let forced = apply(Some(&first), &b, &rt, Scope::NoStatus, "bob", true, now).object;
        assert_eq!(forced["spec"]["replicas"], 2);
        let owners = read_managed(&forced);
        let alice = owners
            .iter()
            .find(|e| e.manager == "alice")
            .expect("alice keeps paused");
        assert!(
            !alice
                .fields
                .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()])
        );
        // Same value: no conflict.
        let same = json!({"spec": {"paused": false}});
        assert!(
            apply(Some(&forced), &same, &rt, Scope::NoStatus, "carol", false, now)
                .conflicts
                .is_empty()
        );
    }

    #[test]
    fn apply_removes_fields_dropped_by_their_only_owner() {
        let rt = deployments();
        let now = "t";
        let a = json!({"metadata": {"labels": {"x": "1", "y": "2"}}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}]}}}});
        let first = apply(None, &a, &rt, Scope::NoStatus, "m", false, now).object;
        let a2 = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "k"}]}}}});
        let second = apply(Some(&first), &a2, &rt, Scope::NoStatus, "m", false, now).object;
        assert_eq!(second["metadata"]["labels"], json!({"x": "1"}));
        assert_eq!(
            second["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "k"}])
        );
    }

    #[test]
    fn strategic_merge_by_key() {
        let rt = deployments();
        let mut d = json!({"metadata": {"finalizers": ["a"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "nodeSelector": {"x": "y"}}}}});
        let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "9"}, {"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"}],
            "nodeSelector": null}}}});
        strategic_merge(&mut d, &patch, &rt, &mut Vec::new());
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "9"}, {"name": "c", "image": "3"}])
        );
        assert!(d["spec"]["template"]["spec"].get("nodeSelector").is_none());
    }

    #[test]
    fn owner_references_from_two_managers_merge() {
        let rt = deployments();
        let a = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "K", "apiVersion": "v1"}]}});
        let first = apply(None, &a, &rt, Scope::NoStatus, "m1", false, "t").object;
        let b = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b", "kind": "K", "apiVersion": "v1"}]}});
        let plan = apply(Some(&first), &b, &rt, Scope::NoStatus, "m2", false, "t");
        assert!(plan.conflicts.is_empty());
        assert_eq!(
            plan.object["metadata"]["ownerReferences"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }
}
