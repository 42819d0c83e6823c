//! `direwolf agent`: the wolf-agent sidecar of a stream pod (library:
//! `direwolf_k8s::agent`). It registers its Session's stream with the pod's Wolf, follows
//! Wolf's events into the Session status, replays Wolf's virtual controllers into the game
//! container, and stops Wolf's session and exits 0 when the Session is deleted.
//!
//! Credentials: `KUBECONFIG` if set, else the pod's service account (whose Role allows only its
//! own Session, its status and its keys Secret).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use direwolf_k8s::agent::{Agent, AgentConfig};
use direwolf_k8s::stream::{self, env};
use tracing::info;

use crate::metrics::MetricsArgs;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The Session this pod streams.
    #[arg(long, value_name = "NAME", env = env::SESSION)]
    pub session: Option<String>,

    /// Warm mode: this pod's own name (downward API `metadata.name`); the agent waits for Wolf,
    /// then for the operator to label the pod with a Session, instead of `--session`.
    #[arg(long, value_name = "POD", env = env::WARM_POD, conflicts_with = "session")]
    pub warm_pod: Option<String>,

    /// The namespace of the Session (downward API `metadata.namespace`).
    #[arg(long, value_name = "NS", env = env::POD_NAMESPACE)]
    pub namespace: Option<String>,

    /// The pod's IP (downward API `status.podIP`); the fake RTSP IP derives from it.
    #[arg(long, value_name = "IP", env = env::POD_IP)]
    pub pod_ip: Option<IpAddr>,

    /// Wolf's API socket.
    #[arg(long, value_name = "PATH", env = env::WOLF_SOCKET_PATH)]
    pub wolf_socket: Option<PathBuf>,

    /// Port of `/livez`, `/readyz` and `/metrics` (plain HTTP).
    #[arg(long, value_name = "PORT", default_value_t = stream::AGENT_HEALTH_PORT)]
    pub health_port: u16,

    /// Address of the health listener.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub health_bind: IpAddr,

    /// Seconds a paused stream (the client went away) is kept for a resume before it is ended.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub pause_grace: u64,

    /// Seconds Wolf may take to accept connections on its socket, and then to register the
    /// stream, before the stream is reported failed (StreamStartFailed, phase Ended).
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub wolf_timeout: u64,

    /// The game container's udev directory (shared volume): Wolf's virtual controllers are
    /// written there and announced with netlink uevents (needs CAP_NET_ADMIN).
    #[arg(long, value_name = "DIR", default_value = direwolf_k8s::agent::DEFAULT_UDEV_DIR)]
    pub udev_dir: PathBuf,

    /// Do not relay Wolf's virtual controllers into the game container.
    #[arg(long)]
    pub no_udev: bool,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

fn required<T>(value: Option<T>, flag: &str, var: &str) -> anyhow::Result<T> {
    value.with_context(|| format!("missing {flag} (or environment variable {var})"))
}

impl AgentArgs {
    /// The library's configuration; a clear error names each missing setting.
    pub fn config(&self) -> anyhow::Result<AgentConfig> {
        let namespace = required(self.namespace.clone(), "--namespace", env::POD_NAMESPACE)?;
        let pod_ip = required(self.pod_ip, "--pod-ip", env::POD_IP)?;
        let socket = required(self.wolf_socket.clone(), "--wolf-socket", env::WOLF_SOCKET_PATH)?;
        let mut config = match &self.warm_pod {
            Some(pod) => AgentConfig::warm(pod, &namespace, pod_ip, socket),
            None => {
                let session = required(self.session.clone(), "--session", env::SESSION)?;
                AgentConfig::new(&session, &namespace, pod_ip, socket)
            }
        };
        config.health_addr = SocketAddr::new(self.health_bind, self.health_port);
        config.metrics_addr = self.metrics.metrics_bind;
        config.pause_grace = Duration::from_secs(self.pause_grace);
        config.wolf_timeout = Duration::from_secs(self.wolf_timeout);
        config.udev_dir = (!self.no_udev).then(|| self.udev_dir.clone());
        Ok(config)
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster service account)")?;
        info!(session = %config.session, warm_pod = ?config.warm_pod, namespace = %config.namespace, "direwolf agent started");
        let exit = Agent::new(client, config).run().await?;
        info!(?exit, "direwolf agent done");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs {
            session: Some("alice-desktop-x7k2p".into()),
            warm_pod: None,
            namespace: Some("games".into()),
            pod_ip: Some("10.1.2.3".parse().expect("an IP")),
            wolf_socket: Some(stream::WOLF_SOCKET_PATH.into()),
            health_port: stream::AGENT_HEALTH_PORT,
            health_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            pause_grace: 60,
            wolf_timeout: 120,
            udev_dir: "/run/udev".into(),
            no_udev: false,
            metrics: MetricsArgs::default(),
        }
    }

    #[test]
    fn each_missing_setting_is_named() {
        type Unset = fn(&mut AgentArgs);
        let cases: [(Unset, &str); 4] = [
            (
                |a| a.session = None,
                "--session (or environment variable DIREWOLF_SESSION)",
            ),
            (
                |a| a.namespace = None,
                "--namespace (or environment variable POD_NAMESPACE)",
            ),
            (|a| a.pod_ip = None, "--pod-ip (or environment variable POD_IP)"),
            (
                |a| a.wolf_socket = None,
                "--wolf-socket (or environment variable WOLF_SOCKET_PATH)",
            ),
        ];
        for (unset, named) in cases {
            let mut a = args();
            unset(&mut a);
            let err = a.config().expect_err("missing setting").to_string();
            assert_eq!(err, format!("missing {named}"));
        }
    }

    #[test]
    fn flags_become_the_configuration() {
        let mut a = args();
        a.no_udev = true;
        a.pause_grace = 5;
        let config = a.config().expect("complete");
        assert_eq!(config.session, "alice-desktop-x7k2p");
        assert_eq!(config.health_addr.port(), 8081);
        assert_eq!(config.pause_grace, Duration::from_secs(5));
        assert_eq!(config.udev_dir, None);
        assert_eq!(config.warm_pod, None);
    }

    #[test]
    fn a_warm_pod_needs_no_session() {
        let mut a = args();
        a.session = None;
        a.warm_pod = Some("test-pattern-warm-ab1c2".into());
        let config = a.config().expect("complete");
        assert_eq!(config.warm_pod.as_deref(), Some("test-pattern-warm-ab1c2"));
        assert_eq!(config.session, "");
    }
}
