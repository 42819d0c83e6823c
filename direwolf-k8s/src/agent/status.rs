//! The agent's part of the Session status (`stream.rs`): `wolfSessionID`, `streamURL`,
//! `keysRevision`, `phase` and the condition `StreamStarted`, written with server-side apply on the status subresource
//! under field manager [`field_managers::AGENT_SESSION_STATUS`], only when they change.
//!
//! Every apply carries all of the agent's fields (server-side apply removes the fields a manager
//! stops sending) and forces ownership of `phase`, which the operator writes too. Failed writes
//! are retried with back-off: 409 (a conflict) and the transient errors of
//! [`crate::retry::is_transient`] until they pass; a 404 means the Session is gone.

use direwolf_wolf_client::backoff::Backoff;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{Session, SessionPhase, conditions, field_managers, reasons};
use crate::retry::is_transient;

/// The agent's status fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// Wolf's id of the stream.
    pub wolf_session_id: Option<String>,
    /// `rtsp://<fake ip>:<ports.rtsp>`.
    pub stream_url: Option<String>,
    /// The revision of the keys Wolf's session has.
    pub keys_revision: Option<i64>,
    /// The phase.
    pub phase: SessionPhase,
    /// `StreamStarted`: true (reason WaitForPing) or false (reason StreamStartFailed), with a
    /// message.
    pub started: bool,
    /// The condition's message.
    pub message: String,
}

impl AgentStatus {
    /// The stream is registered: WaitForPing.
    pub fn registered(wolf_session_id: String, stream_url: String, keys_revision: i64) -> Self {
        AgentStatus {
            wolf_session_id: Some(wolf_session_id),
            stream_url: Some(stream_url),
            keys_revision: Some(keys_revision),
            phase: SessionPhase::WaitForPing,
            started: true,
            message: "Wolf has the stream; waiting for the client".into(),
        }
    }

    /// The stream could not be started: Ended, `StreamStarted` False with `message`.
    pub fn failed(message: String) -> Self {
        AgentStatus {
            wolf_session_id: None,
            stream_url: None,
            keys_revision: None,
            phase: SessionPhase::Ended,
            started: false,
            message,
        }
    }

    fn reason(&self) -> &'static str {
        if self.started {
            reasons::WAIT_FOR_PING
        } else {
            reasons::STREAM_START_FAILED
        }
    }
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The Session no longer exists.
    #[error("the Session is gone")]
    Gone,
    /// The API server refused the write for a reason retrying cannot fix.
    #[error("the status write was refused: {0}")]
    Refused(kube::Error),
}

/// Writes the agent's status of one Session.
#[derive(Debug)]
pub struct StatusWriter {
    api: Api<Session>,
    name: String,
    written: Option<AgentStatus>,
    transition: Option<(bool, Time)>,
    backoff: Backoff,
}

impl StatusWriter {
    /// A writer of Session `name`'s status, retrying with `backoff`.
    pub fn new(api: Api<Session>, name: &str, backoff: Backoff) -> Self {
        StatusWriter {
            api,
            name: name.to_owned(),
            written: None,
            transition: None,
            backoff,
        }
    }

    /// The status last written.
    pub fn written(&self) -> Option<&AgentStatus> {
        self.written.as_ref()
    }

    /// Applies `status` unless it was the last one written; retries conflicts and transient
    /// failures until the write passes.
    ///
    /// # Errors
    /// [`WriteError::Gone`] on 404; [`WriteError::Refused`] for other permanent failures.
    pub async fn write(&mut self, status: AgentStatus) -> Result<(), WriteError> {
        if self.written.as_ref() == Some(&status) {
            return Ok(());
        }
        let body = self.body(&status);
        let params = PatchParams::apply(field_managers::AGENT_SESSION_STATUS).force();
        self.backoff.reset();
        loop {
            match self
                .api
                .patch_status(&self.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => return Err(WriteError::Gone),
                Err(e) if is_transient(&e) || matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                    warn!(session = %self.name, error = %e, "status write failed; retrying");
                    self.backoff.wait().await;
                }
                Err(e) => return Err(WriteError::Refused(e)),
            }
        }
        info!(
            session = %self.name,
            phase = ?status.phase,
            reason = status.reason(),
            wolf_session_id = status.wolf_session_id.as_deref().unwrap_or(""),
            "status written"
        );
        self.written = Some(status);
        Ok(())
    }

    /// The apply body; the condition's transition time moves only when its status changes.
    fn body(&mut self, status: &AgentStatus) -> serde_json::Value {
        let time = match &self.transition {
            Some((started, time)) if *started == status.started => time.clone(),
            _ => Time(k8s_openapi::jiff::Timestamp::now()),
        };
        self.transition = Some((status.started, time.clone()));
        let condition = Condition {
            type_: conditions::STREAM_STARTED.into(),
            status: if status.started { "True" } else { "False" }.into(),
            reason: status.reason().into(),
            message: status.message.clone(),
            last_transition_time: time,
            observed_generation: None,
        };
        let mut fields = json!({
            "phase": status.phase,
            "conditions": [condition],
        });
        if let Some(id) = &status.wolf_session_id {
            fields["wolfSessionID"] = json!(id);
        }
        if let Some(url) = &status.stream_url {
            fields["streamURL"] = json!(url);
        }
        if let Some(revision) = status.keys_revision {
            fields["keysRevision"] = json!(revision);
        }
        json!({
            "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
            "kind": "Session",
            "status": fields,
        })
    }
}
