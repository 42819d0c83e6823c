//! `direwolf`: one binary whose subcommands are direwolf's components.

use clap::{Parser, Subcommand};

/// One Moonlight endpoint for a pack of Wolf game-streaming servers.
#[derive(Debug, Parser)]
#[command(name = "direwolf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("direwolf {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
