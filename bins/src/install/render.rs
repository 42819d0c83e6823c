//! The manifests as YAML: one stream for `kubectl apply`, or the files of the kustomize base.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The objects of one file of the base, serialised, with the comment that opens the file.
#[derive(Debug)]
pub struct Section {
    pub file: &'static str,
    pub header: &'static str,
    pub documents: Vec<String>,
}

/// One object as a YAML document (long strings are not folded).
pub fn to_yaml<T: Serialize>(object: &T) -> anyhow::Result<String> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    Ok(serde_saphyr::to_string_with_options(object, options)?)
}

/// `text` as YAML comment lines.
fn comment(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "#\n".to_owned()
            } else {
                format!("# {l}\n")
            }
        })
        .collect()
}

/// The file the base is listed in.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

const GENERATED: &str =
    "Rendered by `direwolf install --split deploy` (bins/src/install/): edit the code, not this file.";

/// The files of the namespace-less base: each section's, then `kustomization.yaml` listing them.
pub fn base(sections: &[Section]) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut files: Vec<(&'static str, String)> = sections
        .iter()
        .map(|s| {
            let text = comment(&format!("{}\n{GENERATED}", s.header)) + &s.documents.join("---\n");
            (s.file, text)
        })
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Kustomization<'a> {
        api_version: &'a str,
        kind: &'a str,
        resources: Vec<&'a str>,
    }
    let kustomization = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: sections.iter().map(|s| s.file).collect(),
    };
    let header = "direwolf in one namespace, without the CRDs (`direwolf crd`): see deploy/README.md.\n\
                  kubectl apply --server-side -n <namespace> -k deploy/";
    files.push((
        KUSTOMIZATION,
        comment(&format!("{header}\n{GENERATED}")) + &to_yaml(&kustomization)?,
    ));
    Ok(files)
}

/// The whole installation in `namespace` as one stream: the CRDs (when given), the Namespace, then
/// every section.
pub fn stream(crds: Option<&str>, namespace: &str, sections: &[Section]) -> anyhow::Result<String> {
    let mut out = comment(&format!(
        "direwolf {} in namespace {namespace}, printed by direwolf install: apply with kubectl apply --server-side -f -",
        env!("CARGO_PKG_VERSION")
    ));
    if let Some(crds) = crds {
        out.push_str(crds);
    }
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some([(direwolf_k8s::crd::labels::NAME.to_owned(), "direwolf".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    out.push_str("---\n");
    out.push_str(&to_yaml(&object)?);
    for section in sections {
        for (i, document) in section.documents.iter().enumerate() {
            out.push_str("---\n");
            if i == 0 {
                out.push_str(&comment(section.header));
            }
            out.push_str(document);
        }
    }
    Ok(out)
}
