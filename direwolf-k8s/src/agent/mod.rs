//! The wolf-agent (`direwolf agent`, feature `agent`): the sidecar in every stream pod, between its
//! Session and the pod's Wolf (`docs/protocol/kubernetes.md` § The agent, contract in
//! [`crate::stream`]).
//!
//! | Step | Where |
//! |---|---|
//! | `/livez`, `/readyz` on [`stream::AGENT_HEALTH_PORT`] | [`health`] |
//! | wait for Wolf's socket (a non-socket file is fatal) | [`socket`] |
//! | warm mode: wait for Wolf, then for the pod's claim, before all of the below | [`warm`] |
//! | follow the own Session (its ports; deleted = gone) | [`session`] |
//! | the keys Secret and `status.ports`, waited for | [`inputs`] |
//! | `sessions/add` once (found again after a restart) | [`register`] |
//! | a resume's new keys: Wolf's session stopped and added again | [`rekey`], [`run`] |
//! | the status fields, on change, retried | [`status`] |
//! | Wolf's events → WaitForPing, Streaming, Paused, Ended | [`phase`], [`run`] |
//! | virtual controllers into the game container | [`udev`] |
//! | retries with jitter | [`direwolf_wolf_client::backoff`] |
//!
//! The agent ends (with [`Exit::SessionDeleted`]) when its Session is deleted: it stops Wolf's
//! session first. When the stream ends otherwise (Wolf stopped it, a pause outlasted the grace,
//! registration failed) it writes phase Ended and waits for the operator to delete the Session.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), direwolf_k8s::agent::AgentError> {
//! use direwolf_k8s::agent::{Agent, AgentConfig};
//! let config = AgentConfig::new("alice-desktop-x7k2p", "games", "10.1.2.3".parse().unwrap(), "/etc/wolf/wolf.sock");
//! Agent::new(client, config).run().await?;
//! # Ok(()) }
//! ```
//!
//! [`stream::AGENT_HEALTH_PORT`]: crate::stream::AGENT_HEALTH_PORT

mod error;
pub mod health;
pub mod inputs;
pub mod phase;
pub mod register;
pub mod rekey;
pub mod run;
pub mod session;
pub mod socket;
pub mod status;
pub mod udev;
pub mod warm;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::AgentError;
pub use run::{Agent, Exit, RunningAgent};

use direwolf_core::metrics::Metrics;

use crate::stream;

/// Where the game container's udev directory is shared with the agent by default.
pub const DEFAULT_UDEV_DIR: &str = "/run/udev";

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Session's name (in warm mode, set when the pod is claimed).
    pub session: String,
    /// Warm mode: the pod's own name; the Session is the one the pod gets labelled with.
    pub warm_pod: Option<String>,
    /// Its namespace.
    pub namespace: String,
    /// The pod's IP (the fake RTSP IP derives from it).
    pub pod_ip: IpAddr,
    /// Wolf's API socket.
    pub wolf_socket: PathBuf,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub health_addr: SocketAddr,
    /// Where `/metrics` alone is also served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The registry the agent's metrics (its Wolf API calls) go to.
    pub metrics: Arc<Metrics>,
    /// How long a pause may last before the stream is ended.
    pub pause_grace: Duration,
    /// How long Wolf may take to accept a connection on its socket, and (separately) to
    /// register the stream, before the stream is reported failed.
    pub wolf_timeout: Duration,
    /// Poll interval of the socket wait.
    pub socket_poll: Duration,
    /// The game container's `/run/udev`; `None` turns the controller relay off.
    pub udev_dir: Option<PathBuf>,
    /// First delay of every retry (keys Secret, status writes, Wolf's event stream).
    pub retry_initial: Duration,
    /// Longest delay of every retry.
    pub retry_max: Duration,
}

impl AgentConfig {
    /// [`AgentConfig::new`] for warm pod `pod`: the Session is learnt from the pod's claim.
    pub fn warm(pod: &str, namespace: &str, pod_ip: IpAddr, wolf_socket: impl Into<PathBuf>) -> Self {
        AgentConfig {
            warm_pod: Some(pod.to_owned()),
            ..AgentConfig::new("", namespace, pod_ip, wolf_socket)
        }
    }

    /// Defaults for Session `session` in `namespace` of a pod at `pod_ip` with Wolf's socket
    /// at `wolf_socket`: health on [`stream::AGENT_HEALTH_PORT`], pause grace 60 s, Wolf
    /// timeout 120 s, socket poll 200 ms, udev relay into [`DEFAULT_UDEV_DIR`], retries from
    /// 200 ms to 10 s.
    pub fn new(session: &str, namespace: &str, pod_ip: IpAddr, wolf_socket: impl Into<PathBuf>) -> Self {
        AgentConfig {
            session: session.to_owned(),
            warm_pod: None,
            namespace: namespace.to_owned(),
            pod_ip,
            wolf_socket: wolf_socket.into(),
            health_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), stream::AGENT_HEALTH_PORT),
            metrics_addr: None,
            metrics: Metrics::new(),
            pause_grace: Duration::from_secs(60),
            wolf_timeout: Duration::from_secs(120),
            socket_poll: Duration::from_millis(200),
            udev_dir: Some(PathBuf::from(DEFAULT_UDEV_DIR)),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
        }
    }
}
