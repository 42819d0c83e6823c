//! The utility endpoints (V5+, `docs/protocol/wolf-api.md` § Utilities): icons, and Docker image
//! inspection and pulls.

use serde::Serialize;

use super::{Emitted, PullEndOut, Reply, State, error, ok_json, parse, to_json};
use crate::events::names;
use crate::fake::http::HttpRequest;

#[derive(serde::Deserialize)]
struct ImageBody {
    image_name: String,
}

#[derive(Serialize)]
struct PullStartOut<'a> {
    image_name: &'a str,
}

/// `utils/get-icon` (endpoint 25): the PNG stored for the query's one `icon_path`.
pub(super) fn get_icon(st: &State, req: &HttpRequest) -> Reply {
    match query_value(req, "icon_path") {
        Some(p) => match st.icons.get(&p) {
            Some(png) => Reply::Bytes {
                status: 200,
                content_type: Some("image/png"),
                body: png.clone(),
            },
            None => error(404, "Icon not found"),
        },
        None => error(
            400,
            "Invalid request format, expects 'icon_path' as a query parameter",
        ),
    }
}

/// `docker/images/inspect` (endpoint 26): the Docker body stored for the query's one `image_name`.
pub(super) fn inspect_image(st: &State, req: &HttpRequest) -> Reply {
    match query_value(req, "image_name") {
        Some(name) => match st.images.get(&name) {
            Some(v) => ok_json(v),
            None => error(404, "Image not found"),
        },
        None => error(
            400,
            "Invalid request format, expects 'image_name' as a query parameter",
        ),
    }
}

/// `docker/images/pull` (endpoint 27): broadcasts the pull's start, then answers with the image's
/// [`PullPlan`](super::PullPlan) for the connection handler to stream; an image without a plan
/// fails at once, broadcasting the end.
pub(super) fn pull_image(st: &State, body: &[u8], emit: &mut Vec<Emitted>) -> Reply {
    let b = match parse::<ImageBody>(body, &["image_name"]) {
        Ok(b) => b,
        // An unparsable pull request gets no answer at all (docs/protocol/wolf-api.md
        // § Utilities); not a crash.
        Err(_) => return Reply::Close,
    };
    emit.push((
        names::DOCKER_PULL_START,
        to_json(&PullStartOut {
            image_name: &b.image_name,
        }),
    ));
    match st.pulls.get(&b.image_name) {
        Some(plan) => Reply::Pull(plan.clone(), b.image_name),
        None => {
            emit.push((
                names::DOCKER_PULL_END,
                to_json(&PullEndOut {
                    image_name: &b.image_name,
                    success: false,
                }),
            ));
            error(500, "Failed to pull image")
        }
    }
}

fn query_value(req: &HttpRequest, key: &str) -> Option<String> {
    // Wolf: exactly one `key=value` pair, split on `=`, no percent-decoding.
    let q = req.query.as_deref()?;
    let parts: Vec<&str> = q.split('=').collect();
    match parts.as_slice() {
        [k, v] if *k == key && !v.is_empty() => Some((*v).to_owned()),
        _ => None,
    }
}
