//! PATCH: JSON merge, strategic merge and JSON patches, and server-side apply.

use serde_json::{Value, json};

use super::write::{SERVER_OWNED, check_rv_precondition, merge_for_write, scope_of};
use super::{State, WriteCtx, meta_mut};
use crate::emulator::fields::{self, Scope};
use crate::emulator::registry::ResourceType;
use crate::emulator::status::ApiError;

impl State {
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
        let mut applied = decode_applied(rt, name, body)?;
        let scope = scope_of(rt, status);
        let rv_precondition = keep_applicable(&mut applied, scope);
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
}

/// An applied configuration (JSON or YAML), checked against the endpoint's type and `name`.
fn decode_applied(rt: &ResourceType, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let mut applied: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_slice(body)
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
    State::check_type(rt, &mut applied)?;
    match applied.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(applied),
    }
}

/// Keeps only what an apply through an endpoint of `scope` may write (server-owned metadata is
/// never applied); returns the resourceVersion the configuration named, a precondition.
fn keep_applicable(applied: &mut Value, scope: Scope) -> Option<Value> {
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
        for f in SERVER_OWNED.iter().chain(&["managedFields"]) {
            meta.remove(*f);
        }
        if scope == Scope::StatusOnly {
            meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
        }
    }
    rv_precondition
}
