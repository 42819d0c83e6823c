//! Reports objects edited by hand into a state direwolf cannot use, on the objects themselves.
//!
//! * A `Pairing` whose `spec.userReference` names a `User` that does not exist gets condition
//!   `UserFound=False` (reason `UserNotFound`): its client is refused (as unpaired) until the
//!   User exists again.
//! * `App`s that share one `spec.id` get condition `IDUnique=False` (reason `DuplicateAppID`):
//!   all of them are left out of the app list until the clash is resolved.
//!
//! Both conditions become `True` again once the problem is gone. The reporter runs inside
//! `direwolf proxy`; every replica may run it: it applies the conditions with server-side apply
//! under one field manager and writes only when a condition changes, so replicas agree and do
//! not fight. Deciding is pure ([`pairing_condition`], [`app_conditions`]); only [`run`] talks
//! to the API server. It reads the Pairing, User and App watches of the shared [`Watches`] set,
//! so it adds no watch of its own to the proxy's.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::crd::{App, Pairing, ReportStatus, User, conditions, field_managers, find_condition, reasons};
use crate::retry::RetryPolicy;
use crate::watch::Watches;
use crate::watch::reflector::Reflector;

/// A condition as the reporter wants it, before a transition time is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The condition type.
    pub type_: &'static str,
    /// Whether the condition holds.
    pub ok: bool,
    /// Machine-readable reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The `UserFound` condition of a pairing, given the names of the existing users.
pub fn pairing_condition(pairing: &Pairing, users: &HashSet<String>) -> Desired {
    let user = &pairing.spec.user_reference.name;
    if users.contains(user) {
        Desired {
            type_: conditions::USER_FOUND,
            ok: true,
            reason: reasons::SUCCESS,
            message: format!("User {user} exists"),
        }
    } else {
        Desired {
            type_: conditions::USER_FOUND,
            ok: false,
            reason: reasons::USER_NOT_FOUND,
            message: format!(
                "User {user} does not exist: this client is refused until it does (create the User \
                 or point spec.userReference at an existing one)"
            ),
        }
    }
}

/// The `IDUnique` condition of every app, by app object name.
pub fn app_conditions<'a>(apps: impl IntoIterator<Item = &'a App>) -> BTreeMap<String, Desired> {
    let mut by_id: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for app in apps {
        by_id.entry(app.spec.id).or_default().push(app.name_any());
    }
    let mut out = BTreeMap::new();
    for (id, names) in by_id {
        for name in &names {
            let others: Vec<&str> = names.iter().filter(|n| *n != name).map(String::as_str).collect();
            let desired = if others.is_empty() {
                Desired {
                    type_: conditions::ID_UNIQUE,
                    ok: true,
                    reason: reasons::SUCCESS,
                    message: format!("No other App has id {id}"),
                }
            } else {
                Desired {
                    type_: conditions::ID_UNIQUE,
                    ok: false,
                    reason: reasons::DUPLICATE_APP_ID,
                    message: format!(
                        "Apps {} have the same id {id}: none of them is listed until the ids differ",
                        std::iter::once(name.as_str())
                            .chain(others)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            };
            out.insert(name.clone(), desired);
        }
    }
    out
}

/// Whether `current` already says what `desired` says (transition times aside).
fn up_to_date(current: Option<&Condition>, desired: &Desired) -> bool {
    current.is_some_and(|c| {
        c.status == if desired.ok { "True" } else { "False" }
            && c.reason == desired.reason
            && c.message == desired.message
    })
}

/// The full condition to write: the transition time moves only when the status changes.
fn to_condition(desired: &Desired, current: Option<&Condition>, generation: Option<i64>) -> Condition {
    let status = if desired.ok { "True" } else { "False" };
    let last_transition_time = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    Condition {
        type_: desired.type_.to_owned(),
        status: status.to_owned(),
        reason: desired.reason.to_owned(),
        message: desired.message.clone(),
        last_transition_time,
        observed_generation: generation,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: String,
    kind: String,
    status: StatusBody<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    conditions: [&'a Condition; 1],
}

/// Applies one condition to the status of `object` if it differs from what is there.
async fn report<K>(api: &Api<K>, object: &K, current: Option<&Condition>, desired: &Desired)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if up_to_date(current, desired) {
        return;
    }
    let name = object.name_any();
    let condition = to_condition(desired, current, object.meta().generation);
    let body = StatusApply {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        status: StatusBody {
            conditions: [&condition],
        },
    };
    let params = PatchParams::apply(field_managers::PROXY_REPORT_STATUS).force();
    let apply = Patch::Apply(&body);
    let written = RetryPolicy::default()
        .run("apply condition", || api.patch_status(&name, &params, &apply))
        .await;
    match written {
        Ok(_) if desired.ok => {
            info!(kind = %K::kind(&()), name, condition = desired.type_, "problem resolved")
        }
        Ok(_) => {
            warn!(kind = %K::kind(&()), name, condition = desired.type_, message = %desired.message, "reported a problem")
        }
        // Not transient (transient failures were retried): the object may be gone, or the
        // write was refused; the next change tries again.
        Err(error) => warn!(kind = %K::kind(&()), name, %error, "could not report a condition"),
    }
}

fn status_condition<'a>(status: Option<&'a ReportStatus>, type_: &str) -> Option<&'a Condition> {
    status.and_then(|s| find_condition(&s.conditions, type_))
}

/// What the reporter reads and writes.
struct Reporter {
    pairing_api: Api<Pairing>,
    app_api: Api<App>,
    pairings: std::sync::Arc<Reflector<Pairing>>,
    users: std::sync::Arc<Reflector<User>>,
    apps: std::sync::Arc<Reflector<App>>,
}

impl Reporter {
    fn ready(&self) -> bool {
        self.pairings.is_ready() && self.users.is_ready() && self.apps.is_ready()
    }

    /// Computes and applies every condition once, from the watches.
    async fn reconcile(&self) {
        let user_names: HashSet<String> = self.users.state().iter().map(|u| u.name_any()).collect();
        for pairing in self.pairings.state() {
            let desired = pairing_condition(&pairing, &user_names);
            let current = status_condition(pairing.status.as_ref(), desired.type_);
            report(&self.pairing_api, pairing.as_ref(), current, &desired).await;
        }
        let all_apps = self.apps.state();
        let desired = app_conditions(all_apps.iter().map(|a| a.as_ref()));
        for app in &all_apps {
            if let Some(desired) = desired.get(&app.name_any()) {
                let current = status_condition(app.status.as_ref(), desired.type_);
                report(&self.app_api, app.as_ref(), current, desired).await;
            }
        }
    }
}

/// Keeps the conditions of the Pairings and Apps of `watches` current until the returned future
/// is dropped, reading the Pairing, User and App watches (started if no other reader has).
pub async fn run(watches: Watches) {
    let reporter = Reporter {
        pairing_api: watches.api(),
        app_api: watches.api(),
        pairings: watches.pairings().reflector().clone(),
        users: watches.users().reflector().clone(),
        apps: watches.apps().reflector().clone(),
    };
    // Subscribed before the first look, so no change between the two is missed.
    let mut changes = stream::select_all([
        reporter.pairings.changes().boxed(),
        reporter.users.changes().boxed(),
        reporter.apps.changes().boxed(),
    ]);
    loop {
        // Until every watch has listed, the change that completes a listing starts the next round.
        if reporter.ready() {
            reporter.reconcile().await;
        }
        if changes.next().await.is_none() {
            return;
        }
        // Let a burst of changes settle, then look at the whole picture once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(Some(())) = changes.next().now_or_never() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AppSpec, PairingSpec, UserReference};

    fn pairing(user: &str) -> Pairing {
        Pairing::new(
            &"a".repeat(64),
            PairingSpec {
                client_cert_pem: "-----BEGIN CERTIFICATE-----".into(),
                user_reference: UserReference { name: user.into() },
                device_name: None,
                paired_at: None,
            },
        )
    }

    fn app(name: &str, id: i32) -> App {
        let mut spec: AppSpec =
            serde_json::from_value(serde_json::json!({"title": name, "id": id})).expect("a minimal App spec");
        spec.id = id;
        App::new(name, spec)
    }

    #[test]
    fn pairings_of_missing_users_are_reported() {
        let users: HashSet<String> = ["alice".to_owned()].into();
        let ok = pairing_condition(&pairing("alice"), &users);
        assert!(ok.ok && ok.reason == reasons::SUCCESS);
        let missing = pairing_condition(&pairing("ghost"), &users);
        assert!(!missing.ok);
        assert_eq!(missing.reason, reasons::USER_NOT_FOUND);
        assert!(missing.message.contains("ghost"), "{}", missing.message);
    }

    #[test]
    fn clashing_app_ids_are_reported_on_every_app() {
        let apps = vec![app("steam", 2), app("steam-copy", 2), app("desktop", 1)];
        let desired = app_conditions(&apps);
        assert!(desired["desktop"].ok);
        for name in ["steam", "steam-copy"] {
            assert!(!desired[name].ok);
            assert_eq!(desired[name].reason, reasons::DUPLICATE_APP_ID);
            assert!(
                desired[name].message.contains("steam, steam-copy")
                    || desired[name].message.contains("steam-copy, steam")
            );
        }
    }

    #[test]
    fn transition_times_move_only_on_status_changes() {
        let desired = pairing_condition(&pairing("ghost"), &HashSet::new());
        let first = to_condition(&desired, None, Some(1));
        assert!(up_to_date(Some(&first), &desired));
        let same = to_condition(&desired, Some(&first), Some(2));
        assert_eq!(same.last_transition_time, first.last_transition_time);
        let fixed = pairing_condition(&pairing("ghost"), &["ghost".to_owned()].into());
        assert!(!up_to_date(Some(&first), &fixed));
        assert_eq!(to_condition(&fixed, Some(&first), Some(2)).status, "True");
    }
}
