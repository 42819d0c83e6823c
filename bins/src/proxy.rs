//! `direwolf proxy`: the Moonlight endpoint of a Kubernetes installation
//! (`docs/protocol/kubernetes.md` § The proxy).
//!
//! Everything lives in the API server of one namespace: pairings, users and apps as custom
//! resources (one shared watch per kind, [`Watches`], with a write-through overlay), streams as `Session` objects the operator
//! provisions ([`KubeLauncher`]), pending PINs as Secrets so the PIN page works on any replica
//! ([`KubePinBroker`]), and the server certificate in the Secret `direwolf-identity`, so every
//! replica presents the same one. Replicas share no memory.
//!
//! The health port ([`direwolf_core::health`], `--health-bind`) answers `/livez` (always 200
//! while the process serves) and `/readyz` (200 once every watch has completed its initial
//! list, 503 before).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use direwolf_core::admin::AdminToken;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::sessions::track_phases_of;
use direwolf_core::metrics::{LaunchMetrics, MeteredLauncher, Metrics, PairingMetrics, RelayCollector};
use direwolf_core::relay::{Relay, RelayConfig, SharedPorts};
use direwolf_core::{Launcher, MemoAppCatalog, PinBroker, Stores, UserName, UserStoreExt};
use direwolf_k8s::crd;
use direwolf_k8s::launcher::{KubeLauncher, LauncherConfig};
use direwolf_k8s::pin_broker::{KubePinBroker, PinBrokerConfig};
use direwolf_k8s::relays::SessionRelays;
use direwolf_k8s::stores::KubeStores;
use direwolf_k8s::watch::Watches;
use direwolf_moonlight::MoonlightServer;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use tracing::info;

use crate::metrics::{MetricsArgs, PHASE_REFRESH};
use crate::shutdown::Shutdown;

/// How long start-up waits for the caches' initial lists.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The namespace holding the direwolf objects (default: the kubeconfig context's
    /// namespace; in a pod, its own).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    #[command(flatten)]
    pub listen: crate::listen::ListenArgs,

    /// `hostname` in `/serverinfo`.
    #[arg(long, value_name = "NAME", default_value = "Direwolf")]
    pub hostname: String,

    /// The address clients reach the proxy on (the LoadBalancer IP): `LocalIP` and the host of
    /// the PIN page URL.
    #[arg(long, value_name = "IP", env = "DIREWOLF_EXTERNAL_ADDRESS")]
    pub external_address: Option<IpAddr>,

    /// Seconds a launch or resume waits for the operator to publish the stream URL (clients
    /// give up after ~55 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=110))]
    pub launch_timeout: u64,

    /// Seconds a pairing waits for its PIN.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub pin_timeout: u64,

    /// The user a pairing belongs to when the PIN page names none (created if missing).
    #[arg(long, value_name = "USER", default_value = UserName::DEFAULT)]
    pub default_user: UserName,

    /// Address and port of the health port (`/livez`, `/readyz`, `/metrics`; plain HTTP); port 0 picks a
    /// free one.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub health_bind: SocketAddr,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Address the stream relay listens on: each Session's public ports (`status.ports`) are
    /// forwarded from here to its pod. Default: every address.
    #[arg(long, value_name = "IP", env = "DIREWOLF_RELAY_IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub relay_ip: IpAddr,

    /// Do not relay streams: for an operator running with `--exposure load-balancer` or
    /// `gateway`, where Wolf listens on the public ports and the operator exposes them.
    #[arg(long)]
    pub no_relay: bool,

    /// Relay every Session on one port set (RTSP 48010/TCP, control 47999, video 48100, audio
    /// 48200/UDP), told apart by what the clients send; the operator must run with
    /// `--shared-ports` too, so that every Session's ports are that set.
    #[arg(long, conflicts_with = "no_relay")]
    pub shared_ports: bool,

    /// Hand admitted IPv4 flows to the kernel (nftables DNAT/SNAT with conntrack), as
    /// `[relay] fast_path = true` in `serve`; needs CAP_NET_ADMIN, `nft` and IPv4 forwarding in
    /// the pod, else the relay carries every datagram (one warning says why).
    #[arg(long, conflicts_with = "no_relay")]
    pub fast_path: bool,

    /// Serve the admin API (HTTPS, with the server's certificate) with the token in this file
    /// (a mounted Secret); without it, no admin API.
    #[arg(long, value_name = "FILE", env = "DIREWOLF_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// Serve the admin API with the token in this Secret of the namespace (key `token`),
    /// created with a random token by the first replica that finds none (what `direwolf
    /// install` sets up: `direwolf-admin-token`).
    #[arg(
        long,
        value_name = "NAME",
        env = "DIREWOLF_ADMIN_TOKEN_SECRET",
        conflicts_with = "admin_token_file"
    )]
    pub admin_token_secret: Option<String>,

    /// The admin API's port on the `--bind` addresses (with `--admin-token-file` or
    /// `--admin-token-secret`). 0 picks a free port.
    #[arg(long, value_name = "PORT", default_value_t = crate::admin_port::DEFAULT_ADMIN_PORT, env = "DIREWOLF_ADMIN_PORT")]
    pub admin_port: u16,
}

pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(proxy(args))
}

/// Fails with an install hint when the direwolf CRDs are not served.
async fn check_crds(client: &kube::Client, namespace: &str) -> anyhow::Result<()> {
    let params = ListParams::default().limit(1);
    let hint = "the direwolf CustomResourceDefinitions are not installed: run \
                `direwolf crd | kubectl apply --server-side -f -`";
    let check = async {
        Api::<crd::App>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?;
        Api::<crd::User>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?;
        Api::<crd::Pairing>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?;
        Api::<crd::Session>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?;
        Ok::<_, kube::Error>(())
    };
    match tokio::time::timeout(SYNC_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => anyhow::bail!("{hint}"),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!(
            "cannot list direwolf objects in namespace {namespace:?} (is the API server reachable \
             and may this service account list them?)"
        ))),
        Err(_) => anyhow::bail!("the Kubernetes API server did not answer within {SYNC_TIMEOUT:?}"),
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    crate::open_files::raise(crate::open_files::NEEDED);
    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster service account)")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    // One watch per kind, shared by the stores, the launcher, the PIN broker and the reporter.
    let watches = Watches::new(client.clone(), &namespace);
    let readers = Readers::start(&watches, &client, &args);
    let metrics = Metrics::new();
    // The health listener starts before the sync so the liveness probe answers during it.
    let health = start_health(&args, watches.clone(), metrics.clone()).await?;
    let metrics_port = args.metrics.serve(&metrics).await?;
    check_crds(&client, &namespace).await?;
    watches
        .wait_ready(SYNC_TIMEOUT)
        .await
        .context("the caches did not sync")?;
    // Read before anything is served, so a bad token stops the start-up.
    let token = admin_token(&args, &client, &namespace).await?;
    let (server, parts) = moonlight_server(&args, readers, &metrics).await?;
    let admin = match token {
        Some(token) => {
            let (stores, broker, launcher, oidc) = parts;
            let sso = crate::admin_sso::web_ui(oidc, args.listen.oidc_admin_redirect_url.clone());
            crate::admin_port::start(
                &args.listen,
                args.admin_port,
                &stores,
                broker,
                launcher,
                token,
                |api| match sso {
                    Some((sso, redirect)) => api.with_single_sign_on(sso, redirect),
                    None => api,
                },
            )
            .await?
        }
        None => Vec::new(),
    };
    let admin_addrs: Vec<_> = admin.iter().map(|a| a.local_addr()).collect();
    let phases = track_phases_of(
        {
            let watches = watches.clone();
            move || watches.session_phases()
        },
        &metrics,
        PHASE_REFRESH,
    );
    info!(
        namespace = %namespace,
        server.fingerprint = %server.server_fingerprint(),
        http = %crate::telemetry::addrs(&server.http_addrs()),
        https = %crate::telemetry::addrs(&server.https_addrs()),
        admin = %crate::telemetry::addrs(&admin_addrs),
        "direwolf proxy started"
    );
    // Hand-edited problems (a Pairing of a missing User, Apps sharing an id) are reported on the
    // objects' status.
    let fast_path = match args.fast_path {
        true => crate::fast_path::start().await,
        false => None,
    };
    let relay_task = start_relays(&args, fast_path.clone(), &watches, &metrics)?;
    let report_task = tokio::spawn(direwolf_k8s::report::run(watches));
    let result = server.run_until(shutdown.wait()).await;
    drop(admin);
    health.stop();
    drop(metrics_port);
    phases.abort();
    report_task.abort();
    if let Some((stop, task)) = relay_task {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(fast_path) = fast_path {
        fast_path.shutdown().await;
    }
    result.context("the Moonlight server failed")?;
    info!("direwolf proxy stopped");
    Ok(())
}

/// What the Moonlight server runs on, all reading one set of watches.
/// Starts the relay of every Session's stream ports (`direwolf_k8s::relays`), unless disabled.
fn start_relays(
    args: &ProxyArgs,
    fast_path: Option<direwolf_core::relay::FastPath>,
    watches: &Watches,
    metrics: &Metrics,
) -> anyhow::Result<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>> {
    if args.no_relay {
        return Ok(None);
    }
    // The operator allocates the ports; the engine's own allocator is not used here.
    let mut config = RelayConfig::new(args.relay_ip, 1..=4);
    config.fast_path = fast_path;
    if args.shared_ports {
        config.shared_ports = Some(SharedPorts::default());
        // The agent's stream URL names the shared RTSP port: no port of its own is possible.
        config.shared_rtsp_fallback = false;
    }
    let relay = Relay::new(config).context("cannot start the stream relay")?;
    metrics.register_collector(RelayCollector::new(relay.clone()));
    let relays = SessionRelays::new(watches, relay);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    info!(ip = %args.relay_ip, "relaying every session's stream ports");
    let task = tokio::spawn(relays.run(async move {
        let _ = stopped.await;
    }));
    Ok(Some((stop, task)))
}

struct Readers {
    stores: KubeStores,
    launcher: KubeLauncher,
    broker: KubePinBroker,
}

impl Readers {
    /// The readers of `watches`; problems users should see (Apps sharing an id) become
    /// Kubernetes Events through `client`.
    fn start(watches: &Watches, client: &kube::Client, args: &ProxyArgs) -> Self {
        let launcher = LauncherConfig {
            launch_timeout: Duration::from_secs(args.launch_timeout),
            ..LauncherConfig::default()
        };
        let reporter = Reporter {
            controller: "direwolf-proxy".to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Readers {
            stores: KubeStores::with_watches(watches).with_recorder(recorder),
            launcher: KubeLauncher::with_watches(watches, launcher),
            broker: KubePinBroker::with_watches(watches, PinBrokerConfig::default()),
        }
    }
}

/// Binds the health port: `/livez`, `/readyz` once `watches` have synced, and `/metrics`.
async fn start_health(
    args: &ProxyArgs,
    watches: Watches,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HealthServer> {
    let probes = Probes::new(move || {
        if watches.ready() {
            Ok(())
        } else {
            Err("the caches of the custom resources have not synced".to_owned())
        }
    })
    .with_metrics(metrics);
    HealthServer::bind(args.health_bind, probes)
        .await
        .with_context(|| format!("cannot bind the health port {}", args.health_bind))
}

/// The core stores the server uses: repeated app lists and art (every client's app grid) come
/// from a short-lived memo; the default user exists.
async fn core_stores(stores: &KubeStores, default_user: &UserName) -> anyhow::Result<Stores> {
    let mut core_stores = stores.stores();
    core_stores.apps = Arc::new(MemoAppCatalog::new(
        core_stores.apps.clone(),
        direwolf_core::store::DEFAULT_MEMO_TTL,
    ));
    if core_stores.users.ensure(default_user).await? {
        info!(user = %default_user, "created the default user");
    }
    Ok(core_stores)
}

/// The admin API's token: from `--admin-token-file`, or from (or made into) the Secret of
/// `--admin-token-secret`; `None`: no admin API.
async fn admin_token(
    args: &ProxyArgs,
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<Option<AdminToken>> {
    if let Some(path) = &args.admin_token_file {
        let token = AdminToken::read(path)
            .with_context(|| format!("cannot read the admin token {}", path.display()))?;
        return Ok(Some(token));
    }
    let Some(name) = &args.admin_token_secret else {
        return Ok(None);
    };
    let secrets = kube::Api::namespaced(client.clone(), namespace);
    let text = direwolf_k8s::admin_token::load_or_create(&secrets, name, || {
        AdminToken::generate().expose().to_owned()
    })
    .await?;
    let token = AdminToken::parse(&text).with_context(|| format!("the admin token in Secret {name:?}"))?;
    Ok(Some(token))
}

/// What the admin API runs on: the server's stores, PIN broker and launcher, and the single
/// sign-on the PIN page uses (for the web UI too).
type AdminParts = (
    Stores,
    Arc<dyn PinBroker>,
    Arc<dyn Launcher>,
    Option<Arc<direwolf_moonlight::oidc::OidcLogin>>,
);

/// Builds and binds the Moonlight server on the synced readers; returns it with what it runs on.
async fn moonlight_server(
    args: &ProxyArgs,
    readers: Readers,
    metrics: &Metrics,
) -> anyhow::Result<(MoonlightServer, AdminParts)> {
    let launcher: Arc<dyn Launcher> = Arc::new(MeteredLauncher::new(
        Arc::new(readers.launcher),
        LaunchMetrics::register(metrics),
    ));
    let broker: Arc<dyn PinBroker> = Arc::new(readers.broker);
    let stores = core_stores(&readers.stores, &args.default_user).await?;
    let (builder, oidc) = args.listen.apply(MoonlightServer::builder())?;
    let mut builder = builder
        .with_stores(stores.clone())
        .with_launcher(launcher.clone())
        .with_pairing_metrics(PairingMetrics::register(metrics))
        .with_pin_broker(broker.clone())
        .with_hostname(args.hostname.clone())
        .with_default_user(args.default_user.clone())
        .with_mdns(false)
        .with_pin_timeout(Duration::from_secs(args.pin_timeout));
    if let Some(ip) = args.external_address {
        builder = builder.with_external_address(ip);
    }
    let server = builder
        .build()
        .await
        .context("cannot start the Moonlight server")?;
    Ok((server, (stores, broker, launcher, oidc)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    fn parse(args: &[&str]) -> Result<ProxyArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("proxy").chain(args.iter().copied())).map(|w| w.proxy)
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse(&[]).unwrap();
        assert_eq!(
            (
                args.listen.http_port,
                args.listen.https_port,
                args.health_bind,
                args.launch_timeout
            ),
            (47989, 47984, "0.0.0.0:8080".parse().unwrap(), 45)
        );
        assert_eq!(args.default_user.as_str(), "default");
        let args = parse(&[
            "--namespace",
            "games",
            "--bind",
            "127.0.0.1",
            "--launch-timeout",
            "5",
            "--external-address",
            "203.0.113.10",
            "--health-bind",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(args.namespace.as_deref(), Some("games"));
        assert_eq!(args.launch_timeout, 5);
        assert_eq!(args.external_address, Some("203.0.113.10".parse().unwrap()));
        for bad in [
            &["--launch-timeout", "0"][..],
            &["--launch-timeout", "500"],
            &["--bind", "localhost"],
            &["--health-bind", "127.0.0.1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
