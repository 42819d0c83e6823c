//! PodDisruptionBudgets of the proxy and the operator: a voluntary disruption (a node drain)
//! takes one replica at a time, and never blocks, even with a single replica.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Settings};

/// The comment that opens its file of the base.
pub const HEADER: &str = "Voluntary disruptions (a node drain) take one proxy and one operator replica at a time\n\
(maxUnavailable 1: never blocks a drain, even with a single replica).";

/// The budget of `component`'s pods: `maxUnavailable: 1`.
pub fn budget(settings: &Settings, component: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: settings.metadata(component.account(), component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(component.selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
