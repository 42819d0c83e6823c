//! The persistent home of a User for an App (`docs/protocol/kubernetes.md` § Home volume): the
//! claim `<user>-<app>`, owned by the User so that it outlives Sessions and goes with the User.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{App, User, labels};

/// The claim's name: `<user>-<app>`.
pub fn home_claim_name(user: &str, app: &str) -> String {
    format!("{user}-{app}")
}

/// The home claim of `user` for `app`, if the App asks for one (and the User has a uid to own
/// it).
pub fn home_claim(app: &App, user: &User) -> Option<PersistentVolumeClaim> {
    let template = app.spec.volume_claim_template.clone()?;
    let owner = user.controller_owner_ref(&())?;
    let metadata = template.metadata.unwrap_or_default();
    let mut claim_labels = metadata.labels;
    claim_labels.extend([
        (labels::APP.to_owned(), labels::APP_WORKER.to_owned()),
        (labels::USER.to_owned(), user.name_any()),
        (labels::APP_NAME.to_owned(), app.name_any()),
    ]);
    let mut spec = template.spec;
    if spec.access_modes.as_ref().is_none_or(Vec::is_empty) {
        spec.access_modes = Some(vec!["ReadWriteOnce".to_owned()]);
    }
    let mut resources = spec.resources.take().unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    requests
        .entry("storage".to_owned())
        .or_insert_with(|| Quantity("5Gi".to_owned()));
    spec.resources = Some(VolumeResourceRequirements { ..resources });
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(home_claim_name(&user.name_any(), &app.name_any())),
            namespace: app.namespace(),
            labels: Some(claim_labels),
            annotations: (!metadata.annotations.is_empty()).then_some(metadata.annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}
