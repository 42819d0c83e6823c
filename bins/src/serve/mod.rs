//! `direwolf serve`: a single-machine Moonlight server.
//!
//! Pairings, users, sessions and the server identity live in an embedded database in the data
//! directory, so they survive restarts; the apps come from the configuration file (the file is
//! the source of truth for apps in this mode), or, without one, a single `Desktop` app.
//!
//! With `[[wolf]]` entries in the configuration, launches are placed on those Wolf instances by
//! a [`WolfPool`], whose relay forwards each session's stream ports (RTSP, video, audio,
//! control) from this server's address; without, clients can pair and list apps but not stream.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use direwolf_core::accounts::PairingLinks;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::memory::InMemoryAppCatalog;
use direwolf_core::metrics::sessions::track_phases;
use direwolf_core::metrics::{
    LaunchMetrics, MeteredLauncher, Metrics, PairingMetrics, RelayCollector, WolfApiMetrics,
};
use direwolf_core::pack::WolfHost;
use direwolf_core::pack::{PoolConfig, PoolHost, WolfPool};
use direwolf_core::persistent::PersistentStores;
use direwolf_core::relay::{FastPath, Relay, RelayConfig, WolfPorts};
use direwolf_core::store::LayeredAppCatalog;
use direwolf_core::wolf_api::{self, WolfApiSocket};
use direwolf_core::{
    AppCatalog, AppId, InMemoryPinBroker, Launcher, NoStreamingHost, PinBroker, SessionStore, Stores,
    UserName, UserStoreExt,
};
use direwolf_moonlight::MoonlightServer;
use direwolf_wolf_client::CallObserver;
use tracing::{info, warn};

use self::config::{AppConfig, Config, RelaySettings, WolfApi, WolfConfig, default_catalog};
use self::wolves::WolfWatch;
use crate::metrics::{MetricsArgs, PHASE_REFRESH};
use crate::shutdown::Shutdown;

mod admin;
mod check;
mod config;
mod wolves;

/// Options of `direwolf serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of the database (pairings, users, sessions, server identity). Created with mode
    /// 0700. Default: `$XDG_DATA_HOME/direwolf`, else `~/.local/share/direwolf`.
    #[arg(long, value_name = "DIR", env = "DIREWOLF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(flatten)]
    pub listen: crate::listen::ListenArgs,

    /// Configuration file (TOML): hostname, apps, Wolf hosts, relay. Without it, one app
    /// `Desktop` (id 1) and no streaming.
    #[arg(long, value_name = "FILE", env = "DIREWOLF_CONFIG")]
    pub config: Option<PathBuf>,

    /// The name clients show for this server. Default: the configuration file's `hostname`, else
    /// the machine's host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Do not advertise the server over mDNS (clients then add it by address).
    #[arg(long)]
    pub no_mdns: bool,

    /// Seconds a pairing client waits for its PIN to be entered on the PIN page.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub pin_timeout: u64,

    /// The user new pairings belong to.
    #[arg(long, value_name = "USER", default_value = UserName::DEFAULT)]
    pub default_user: UserName,

    /// Serve `/livez`, `/readyz` and `/metrics` (plain HTTP) on this address, apart from the
    /// GameStream ports. Ready: listening, the database open, and at least one Wolf answering
    /// when any is configured.
    #[arg(long, value_name = "ADDR:PORT", env = "DIREWOLF_HEALTH_BIND")]
    pub health_bind: Option<SocketAddr>,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Serve the subset of Wolf's API that Wolf's managers use (apps, clients, pending pairings)
    /// on a Unix socket at this path, created with mode 0660: whoever may open it manages apps
    /// and pairings, with no other authentication (as with Wolf's own socket). A stale socket
    /// there is replaced; the socket is removed on shutdown. Off by default.
    #[arg(long, value_name = "PATH", env = "DIREWOLF_WOLF_API_SOCKET")]
    pub wolf_api_socket: Option<PathBuf>,

    /// Serve the admin API (HTTPS, with the server's certificate; bearer token in the data
    /// directory's `admin-token`) on this port of the `--bind` addresses. 0 picks a free port.
    #[arg(long, value_name = "PORT", default_value_t = crate::admin_port::DEFAULT_ADMIN_PORT, env = "DIREWOLF_ADMIN_PORT")]
    pub admin_port: u16,

    /// Check the configuration, the files it names, the data directory, every Wolf (API version,
    /// app ids) and every port, print one line per finding, and exit: 0 if all is well, else 1.
    #[arg(long)]
    pub check: bool,
}

/// The default data directory: `$XDG_DATA_HOME/direwolf`, else `$HOME/.local/share/direwolf`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Ok(xdg.join("direwolf"));
    }
    let home = non_empty("HOME").context("neither XDG_DATA_HOME nor HOME is set: pass --data-dir")?;
    Ok(home.join(".local/share/direwolf"))
}

/// The machine's host name, if the kernel reports one.
fn system_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Everything `run` needs, resolved from the arguments before the runtime starts.
#[derive(Debug)]
struct Plan {
    data_dir: PathBuf,
    hostname: String,
    catalog: InMemoryAppCatalog,
    app_count: usize,
    /// Streaming hosts (empty: no streaming).
    wolves: Vec<WolfConfig>,
    relay: RelaySettings,
    /// Wolf app id per app, from `wolf_app_id`.
    host_apps: HashMap<AppId, String>,
    /// The configured apps (empty without a configuration file).
    apps: Vec<AppConfig>,
    host_lost_after: Duration,
    /// The configuration file's `allow_unauthenticated_pin`.
    allow_unauthenticated_pin: bool,
}

fn plan(args: &ServeArgs) -> anyhow::Result<Plan> {
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let catalog_entries = match &config {
        Some(config) => config.catalog(),
        None => default_catalog(),
    };
    let hostname = args
        .hostname
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.hostname.clone()))
        .or_else(system_hostname)
        .unwrap_or_else(|| "direwolf".to_owned());
    if hostname.trim().is_empty() || hostname.chars().any(char::is_control) {
        anyhow::bail!("--hostname {hostname:?} must be non-empty and without control characters");
    }
    let host_lost_after = config
        .as_ref()
        .map_or(Duration::from_secs(20), |c| c.host_lost_after);
    let (wolves, relay, host_apps) = match &config {
        Some(config) => (
            config.wolves.clone(),
            config.relay.clone(),
            config
                .apps
                .iter()
                .filter_map(|a| a.wolf_app_id.clone().map(|w| (a.app.id, w)))
                .collect(),
        ),
        None => (Vec::new(), RelaySettings::default(), HashMap::new()),
    };
    Ok(Plan {
        data_dir,
        hostname,
        app_count: catalog_entries.len(),
        apps: config.as_ref().map(|c| c.apps.clone()).unwrap_or_default(),
        catalog: InMemoryAppCatalog::with_apps(catalog_entries),
        wolves,
        relay,
        host_apps,
        host_lost_after,
        allow_unauthenticated_pin: config.as_ref().is_some_and(|c| c.allow_unauthenticated_pin),
    })
}

/// Runs `direwolf serve` until SIGINT or SIGTERM; with `--check`, checks and returns whether
/// all is well.
///
/// # Errors
///
/// A bad configuration file, an unusable data directory (or one in use by another process),
/// ports that cannot be bound, or a server failure.
pub fn run(args: ServeArgs) -> anyhow::Result<bool> {
    // Two workers: plenty for a home server's handful of clients (RSA work during pairing runs
    // on the blocking pool), and a small idle footprint.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.check {
        return Ok(runtime.block_on(check::run(&args)));
    }
    let plan = plan(&args)?;
    crate::open_files::raise(crate::open_files::NEEDED);
    runtime.block_on(serve(args, plan))?;
    Ok(true)
}

/// The address the relay listens on: the configured one, else the only IPv4 `--bind` address,
/// else every IPv4 address (the `sessionUrl0` host is the address each client used).
fn relay_address(relay: &RelaySettings, bind: &[IpAddr]) -> IpAddr {
    if let Some(ip) = relay.public_address {
        return ip;
    }
    let v4: Vec<&IpAddr> = bind.iter().filter(|ip| ip.is_ipv4()).collect();
    match v4.as_slice() {
        [only] => **only,
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// A client of `wolf`'s API whose calls give up after `timeout`, and tell `observer` of each.
fn wolf_client(
    wolf: &WolfConfig,
    timeout: Duration,
    observer: Option<Arc<dyn CallObserver>>,
) -> anyhow::Result<direwolf_wolf_client::WolfClient> {
    let mut builder = direwolf_wolf_client::WolfClient::builder().with_timeout(timeout);
    if let Some(observer) = observer {
        builder = builder.with_observer(observer);
    }
    let builder = match &wolf.api {
        WolfApi::Unix(path) => builder.with_unix_socket(path.clone()),
        WolfApi::Tcp(addr) => builder.with_tcp(addr.clone()),
    };
    builder
        .build()
        .with_context(|| format!("wolf {}: invalid api settings", wolf.name))
}

/// Probes every configured Wolf in the background (start-up does not wait for them).
fn watch_wolves(wolves: &[WolfConfig]) -> anyhow::Result<WolfWatch> {
    let mut watch = WolfWatch::default();
    for wolf in wolves {
        watch.watch(
            wolf.name.clone(),
            wolf_client(wolf, Duration::from_secs(10), None)?,
        );
    }
    Ok(watch)
}

/// The Wolf pool of the `[[wolf]]` entries: one relay, one [`WolfHost`] per entry.
async fn wolf_pool(
    plan: &Plan,
    fast_path: Option<FastPath>,
    bind: &[IpAddr],
    sessions: Arc<dyn SessionStore>,
    apps: Arc<dyn AppCatalog>,
    metrics: &Metrics,
) -> anyhow::Result<WolfPool> {
    let wolf_api: Arc<dyn CallObserver> = Arc::new(WolfApiMetrics::register(metrics));
    let mut relay_config = RelayConfig::new(relay_address(&plan.relay, bind), plan.relay.port_range.clone());
    relay_config.udp_idle_timeout = plan.relay.udp_idle_timeout;
    relay_config.shared_ports = plan.relay.shared;
    relay_config.fast_path = fast_path;
    let relay = Relay::new(relay_config).context("invalid [relay] settings")?;
    let mut hosts = Vec::with_capacity(plan.wolves.len());
    for wolf in &plan.wolves {
        let client = wolf_client(wolf, Duration::from_secs(10), Some(wolf_api.clone()))?;
        let mut host = PoolHost::new(
            Arc::new(WolfHost::new(wolf.name.clone(), client)),
            wolf.stream_address,
            wolf.capacity,
        );
        host.rtsp_port = wolf.rtsp_port;
        host.udp_ports = WolfPorts {
            video: wolf.video_port,
            audio: wolf.audio_port,
            control: wolf.control_port,
        };
        hosts.push(host);
    }
    let pool_config = PoolConfig {
        host_apps: plan.host_apps.clone(),
        host_lost_after: plan.host_lost_after,
        ..PoolConfig::default()
    };
    metrics.register_collector(RelayCollector::new(relay.clone()));
    WolfPool::start(hosts, relay, sessions, apps, pool_config)
        .await
        .context("cannot start the Wolf pool")
}

/// The configuration file's apps over those the admin API and the Wolf API add, which the
/// data directory keeps across restarts.
async fn app_catalog(plan: &Plan, persistent: &PersistentStores) -> anyhow::Result<Arc<dyn AppCatalog>> {
    let catalog = LayeredAppCatalog::new(Arc::new(plan.catalog.clone()), Arc::new(persistent.app_catalog()));
    for app in catalog.shadowed().await? {
        warn!(
            app.id = %app.id,
            app.title = %app.title,
            "an app added through the API has the id or title of one in the configuration file, which hides it"
        );
    }
    Ok(Arc::new(catalog))
}

async fn serve(args: ServeArgs, plan: Plan) -> anyhow::Result<()> {
    // Catch SIGINT/SIGTERM from now on, so a stop during start-up is still a clean one.
    let shutdown = Shutdown::install()?;
    let started = Arc::new(AtomicBool::new(false));
    let database = Arc::new(OnceLock::new());
    let wolves = watch_wolves(&plan.wolves)?;
    let metrics = Metrics::new();
    let health = match args.health_bind {
        Some(addr) => {
            let probes = probes(started.clone(), database.clone(), wolves).with_metrics(metrics.clone());
            Some(start_health(addr, probes).await?)
        }
        None => None,
    };
    let metrics_port = args.metrics.serve(&metrics).await?;
    let persistent = open_stores(&plan.data_dir).await?;
    // Set once, before `started`.
    let _ = database.set(persistent.clone());
    let sessions: Arc<dyn SessionStore> = Arc::new(persistent.session_store());
    let apps = app_catalog(&plan, &persistent).await?;
    let stores = Stores {
        pairings: Arc::new(persistent.pairing_store()),
        users: Arc::new(persistent.user_store()),
        apps: apps.clone(),
        sessions: sessions.clone(),
        identity: Arc::new(persistent.identity_store()),
    };
    let pairings = stores.pairings.clone();
    let admin_stores = stores.clone();
    let phases = track_phases(sessions.clone(), &metrics, PHASE_REFRESH);
    if stores.users.ensure(&args.default_user).await? {
        info!(user = %args.default_user, "created the default user");
    }

    // One broker for the PIN page, the Wolf API's `pair/client` and the admin API's approvals.
    let pins: Arc<dyn PinBroker> = Arc::new(InMemoryPinBroker::default());
    // Local accounts: the PIN page checks passwords and the pairing links the admin API issues.
    let links = PairingLinks::default();
    let mut listen = args.listen.clone();
    listen.allow_unauthenticated_pin |= plan.allow_unauthenticated_pin;
    let (builder, oidc) = listen.apply(MoonlightServer::builder())?;
    let builder = builder
        .with_stores(stores)
        .with_hostname(plan.hostname.clone())
        .with_default_user(args.default_user.clone())
        .with_mdns(!args.no_mdns)
        .with_pin_timeout(Duration::from_secs(args.pin_timeout))
        .with_pin_broker(pins.clone())
        .with_local_accounts(links.clone())
        .with_pairing_metrics(PairingMetrics::register(&metrics));
    let launches = LaunchMetrics::register(&metrics);
    let fast_path = match plan.relay.fast_path && !plan.wolves.is_empty() {
        true => crate::fast_path::start().await,
        false => None,
    };
    let launcher: Arc<dyn Launcher> = if plan.wolves.is_empty() {
        warn!(
            "no [[wolf]] host is configured: clients can pair and see the apps, but no stream can \
             start until one is added to the configuration file"
        );
        Arc::new(NoStreamingHost)
    } else {
        let pool = wolf_pool(
            &plan,
            fast_path.clone(),
            &args.listen.bind,
            sessions,
            apps.clone(),
            &metrics,
        )
        .await?;
        let config = pool.relay().config();
        let hosts: Vec<String> = pool.load().into_iter().map(|(name, _)| name).collect();
        let ports = match config.shared_ports {
            Some(p) => format!(
                "shared rtsp={} video={} audio={} control={}",
                p.rtsp, p.video, p.audio, p.control
            ),
            None => format!("{}-{}", config.port_range.start(), config.port_range.end()),
        };
        info!(hosts = %hosts.join(","), relay = %config.public_ip, %ports, "streaming through the Wolf pool");
        if let Some(advice) = crate::ephemeral::advice(&config.port_range) {
            warn!("{advice}");
        }
        Arc::new(MeteredLauncher::new(Arc::new(pool), launches))
    };
    let server = builder
        .with_launcher(launcher.clone())
        .build()
        .await
        .context("cannot start the Moonlight server")?;
    let wolf_api_task = match &args.wolf_api_socket {
        Some(path) => Some(start_wolf_api(
            path,
            wolf_api::WolfApi::new(apps.clone(), pairings, pins.clone()),
        )?),
        None => None,
    };
    let admin = admin::start(
        &plan.data_dir,
        &args.listen,
        args.admin_port,
        &admin_stores,
        pins,
        launcher,
        |api| {
            let http_port = server
                .http_addrs()
                .first()
                .map_or(args.listen.http_port, |a| a.port());
            let api = api.with_local_accounts(links, http_port);
            match crate::admin_sso::web_ui(oidc, args.listen.oidc_admin_redirect_url.clone()) {
                Some((sso, redirect)) => api.with_single_sign_on(sso, redirect),
                None => api,
            }
        },
    )
    .await?;
    let admin_addrs: Vec<_> = admin.iter().map(|a| a.local_addr()).collect();
    if let Some(web_ui) = admin_addrs.first() {
        server.set_web_ui_port(web_ui.port());
    }
    started.store(true, Ordering::SeqCst);
    let notifier = crate::notify::Notifier::from_env();
    notifier.ready();
    info!(
        data_dir = %plan.data_dir.display(),
        hostname = %plan.hostname,
        apps = plan.app_count,
        server.fingerprint = %server.server_fingerprint(),
        http = %crate::telemetry::addrs(&server.http_addrs()),
        https = %crate::telemetry::addrs(&server.https_addrs()),
        admin = %crate::telemetry::addrs(&admin_addrs),
        "direwolf serve started"
    );
    server
        .run_until(notifier.stopping_after(shutdown.wait()))
        .await
        .context("the Moonlight server failed")?;
    if let Some(task) = wolf_api_task {
        task.stop().await;
    }
    drop(admin);
    drop(health);
    drop(metrics_port);
    phases.abort();
    if let Some(fast_path) = fast_path {
        fast_path.shutdown().await;
    }
    info!("direwolf serve stopped");
    Ok(())
}

/// The Wolf API served on its socket until [`WolfApiTask::stop`] (or until dropped, when the
/// runtime ends: the socket file goes either way).
struct WolfApiTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl WolfApiTask {
    /// Stops serving and waits (at most 5 s) until the socket file is removed.
    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            warn!("the Wolf API did not stop within 5 s");
        }
    }
}

/// Creates the Wolf API socket at `path` and serves `api` on it.
fn start_wolf_api(path: &Path, api: wolf_api::WolfApi) -> anyhow::Result<WolfApiTask> {
    let socket = WolfApiSocket::bind(path)
        .with_context(|| format!("cannot create the Wolf API socket {}", path.display()))?;
    info!(
        "Wolf API: apps added or deleted through it last until the server stops (the configuration \
         file is the source of truth for apps)"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(socket.serve(Arc::new(api), async {
        let _ = stopped.await;
    }));
    Ok(WolfApiTask { stop, task })
}

/// The health port's readiness: once `started` (listening, database open), while the database
/// is usable (not closed by an I/O error), and when a Wolf answers.
fn probes(started: Arc<AtomicBool>, database: Arc<OnceLock<PersistentStores>>, wolves: WolfWatch) -> Probes {
    Probes::new(move || {
        if !started.load(Ordering::SeqCst) {
            return Err("starting: the listeners are not bound or the database is not open yet".to_owned());
        }
        database.get().map_or(Ok(()), PersistentStores::health)?;
        wolves.readiness()
    })
}

/// Binds the health port.
async fn start_health(addr: SocketAddr, probes: Probes) -> anyhow::Result<HealthServer> {
    HealthServer::bind(addr, probes)
        .await
        .with_context(|| format!("cannot bind the health port {addr}"))
}

async fn open_stores(dir: &Path) -> anyhow::Result<PersistentStores> {
    let dir = dir.to_owned();
    let shown = dir.display().to_string();
    tokio::task::spawn_blocking(move || PersistentStores::open(&dir))
        .await
        .context("the task opening the database failed")?
        .with_context(|| format!("cannot open the data directory {shown}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        Wrapper::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .serve
    }

    #[test]
    fn defaults() {
        let args = parse(&[]);
        assert_eq!(
            (args.listen.http_port, args.listen.https_port, args.pin_timeout),
            (47989, 47984, 300)
        );
        assert!(args.listen.bind.is_empty() && !args.no_mdns);
        assert_eq!(args.admin_port, 47990);
        assert_eq!(args.default_user.as_str(), "default");
    }

    #[test]
    fn flags() {
        let args = parse(&[
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "--http-port",
            "0",
            "--https-port",
            "1",
            "--no-mdns",
            "--pin-timeout",
            "30",
            "--default-user",
            "alice",
            "--hostname",
            "den",
            "--data-dir",
            "/tmp/x",
        ]);
        assert_eq!(args.listen.bind.len(), 2);
        assert_eq!(
            (args.listen.http_port, args.listen.https_port, args.pin_timeout),
            (0, 1, 30)
        );
        assert_eq!(args.default_user.as_str(), "alice");
        assert_eq!(args.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        for bad in [
            &["--default-user", "Alice"][..],
            &["--pin-timeout", "0"],
            &["--bind", "localhost"],
        ] {
            let argv = std::iter::once("serve").chain(bad.iter().copied());
            assert!(Wrapper::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn plan_without_config_has_one_desktop() {
        let mut args = parse(&["--hostname", "den", "--data-dir", "/nonexistent"]);
        args.config = None;
        let plan = plan(&args).unwrap();
        assert_eq!((plan.hostname.as_str(), plan.app_count), ("den", 1));
    }

    #[test]
    fn plan_takes_hostname_from_config_and_reports_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("direwolf.toml");
        std::fs::write(&path, "hostname = \"attic\"\n[[apps]]\ntitle = \"A\"\nid = 3\n").unwrap();
        let config = path.to_str().unwrap();
        let plan = plan(&parse(&["--config", config, "--data-dir", "/x"])).unwrap();
        assert_eq!((plan.hostname.as_str(), plan.app_count), ("attic", 1));
        let plan_cli = super::plan(&parse(&[
            "--config",
            config,
            "--hostname",
            "cli",
            "--data-dir",
            "/x",
        ]))
        .unwrap();
        assert_eq!(plan_cli.hostname, "cli");

        std::fs::write(&path, "hostname = \"attic\"\nbogus = 1\n").unwrap();
        let err = super::plan(&parse(&["--config", config, "--data-dir", "/x"])).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }

    #[test]
    fn plan_takes_the_wolf_pool_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("direwolf.toml");
        std::fs::write(
            &path,
            "[pool]\nhost_lost_after = 5\n[[apps]]\ntitle = \"A\"\nid = 3\nwolf_app_id = \"steam\"\n\
             [[wolf]]\nname = \"w\"\napi = \"/run/w.sock\"\nstream_address = \"10.0.0.2\"\n",
        )
        .unwrap();
        let plan = plan(&parse(&["--config", path.to_str().unwrap(), "--data-dir", "/x"])).unwrap();
        assert_eq!(plan.wolves.len(), 1);
        assert_eq!(plan.host_lost_after, Duration::from_secs(5));
        assert_eq!(
            plan.host_apps.get(&AppId::new(3).unwrap()).map(String::as_str),
            Some("steam")
        );
        let without = super::plan(&parse(&["--data-dir", "/x"])).unwrap();
        assert!(without.wolves.is_empty(), "no config: no streaming hosts");
    }

    #[test]
    fn relay_listens_on_the_configured_or_only_ipv4_bind_address() {
        let mut settings = RelaySettings::default();
        let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let lan: IpAddr = "192.168.1.10".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(relay_address(&settings, &[]), any);
        assert_eq!(relay_address(&settings, &[lan, v6]), lan);
        assert_eq!(relay_address(&settings, &[lan, "10.0.0.1".parse().unwrap()]), any);
        settings.public_address = Some("10.9.9.9".parse().unwrap());
        assert_eq!(
            relay_address(&settings, &[lan]),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
    }
}
