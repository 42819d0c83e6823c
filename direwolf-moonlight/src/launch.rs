//! `/launch`, `/resume` and `/cancel`: parameters in, XML out (`docs/protocol/moonlight-http.md`
//! § Launch, § Resume, § Cancel, § Stream keys). Every outcome is an XML status; the caller replies
//! with HTTP 200.

use std::net::IpAddr;
use std::str::FromStr;

use direwolf_core::model::STEREO_SURROUND_AUDIO_INFO;
use direwolf_core::{
    AesKey, App, AppId, Fingerprint, LaunchError, LaunchRequest, ResumeRequest, RiKeyId, StreamKeys, UserName,
};

use crate::query::Query;
use crate::xml::{Node, XmlReply};

/// Who asks, over which connection: what a `/launch` or `/resume` carries besides its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The user of the client's pairing.
    pub user: UserName,
    /// The client certificate's fingerprint.
    pub pairing: Fingerprint,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The server address the client used.
    pub server_ip: IpAddr,
}

/// Which verb a reply is for; decides the child element of failure replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `/launch`: failures carry `<gamesession>0</gamesession>`.
    Launch,
    /// `/resume`: failures carry `<resume>0</resume>`.
    Resume,
    /// `/cancel`: failures carry `<cancel>0</cancel>`.
    Cancel,
}

impl Verb {
    fn failure(self, status: u32, message: impl Into<String>) -> XmlReply {
        let reply = XmlReply::error(status, message);
        match self {
            Verb::Launch => reply.leaf("gamesession", 0),
            Verb::Resume => reply.leaf("resume", 0),
            Verb::Cancel => reply.leaf("cancel", 0),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Launch => "launch",
            Verb::Resume => "resume",
            Verb::Cancel => "cancel",
        }
    }
}

fn required<'q>(query: &'q Query, verb: Verb, name: &str) -> Result<&'q str, XmlReply> {
    query.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        verb.failure(
            400,
            format!("Missing a required {} parameter ({name})", verb.name()),
        )
    })
}

fn parsed<T: FromStr>(query: &Query, verb: Verb, name: &str) -> Result<Option<T>, XmlReply>
where
    T::Err: std::fmt::Display,
{
    match query.get(name) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e| verb.failure(400, format!("Invalid {} parameter {name}: {e}", verb.name()))),
    }
}

fn keys(query: &Query, verb: Verb) -> Result<StreamKeys, XmlReply> {
    let invalid = |name: &str, e: direwolf_core::Error| {
        verb.failure(400, format!("Invalid {} parameter {name}: {e}", verb.name()))
    };
    let aes_key: AesKey = required(query, verb, "rikey")?
        .parse()
        .map_err(|e| invalid("rikey", e))?;
    let aes_iv: RiKeyId = required(query, verb, "rikeyid")?
        .parse()
        .map_err(|e| invalid("rikeyid", e))?;
    Ok(StreamKeys { aes_key, aes_iv })
}

/// Parses `/launch` from `requester`.
///
/// # Errors
/// The XML reply for a missing or malformed parameter (status 400, `<gamesession>0</gamesession>`).
pub fn parse_launch(query: &Query, requester: &Requester) -> Result<LaunchRequest, XmlReply> {
    let verb = Verb::Launch;
    let app: AppId = required(query, verb, "appid")?
        .parse()
        .map_err(|e| verb.failure(400, format!("Invalid launch parameter appid: {e}")))?;
    let keys = keys(query, verb)?;
    Ok(LaunchRequest {
        user: requester.user.clone(),
        pairing: requester.pairing.clone(),
        app,
        client_ip: requester.client_ip,
        server_ip: requester.server_ip,
        mode: parsed(query, verb, "mode")?.unwrap_or_default(),
        surround_audio_info: parsed(query, verb, "surroundAudioInfo")?.unwrap_or(STEREO_SURROUND_AUDIO_INFO),
        keys,
        hdr: query.get("hdrMode") == Some("1"),
        host_audio: query.get("localAudioPlayMode") == Some("1"),
        gamepads: parsed(query, verb, "remoteControllersBitmap")?.unwrap_or(0),
    })
}

/// Parses `/resume` from `requester`: `appid` and `mode` may be absent and are ignored
/// (§ Resume).
///
/// # Errors
/// The XML reply for a missing or malformed parameter (status 400, `<resume>0</resume>`).
pub fn parse_resume(query: &Query, requester: &Requester) -> Result<ResumeRequest, XmlReply> {
    let verb = Verb::Resume;
    let keys = keys(query, verb)?;
    Ok(ResumeRequest {
        user: requester.user.clone(),
        pairing: requester.pairing.clone(),
        client_ip: requester.client_ip,
        server_ip: requester.server_ip,
        keys,
        surround_audio_info: parsed(query, verb, "surroundAudioInfo")?,
    })
}

/// `/launch` success: `sessionUrl0` and `<gamesession>1</gamesession>`.
pub fn launch_ok(session_url: &str) -> XmlReply {
    XmlReply::ok()
        .leaf("sessionUrl0", session_url)
        .leaf("gamesession", 1)
}

/// `/resume` success: `sessionUrl0` and `<resume>1</resume>` (never `gamesession` 0,
/// § Resume).
pub fn resume_ok(session_url: &str) -> XmlReply {
    XmlReply::ok().leaf("sessionUrl0", session_url).leaf("resume", 1)
}

/// `/cancel` success.
pub fn cancel_ok() -> XmlReply {
    XmlReply::ok().leaf("cancel", 1)
}

/// Message of a launch that did not become ready in time.
pub const TIMEOUT_MESSAGE: &str = "Session could not be started in time";

/// The XML reply for a launch of an app the user may not use (the client shows the message).
pub fn not_allowed(app: AppId) -> XmlReply {
    Verb::Launch.failure(
        403,
        format!("Failed to start the specified application: app {app} is not available to you"),
    )
}

/// The XML reply for a failed launch, resume or cancel (§ Launch failures).
pub fn failure(verb: Verb, error: &LaunchError) -> XmlReply {
    match error {
        LaunchError::UnknownApp(app) => verb.failure(
            404,
            format!("Failed to start the specified application: there is no app {app}"),
        ),
        LaunchError::NotRunning => verb.failure(503, "No running app to resume"),
        LaunchError::Unavailable { message } => verb.failure(503, message.clone()),
        LaunchError::Timeout => verb.failure(503, TIMEOUT_MESSAGE),
        LaunchError::Invalid(message) => verb.failure(400, message.clone()),
        _ => verb.failure(
            500,
            format!(
                "Internal server error while trying to {}; see the server log",
                verb.name()
            ),
        ),
    }
}

/// `/applist` (§ App list): one `App` per app with `IsHdrSupported`, `AppTitle`, `ID`.
pub fn applist(apps: &[App]) -> XmlReply {
    apps.iter().fold(XmlReply::ok(), |reply, app| {
        reply.child(Node::Parent(
            "App",
            vec![
                Node::leaf("IsHdrSupported", u8::from(app.hdr_supported)),
                Node::leaf("AppTitle", &app.title),
                Node::leaf("ID", app.id),
            ],
        ))
    })
}

#[cfg(test)]
mod tests {
    use direwolf_core::VideoMode;

    use super::*;

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

    fn from() -> Requester {
        Requester {
            user: UserName::default_user(),
            pairing: Fingerprint::of_der(b"client"),
            client_ip: "192.0.2.7".parse().unwrap(),
            server_ip: "192.0.2.1".parse().unwrap(),
        }
    }

    fn q(s: &str) -> Query {
        Query::parse(Some(s)).unwrap()
    }

    #[test]
    fn golden_bodies() {
        assert_eq!(
            launch_ok("rtsp://192.168.1.1:3021").render(),
            format!(
                "{DECL}<root status_code=\"200\"><sessionUrl0>rtsp://192.168.1.1:3021</sessionUrl0><gamesession>1</gamesession></root>"
            )
        );
        assert_eq!(
            launch_ok("rtsp://203.0.113.10:48010").render(),
            format!(
                "{DECL}<root status_code=\"200\"><sessionUrl0>rtsp://203.0.113.10:48010</sessionUrl0><gamesession>1</gamesession></root>"
            )
        );
        assert_eq!(
            resume_ok("rtsp://203.0.113.10:48010").render(),
            format!(
                "{DECL}<root status_code=\"200\"><sessionUrl0>rtsp://203.0.113.10:48010</sessionUrl0><resume>1</resume></root>"
            )
        );
        assert_eq!(
            cancel_ok().render(),
            format!("{DECL}<root status_code=\"200\"><cancel>1</cancel></root>")
        );
        assert_eq!(
            failure(Verb::Launch, &LaunchError::Timeout).render(),
            format!(
                "{DECL}<root status_code=\"503\" status_message=\"Session could not be started in time\"><gamesession>0</gamesession></root>"
            )
        );
        let apps = [
            App::new(AppId::new(1).unwrap(), "Firefox").unwrap(),
            App::new(AppId::new(2).unwrap(), "Test ball").unwrap(),
        ];
        assert_eq!(
            applist(&apps).render(),
            format!(
                "{DECL}<root status_code=\"200\"><App><IsHdrSupported>0</IsHdrSupported><AppTitle>Firefox</AppTitle><ID>1</ID></App><App><IsHdrSupported>0</IsHdrSupported><AppTitle>Test ball</AppTitle><ID>2</ID></App></root>"
            )
        );
        assert_eq!(
            applist(&[]).render(),
            format!("{DECL}<root status_code=\"200\"/>")
        );
    }

    #[test]
    fn launch_parameters() {
        // moonlight-embedded 2.7.1 (observed), docs/protocol/moonlight-http.md § Launch.
        let p = parse_launch(&q("uniqueid=0123456789ABCDEF&uuid=x&appid=1&mode=1280x720x60&additionalStates=1&sops=1\
            &rikey=773448f67992470c5c62848d361e1025&rikeyid=-1264532526&localAudioPlayMode=0&surroundAudioInfo=196610\
            &remoteControllersBitmap=0&gcmap=0&corever=1"), &from()).unwrap();
        assert_eq!(p.app.get(), 1);
        assert_eq!(
            (&p.user, &p.pairing, p.client_ip, p.server_ip),
            (&from().user, &from().pairing, from().client_ip, from().server_ip),
            "the request is the requester's"
        );
        assert_eq!(
            p.mode,
            VideoMode {
                width: 1280,
                height: 720,
                fps: 60
            }
        );
        assert_eq!(p.keys.aes_iv.signed(), -1264532526);
        assert_eq!(p.keys.aes_key.to_hex(), "773448F67992470C5C62848D361E1025");
        assert_eq!(p.surround_audio_info, 196_610);
        assert!(!p.hdr && !p.host_audio);
        let p = parse_launch(&q("appid=2&rikey=773448F67992470C5C62848D361E1025&rikeyid=1311662065&hdrMode=1&localAudioPlayMode=1&remoteControllersBitmap=5"), &from()).unwrap();
        assert_eq!(p.mode, VideoMode::DEFAULT);
        assert!(p.hdr && p.host_audio);
        assert_eq!(p.gamepads, 5);
        assert_eq!(p.surround_audio_info, STEREO_SURROUND_AUDIO_INFO);
    }

    #[test]
    fn bad_launch_parameters() {
        let message = |s: &str| {
            let reply = parse_launch(&q(s), &from()).unwrap_err();
            assert_eq!(reply.status_code(), 400);
            let body = reply.render();
            assert!(body.ends_with("<gamesession>0</gamesession></root>"), "{body}");
            body
        };
        let key = "rikey=773448F67992470C5C62848D361E1025&rikeyid=1";
        assert!(message(key).contains("Missing a required launch parameter (appid)"));
        assert!(message(&format!("appid=0&{key}")).contains("Invalid launch parameter appid"));
        assert!(message(&format!("appid=x&{key}")).contains("Invalid launch parameter appid"));
        assert!(message("appid=1&rikeyid=1").contains("(rikey)"));
        assert!(message("appid=1&rikey=773448F67992470C5C62848D361E1025").contains("(rikeyid)"));
        assert!(message("appid=1&rikey=77&rikeyid=1").contains("Invalid launch parameter rikey"));
        assert!(
            message("appid=1&rikey=773448F67992470C5C62848D361E1025&rikeyid=9999999999").contains("rikeyid")
        );
        assert!(message(&format!("appid=1&{key}&mode=1920x1080")).contains("Invalid launch parameter mode"));
        assert!(message(&format!("appid=1&{key}&surroundAudioInfo=-1")).contains("surroundAudioInfo"));
        assert!(
            message(&format!("appid=1&{key}&remoteControllersBitmap=x")).contains("remoteControllersBitmap")
        );
    }

    #[test]
    fn resume_parameters_and_failures() {
        // python sends only rikey, rikeyid, surroundAudioInfo.
        let p = parse_resume(
            &q("rikey=773448F67992470C5C62848D361E1025&rikeyid=5&surroundAudioInfo=4128774&corever=1"),
            &from(),
        )
        .unwrap();
        assert_eq!(p.surround_audio_info, Some(4_128_774));
        let err = parse_resume(&q("appid=1"), &from()).unwrap_err().render();
        assert!(err.contains("status_code=\"400\" status_message=\"Missing a required resume parameter (rikey)\"><resume>0</resume>"));
        let err = failure(Verb::Resume, &LaunchError::NotRunning).render();
        assert!(err.ends_with(
            "<root status_code=\"503\" status_message=\"No running app to resume\"><resume>0</resume></root>"
        ));
        let err = failure(Verb::Launch, &LaunchError::UnknownApp(AppId::new(7).unwrap())).render();
        assert!(err.contains("status_code=\"404\""), "{err}");
        let err = failure(
            Verb::Launch,
            &LaunchError::Unavailable {
                message: "No host & no <luck>".into(),
            },
        )
        .render();
        assert!(err.contains("status_code=\"503\" status_message=\"No host &amp; no &lt;luck&gt;\"><gamesession>0</gamesession>"));
        let err = failure(
            Verb::Cancel,
            &LaunchError::Backend(direwolf_core::Error::unavailable("x")),
        )
        .render();
        assert!(err.contains("status_code=\"500\"") && err.ends_with("<cancel>0</cancel></root>"));
    }
}
