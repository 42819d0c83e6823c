//! A real OpenID Connect provider for the single sign-on tests: panva's `oidc-provider`
//! (`tests/oidc/provider.mjs`, installed with `npm ci` from the locked `tests/oidc/package.json`
//! into the target directory) and a person's browser (`tests/oidc/browser.py`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::Proc;

/// How long `npm ci` may take.
pub const NPM_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the browser's whole round trip may take (each request: 20 s).
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);
/// The user the provider's ID tokens name (`preferred_username` "Ada.Lovelace").
pub const OIDC_USER: &str = "ada-lovelace";
pub const CLIENT_ID: &str = "direwolf-pin-page";

/// `tests/oidc`: the provider script, its package.json and lock file, the browser.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the locked `oidc-provider` into the target directory (once); where it is. Fails
/// loudly when Node.js or npm is missing: this test never passes without the real provider.
pub fn install_provider() -> PathBuf {
    // The tests of this file run in parallel; one installs at a time.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    for tool in ["node", "npm"] {
        match Command::new(tool).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "{tool} is required for the OpenID Connect test (a real provider, oidc-provider from \
                 npm, runs on Node.js 20 or later): {other:?}"
            ),
        }
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider");
    std::fs::create_dir_all(&dir).expect("the provider's directory");
    for file in ["package.json", "package-lock.json", "provider.mjs"] {
        std::fs::copy(oidc_dir().join(file), dir.join(file)).expect("copy the provider files");
    }
    let installed = dir.join("node_modules/oidc-provider/package.json");
    let locked = std::fs::read_to_string(oidc_dir().join("package-lock.json")).expect("the lock file");
    let fresh = std::fs::read_to_string(&installed)
        .ok()
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .is_some_and(|p| {
            locked.contains(&format!(
                "\"version\": \"{}\"",
                p["version"].as_str().unwrap_or("?")
            ))
        });
    if !fresh {
        let out = Proc::spawn(
            "npm ci",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&dir),
        )
        .finish(NPM_TIMEOUT);
        assert!(
            out.status.success(),
            "npm ci failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    dir
}

/// Starts the provider with one client redirecting to `redirect` (comma-separated URLs), public
/// or with `secret`; it and its issuer URL.
pub fn start_provider(dir: &Path, redirect: &str, secret: Option<&str>) -> (Proc, String) {
    let proc = Proc::spawn(
        "oidc-provider",
        Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args([CLIENT_ID, redirect])
            .args(secret)
            .current_dir(dir),
    );
    let line = proc.wait_for("oidc provider listening at ", Duration::from_secs(60));
    let issuer = line[line.find("http://").expect("the issuer URL")..]
        .trim()
        .to_owned();
    (proc, issuer)
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The browser: opens `url`, logs in at the provider, and with `pin` posts it on the PIN page it
/// comes back to; its report.
pub fn browse(url: &str, pin: Option<&str>) -> Value {
    let mut command = Command::new("python3");
    command.arg(oidc_dir().join("browser.py")).arg(url);
    if let Some(pin) = pin {
        command.arg(pin);
    }
    Proc::spawn("browser", &mut command).json_result(BROWSER_TIMEOUT)
}

/// The browser on the web UI at `admin_url`: logs in with single sign-on, then enters `pin` for
/// the pending pairing `secret` as the web UI does; its report (with `session` and `approve`).
pub fn browse_web_ui(admin_url: &str, secret: &str, pin: &str) -> Value {
    Proc::spawn(
        "browser",
        Command::new("python3")
            .arg(oidc_dir().join("browser.py"))
            .args(["--web-ui", admin_url, secret, pin]),
    )
    .json_result(BROWSER_TIMEOUT)
}
