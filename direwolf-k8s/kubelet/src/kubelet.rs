//! The stand-in's main loop: connect, set up the bridge and the API forwarder, keep the Node
//! Ready, watch the pods bound to the node and give each a worker; on SIGTERM/SIGINT (or the
//! end of `--exit-with-pid`) kill every pod's processes and remove the namespaces and the bridge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Args;
use crate::context::{ApiEndpoint, Context};
use crate::images::ImageMap;
use crate::net::BridgeNetwork;
use crate::node::{self, NodeSpec};
use crate::pod::{self, Ending};

/// A running pod worker.
struct Worker {
    updates: watch::Sender<Pod>,
    end: watch::Sender<Option<Ending>>,
    task: JoinHandle<()>,
}

/// The API client and the CA (PEM) pods should trust.
async fn connect(args: &Args) -> anyhow::Result<(Config, Option<String>)> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => {
            Kubeconfig::read_from(path).with_context(|| format!("read the kubeconfig {}", path.display()))?
        }
        None => Kubeconfig::read().context("read the kubeconfig (KUBECONFIG or ~/.kube/config)")?,
    };
    let context = kubeconfig.current_context.clone();
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context.as_ref())
        .and_then(|c| c.context.as_ref())
        .and_then(|c| kubeconfig.clusters.iter().find(|k| k.name == c.cluster))
        .and_then(|k| k.cluster.clone());
    let ca_pem = match cluster {
        Some(c) => match (c.certificate_authority_data, c.certificate_authority) {
            (Some(data), _) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .context("the kubeconfig's certificate-authority-data is not base64")?;
                Some(String::from_utf8(bytes).context("the kubeconfig's CA is not PEM text")?)
            }
            (None, Some(file)) => {
                Some(std::fs::read_to_string(&file).with_context(|| format!("read the CA {file}"))?)
            }
            (None, None) => None,
        },
        None => None,
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("the kubeconfig is not usable")?;
    Ok((config, ca_pem))
}

/// Runs the stand-in until SIGTERM/SIGINT or the end of `--exit-with-pid`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let images = match &args.images {
        Some(path) => ImageMap::load(path)?,
        None => ImageMap::default(),
    };
    let (config, ca_pem) = connect(&args).await?;
    let upstream =
        crate::forward::upstream_of(&config.cluster_url).context("the API server URL has no host")?;
    let client = Client::try_from(config).context("an API client")?;
    let network = Arc::new(
        BridgeNetwork::start(&args.bridge, args.pod_cidr)
            .await
            .context("the pod bridge")?,
    );
    let gateway = network.gateway();
    let forwarder = crate::forward::start(SocketAddr::from((gateway, args.api_port)), upstream).await?;
    let node = NodeSpec {
        name: args.node_name.clone(),
        labels: args.node_labels.clone(),
        capacity: args.capacity.clone(),
        address: gateway,
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        images,
        state_dir: args.state_dir.clone(),
        node: node.clone(),
        network: network.clone(),
        api: ApiEndpoint {
            host: gateway,
            port: args.api_port,
            ca_pem,
        },
    });
    let mut background = vec![
        forwarder,
        tokio::spawn(node::keep_ready(client.clone(), node.clone())),
    ];
    if args.schedule {
        background.push(tokio::spawn(node::schedule(client.clone(), node.clone())));
    }
    tracing::info!(node = %node.name, cidr = %args.pod_cidr, bridge = %args.bridge, "direwolf-kubelet running");
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let result = tokio::select! {
        r = watch_pods(&ctx, &mut workers) => r,
        r = stopped(args.exit_with_pid) => r,
    };
    tracing::info!("stopping: killing every pod's processes");
    for task in background {
        task.abort();
    }
    for (_, w) in workers.drain() {
        let _ = w.end.send(Some(Ending {
            grace: Duration::ZERO,
            delete: false,
        }));
        let _ = w.task.await;
    }
    network.stop().await.context("removing the bridge")?;
    result
}

/// Resolves on SIGTERM, SIGINT or the end of process `pid`.
async fn stopped(pid: Option<u32>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let owner = async {
        match pid {
            Some(pid) => {
                while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
        () = owner => {}
    }
    Ok(())
}

/// Watches the pods bound to the node: a worker per pod (by UID), fed each new version.
async fn watch_pods(ctx: &Arc<Context>, workers: &mut HashMap<String, Worker>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.node.name);
    let config = watcher::Config::default().fields(&selector);
    let mut stream = watcher(pods, config).boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => seen(ctx, workers, pod),
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(w) = workers.get(&uid) {
                    let _ = w.end.send(Some(Ending {
                        grace: grace(&pod),
                        delete: false,
                    }));
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
        workers.retain(|_, w| !w.task.is_finished());
    }
    anyhow::bail!("the pod watch ended")
}

fn grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// A pod version: to its worker, or to a new one.
fn seen(ctx: &Arc<Context>, workers: &mut HashMap<String, Worker>, pod: Pod) {
    let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.node.name.as_str());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !on_node {
        return;
    }
    if let Some(w) = workers.get(&uid) {
        let _ = w.updates.send(pod);
        return;
    }
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    if finished && pod.metadata.deletion_timestamp.is_none() {
        // Ended before this stand-in started: nothing to run, as a restarted kubelet.
        return;
    }
    tracing::info!(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()), "pod bound to the node");
    let (updates, updates_rx) = watch::channel(pod);
    let (end, end_rx) = watch::channel(None);
    let task = tokio::spawn(pod::run(ctx.clone(), updates_rx, end_rx));
    workers.insert(uid, Worker { updates, end, task });
}
