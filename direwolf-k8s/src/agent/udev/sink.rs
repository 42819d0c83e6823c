//! Where uevents go: [`UeventSink`], and its real implementation [`NetlinkSink`], a
//! `NETLINK_KOBJECT_UEVENT` socket multicasting to udev's group in the network namespace it was
//! opened in (the pod's, shared by all its containers).
//!
//! Sending to a netlink multicast group needs `CAP_NET_ADMIN` in the pod's network namespace,
//! and libudev listeners drop messages whose sender (netlink credentials) is not uid 0.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, sendmsg, socket,
};

use super::message::{UDEV_GROUP, Uevent};

/// Receives the uevents the agent replays.
pub trait UeventSink: Send + Sync + 'static {
    /// Sends one uevent to the listeners.
    ///
    /// # Errors
    /// The send failed (no permission, no buffer space, ...).
    fn send(&self, event: &Uevent) -> io::Result<()>;
}

/// A netlink socket sending udev-group multicasts (see the [module docs](self)).
#[derive(Debug)]
pub struct NetlinkSink {
    fd: OwnedFd,
}

impl NetlinkSink {
    /// Opens the socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// The socket cannot be created or bound.
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(|e| io::Error::other(format!("cannot open a netlink uevent socket: {e}")))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| io::Error::other(format!("cannot bind the netlink uevent socket: {e}")))?;
        Ok(NetlinkSink { fd })
    }
}

impl UeventSink for NetlinkSink {
    fn send(&self, event: &Uevent) -> io::Result<()> {
        let bytes = event.encode();
        let to = NetlinkAddr::new(0, UDEV_GROUP);
        sendmsg(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::empty(),
            Some(&to),
        )
        .map(drop)
        .map_err(|e| {
            io::Error::other(format!(
                "cannot multicast the uevent to udev listeners (the agent needs CAP_NET_ADMIN): {e}"
            ))
        })
    }
}
