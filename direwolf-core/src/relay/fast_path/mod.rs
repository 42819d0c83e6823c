//! The kernel fast path: once the relay has admitted a client endpoint, its datagrams and Wolf's
//! answers are forwarded by the kernel (nftables DNAT/SNAT with conntrack) instead of through the
//! relay's sockets. The relay keeps the RTSP rewrite and admission; optional, Linux, IPv4.
//!
//! It needs `CAP_NET_ADMIN` (for `SO_MARK` and nftables), the `nft` program and
//! `net.ipv4.ip_forward = 1`. [`FastPath::start`] checks them and says why it cannot start; the
//! caller logs that once and relays in userspace.
//!
//! A flow moves to the kernel in two steps, so no datagram is lost on the way
//! ([`ruleset`] has the rules):
//!
//! 1. Its client side: the client endpoint's datagrams are tracked, sent to Wolf by DNAT and
//!    given the relay's upstream address by SNAT (Wolf sees the source it knows). Wolf's answers
//!    still reach the relay's upstream socket, which forwards them.
//! 2. Once a client datagram has come through (the flow's forward counter moved; its conntrack
//!    entry exists), Wolf's answers are tracked too, and conntrack takes them to the client.
//!
//! Client datagrams that enter the kernel path but never come through it (a host firewall drops
//! forwarded traffic: Docker's `FORWARD` policy) give the flow back to the relay, with one
//! warning naming the firewall rule that lets it pass (see `docs/troubleshooting.md`).
//!
//! The flows are elements of one table of direwolf's own (`ip direwolf`), replaced whole at
//! start (a relay killed with `kill -9` leaves none behind) and removed at [`FastPath::shutdown`];
//! a flow's elements go when its mapping does. The kernel's packet and byte counts are added to
//! the session's relay statistics.
//!
//! ```no_run
//! use direwolf_core::relay::{FastPath, Relay, RelayConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = RelayConfig::new("203.0.113.1".parse()?, 40000..=40999);
//! config.fast_path = match FastPath::start().await {
//!     Ok(fast_path) => Some(fast_path),
//!     Err(why) => {
//!         eprintln!("relaying in userspace: {why}");
//!         None
//!     }
//! };
//! let relay = Relay::new(config)?;
//! # let _ = relay;
//! # Ok(())
//! # }
//! ```
mod counts;
mod ruleset;
mod step;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use nftables::helper::{self, NftablesError};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use ruleset::{FlowSpec, MARK};
use step::{Stage, Step};

use super::SessionShared;
use super::stats::{StreamKind, UdpCounters, add, bump};
use counts::Listing;

/// Why the fast path cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// The kernel does not forward IPv4 (`net.ipv4.ip_forward` is not 1).
    #[error("the kernel does not forward IPv4 (net.ipv4.ip_forward is not 1)")]
    NoForwarding,
    /// `SO_MARK` was refused: no `CAP_NET_ADMIN`.
    #[error("cannot mark sockets (SO_MARK needs CAP_NET_ADMIN): {0}")]
    Mark(std::io::Error),
    /// `nft` is missing or refused the table.
    #[error("nftables refused direwolf's table: {0}")]
    Nft(String),
}

fn nft_error(error: NftablesError) -> String {
    match error {
        NftablesError::NftFailed { stderr, hint, .. } if stderr.trim().is_empty() => {
            format!("nft failed while {hint}")
        }
        NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    }
}

/// Run one `nft -j -f -` transaction.
async fn apply(document: &str) -> Result<(), NftablesError> {
    helper::apply_ruleset_raw_async(document, helper::DEFAULT_NFT, helper::DEFAULT_ARGS)
        .await
        .map(drop)
}

/// How often the worker reads the kernel's counters.
const POLL: Duration = Duration::from_millis(250);

/// A running fast path: cheap to clone; the relay offers it flows.
#[derive(Clone)]
pub struct FastPath {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPath")
    }
}

impl PartialEq for FastPath {
    fn eq(&self, other: &Self) -> bool {
        self.commands.same_channel(&other.commands)
    }
}

impl Eq for FastPath {}

enum Command {
    Install(Arc<Flow>),
    Remove(Arc<Flow>),
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// One flow as the relay and the worker share it.
pub(crate) struct Flow {
    spec: FlowSpec,
    /// The session whose statistics the kernel's figures go to (gone with the session).
    session: Weak<SessionShared>,
    kind: StreamKind,
    /// When the kernel last carried a client datagram of the flow.
    last_active: Mutex<Option<Instant>>,
}

impl Flow {
    /// Apply `f` to the counters of the flow's stream, while its session lives.
    fn with_counters(&self, f: impl FnOnce(&UdpCounters)) {
        if let Some(session) = self.session.upgrade() {
            f(session.counters.udp(self.kind));
        }
    }

    /// When the kernel last carried a client datagram of the flow (`None`: not yet).
    pub(crate) fn last_active(&self) -> Option<Instant> {
        *self.last_active.lock()
    }
}

/// A flow offered to the kernel; dropping it removes the flow's elements.
pub(crate) struct KernelLease {
    flow: Arc<Flow>,
    commands: mpsc::UnboundedSender<Command>,
}

impl KernelLease {
    pub(crate) fn flow(&self) -> &Flow {
        &self.flow
    }
}

impl Drop for KernelLease {
    fn drop(&mut self) {
        // The worker is gone only after a shutdown, which removed the table.
        let _ = self.commands.send(Command::Remove(self.flow.clone()));
    }
}

impl FastPath {
    /// Check what the fast path needs, load direwolf's table (replacing any left by a relay
    /// that was killed) and start the worker that installs flows and reads their counters.
    pub async fn start() -> Result<FastPath, FastPathError> {
        let forwarding = tokio::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .await
            .unwrap_or_default();
        if forwarding.trim() != "1" {
            return Err(FastPathError::NoForwarding);
        }
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .map_err(FastPathError::Mark)?;
        probe.set_mark(MARK).map_err(FastPathError::Mark)?;
        // A listing first: `nft` reports why it refuses on stderr, which the crate's apply does
        // not capture (it passes through to ours).
        helper::get_current_ruleset_raw_async(helper::DEFAULT_NFT, ["list", "tables"])
            .await
            .map_err(|e| FastPathError::Nft(nft_error(e)))?;
        apply(&ruleset::fresh_table())
            .await
            .map_err(|e| FastPathError::Nft(nft_error(e)))?;
        let (commands, inbox) = mpsc::unbounded_channel();
        tokio::spawn(Worker::default().run(inbox));
        Ok(FastPath { commands })
    }

    /// Offer a flow the relay has admitted; the kernel's counts go to its session's statistics
    /// while the session lives.
    pub(crate) fn offer(
        &self,
        spec: FlowSpec,
        session: &Arc<SessionShared>,
        kind: StreamKind,
    ) -> KernelLease {
        let flow = Arc::new(Flow {
            spec,
            session: Arc::downgrade(session),
            kind,
            last_active: Mutex::new(None),
        });
        let _ = self.commands.send(Command::Install(flow.clone()));
        KernelLease {
            flow,
            commands: self.commands.clone(),
        }
    }

    /// Remove direwolf's table and stop the worker; flows still offered stay in the relay.
    pub async fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
    }
}

/// The kernel's counts for one flow.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// Client datagrams that entered the kernel path.
    entered: u64,
    /// Client datagrams forwarded to Wolf, and their bytes.
    to_wolf: (u64, u64),
    /// Wolf's datagrams forwarded to the client, and their bytes.
    to_client: (u64, u64),
}

struct Tracked {
    flow: Arc<Flow>,
    stage: Stage,
    seen: Counts,
}

#[derive(Default)]
struct Worker {
    flows: HashMap<FlowSpec, Tracked>,
    warned_forward_drop: bool,
}

impl Worker {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Command>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(Command::Install(flow)) => self.install(flow).await,
                    Some(Command::Remove(flow)) => self.remove(&flow).await,
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                _ = poll.tick(), if !self.flows.is_empty() => self.poll().await,
            }
        }
    }

    async fn apply(&self, commands: Vec<Value>, what: &str, flow: &FlowSpec) -> bool {
        match apply(&ruleset::nftables(commands)).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(client = %flow.client, wolf = %flow.wolf, error = %nft_error(error), "kernel fast path: cannot {what}; the relay carries the flow");
                false
            }
        }
    }

    async fn install(&mut self, flow: Arc<Flow>) {
        let spec = flow.spec;
        if self.flows.contains_key(&spec) {
            return;
        }
        if self
            .apply(ruleset::client_side("add", &spec), "install a flow", &spec)
            .await
        {
            tracing::debug!(client = %spec.client, wolf = %spec.wolf, "kernel fast path: client side installed");
            self.flows.insert(
                spec,
                Tracked {
                    flow,
                    stage: Stage::ClientSide,
                    seen: Counts::default(),
                },
            );
        }
    }

    async fn remove(&mut self, flow: &Arc<Flow>) {
        let Some(tracked) = self.flows.get(&flow.spec) else {
            return;
        };
        // A flow re-offered under the same key replaced this one: leave the new one.
        if !Arc::ptr_eq(&tracked.flow, flow) {
            return;
        }
        let stage = tracked.stage;
        self.flows.remove(&flow.spec);
        self.uninstall(&flow.spec, stage, "remove a flow").await;
    }

    async fn uninstall(&self, spec: &FlowSpec, stage: Stage, what: &str) {
        let mut commands = ruleset::client_side("delete", spec);
        if stage == Stage::Kernel {
            commands.extend(ruleset::wolf_side("delete", spec));
        }
        self.apply(commands, what, spec).await;
    }

    async fn poll(&mut self) {
        let listing = match helper::get_current_ruleset_raw_async(
            helper::DEFAULT_NFT,
            ["list", "table", "ip", ruleset::TABLE],
        )
        .await
        {
            Ok(listing) => listing,
            Err(error) => {
                tracing::warn!(error = %nft_error(error), "kernel fast path: cannot read its counters");
                return;
            }
        };
        let listing = Listing::read(&listing);
        let specs: Vec<FlowSpec> = self.flows.keys().copied().collect();
        for spec in specs {
            let now = listing.counts(&spec);
            self.account(&spec, now);
            let stage = self.flows[&spec].stage;
            match step::next(stage, now.entered, now.to_wolf.0) {
                Step::Wait => {}
                Step::HandOver => self.hand_over(&spec).await,
                Step::GiveBack => self.give_back(&spec).await,
            }
        }
    }

    /// Add what the kernel carried since the last reading to the session's statistics.
    fn account(&mut self, spec: &FlowSpec, now: Counts) {
        let Some(tracked) = self.flows.get_mut(spec) else {
            return;
        };
        let seen = std::mem::replace(&mut tracked.seen, now);
        if now.to_wolf.0 > seen.to_wolf.0 {
            *tracked.flow.last_active.lock() = Some(Instant::now());
        }
        tracked.flow.with_counters(|counters| {
            let more = |now: u64, seen: u64| now.saturating_sub(seen);
            add(&counters.to_wolf_packets, more(now.to_wolf.0, seen.to_wolf.0));
            add(&counters.to_wolf_bytes, more(now.to_wolf.1, seen.to_wolf.1));
            add(
                &counters.to_client_packets,
                more(now.to_client.0, seen.to_client.0),
            );
            add(&counters.to_client_bytes, more(now.to_client.1, seen.to_client.1));
        });
    }

    async fn hand_over(&mut self, spec: &FlowSpec) {
        if !self
            .apply(ruleset::wolf_side("add", spec), "hand Wolf's answers over", spec)
            .await
        {
            return;
        }
        let Some(tracked) = self.flows.get_mut(spec) else {
            return;
        };
        tracked.stage = Stage::Kernel;
        tracked
            .flow
            .with_counters(|counters| bump(&counters.kernel_flows));
        tracing::debug!(client = %spec.client, wolf = %spec.wolf, "kernel fast path: flow carried by the kernel");
    }

    async fn give_back(&mut self, spec: &FlowSpec) {
        let Some(tracked) = self.flows.remove(spec) else {
            return;
        };
        self.uninstall(spec, tracked.stage, "give a flow back").await;
        tracked
            .flow
            .with_counters(|counters| bump(&counters.kernel_refused));
        if !std::mem::replace(&mut self.warned_forward_drop, true) {
            tracing::warn!(
                client = %spec.client,
                wolf = %spec.wolf,
                mark = format_args!("{MARK:#x}"),
                "kernel fast path: a host firewall drops the forwarded datagrams (a FORWARD policy of drop, as Docker sets); \
                 the relay carries such flows. Let them pass, e.g. `iptables -I DOCKER-USER -m mark --mark {MARK:#x} -j ACCEPT` \
                 (docs/troubleshooting.md § The kernel fast path gives flows back)"
            );
        }
    }

    async fn shutdown(&mut self) {
        self.flows.clear();
        if let Err(error) = apply(&ruleset::drop_table()).await {
            tracing::warn!(error = %nft_error(error), "kernel fast path: cannot remove direwolf's table");
        }
    }
}
