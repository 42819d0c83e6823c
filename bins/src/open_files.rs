//! The open-file limit, raised at start-up to what the server's connection caps need: with the
//! usual soft limit of 1,024, accepts fail with "Too many open files" before the server's own
//! caps (1,024 connections, and the relay's sockets) are reached.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

/// What a server needs: its connections, the relay's four sockets per stream, and room for
/// the database, the Wolf and Kubernetes clients and the logs.
pub const NEEDED: u64 = 8192;

/// Raises the soft open-file limit to `needed` (or the hard limit, if lower), and says so.
pub fn raise(needed: u64) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => return warn!(%error, "cannot read the open-file limit"),
    };
    if soft >= needed {
        return;
    }
    let target = needed.min(hard);
    if target > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => info!(from = soft, to = target, "raised the open-file limit"),
            Err(error) => return warn!(%error, soft, "cannot raise the open-file limit"),
        }
    }
    if target < needed {
        warn!(
            limit = target,
            needed,
            "the open-file limit is below what the connection caps need; raise the hard limit \
             (systemd: LimitNOFILE=, docker: --ulimit nofile=)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_what_is_needed_within_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        raise(NEEDED);
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft.max(NEEDED.min(hard)), soft, "soft {soft}, hard {hard}");
    }
}
