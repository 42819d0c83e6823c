//! The Session operator (`direwolf operator`): provisions every `Session` of one namespace per
//! the stream contract ([`crate::stream`]) and ends it when its stream cannot run.
//!
//! Shape (the project's reconciler convention): **observe** the caches of Sessions, Apps, Users and
//! stream pods (`run.rs`: one `kube::runtime::Controller` per term of leadership; a Session is
//! reconciled when it, its pod, its App or its User changes, and outside the relay exposure its
//! Service) → **decide** with pure functions
//! ([`decide`]: endings, phase, status; [`pod`]: the stream pod; [`account`]: the agent's account;
//! [`home`]: the home claim; [`ports`]: the port block) → **apply** (`reconcile.rs`: ports in
//! status first, then the home claim, the account, the pod) → **prune** and endings (`ending.rs`:
//! phase Ended, the `Ended` condition, an Event, deletion; on deletion the finalizer removes the
//! pod, the account and the keys Secret) → **status** only when it changed, never touching the
//! agent's fields.
//!
//! | Behaviour | Where |
//! |---|---|
//! | finalizer, phase Pending; on deletion pod, account, keys Secret, Service and routes | `reconcile.rs`, `ending.rs` |
//! | the status write (own fields, server-side apply, guarded by resourceVersion) | `status.rs` |
//! | ports (unique, in flight too; written before the pod) | [`ports`], `reconcile.rs` |
//! | home claim `<user>-<app>` owned by the User | [`home`] |
//! | agent ServiceAccount, Role, RoleBinding | [`account`] |
//! | pod (template merge, caps, policies, reserved names; Wolf's port variables outside the relay mode) | [`pod`], [`caps`] |
//! | exposure modes (`config::Exposure`): load-balancer Service per Session (sharing annotations, `ServiceCreated`, `LoadBalancerAddressAssigned`), gateway routes (TCPRoute, UDPRoutes, ClusterIP Service, `RoutesCreated`; a missing Gateway ends a Session not yet started) | [`expose`] (pure), `publish.rs` (apply, delete) |
//! | warm pools: the warm pod and its account, who may claim, the pool's plan | [`warm`] |
//! | warm pools kept at size (broken, idle, surplus pods replaced; guarded deletes), while leading | `pool.rs` |
//! | claim of a warm pod (one patch at the version read; 409 → next or cold), adoption after a failover, the Session's pod by name or label | `claim.rs` |
//! | phase Initializing, `host` | [`decide`] |
//! | endings (App/User deleted, Unschedulable, Wolf exited, pod failed, start deadline, agent's Ended) | [`decide::ending`], `ending.rs` |
//! | leadership: reconciles only while `is_leader` is true | [`Operator::run`] |
//! | Events of phase changes and failed reconciles | `events.rs` |
//! | metrics: reconciles, their errors and durations, pods created, endings, warm pods and claims | [`Metrics`] (`context.rs`) |
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), direwolf_k8s::operator::RunError> {
//! use direwolf_k8s::operator::{Operator, OperatorConfig};
//! let (_leader, is_leader) = tokio::sync::watch::channel(true);
//! let operator = Operator::new(client, OperatorConfig::new("games"));
//! operator.run(is_leader, std::future::pending()).await
//! # }
//! ```

pub mod account;
pub mod caps;
mod claim;
pub mod config;
mod context;
pub mod decide;
mod ending;
mod error;
mod events;
pub mod expose;
pub mod home;
pub mod pod;
mod pool;
pub mod ports;
mod publish;
mod reconcile;
mod run;
mod status;
pub mod warm;

pub use config::{
    Exposure, GatewayExposure, GpuResource, Images, LoadBalancerExposure, OperatorConfig, PodSettings,
    PortRange, TrafficPolicy,
};
pub use context::Metrics;
pub use error::Error;
pub use run::{Operator, RunError};

#[cfg(test)]
mod tests;
