//! The Gateway API CRDs for the real control plane: module `sigs.k8s.io/gateway-api` fetched
//! through Go's module proxy into the tests' Go cache (`DIREWOLF_GO_CACHE`, default
//! `/var/tmp/direwolf-go`, beside the control plane's), never committed. Gateway and
//! GatewayClass, and the experimental channel's TCPRoute and UDPRoute (the channel the operator
//! needs, `parentRefs[].port` included). A fetch that fails fails the test: it never skips.

use std::path::PathBuf;
use std::process::Command;

/// The release whose CRDs are installed.
pub const VERSION: &str = "v1.2.1";

/// The CRD files read from the module (experimental channel).
const FILES: [&str; 4] = [
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_tcproutes.yaml",
    "gateway.networking.k8s.io_udproutes.yaml",
];

/// The CRDs as one multi-document YAML stream.
///
/// # Panics
/// When Go is missing or the module cannot be downloaded (with Go's message).
pub fn crds_yaml() -> String {
    let cache = std::env::var_os("DIREWOLF_GO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/direwolf-go"));
    let go = ["go", "/usr/local/go/bin/go"]
        .into_iter()
        .find(|go| {
            Command::new(go)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Go is needed to fetch the Gateway API CRDs (sigs.k8s.io/gateway-api)");
    let output = Command::new(go)
        .args(["mod", "download", "-json"])
        .arg(format!("sigs.k8s.io/gateway-api@{VERSION}"))
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOCACHE", cache.join("build"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("go mod download runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cannot download sigs.k8s.io/gateway-api@{VERSION}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: serde_json::Value = serde_json::from_str(&stdout).expect("go mod download -json");
    let dir = PathBuf::from(info["Dir"].as_str().expect("the module's directory"));
    FILES
        .iter()
        .map(|file| {
            let path = dir.join("config/crd/experimental").join(file);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}
