//! Types shared by several kinds: typed references, base64 image bytes, the status every kind
//! reports problems in.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression of a DNS-1123 label, the shape of `User` names (they name pods and
/// claims, so they must be labels, not subdomains).
pub const DNS1123_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The regular expression of a `Pairing` name: the lower-case hex SHA-256 of the client
/// certificate's DER (`docs/protocol/kubernetes.md` § Names, labels and annotations).
pub const FINGERPRINT_PATTERN: &str = "^[0-9a-f]{64}$";

/// A reference to a `User` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UserReference {
    /// The `User`'s name (a DNS-1123 label).
    #[schemars(length(min = 1, max = 63), regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
}

/// A reference to an `App` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppReference {
    /// The `App` object's name (not its Moonlight id).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The App's Moonlight id (`spec.id`) when the reference was made; lets readers report the
    /// running app even after the App object changed or went away.
    #[serde(default, rename = "appID", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub app_id: Option<i32>,
}

/// A reference to a `Pairing` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PairingReference {
    /// The `Pairing`'s name: the client certificate's fingerprint.
    #[schemars(length(min = 64, max = 64), regex(pattern = "^[0-9a-f]{64}$"))]
    pub name: String,
}

/// A reference to a Gateway API `Gateway` (reserved for a Gateway data path; unused by the
/// load-balancer and relay data paths).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct GatewayReference {
    /// The Gateway's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; the Session's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Bytes carried base64-encoded in YAML/JSON (a string in the schema), e.g. cover art.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // YAML block scalars may carry line breaks; the API server's byte format ignores none,
        // but people paste wrapped base64, so whitespace is dropped before decoding.
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        BASE64
            .decode(compact)
            .map(Base64Bytes)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Base64Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Base64Bytes".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// A string without `format: byte` (found on the real control plane, issue 11): the API
    /// server's CEL decodes `byte` strings as URL-safe base64, so any rule touching an object
    /// with standard base64 art (`+`, `/`) failed to evaluate instead of checking its condition.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// The status of the kinds that only report problems (`App`, `User`, `Pairing`): standard
/// conditions plus the generation they describe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportStatus {
    /// The `metadata.generation` the conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions, one per `type` (see [`crate::crd::conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Finds the condition of `type_` in a list.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
