//! Wolf's `App` (`docs/protocol/wolf-api.md` § Types) to and from direwolf's [`App`].
//!
//! | Wolf field | direwolf |
//! |---|---|
//! | `id` | **kept** as [`App::id`]; refused unless it is an integer from 1 to 2147483647, the ids Moonlight clients accept (Wolf itself takes any string) |
//! | `title` | **kept** as [`App::title`]; refused when blank or longer than 255 bytes |
//! | `support_hdr` | **kept** as [`App::hdr_supported`] |
//! | `icon_png_path` | ignored on input (a path on Wolf's machine or a URL Wolf would fetch; direwolf keeps cover art as image bytes, set through its own admin interfaces); never written |
//! | `h264_gst_pipeline`, `hevc_gst_pipeline`, `av1_gst_pipeline`, `opus_gst_pipeline`, `render_node`, `start_virtual_compositor`, `start_audio_server` | ignored on input: encoding and compositing happen on the Wolf that streams the session, with that Wolf's own settings; written as empty strings and `true` |
//! | `runner` | ignored on input when it is `process` or `docker` (what runs is the streaming Wolf's app, chosen by the app's `wolf_app_id` in the configuration, else that Wolf's first app); **refused** when it is `child_session` (joining another session's display, which direwolf cannot do); written as a `process` runner with an empty command |
//!
//! Direwolf keeps one app per id: adding an id that exists is refused (Wolf would hold both).

use direwolf_wolf_client::types::{App as WolfApp, Runner};

use crate::error::Error;
use crate::ids::AppId;
use crate::model::App;

/// Wolf's shape of a direwolf app, for `GET /api/v1/apps`. The streaming fields direwolf does
/// not hold are written empty (pipelines, render node, runner command) or `true` (the virtual
/// compositor and audio server every Wolf-streamed app gets).
pub fn to_wolf(app: &App) -> WolfApp {
    WolfApp {
        title: app.title.clone(),
        id: app.id.get().into(),
        support_hdr: app.hdr_supported,
        icon_png_path: None,
        h264_gst_pipeline: String::new(),
        hevc_gst_pipeline: String::new(),
        av1_gst_pipeline: String::new(),
        render_node: String::new(),
        opus_gst_pipeline: String::new(),
        start_virtual_compositor: true,
        start_audio_server: true,
        runner: Runner::Process {
            run_cmd: String::new(),
        },
    }
}

/// The direwolf app a Wolf app describes: its id, title and HDR flag (see the module table for
/// what is ignored).
///
/// # Errors
/// [`Error::Invalid`] for an id Moonlight clients cannot use, a blank or over-long title, or a
/// `child_session` runner.
pub fn from_wolf(app: &WolfApp) -> Result<App, Error> {
    let id: AppId = app.id.as_str().parse().map_err(|_| {
        Error::invalid(
            "app id",
            format!(
                "{:?} is not an integer from 1 to {} (Moonlight clients read app ids as 32-bit integers)",
                app.id.as_str(),
                AppId::MAX
            ),
        )
    })?;
    if let Runner::ChildSession { .. } = app.runner {
        return Err(Error::invalid(
            "app runner",
            "a child_session runner (joining another session's display) is not supported by direwolf",
        ));
    }
    Ok(App::new(id, app.title.clone())?.with_hdr(app.support_hdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wolf_app(id: &str, title: &str) -> WolfApp {
        let mut app = to_wolf(&App::new(AppId::new(1).unwrap(), "x").unwrap());
        app.id = id.into();
        app.title = title.into();
        app
    }

    #[test]
    fn kept_fields_round_trip_and_the_rest_is_ignored() {
        let app = App::new(AppId::new(304_556_286).unwrap(), "Firefox")
            .unwrap()
            .with_hdr(true);
        let mut wolf = to_wolf(&app);
        assert_eq!(wolf.id.as_str(), "304556286");
        wolf.icon_png_path = Some("firefox.png".into());
        wolf.h264_gst_pipeline = "nvh264enc".into();
        wolf.runner = Runner::Process {
            run_cmd: "firefox".into(),
        };
        assert_eq!(from_wolf(&wolf).unwrap(), app);
    }

    #[test]
    fn what_direwolf_cannot_honour_is_refused() {
        for id in ["0", "-1", "abc", "", "2147483648", "1.5"] {
            assert!(from_wolf(&wolf_app(id, "A")).is_err(), "id {id:?} accepted");
        }
        assert!(from_wolf(&wolf_app("7", " ")).is_err());
        assert!(from_wolf(&wolf_app("7", &"t".repeat(256))).is_err());
        let mut child = wolf_app("7", "Co-op");
        child.runner = Runner::ChildSession {
            parent_session_id: "1".into(),
        };
        let error = from_wolf(&child).unwrap_err();
        assert!(error.to_string().contains("child_session"), "{error}");
        assert!(from_wolf(&wolf_app("2147483647", "Max")).is_ok());
    }

    #[test]
    fn written_like_wolf() {
        let app = App::new(AppId::new(3).unwrap(), "Desktop").unwrap();
        assert_eq!(
            serde_json::to_string(&to_wolf(&app)).unwrap(),
            r#"{"title":"Desktop","id":"3","support_hdr":false,"h264_gst_pipeline":"","hevc_gst_pipeline":"","av1_gst_pipeline":"","render_node":"","opus_gst_pipeline":"","start_virtual_compositor":true,"start_audio_server":true,"runner":{"type":"process","run_cmd":""}}"#
        );
    }
}
