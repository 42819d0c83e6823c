//! [`StreamHost`] over a real Wolf, through `direwolf-wolf-client` (feature `wolf`).
//!
//! Sessions are created client-less (no `client_id`, Wolf V5b or later): direwolf's clients pair
//! with direwolf, not with Wolf, and Wolf's API cannot register a client certificate
//! (`wolf-api.md` §2). Wolf gives every client-less session the same id, so a Wolf instance can
//! run one direwolf session at a time: give such hosts a capacity of 1 in the pool.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use direwolf_wolf_client::ids::AppId as WolfAppId;
use direwolf_wolf_client::types::AddSessionRequest;
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

    fn error(&self, error: direwolf_wolf_client::Error) -> HostError {
        use direwolf_wolf_client::Error as E;
        let message = error.to_string();
        match error {
            E::SocketMissing { .. }
            | E::ConnectionRefused { .. }
            | E::Connect { .. }
            | E::Timeout { .. }
            | E::ClosedWithoutResponse { .. }
            | E::Truncated { .. }
            | E::Protocol { .. } => HostError::Unreachable {
                host: self.name.clone(),
                message,
            },
            _ => HostError::Refused {
                host: self.name.clone(),
                message,
            },
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
            // empty vector and may crash (wolf-api.md §1.6). Refuse instead.
            let apps = self.client.apps().await.map_err(|e| self.error(e))?;
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
        let id = self.client.add_session(&body).await.map_err(|e| self.error(e))?;
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
            Err(e) => Err(self.error(e)),
        }
    }

    async fn list_sessions(&self) -> Result<Vec<HostSessionInfo>, HostError> {
        let sessions = self.client.sessions().await.map_err(|e| self.error(e))?;
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

    use direwolf_wolf_client::fake::FakeWolf;

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

    async fn fake() -> (FakeWolf, WolfHost, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let wolf = FakeWolf::builder()
            .unix(dir.path().join("wolf.sock"))
            .start()
            .await
            .unwrap();
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
    async fn a_wolf_without_apps_is_not_crashed() {
        let dir = tempfile::tempdir().unwrap();
        let wolf = FakeWolf::builder()
            .unix(dir.path().join("wolf.sock"))
            .start()
            .await
            .unwrap();
        let host = WolfHost::new("empty", wolf.client().unwrap());
        let error = host.add_session(&request("198.18.0.9")).await.unwrap_err();
        assert!(error.to_string().contains("no apps"), "{error}");
        assert!(!wolf.would_have_crashed());
        assert!(wolf.sessions().is_empty());
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
