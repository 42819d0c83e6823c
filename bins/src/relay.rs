//! `direwolf relay`: forward one stream port set (RTSP over TCP, video, audio and control over
//! UDP) to one Wolf with direwolf's relay engine, logging counters periodically.
//!
//! ```text
//! direwolf relay --listen 0.0.0.0 --rtsp 48010 --video 48100 --audio 48200 --control 47999 \
//!     --target 10.0.0.5 --client-ip 198.51.100.7 --fake-ip 10.0.0.5
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use direwolf_core::StreamPorts;
use direwolf_core::health::{HealthServer, Probes};
use direwolf_core::metrics::{Metrics, RelayCollector};
use direwolf_core::relay::{Relay, RelayConfig, SessionRelayConfig, SessionStats, UdpStats, WolfPorts};

use crate::check::{Protocol, Report, port_problem};
use crate::metrics::MetricsArgs;
use crate::shutdown::Shutdown;

/// Wolf's default ports, the default of every port flag.
const WOLF: StreamPorts = StreamPorts::WOLF_DEFAULT;

/// Arguments of `direwolf relay`.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// Public RTSP (TCP) port.
    #[arg(long, default_value_t = WOLF.rtsp)]
    pub rtsp: u16,
    /// Public video (UDP) port.
    #[arg(long, default_value_t = WOLF.video)]
    pub video: u16,
    /// Public audio (UDP) port.
    #[arg(long, default_value_t = WOLF.audio)]
    pub audio: u16,
    /// Public control/ENet (UDP) port.
    #[arg(long, default_value_t = WOLF.control)]
    pub control: u16,
    /// The Wolf host to forward to.
    #[arg(long)]
    pub target: IpAddr,
    /// Wolf's RTSP port.
    #[arg(long, default_value_t = WOLF.rtsp)]
    pub target_rtsp: u16,
    /// Wolf's video port (used until a SETUP answer names another).
    #[arg(long, default_value_t = WOLF.video)]
    pub target_video: u16,
    /// Wolf's audio port (used until a SETUP answer names another).
    #[arg(long, default_value_t = WOLF.audio)]
    pub target_audio: u16,
    /// Wolf's control port (used until a SETUP answer names another).
    #[arg(long, default_value_t = WOLF.control)]
    pub target_control: u16,
    /// The session's `rtsp_fake_ip` (written into RTSP `Host` and request-URIs); defaults to
    /// the target when it is IPv4.
    #[arg(long)]
    pub fake_ip: Option<Ipv4Addr>,
    /// The client's IP: new UDP endpoints from it are admitted. Without it (and without
    /// `--any-source`) only endpoints proving the session's ping secret / ENet connect data are.
    #[arg(long)]
    pub client_ip: Option<IpAddr>,
    /// Admit UDP endpoints from any source (trusted networks, benchmarks).
    #[arg(long)]
    pub any_source: bool,
    /// Seconds without client traffic after which a UDP mapping is dropped.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Client endpoints mapped per stream at most.
    #[arg(long, default_value_t = 4)]
    pub max_mappings: usize,
    /// Seconds between counter log lines (0: never).
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
    /// Worker threads; 1 runs everything on the current thread (one core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Serve `/livez`, `/readyz` and `/metrics` (plain HTTP) on this address; ready once the
    /// ports are bound.
    #[arg(long, value_name = "ADDR:PORT")]
    pub health_bind: Option<SocketAddr>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Check the flags, that the ports are free and that Wolf's RTSP port answers, print one
    /// line per finding, and exit: 0 if all is well, else 1.
    #[arg(long)]
    pub check: bool,
}

impl RelayArgs {
    fn session(&self) -> anyhow::Result<SessionRelayConfig> {
        let fake_rtsp_ip = match (self.fake_ip, self.target) {
            (Some(ip), _) => ip,
            (None, IpAddr::V4(ip)) => ip,
            (None, IpAddr::V6(_)) => bail!("--fake-ip is required when --target is IPv6"),
        };
        Ok(SessionRelayConfig {
            // Unspecified never equals a real source address: only secrets admit then.
            client_ip: self.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            wolf_rtsp: SocketAddr::new(self.target, self.target_rtsp),
            wolf_udp_host: self.target,
            wolf_ports: WolfPorts {
                video: self.target_video,
                audio: self.target_audio,
                control: self.target_control,
            },
            fake_rtsp_ip,
        })
    }

    fn config(&self) -> RelayConfig {
        // The allocator is unused: the ports are given explicitly.
        let mut config = RelayConfig::new(self.listen, 1..=4);
        config.udp_idle_timeout = Duration::from_secs(self.idle_timeout.max(1));
        config.max_mappings_per_stream = self.max_mappings.max(1);
        config.admit_any_source = self.any_source;
        config
    }
}

/// Runs the relay until SIGINT/SIGTERM; with `--check`, checks and returns whether all is well.
pub fn run(args: RelayArgs) -> anyhow::Result<bool> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the tokio runtime")?;
    if args.check {
        return Ok(runtime.block_on(check(&args)));
    }
    runtime.block_on(serve(args))?;
    Ok(true)
}

/// How long `--check` waits for Wolf's RTSP port.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `--check`: the session settings, the public ports, and Wolf's RTSP port.
async fn check(args: &RelayArgs) -> bool {
    let mut report = Report::default();
    match args.session() {
        Ok(session) => report.ok(format!("session: fake RTSP IP {}", session.fake_rtsp_ip)),
        Err(error) => report.problem(format!("{error:#}")),
    }
    let ports = [
        ("RTSP", Protocol::Tcp, args.rtsp),
        ("video", Protocol::Udp, args.video),
        ("audio", Protocol::Udp, args.audio),
        ("control", Protocol::Udp, args.control),
    ];
    for (what, protocol, port) in ports {
        match port_problem(protocol, SocketAddr::new(args.listen, port)) {
            None => report.ok(format!(
                "{what} port {port}/{protocol} is free on {}",
                args.listen
            )),
            Some(why) => report.problem(format!("{what} port: {why}")),
        }
    }
    let wolf = SocketAddr::new(args.target, args.target_rtsp);
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(wolf)).await {
        Ok(Ok(_)) => report.ok(format!("Wolf's RTSP port {wolf} answers")),
        Ok(Err(error)) => report.problem(format!("Wolf's RTSP port {wolf}: {error}")),
        Err(_) => report.problem(format!(
            "Wolf's RTSP port {wolf}: no answer within {CHECK_TIMEOUT:?}"
        )),
    }
    report.conclude()
}

fn udp_line(s: &UdpStats) -> String {
    format!(
        "in {}p/{}B out {}p/{}B maps {} drops adm {} lim {} tx {}/{}",
        s.to_wolf_packets,
        s.to_wolf_bytes,
        s.to_client_packets,
        s.to_client_bytes,
        s.mappings_active,
        s.drops.not_admitted,
        s.drops.mapping_limit,
        s.drops.send_to_wolf,
        s.drops.send_to_client
    )
}

fn log_stats(s: &SessionStats) {
    tracing::info!(
        rtsp.relayed = s.rtsp.relayed,
        rtsp.rejected = s.rtsp.rejected_requests,
        rtsp.upstream_errors = s.rtsp.upstream_errors,
        video = %udp_line(&s.video),
        audio = %udp_line(&s.audio),
        control = %udp_line(&s.control),
        "relay stats"
    );
}

async fn serve(args: RelayArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    let relay = Relay::new(args.config()).context("invalid relay configuration")?;
    let ports = StreamPorts {
        rtsp: args.rtsp,
        video: args.video,
        audio: args.audio,
        control: args.control,
    };
    let session = relay
        .open_session_on(ports, args.session()?)
        .await
        .context("cannot open the relay ports")?;
    let metrics = Metrics::new();
    metrics.register_collector(RelayCollector::new(relay.clone()));
    let _metrics_port = args.metrics.serve(&metrics).await?;
    let _health = match args.health_bind {
        Some(addr) => Some(
            HealthServer::bind(addr, Probes::always_ready().with_metrics(metrics.clone()))
                .await
                .with_context(|| format!("cannot bind the health port {addr}"))?,
        ),
        None => None,
    };
    let p = session.ports();
    tracing::info!(
        listen = %args.listen, rtsp = p.rtsp, video = p.video, audio = p.audio, control = p.control,
        target = %args.target, "relaying"
    );
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick(), if args.stats_interval > 0 => log_stats(&session.stats()),
        }
    }
    let last = session.stats();
    session.close().await;
    relay.shutdown();
    log_stats(&last);
    tracing::info!("relay stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RelayArgs,
    }

    #[test]
    fn defaults_follow_wolf() {
        let cli = Cli::try_parse_from(["relay", "--target", "10.0.0.5"]).expect("parses");
        let s = cli.args.session().expect("session");
        assert_eq!(s.wolf_rtsp, "10.0.0.5:48010".parse().expect("addr"));
        assert_eq!(s.wolf_ports, WolfPorts::default());
        assert_eq!(s.fake_rtsp_ip, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(
            (cli.args.rtsp, cli.args.video, cli.args.audio, cli.args.control),
            (48010, 48100, 48200, 47999)
        );
        assert!(!cli.args.config().admit_any_source);
    }

    #[test]
    fn ipv6_target_needs_a_fake_ip() {
        let cli = Cli::try_parse_from(["relay", "--target", "fd00::5"]).expect("parses");
        assert!(cli.args.session().is_err());
        let cli =
            Cli::try_parse_from(["relay", "--target", "fd00::5", "--fake-ip", "10.1.2.3"]).expect("parses");
        assert_eq!(
            cli.args.session().expect("session").fake_rtsp_ip,
            Ipv4Addr::new(10, 1, 2, 3)
        );
    }
}
