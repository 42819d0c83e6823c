//! The custom resources of direwolf: [`App`], [`User`], [`Pairing`] and [`Session`] in group
//! [`GROUP`], version [`VERSION`], and the names (labels, annotations, condition types and
//! reasons, field managers) every component agrees on.
//!
//! [`crds`] returns the CustomResourceDefinitions; `direwolf crd` prints them ([`crds_yaml`]).

mod app;
mod common;
mod pairing;
mod session;
mod user;
mod warm;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use app::{
    App, AppGpu, AppSpec, AppStatus, ClaimTemplateMetadata, LogLevel, Pipeline, Runner, RuntimeVariables,
    VolumeClaimTemplate, WolfConfig,
};
pub use common::{
    AppReference, Base64Bytes, DNS1123_LABEL_PATTERN, FINGERPRINT_PATTERN, GatewayReference,
    PairingReference, ReportStatus, UserReference, find_condition,
};
pub use pairing::{Pairing, PairingSpec, PairingStatus};
pub use session::{Session, SessionConfig, SessionPhase, SessionPorts, SessionSpec, SessionStatus};
pub use user::{RESERVED_VOLUME_NAMES, SidecarPolicies, SidecarPolicy, User, UserSpec, UserStatus};
pub use warm::WarmPool;

/// The API group of every direwolf kind.
pub const GROUP: &str = "direwolf.games-on-whales.github.io";

/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Every CustomResourceDefinition of direwolf, in a stable order (App, User, Pairing, Session).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![App::crd(), User::crd(), Pairing::crd(), Session::crd()]
}

/// Every CRD as one multi-document YAML stream (what `direwolf crd` prints and `crds/` holds).
///
/// # Errors
/// Only if serialisation fails, which would be a bug in the types.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    // Long descriptions stay on one line instead of being folded at 80 columns.
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string_with_options(&crd, options.clone())?);
    }
    Ok(out)
}

/// Label keys and values.
pub mod labels {
    /// Key of the label on every stream object (`app=direwolf-worker`).
    pub const APP: &str = "app";
    /// Value of [`APP`] on stream objects.
    pub const APP_WORKER: &str = "direwolf-worker";
    /// The user a Session or stream object belongs to.
    pub const USER: &str = "direwolf/user";
    /// The App object name of a Session or stream object.
    pub const APP_NAME: &str = "direwolf/app";
    /// Marks Sessions (`direwolf=true`).
    pub const SESSION: &str = "direwolf";
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Value of [`NAME`] and [`MANAGED_BY`].
    pub const DIREWOLF: &str = "direwolf";
    /// Marks the Secrets of pending PINs (`direwolf/pin=pending`).
    pub const PIN: &str = "direwolf/pin";
    /// On an unclaimed warm pod and its account: the App whose pool it belongs to.
    pub const WARM_POOL: &str = "direwolf/warm-pool";
    /// On a warm pod, kept after a claim: the App whose pool made it.
    pub const WARM: &str = "direwolf/warm";
}

/// Annotation keys.
pub mod annotations {
    /// The Pairing that launched a Session.
    pub const PAIRING: &str = "direwolf/pairing";
    /// Cilium LB-IPAM: Services with the same key share one external IP.
    pub const CILIUM_SHARING_KEY: &str = "lbipam.cilium.io/sharing-key";
    /// MetalLB: Services with the same key share one external IP.
    pub const METALLB_SHARING_KEY: &str = "metallb.universe.tf/allow-shared-ip";
    /// When a Session was created (Unix seconds), kept by the store so it survives a
    /// re-creation of the object.
    pub const CREATED_AT: &str = "direwolf.games-on-whales.github.io/created-at";
}

/// Condition types.
pub mod conditions {
    /// Session: the four stream ports are allocated.
    pub const PORTS_ALLOCATED: &str = "PortsAllocated";
    /// Session: the persistent home is claimed (or none is needed).
    pub const VOLUME_CREATED: &str = "VolumeCreated";
    /// Session: the stream Deployment exists.
    pub const DEPLOYMENT_CREATED: &str = "DeploymentCreated";
    /// Session: the stream Service exists.
    pub const SERVICE_CREATED: &str = "ServiceCreated";
    /// Session: Wolf has the stream and its URL is published.
    pub const STREAM_STARTED: &str = "StreamStarted";
    /// Session: Gateway routes exist (Gateway data path only).
    pub const ROUTES_CREATED: &str = "RoutesCreated";
    /// Session: the load balancer gave the stream Service an address (load-balancer exposure
    /// only): False when none came within the operator's wait, or another than the proxies'.
    pub const LOAD_BALANCER_ADDRESS: &str = "LoadBalancerAddressAssigned";
    /// App: no other App in the namespace has the same `spec.id`.
    pub const ID_UNIQUE: &str = "IDUnique";
    /// Pairing: the referenced User exists.
    pub const USER_FOUND: &str = "UserFound";
    /// Session: the operator ended it (the reason says why); it is being deleted.
    pub const ENDED: &str = "Ended";
}

/// Condition reasons (also Event reasons).
pub mod reasons {
    /// A step succeeded.
    pub const SUCCESS: &str = "Success";
    /// No free port block.
    pub const PORTS_ALLOCATION_FAILED: &str = "PortsAllocationFailed";
    /// The home claim could not be applied.
    pub const PVC_ALLOCATION_FAILED: &str = "PVCAllocationFailed";
    /// The stream pod could not be built or applied.
    pub const POD_CREATION_FAILED: &str = "PodCreationFailed";
    /// The Service was applied.
    pub const SERVICE_CREATED: &str = "ServiceCreated";
    /// The Service could not be applied.
    pub const SERVICE_CREATION_FAILED: &str = "ServiceCreationFailed";
    /// The stream is registered; waiting for the client.
    pub const WAIT_FOR_PING: &str = "WaitForPing";
    /// Registering the stream with Wolf failed (or the pod is not ready yet).
    pub const STREAM_START_FAILED: &str = "StreamStartFailed";
    /// Gateway routes could not be configured.
    pub const GATEWAY_CONFIGURATION_FAILED: &str = "GatewayConfigurationFailed";
    /// The stream Service has no load-balancer address after the operator's wait.
    pub const NO_LOAD_BALANCER_ADDRESS: &str = "NoLoadBalancerAddress";
    /// The stream Service got another address than the one asked for (the proxies').
    pub const ADDRESS_NOT_SHARED: &str = "AddressNotShared";
    /// Two or more Apps share one `spec.id`; all of them are left out of the app list.
    pub const DUPLICATE_APP_ID: &str = "DuplicateAppID";
    /// A Pairing names a User that does not exist.
    pub const USER_NOT_FOUND: &str = "UserNotFound";
    /// Session ended: the scheduler cannot place its pod (the message is the scheduler's).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Session ended: the `wolf` container exited (the message has its exit code).
    pub const WOLF_EXITED: &str = "WolfExited";
    /// Session ended: its pod failed, completed or was deleted.
    pub const POD_FAILED: &str = "PodFailed";
    /// Session ended: no Ready pod and stream URL within the start deadline.
    pub const START_DEADLINE_EXCEEDED: &str = "StartDeadlineExceeded";
    /// Session ended: its App was deleted.
    pub const APP_DELETED: &str = "AppDeleted";
    /// Session ended: its User was deleted.
    pub const USER_DELETED: &str = "UserDeleted";
    /// Session ended: the agent reported the stream over (phase Ended).
    pub const STREAM_ENDED: &str = "StreamEnded";
    /// Event: a reconcile failed and will be retried (the note has the error).
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
}

/// Server-side-apply field managers, one per writer and kind.
pub mod field_managers {
    /// The proxy writing Pairings.
    pub const PROXY_PAIRING: &str = "direwolf-proxy-pairing";
    /// The proxy (or an admin tool) writing Users.
    pub const PROXY_USER: &str = "direwolf-proxy-user";
    /// The proxy (or an admin tool) writing Apps.
    pub const PROXY_APP: &str = "direwolf-proxy-app";
    /// The proxy creating and re-keying Sessions.
    pub const PROXY_SESSION: &str = "direwolf-proxy-session";
    /// The proxy writing Session status through the store (phase, placement).
    pub const PROXY_SESSION_STATUS: &str = "direwolf-proxy-session-status";
    /// The proxy writing the server identity Secret.
    pub const PROXY_IDENTITY: &str = "direwolf-proxy-identity";
    /// The proxy reporting hand-edited problems on App and Pairing status (`report`).
    pub const PROXY_REPORT_STATUS: &str = "direwolf-proxy-report-status";
    /// The operator writing Session status.
    pub const OPERATOR_SESSION_STATUS: &str = "direwolf-operator-session-status";
    /// The operator writing the stream Deployment.
    pub const OPERATOR_DEPLOYMENT: &str = "direwolf-operator-deployment";
    /// The operator adding Session owners to a shared Deployment.
    pub const OPERATOR_DEPLOYMENT_OWNERS: &str = "direwolf-operator-deployment-owners";
    /// The operator writing the stream Service.
    pub const OPERATOR_SERVICE: &str = "direwolf-operator-service";
    /// Operator: a Session's Gateway API routes.
    pub const OPERATOR_ROUTES: &str = "direwolf-operator-routes";
    /// The operator writing the home claim.
    pub const OPERATOR_PVC: &str = "direwolf-operator-pvc";
    /// The wolf-agent writing its Session's status (stream URL, Wolf session id, phase).
    pub const AGENT_SESSION_STATUS: &str = "direwolf-agent-session-status";
    /// The operator writing a stream pod.
    pub const OPERATOR_POD: &str = "direwolf-operator-pod";
    /// The operator writing a stream pod's ServiceAccount, Role and RoleBinding.
    pub const OPERATOR_AGENT_ACCOUNT: &str = "direwolf-operator-agent-account";
    /// The proxy writing a Session's keys Secret.
    pub const PROXY_SESSION_KEYS: &str = "direwolf-proxy-session-keys";
    /// The operator reporting problems on App, User and Pairing status.
    pub const OPERATOR_REPORT_STATUS: &str = "direwolf-operator-report-status";
}

#[cfg(test)]
mod tests;
