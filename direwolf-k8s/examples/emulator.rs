//! Runs the API-server emulator as a process, for `scripts/local-pack` on machines without the
//! real test control plane (test support, feature `emulator`).
//!
//! ```text
//! emulator --listen 127.0.0.1:6443 --kubeconfig DIR/kubeconfig [--crds] [--namespace NS] [--apply FILE]...
//! ```
//!
//! Serves plain HTTP on `--listen`, writes a kubeconfig pointing at it (namespace `default`),
//! with `--crds` creates direwolf's CustomResourceDefinitions, applies each `--apply` YAML file
//! into namespace `--namespace` (default `default`; the emulator has no namespace objects), prints `emulator ready URL` and
//! runs until SIGTERM or SIGINT. The emulator has no scheduler and no kubelet: the kubelet
//! stand-in binds and runs the pods (`--schedule`).

use std::net::SocketAddr;
use std::path::PathBuf;

use direwolf_k8s::emulator::{ApiServerEmulator, EmulatorConfig};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;

fn usage(why: &str) -> ! {
    eprintln!("emulator: {why}");
    eprintln!("usage: emulator --listen ADDR --kubeconfig FILE [--crds] [--namespace NS] [--apply FILE]...");
    std::process::exit(2)
}

struct Args {
    listen: SocketAddr,
    kubeconfig: PathBuf,
    crds: bool,
    namespace: String,
    apply: Vec<PathBuf>,
}

fn args() -> Args {
    let (mut listen, mut kubeconfig, mut crds) = (None, None, false);
    let (mut namespace, mut apply) = ("default".to_owned(), Vec::new());
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--listen" => {
                let value = argv.next().unwrap_or_else(|| usage("--listen needs ADDR"));
                listen = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage("--listen: not an address")),
                );
            }
            "--kubeconfig" => kubeconfig = argv.next().map(PathBuf::from),
            "--crds" => crds = true,
            "--namespace" => namespace = argv.next().unwrap_or_else(|| usage("--namespace needs NS")),
            "--apply" => apply.push(
                argv.next()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| usage("--apply needs FILE")),
            ),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    Args {
        listen: listen.unwrap_or_else(|| usage("--listen is required")),
        kubeconfig: kubeconfig.unwrap_or_else(|| usage("--kubeconfig is required")),
        crds,
        namespace,
        apply,
    }
}

/// The YAML documents of `file`, each put into `namespace`.
fn in_namespace(file: &PathBuf, namespace: &str) -> Result<String, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut out = String::new();
    for mut value in serde_saphyr::from_multiple::<serde_json::Value>(&text)? {
        value["metadata"]["namespace"] = serde_json::Value::from(namespace);
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&value)?);
    }
    Ok(out)
}

fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
         contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\n\
         current-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let config = EmulatorConfig {
        listen: args.listen,
        ..EmulatorConfig::default()
    };
    let emulator = ApiServerEmulator::start_with(config).await?;
    if args.crds {
        let api: Api<CustomResourceDefinition> = Api::all(emulator.client());
        for crd in direwolf_k8s::crd::crds() {
            api.create(&PostParams::default(), &crd).await?;
        }
    }
    for file in &args.apply {
        emulator.apply_yaml(&in_namespace(file, &args.namespace)?)?;
    }
    let url = emulator.url();
    std::fs::write(&args.kubeconfig, kubeconfig(&url))?;
    println!("emulator ready {url}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    emulator.shutdown().await;
    Ok(())
}
