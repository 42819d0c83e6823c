//! A running container's readiness and liveness probes, with their periods and thresholds:
//! readiness sets the container's `ready`, liveness failing ends [`Probes::run`] (the
//! supervisor then kills and restarts the container).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Probe};

use super::{Shared, Slot};
use crate::probe::{self, ProbeTarget, Timing};

/// The probes of one container run.
pub struct Probes<'a> {
    /// The container.
    pub spec: &'a Container,
    /// The pod's record.
    pub shared: &'a Shared,
    /// Where the container is recorded.
    pub slot: Slot,
    /// The pod's IP.
    pub pod_ip: Ipv4Addr,
    /// The container's process.
    pub pid: u32,
    /// Its env (exec probes).
    pub env: HashMap<String, String>,
}

impl Probes<'_> {
    /// Runs both probes; returns only when the liveness probe has failed (never without one).
    pub async fn run(&self) {
        let readiness = async {
            if let Some(p) = &self.spec.readiness_probe {
                self.drive(p, "readiness").await;
            }
            std::future::pending::<()>().await;
        };
        let liveness = async {
            match &self.spec.liveness_probe {
                Some(p) => self.drive(p, "liveness").await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = readiness => {}
            () = liveness => {}
        }
    }

    /// Runs `probe` every period; returns when it has failed `failureThreshold` times in a row
    /// (a readiness probe only marks the container unready and goes on).
    async fn drive(&self, probe: &Probe, kind: &str) {
        let timing = Timing::of(probe);
        let target = ProbeTarget {
            container: self.spec,
            pod_ip: self.pod_ip,
            pid: self.pid,
            env: &self.env,
        };
        let readiness = kind == "readiness";
        let (mut ok, mut bad) = (0u32, 0u32);
        tokio::time::sleep(timing.initial_delay).await;
        loop {
            match probe::run(probe, &target).await {
                Ok(()) => {
                    (ok, bad) = (ok + 1, 0);
                    if readiness && ok >= timing.success_threshold {
                        self.shared.update(self.slot, |c| c.ready = true);
                    }
                }
                Err(why) => {
                    (ok, bad) = (0, bad + 1);
                    tracing::debug!(container = %self.spec.name, kind, %why, "probe failed");
                    if bad >= timing.failure_threshold {
                        if !readiness {
                            tracing::info!(container = %self.spec.name, %why, "liveness probe failed");
                            return;
                        }
                        self.shared.update(self.slot, |c| c.ready = false);
                    }
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    }
}
