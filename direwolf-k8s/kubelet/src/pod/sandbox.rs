//! A pod's sandbox: its volumes on the host, its `/etc/hosts` (the pod's name and the
//! `kubernetes.default.svc` names pointing at the API forwarder), and its ServiceAccount
//! credentials where no admission plugin projected them (the emulator).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;

use crate::context::Context;
use crate::credentials::{self, MOUNT_PATH};
use crate::env::PodAddresses;
use crate::net::PodNet;
use crate::process::Mount;
use crate::volumes::{self, VolumeDirs};

/// The prepared sandbox of a pod.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Volume name → host directory.
    pub volumes: HashMap<String, PathBuf>,
    /// Mounts every container gets besides its volumeMounts.
    pub extra_mounts: Vec<Mount>,
}

/// Whether any container mounts something at the credentials' path already (the
/// ServiceAccount admission plugin's projected volume does).
fn mounts_credentials(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let all = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    all.flat_map(|c| c.volume_mounts.iter().flatten())
        .any(|m| m.mount_path.trim_end_matches('/') == MOUNT_PATH)
}

/// Prepares volumes, hosts file and credentials of `pod` in `pod_dir`.
pub async fn prepare(ctx: &Context, pod: &Pod, net: &PodNet, pod_dir: &Path) -> anyhow::Result<Sandbox> {
    let addr = PodAddresses {
        pod_ip: net.ip,
        host_ip: ctx.node.address,
    };
    let dirs = VolumeDirs {
        pod_dir: pod_dir.to_owned(),
        claims_dir: ctx.state_dir.join("claims"),
    };
    let volumes = volumes::prepare(&ctx.client, pod, &dirs, addr).await?;
    let hosts = pod_dir.join("hosts");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n{}\t{name}\n{}\tkubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local\n",
        net.ip, ctx.api.host
    );
    std::fs::write(&hosts, text).with_context(|| format!("write {}", hosts.display()))?;
    let mut extra_mounts = vec![Mount {
        source: hosts,
        target: "/etc/hosts".into(),
        read_only: true,
    }];
    let automount = pod
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        .unwrap_or(true);
    if automount && !mounts_credentials(pod) {
        let dir = pod_dir.join("serviceaccount");
        credentials::write_account_dir(&ctx.client, pod, ctx.api.ca_pem.as_deref(), &dir).await?;
        extra_mounts.push(Mount {
            source: dir,
            target: MOUNT_PATH.into(),
            read_only: true,
        });
    }
    Ok(Sandbox {
        volumes,
        extra_mounts,
    })
}
