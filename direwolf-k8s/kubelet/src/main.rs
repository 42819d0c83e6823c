//! `direwolf-kubelet`: the kubelet stand-in's command line (see the library's documentation).

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = direwolf_kubelet::config::Args::parse();
    match direwolf_kubelet::kubelet::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("direwolf-kubelet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
