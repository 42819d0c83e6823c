//! Logging set-up, the same for every subcommand: stderr, text (coloured on a terminal) or JSON
//! lines, a level or filter from `--log-level` or `RUST_LOG`, and never an abort when the log's
//! reader goes away.

use std::io::IsTerminal;

use clap::Args;
use tracing_subscriber::EnvFilter;

/// The logging flags every subcommand takes.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or a filter such as
    /// `info,direwolf_core::relay=debug`. Default: `RUST_LOG`, else `info`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

impl LogArgs {
    fn filter(&self) -> anyhow::Result<EnvFilter> {
        match &self.log_level {
            Some(spec) => EnvFilter::try_new(quiet_rustls(spec))
                .map_err(|e| anyhow::anyhow!("--log-level {spec:?} is not a level or filter: {e}")),
            None => Ok(std::env::var(EnvFilter::DEFAULT_ENV)
                .ok()
                .and_then(|spec| EnvFilter::try_new(quiet_rustls(&spec)).ok())
                .unwrap_or_else(|| EnvFilter::new(quiet_rustls("info")))),
        }
    }
}

/// `spec` with rustls capped at ERROR, unless it names rustls itself. rustls logs what a TLS peer
/// does wrong (renegotiation attempts, warning alerts) at WARN, once per occurrence, so a peer can
/// fill the log at will; the handshake failures that matter are logged by direwolf itself.
fn quiet_rustls(spec: &str) -> String {
    if spec.contains("rustls") {
        spec.to_owned()
    } else if spec.trim().is_empty() {
        "rustls=error".to_owned()
    } else {
        format!("{spec},rustls=error")
    }
}

/// Installs the global `fmt` subscriber. Logs go to stderr; failed writes are dropped.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    // A closed stderr (the log reader went away) must not bring the process down: without
    // `log_internal_errors(false)` the subscriber reports the failed write with `eprintln!`,
    // which panics on the same closed stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(args.filter()?)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let installed = if args.log_json {
        builder.json().try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// A list of addresses for a log field: `a, b` (`none` when empty).
pub fn addrs(list: &[std::net::SocketAddr]) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_or_a_filter_is_taken_and_nonsense_is_refused() {
        let with = |spec: &str| LogArgs {
            log_json: false,
            log_level: Some(spec.to_owned()),
        };
        assert!(with("debug").filter().is_ok());
        assert!(with("info,direwolf_core::relay=trace").filter().is_ok());
        let error = with("loud=[").filter().expect_err("refused").to_string();
        assert!(error.contains("--log-level"), "{error}");
    }

    #[test]
    fn rustls_warnings_are_off_unless_asked_for() {
        let with = |spec: &str| LogArgs {
            log_json: false,
            log_level: Some(spec.to_owned()),
        };
        let quiet = with("debug").filter().expect("filter").to_string();
        assert!(quiet.contains("rustls=error"), "{quiet}");
        let asked = with("debug,rustls=debug").filter().expect("filter").to_string();
        assert!(!asked.contains("rustls=error"), "{asked}");
        assert_eq!(quiet_rustls(""), "rustls=error");
    }

    #[test]
    fn addresses_read_as_addresses() {
        let a: std::net::SocketAddr = "127.0.0.1:47989".parse().expect("addr");
        let b: std::net::SocketAddr = "[::1]:47989".parse().expect("addr");
        assert_eq!(addrs(&[a, b]), "127.0.0.1:47989,[::1]:47989");
        assert_eq!(addrs(&[]), "none");
    }
}
