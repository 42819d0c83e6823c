//! What every pod worker shares: the API client, the image map, the state directory, the node,
//! the pod network and how pods reach the API server.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use kube::Client;

use crate::images::ImageMap;
use crate::node::NodeSpec;

/// How pods reach the API server.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    /// `KUBERNETES_SERVICE_HOST`: the forwarder's address (the bridge).
    pub host: Ipv4Addr,
    /// `KUBERNETES_SERVICE_PORT`.
    pub port: u16,
    /// The API server's CA (PEM), for `ca.crt`; none with a plain-HTTP API server.
    pub ca_pem: Option<String>,
}

/// Shared by the pod workers.
pub struct Context {
    /// The API client (the stand-in's own credentials).
    pub client: Client,
    /// Image → program.
    pub images: ImageMap,
    /// Root of volumes, claims and logs.
    pub state_dir: PathBuf,
    /// The node played.
    pub node: NodeSpec,
    /// Pod namespaces and addresses.
    pub network: Arc<crate::net::BridgeNetwork>,
    /// The API as pods reach it.
    pub api: ApiEndpoint,
}

impl Context {
    /// The directory of pod `uid`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(uid)
    }

    /// The log file of a container.
    pub fn log_path(&self, ns: &str, pod: &str, container: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(format!("{ns}_{pod}_{container}.log"))
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("state_dir", &self.state_dir)
            .field("node", &self.node.name)
            .field("api", &self.api.host)
            .finish_non_exhaustive()
    }
}
