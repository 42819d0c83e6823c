//! The [`Launcher`] suite.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::future::join_all;

use super::{name, promptly, run_tag};
use crate::ids::{AesKey, AppId, Fingerprint, RiKeyId, UserName};
use crate::launcher::{LaunchError, LaunchOutcome, Launcher};
use crate::model::{LaunchRequest, ResumeRequest, StreamKeys, VideoMode};

/// How long the suite waits after an operation before checking that nothing changed behind its
/// back (a launch whose caller stopped waiting, finishing or rolling back late).
const SETTLE: Duration = Duration::from_millis(500);

/// What the launcher suite needs to know about the backend under test.
#[derive(Debug, Clone)]
pub struct LauncherFixture {
    /// Two apps the launcher can start, or `None` for a launcher that cannot stream (every
    /// launch refused as [`LaunchError::Unavailable`]).
    pub apps: Option<[AppId; 2]>,
    /// An app id the launcher's catalog does not hold.
    pub missing_app: AppId,
    /// How many sessions of different users the backend can run at once; the concurrency check
    /// launches that many together (1 leaves it out).
    pub sessions_at_once: usize,
    /// The address the launch requests say the client reached the server on.
    pub server_ip: IpAddr,
}

impl LauncherFixture {
    /// A launcher that streams `apps` and knows nothing of `missing_app`, running at least two
    /// sessions at once, on loopback.
    pub fn streaming(apps: [AppId; 2], missing_app: AppId) -> Self {
        LauncherFixture {
            apps: Some(apps),
            missing_app,
            sessions_at_once: 2,
            server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// A launcher that cannot stream.
    pub fn without_streaming() -> Self {
        LauncherFixture {
            apps: None,
            missing_app: AppId::new(2_000_000_001).expect("a valid app id"),
            sessions_at_once: 1,
            server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// Checks [`Launcher`]: launch and `current_app`, one session per user, resume, cancel at once,
/// resume and cancel without a session, unknown apps, concurrent users, and launches whose
/// caller stopped waiting. A launcher without streaming must refuse every launch.
///
/// The users are fresh (`c<tag>-…`); a backend that needs them to exist must accept any user
/// (as the Moonlight server only launches for paired users, the launcher does not check).
pub async fn launcher(launcher: &dyn Launcher, fixture: &LauncherFixture) {
    let tag = run_tag();
    let Some([app, other]) = fixture.apps else {
        refuses_every_launch(launcher, fixture, &tag).await;
        return;
    };
    let user = name(format!("c{tag}-a"));
    launch_replace_resume_cancel(launcher, fixture, &user, [app, other]).await;
    unknown_apps_are_refused(launcher, fixture, &user).await;
    users_run_at_once(launcher, fixture, &tag, app).await;
    dropped_launches_do_not_undo_later_ones(launcher, fixture, &user, [app, other]).await;
}

fn request(user: &UserName, app: AppId, fixture: &LauncherFixture) -> LaunchRequest {
    LaunchRequest {
        user: user.clone(),
        pairing: Fingerprint::of_der(user.as_str().as_bytes()),
        app,
        client_ip: fixture.server_ip,
        server_ip: fixture.server_ip,
        mode: VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: StreamKeys {
            aes_key: AesKey::new([app.get() as u8; 16]),
            aes_iv: RiKeyId::from_bits(app.get()),
        },
        hdr: false,
        host_audio: false,
        gamepads: 1,
    }
}

fn resume_request(user: &UserName, fixture: &LauncherFixture) -> ResumeRequest {
    ResumeRequest {
        user: user.clone(),
        pairing: Fingerprint::of_der(user.as_str().as_bytes()),
        client_ip: fixture.server_ip,
        server_ip: fixture.server_ip,
        keys: StreamKeys {
            aes_key: AesKey::new([0xA5; 16]),
            aes_iv: RiKeyId::from_bits(7),
        },
        surround_audio_info: None,
    }
}

async fn launched(launcher: &dyn Launcher, request: LaunchRequest, what: &str) -> LaunchOutcome {
    match promptly(what, launcher.launch(request)).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{what} must succeed, got {e} ({e:?})"),
    }
}

fn assert_url(outcome: &LaunchOutcome, what: &str) {
    assert!(
        outcome.session_url.starts_with("rtsp://"),
        "{what} must answer an rtsp:// sessionUrl0, got {:?}",
        outcome.session_url
    );
}

async fn launch_replace_resume_cancel(
    launcher: &dyn Launcher,
    fixture: &LauncherFixture,
    user: &UserName,
    [app, other]: [AppId; 2],
) {
    assert_eq!(launcher.current_app(user).await, None, "a new user runs nothing");
    let first = launched(launcher, request(user, app, fixture), "a launch").await;
    assert_url(&first, "a launch");
    assert_eq!(
        launcher.current_app(user).await,
        Some(app),
        "current_app after a launch"
    );

    let second = launched(launcher, request(user, other, fixture), "a second launch").await;
    assert_url(&second, "a second launch");
    assert_eq!(
        launcher.current_app(user).await,
        Some(other),
        "a second launch of the same user replaces the first (one session per user)"
    );

    let resumed = match promptly("a resume", launcher.resume(resume_request(user, fixture))).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("a resume of a running session must succeed, got {e} ({e:?})"),
    };
    assert_url(&resumed, "a resume");
    assert_eq!(
        launcher.current_app(user).await,
        Some(other),
        "a resume keeps the app"
    );

    cancelled(launcher, user).await;
    match promptly(
        "a resume without a session",
        launcher.resume(resume_request(user, fixture)),
    )
    .await
    {
        Err(LaunchError::NotRunning) => {}
        other => panic!("a resume without a session must be NotRunning, got {other:?}"),
    }
    cancelled(launcher, user).await;
}

/// Cancels and checks that `current_app` says so at once (clients re-check `/serverinfo` at once).
async fn cancelled(launcher: &dyn Launcher, user: &UserName) {
    if let Err(e) = promptly("a cancel", launcher.cancel(user)).await {
        panic!("a cancel must succeed, also with nothing running, got {e} ({e:?})");
    }
    assert_eq!(
        launcher.current_app(user).await,
        None,
        "current_app must be None as soon as a cancel returns"
    );
}

async fn unknown_apps_are_refused(launcher: &dyn Launcher, fixture: &LauncherFixture, user: &UserName) {
    let missing = request(user, fixture.missing_app, fixture);
    match promptly("a launch of an unknown app", launcher.launch(missing)).await {
        Err(LaunchError::UnknownApp(id)) => assert_eq!(id, fixture.missing_app),
        other => panic!("a launch of an app the catalog lacks must be UnknownApp, got {other:?}"),
    }
    assert_eq!(
        launcher.current_app(user).await,
        None,
        "a refused launch starts nothing"
    );
}

async fn users_run_at_once(launcher: &dyn Launcher, fixture: &LauncherFixture, tag: &str, app: AppId) {
    if fixture.sessions_at_once < 2 {
        return;
    }
    let users: Vec<UserName> = (0..fixture.sessions_at_once)
        .map(|i| name(format!("c{tag}-u{i}")))
        .collect();
    let launches = users.iter().map(|u| launcher.launch(request(u, app, fixture)));
    let outcomes = promptly("concurrent launches", join_all(launches)).await;
    for (user, outcome) in users.iter().zip(&outcomes) {
        match outcome {
            Ok(outcome) => assert_url(outcome, "a concurrent launch"),
            Err(e) => panic!("concurrent launches of different users must all succeed, {user}: {e}"),
        }
        assert_eq!(launcher.current_app(user).await, Some(app), "{user} runs its app");
    }
    let mut urls: Vec<&str> = outcomes
        .iter()
        .flatten()
        .map(|o| o.session_url.as_str())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    assert_eq!(
        urls.len(),
        users.len(),
        "every session has a stream URL of its own"
    );
    for user in &users {
        cancelled(launcher, user).await;
    }
}

/// A client that hangs up drops its launch; its retry must win, and nothing may come back after
/// a cancel.
async fn dropped_launches_do_not_undo_later_ones(
    launcher: &dyn Launcher,
    fixture: &LauncherFixture,
    user: &UserName,
    [app, other]: [AppId; 2],
) {
    for drop_after in [None, Some(Duration::from_millis(20))] {
        let mut dropped = launcher.launch(request(user, app, fixture));
        match drop_after {
            None => {
                let _ = futures::poll!(dropped.as_mut());
            }
            Some(after) => {
                let _ = tokio::time::timeout(after, dropped.as_mut()).await;
            }
        }
        drop(dropped);
        launched(
            launcher,
            request(user, other, fixture),
            "a launch after a dropped one",
        )
        .await;
        assert_eq!(
            launcher.current_app(user).await,
            Some(other),
            "the later launch wins"
        );
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            launcher.current_app(user).await,
            Some(other),
            "a dropped launch must not replace a later one when it finishes"
        );
        cancelled(launcher, user).await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            launcher.current_app(user).await,
            None,
            "nothing may run after a cancel, also not a dropped launch finishing late"
        );
    }
}

async fn refuses_every_launch(launcher: &dyn Launcher, fixture: &LauncherFixture, tag: &str) {
    let user = name(format!("c{tag}-n"));
    let any_app = AppId::new(1).expect("a valid app id");
    for app in [any_app, fixture.missing_app] {
        match promptly("a launch", launcher.launch(request(&user, app, fixture))).await {
            Err(LaunchError::Unavailable { message }) => {
                assert!(!message.is_empty(), "the refusal must say why")
            }
            Err(LaunchError::UnknownApp(_)) if app == fixture.missing_app => {}
            other => panic!("a launcher that cannot stream must refuse as Unavailable, got {other:?}"),
        }
    }
    match promptly("a resume", launcher.resume(resume_request(&user, fixture))).await {
        Err(LaunchError::NotRunning) => {}
        other => panic!("a resume without a session must be NotRunning, got {other:?}"),
    }
    cancelled(launcher, &user).await;
}
