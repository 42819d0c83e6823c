//! `Pairing`: a trusted client certificate and the user it acts for (`docs/protocol/kubernetes.md`
//! § Pairing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{ReportStatus, UserReference};

/// The status of a `Pairing`: conditions such as `UserFound` (false when the referenced User does
/// not exist, so the client is refused).
pub type PairingStatus = ReportStatus;

/// A trusted Moonlight client certificate. The object's name is the certificate's fingerprint
/// (lower-case hex SHA-256 of its DER, 64 characters); deleting the object revokes the client.
// `printcolumn(type_ = ..)` repeats by design; clippy reads it as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "direwolf.games-on-whales.github.io",
    version = "v1alpha1",
    kind = "Pairing",
    namespaced,
    status = "PairingStatus",
    shortname = "dwpair",
    category = "direwolf",
    doc = "A paired Moonlight client: its certificate (named by fingerprint) and the User it acts for.",
    validation = Rule::new("self.metadata.name.matches('^[0-9a-f]{64}$')")
        .message("metadata.name of a Pairing must be the lower-case hex SHA-256 fingerprint of the client certificate (64 characters)"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userReference.name"),
    printcolumn(name = "Device", type_ = "string", json_path = ".spec.deviceName", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PairingSpec {
    /// The client certificate, PEM, as received in pairing phase 1.
    #[serde(rename = "clientCertPEM")]
    #[schemars(length(min = 1, max = 65536))]
    #[x_kube(validation = Rule::new("self.startsWith('-----BEGIN CERTIFICATE-----')")
        .message("clientCertPEM must be a PEM certificate (-----BEGIN CERTIFICATE-----)"))]
    pub client_cert_pem: String,

    /// The User this client acts for.
    pub user_reference: UserReference,

    /// The `devicename` the client sent when pairing (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub device_name: Option<String>,

    /// When the pairing completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_at: Option<Time>,
}
