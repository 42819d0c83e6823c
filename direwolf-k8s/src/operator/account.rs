//! The agent's account: the ServiceAccount, Role and RoleBinding named
//! [`stream::agent_account_name`] that a Session's pod runs as, owned by the Session. The Role
//! grants only what the agent needs: its own Session (get, list and watch by name), its
//! status (get, patch) and its keys Secret (get).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::pod::session_labels;
use crate::crd::{GROUP, Session};
use crate::stream;

/// The account objects of a Session, or `None` if it has no uid to own them.
pub fn agent_account(session: &Session) -> Option<(ServiceAccount, Role, RoleBinding)> {
    let meta = ObjectMeta {
        name: Some(stream::agent_account_name(&session.name_any())),
        namespace: session.namespace(),
        labels: Some(session_labels(session)),
        owner_references: Some(vec![session.controller_owner_ref(&())?]),
        ..ObjectMeta::default()
    };
    Some(account_objects(meta, agent_rules(&session.name_any())))
}

/// A ServiceAccount, a Role with `rules` and the RoleBinding giving that Role to that account,
/// all three with `meta` (its name and namespace).
pub fn account_objects(meta: ObjectMeta, rules: Vec<PolicyRule>) -> (ServiceAccount, Role, RoleBinding) {
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone();
    let account = ServiceAccount {
        metadata: meta.clone(),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name,
            namespace,
            api_group: None,
        }]),
    };
    (account, role, binding)
}

/// The agent's rights: its Session, the Session's status, its keys Secret; nothing else.
pub fn agent_rules(session: &str) -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, verbs: &[&str], name: String| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        resource_names: Some(vec![name]),
        non_resource_urls: None,
    };
    vec![
        // list and watch by name need a fieldSelector metadata.name=<session>.
        rule(GROUP, "sessions", &["get", "list", "watch"], session.to_owned()),
        rule(GROUP, "sessions/status", &["get", "patch"], session.to_owned()),
        rule("", "secrets", &["get"], stream::keys_secret_name(session)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_only_the_sessions_objects() {
        let rules = agent_rules("alice-desktop-x7k2p");
        assert_eq!(rules.len(), 3);
        for rule in &rules {
            let names = rule.resource_names.as_ref().expect("every rule names its object");
            assert_eq!(names.len(), 1);
            assert!(names[0].starts_with("alice-desktop-x7k2p"));
            assert!(
                !rule
                    .verbs
                    .iter()
                    .any(|v| ["create", "delete", "update", "*"].contains(&v.as_str()))
            );
        }
        assert_eq!(
            rules[2].resource_names.as_deref(),
            Some(&["alice-desktop-x7k2p-keys".to_owned()][..])
        );
    }
}
