//! `direwolf`: one binary whose subcommands are direwolf's components.

use clap::{Parser, Subcommand};

mod agent;
mod crd;
mod listen;
mod operator;
mod proxy;
mod relay;
mod serve;
mod telemetry;

/// One Moonlight endpoint for a pack of Wolf game-streaming servers.
#[derive(Debug, Parser)]
#[command(name = "direwolf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: telemetry::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
    /// Run a single-machine Moonlight server (pairing, app list; pairings survive restarts).
    Serve(serve::ServeArgs),
    /// Forward one stream port set (RTSP/TCP, video/audio/control UDP) to a Wolf.
    Relay(relay::RelayArgs),
    /// Run the Moonlight endpoint of a Kubernetes installation (state in the API server).
    Proxy(proxy::ProxyArgs),
    /// Run the wolf-agent sidecar of a stream pod (registers the Session's stream with the pod's Wolf).
    Agent(agent::AgentArgs),
    /// Run the Session operator of a Kubernetes installation (ports, homes, stream pods).
    Operator(operator::OperatorArgs),
    /// Print the CustomResourceDefinitions as YAML (`direwolf crd | kubectl apply --server-side -f -`).
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Version | Command::Crd) {
        telemetry::init(&cli.log)?;
    }
    match cli.command {
        Command::Version => println!("direwolf {}", env!("CARGO_PKG_VERSION")),
        Command::Serve(args) => serve::run(args)?,
        Command::Relay(args) => relay::run(args)?,
        Command::Proxy(args) => proxy::run(args)?,
        Command::Agent(args) => agent::run(args)?,
        Command::Operator(args) => operator::run(args)?,
        Command::Crd => crd::run(&mut std::io::stdout().lock())?,
    }
    Ok(())
}
