use std::time::Duration;

use super::*;
use crate::ids::{AesKey, AppId, Fingerprint, RiKeyId};
use crate::model::{LaunchRequest, StreamKeys, StreamPlacement, VideoMode};

fn user(name: &str) -> UserName {
    name.parse().expect("a valid user name")
}

/// A live session of `name` on `host` with host id `host_id` and fake address `fake_ip`.
fn live(name: &str, host: usize, host_id: &str, fake_ip: Ipv4Addr) -> Live {
    let mut session = Session::from_launch(&LaunchRequest {
        user: user(name),
        pairing: Fingerprint::of_der(name.as_bytes()),
        app: AppId::new(1).expect("a valid app id"),
        client_ip: "192.0.2.7".parse().expect("an address"),
        server_ip: "192.0.2.1".parse().expect("an address"),
        mode: VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: StreamKeys {
            aes_key: AesKey::new([1; 16]),
            aes_iv: RiKeyId::from_bits(1),
        },
        hdr: false,
        host_audio: false,
        gamepads: 0,
    });
    session.placement = Some(StreamPlacement {
        session_url: "rtsp://192.0.2.1:40000".into(),
        host: format!("host-{host}"),
        host_session_id: host_id.into(),
        ports: None,
    });
    Live {
        session,
        host,
        fake_ip,
        relay: None,
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, last)
}

#[test]
fn slots_live_sessions_and_late_ones_share_a_hosts_capacity() {
    let now = Instant::now();
    let mut ledger = Ledger::new([2]);
    assert!(ledger.take_slot(0, now));
    ledger.make_live(live("alice", 0, "1", ip(1)));
    assert_eq!(
        (ledger.held(0), ledger.load(0, now)),
        (0, 1),
        "the slot became the session"
    );
    ledger.note_unanswered(0, ip(2), now + Duration::from_secs(10));
    assert_eq!(ledger.load(0, now), 2);
    assert!(!ledger.take_slot(0, now), "full: one live, one late");
    assert!(ledger.candidates(now).is_empty());
    // Once the late session's window has passed, it no longer counts.
    let later = now + Duration::from_secs(11);
    assert_eq!(ledger.pending_late(0, later), 0);
    assert!(ledger.take_slot(0, later));
    ledger.release_slot(0);
    assert_eq!(ledger.load(0, later), 1);
}

#[test]
fn candidates_are_least_loaded_first_and_down_hosts_last() {
    let now = Instant::now();
    let mut ledger = Ledger::new([2, 4, 1]);
    assert_eq!(ledger.candidates(now), [0, 1, 2], "ties keep pool order");
    assert!(ledger.take_slot(1, now));
    // Host 1 is at 1/4, hosts 0 and 2 at 0.
    assert_eq!(ledger.candidates(now), [0, 2, 1]);
    ledger.mark_down(0, now + Duration::from_secs(5));
    assert!(ledger.is_down(0, now));
    assert_eq!(ledger.candidates(now), [2, 1, 0]);
    assert!(!ledger.is_down(0, now + Duration::from_secs(6)));
    assert!(ledger.take_slot(2, now));
    assert_eq!(ledger.candidates(now), [1, 0], "a full host is no candidate");
}

#[test]
fn taking_a_live_session_holds_its_slot_and_its_address() {
    let now = Instant::now();
    let mut ledger = Ledger::new([1]);
    assert!(ledger.take_slot(0, now));
    ledger.make_live(live("alice", 0, "7", ip(5)));
    let taken = ledger.take_live(&user("alice")).expect("alice is live");
    assert_eq!(taken.fake_ip, ip(5));
    assert!(ledger.live(&user("alice")).is_none());
    assert_eq!(
        ledger.held(0),
        1,
        "the slot stays held while the session is stopped"
    );
    assert!(!ledger.take_slot(0, now));
    assert!(ledger.is_reserved(ip(5)) && ledger.in_use(0, ip(5)));
    ledger.release_fake_ip(ip(5));
    ledger.release_slot(0);
    assert!(ledger.take_slot(0, now));
    assert!(ledger.take_live(&user("bob")).is_none());
}

#[test]
fn fake_addresses_are_unique_and_skip_special_and_watched_ones() {
    let now = Instant::now();
    let mut ledger = Ledger::new([1]);
    let first = ledger.reserve_fake_ip();
    assert_eq!(first, ip(1), "198.18.0.0 is never handed out");
    assert!(is_pool_fake_ip(&first.to_string()));
    assert_ne!(ledger.reserve_fake_ip(), first);
    // .255 and watched addresses are skipped.
    ledger.set_next_fake_ip(255);
    ledger.note_unanswered(0, Ipv4Addr::new(198, 18, 1, 0), now + Duration::from_secs(5));
    assert_eq!(ledger.reserve_fake_ip(), Ipv4Addr::new(198, 18, 1, 1));
    // So are live ones, and the range wraps around to its start.
    ledger.set_next_fake_ip(super::FAKE_IP_COUNT - 2);
    ledger.make_live(live("alice", 0, "1", Ipv4Addr::new(198, 19, 255, 254)));
    ledger.release_fake_ip(first);
    assert_eq!(ledger.reserve_fake_ip(), first);
    assert_eq!(ledger.reserved_count(), 3);
}

#[test]
fn live_sessions_are_found_and_removed_per_host() {
    let mut ledger = Ledger::new([2, 2]);
    ledger.restore_live(live("alice", 0, "1", ip(1)));
    ledger.restore_live(live("bob", 0, "2", ip(2)));
    ledger.restore_live(live("carol", 1, "1", ip(3)));
    assert_eq!(ledger.user_of(0, "1"), Some(user("alice")));
    assert_eq!(ledger.user_of(1, "1"), Some(user("carol")));
    assert_eq!(ledger.user_of(1, "2"), None);
    assert_eq!(ledger.live_per_host(), [2, 1]);
    assert_eq!(ledger.known_ids(0).len(), 2);
    assert!(ledger.in_use(0, ip(2)) && !ledger.in_use(1, ip(2)));
    let lost = ledger.remove_live(0, |l| l.host_session_id() == Some("2"));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].session.user, user("bob"));
    assert_eq!(ledger.remove_live(0, |_| true).len(), 1);
    assert_eq!(ledger.live_per_host(), [0, 1]);
    assert!(!ledger.is_idle());
    ledger
        .live_mut(&user("carol"))
        .expect("carol is live")
        .session
        .phase = crate::model::SessionPhase::Paused;
    assert_eq!(
        ledger.live(&user("carol")).map(|l| l.session.phase),
        Some(crate::model::SessionPhase::Paused)
    );
}

#[test]
fn a_stopped_late_session_is_forgotten() {
    let now = Instant::now();
    let mut ledger = Ledger::new([1]);
    ledger.note_unanswered(0, ip(9), now + Duration::from_secs(5));
    ledger.note_unanswered(0, ip(9), now + Duration::from_secs(8));
    assert_eq!(ledger.unanswered(0, now), [ip(9)], "noted once");
    ledger.forget_unanswered(0, ip(9));
    assert!(ledger.unanswered(0, now).is_empty());
    assert!(ledger.take_slot(0, now));
}
