//! Resource types the emulator serves: the built-in kinds and those registered by CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// How the elements of a list are merged by server-side apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// The list is replaced as a whole and owned as one field.
    Atomic,
    /// A list of scalars treated as a set.
    Set,
    /// A list of objects keyed by these fields.
    Map(Vec<String>),
}

/// One served resource (a group/version/plural).
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// Served version.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names (discovery only).
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the `status` subresource is enabled.
    pub status_subresource: bool,
    /// The structural `openAPIV3Schema` of a custom resource version.
    pub schema: Option<Value>,
    /// Name of the CRD that registered this type.
    pub crd_name: Option<String>,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or the plural alone for the core group) as Kubernetes names resources in
    /// error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` as Kubernetes names kinds in `Invalid` errors.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The key objects of this resource are stored under (shared by all versions).
    pub fn storage_key(&self) -> StorageKey {
        StorageKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Merge strategy of the list at `path` (object keys, without list indices).
    pub fn list_type(&self, path: &[String]) -> ListType {
        if let Some(schema) = &self.schema
            && let Some(node) = schema_at(schema, path)
        {
            return match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    node.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| keys.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                        .unwrap_or_default(),
                ),
                _ => builtin_list_type(path).unwrap_or(ListType::Atomic),
            };
        }
        builtin_list_type(path).unwrap_or(ListType::Atomic)
    }
}

/// List merge keys of the Kubernetes built-in schemas that matter most (metadata lists, and the
/// pod-template lists keyed by `name`, port lists keyed by port), after the
/// `x-kubernetes-list-map-keys`/`patchMergeKey` markers of the upstream OpenAPI.
fn builtin_list_type(path: &[String]) -> Option<ListType> {
    let last = path.last()?.as_str();
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    let key = |k: &str| Some(ListType::Map(vec![k.to_string()]));
    match (parent, last) {
        (Some("metadata"), "ownerReferences") => key("uid"),
        (Some("metadata"), "finalizers") => Some(ListType::Set),
        (
            _,
            "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets",
        ) => key("name"),
        (_, "volumeMounts") => key("mountPath"),
        (_, "volumeDevices") => key("devicePath"),
        (_, "conditions") => key("type"),
        (Some("spec"), "ports") if path.len() == 2 => key("port"),
        (_, "ports") => key("containerPort"),
        _ => None,
    }
}

/// The schema node at an object-key path (descending through `properties`, `items` and
/// `additionalProperties`).
fn schema_at<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for seg in path {
        if let Some(items) = node.get("items") {
            node = items;
        }
        node = match node.get("properties").and_then(|p| p.get(seg)) {
            Some(child) => child,
            None => node.get("additionalProperties").filter(|a| a.is_object())?,
        };
    }
    Some(node)
}

/// Where the objects of one resource live (independent of the served version).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StorageKey {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

/// A built-in kind: (group, version, kind, plural, short names, namespaced, status subresource).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    bool,
);

/// All resource types currently served.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_path: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// The built-in kinds the emulator serves.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        let builtins: &[Builtin] = &[
            ("", "v1", "Namespace", "namespaces", &["ns"], false, true),
            ("", "v1", "Pod", "pods", &["po"], true, true),
            ("", "v1", "Service", "services", &["svc"], true, true),
            (
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                &["pvc"],
                true,
                true,
            ),
            ("", "v1", "ConfigMap", "configmaps", &["cm"], true, false),
            ("", "v1", "Secret", "secrets", &[], true, false),
            ("", "v1", "Event", "events", &["ev"], true, false),
            (
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                &["sa"],
                true,
                false,
            ),
            ("events.k8s.io", "v1", "Event", "events", &["ev"], true, false),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                &[],
                true,
                false,
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                &[],
                true,
                false,
            ),
            ("apps", "v1", "Deployment", "deployments", &["deploy"], true, true),
            ("coordination.k8s.io", "v1", "Lease", "leases", &[], true, false),
            (
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                &["crd", "crds"],
                false,
                true,
            ),
        ];
        for (group, version, kind, plural, short, namespaced, status) in builtins {
            registry.insert(ResourceType {
                group: (*group).to_string(),
                version: (*version).to_string(),
                kind: (*kind).to_string(),
                plural: (*plural).to_string(),
                singular: kind.to_lowercase(),
                short_names: short.iter().map(|s| (*s).to_string()).collect(),
                namespaced: *namespaced,
                status_subresource: *status,
                schema: None,
                crd_name: None,
            });
        }
        registry
    }

    fn insert(&mut self, rt: ResourceType) {
        self.by_path.insert(
            (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
            Arc::new(rt),
        );
    }

    /// The type served at `group/version/plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The type of `apiVersion`/`kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.by_path
            .values()
            .find(|rt| rt.group == group && rt.version == version && rt.kind == kind)
            .cloned()
    }

    /// Any served version of a stored resource (used for garbage collection bookkeeping).
    pub fn any_version(&self, key: &StorageKey) -> Option<Arc<ResourceType>> {
        self.by_path
            .values()
            .find(|rt| rt.group == key.group && rt.plural == key.plural)
            .cloned()
    }

    /// All served types.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.by_path.values()
    }

    /// Registers (or re-registers) the served versions of a CRD object; returns an error message
    /// if the CRD is malformed.
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let names = CrdNames::of(crd)?;
        let versions = crd_versions(crd)?;
        self.unregister_crd(&names.name);
        for v in versions {
            let version = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("spec.versions[].name: Required value")?;
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            self.insert(ResourceType {
                group: names.group.clone(),
                version: version.to_string(),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
                singular: names.singular.clone(),
                short_names: names.short_names.clone(),
                namespaced: names.namespaced,
                status_subresource: v.pointer("/subresources/status").is_some(),
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                crd_name: Some(names.name.clone()),
            });
        }
        Ok(())
    }

    /// Stops serving the resources of a CRD.
    pub fn unregister_crd(&mut self, crd_name: &str) {
        self.by_path
            .retain(|_, rt| rt.crd_name.as_deref() != Some(crd_name));
    }
}

/// Splits `group/version` (or a bare core `version`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The names and scope a CRD declares, checked as the API server checks them.
struct CrdNames {
    name: String,
    group: String,
    plural: String,
    kind: String,
    singular: String,
    short_names: Vec<String>,
    namespaced: bool,
}

impl CrdNames {
    fn of(crd: &Value) -> Result<Self, String> {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .ok_or("spec.group: Required value")?;
        let names = spec.get("names").ok_or("spec.names: Required value")?;
        let plural = names
            .get("plural")
            .and_then(Value::as_str)
            .ok_or("spec.names.plural: Required value")?;
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("spec.names.kind: Required value")?;
        if name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ));
        }
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase());
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let namespaced = match spec.get("scope").and_then(Value::as_str) {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => {
                return Err(format!(
                    "spec.scope: Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                    other.map(|s| format!("\"{s}\"")).unwrap_or_else(|| "\"\"".into())
                ));
            }
        };
        Ok(CrdNames {
            name,
            group: group.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            singular,
            short_names,
            namespaced,
        })
    }
}

/// The versions of a CRD; exactly one of them must be the storage version.
fn crd_versions(crd: &Value) -> Result<&Vec<Value>, String> {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or(
            "spec.versions: Invalid value: null: must have exactly one version marked as storage version",
        )?;
    let storage_count = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage_count != 1 {
        return Err(format!(
            "spec.versions: Invalid value: {storage_count}: must have exactly one version marked as storage version"
        ));
    }
    Ok(versions)
}
