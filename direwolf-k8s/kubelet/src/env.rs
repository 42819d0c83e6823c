//! A container's environment as a kubelet builds it: `env` (`value`, `valueFrom` fieldRef,
//! secretKeyRef, configMapKeyRef) with `$(VAR)` expansion, `envFrom`, then the image's env and
//! `POD_IP`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

use crate::images::{ImageProgram, expand};

/// A container's env cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret or ConfigMap (or its key) is missing, and not optional.
    #[error("env {var}: {what} not found")]
    Missing {
        /// The variable.
        var: String,
        /// What is missing (`secret ns/name key k`).
        what: String,
    },
    /// A fieldRef names a field the stand-in does not know.
    #[error("env {var}: unsupported fieldPath {path}")]
    Field {
        /// The variable.
        var: String,
        /// The fieldPath.
        path: String,
    },
    /// The API server failed.
    #[error("env {var}: reading {what}: {source}")]
    Api {
        /// The variable.
        var: String,
        /// What was read.
        what: String,
        /// Why.
        source: kube::Error,
    },
}

/// The pod facts fieldRefs read, beyond the pod object.
#[derive(Debug, Clone, Copy)]
pub struct PodAddresses {
    /// The pod's IP.
    pub pod_ip: Ipv4Addr,
    /// The node's IP.
    pub host_ip: Ipv4Addr,
}

/// The value of a downward-API `fieldPath` of `pod`.
pub fn field_value(pod: &Pod, path: &str, addr: PodAddresses) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&std::collections::BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let all = |map: Option<&std::collections::BTreeMap<String, String>>| {
        let lines: Vec<String> = map
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
            .collect();
        lines.join("\n")
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(meta.labels.as_ref()),
        "metadata.annotations" => all(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => addr.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => addr.host_ip.to_string(),
        _ => {
            return keyed("metadata.labels", meta.labels.as_ref())
                .or_else(|| keyed("metadata.annotations", meta.annotations.as_ref()));
        }
    })
}

/// Reads key `key` of Secret or ConfigMap `name` in `ns`; `None` when either is missing.
pub async fn lookup(
    client: &Client,
    ns: &str,
    secret: bool,
    name: &str,
    key: &str,
) -> kube::Result<Option<String>> {
    if secret {
        let s = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        Ok(s.and_then(|s| s.data?.remove(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned()))
    } else {
        let c = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        Ok(c.and_then(|c| c.data?.remove(key)))
    }
}

/// The environment of `container` in `pod`, plus the image's env and `POD_IP`.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    image: &ImageProgram,
    addr: PodAddresses,
) -> Result<HashMap<String, String>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: HashMap<String, String> = HashMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (secret, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(s), _) => (true, s.name.clone(), s.optional.unwrap_or(false)),
            (None, Some(c)) => (false, c.name.clone(), c.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        let api_err = |source| EnvError::Api {
            var: format!("envFrom {name}"),
            what: name.clone(),
            source,
        };
        let pairs = all_keys(client, &ns, secret, &name).await.map_err(api_err)?;
        match pairs {
            Some(pairs) => env.extend(pairs.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
            None if optional => {}
            None => {
                return Err(EnvError::Missing {
                    var: format!("envFrom {name}"),
                    what: format!("{} {ns}/{name}", if secret { "secret" } else { "configmap" }),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => expand(v, &env),
            (None, Some(from)) => match value_from(client, pod, &var.name, from, addr).await? {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        env.insert(var.name.clone(), value);
    }
    for (k, v) in &image.env {
        env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    env.insert("POD_IP".to_owned(), addr.pod_ip.to_string());
    Ok(env)
}

async fn all_keys(
    client: &Client,
    ns: &str,
    secret: bool,
    name: &str,
) -> kube::Result<Option<Vec<(String, String)>>> {
    Ok(if secret {
        let s = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        s.map(|s| {
            s.data
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        })
    } else {
        let c = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        c.map(|c| c.data.into_iter().flatten().collect())
    })
}

/// One `valueFrom`; `None` when an optional reference is missing.
async fn value_from(
    client: &Client,
    pod: &Pod,
    var: &str,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    addr: PodAddresses,
) -> Result<Option<String>, EnvError> {
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path, addr)
            .map(Some)
            .ok_or_else(|| EnvError::Field {
                var: var.to_owned(),
                path: field.field_path.clone(),
            });
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (secret, name, key, optional) = match (&from.secret_key_ref, &from.config_map_key_ref) {
        (Some(s), _) => (true, &s.name, &s.key, s.optional.unwrap_or(false)),
        (None, Some(c)) => (false, &c.name, &c.key, c.optional.unwrap_or(false)),
        (None, None) => {
            return Err(EnvError::Field {
                var: var.to_owned(),
                path: "resourceFieldRef (not supported)".to_owned(),
            });
        }
    };
    let what = format!(
        "{} {ns}/{name} key {key}",
        if secret { "secret" } else { "configmap" }
    );
    let value = lookup(client, &ns, secret, name, key)
        .await
        .map_err(|source| EnvError::Api {
            var: var.to_owned(),
            what: what.clone(),
            source,
        })?;
    match value {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(EnvError::Missing {
            var: var.to_owned(),
            what,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_refs_read_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}},
            "spec": {"containers": [], "nodeName": "node-a"},
        }))
        .expect("a pod");
        let addr = PodAddresses {
            pod_ip: Ipv4Addr::new(10, 77, 0, 2),
            host_ip: Ipv4Addr::new(10, 77, 0, 1),
        };
        let field = |path| field_value(&pod, path, addr);
        assert_eq!(field("status.podIP").as_deref(), Some("10.77.0.2"));
        assert_eq!(field("status.hostIP").as_deref(), Some("10.77.0.1"));
        assert_eq!(field("metadata.labels['app']").as_deref(), Some("x"));
        assert_eq!(field("metadata.labels").as_deref(), Some("app=\"x\""));
        assert_eq!(field("spec.nodeName").as_deref(), Some("node-a"));
        assert_eq!(field("spec.serviceAccountName").as_deref(), Some("default"));
        assert_eq!(field("status.phase"), None);
    }
}
