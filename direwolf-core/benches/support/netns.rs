//! The relay benchmark's network: three namespaces joined by two veth pairs.

use std::process::Command;

pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces and two veth pairs; deleted on drop.
pub struct Topology {
    /// The client namespace.
    pub c: String,
    /// The forwarder namespace.
    pub r: String,
    /// The Wolf namespace.
    pub w: String,
}

impl Topology {
    pub fn create() -> Topology {
        let tag = std::process::id();
        let t = Topology {
            c: format!("dwbc{tag}"),
            r: format!("dwbr{tag}"),
            w: format!("dwbw{tag}"),
        };
        for n in [&t.c, &t.r, &t.w] {
            run("ip", &["netns", "add", n]);
            run("ip", &["-n", n, "link", "set", "lo", "up"]);
        }
        let (c0, r1, r2, w0) = (
            format!("bc{tag}"),
            format!("br1{tag}"),
            format!("br2{tag}"),
            format!("bw{tag}"),
        );
        run(
            "ip",
            &[
                "link", "add", &c0, "netns", &t.c, "type", "veth", "peer", "name", &r1, "netns", &t.r,
            ],
        );
        run(
            "ip",
            &[
                "link", "add", &r2, "netns", &t.r, "type", "veth", "peer", "name", &w0, "netns", &t.w,
            ],
        );
        for (ns, dev, addr) in [
            (&t.c, &c0, "10.77.1.2/24"),
            (&t.r, &r1, "10.77.1.1/24"),
            (&t.r, &r2, "10.77.2.1/24"),
            (&t.w, &w0, "10.77.2.2/24"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        // One more client address per session (`client_ip` in relay.rs): sessions from distinct
        // clients, as the shared-ports relay meets them.
        for i in 0..16 {
            run(
                "ip",
                &[
                    "-n",
                    &t.c,
                    "addr",
                    "add",
                    &format!("10.77.1.{}/24", 10 + i),
                    "dev",
                    &c0,
                ],
            );
        }
        run(
            "ip",
            &["-n", &t.c, "route", "add", "10.77.2.0/24", "via", "10.77.1.1"],
        );
        run(
            "ip",
            &["-n", &t.w, "route", "add", "10.77.1.0/24", "via", "10.77.2.1"],
        );
        run(
            "ip",
            &["netns", "exec", &t.r, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        );
        // A link from Wolf straight to the client, beside the forwarder: the `egress` variant's
        // media takes it (packets marked 0x77 in Wolf's namespace), as when a Wolf host sends to
        // the internet itself with the proxy's address as source.
        let (cd, wd) = (format!("bcd{tag}"), format!("bwd{tag}"));
        run(
            "ip",
            &[
                "link", "add", &cd, "netns", &t.c, "type", "veth", "peer", "name", &wd, "netns", &t.w,
            ],
        );
        for (ns, dev, addr) in [(&t.c, &cd, "10.77.3.2/24"), (&t.w, &wd, "10.77.3.1/24")] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        // The client takes media from the proxy's address on that link (no reverse-path check).
        for conf in ["all", cd.as_str()] {
            let key = format!("net.ipv4.conf.{conf}.rp_filter=0");
            run("ip", &["netns", "exec", &t.c, "sysctl", "-qw", &key]);
        }
        run(
            "ip",
            &["-n", &t.w, "rule", "add", "fwmark", "0x77", "lookup", "77"],
        );
        run(
            "ip",
            &[
                "-n",
                &t.w,
                "route",
                "add",
                "10.77.1.0/24",
                "via",
                "10.77.3.2",
                "table",
                "77",
            ],
        );
        if std::env::var("DW_BENCH_RPS").as_deref() != Ok("0") {
            // Receive processing on the receiving host's core, as separate machines have it: what
            // arrives in the forwarder's namespace is processed on CPU 1, what arrives at the
            // client or at Wolf on CPU 0 (veth would otherwise run it on the sender's core).
            for (ns, dev, cpus) in [
                (&t.r, &r1, "2"),
                (&t.r, &r2, "2"),
                (&t.c, &c0, "1"),
                (&t.w, &w0, "1"),
                (&t.c, &cd, "1"),
            ] {
                let path = format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus");
                run(
                    "ip",
                    &["netns", "exec", ns, "sh", "-c", &format!("echo {cpus} > {path}")],
                );
            }
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in [&self.c, &self.r, &self.w] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
