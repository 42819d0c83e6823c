//! `App`: something a user can launch (`docs/protocol/kubernetes.md` § App).
//!
//! Differences from the v1alpha1 schema of the proof of concept: `id` is limited to
//! `1..=2147483647` (clients parse it as a signed 32-bit integer and 0 means "no game"), art is
//! optional and may be WebP (`appAssetWebP`) or PNG (`appAssetPNG`) but not both,
//! `isHDRSupported` defaults to false, `wolfConfig` and its `runtimeVariables` are always
//! defaulted, and the kind has a `status` for reporting problems such as duplicate ids.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodTemplateSpec};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Base64Bytes, ReportStatus};
use super::warm::WarmPool;

/// The status of an `App`: conditions such as `IDUnique` (false when another App in the
/// namespace has the same `spec.id`).
pub type AppStatus = ReportStatus;

/// Something a user can launch: its Moonlight id, title and art, and the pod that runs it.
// `printcolumn(type_ = ..)` repeats by design; clippy reads it as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "direwolf.games-on-whales.github.io",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    shortname = "dwapp",
    category = "direwolf",
    doc = "An application a user can launch through Moonlight: numeric id, title, art and the pod that runs it.",
    printcolumn(name = "ID", type_ = "integer", json_path = ".spec.id"),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(name = "HDR", type_ = "boolean", json_path = ".spec.isHDRSupported"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.appAssetWebP) && has(self.appAssetPNG))")
    .message("set at most one of appAssetWebP and appAssetPNG")
    .field_path(".appAssetPNG"))]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Name shown in the client's app grid.
    #[schemars(length(min = 1, max = 63))]
    pub title: String,

    /// Moonlight numeric app id (`ID` in the app list, `appid` of launch and asset requests).
    /// Must be unique in the namespace: Apps sharing an id are left out of the app list.
    #[schemars(range(min = 1, max = 2147483647))]
    pub id: i32,

    /// Whether the client may offer HDR for this app.
    #[serde(default, rename = "isHDRSupported")]
    pub is_hdr_supported: bool,

    /// Cover art, WebP encoded (served to clients as PNG).
    #[serde(default, rename = "appAssetWebP", skip_serializing_if = "Option::is_none")]
    pub app_asset_webp: Option<Base64Bytes>,

    /// Cover art, PNG encoded (served as is).
    #[serde(default, rename = "appAssetPNG", skip_serializing_if = "Option::is_none")]
    pub app_asset_png: Option<Base64Bytes>,

    /// The game container(s) and pod-level settings. If absent, the stream pod holds only the
    /// injected sidecars (useful with Wolf's built-in test sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,

    /// If present, a persistent home for each user of this app is claimed; `spec: {}` means all
    /// defaults. If absent, the home is ephemeral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<VolumeClaimTemplate>,

    /// Wolf-side settings for this app.
    #[serde(default)]
    pub wolf_config: WolfConfig,
    /// The GPU the stream's `wolf` container asks for, instead of the installation's (`direwolf
    /// operator --gpu-resource`); `count: 0` asks for none (an app rendered in software).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<AppGpu>,
    /// Stream pods kept ready for this App's launches (Kubernetes mode, relay exposure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<WarmPool>,
}

/// An extended resource and how many of it (`nvidia.com/gpu`, `amd.com/gpu`,
/// `gpu.intel.com/i915`). Where the device plugin shares a GPU (NVIDIA time-slicing, Intel's
/// `sharedDevNum`), one unit is a share, and several Sessions run on one GPU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct AppGpu {
    /// The resource name.
    #[schemars(length(min = 1, max = 253))]
    pub resource: String,
    /// How many; 0 for none.
    // i32: the API server warns of a `uint32` format on every apply.
    #[schemars(range(min = 0, max = 64))]
    pub count: i32,
}

/// A claim template: labels/annotations and a PersistentVolumeClaimSpec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct VolumeClaimTemplate {
    /// Labels and annotations added to the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ClaimTemplateMetadata>,
    /// The claim's spec; unset access modes default to `ReadWriteOnce` and an unset storage
    /// request to `5Gi`.
    #[serde(default)]
    pub spec: PersistentVolumeClaimSpec,
}

/// The metadata a claim template may set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClaimTemplateMetadata {
    /// Labels added to the claim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the claim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Wolf-side settings of an app. Unknown fields are preserved (Wolf grows settings faster than
/// this schema).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = preserve_unknown_fields)]
pub struct WolfConfig {
    /// Settings passed to Wolf as environment variables.
    #[serde(default)]
    pub runtime_variables: RuntimeVariables,
    /// Wolf starts its virtual audio sink for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_audio_server: Option<bool>,
    /// Wolf starts its Wayland compositor for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_virtual_compositor: Option<bool>,
    /// Wolf-side app title override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Wolf-side app id override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// GStreamer audio pipeline fragments replacing Wolf's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Pipeline>,
    /// GStreamer video pipeline fragments replacing Wolf's defaults (e.g. a test source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Pipeline>,
    /// Wolf runner for apps that run inside Wolf rather than as a pod container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<Runner>,
    /// Fields this schema does not know, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Marks a schema `x-kubernetes-preserve-unknown-fields` (structural schemas may not use
/// `additionalProperties` next to `properties`).
fn preserve_unknown_fields(schema: &mut schemars::Schema) {
    schema.remove("additionalProperties");
    schema.insert("x-kubernetes-preserve-unknown-fields".to_owned(), true.into());
}

/// Wolf's runtime variables for an app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeVariables {
    /// DRM render node Wolf encodes and composites on (`WOLF_RENDER_NODE`).
    #[serde(default = "default_render_node")]
    #[schemars(length(min = 1))]
    pub render_node: String,
    /// `TZ` for Wolf, the game and PulseAudio.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1))]
    pub time_zone: String,
    /// Wolf's log level (`WOLF_LOG_LEVEL`).
    #[serde(default)]
    pub log_level: LogLevel,
}

impl Default for RuntimeVariables {
    fn default() -> Self {
        RuntimeVariables {
            render_node: default_render_node(),
            time_zone: default_time_zone(),
            log_level: LogLevel::default(),
        }
    }
}

fn default_render_node() -> String {
    "/dev/dri/renderD128".to_owned()
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// Wolf's log levels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational messages.
    Info,
    /// Debug output (the reference default).
    #[default]
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The value of `WOLF_LOG_LEVEL`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warning => "WARNING",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }
}

/// A GStreamer source/sink pair.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Pipeline {
    /// The source fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sink fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// A Wolf runner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runner {
    /// The runner type, e.g. `process`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The command a `process` runner runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_command: Option<String>,
}

impl AppSpec {
    /// The art as stored, with its media type: PNG if given as PNG, else WebP.
    pub fn asset(&self) -> Option<(&'static str, &[u8])> {
        match (&self.app_asset_png, &self.app_asset_webp) {
            (Some(png), _) => Some(("image/png", &png.0)),
            (None, Some(webp)) => Some(("image/webp", &webp.0)),
            (None, None) => None,
        }
    }
}
