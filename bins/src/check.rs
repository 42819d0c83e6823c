//! What the `--check` of `serve` and `relay` share: the report (one line per finding, problems
//! start with `error:`) and whether a port can be bound (a port in use, an address that is not
//! this machine's, or a privileged port, each said in one line).

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

/// The findings of a check, printed as they come.
#[derive(Debug, Default)]
pub struct Report {
    problems: usize,
}

impl Report {
    /// A finding that is fine.
    pub fn ok(&mut self, line: String) {
        println!("ok: {line}");
    }

    /// Something to act on that does not fail the check.
    pub fn warning(&mut self, line: String) {
        println!("warning: {line}");
    }

    /// A problem: the check fails.
    pub fn problem(&mut self, line: String) {
        self.problems += 1;
        println!("error: {line}");
    }

    /// Whether nothing is wrong.
    pub fn passed(&self) -> bool {
        self.problems == 0
    }

    /// Prints the last line, how many problems, and says whether the check passed.
    pub fn conclude(self) -> bool {
        match self.problems {
            0 => println!("check passed"),
            1 => println!("check failed: 1 problem"),
            n => println!("check failed: {n} problems"),
        }
        self.passed()
    }
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (listening).
    Tcp,
    /// UDP.
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Why `addr` cannot be bound for `protocol`, or `None` when it can (it is released at once).
pub fn port_problem(protocol: Protocol, addr: SocketAddr) -> Option<String> {
    let bound = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    };
    let error = bound.err()?;
    let why = match error.kind() {
        io::ErrorKind::AddrInUse => "is in use by another program".to_owned(),
        io::ErrorKind::AddrNotAvailable => {
            "cannot be bound: the address is not one of this machine's".to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "cannot be bound: permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => format!("cannot be bound: {error}"),
    };
    Some(format!("{}/{protocol} on {} {why}", addr.port(), addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_a_port_in_use_and_a_foreign_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let why = port_problem(Protocol::Tcp, addr).expect("in use");
        assert_eq!(
            why,
            format!("{}/tcp on 127.0.0.1 is in use by another program", addr.port())
        );
        drop(taken);
        assert_eq!(port_problem(Protocol::Tcp, addr), None);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let why = port_problem(Protocol::Udp, udp.local_addr().unwrap()).expect("in use");
        assert!(why.contains("/udp on 127.0.0.1 is in use"), "{why}");
        let foreign: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let why = port_problem(Protocol::Udp, foreign).expect("not local");
        assert!(why.contains("not one of this machine's"), "{why}");
    }
}
