//! Custom resources the API server must accept or refuse: the example CRs, and each broken one
//! of the CRD unit tests (`src/crd/tests.rs`), as requests (create, update, status update) so
//! that the real control plane and the emulator can both be asked.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

/// What is sent.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create the object.
    Create(Value),
    /// Create `old`, then replace it with `new`.
    Update { old: Value, new: Value },
    /// Create the object, then merge-patch its status subresource with `status` (on create the
    /// status of a kind with a status subresource is dropped, so this is where it is checked).
    Status { object: Value, status: Value },
}

/// One request and what must come of it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub op: Op,
    /// `None`: accepted. `Some(text)`: refused with 422 Invalid, the message containing `text`.
    pub refused_naming: Option<&'static str>,
}

/// Every document of `examples/*.yaml`, sorted by file name.
pub fn examples() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("a readable example");
        let file = path.file_name().expect("a file name").to_string_lossy();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        out.extend(docs.into_iter().map(|value| (file.clone().into_owned(), value)));
    }
    out
}

fn example(kind: &str) -> Value {
    examples()
        .into_iter()
        .find(|(_, v)| v["kind"] == kind)
        .map(|(_, v)| v)
        .expect("an example of the kind")
}

/// The example in `file` (the first document).
fn example_in(file: &str) -> Value {
    examples()
        .into_iter()
        .find(|(f, _)| f == file)
        .map(|(_, v)| v)
        .expect("the example file")
}

fn refused(name: &str, op: Op, naming: &'static str) -> Case {
    Case {
        name: name.into(),
        op,
        refused_naming: Some(naming),
    }
}

fn edited(kind: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut object = example(kind);
    edit(&mut object);
    object
}

/// Every case: each example accepted, then the broken ones refused.
pub fn all() -> Vec<Case> {
    let mut cases: Vec<Case> = examples()
        .into_iter()
        .map(|(file, object)| Case {
            name: file,
            op: Op::Create(object),
            refused_naming: None,
        })
        .collect();
    cases.extend(apps());
    cases.extend(users_and_pairings());
    cases.extend(sessions());
    cases
}

fn apps() -> Vec<Case> {
    let create = |edit: fn(&mut Value)| Op::Create(edited("App", edit));
    vec![
        refused("app id 0", create(|a| a["spec"]["id"] = json!(0)), "spec.id"),
        refused(
            "app id 2^31",
            create(|a| a["spec"]["id"] = json!(2_147_483_648_u64)),
            "spec.id",
        ),
        refused(
            "app id a string",
            create(|a| a["spec"]["id"] = json!("one")),
            "spec.id",
        ),
        refused(
            "app empty title",
            create(|a| a["spec"]["title"] = json!("")),
            "spec.title",
        ),
        refused(
            "app long title",
            create(|a| a["spec"]["title"] = json!("x".repeat(64))),
            "spec.title",
        ),
        refused(
            "app with both WebP and PNG art",
            Op::Create({
                let mut app = example_in("app-test-pattern.yaml");
                app["spec"]["appAssetPNG"] = example_in("app-firefox.yaml")["spec"]["appAssetPNG"].clone();
                app
            }),
            "set at most one of appAssetWebP and appAssetPNG",
        ),
        refused(
            "app GPU without a resource name",
            create(|a| a["spec"]["gpu"] = json!({"resource": "", "count": 1})),
            "spec.gpu.resource",
        ),
        refused(
            "app GPU count over 64",
            create(|a| a["spec"]["gpu"] = json!({"resource": "nvidia.com/gpu", "count": 65})),
            "spec.gpu.count",
        ),
        Case {
            name: "app asking for no GPU".into(),
            op: create(|a| a["spec"]["gpu"] = json!({"resource": "nvidia.com/gpu", "count": 0})),
            refused_naming: None,
        },
        refused(
            "app unknown log level",
            create(|a| a["spec"]["wolfConfig"]["runtimeVariables"]["logLevel"] = json!("VERBOSE")),
            "spec.wolfConfig.runtimeVariables.logLevel",
        ),
        refused(
            "app without title",
            create(|a| {
                a["spec"].as_object_mut().expect("a spec").remove("title");
            }),
            "spec.title",
        ),
    ]
}

fn users_and_pairings() -> Vec<Case> {
    let user = |edit: fn(&mut Value)| Op::Create(edited("User", edit));
    let pairing = |edit: fn(&mut Value)| Op::Create(edited("Pairing", edit));
    vec![
        refused(
            "user name not DNS-1123",
            user(|u| u["metadata"]["name"] = json!("Alice.Example")),
            "metadata.name",
        ),
        refused(
            "user volume named like a sidecar's",
            user(|u| u["spec"]["volumes"][0]["name"] = json!("wolf-data")),
            "spec.volumes",
        ),
        refused(
            "user mount of an undeclared volume",
            user(|u| u["spec"]["sidecarPolicies"]["wolf"]["volumeMounts"][0]["name"] = json!("not-declared")),
            "spec.sidecarPolicies",
        ),
        refused(
            "pairing not named by a fingerprint",
            pairing(|p| p["metadata"]["name"] = json!("alice-phone")),
            "fingerprint",
        ),
        refused(
            "pairing without certificate",
            pairing(|p| {
                p["spec"].as_object_mut().expect("a spec").remove("clientCertPEM");
            }),
            "spec.clientCertPEM",
        ),
        refused(
            "pairing certificate not PEM",
            pairing(|p| p["spec"]["clientCertPEM"] = json!("not a certificate")),
            "spec.clientCertPEM",
        ),
        refused(
            "pairing user not a name",
            pairing(|p| p["spec"]["userReference"]["name"] = json!("Bob")),
            "spec.userReference.name",
        ),
    ]
}

fn sessions() -> Vec<Case> {
    let create = |edit: fn(&mut Value)| Op::Create(edited("Session", edit));
    let status = |status: Value| Op::Status {
        object: example("Session"),
        status,
    };
    let update = |edit: fn(&mut Value)| Op::Update {
        old: example("Session"),
        new: edited("Session", edit),
    };
    let ports = |rtsp: u64| json!({"ports": {"rtsp": rtsp, "control": 1, "videoRTP": 2, "audioRTP": 3}});
    vec![
        refused(
            "session video width 0",
            create(|s| s["spec"]["config"]["videoWidth"] = json!(0)),
            "spec.config.videoWidth",
        ),
        refused(
            "session client IP not an IP",
            create(|s| s["spec"]["config"]["clientIP"] = json!("not-an-ip")),
            "spec.config.clientIP",
        ),
        refused(
            "session unknown phase",
            status(json!({"phase": "Running"})),
            "status.phase",
        ),
        refused("session RTSP port 0", status(ports(0)), "status.ports.rtsp"),
        refused(
            "session RTSP port 65536",
            status(ports(65_536)),
            "status.ports.rtsp",
        ),
        refused(
            "session stream URL not RTSP",
            status(json!({"streamURL": "http://example.com"})),
            "status.streamURL",
        ),
        Case {
            name: "session resumed from another address, pairing changed".into(),
            op: update(|s| {
                s["spec"]["config"]["clientIP"] = json!("198.51.100.9");
                s["spec"]["pairingReference"]["name"] = json!("cd".repeat(32));
            }),
            refused_naming: None,
        },
        refused(
            "session moved to another user",
            update(|s| s["spec"]["userReference"]["name"] = json!("bob")),
            "immutable",
        ),
        refused(
            "session moved to another app",
            update(|s| s["spec"]["gameReference"]["name"] = json!("firefox")),
            "immutable",
        ),
    ]
}
