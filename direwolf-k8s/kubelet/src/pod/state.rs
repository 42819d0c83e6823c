//! What the stand-in knows of one pod's containers, and the pod status a kubelet derives from
//! it (phase, conditions, container statuses): pure functions, no I/O.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// One container's state, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Not running: reason and message.
    Waiting(String, String),
    /// Running since.
    Running(Timestamp),
    /// Exited.
    Terminated(Exit),
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128 + signal when killed).
    pub code: i32,
    /// `Completed`, `Error` or `Killed`…
    pub reason: String,
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
}

/// One container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// Its name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Now.
    pub state: Run,
    /// Before the last restart.
    pub last: Option<Run>,
    /// Passing its readiness probe (or running without one).
    pub ready: bool,
    /// Restarts so far.
    pub restarts: i32,
    /// Its process (the container ID).
    pub pid: Option<u32>,
}

impl ContainerRecord {
    /// A container not started yet.
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.to_owned(),
            image: image.to_owned(),
            state: Run::Waiting("ContainerCreating".to_owned(), String::new()),
            last: None,
            ready: false,
            restarts: 0,
            pid: None,
        }
    }
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRecord {
    /// Init containers, in order.
    pub init: Vec<ContainerRecord>,
    /// Containers.
    pub main: Vec<ContainerRecord>,
    /// Its IP, once its network exists.
    pub ip: Option<Ipv4Addr>,
    /// When the stand-in took it.
    pub start: Option<Timestamp>,
    /// Every init container succeeded.
    pub initialized: bool,
    /// The pod ended for good (`Succeeded` or `Failed`); the phase then stays.
    pub finished: Option<String>,
}

fn run_json(run: &Run) -> Value {
    match run {
        Run::Waiting(reason, message) if message.is_empty() => json!({"waiting": {"reason": reason}}),
        Run::Waiting(reason, message) => json!({"waiting": {"reason": reason, "message": message}}),
        Run::Running(at) => json!({"running": {"startedAt": at.to_string()}}),
        Run::Terminated(e) => json!({"terminated": {
            "exitCode": e.code, "reason": e.reason,
            "startedAt": e.started.to_string(), "finishedAt": e.finished.to_string(),
        }}),
    }
}

fn container_json(c: &ContainerRecord) -> Value {
    let mut v = json!({
        "name": c.name, "image": c.image, "imageID": format!("direwolf-kubelet://{}", c.image),
        "state": run_json(&c.state), "ready": c.ready, "restartCount": c.restarts,
        "started": matches!(c.state, Run::Running(_)),
    });
    if let Some(pid) = c.pid {
        v["containerID"] = json!(format!("process://{pid}"));
    }
    if let Some(last) = &c.last {
        v["lastState"] = run_json(last);
    }
    v
}

/// The phase: Pending until a container started, Running while one runs or will restart,
/// then Succeeded or Failed once recorded as finished.
pub fn phase(p: &PodRecord) -> &str {
    if let Some(done) = &p.finished {
        return done;
    }
    let started = p
        .main
        .iter()
        .any(|c| !matches!(c.state, Run::Waiting(..)) || c.restarts > 0);
    if p.initialized && started {
        "Running"
    } else {
        "Pending"
    }
}

/// The condition statuses (type → true/false) of `p`.
pub fn conditions(p: &PodRecord) -> BTreeMap<&'static str, bool> {
    let all_ready = !p.main.is_empty() && p.main.iter().all(|c| c.ready);
    BTreeMap::from([
        ("PodScheduled", true),
        ("Initialized", p.initialized),
        ("ContainersReady", all_ready),
        ("Ready", all_ready),
    ])
}

/// The `status` of the pod; `since` holds each condition's last transition time.
pub fn status_json(
    p: &PodRecord,
    host_ip: Ipv4Addr,
    since: &BTreeMap<&'static str, (bool, Timestamp)>,
) -> Value {
    let conditions: Vec<Value> = conditions(p)
        .into_iter()
        .map(|(kind, ok)| {
            let at = since.get(kind).map_or_else(Timestamp::now, |(_, t)| *t);
            json!({"type": kind, "status": if ok { "True" } else { "False" },
                   "lastTransitionTime": at.to_string()})
        })
        .collect();
    let mut status = json!({
        "phase": phase(p),
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "conditions": conditions,
        "initContainerStatuses": p.init.iter().map(container_json).collect::<Vec<_>>(),
        "containerStatuses": p.main.iter().map(container_json).collect::<Vec<_>>(),
    });
    if let Some(ip) = p.ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    if let Some(start) = p.start {
        status["startTime"] = json!(start.to_string());
    }
    status
}

/// The phase of a pod whose containers all ended and will not restart.
pub fn final_phase(p: &PodRecord) -> &'static str {
    let failed = p
        .main
        .iter()
        .any(|c| matches!(&c.state, Run::Terminated(e) if e.code != 0));
    if failed { "Failed" } else { "Succeeded" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> Run {
        let now = Timestamp::now();
        Run::Terminated(Exit {
            code,
            reason: "Error".into(),
            started: now,
            finished: now,
        })
    }

    #[test]
    fn phases_follow_the_containers() {
        let mut p = PodRecord {
            main: vec![ContainerRecord::new("a", "i")],
            ..PodRecord::default()
        };
        assert_eq!(phase(&p), "Pending");
        p.initialized = true;
        p.main[0].state = Run::Running(Timestamp::now());
        assert_eq!(phase(&p), "Running");
        assert!(!conditions(&p)["Ready"]);
        p.main[0].ready = true;
        assert!(conditions(&p)["Ready"]);
        p.main[0].state = exited(3);
        assert_eq!(final_phase(&p), "Failed");
        p.main[0].state = exited(0);
        assert_eq!(final_phase(&p), "Succeeded");
    }

    #[test]
    fn status_carries_ip_and_exit_codes() {
        let mut p = PodRecord {
            main: vec![ContainerRecord::new("a", "i")],
            ip: Some(Ipv4Addr::new(10, 77, 0, 2)),
            ..PodRecord::default()
        };
        p.main[0].state = exited(7);
        let s = status_json(&p, Ipv4Addr::new(10, 77, 0, 1), &BTreeMap::new());
        assert_eq!(s["podIP"], "10.77.0.2");
        assert_eq!(s["containerStatuses"][0]["state"]["terminated"]["exitCode"], 7);
        assert_eq!(s["conditions"].as_array().map(Vec::len), Some(4));
    }
}
