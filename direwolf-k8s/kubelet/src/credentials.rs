//! In-cluster credentials for pods, as a kubelet gives them: a token of the pod's
//! ServiceAccount from the TokenRequest API (bound to the pod), the API server's CA and the
//! namespace, under `/var/run/secrets/kubernetes.io/serviceaccount/`.

use std::path::Path;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// Where in-cluster clients read their credentials.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Lifetime asked for the tokens (the API server may grant another).
pub const TOKEN_SECONDS: i64 = 3600;

/// The pod's ServiceAccount (`default` when unset).
pub fn account_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned())
}

/// A token for `pod`'s ServiceAccount bound to the pod (audience: the API server's default
/// unless `audience` is given).
pub async fn token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    seconds: Option<i64>,
) -> kube::Result<String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
            "expirationSeconds": seconds.unwrap_or(TOKEN_SECONDS),
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid,
            },
        },
    });
    let granted: TokenRequest = accounts
        .create_subresource("token", &account_of(pod), &PostParams::default(), &request)
        .await?;
    Ok(granted.status.map(|s| s.token).unwrap_or_default())
}

/// Writes `token`, `ca.crt` (when the API server has a CA) and `namespace` into `dir`.
pub async fn write_account_dir(
    client: &Client,
    pod: &Pod,
    ca_pem: Option<&str>,
    dir: &Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let token = token(client, pod, None, None)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {}", account_of(pod)))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut files = vec![("token", token), ("namespace", ns)];
    if let Some(ca) = ca_pem {
        files.push(("ca.crt", ca.to_owned()));
    }
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
