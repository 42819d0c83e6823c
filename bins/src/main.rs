//! `direwolf`: one binary whose subcommands are direwolf's components.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod admin_port;
mod admin_sso;
mod agent;
mod check;
mod crd;
mod docs;
#[cfg(test)]
mod docs_tests;
mod ephemeral;
mod fast_path;
mod install;
mod listen;
mod metrics;
mod notify;
mod open_files;
mod operator;
mod proxy;
mod relay;
mod serve;
mod shutdown;
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
    /// Run the single-machine pack: the Moonlight endpoint (pairing, apps, launch) and the stream
    /// relay to a pool of Wolf hosts.
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
    /// Print every manifest of a Kubernetes installation in one namespace as YAML: the CRDs, the
    /// namespace, the accounts and Roles, the proxy and the operator
    /// (`direwolf install --namespace games | kubectl apply --server-side -f -`).
    Install(install::InstallArgs),
    /// Manage the users of a running `direwolf serve` or `proxy` (through its admin API).
    User(admin::UserCommand),
    /// Manage the apps of a running `direwolf serve` or `proxy`.
    App(admin::AppCommand),
    /// List, approve (enter a PIN for) and revoke the pairings of a running `direwolf serve` or `proxy`.
    Pairing(admin::PairingCommand),
    /// List and stop the sessions of a running `direwolf serve` or `proxy`.
    Session(admin::SessionCommand),
    /// Print the shell completion script (`direwolf completion bash > /etc/bash_completion.d/direwolf`).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page of direwolf, or of one subcommand (`direwolf man serve | man -l -`).
    Man {
        /// The subcommand whose page to print.
        subcommand: Option<String>,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    run(cli.command, &cli.log)
}

/// Runs a subcommand. Those that print (and the admin commands, which print results and fail
/// with one `error:` line) log nothing.
fn run(command: Command, log: &telemetry::LogArgs) -> anyhow::Result<ExitCode> {
    let prints = matches!(
        command,
        Command::Version
            | Command::Crd
            | Command::Install(_)
            | Command::Completion { .. }
            | Command::Man { .. }
            | Command::User(_)
            | Command::App(_)
            | Command::Pairing(_)
            | Command::Session(_)
    );
    if !prints {
        telemetry::init(log)?;
    }
    match command {
        Command::Version => println!("direwolf {}", env!("CARGO_PKG_VERSION")),
        Command::Serve(args) => {
            if !serve::run(args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Relay(args) => {
            if !relay::run(args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Proxy(args) => proxy::run(args)?,
        Command::Agent(args) => agent::run(args)?,
        Command::Operator(args) => {
            if let Err(why) = operator::exposure(&args) {
                contradiction(&why);
            }
            operator::run(args)?
        }
        Command::Crd => crd::run(&mut std::io::stdout().lock())?,
        Command::Install(args) => {
            if let Err(why) = install::exposure(&args) {
                contradiction(&why);
            }
            install::run(&args, &mut std::io::stdout().lock())?
        }
        Command::Completion { shell } => docs::completion::<Cli>(shell, &mut std::io::stdout().lock()),
        Command::Man { subcommand } => {
            docs::man::<Cli>(subcommand.as_deref(), &mut std::io::stdout().lock())?
        }
        Command::User(c) => return Ok(admin::run(admin::AdminCommand::User(c))),
        Command::App(c) => return Ok(admin::run(admin::AdminCommand::App(c))),
        Command::Pairing(c) => return Ok(admin::run(admin::AdminCommand::Pairing(c))),
        Command::Session(c) => return Ok(admin::run(admin::AdminCommand::Session(c))),
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags that parse but contradict each other: refused as clap refuses a bad flag (one
/// `error:` line, exit status 2).
fn contradiction(why: &str) -> ! {
    use clap::CommandFactory as _;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, why)
        .exit()
}
