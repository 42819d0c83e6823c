//! `direwolf install`: every manifest of a Kubernetes installation in one namespace, built from
//! the typed Kubernetes API structs: the CRDs (as `direwolf crd`), the namespace, the proxy's and
//! the operator's accounts and Roles, their Deployments, the proxies' LoadBalancer Service,
//! PodDisruptionBudgets and the stream pods' NetworkPolicy. It prints them as one multi-document
//! YAML stream for `kubectl apply --server-side -f -`; `--split DIR` writes the namespace-less
//! kustomize base instead, one file per concern (the checked-in `deploy/` is `--split deploy`).
//! Each agent's account is made per Session by the operator, so it is not here.

use std::path::PathBuf;

use anyhow::Context as _;
use direwolf_k8s::crd::labels;
use direwolf_k8s::operator::{Exposure, GatewayExposure, GpuResource, LoadBalancerExposure};

pub use crate::operator::ExposureMode;
use direwolf_k8s::operator::config::DEFAULT_AGENT_IMAGE;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

mod flags;
mod login;
mod network_policy;
mod operator;
mod pdb;
mod proxy;
mod rbac;
mod render;
#[cfg(test)]
mod tests;
mod workload;

pub use render::Section;

/// The namespace installed into when `--namespace` is not given.
pub const DEFAULT_NAMESPACE: &str = "direwolf";

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The namespace to install into, created by the output; every namespaced object names it
    /// (default: `direwolf`).
    #[arg(long, value_name = "NS", value_parser = flags::namespace)]
    pub namespace: Option<String>,

    /// The direwolf image: the proxy, the operator and every stream pod's agent.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_AGENT_IMAGE, value_parser = flags::image)]
    pub image: String,

    /// Image of the stream pods' `wolf` container (default: the operator's).
    #[arg(long, value_name = "IMAGE", value_parser = flags::image)]
    pub wolf_image: Option<String>,

    /// Image of the stream pods' `pulseaudio` container (default: the operator's).
    #[arg(long, value_name = "IMAGE", value_parser = flags::image)]
    pub pulseaudio_image: Option<String>,

    /// Image of the stream pods' `init` container (default: the operator's).
    #[arg(long, value_name = "IMAGE", value_parser = flags::image)]
    pub init_image: Option<String>,

    /// An extended resource every `wolf` container asks for, e.g. `nvidia.com/gpu=1` (passed to
    /// the operator's `--gpu-resource`; default: none).
    #[arg(long, value_name = "NAME=COUNT", value_parser = flags::gpu_resource)]
    pub gpu_resource: Option<GpuResource>,

    /// The address clients reach the proxies on (the Service's load-balancer IP), given to the
    /// proxy as `DIREWOLF_EXTERNAL_ADDRESS`: the host of the PIN page URL it logs, and
    /// `LocalIP` (default: none, the connection's local address, which is the pod's).
    #[arg(long, value_name = "IP")]
    pub external_address: Option<std::net::IpAddr>,

    /// Replicas of the proxy (the Moonlight endpoint).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub proxy_replicas: i32,

    /// Replicas of the operator (one leads, the others stand by).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub operator_replicas: i32,

    /// Leave the CRDs out (they are cluster-wide: `direwolf crd` prints them alone).
    #[arg(long)]
    pub no_crds: bool,

    /// How stream ports reach the stream pods (the operator's `--exposure`): `relay` (the
    /// proxies relay them), `load-balancer` (a LoadBalancer Service per Session sharing the
    /// proxies' address) or `gateway` (Gateway API routes per Session on `--gateway`). Outside
    /// `relay` the proxies run with `--no-relay` and the stream pods admit the port range from
    /// anywhere.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = ExposureMode::Relay)]
    pub exposure: ExposureMode,

    /// With `--exposure relay`: every Session on one port set (RTSP 48010/TCP, control 47999,
    /// video 48100, audio 48200/UDP) instead of four ports of the range each: the proxies and
    /// the operator run with `--shared-ports`.
    #[arg(long)]
    pub shared_ports: bool,

    /// The load-balancer sharing key of the proxies' Service and, with `--exposure
    /// load-balancer`, of every Session's Service (default: `direwolf`).
    #[arg(long, value_name = "KEY")]
    pub lb_sharing_key: Option<String>,

    /// With `--exposure load-balancer`: the address every Session's Service asks for (default:
    /// `--external-address`, if given).
    #[arg(long, value_name = "IP")]
    pub lb_ip: Option<std::net::IpAddr>,

    /// With `--exposure load-balancer`: the `externalTrafficPolicy` of the proxies' Service and
    /// of every Session's (default: `local`, keeping client addresses; MetalLB shares an address
    /// only between `cluster` Services).
    #[arg(long, value_name = "POLICY", value_enum)]
    pub lb_traffic_policy: Option<crate::operator::LbTrafficPolicy>,

    /// With `--exposure gateway`: the Gateway the Sessions' routes attach to, `NAMESPACE/NAME`.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = flags::gateway)]
    pub gateway: Option<GatewayExposure>,

    /// Who may enter a PIN at the proxies (none by default: PINs need a login).
    #[command(flatten)]
    pub login: login::PinLoginArgs,

    /// Leave the admin API out: by default the proxies serve it (and the web UI) on port 47990 of
    /// their Service, HTTPS with the server's certificate, with the token `direwolf proxy` keeps
    /// in Secret `direwolf-admin-token` (created by the first replica that starts).
    #[arg(long)]
    pub no_admin_api: bool,

    /// Write the namespace-less kustomize base into DIR instead of printing: one file per
    /// concern and `kustomization.yaml`, without the CRDs and the namespace.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["namespace", "no_crds"])]
    pub split: Option<PathBuf>,
}

/// The two components installed as Deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Proxy,
    Operator,
}

impl Component {
    /// `app.kubernetes.io/component`.
    pub fn name(self) -> &'static str {
        match self {
            Component::Proxy => "proxy",
            Component::Operator => "operator",
        }
    }

    /// The name of its ServiceAccount, Role, RoleBinding, Deployment and budget.
    pub fn account(self) -> &'static str {
        match self {
            Component::Proxy => "direwolf-proxy",
            Component::Operator => "direwolf-operator",
        }
    }

    /// Selects its pods.
    pub fn selector(self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(
                [(labels::NAME, "direwolf"), (labels::COMPONENT, self.name())]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..LabelSelector::default()
        }
    }
}

/// What the manifests are made from: the flags, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// None: the namespace-less base (objects land in `kubectl apply -n`'s namespace).
    pub namespace: Option<String>,
    pub image: String,
    pub wolf_image: Option<String>,
    pub pulseaudio_image: Option<String>,
    pub init_image: Option<String>,
    pub gpu: Option<GpuResource>,
    pub external_address: Option<std::net::IpAddr>,
    pub proxy_replicas: i32,
    pub operator_replicas: i32,
    /// How stream ports reach the pods (the operator's flags, the proxy's `--no-relay`).
    pub exposure: Exposure,
    /// The proxies' Service's sharing key.
    pub sharing_key: String,
    /// Every Session on the one shared port set (relay mode).
    pub shared_ports: bool,
    /// The proxy's login flags (`--trusted-proxy`, `--oidc-*`, `--allow-unauthenticated-pin`).
    pub proxy_login: Vec<String>,
    /// The Secret holding a confidential OpenID Connect client's secret, mounted into the proxies.
    pub oidc_client_secret: Option<String>,
    /// The proxies serve the admin API with the token of Secret `direwolf-admin-token`.
    pub admin_api: bool,
}

/// The exposure of `args`, or why its flags contradict each other (one line).
pub fn exposure(args: &InstallArgs) -> Result<Exposure, String> {
    let mode = args.exposure;
    if mode != ExposureMode::LoadBalancer && args.lb_ip.is_some() {
        return Err("--lb-ip needs --exposure load-balancer".to_owned());
    }
    if mode != ExposureMode::LoadBalancer && args.lb_traffic_policy.is_some() {
        return Err("--lb-traffic-policy needs --exposure load-balancer".to_owned());
    }
    if mode != ExposureMode::Gateway && args.gateway.is_some() {
        return Err("--gateway needs --exposure gateway".to_owned());
    }
    if mode != ExposureMode::Relay && args.shared_ports {
        return Err("--shared-ports is a mode of the proxies' relay: it needs --exposure relay".to_owned());
    }
    if let (Some(lb), Some(external)) = (args.lb_ip, args.external_address)
        && lb != external
    {
        return Err(format!(
            "--lb-ip {lb} differs from --external-address {external}: clients reach the streams only on the proxies' address"
        ));
    }
    Ok(match mode {
        ExposureMode::Relay => Exposure::Relay,
        ExposureMode::LoadBalancer => Exposure::LoadBalancer(LoadBalancerExposure {
            sharing_key: sharing_key(args),
            ip: args.lb_ip.or(args.external_address),
            traffic_policy: args
                .lb_traffic_policy
                .map(crate::operator::LbTrafficPolicy::policy)
                .unwrap_or_default(),
            ..LoadBalancerExposure::default()
        }),
        ExposureMode::Gateway => Exposure::Gateway(
            args.gateway
                .clone()
                .ok_or("--exposure gateway needs --gateway NAMESPACE/NAME")?,
        ),
    })
}

fn sharing_key(args: &InstallArgs) -> String {
    args.lb_sharing_key
        .clone()
        .unwrap_or_else(|| direwolf_k8s::operator::config::DEFAULT_LB_SHARING_KEY.to_owned())
}

impl Settings {
    /// The settings of `args`; the base's namespace is none.
    pub fn new(args: &InstallArgs) -> Settings {
        let namespace = match args.split {
            Some(_) => None,
            None => Some(
                args.namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            ),
        };
        Settings {
            namespace,
            image: args.image.clone(),
            wolf_image: args.wolf_image.clone(),
            pulseaudio_image: args.pulseaudio_image.clone(),
            init_image: args.init_image.clone(),
            gpu: args.gpu_resource.clone(),
            external_address: args.external_address,
            proxy_replicas: args.proxy_replicas,
            operator_replicas: args.operator_replicas,
            exposure: exposure(args).unwrap_or_default(),
            sharing_key: sharing_key(args),
            shared_ports: args.shared_ports,
            proxy_login: args.login.proxy_args(),
            oidc_client_secret: args.login.oidc_client_secret.clone(),
            admin_api: !args.no_admin_api,
        }
    }

    /// Metadata of object `name` of `component`: the namespace and the direwolf labels.
    pub fn metadata(&self, name: &str, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: self.namespace.clone(),
            labels: Some(
                [
                    (labels::NAME, "direwolf"),
                    (labels::INSTANCE, "direwolf"),
                    (labels::COMPONENT, component.name()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..ObjectMeta::default()
        }
    }
}

/// Every namespaced manifest, one section per file of the base, in apply order.
pub fn sections(settings: &Settings) -> anyhow::Result<Vec<Section>> {
    use Component::{Operator, Proxy};
    use render::to_yaml;
    // The Role reading a Gateway of another namespace, with its binding.
    let gateway_reader = match rbac::gateway_reader(settings) {
        Some((role, binding)) => vec![to_yaml(&role)?, to_yaml(&binding)?],
        None => Vec::new(),
    };
    Ok(vec![
        Section {
            file: "rbac.yaml",
            header: rbac::HEADER,
            documents: vec![
                to_yaml(&rbac::service_account(settings, Proxy))?,
                to_yaml(&rbac::service_account(settings, Operator))?,
                to_yaml(&rbac::role(settings, Proxy))?,
                to_yaml(&rbac::role(settings, Operator))?,
                to_yaml(&rbac::role_binding(settings, Proxy))?,
                to_yaml(&rbac::role_binding(settings, Operator))?,
            ]
            .into_iter()
            .chain(gateway_reader)
            .collect(),
        },
        Section {
            file: "proxy.yaml",
            header: proxy::HEADER,
            documents: vec![
                to_yaml(&proxy::deployment_of(settings))?,
                to_yaml(&proxy::service(settings))?,
            ],
        },
        Section {
            file: "operator.yaml",
            header: operator::HEADER,
            documents: vec![to_yaml(&operator::deployment_of(settings))?],
        },
        Section {
            file: "pdb.yaml",
            header: pdb::HEADER,
            documents: vec![
                to_yaml(&pdb::budget(settings, Proxy))?,
                to_yaml(&pdb::budget(settings, Operator))?,
            ],
        },
        Section {
            file: "networkpolicy.yaml",
            header: network_policy::HEADER,
            documents: vec![to_yaml(&network_policy::stream_pods(settings))?],
        },
    ])
}

/// Prints the installation to `out`, or writes the base with `--split`.
pub fn run(args: &InstallArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    exposure(args).map_err(|why| anyhow::anyhow!("{why}"))?;
    let settings = Settings::new(args);
    let sections = sections(&settings)?;
    match &args.split {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (file, text) in render::base(&sections)? {
                let path = dir.join(file);
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        None => {
            let crds = if args.no_crds {
                None
            } else {
                Some(direwolf_k8s::crd::crds_yaml()?)
            };
            let namespace = settings.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            out.write_all(render::stream(crds.as_deref(), namespace, &sections)?.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}
