//! `/api/v1/sessions`: list, stop.

use std::net::IpAddr;

use hyper::StatusCode;
use serde::Serialize;

use super::AdminApi;
use super::reply::{ApiError, Handled, json, no_content};
use super::ui::Scope;
use crate::ids::{AppId, Fingerprint, SessionId, UserName};
use crate::model::{SessionPhase, VideoMode};

/// A session as the API shows it (without its keys).
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// The session's id.
    pub id: SessionId,
    /// Its user.
    pub user: UserName,
    /// The app.
    pub app: AppId,
    /// The pairing that launched it.
    pub pairing: Fingerprint,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The phase.
    pub phase: SessionPhase,
    /// The video mode, `WxHxF`.
    pub mode: String,
    /// The streaming host running it, once placed.
    pub host: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: u64,
}

impl AdminApi {
    pub(super) async fn list_sessions(&self, scope: &Scope) -> Handled {
        let views: Vec<SessionView> = self
            .sessions
            .list()
            .await?
            .into_iter()
            .filter(|s| scope.covers(&s.user))
            .map(|s| SessionView {
                id: s.id,
                user: s.user,
                app: s.app,
                pairing: s.pairing,
                client_ip: s.client_ip,
                phase: s.phase,
                mode: VideoMode::to_string(&s.mode),
                host: s.placement.map(|p| p.host),
                created_at: s.created_at,
            })
            .collect();
        Ok(json(StatusCode::OK, &views))
    }

    /// Stops a session through the launcher (which releases its streaming host and relay
    /// ports), then forgets a record the launcher did not own.
    pub(super) async fn stop_session(&self, id: &str) -> Handled {
        let _change = self.change().await;
        let not_found = || ApiError::not_found(format!("no session {id:?}"));
        let id: SessionId = id.parse().map_err(|_| not_found())?;
        let Some(session) = self.sessions.get(&id).await? else {
            return Err(not_found());
        };
        self.launcher
            .cancel(&session.user)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("cannot stop session {id}: {e}")))?;
        self.sessions.delete(&id).await?;
        Ok(no_content())
    }
}
