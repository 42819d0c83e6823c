//! # direwolf-k8s
//!
//! The Kubernetes backends of direwolf, what `direwolf proxy` runs on:
//!
//! * [`crd`]: the custom resources `App`, `User`, `Pairing` and `Session`;
//! * [`watch`]: one watch per kind in a namespace ([`watch::Watches`]), shared by every reader;
//! * [`stores`]: the `direwolf-core` store traits over those resources (entry point
//!   [`stores::KubeStores`]);
//! * [`launcher`]: launch, resume and cancel as `Session` objects ([`launcher::KubeLauncher`]);
//! * [`exposure`]: every Session's stream ports published on the proxies' LoadBalancer Service;
//! * [`keys`]: the Secret holding a Session's stream keys, readable only by its agent;
//! * [`admin_token`]: the admin API's token in a Secret the proxy replicas share;
//! * [`leader`]: leader election on a Lease, so that one `direwolf operator` replica writes
//!   ([`leader::LeaderElector`]);
//! * [`operator`]: the Session operator: ports, home, agent account and stream pod per Session,
//!   and its endings ([`operator::Operator`]);
//! * [`pin_broker`]: PIN delivery across replicas through Secrets ([`pin_broker::KubePinBroker`]);
//! * `relays` (feature `relay`): the stream relay of every Session, derived from the Session objects;
//! * [`report`]: hand-edited problems reported on the objects' status;
//! * [`retry`]: which API errors are transient, and their bounded retry;
//! * [`stream`]: the names and status fields the proxy, operator and agent agree on for a stream;
//! * `agent` (feature `agent`): the wolf-agent sidecar of a stream pod (`direwolf agent`);
//! * `emulator` (feature `emulator`): an in-process API-server emulator for tests.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> direwolf_core::Result<()> {
//! use direwolf_k8s::launcher::{KubeLauncher, LauncherConfig};
//! use direwolf_k8s::pin_broker::{KubePinBroker, PinBrokerConfig};
//! use direwolf_k8s::stores::KubeStores;
//! use direwolf_k8s::watch::Watches;
//!
//! let watches = Watches::new(client, "games");
//! let stores = KubeStores::with_watches(&watches).stores();
//! let launcher = KubeLauncher::with_watches(&watches, LauncherConfig::default());
//! let broker = KubePinBroker::with_watches(&watches, PinBrokerConfig::default());
//! tokio::spawn(direwolf_k8s::report::run(watches.clone()));
//! watches.wait_ready(std::time::Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod admin_token;
#[cfg(feature = "agent")]
pub mod agent;
pub mod crd;
pub mod exposure;
pub mod keys;
pub mod launcher;
pub mod leader;
pub mod operator;
pub mod pin_broker;
#[cfg(feature = "relay")]
pub mod relays;
pub mod report;
pub mod retry;
pub mod stores;
pub mod stream;
pub mod watch;

#[cfg(feature = "emulator")]
pub mod emulator;
