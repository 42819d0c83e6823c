//! Helpers shared by the integration tests.

use std::os::unix::fs::MetadataExt;

/// Whether this test process runs as root, for the tests that need it (mounts, `chown`).
/// Outside CI a test calls this and returns early (with a line on stderr saying it was
/// skipped) when it is false; where `CI` is set, a missing root fails the test instead, so these
/// tests always run in CI.
///
/// # Panics
/// When not root and `CI` is set.
pub fn is_root(test: &str) -> bool {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, b"").expect("write a probe file");
    // A new file belongs to the process's effective uid.
    let root = std::fs::metadata(&probe).expect("stat the probe file").uid() == 0;
    if !root {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty() || ci == "false",
            "{test} needs root, and CI must run it: run the tests as root"
        );
        eprintln!("skipped {test}: it needs root (CI runs it as root)");
    }
    root
}
