//! [`StreamHost`] over a real Wolf, through `direwolf-wolf-client` (feature `wolf`).
//!
//! Sessions are created client-less (no `client_id`, Wolf V5b or later): direwolf's clients pair
//! with direwolf, not with Wolf, and Wolf's API cannot register a client certificate
//! (`docs/protocol/wolf-api.md` § Identifiers). Wolf gives every client-less session the same
//! id, so a Wolf instance can run one direwolf session at a time: give such hosts a capacity of 1
//! in the pool.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use direwolf_wolf_client::ids::AppId as WolfAppId;
use direwolf_wolf_client::types::AddSessionRequest;
use direwolf_wolf_client::version::paths;
use direwolf_wolf_client::{
    EventItem, Secret, SessionId as WolfSessionId, WolfClient, WolfErrorKind, WolfEvent,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::debug;

use crate::stream_host::{HostError, HostEvent, HostEvents, HostSessionInfo, HostSessionRequest, StreamHost};

/// A Wolf instance as a streaming host.
#[derive(Clone)]
pub struct WolfHost {
    name: String,
    client: WolfClient,
}

impl WolfHost {
    /// A host named `name` (unique in its pool) reached through `client`.
    pub fn new(name: impl Into<String>, client: WolfClient) -> Self {
        WolfHost {
            name: name.into(),
            client,
        }
    }

    /// The client.
    pub fn client(&self) -> &WolfClient {
        &self.client
    }

    /// Maps a client error of a call whose purpose is the request to `endpoint` (an error of an
    /// earlier request made on the way, such as version detection, means `endpoint` was never
    /// sent).
    ///
    /// The client fails before sending anything when it cannot connect ([`Error::SocketMissing`],
    /// [`Error::ConnectionRefused`], [`Error::Connect`], TLS handshake included): that is
    /// [`HostError::Unreachable`]. Once a connection is open the request may have been written,
    /// so a missing or unusable answer is [`HostError::NoAnswer`]: [`Error::Timeout`] (it covers
    /// the connect too, so a TCP connect that hangs is on this side as well: the client cannot
    /// tell), [`Error::ClosedWithoutResponse`] (also when the connection closed while the request
    /// was being written), [`Error::Truncated`], [`Error::Protocol`], [`Error::BodyTooLarge`]
    /// and [`Error::InvalidJson`] (Wolf answered 200, so it carried the request out, but its
    /// answer cannot be read). Answers that say no (Wolf errors, other statuses) and requests
    /// the client refused to send are [`HostError::Refused`].
    ///
    /// [`Error::SocketMissing`]: direwolf_wolf_client::Error::SocketMissing
    /// [`Error::ConnectionRefused`]: direwolf_wolf_client::Error::ConnectionRefused
    /// [`Error::Connect`]: direwolf_wolf_client::Error::Connect
    /// [`Error::Timeout`]: direwolf_wolf_client::Error::Timeout
    /// [`Error::ClosedWithoutResponse`]: direwolf_wolf_client::Error::ClosedWithoutResponse
    /// [`Error::Truncated`]: direwolf_wolf_client::Error::Truncated
    /// [`Error::Protocol`]: direwolf_wolf_client::Error::Protocol
    /// [`Error::BodyTooLarge`]: direwolf_wolf_client::Error::BodyTooLarge
    /// [`Error::InvalidJson`]: direwolf_wolf_client::Error::InvalidJson
    fn error(&self, endpoint: &'static str, error: direwolf_wolf_client::Error) -> HostError {
        use direwolf_wolf_client::Error as E;
        let host = self.name.clone();
        let message = error.to_string();
        // The endpoint whose request went out without a usable answer, and whether an answer
        // came but could not be read.
        let (unanswered, unreadable) = match &error {
            E::Timeout { endpoint, .. }
            | E::ClosedWithoutResponse { endpoint }
            | E::Truncated { endpoint }
            | E::Protocol { endpoint, .. } => (Some(*endpoint), false),
            E::BodyTooLarge { endpoint, .. } | E::InvalidJson { endpoint, .. } => (Some(*endpoint), true),
            _ => (None, false),
        };
        let not_sent = matches!(
            error,
            E::SocketMissing { .. } | E::ConnectionRefused { .. } | E::Connect { .. }
        );
        match unanswered {
            Some(failed) if failed == endpoint => HostError::NoAnswer { host, message },
            // An earlier request on the way failed (e.g. version detection): the one that
            // matters was never sent.
            Some(_) if !unreadable => HostError::Unreachable { host, message },
            None if not_sent => HostError::Unreachable { host, message },
            _ => HostError::Refused { host, message },
        }
    }

    fn parse_id(&self, id: &str) -> Result<WolfSessionId, HostError> {
        id.parse::<u64>()
            .map(WolfSessionId::new)
            .map_err(|_| HostError::NoSuchSession {
                host: self.name.clone(),
                id: id.to_owned(),
            })
    }
}

impl fmt::Debug for WolfHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WolfHost")
            .field("name", &self.name)
            .field("target", &self.client.target())
            .finish()
    }
}

#[async_trait]
impl StreamHost for WolfHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn add_session(&self, request: &HostSessionRequest) -> Result<String, HostError> {
        if request.host_app_id.is_none() {
            // Without `app_id` Wolf copies its first Moonlight app; with no app it reads past an
            // empty vector and may crash (`docs/protocol/wolf-api.md` § Crash hazards). Refuse
            // instead.
            let apps = self
                .client
                .apps()
                .await
                .map_err(|e| self.error(paths::SESSIONS_ADD, e))?;
            if apps.is_empty() {
                return Err(HostError::Refused {
                    host: self.name.clone(),
                    message: "Wolf has no apps in its Moonlight profile; add one (or name a wolf_app_id) \
                              before direwolf can start sessions on it"
                        .to_owned(),
                });
            }
        }
        let body = AddSessionRequest {
            client_ip: request.client_ip.to_string(),
            aes_key: Secret::new(request.keys.aes_key.to_hex()),
            // Wolf parses the IV with `stoul`: send the unsigned decimal of the 32 bits.
            aes_iv: Secret::new(request.keys.aes_iv.bits().to_string()),
            rtsp_fake_ip: request.rtsp_fake_ip.to_string(),
            video_width: request.mode.width,
            video_height: request.mode.height,
            video_refresh_rate: request.mode.fps,
            audio_channel_count: u32::from(request.audio_channels),
            app_id: request.host_app_id.as_deref().map(WolfAppId::new),
            client_id: None,
            client_settings: None,
        };
        let id = self
            .client
            .add_session(&body)
            .await
            .map_err(|e| self.error(paths::SESSIONS_ADD, e))?;
        Ok(id.get().to_string())
    }

    async fn stop_session(&self, id: &str) -> Result<(), HostError> {
        let wolf_id = self.parse_id(id)?;
        match self.client.stop_session(wolf_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.wolf_kind() == Some(WolfErrorKind::InvalidSessionId) => {
                Err(HostError::NoSuchSession {
                    host: self.name.clone(),
                    id: id.to_owned(),
                })
            }
            Err(e) => Err(self.error(paths::SESSIONS_STOP, e)),
        }
    }

    async fn list_sessions(&self) -> Result<Vec<HostSessionInfo>, HostError> {
        let sessions = self
            .client
            .sessions()
            .await
            .map_err(|e| self.error(paths::SESSIONS, e))?;
        Ok(sessions
            .into_iter()
            .map(|s| HostSessionInfo {
                id: s.session_id().get().to_string(),
                rtsp_fake_ip: s.rtsp_fake_ip.clone(),
                client_ip: s.client_ip.clone(),
                aes_key_hex: s.aes_key.as_ref().map(|k| k.expose().clone()),
            })
            .collect())
    }

    fn events(&self) -> HostEvents {
        let (tx, rx) = mpsc::channel(64);
        let client = self.client.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            loop {
                let mut events = client.events();
                while let Some(item) = events.next().await {
                    let event = match item {
                        Ok(EventItem::Event(WolfEvent::StopStream(e))) => HostEvent::SessionStopped {
                            id: e.session_id.get().to_string(),
                        },
                        Ok(EventItem::Event(WolfEvent::PauseStream(e))) => HostEvent::SessionPaused {
                            id: e.session_id.get().to_string(),
                        },
                        Ok(EventItem::Event(WolfEvent::ResumeStream(e))) => HostEvent::SessionResumed {
                            id: e.session_id.get().to_string(),
                        },
                        Ok(EventItem::Reconnected) => HostEvent::Resync,
                        Ok(EventItem::Event(_)) => continue,
                        Err(error) => {
                            debug!(host = %name, %error, "Wolf event stream interrupted");
                            continue;
                        }
                    };
                    if tx.send(event).await.is_err() {
                        return; // Nobody listens any more.
                    }
                }
                // The stream gave up; start a new one after a pause, and resync when it is back.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(HostEvent::Resync).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use direwolf_wolf_client::fake::{Failure, FakeWolf};

    use super::*;
    use crate::ids::{AesKey, RiKeyId};
    use crate::model::{StreamKeys, VideoMode};

    fn request(fake_ip: &str) -> HostSessionRequest {
        HostSessionRequest {
            client_ip: "10.0.0.1".parse::<IpAddr>().unwrap(),
            keys: StreamKeys {
                aes_key: "773448F67992470C5C62848D361E1025".parse::<AesKey>().unwrap(),
                aes_iv: "-123456789".parse::<RiKeyId>().unwrap(),
            },
            rtsp_fake_ip: fake_ip.parse().unwrap(),
            mode: VideoMode::DEFAULT,
            audio_channels: 2,
            host_app_id: None,
        }
    }

    /// A fake Wolf on a Unix socket, with no apps.
    async fn empty_fake() -> (FakeWolf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let wolf = FakeWolf::builder()
            .unix(dir.path().join("wolf.sock"))
            .start()
            .await
            .unwrap();
        (wolf, dir)
    }

    async fn fake() -> (FakeWolf, WolfHost, tempfile::TempDir) {
        let (wolf, dir) = empty_fake().await;
        wolf.add_app(FakeWolf::sample_app("1", "Desktop"));
        let host = WolfHost::new("wolf-1", wolf.client().unwrap());
        (wolf, host, dir)
    }

    #[tokio::test]
    async fn sessions_round_trip_through_wolf() {
        let (wolf, host, _dir) = fake().await;
        let id = host.add_session(&request("198.18.0.7")).await.unwrap();
        assert_eq!(
            id, "6142509188972423790",
            "client-less sessions get Wolf's constant id"
        );
        let sent = &wolf.sessions()[0];
        assert_eq!(
            sent.aes_iv.as_ref().unwrap().expose(),
            "4171510507",
            "unsigned decimal IV"
        );
        assert_eq!(
            sent.aes_key.as_ref().unwrap().expose(),
            "773448F67992470C5C62848D361E1025"
        );
        let listed = host.list_sessions().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].rtsp_fake_ip.as_deref(), Some("198.18.0.7"));
        assert_eq!(listed[0].client_ip, "10.0.0.1");

        let mut events = host.events();
        wolf.wait_for_subscribers(1, Duration::from_secs(5))
            .await
            .expect("the host subscribes to events");
        host.stop_session(&id).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("Wolf announces the stopped session");
        assert_eq!(event, Some(HostEvent::SessionStopped { id: id.clone() }));
        assert!(host.list_sessions().await.unwrap().is_empty());
        assert!(matches!(
            host.stop_session(&id).await,
            Err(HostError::NoSuchSession { .. })
        ));
        assert!(matches!(
            host.stop_session("not-a-number").await,
            Err(HostError::NoSuchSession { .. })
        ));
        assert!(!wolf.would_have_crashed(), "nothing sent could crash Wolf");
    }

    #[tokio::test]
    async fn conforms_to_the_stream_host_suite() {
        let (wolf, host, _dir) = fake().await;
        crate::conformance::stream_host(&host, None).await;
        crate::conformance::stream_host(&host, Some("1")).await;
        assert!(wolf.sessions().is_empty(), "the suite stops what it adds");
        assert!(!wolf.would_have_crashed(), "nothing sent could crash Wolf");
    }

    #[tokio::test]
    async fn a_wolf_without_apps_is_not_crashed() {
        let (wolf, _dir) = empty_fake().await;
        let host = WolfHost::new("empty", wolf.client().unwrap());
        let error = host.add_session(&request("198.18.0.9")).await.unwrap_err();
        assert!(error.to_string().contains("no apps"), "{error}");
        assert!(!wolf.would_have_crashed());
        assert!(wolf.sessions().is_empty());
    }

    #[tokio::test]
    async fn requests_wolf_may_have_got_are_no_answer_and_undelivered_ones_unreachable() {
        let (wolf, _, dir) = fake().await;
        let host = WolfHost::new(
            "wolf-1",
            wolf.client_builder()
                .with_timeout(Duration::from_millis(300))
                .build()
                .unwrap(),
        );
        let add = "/api/v1/sessions/add";
        // Wolf answers too late: the client gives up, Wolf creates the session all the same.
        wolf.set_failure_on(add, Failure::Slow(Duration::from_millis(600)));
        let error = host.add_session(&request("198.18.0.10")).await.unwrap_err();
        assert!(matches!(error, HostError::NoAnswer { .. }), "{error:?}");
        let late = async {
            while wolf.sessions().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .expect("the slow Wolf must create the unanswered session within 5 s");
        assert_eq!(wolf.sessions()[0].rtsp_fake_ip.as_deref(), Some("198.18.0.10"));
        wolf.clear_failures();
        let id = host.list_sessions().await.unwrap()[0].id.clone();
        host.stop_session(&id).await.unwrap();
        // Connection closed after the request, answer cut short, not HTTP, 200 with an
        // unreadable body: the request may have taken effect.
        for failure in [
            Failure::CloseWithoutResponse,
            Failure::Truncated,
            Failure::Garbage,
            Failure::WrongShape,
        ] {
            wolf.set_failure_on(add, failure.clone());
            let error = host.add_session(&request("198.18.0.11")).await.unwrap_err();
            assert!(
                matches!(error, HostError::NoAnswer { .. }),
                "{failure:?}: {error:?}"
            );
            assert!(error.to_string().contains("did not answer"), "{error}");
        }
        wolf.clear_failures();
        for endpoint in ["/api/v1/sessions", "/api/v1/sessions/stop"] {
            wolf.set_failure_on(endpoint, Failure::CloseWithoutResponse);
        }
        assert!(matches!(
            host.list_sessions().await,
            Err(HostError::NoAnswer { .. })
        ));
        assert!(matches!(
            host.stop_session(&id).await,
            Err(HostError::NoAnswer { .. })
        ));
        // The app check before sessions/add fails: sessions/add itself was never sent.
        wolf.clear_failures();
        wolf.set_failure_on("/api/v1/apps", Failure::Slow(Duration::from_millis(600)));
        let error = host.add_session(&request("198.18.0.12")).await.unwrap_err();
        assert!(matches!(error, HostError::Unreachable { .. }), "{error:?}");
        // Wolf says no: refused.
        wolf.clear_failures();
        let mut unknown_app = request("198.18.0.13");
        unknown_app.host_app_id = Some("no-such-app".to_owned());
        let error = host.add_session(&unknown_app).await.unwrap_err();
        assert!(matches!(error, HostError::Refused { .. }), "{error:?}");
        assert!(wolf.sessions().is_empty(), "{:?}", wolf.sessions());
        assert!(!wolf.would_have_crashed());
        // No socket at all: nothing was sent.
        let missing = WolfHost::new(
            "nowhere",
            WolfClient::unix(dir.path().join("missing.sock")).unwrap(),
        );
        let error = missing.add_session(&request("198.18.0.14")).await.unwrap_err();
        assert!(matches!(error, HostError::Unreachable { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_stopped_wolf_is_unreachable() {
        let (wolf, host, _dir) = fake().await;
        wolf.stop().await;
        let error = host.add_session(&request("198.18.0.8")).await.unwrap_err();
        assert!(matches!(error, HostError::Unreachable { .. }), "{error:?}");
        assert!(matches!(
            host.list_sessions().await,
            Err(HostError::Unreachable { .. })
        ));
    }
}
