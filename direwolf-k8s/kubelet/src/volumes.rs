//! A pod's volumes on the host: emptyDir (a directory per pod and volume), PVC (a directory per
//! claim, kept across pods), hostPath, and secret, configMap, downwardAPI and projected volumes
//! materialised from the API into a directory per pod and volume.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::{Api, Client};

use crate::credentials;
use crate::env::{PodAddresses, field_value};

/// Where the volumes of pods live under the state directory.
#[derive(Debug, Clone)]
pub struct VolumeDirs {
    /// This pod's directory (`pods/<uid>`), removed with the pod.
    pub pod_dir: PathBuf,
    /// Directory of claims (`claims/<namespace>/<claim>`), kept.
    pub claims_dir: PathBuf,
}

/// Materialises every volume of `pod`; volume name → host directory.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    dirs: &VolumeDirs,
    addr: PodAddresses,
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = HashMap::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone());
    for volume in volumes.unwrap_or_default() {
        let dir = prepare_one(client, pod, &ns, &volume, dirs, addr)
            .await
            .with_context(|| format!("volume {}", volume.name))?;
        out.insert(volume.name.clone(), dir);
    }
    Ok(out)
}

async fn prepare_one(
    client: &Client,
    pod: &Pod,
    ns: &str,
    v: &Volume,
    dirs: &VolumeDirs,
    addr: PodAddresses,
) -> anyhow::Result<PathBuf> {
    let own = dirs.pod_dir.join("volumes").join(&v.name);
    let dir = if let Some(claim) = &v.persistent_volume_claim {
        dirs.claims_dir.join(ns).join(&claim.claim_name)
    } else if let Some(host) = &v.host_path {
        PathBuf::from(&host.path)
    } else {
        own.clone()
    };
    mkdir(&dir)?;
    let mode = |m: Option<i32>| m.unwrap_or(0o644);
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        match secret_files(client, ns, &name).await? {
            Some(files) => write_items(&dir, &files, s.items.as_deref(), mode(s.default_mode))?,
            None if s.optional.unwrap_or(false) => {}
            None => bail!("secret {ns}/{name} not found"),
        }
    } else if let Some(c) = &v.config_map {
        match config_map_files(client, ns, &c.name).await? {
            Some(files) => write_items(&dir, &files, c.items.as_deref(), mode(c.default_mode))?,
            None if c.optional.unwrap_or(false) => {}
            None => bail!("configmap {ns}/{} not found", c.name),
        }
    } else if let Some(d) = &v.downward_api {
        write_downward(pod, &dir, d.items.as_deref().unwrap_or_default(), addr)?;
    } else if let Some(p) = &v.projected {
        for source in p.sources.iter().flatten() {
            project(client, pod, ns, source, &dir, addr, mode(p.default_mode)).await?;
        }
    } else if v.empty_dir.is_none() && v.persistent_volume_claim.is_none() && v.host_path.is_none() {
        bail!(
            "unsupported volume type (supported: emptyDir, persistentVolumeClaim, hostPath, secret, configMap, downwardAPI, projected)"
        );
    }
    Ok(dir)
}

async fn project(
    client: &Client,
    pod: &Pod,
    ns: &str,
    source: &k8s_openapi::api::core::v1::VolumeProjection,
    dir: &Path,
    addr: PodAddresses,
    mode: i32,
) -> anyhow::Result<()> {
    if let Some(s) = &source.secret {
        match secret_files(client, ns, &s.name).await? {
            Some(files) => write_items(dir, &files, s.items.as_deref(), mode)?,
            None if s.optional.unwrap_or(false) => {}
            None => bail!("secret {ns}/{} not found", s.name),
        }
    }
    if let Some(c) = &source.config_map {
        match config_map_files(client, ns, &c.name).await? {
            Some(files) => write_items(dir, &files, c.items.as_deref(), mode)?,
            None if c.optional.unwrap_or(false) => {}
            None => bail!("configmap {ns}/{} not found", c.name),
        }
    }
    if let Some(d) = &source.downward_api {
        write_downward(pod, dir, d.items.as_deref().unwrap_or_default(), addr)?;
    }
    if let Some(t) = &source.service_account_token {
        let token = credentials::token(client, pod, t.audience.as_deref(), t.expiration_seconds)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {}", credentials::account_of(pod)))?;
        write_file(&dir.join(&t.path), token.as_bytes(), 0o600)?;
    }
    Ok(())
}

async fn secret_files(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("read secret {ns}/{name}"))?;
    Ok(s.map(|s| s.data.into_iter().flatten().map(|(k, v)| (k, v.0)).collect()))
}

async fn config_map_files(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
    let c = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("read configmap {ns}/{name}"))?;
    Ok(c.map(|c| {
        let text = c.data.into_iter().flatten().map(|(k, v)| (k, v.into_bytes()));
        let binary = c.binary_data.into_iter().flatten().map(|(k, v)| (k, v.0));
        text.chain(binary).collect()
    }))
}

fn write_items(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> anyhow::Result<()> {
    match items {
        None => {
            for (key, content) in files {
                write_file(&dir.join(key), content, mode)?;
            }
        }
        Some(items) => {
            for item in items {
                let content = files
                    .get(&item.key)
                    .with_context(|| format!("key {} not found", item.key))?;
                write_file(&dir.join(&item.path), content, item.mode.unwrap_or(mode))?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    pod: &Pod,
    dir: &Path,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    addr: PodAddresses,
) -> anyhow::Result<()> {
    for item in items {
        let Some(field) = &item.field_ref else {
            bail!("downwardAPI {}: only fieldRef is supported", item.path);
        };
        let value = field_value(pod, &field.field_path, addr).with_context(|| {
            format!(
                "downwardAPI {}: unsupported fieldPath {}",
                item.path, field.field_path
            )
        })?;
        write_file(
            &dir.join(&item.path),
            value.as_bytes(),
            item.mode.unwrap_or(0o644),
        )?;
    }
    Ok(())
}

fn mkdir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

fn write_file(path: &Path, content: &[u8], mode: i32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))?;
    let perms = std::fs::Permissions::from_mode(u32::try_from(mode & 0o777).unwrap_or(0o644));
    std::fs::set_permissions(path, perms).with_context(|| format!("chmod {}", path.display()))
}
