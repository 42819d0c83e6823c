//! Logging set-up of the long-running subcommands.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global `fmt` subscriber: filter from `RUST_LOG` (default `info`), text (coloured
/// on a terminal) or, with `json`, one JSON object per line. Logs go to stderr.
pub fn init(json: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
