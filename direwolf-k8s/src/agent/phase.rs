//! The stream's phase as Wolf's events drive it: a pure state machine, [`PhaseTracker`].
//!
//! | From | Input | To |
//! |---|---|---|
//! | WaitForPing, Paused | a video or audio ping, a resume of this session | Streaming |
//! | WaitForPing, Streaming | a pause of this session | Paused (the pause grace starts) |
//! | Paused | the pause grace passed | Ended |
//! | any | a stop of this session, the session missing from Wolf's list | Ended |
//!
//! Ended is final. Pings carry no session id; one Wolf serves one session, so every ping is
//! this session's.

use std::time::Duration;

use direwolf_wolf_client::{SessionId, WolfEvent};
use tokio::time::Instant;

use crate::crd::SessionPhase;

/// What moves the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseInput {
    /// A video or audio ping arrived.
    Ping,
    /// Wolf resumed the session (ENet client connected).
    Resume,
    /// Wolf paused the session (the client went away).
    Pause,
    /// Wolf stopped the session.
    Stop,
    /// Wolf no longer lists the session.
    Gone,
}

impl PhaseInput {
    /// The input an event of Wolf's is for session `ours`, if any.
    pub fn from_event(event: &WolfEvent, ours: SessionId) -> Option<PhaseInput> {
        let mine = event.session_id() == Some(ours);
        match event {
            WolfEvent::RtpVideoPing(_) | WolfEvent::RtpAudioPing(_) => Some(PhaseInput::Ping),
            WolfEvent::ResumeStream(_) if mine => Some(PhaseInput::Resume),
            WolfEvent::PauseStream(_) if mine => Some(PhaseInput::Pause),
            WolfEvent::StopStream(_) if mine => Some(PhaseInput::Stop),
            _ => None,
        }
    }
}

/// The phase, and since when the stream is paused.
#[derive(Debug, Clone)]
pub struct PhaseTracker {
    phase: SessionPhase,
    paused_at: Option<Instant>,
    grace: Duration,
}

impl PhaseTracker {
    /// A registered stream (phase WaitForPing) whose pauses end it after `grace`.
    pub fn new(grace: Duration) -> Self {
        PhaseTracker {
            phase: SessionPhase::WaitForPing,
            paused_at: None,
            grace,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> SessionPhase {
        self.phase
    }

    /// Applies `input` at `now`; the new phase if it changed.
    pub fn apply(&mut self, input: PhaseInput, now: Instant) -> Option<SessionPhase> {
        use SessionPhase::*;
        let next = match (self.phase, input) {
            (Ended, _) => return None,
            (_, PhaseInput::Stop | PhaseInput::Gone) => Ended,
            (WaitForPing | Paused, PhaseInput::Ping | PhaseInput::Resume) => Streaming,
            (WaitForPing | Streaming, PhaseInput::Pause) => Paused,
            _ => return None,
        };
        self.paused_at = (next == Paused).then_some(now);
        self.phase = next;
        Some(next)
    }

    /// When the pause grace ends, if paused.
    pub fn grace_deadline(&self) -> Option<Instant> {
        self.paused_at.map(|at| at + self.grace)
    }

    /// Ends the stream if the pause grace has passed at `now`; the new phase if it changed.
    pub fn check_grace(&mut self, now: Instant) -> Option<SessionPhase> {
        let deadline = self.grace_deadline()?;
        if now < deadline {
            return None;
        }
        self.paused_at = None;
        self.phase = SessionPhase::Ended;
        Some(SessionPhase::Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionPhase::*;
    use direwolf_wolf_client::events::SessionEvent;

    #[test]
    fn pings_resume_pause_and_stop() {
        let t0 = Instant::now();
        let mut t = PhaseTracker::new(Duration::from_secs(60));
        assert_eq!(t.apply(PhaseInput::Pause, t0), Some(Paused));
        assert_eq!(t.apply(PhaseInput::Ping, t0), Some(Streaming));
        assert_eq!(t.apply(PhaseInput::Ping, t0), None, "no change, no write");
        assert_eq!(t.apply(PhaseInput::Resume, t0), None);
        assert_eq!(t.apply(PhaseInput::Pause, t0), Some(Paused));
        assert_eq!(t.grace_deadline(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(t.apply(PhaseInput::Resume, t0), Some(Streaming));
        assert_eq!(t.grace_deadline(), None);
        assert_eq!(t.apply(PhaseInput::Stop, t0), Some(Ended));
        assert_eq!(t.apply(PhaseInput::Ping, t0), None, "Ended is final");
    }

    #[test]
    fn a_long_pause_ends_the_stream() {
        let t0 = Instant::now();
        let mut t = PhaseTracker::new(Duration::from_secs(5));
        t.apply(PhaseInput::Ping, t0);
        t.apply(PhaseInput::Pause, t0);
        assert_eq!(t.check_grace(t0 + Duration::from_secs(4)), None);
        assert_eq!(t.check_grace(t0 + Duration::from_secs(5)), Some(Ended));
        assert_eq!(t.phase(), Ended);
    }

    #[test]
    fn only_this_sessions_events_count() {
        let ours = SessionId::new(7);
        let other = WolfEvent::PauseStream(SessionEvent {
            session_id: SessionId::new(8),
        });
        assert_eq!(PhaseInput::from_event(&other, ours), None);
        let mine = WolfEvent::StopStream(SessionEvent { session_id: ours });
        assert_eq!(PhaseInput::from_event(&mine, ours), Some(PhaseInput::Stop));
    }
}
