//! `[relay] fast_path` / `--fast-path`: the kernel fast path started, or one line saying why the
//! relay carries every datagram instead.

use direwolf_core::relay::{FastPath, fast_path::MARK};
use tracing::{info, warn};

/// The kernel fast path, if this host lets it start.
pub async fn start() -> Option<FastPath> {
    match FastPath::start().await {
        Ok(fast_path) => {
            info!(
                table = "ip direwolf",
                mark = format_args!("{MARK:#x}"),
                "kernel fast path on: admitted flows are forwarded by the kernel"
            );
            Some(fast_path)
        }
        Err(error) => {
            warn!(%error, "kernel fast path unavailable: the relay carries every datagram");
            None
        }
    }
}
