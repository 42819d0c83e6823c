//! The proxy's and the operator's ServiceAccounts, Roles and RoleBindings
//! (`docs/protocol/kubernetes.md` § Permissions). Each agent's account is made per Session by the
//! operator (`direwolf-k8s/src/operator/`), so it is not here.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use direwolf_k8s::operator::{Exposure, GatewayExposure};

use super::{Component, Settings};

/// The comment that opens its file of the base.
pub const HEADER: &str = "Identities and namespace-scoped permissions of the proxy and the operator\n\
(docs/protocol/kubernetes.md § Permissions: Leases for leader election, the identity Secret,\n\
Events). Each Session's agent gets an account of its own from the operator.";

/// The API group of the direwolf kinds.
const GROUP: &str = "direwolf.games-on-whales.github.io";

/// The account of `component`.
pub fn service_account(settings: &Settings, component: Component) -> ServiceAccount {
    ServiceAccount {
        metadata: settings.metadata(component.account(), component),
        ..ServiceAccount::default()
    }
}

/// The Role of `component`.
pub fn role(settings: &Settings, component: Component) -> Role {
    let rules = match component {
        Component::Proxy => proxy_rules(),
        Component::Operator => operator_rules(settings),
    };
    Role {
        metadata: settings.metadata(component.account(), component),
        rules: Some(rules),
    }
}

/// Binds the Role of `component` to its account.
pub fn role_binding(settings: &Settings, component: Component) -> RoleBinding {
    RoleBinding {
        metadata: settings.metadata(component.account(), component),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: component.account().to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: component.account().to_owned(),
            // None in the namespace-less base: a RoleBinding's subject without a namespace is
            // an account of the RoleBinding's own namespace.
            namespace: settings.namespace.clone(),
            api_group: None,
        }]),
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| Some(s.iter().map(|&s| s.to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: strings(verbs).unwrap_or_default(),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE_ALL: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];

fn proxy_rules() -> Vec<PolicyRule> {
    vec![
        // Read every direwolf kind (the watches of Pairing, App, User, Session).
        rule(&[GROUP], &["apps", "users", "pairings", "sessions"], READ),
        // Pairings are written when pairing completes and deleted on unpair; Sessions on launch,
        // resume and cancel; Users when a pairing names a user that does not exist yet (and the
        // default user at start).
        rule(
            &[GROUP],
            &["pairings", "sessions", "users"],
            &["create", "delete", "patch", "update"],
        ),
        // Session status (phase, placement); App and Pairing status carry the reports of
        // hand-edited problems (IDUnique, UserFound; direwolf-k8s/src/report.rs).
        rule(
            &[GROUP],
            &["sessions/status", "pairings/status", "apps/status"],
            &["get", "patch", "update"],
        ),
        // Busy state (/serverinfo) and cancel wait on the user's stream pods.
        rule(&[""], &["pods"], READ),
        // The server identity (Secret direwolf-identity, shared by every replica), one Secret per
        // pairing waiting for its PIN (the PIN page may reach another replica than the one
        // holding the pairing: docs/protocol/moonlight-http.md § Several proxy replicas) and the
        // Sessions' keys Secrets. Pending-PIN Secrets have generated names, so access cannot be
        // limited by name: run the proxy in a namespace of its own.
        rule(
            &[""],
            &["secrets"],
            &["get", "list", "watch", "create", "patch", "update", "delete"],
        ),
        // Problems users should see (e.g. two Apps with one id) become Events.
        rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

fn operator_rules(settings: &Settings) -> Vec<PolicyRule> {
    let exposure = &settings.exposure;
    let mut rules = vec![
        // Leader election on Lease direwolf-controller.
        rule(&["coordination.k8s.io"], &["leases"], WRITE_ALL),
        rule(
            &[GROUP],
            &[
                "apps",
                "apps/status",
                "users",
                "users/status",
                "pairings",
                "pairings/status",
                "sessions",
                "sessions/status",
                "sessions/finalizers",
            ],
            &[
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        ),
        // One stream pod per Session, and the home claims (owned by the User). Services: the
        // proxies' LoadBalancer Service publishes each Session's stream ports (relay mode), or
        // each Session has a Service of its own (load-balancer and gateway modes).
        rule(&[""], &["pods", "services", "persistentvolumeclaims"], WRITE_ALL),
        // Each stream pod runs as its own ServiceAccount, whose Role lets its agent read only its
        // own Session and keys Secret and write only its Session's status (a warm pod's Role:
        // reading only the pod itself, until a claim binds its Session's). Granting that Role
        // needs the operator to hold the same rights (the Session rights above, and reading
        // Secrets below); it also deletes a Session's keys Secret with the Session.
        rule(&[""], &["serviceaccounts"], WRITE_ALL),
        rule(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            WRITE_ALL,
        ),
        rule(&[""], &["secrets"], &["get", "delete"]),
        rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
    ];
    if let Exposure::Gateway(gateway) = exposure {
        // Each Session's TCPRoute and UDPRoutes (server-side apply creates and patches).
        rules.push(rule(
            &["gateway.networking.k8s.io"],
            &["tcproutes", "udproutes"],
            &["get", "create", "patch", "delete"],
        ));
        // The configured Gateway must exist: read here when it is in this namespace (or the
        // namespace is the one the base is applied into), else by `gateway_reader` there.
        if !gateway_elsewhere(settings, gateway) {
            rules.push(gateway_rule(gateway));
        }
    }
    rules
}

/// Reading the configured Gateway, and only it.
fn gateway_rule(gateway: &GatewayExposure) -> PolicyRule {
    PolicyRule {
        resource_names: Some(vec![gateway.name.clone()]),
        ..rule(&["gateway.networking.k8s.io"], &["gateways"], &["get"])
    }
}

/// Whether the Gateway is in another namespace than the installation's (never in the
/// namespace-less base, which cannot name its own namespace).
fn gateway_elsewhere(settings: &Settings, gateway: &GatewayExposure) -> bool {
    settings
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != gateway.namespace)
}

/// With `--exposure gateway` and a Gateway in another namespace: a Role there that reads that
/// Gateway, bound to the operator's account (`direwolf-operator-gateway`).
pub fn gateway_reader(settings: &Settings) -> Option<(Role, RoleBinding)> {
    let Exposure::Gateway(gateway) = &settings.exposure else {
        return None;
    };
    if !gateway_elsewhere(settings, gateway) {
        return None;
    }
    let name = "direwolf-operator-gateway";
    let mut metadata = settings.metadata(name, Component::Operator);
    metadata.namespace = Some(gateway.namespace.clone());
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(vec![gateway_rule(gateway)]),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: Component::Operator.account().to_owned(),
            namespace: settings.namespace.clone(),
            api_group: None,
        }]),
    };
    Some((role, binding))
}
