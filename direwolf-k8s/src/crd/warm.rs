//! `App.spec.warmPool`: stream pods started ahead of any launch, each claimed by one Session
//! (`docs/protocol/kubernetes.md` § Warm pools).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of ready stream pods of an App, made for nobody: Wolf and the agent are up and no
/// stream is registered. A launch whose Session can use one claims it instead of starting a pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarmPool {
    /// How many unclaimed pods to keep ready.
    #[schemars(range(min = 0, max = 32))]
    pub size: i32,
    /// Seconds an unclaimed pod may wait before it is replaced by a fresh one (short values
    /// churn pods).
    #[serde(default = "default_max_idle_seconds")]
    #[schemars(range(min = 1, max = 604800))]
    pub max_idle_seconds: i64,
    /// The video width the pods are made for (the game's `GAMESCOPE_WIDTH` is fixed when a pod
    /// starts): only Sessions asking for this mode claim one.
    #[serde(default = "default_width")]
    #[schemars(range(min = 1, max = 16384))]
    pub width: i32,
    /// The video height the pods are made for.
    #[serde(default = "default_height")]
    #[schemars(range(min = 1, max = 16384))]
    pub height: i32,
    /// The refresh rate the pods are made for.
    #[serde(default = "default_refresh_rate")]
    #[schemars(range(min = 0, max = 1000))]
    pub refresh_rate: i32,
}

impl WarmPool {
    /// A pool of `size` pods with every default.
    pub fn of_size(size: i32) -> Self {
        WarmPool {
            size,
            max_idle_seconds: default_max_idle_seconds(),
            width: default_width(),
            height: default_height(),
            refresh_rate: default_refresh_rate(),
        }
    }

    /// How many pods to keep (negative sizes, refused by the schema, count as none).
    pub fn wanted(&self) -> usize {
        usize::try_from(self.size).unwrap_or(0)
    }
}

fn default_max_idle_seconds() -> i64 {
    3600
}

fn default_width() -> i32 {
    1920
}

fn default_height() -> i32 {
    1080
}

fn default_refresh_rate() -> i32 {
    60
}
