use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::launcher::{LaunchError, Launcher, MockLauncher};

fn sample_request() -> crate::model::LaunchRequest {
    use crate::ids::{AesKey, Fingerprint, RiKeyId};
    use crate::model::{StreamKeys, VideoMode};
    crate::model::LaunchRequest {
        user: "alice".parse().expect("a user name"),
        pairing: Fingerprint::of_der(b"alice"),
        app: "1".parse().expect("an app id"),
        client_ip: "127.0.0.1".parse().expect("an address"),
        server_ip: "127.0.0.1".parse().expect("an address"),
        mode: VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: StreamKeys {
            aes_key: AesKey::new([1; 16]),
            aes_iv: RiKeyId::from_bits(1),
        },
        hdr: false,
        host_audio: false,
        gamepads: 0,
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_metered_launcher_times_each_result_and_abandoned_attempts() {
    let metrics = Metrics::new();
    let mut inner = MockLauncher::new();
    inner.expect_launch().returning(|_| Err(LaunchError::Timeout));
    let launcher = MeteredLauncher::new(Arc::new(inner), LaunchMetrics::register(&metrics));
    let request = sample_request();
    assert!(launcher.launch(request).await.is_err());
    let text = metrics.render();
    assert_eq!(
        sample(
            &text,
            r#"direwolf_launch_duration_seconds_count{op="launch",result="timeout"}"#
        ),
        Some(1.0),
        "{text}"
    );

    let metrics = Metrics::new();
    let launcher = MeteredLauncher::new(Arc::new(Never), LaunchMetrics::register(&metrics));
    let request = sample_request();
    let dropped = tokio::time::timeout(Duration::from_millis(20), launcher.launch(request)).await;
    assert!(dropped.is_err(), "the launch never ends");
    assert_eq!(
        sample(
            &metrics.render(),
            r#"direwolf_launch_duration_seconds_count{op="launch",result="abandoned"}"#
        ),
        Some(1.0)
    );
}

/// A launcher whose launches never end.
#[derive(Debug)]
struct Never;

#[async_trait::async_trait]
impl Launcher for Never {
    async fn launch(
        &self,
        _: crate::model::LaunchRequest,
    ) -> Result<crate::launcher::LaunchOutcome, LaunchError> {
        std::future::pending().await
    }
    async fn resume(
        &self,
        _: crate::model::ResumeRequest,
    ) -> Result<crate::launcher::LaunchOutcome, LaunchError> {
        std::future::pending().await
    }
    async fn cancel(&self, _: &crate::ids::UserName) -> Result<(), LaunchError> {
        Ok(())
    }
    async fn current_app(&self, _: &crate::ids::UserName) -> Option<crate::ids::AppId> {
        None
    }
}

#[test]
fn pairing_outcomes_are_counted_apart() {
    let metrics = Metrics::new();
    let pairing = PairingMetrics::register(&metrics);
    pairing.record(PairingOutcome::Paired);
    pairing.record(PairingOutcome::WrongPin);
    pairing.record(PairingOutcome::WrongPin);
    let text = metrics.render();
    assert_eq!(
        sample(&text, r#"direwolf_pairing_attempts_total{outcome="wrong_pin"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"direwolf_pairing_attempts_total{outcome="paired"}"#),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn the_phase_gauge_follows_the_store_zeros_included() {
    use crate::memory::InMemorySessionStore;
    use crate::store::SessionStore;
    let store = Arc::new(InMemorySessionStore::default());
    let mut session = crate::model::Session::from_launch(&sample_request());
    session.phase = crate::model::SessionPhase::Streaming;
    store.create(session).await.expect("create");
    let metrics = Metrics::new();
    let task = sessions::track_phases(store, &metrics, Duration::from_millis(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics.render();
        if sample(&text, r#"direwolf_sessions{phase="Streaming"}"#) == Some(1.0) {
            assert_eq!(sample(&text, r#"direwolf_sessions{phase="Pending"}"#), Some(0.0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gauge never set: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}
