//! Discovery: `/version`, `/api`, `/apis`, `/apis/<group>` and the resource lists of a group
//! version, from the registry.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::registry::ResourceType;
use super::request::{Body, Route, Shared, json_response};
use super::state::State;
use super::status::ApiError;

/// Answers a discovery route (anything but a resource).
pub(crate) fn serve(shared: &Shared, route: Route) -> Result<Response<Body>, ApiError> {
    let document = match route {
        Route::Version => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-direwolf-emulator",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "emulated", "compiler": "rustc",
            "platform": "linux/amd64"
        }),
        Route::CoreVersions => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.address}]}),
        Route::Groups => {
            let groups = api_groups(&shared.state.lock());
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        Route::Group(g) => {
            let groups = api_groups(&shared.state.lock());
            let mut found = groups
                .into_iter()
                .find(|x| x["name"] == json!(g))
                .ok_or_else(ApiError::no_route)?;
            found["kind"] = json!("APIGroup");
            found["apiVersion"] = json!("v1");
            found
        }
        Route::Resources(g, v) => resource_list(&shared.state.lock(), &g, &v)?,
        Route::Resource(_) => return Err(ApiError::no_route()),
    };
    Ok(json_response(StatusCode::OK, &document))
}

/// The `APIResourceList` of group `g`, version `v`.
fn resource_list(state: &State, g: &str, v: &str) -> Result<Value, ApiError> {
    let rts: Vec<&Arc<ResourceType>> = state
        .registry
        .all()
        .filter(|rt| rt.group == g && rt.version == v)
        .collect();
    if rts.is_empty() {
        return Err(ApiError::no_route());
    }
    let mut resources = Vec::new();
    for rt in rts {
        resources.push(json!({
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "shortNames": rt.short_names,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    Ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn api_groups(state: &State) -> Vec<Value> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rt in state.registry.all().filter(|rt| !rt.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, vs)) if !vs.contains(&rt.version) => vs.push(rt.version.clone()),
            Some(_) => {}
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect()
}
