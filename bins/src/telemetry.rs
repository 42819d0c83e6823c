//! Logging set-up of the long-running subcommands.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global `fmt` subscriber: filter from `RUST_LOG` (default `info`), text (coloured
/// on a terminal) or, with `json`, one JSON object per line. Logs go to stderr; failed writes
/// are dropped.
pub fn init(json: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A closed stderr (the log reader went away) must not bring the server down: without
    // `log_internal_errors(false)` the subscriber reports the failed write with `eprintln!`,
    // which panics on the same closed stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
