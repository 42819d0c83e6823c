//! `User`: a person and the limits and extras of their stream pods (`docs/protocol/kubernetes.md`
//! § User).

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, SecurityContext, Volume, VolumeMount};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ReportStatus;

/// The status of a `User` (conditions about problems found while using it).
pub type UserStatus = ReportStatus;

/// Volume names the operator reserves for the stream pod.
pub const RESERVED_VOLUME_NAMES: [&str; 3] = ["wolf-cfg", "wolf-runtime", "wolf-data"];

/// A person: caps for their game containers, device volumes and sidecar adjustments.
///
/// The object's name must be a DNS-1123 label: it names the user's Deployments and claims.
// `printcolumn(type_ = ..)` repeats by design; clippy reads it as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "direwolf.games-on-whales.github.io",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    shortname = "dwuser",
    category = "direwolf",
    doc = "A person who streams: resource caps, device volumes and sidecar policies for their stream pods.",
    validation = Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name of a User must be a DNS-1123 label (at most 63 lower-case letters, digits or '-')"),
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.volumes) || self.volumes.all(v, !(v.name in ['wolf-cfg', 'wolf-runtime', 'wolf-data']))")
        .message("volume names wolf-cfg, wolf-runtime and wolf-data are reserved")
        .field_path(".volumes"),
    validation = Rule::new(concat!(
        "!has(self.sidecarPolicies) || (",
        "(!has(self.sidecarPolicies.wolf) || !has(self.sidecarPolicies.wolf.volumeMounts) || self.sidecarPolicies.wolf.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name)))",
        " && ",
        "(!has(self.sidecarPolicies.pulseaudio) || !has(self.sidecarPolicies.pulseaudio.volumeMounts) || self.sidecarPolicies.pulseaudio.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name)))",
        " && ",
        "(!has(self.sidecarPolicies.wolfAgent) || !has(self.sidecarPolicies.wolfAgent.volumeMounts) || self.sidecarPolicies.wolfAgent.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name)))",
        ")"
    ))
        .message("every sidecar policy volumeMount must name a volume in spec.volumes")
        .field_path(".sidecarPolicies")
)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// A name to show people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,

    /// The ids of the apps this user may see and launch (`spec.id` of their App objects);
    /// absent: every app. Another app is missing from the user's app list, and launching it is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), inner(range(min = 1, max = 2147483647)))]
    pub apps: Option<Vec<i32>>,

    /// Caps for game containers: for every resource named here, a game container's limit
    /// (request) must not exceed this limit (request). Not used as defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra volumes added to every stream pod of this user (input devices, DRI nodes, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), transform = bound_item_names)]
    pub volumes: Vec<Volume>,

    /// Adjustments of the injected sidecar containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_policies: Option<SidecarPolicies>,

    /// Whether this user administers direwolf in the web UI (logged in through single sign-on
    /// or a login proxy): everything the admin token may do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// Adjustments for each injected container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPolicies {
    /// The `wolf` container.
    #[serde(default)]
    pub wolf: SidecarPolicy,
    /// The `pulseaudio` container.
    #[serde(default)]
    pub pulseaudio: SidecarPolicy,
    /// The `wolf-agent` container.
    #[serde(default)]
    pub wolf_agent: SidecarPolicy,
}

/// How one injected container is adjusted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPolicy {
    /// Appended after the container's built-in environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Merged over the built-in defaults resource by resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Appended mounts; each must name a volume in `spec.volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), transform = bound_item_names)]
    pub volume_mounts: Vec<VolumeMount>,
    /// The container's security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// If any policy sets it, the pod shares the host IPC namespace.
    #[serde(default, rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
}

/// Caps `items.properties.name` of a list at 63 characters (volume names are DNS-1123 labels,
/// which Kubernetes enforces anyway). The API server estimates the cost of a CEL rule from the
/// largest possible strings and lists; without these bounds the rules comparing volume names
/// would be estimated over the per-rule budget and the CRD refused.
fn bound_item_names(schema: &mut schemars::Schema) {
    if let Some(name) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("properties"))
        .and_then(|properties| properties.get_mut("name"))
        .and_then(|name| name.as_object_mut())
    {
        name.insert("maxLength".to_owned(), 63.into());
    }
}
