//! The flags, the rendered objects, the checked-in base (`deploy/`) and the Dockerfile.

use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;

use super::*;

#[derive(Debug, Parser)]
struct Wrapper {
    #[command(flatten)]
    install: InstallArgs,
}

fn parse(args: &[&str]) -> Result<InstallArgs, clap::Error> {
    Wrapper::try_parse_from(std::iter::once("install").chain(args.iter().copied())).map(|w| w.install)
}

/// What `direwolf install ARGS` prints.
fn printed(args: &[&str]) -> String {
    let mut out = Vec::new();
    run(&parse(args).expect("flags parse"), &mut out).expect("renders");
    String::from_utf8(out).expect("UTF-8")
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(yaml).expect("YAML documents")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn bad_and_contradictory_flags_are_refused_in_one_line() {
    for args in [
        &["--proxy-replicas", "0"][..],
        &["--operator-replicas", "0"],
        &["--operator-replicas", "-1"],
        &["--namespace", "Games"],
        &["--namespace", ""],
        &["--image", "ghcr.io/Games/direwolf"],
        &["--image", "direwolf:"],
        &["--wolf-image", "wolf latest"],
        &["--pulseaudio-image", "pulse@sha256:12"],
        &["--gpu-resource", "nvidia.com/gpu"],
        &["--gpu-resource", "nvidia.com/gpu=0"],
        &["--split", "deploy", "--namespace", "games"],
        &["--split", "deploy", "--no-crds"],
        &["--exposure", "nodeport"],
        &["--external-address", "lb.example.com"],
        &["--trusted-proxy-sign-out", "/oauth2/sign_out"],
        &[
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy-sign-out",
            "javascript:alert(1)",
        ],
    ] {
        let err = parse(args).expect_err(&format!("{args:?} is refused"));
        let first = err.render().to_string();
        let first = first.lines().next().expect("a message");
        assert!(first.starts_with("error: "), "{args:?}: {first}");
    }
}

#[test]
fn defaults() {
    let args = parse(&[]).expect("defaults parse");
    let settings = Settings::new(&args);
    assert_eq!(settings.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
    assert_eq!(settings.image, DEFAULT_AGENT_IMAGE);
    assert_eq!((settings.proxy_replicas, settings.operator_replicas), (2, 2));
    assert_eq!(settings.gpu, None);
    assert_eq!(
        operator::args(&settings),
        [
            "operator",
            "--proxy-service",
            "direwolf-proxy",
            "--agent-image",
            DEFAULT_AGENT_IMAGE
        ]
    );
}

/// Every namespaced object names the namespace; the stream holds the CRDs, then the Namespace,
/// then the rest; the flags reach the Deployments.
#[test]
fn the_stream_is_the_whole_installation_in_one_namespace() {
    let text = printed(&[
        "--namespace",
        "games",
        "--image",
        "registry.example.com:5000/direwolf:1.2.3",
        "--wolf-image",
        "ghcr.io/games-on-whales/wolf:dev",
        "--pulseaudio-image",
        "ghcr.io/games-on-whales/pulseaudio:dev",
        "--gpu-resource",
        "nvidia.com/gpu=1",
        "--proxy-replicas",
        "3",
        "--operator-replicas",
        "1",
        "--external-address",
        "203.0.113.10",
    ]);
    let docs = documents(&text);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("a kind")).collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Deployment",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ]
    );
    for doc in &docs {
        let kind = doc["kind"].as_str().expect("a kind");
        let namespaced = !matches!(kind, "CustomResourceDefinition" | "Namespace");
        let namespace = doc["metadata"]["namespace"].as_str();
        assert_eq!(namespace, namespaced.then_some("games"), "{kind}");
        if kind == "RoleBinding" {
            assert_eq!(doc["subjects"][0]["namespace"], "games");
        }
    }
    assert_eq!(docs[4]["metadata"]["name"], "games");

    let deployments: Vec<Deployment> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| serde_json::from_value(d.clone()).expect("a Deployment"))
        .collect();
    let spec = |d: &Deployment| d.spec.clone().expect("a spec");
    let container = |d: &Deployment| spec(d).template.spec.expect("a pod").containers[0].clone();
    assert_eq!(spec(&deployments[0]).replicas, Some(3));
    assert_eq!(spec(&deployments[1]).replicas, Some(1));
    for d in &deployments {
        assert_eq!(
            container(d).image.as_deref(),
            Some("registry.example.com:5000/direwolf:1.2.3")
        );
        // The image's entrypoint runs: no command, the subcommand in args.
        assert_eq!(container(d).command, None);
    }
    let env = container(&deployments[0]).env.expect("env");
    assert!(
        env.iter()
            .any(|e| e.name == "DIREWOLF_EXTERNAL_ADDRESS" && e.value.as_deref() == Some("203.0.113.10")),
        "{env:?}"
    );
    let args = container(&deployments[1]).args.expect("args");
    for pair in [
        ["--agent-image", "registry.example.com:5000/direwolf:1.2.3"],
        ["--wolf-image", "ghcr.io/games-on-whales/wolf:dev"],
        ["--pulseaudio-image", "ghcr.io/games-on-whales/pulseaudio:dev"],
        ["--gpu-resource", "nvidia.com/gpu=1"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    // The operator parses what it is given.
    let operator = <crate::Cli as Parser>::try_parse_from(
        std::iter::once("direwolf").chain(args.iter().map(String::as_str)),
    );
    assert!(operator.is_ok(), "{args:?}: {operator:?}");
}

#[test]
fn no_crds_leaves_the_crds_out() {
    let docs = documents(&printed(&["--no-crds"]));
    assert_eq!(docs[0]["kind"], "Namespace");
    assert_eq!(docs[0]["metadata"]["name"], DEFAULT_NAMESPACE);
    assert!(docs.iter().all(|d| d["kind"] != "CustomResourceDefinition"));
}

/// The budgets never block every eviction, whatever the replicas.
#[test]
fn budgets_let_one_replica_go() {
    for replicas in ["1", "2", "5"] {
        let text = printed(&[
            "--no-crds",
            "--proxy-replicas",
            replicas,
            "--operator-replicas",
            replicas,
        ]);
        let budgets: Vec<_> = documents(&text)
            .into_iter()
            .filter(|d| d["kind"] == "PodDisruptionBudget")
            .collect();
        assert_eq!(budgets.len(), 2);
        for budget in budgets {
            assert_eq!(budget["spec"]["maxUnavailable"], 1);
            assert!(budget["spec"].get("minAvailable").is_none());
        }
    }
}

/// The checked-in `deploy/` is `direwolf install --split deploy`: nothing more, nothing less.
#[test]
fn deploy_is_what_install_renders() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let split = dir.path().display().to_string();
    run(
        &parse(&["--split", &split]).expect("flags parse"),
        &mut Vec::new(),
    )
    .expect("writes the base");
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("a directory")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        names.sort();
        names
    };
    let deploy = repo_root().join("deploy");
    assert_eq!(listing(dir.path()), listing(&deploy));
    for name in listing(dir.path()) {
        let rendered = std::fs::read_to_string(dir.path().join(&name)).expect("rendered");
        let checked_in = std::fs::read_to_string(deploy.join(&name)).expect("checked in");
        assert!(
            rendered == checked_in,
            "deploy/{name} differs from what `direwolf install --split deploy` renders: run it"
        );
    }
    // The base names no namespace, and every file parses.
    for name in listing(dir.path()) {
        let text = std::fs::read_to_string(dir.path().join(&name)).expect("rendered");
        for doc in documents(&text) {
            assert!(doc["metadata"].get("namespace").is_none(), "{name}");
        }
    }
}

/// The Dockerfile cannot be built here (no container engine): its structure is checked instead.
/// Two stages, the runtime distroless and non-root with the manifests' uid, the release binary
/// at the path its entrypoint runs; the manifests give no command of their own.
#[test]
fn the_dockerfile_builds_the_image_the_manifests_run() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = instructions
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].starts_with("FROM gcr.io/distroless/cc-debian12:nonroot"),
        "{}",
        froms[1]
    );
    let runtime = instructions
        .iter()
        .position(|l| *l == froms[1])
        .expect("the runtime stage");
    let runtime = &instructions[runtime..];
    let uid = workload::NONROOT;
    assert!(
        runtime.contains(&format!("USER {uid}:{uid}").as_str()),
        "{runtime:?}"
    );
    let binary = "/usr/local/bin/direwolf";
    assert!(
        runtime.contains(&format!("ENTRYPOINT [\"{binary}\"]").as_str()),
        "{runtime:?}"
    );
    let copy = runtime
        .iter()
        .find(|l| l.starts_with("COPY --from=builder "))
        .expect("the binary comes from the builder");
    assert!(copy.ends_with(&format!(" {binary}")), "{copy}");
    assert!(
        text.contains("cargo build --release --locked -p direwolf"),
        "a release build of the direwolf binary"
    );
    // The runtime's uid is the manifests' runAsUser.
    let docs = documents(&printed(&["--no-crds"]));
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsUser"], uid);
        assert!(pod["containers"][0].get("command").is_none());
    }
}

/// `--exposure`: the operator's flags, the proxies' `--no-relay`, the Role's route rights and
/// the stream pods' NetworkPolicy follow the mode; contradictions are refused in one line.
#[test]
fn exposure_modes_render_consistent_operator_and_proxy_flags() {
    let relay = Settings::new(&parse(&[]).expect("parse"));
    assert!(
        !proxy::deployment_of(&relay)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--no-relay".to_owned())
    );

    let lb_args = parse(&[
        "--exposure",
        "load-balancer",
        "--lb-sharing-key",
        "games",
        "--external-address",
        "203.0.113.10",
    ])
    .expect("parse");
    let lb = Settings::new(&lb_args);
    let args = operator::args(&lb);
    assert!(!args.contains(&"--proxy-service".to_owned()), "{args:?}");
    let tail: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .skip_while(|a| *a != "--exposure")
        .collect();
    assert_eq!(
        tail,
        [
            "--exposure",
            "load-balancer",
            "--lb-sharing-key",
            "games",
            "--lb-ip",
            "203.0.113.10"
        ]
    );
    let proxy_args = proxy::deployment_of(&lb)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        proxy_args,
        [
            "proxy",
            "--no-relay",
            "--admin-token-secret",
            "direwolf-admin-token"
        ]
    );
    let service = proxy::service(&lb);
    let annotations = service.metadata.annotations.unwrap();
    assert_eq!(annotations["lbipam.cilium.io/sharing-key"], "games");
    assert_eq!(annotations["metallb.universe.tf/allow-shared-ip"], "games");
    let policy = network_policy::stream_pods(&lb).spec.unwrap();
    let rule = &policy.ingress.unwrap()[0];
    assert!(rule.from.is_none(), "clients reach Wolf directly");
    let ports = rule.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| p.end_port == Some(40999)));

    let gw =
        Settings::new(&parse(&["--exposure", "gateway", "--gateway", "direwolf/public"]).expect("parse"));
    let args = operator::args(&gw);
    assert!(args.ends_with(&["--exposure", "gateway", "--gateway", "direwolf/public"].map(str::to_owned)));
    let role = rbac::role(&gw, Component::Operator);
    let rules = role.rules.unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["tcproutes".to_owned(), "udproutes".to_owned()][..]))
    );
    assert!(
        rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["gateways".to_owned()][..])
                && r.resource_names.as_deref() == Some(&["public".to_owned()][..]))
    );
    let relay_rules = rbac::role(&relay, Component::Operator).rules.unwrap();
    assert!(
        !relay_rules
            .iter()
            .flat_map(|r| r.api_groups.iter().flatten())
            .any(|g| g.starts_with("gateway"))
    );

    for (flags, says) in [
        (
            &["--lb-ip", "203.0.113.7"][..],
            "--lb-ip needs --exposure load-balancer",
        ),
        (
            &["--gateway", "infra/public"],
            "--gateway needs --exposure gateway",
        ),
        (&["--exposure", "gateway"], "needs --gateway"),
        (
            &[
                "--exposure",
                "load-balancer",
                "--lb-ip",
                "203.0.113.7",
                "--external-address",
                "203.0.113.8",
            ],
            "differs from --external-address",
        ),
    ] {
        let err = exposure(&parse(flags).expect("parse")).expect_err(says);
        assert!(err.contains(says) && !err.contains('\n'), "{flags:?}: {err}");
    }
    assert!(parse(&["--exposure", "gateway", "--gateway", "public"]).is_err());

    // MetalLB: both Services Cluster, told to the operator too.
    let metallb = Settings::new(
        &parse(&["--exposure", "load-balancer", "--lb-traffic-policy", "cluster"]).expect("parse"),
    );
    assert!(operator::args(&metallb).ends_with(&["--lb-traffic-policy".to_owned(), "cluster".to_owned()]));
    let policy = proxy::service(&metallb).spec.unwrap().external_traffic_policy;
    assert_eq!(policy.as_deref(), Some("Cluster"));
    assert_eq!(
        proxy::service(&relay)
            .spec
            .unwrap()
            .external_traffic_policy
            .as_deref(),
        Some("Local")
    );
    let err = exposure(&parse(&["--lb-traffic-policy", "cluster"]).expect("parse")).expect_err("relay");
    assert!(
        err.contains("--lb-traffic-policy needs --exposure load-balancer"),
        "{err}"
    );

    // A Gateway in another namespace: read through a Role there, not the operator's own.
    let elsewhere = Settings::new(
        &parse(&[
            "--namespace",
            "games",
            "--exposure",
            "gateway",
            "--gateway",
            "infra/public",
        ])
        .expect("parse"),
    );
    let own = rbac::role(&elsewhere, Component::Operator).rules.unwrap();
    assert!(
        !own.iter()
            .any(|r| r.resources.as_deref() == Some(&["gateways".to_owned()][..]))
    );
    let (role, binding) = rbac::gateway_reader(&elsewhere).expect("a Role in the Gateway's namespace");
    assert_eq!(role.metadata.namespace.as_deref(), Some("infra"));
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["public".to_owned()][..])
    );
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("direwolf-operator", Some("games"))
    );
    assert!(
        rbac::gateway_reader(&gw).is_none(),
        "same namespace: the operator's Role"
    );
    let rendered = printed(&[
        "--namespace",
        "games",
        "--no-crds",
        "--exposure",
        "gateway",
        "--gateway",
        "infra/public",
    ]);
    let in_infra = documents(&rendered)
        .into_iter()
        .filter(|d| d["metadata"]["namespace"] == "infra")
        .count();
    assert_eq!(in_infra, 2);
}

#[test]
fn a_relaying_proxy_reserves_the_stream_ports_from_its_own_connections() {
    let sysctls = |args: &[&str]| {
        let settings = Settings::new(&parse(args).expect("parse"));
        proxy::deployment_of(&settings)
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.security_context)
            .and_then(|c| c.sysctls)
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sysctls(&[]),
        [(
            "net.ipv4.ip_local_reserved_ports".to_owned(),
            "40000-40999".to_owned()
        )]
    );
    assert!(
        sysctls(&["--exposure", "load-balancer"]).is_empty(),
        "a proxy that does not relay binds no stream port"
    );
}

/// `--shared-ports`: both the proxies and the operator run in shared-ports mode, and the
/// proxies reserve exactly the four shared ports; outside `--exposure relay` it is refused.
#[test]
fn shared_ports_render_both_flags_and_reserve_the_four_ports() {
    let shared = Settings::new(&parse(&["--shared-ports"]).expect("parse"));
    assert!(operator::args(&shared).contains(&"--shared-ports".to_owned()));
    let pod = proxy::deployment_of(&shared).spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(
        args,
        [
            "proxy",
            "--shared-ports",
            "--admin-token-secret",
            "direwolf-admin-token"
        ]
    );
    let sysctls = pod.security_context.unwrap().sysctls.unwrap();
    assert_eq!(sysctls[0].value, "47999,48010,48100,48200");
    let default = Settings::new(&parse(&[]).expect("parse"));
    assert!(!operator::args(&default).contains(&"--shared-ports".to_owned()));
    let why =
        exposure(&parse(&["--shared-ports", "--exposure", "gateway", "--gateway", "gw/x"]).expect("parse"))
            .expect_err("refused");
    assert!(why.contains("--shared-ports"), "{why}");
}

/// The proxies serve the admin API and web UI by default: the token's Secret named in their
/// args, port 47990 on the container and on the Service; `--no-admin-api` leaves all three out.
#[test]
fn the_admin_api_is_served_on_the_proxies_service_unless_left_out() {
    let served = |settings: &Settings| {
        let deployment = proxy::deployment_of(settings);
        let container = deployment.spec.unwrap().template.spec.unwrap().containers[0].clone();
        let args = container.args.unwrap();
        let secret = args
            .windows(2)
            .any(|w| w[0] == "--admin-token-secret" && w[1] == "direwolf-admin-token");
        let on_container = container
            .ports
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("admin") && p.container_port == 47990);
        let on_service = proxy::service(settings)
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("admin") && p.port == 47990);
        [secret, on_container, on_service]
    };
    let default = Settings::new(&parse(&[]).expect("parse"));
    assert_eq!(served(&default), [true; 3]);
    let without = Settings::new(&parse(&["--no-admin-api"]).expect("parse"));
    assert_eq!(served(&without), [false; 3]);
}

/// `--oidc-client-secret NAME`: the Secret's `client-secret` is mounted read-only into the
/// proxies, readable by their group only, and their `--oidc-client-secret-file` names it; without
/// the flag nothing is mounted.
#[test]
fn a_confidential_oidc_client_reads_its_secret_from_a_mounted_secret() {
    let oidc = [
        "--oidc-issuer",
        "https://id.example.com",
        "--oidc-client-id",
        "direwolf",
    ];
    let pod = |extra: &[&str]| {
        let args: Vec<&str> = oidc.iter().chain(extra).copied().collect();
        let settings = Settings::new(&parse(&args).expect("parse"));
        proxy::deployment_of(&settings)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    };
    let public = pod(&[]);
    assert!(public.volumes.is_none(), "a public client mounts nothing");
    let confidential = pod(&["--oidc-client-secret", "direwolf-oidc"]);
    let volume = &confidential.volumes.as_ref().expect("a volume")[0];
    let source = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(source.secret_name.as_deref(), Some("direwolf-oidc"));
    assert_eq!(source.default_mode, Some(0o440));
    assert_eq!(source.items.as_ref().unwrap()[0].key, "client-secret");
    assert_eq!(
        confidential.security_context.as_ref().unwrap().fs_group,
        Some(workload::NONROOT)
    );
    let container = &confidential.containers[0];
    let mount = &container.volume_mounts.as_ref().expect("a mount")[0];
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str(), mount.read_only),
        (volume.name.as_str(), "/var/run/secrets/direwolf/oidc", Some(true))
    );
    let args = container.args.as_ref().unwrap();
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--oidc-client-secret-file"
                && w[1] == "/var/run/secrets/direwolf/oidc/client-secret"),
        "{args:?}"
    );
    for refused in [
        &["--oidc-client-secret", "direwolf-oidc"][..],
        &[
            oidc[0],
            oidc[1],
            oidc[2],
            oidc[3],
            "--oidc-client-secret",
            "Direwolf_OIDC",
        ],
    ] {
        assert!(parse(refused).is_err(), "{refused:?}");
    }
}
