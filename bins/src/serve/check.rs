//! `direwolf serve --check`: everything start-up would trip on, found without starting — the
//! configuration file and the files it names, the data directory, every Wolf (its API version
//! and app ids, and the apps the configuration asks of it), every port and the Wolf API socket.
//! One line per finding; problems start with `error:`, and any problem makes the exit status 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use direwolf_wolf_client::WolfClient;

use super::config::{AppConfig, WolfConfig};
use super::{Plan, ServeArgs, default_data_dir, plan, relay_address, wolf_client};
use crate::check::{Protocol, Report, port_problem};

/// How long the check waits for each Wolf.
const WOLF_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check of `args`, prints the report, and says whether all is well.
pub async fn run(args: &ServeArgs) -> bool {
    let mut report = Report::default();
    let plan = match plan(args) {
        Ok(plan) => {
            let shown = args
                .config
                .as_deref()
                .map_or("none (defaults)".to_owned(), |p| p.display().to_string());
            let (apps, wolves) = (plan.app_count, plan.wolves.len());
            report.ok(format!(
                "configuration {shown}: {apps} app(s), {wolves} Wolf host(s)"
            ));
            Some(plan)
        }
        Err(error) => {
            report.problem(format!("{error:#}"));
            None
        }
    };
    data_dir(args, plan.as_ref(), &mut report);
    listen_ports(args, &mut report);
    if let Some(path) = &args.wolf_api_socket {
        match direwolf_core::wolf_api::WolfApiSocket::check(path) {
            Ok(what) => report.ok(format!("Wolf API socket {}: {what}", path.display())),
            Err(why) => report.problem(format!("Wolf API socket {}: {why}", path.display())),
        }
    }
    if let Some(plan) = &plan {
        if plan.wolves.is_empty() {
            report.ok("no [[wolf]] host: clients can pair and list apps, but no stream can start".to_owned());
        }
        for wolf in &plan.wolves {
            check_wolf(wolf, &plan.apps, &mut report).await;
        }
        if !plan.wolves.is_empty() {
            relay_ports(plan, &args.listen.bind, &mut report);
        }
    }
    report.conclude()
}

fn data_dir(args: &ServeArgs, plan: Option<&Plan>, report: &mut Report) {
    let dir = match (plan, &args.data_dir) {
        (Some(plan), _) => plan.data_dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => match default_data_dir() {
            Ok(dir) => dir,
            Err(error) => return report.problem(format!("{error:#}")),
        },
    };
    // The checks start-up makes (ownership, modes, a symbolic link, an empty database), without
    // opening the database, which a running server may hold.
    let safe = direwolf_core::persistent::check_data_dir(&dir).map_err(|e| match e {
        direwolf_core::Error::Backend { source, .. } => source.to_string(),
        e => e.to_string(),
    });
    match safe.and_then(|()| writable_dir_or_creatable(&dir)) {
        Ok(what) => report.ok(format!("data directory {}: {what}", dir.display())),
        Err(why) => report.problem(format!("data directory {}: {why}", dir.display())),
    }
}

/// Whether `dir` is a writable directory, or could be created as one.
fn writable_dir_or_creatable(dir: &Path) -> Result<&'static str, String> {
    let mut existing = dir;
    while !existing.exists() {
        existing = existing
            .parent()
            .ok_or_else(|| "no existing parent directory".to_owned())?;
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".direwolf-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("{} is not writable: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if existing == dir {
        "exists and is writable"
    } else {
        "will be created"
    })
}

fn listen_ports(args: &ServeArgs, report: &mut Report) {
    let explicit = !args.listen.bind.is_empty();
    let addrs = if explicit {
        args.listen.bind.clone()
    } else {
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]
    };
    let ports = [
        ("HTTP", args.listen.http_port),
        ("HTTPS", args.listen.https_port),
        ("admin", args.admin_port),
    ];
    for (what, port) in ports {
        if port == 0 {
            report.ok(format!("{what} port: 0, a free one is picked at start"));
            continue;
        }
        let mut problems = Vec::new();
        for ip in &addrs {
            if let Some(why) = port_problem(Protocol::Tcp, SocketAddr::new(*ip, port)) {
                // Without --bind, a host without IPv6 serves IPv4 only (start-up warns).
                if explicit || ip.is_ipv4() || why.contains("in use") {
                    problems.push(why);
                }
            }
        }
        if problems.is_empty() {
            report.ok(format!("{what} port {port}/tcp is free"));
        } else {
            report.problem(format!("{what} port: {}", problems.join("; ")));
        }
    }
}

fn relay_ports(plan: &Plan, bind: &[IpAddr], report: &mut Report) {
    let ip = relay_address(&plan.relay, bind);
    if let Some(shared) = plan.relay.shared {
        shared_ports(ip, shared, report);
    }
    let range = plan.relay.port_range.clone();
    let mut taken = Vec::new();
    for port in range.clone() {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            if let Some(why) = port_problem(protocol, SocketAddr::new(ip, port)) {
                taken.push(why);
            }
        }
    }
    let (first, last) = (range.start(), range.end());
    match taken.as_slice() {
        [] => report.ok(format!(
            "relay ports {first}-{last} (tcp and udp) are free on {ip}"
        )),
        [one] => report.problem(format!("relay ports {first}-{last}: {one}")),
        [one, rest @ ..] => report.problem(format!(
            "relay ports {first}-{last}: {one}, and {} more port(s) cannot be bound",
            rest.len()
        )),
    }
    if let Some(advice) = crate::ephemeral::advice(&range) {
        report.warning(format!("relay ports: {advice}"));
    }
}

/// The shared port set of `[relay] shared = true`.
fn shared_ports(ip: IpAddr, shared: direwolf_core::relay::SharedPorts, report: &mut Report) {
    let ports = [
        ("rtsp", Protocol::Tcp, shared.rtsp),
        ("video", Protocol::Udp, shared.video),
        ("audio", Protocol::Udp, shared.audio),
        ("control", Protocol::Udp, shared.control),
    ];
    let taken: Vec<String> = ports
        .iter()
        .filter_map(|(what, protocol, port)| {
            port_problem(*protocol, SocketAddr::new(ip, *port)).map(|why| format!("{what}: {why}"))
        })
        .collect();
    if taken.is_empty() {
        report.ok(format!(
            "shared relay ports rtsp {}/tcp, video {}/udp, audio {}/udp, control {}/udp are free on {ip}",
            shared.rtsp, shared.video, shared.audio, shared.control
        ));
    } else {
        report.problem(format!("shared relay ports: {}", taken.join("; ")));
    }
}

async fn check_wolf(wolf: &WolfConfig, apps: &[AppConfig], report: &mut Report) {
    let client = match wolf_client(wolf, WOLF_TIMEOUT, None) {
        Ok(client) => client,
        Err(error) => return report.problem(format!("{error:#}")),
    };
    let target = client.target();
    let answer = tokio::time::timeout(WOLF_TIMEOUT * 2, reach(&client)).await;
    let (version, wolf_apps) = match answer {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            return report.problem(format!("wolf {} ({target}): not reached: {error}", wolf.name));
        }
        Err(_) => {
            return report.problem(format!(
                "wolf {} ({target}): no answer within {:?}",
                wolf.name,
                WOLF_TIMEOUT * 2
            ));
        }
    };
    report.ok(format!(
        "wolf {} ({target}): API {version}, apps: {}",
        wolf.name,
        wolf_apps.join(", ")
    ));
    for app in apps {
        let Some(wanted) = &app.wolf_app_id else { continue };
        if !wolf_apps.contains(wanted) {
            report.problem(format!(
                "app {} ({}): wolf_app_id {wanted:?} is not an app of wolf {} (it has: {})",
                app.app.id,
                app.app.title,
                wolf.name,
                wolf_apps.join(", ")
            ));
        }
    }
}

/// Wolf's API version and app ids.
async fn reach(client: &WolfClient) -> direwolf_wolf_client::Result<(String, Vec<String>)> {
    let version = client.version().await?;
    let apps = client.apps().await?;
    Ok((
        version.to_string(),
        apps.into_iter().map(|a| a.id.to_string()).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_under_a_writable_one_will_be_created() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            writable_dir_or_creatable(dir.path()),
            Ok("exists and is writable")
        );
        assert_eq!(
            writable_dir_or_creatable(&dir.path().join("a/b")),
            Ok("will be created")
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = writable_dir_or_creatable(&file.join("db")).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
