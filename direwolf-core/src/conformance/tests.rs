use std::time::Duration;

use async_trait::async_trait;

use super::stores::base64;
use super::*;
use crate::error::Result;
use crate::ids::{AppId, Fingerprint, PairSecret, UserName};
use crate::launcher::{LaunchError, LaunchOutcome, Launcher, NoStreamingHost};
use crate::model::{LaunchRequest, Pairing, ResumeRequest};
use crate::pin_broker::{
    InMemoryPinBroker, PendingPin, PendingPinRequest, PinBroker, PinError, PinSubmission,
};
use crate::store::PairingStore;
use crate::stream_host::{
    HostError, HostEvents, HostSessionInfo, HostSessionRequest, InMemoryStreamHost, StreamHost,
};

#[tokio::test]
async fn in_memory_backends_conform() {
    all(&Stores::in_memory()).await;
}

#[tokio::test]
async fn suite_runs_twice_on_the_same_stores() {
    let stores = Stores::in_memory();
    all(&stores).await;
    all(&stores).await;
    assert!(
        stores.pairings.list().await.unwrap().is_empty(),
        "the suite must clean up its pairings"
    );
    assert!(
        stores.apps.list().await.unwrap().is_empty(),
        "the suite must clean up its apps"
    );
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected);
    }
}

/// A backend that loses writes must fail the suite (the suite can fail).
#[tokio::test]
#[should_panic(expected = "get after put")]
async fn a_forgetful_backend_fails() {
    #[derive(Debug)]
    struct Forgetful;
    #[async_trait::async_trait]
    impl PairingStore for Forgetful {
        async fn get(&self, _: &Fingerprint) -> Result<Option<Pairing>> {
            Ok(None)
        }
        async fn put(&self, _: Pairing) -> Result<()> {
            Ok(())
        }
        async fn delete(&self, _: &Fingerprint) -> Result<bool> {
            Ok(false)
        }
        async fn list(&self) -> Result<Vec<Pairing>> {
            Ok(Vec::new())
        }
    }
    pairing_store(&Forgetful).await;
}

#[tokio::test]
async fn a_launcher_without_streaming_conforms() {
    launcher(&NoStreamingHost, &LauncherFixture::without_streaming()).await;
}

/// A launcher that starts sessions but forgets them must fail the suite.
#[tokio::test]
#[should_panic(expected = "current_app after a launch")]
async fn a_forgetful_launcher_fails() {
    #[derive(Debug)]
    struct Forgetful;
    #[async_trait]
    impl Launcher for Forgetful {
        async fn launch(&self, request: LaunchRequest) -> std::result::Result<LaunchOutcome, LaunchError> {
            Ok(LaunchOutcome {
                session: crate::ids::SessionId::generate(&request.user, request.app),
                session_url: "rtsp://127.0.0.1:48010".into(),
            })
        }
        async fn resume(&self, _: ResumeRequest) -> std::result::Result<LaunchOutcome, LaunchError> {
            Err(LaunchError::NotRunning)
        }
        async fn cancel(&self, _: &UserName) -> std::result::Result<(), LaunchError> {
            Ok(())
        }
        async fn current_app(&self, _: &UserName) -> Option<AppId> {
            None
        }
    }
    let app = |id| AppId::new(id).expect("a valid app id");
    launcher(&Forgetful, &LauncherFixture::streaming([app(1), app(2)], app(3))).await;
}

#[tokio::test]
async fn the_in_memory_pin_broker_conforms() {
    let broker = InMemoryPinBroker::default();
    pin_broker(&broker).await;
    // Clones share their entries, like replicas sharing a backend.
    pin_broker_across(&broker, &broker.clone()).await;
    assert!(
        broker.pending().await.unwrap().is_empty(),
        "the suite closes its entries"
    );
}

/// A broker that never delivers a PIN must fail the suite.
#[tokio::test]
#[should_panic(expected = "a wait for a submitted PIN must return it")]
async fn a_deaf_pin_broker_fails() {
    #[derive(Debug)]
    struct Deaf;
    #[async_trait]
    impl PinBroker for Deaf {
        async fn open(&self, _: PendingPinRequest) -> Result<PairSecret> {
            Ok(PairSecret::generate())
        }
        async fn wait(
            &self,
            _: &PairSecret,
            timeout: Duration,
        ) -> std::result::Result<PinSubmission, PinError> {
            tokio::time::sleep(timeout.min(Duration::from_millis(10))).await;
            Err(PinError::TimedOut)
        }
        async fn submit(&self, _: &PairSecret, _: PinSubmission) -> std::result::Result<(), PinError> {
            Ok(())
        }
        async fn close(&self, _: &PairSecret) {}
        async fn pending(&self) -> Result<Vec<PendingPin>> {
            Ok(Vec::new())
        }
    }
    pin_broker(&Deaf).await;
}

#[tokio::test]
async fn the_in_memory_stream_host_conforms() {
    stream_host(&InMemoryStreamHost::new("memory"), None).await;
    stream_host(&InMemoryStreamHost::new("wolf-like").with_shared_ids(), None).await;
}

/// A host that stops sessions without saying so must fail the suite.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "reported as SessionStopped")]
async fn a_silent_stream_host_fails() {
    #[derive(Debug)]
    struct Silent(InMemoryStreamHost);
    #[async_trait]
    impl StreamHost for Silent {
        fn name(&self) -> &str {
            self.0.name()
        }
        async fn add_session(&self, request: &HostSessionRequest) -> std::result::Result<String, HostError> {
            self.0.add_session(request).await
        }
        async fn stop_session(&self, id: &str) -> std::result::Result<(), HostError> {
            self.0.stop_session(id).await
        }
        async fn list_sessions(&self) -> std::result::Result<Vec<HostSessionInfo>, HostError> {
            self.0.list_sessions().await
        }
        fn events(&self) -> HostEvents {
            Box::pin(futures::stream::pending())
        }
    }
    stream_host(&Silent(InMemoryStreamHost::new("silent")), None).await;
}
