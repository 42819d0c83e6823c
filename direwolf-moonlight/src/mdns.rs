//! mDNS advertisement of the server as `_nvstream._tcp.local.` with the HTTP port, as Wolf does
//! (`docs/protocol/moonlight-http.md` § Ports and discovery). Failing to advertise is never fatal:
//! clients can add the host by address.

use std::collections::HashMap;

use mdns_sd::{ServiceDaemon, ServiceInfo};

/// The service type GameStream clients browse for.
pub const SERVICE_TYPE: &str = "_nvstream._tcp.local.";

/// The mDNS host label for a display name: lower-case letters, digits and `-` only.
pub fn host_label(hostname: &str) -> String {
    let label: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "direwolf".to_owned()
    } else {
        label.to_owned()
    }
}

/// The service record: instance `hostname`, host `<label>.local.`, the HTTP port, addresses
/// filled in automatically from the machine's interfaces.
///
/// # Errors
/// When mdns-sd refuses the names.
pub fn service_info(hostname: &str, http_port: u16) -> Result<ServiceInfo, mdns_sd::Error> {
    let host = format!("{}.local.", host_label(hostname));
    Ok(ServiceInfo::new(
        SERVICE_TYPE,
        hostname,
        &host,
        (),
        http_port,
        HashMap::<String, String>::new(),
    )?
    .enable_addr_auto())
}

/// A running advertisement; [`MdnsAdvertiser::stop`] withdraws it.
pub struct MdnsAdvertiser {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for MdnsAdvertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsAdvertiser")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl MdnsAdvertiser {
    /// Starts an mDNS responder and registers the service.
    ///
    /// # Errors
    /// When the responder cannot start (no multicast-capable interface, socket errors).
    pub fn start(hostname: &str, http_port: u16) -> Result<Self, mdns_sd::Error> {
        let info = service_info(hostname, http_port)?;
        let fullname = info.get_fullname().to_owned();
        let daemon = ServiceDaemon::new()?;
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(e);
        }
        Ok(MdnsAdvertiser { daemon, fullname })
    }

    /// Withdraws the service and stops the responder.
    pub fn stop(self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        assert_eq!(host_label("Direwolf"), "direwolf");
        assert_eq!(host_label("My PC (1)"), "my-pc--1");
        assert_eq!(host_label("***"), "direwolf");
        let info = service_info("Direwolf", 47989).unwrap();
        assert_eq!(info.get_type(), SERVICE_TYPE);
        assert_eq!(info.get_fullname(), "Direwolf._nvstream._tcp.local.");
        assert_eq!(info.get_hostname(), "direwolf.local.");
        assert_eq!(info.get_port(), 47989);
    }
}
