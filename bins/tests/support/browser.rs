//! The web UI's browser (`web_ui.rs`, `accounts_e2e.rs`): Debian's headless Chromium driven by
//! `playwright-core` through `tests/webui/drive.mjs`, installed with `npm ci` into the test's
//! target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::Proc;

/// How long `npm ci` and `apt-get install` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one browser step may take (each wait in it: 20 s).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

/// Debian's Chromium, installed with apt-get when missing; fails loudly when it cannot be.
pub fn require_chromium() -> PathBuf {
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() {
        let out = Proc::spawn(
            "apt-get install chromium",
            Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .finish(INSTALL_TIMEOUT);
        assert!(
            out.status.success(),
            "the web UI test needs Debian's chromium and `apt-get install -y chromium` failed (run \
             it as root):\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let version = Command::new(&chromium).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|v| v.status.success()),
        "{} does not run: {version:?}",
        chromium.display()
    );
    chromium
}

/// Installs the locked `playwright-core` into the target directory (once); where the driver is.
/// `into` names the directory (one per test binary: they may run at once).
pub fn install_driver(into: &str) -> PathBuf {
    // Once per directory and test process: `npm ci` empties `node_modules` first, under the
    // feet of a test of the same binary already driving the browser from there.
    static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(into);
    if installed.iter().any(|done| done == into) {
        return dir;
    }
    for tool in ["node", "npm"] {
        match Command::new(tool).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            other => panic!("{tool} is required for the web UI test (playwright-core from npm): {other:?}"),
        }
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webui");
    std::fs::create_dir_all(&dir).expect("the driver's directory");
    for file in ["package.json", "package-lock.json", "drive.mjs"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy the driver files");
    }
    let out = Proc::spawn(
        "npm ci",
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir),
    )
    .finish(INSTALL_TIMEOUT);
    assert!(
        out.status.success(),
        "npm ci failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    installed.push(into.to_owned());
    dir
}

/// Headless Chromium driven by `drive.mjs`, one step per run.
#[derive(Clone)]
pub struct Browser {
    /// Where [`install_driver`] put the driver.
    pub dir: PathBuf,
    pub chromium: PathBuf,
    /// Where the screenshots go.
    pub shots: PathBuf,
    /// The web UI's address.
    pub url: String,
    /// The network namespace the browser runs in (`None`: this one).
    pub ns: Option<String>,
}

impl Browser {
    /// Chromium (installed if missing) with the driver installed into `driver` and a fresh
    /// screenshot directory `shots`, both in Cargo's `CARGO_TARGET_TMPDIR` (kept after the run
    /// for a person to look at), opening `url`, from network namespace `ns` if given.
    pub fn prepare(driver: &str, shots: &str, url: String, ns: Option<String>) -> Browser {
        let chromium = require_chromium();
        let dir = install_driver(driver);
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(shots);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("the screenshot directory");
        Browser {
            dir,
            chromium,
            shots,
            url,
            ns,
        }
    }

    /// Runs one step of `drive.mjs` as `user`; its report.
    pub fn step(&self, step: &str, user: &str, password: &str, arg: Option<&Path>) -> Value {
        let mut command = match &self.ns {
            Some(ns) => super::in_netns(ns, "node"),
            None => Command::new("node"),
        };
        command
            .current_dir(&self.dir)
            .env("CHROMIUM", &self.chromium)
            .arg("drive.mjs")
            .args([step, &self.url, user, password])
            .arg(&self.shots);
        if let Some(arg) = arg {
            command.arg(arg);
        }
        let report = Proc::spawn(&format!("browser {step}"), &mut command).json_result(BROWSER_TIMEOUT);
        for shot in report["screenshots"].as_array().expect("screenshots") {
            let shot = shot.as_str().expect("a path");
            assert!(Path::new(shot).is_file(), "{shot}");
            println!("screenshot ({step}): {shot}");
        }
        assert!(
            report["page_width"].as_u64().is_some_and(|w| w <= 375),
            "the page fits a 375 px screen: {report}"
        );
        report
    }
}
