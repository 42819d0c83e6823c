//! Whether each configured Wolf answers, told once in the log and kept for `/readyz`: "Wolf
//! reached" (with its API version) at start-up, "Wolf lost" when it stops answering, warnings
//! ever more rarely while it stays down, and "Wolf back" when it answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use direwolf_wolf_client::WolfClient;
use direwolf_wolf_client::backoff::Backoff;
use tracing::{debug, info, warn};

/// How long one probe waits for Wolf's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between probes of a Wolf that answers.
const UP_INTERVAL: Duration = Duration::from_secs(30);
/// First and longest nominal wait between probes of a Wolf that does not answer.
const DOWN_FIRST: Duration = Duration::from_secs(1);
const DOWN_MAX: Duration = Duration::from_secs(60);

/// The reachability of the configured Wolf instances, updated in the background.
#[derive(Debug, Clone, Default)]
pub struct WolfWatch {
    hosts: Vec<(String, Arc<AtomicBool>)>,
}

impl WolfWatch {
    /// Starts probing Wolf `name` through `client` (a client of its own: probing forgets the
    /// detected API version before each call).
    pub fn watch(&mut self, name: String, client: WolfClient) {
        let up = Arc::new(AtomicBool::new(false));
        self.hosts.push((name.clone(), up.clone()));
        tokio::spawn(probe_forever(name, client, up));
    }

    /// `Ok` when no Wolf is configured or at least one answers; else the names of the silent ones.
    pub fn readiness(&self) -> Result<(), String> {
        if self.hosts.is_empty() || self.hosts.iter().any(|(_, up)| up.load(Ordering::SeqCst)) {
            return Ok(());
        }
        let names: Vec<&str> = self.hosts.iter().map(|(name, _)| name.as_str()).collect();
        Err(format!("no Wolf answers ({})", names.join(", ")))
    }
}

/// What the log said last about one Wolf.
#[derive(Debug, Default)]
struct Story {
    first_done: bool,
    down_since: Option<Instant>,
    failures: u32,
}

impl Story {
    fn answered(&mut self, name: &str, version: &dyn std::fmt::Display) {
        if !self.first_done {
            info!(wolf = %name, %version, "Wolf reached");
        } else if let Some(since) = self.down_since {
            let down_for = format!("{:.0?}", since.elapsed());
            info!(wolf = %name, %version, %down_for, "Wolf back: it answers again");
        }
        *self = Story {
            first_done: true,
            ..Story::default()
        };
    }

    /// A failed probe: a warning for the first and then the 2nd, 4th, 8th… in a row.
    fn failed(&mut self, name: &str, error: &str) {
        self.failures += 1;
        let since = *self.down_since.get_or_insert_with(Instant::now);
        let attempts = self.failures;
        if !self.first_done {
            warn!(wolf = %name, %error, "Wolf not reached; streams wait for it to answer");
        } else if attempts == 1 {
            warn!(wolf = %name, %error, "Wolf lost: it does not answer; streams wait for it");
        } else if attempts.is_power_of_two() {
            let down_for = format!("{:.0?}", since.elapsed());
            warn!(wolf = %name, %error, attempts, %down_for, "Wolf still not answering");
        } else {
            debug!(wolf = %name, %error, attempts, "Wolf still not answering");
        }
        self.first_done = true;
    }
}

async fn probe_forever(name: String, client: WolfClient, up: Arc<AtomicBool>) {
    let mut story = Story::default();
    let mut backoff = Backoff::new(DOWN_FIRST, DOWN_MAX);
    loop {
        client.forget_version();
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, client.version()).await {
            Ok(Ok(version)) => Ok(version),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        up.store(answer.is_ok(), Ordering::SeqCst);
        match answer {
            Ok(version) => {
                story.answered(&name, &version);
                backoff.reset();
                tokio::time::sleep(UP_INTERVAL).await;
            }
            Err(error) => {
                story.failed(&name, &error);
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_one_answering_wolf_when_any_is_configured() {
        let mut watch = WolfWatch::default();
        assert_eq!(watch.readiness(), Ok(()));
        let (a, b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        watch.hosts = vec![("a".into(), a.clone()), ("b".into(), b.clone())];
        assert_eq!(watch.readiness(), Err("no Wolf answers (a, b)".to_owned()));
        b.store(true, Ordering::SeqCst);
        assert_eq!(watch.readiness(), Ok(()));
    }

    #[test]
    fn the_story_counts_failures_and_starts_again_on_an_answer() {
        let mut story = Story::default();
        for _ in 0..5 {
            story.failed("w", "refused");
        }
        assert_eq!(story.failures, 5);
        assert!(story.down_since.is_some());
        story.answered("w", &"V6");
        assert_eq!(
            (story.failures, story.down_since, story.first_done),
            (0, None, true)
        );
    }
}
