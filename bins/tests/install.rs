//! The README's Kubernetes install, run as written against the real control plane
//! (`scripts/kube-testenv`): `direwolf install --namespace games | kubectl apply --server-side -f -`
//! (the CRDs, the namespace, the accounts and Roles, the proxy, the operator, their budgets and
//! the NetworkPolicy), then the example resources. Issue 11: the App CRD is too large for
//! client-side apply, so the documented command must be the one that works. Also: what each
//! component's account may do equals its Role, and the checked-in kustomize base applies.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use support::testenv::{self, within};

const CRDS: [&str; 4] = ["apps", "pairings", "sessions", "users"];

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The shell block of the README's "## Kubernetes" section, its namespace `games` renamed.
fn readme_install_block(namespace: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Kubernetes\n")
        .nth(1)
        .expect("the README has a Kubernetes section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the Kubernetes section opens with a sh block");
    assert!(
        block.contains("direwolf install --namespace games | kubectl apply --server-side -f -"),
        "the documented install is the one this test proves: {block}"
    );
    block
        .lines()
        .map(|line| {
            line.split(' ')
                .map(|word| if word == "games" { namespace } else { word })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `script` with sh -e in the repository, `direwolf` and `kubectl` on PATH; its stdout.
/// Fails on a warning of the API server too: the user would see it.
fn sh(cp: &testenv::ControlPlane, script: &str) -> String {
    let direwolf = Path::new(env!("CARGO_BIN_EXE_direwolf"));
    let path = format!(
        "{}:{}:{}",
        direwolf.parent().expect("a directory").display(),
        cp.kubectl.parent().expect("a directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Each kubectl call is a network wait: 120 s for the whole script.
    let out = Command::new("timeout")
        .args(["120", "sh", "-e", "-c", script])
        .current_dir(repo_root())
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{script}\nfailed ({}): {stderr}",
        out.status
    );
    assert!(!stderr.contains("Warning"), "{script}\nwarned: {stderr}");
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_install_works_as_written() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let namespace = format!("games-{}", std::process::id());
    let block = readme_install_block(&namespace);
    let out = tokio::task::block_in_place(|| sh(cp, &block));
    assert!(out.contains("serverside-applied"), "{out}");

    let client = cp.client(&namespace).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for plural in CRDS {
        testenv::wait_established(&crds, &format!("{plural}.direwolf.games-on-whales.github.io")).await;
    }
    // Applied again, as the documented alternative: server-side apply is idempotent.
    let again = tokio::task::block_in_place(|| sh(cp, "kubectl apply --server-side -f crds/"));
    assert_eq!(again.matches("serverside-applied").count(), CRDS.len(), "{again}");

    // Every object of the installation is there, in the namespace.
    let names = ["direwolf-proxy", "direwolf-operator"];
    for name in names {
        within("the accounts, Roles, RoleBindings and budgets", async {
            Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
                .get(name)
                .await?;
            Api::<Role>::namespaced(client.clone(), &namespace)
                .get(name)
                .await?;
            Api::<RoleBinding>::namespaced(client.clone(), &namespace)
                .get(name)
                .await?;
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                .get(name)
                .await?;
            Ok::<_, kube::Error>(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    within(
        "the NetworkPolicy",
        Api::<NetworkPolicy>::namespaced(client.clone(), &namespace).get("direwolf-stream-pods"),
    )
    .await
    .expect("the stream pods' NetworkPolicy");

    // The example resources are there, and the proxy's and operator's Deployments run on the
    // fake nodes, each under its own ServiceAccount.
    let users: Api<direwolf_k8s::crd::User> = Api::namespaced(client.clone(), &namespace);
    within("get the example User", users.get("alice"))
        .await
        .expect("the example User");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    for name in ["direwolf-proxy", "direwolf-operator"] {
        let available = within("the Deployment available", async {
            loop {
                let d = deployments.get(name).await.expect("the Deployment");
                let status = d.status.unwrap_or_default();
                if status.available_replicas == Some(2) {
                    break status;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert_eq!(available.ready_replicas, Some(2), "{name}");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = within("list the pods", pods.list(&ListParams::default()))
        .await
        .expect("list pods");
    for pod in pods.items {
        let spec = pod.spec.expect("a pod spec");
        let component = pod.metadata.labels.unwrap_or_default()["app.kubernetes.io/component"].clone();
        let account = format!("direwolf-{component}");
        assert_eq!(spec.service_account_name.as_deref(), Some(account.as_str()));
        let node = spec.node_name.expect("scheduled");
        assert!(node.starts_with("testenv-node-"), "{node}");
    }

    // Applied again with the load balancer's address, as the README says once the Service has
    // it: only the proxy's environment changes, without a conflict.
    let again = tokio::task::block_in_place(|| {
        sh(
            cp,
            &format!(
                "direwolf install --namespace {namespace} --external-address 203.0.113.10 \
                 | kubectl apply --server-side -f -"
            ),
        )
    });
    assert!(
        again.contains("deployment.apps/direwolf-proxy serverside-applied"),
        "{again}"
    );
    let proxy = within(
        "get the proxy's Deployment",
        Api::<Deployment>::namespaced(client.clone(), &namespace).get("direwolf-proxy"),
    )
    .await
    .expect("the proxy's Deployment");
    let env = proxy
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod spec")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "DIREWOLF_EXTERNAL_ADDRESS" && e.value.as_deref() == Some("203.0.113.10")),
        "{env:?}"
    );
}

/// Resource (`plural[.group][/subresource]`, as `kubectl auth can-i --list` names it, with its
/// resource names) → verbs.
type Grants = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The resource rows of `kubectl auth can-i --list` (non-resource URLs left out).
fn can_i_list(table: &str) -> Grants {
    let mut grants = Grants::new();
    for line in table.lines().skip(1).filter(|l| !l.starts_with(' ')) {
        let columns: Vec<&str> = line.splitn(2, ' ').collect();
        let rest = columns.get(1).expect("a resource row has columns");
        // [non-resource URLs] [resource names] [verbs]
        let lists: Vec<&str> = rest
            .split('[')
            .skip(1)
            .map(|c| c.trim().trim_end_matches(']'))
            .collect();
        assert_eq!(lists.len(), 3, "unexpected row: {line}");
        let key = match lists[1] {
            "" => columns[0].to_owned(),
            names => format!("{} {names}", columns[0]),
        };
        grants
            .entry(key)
            .or_default()
            .extend(lists[2].split(' ').map(str::to_owned));
    }
    grants
}

/// What Role `name` of `manifests` grants, named as `kubectl auth can-i --list` names it.
fn role_grants(manifests: &str, name: &str) -> Grants {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(manifests).expect("YAML");
    let role = docs
        .into_iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == name)
        .expect("the Role");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    let mut grants = Grants::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let (base, sub) = resource
                    .split_once('/')
                    .map_or((resource.as_str(), None), |(b, s)| (b, Some(s)));
                let mut key = if group.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}.{group}")
                };
                if let Some(sub) = sub {
                    key = format!("{key}/{sub}");
                }
                if rule["resourceNames"].is_array() {
                    key = format!("{key} {}", strings(&rule["resourceNames"]).join(" "));
                }
                grants.entry(key).or_default().extend(strings(&rule["verbs"]));
            }
        }
    }
    grants
}

/// Issue 11 and `direwolf install`: installed with `direwolf install --namespace X | kubectl
/// apply --server-side -f -`, `kubectl auth can-i --list` shows, with a token of ServiceAccount
/// direwolf-proxy and of direwolf-operator, exactly what the account's Role grants, besides what
/// every account may do (asked for an account without a Role binding). The checked-in
/// deploy/rbac.yaml is the same Roles (`direwolf install --split deploy`, drift-checked). The
/// same holds for the gateway exposure's Role (routes, and reading the named Gateway).
#[test]
fn each_account_may_do_what_its_role_grants_and_nothing_more() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let plain = format!("rbac-{}", std::process::id());
    account_rights_match_roles(cp, &plain, "");
    let gateway = format!("rbac-gw-{}", std::process::id());
    account_rights_match_roles(
        cp,
        &gateway,
        &format!("--exposure gateway --gateway {gateway}/public"),
    );
    // A Gateway in another namespace: the operator reads that Gateway there, and nothing else.
    let infra = format!("rbac-infra-{}", std::process::id());
    let elsewhere = format!("rbac-gwx-{}", std::process::id());
    sh(
        cp,
        &format!(
            "kubectl create namespace {infra} >/dev/null && direwolf install --no-crds --namespace {elsewhere} \
             --exposure gateway --gateway {infra}/public | kubectl apply --server-side -f - >/dev/null"
        ),
    );
    let operator = format!("system:serviceaccount:{elsewhere}:direwolf-operator");
    // The Gateway API is not served here, so ask RBAC directly (a SubjectAccessReview).
    let can_i = |group: &str, resource: &str, name: &str| {
        sh(
            cp,
            &format!(
                "kubectl create -o jsonpath='{{.status.allowed}}' -f - <<EOF
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: {operator}
  groups: [system:serviceaccounts, \"system:serviceaccounts:{elsewhere}\", system:authenticated]
  resourceAttributes: {{namespace: {infra}, verb: get, group: \"{group}\", resource: {resource}, name: {name}}}
EOF"
            ),
        )
    };
    let gateways = "gateway.networking.k8s.io";
    assert_eq!(can_i(gateways, "gateways", "public"), "true");
    assert_eq!(can_i(gateways, "gateways", "other"), "false");
    assert_eq!(can_i("", "secrets", "any"), "false");
}

/// [`each_account_may_do_what_its_role_grants_and_nothing_more`] for `direwolf install FLAGS`
/// into `namespace`.
fn account_rights_match_roles(cp: &testenv::ControlPlane, namespace: &str, flags: &str) {
    let namespace = namespace.to_owned();
    let manifests = sh(
        cp,
        &format!("direwolf install --no-crds --namespace {namespace} {flags}"),
    );
    sh(
        cp,
        &format!(
            "direwolf install --no-crds --namespace {namespace} {flags} | kubectl apply --server-side -f -"
        ),
    );
    let anyone = format!("system:serviceaccount:{namespace}:nobody");
    let everyone = can_i_list(&cp.kubectl(&["auth", "can-i", "--list", "-n", &namespace, "--as", &anyone]));
    assert!(
        !everyone.is_empty(),
        "an authenticated account may at least review itself"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    for account in ["direwolf-proxy", "direwolf-operator"] {
        let kubeconfig = dir.path().join(format!("{account}.kubeconfig"));
        cp.service_account_kubeconfig(&namespace, account, &kubeconfig);
        let kubeconfig = kubeconfig.display().to_string();
        let granted = can_i_list(&cp.kubectl(&[
            "--kubeconfig",
            &kubeconfig,
            "auth",
            "can-i",
            "--list",
            "-n",
            &namespace,
        ]));
        let mut expected = everyone.clone();
        for (resource, verbs) in role_grants(&manifests, account) {
            expected.entry(resource).or_default().extend(verbs);
        }
        assert_eq!(
            granted, expected,
            "what {account} may do, beside what anyone may do: {everyone:?}"
        );

        // And what it may not: Deployments, another namespace's Secrets.
        let can_i = |args: &[&str]| {
            let mut all = vec![
                "--kubeconfig",
                kubeconfig.as_str(),
                "--request-timeout=30s",
                "auth",
                "can-i",
            ];
            all.extend_from_slice(args);
            let out = Command::new(&cp.kubectl)
                .args(&all)
                .output()
                .expect("run kubectl");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(can_i(&["create", "deployments.apps", "-n", &namespace]), "no");
        assert_eq!(can_i(&["get", "secrets", "-n", "default"]), "no");
        assert_eq!(can_i(&["get", "secrets", "-n", &namespace]), "yes");
    }
}

/// The checked-in kustomize base (`deploy/kustomization.yaml`) applies into a namespace of the
/// caller's choosing, as deploy/README.md says.
#[test]
fn the_kustomize_base_applies_into_any_namespace() {
    let Some(cp) = testenv::control_plane() else {
        return;
    };
    let namespace = format!("base-{}", std::process::id());
    let out = sh(
        cp,
        &format!(
            "direwolf crd | kubectl apply --server-side -f -\n\
             kubectl create namespace {namespace}\n\
             kubectl apply --server-side -n {namespace} -k deploy/"
        ),
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let listed = cp.kubectl(&[
        "get",
        "-n",
        &namespace,
        "serviceaccount,role,rolebinding,deployment,service,poddisruptionbudget,networkpolicy",
        "-o",
        "name",
    ]);
    for object in [
        "serviceaccount/direwolf-proxy",
        "serviceaccount/direwolf-operator",
        "role.rbac.authorization.k8s.io/direwolf-operator",
        "rolebinding.rbac.authorization.k8s.io/direwolf-proxy",
        "deployment.apps/direwolf-proxy",
        "deployment.apps/direwolf-operator",
        "service/direwolf-proxy",
        "poddisruptionbudget.policy/direwolf-proxy",
        "poddisruptionbudget.policy/direwolf-operator",
        "networkpolicy.networking.k8s.io/direwolf-stream-pods",
    ] {
        assert!(listed.lines().any(|l| l == object), "{object} in {listed}");
    }
}
