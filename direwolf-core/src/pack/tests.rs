use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::placement::session_url;
use super::*;
use crate::conformance::LauncherFixture;
use crate::ids::{AesKey, Fingerprint, RiKeyId};
use crate::memory::{InMemoryAppCatalog, InMemorySessionStore};
use crate::model::{App, SessionPhase, StreamKeys, VideoMode};
use crate::relay::RelayConfig;
use crate::stream_host::{HostBehaviour, HostSessionRequest, InMemoryStreamHost};

/// An in-memory host named `name`.
fn host(name: &str) -> Arc<InMemoryStreamHost> {
    Arc::new(InMemoryStreamHost::new(name))
}

/// Waits until `host` has received `n` `add_session` calls in all; fails the test after 5 s.
async fn received_adds(host: &InMemoryStreamHost, n: u32, what: &str) {
    let mut calls = host.add_calls();
    within(what, calls.wait_for(|&seen| seen >= n))
        .await
        .expect("the sender lives in the host");
}

/// Whether no session is live.
fn idle(pool: &WolfPool) -> bool {
    pool.pack.ledger.lock().is_idle()
}

/// A port range of its own for each test, so tests can run in parallel.
fn port_range() -> std::ops::RangeInclusive<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 30_000 + NEXT.fetch_add(1, Ordering::Relaxed) * 200 + (std::process::id() % 50) as u16 * 40;
    base..=base + 39
}

fn app(id: u32) -> AppId {
    AppId::new(id).unwrap()
}

struct Fixture {
    pool: WolfPool,
    sessions: Arc<InMemorySessionStore>,
    apps: Arc<InMemoryAppCatalog>,
    relay: Relay,
}

async fn fixture(hosts: Vec<(Arc<InMemoryStreamHost>, usize)>, config: PoolConfig) -> Fixture {
    let sessions = Arc::new(InMemorySessionStore::default());
    let apps = Arc::new(InMemoryAppCatalog::with_apps([
        (App::new(app(1), "Desktop").unwrap(), None),
        (App::new(app(2), "Steam").unwrap(), None),
    ]));
    let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), port_range())).unwrap();
    let pool = start(hosts, relay.clone(), sessions.clone(), apps.clone(), config).await;
    Fixture {
        pool,
        sessions,
        apps,
        relay,
    }
}

async fn start(
    hosts: Vec<(Arc<InMemoryStreamHost>, usize)>,
    relay: Relay,
    sessions: Arc<InMemorySessionStore>,
    apps: Arc<InMemoryAppCatalog>,
    config: PoolConfig,
) -> WolfPool {
    let hosts = hosts
        .into_iter()
        .map(|(host, capacity)| PoolHost::new(host, "127.0.0.1".parse().unwrap(), capacity))
        .collect();
    WolfPool::start(hosts, relay, sessions, apps, config)
        .await
        .unwrap()
}

fn request(user: &str, app_id: u32) -> LaunchRequest {
    LaunchRequest {
        user: user.parse().unwrap(),
        pairing: Fingerprint::of_der(user.as_bytes()),
        app: app(app_id),
        client_ip: "127.0.0.1".parse().unwrap(),
        server_ip: "127.0.0.1".parse().unwrap(),
        mode: VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: StreamKeys {
            aes_key: AesKey::new([app_id as u8; 16]),
            aes_iv: RiKeyId::from_bits(app_id),
        },
        hdr: false,
        host_audio: false,
        gamepads: 0,
    }
}

fn resume_request(user: &str, key: u8) -> ResumeRequest {
    ResumeRequest {
        user: user.parse().unwrap(),
        pairing: Fingerprint::of_der(user.as_bytes()),
        client_ip: "127.0.0.1".parse().unwrap(),
        server_ip: "127.0.0.1".parse().unwrap(),
        keys: StreamKeys {
            aes_key: AesKey::new([key; 16]),
            aes_iv: RiKeyId::from_bits(99),
        },
        surround_audio_info: None,
    }
}

/// Polls `check` until it holds; fails the test after 5 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn user(name: &str) -> UserName {
    name.parse().unwrap()
}

/// Awaits `future`; fails the test after 5 s saying what did not happen.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Slots of host `index` held by placements in progress or sessions being stopped.
fn held(pool: &WolfPool, index: usize) -> usize {
    pool.pack.ledger.lock().held(index)
}

#[tokio::test]
async fn launch_places_on_the_least_loaded_host_and_relays() {
    let (a, b) = (host("a"), host("b"));
    let f = fixture(vec![(a.clone(), 2), (b.clone(), 2)], PoolConfig::default()).await;
    let first = f.pool.launch(request("alice", 1)).await.unwrap();
    let second = f.pool.launch(request("bob", 2)).await.unwrap();
    assert_eq!(
        (a.session_count(), b.session_count()),
        (1, 1),
        "sessions spread over both hosts"
    );
    assert!(
        first.session_url.starts_with("rtsp://127.0.0.1:"),
        "{}",
        first.session_url
    );
    assert_ne!(
        first.session_url, second.session_url,
        "each session has its own relay port"
    );
    assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
    assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(2)));
    assert_eq!(f.pool.current_app(&user("carol")).await, None);
    let stored = f.sessions.list().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|s| s.phase == SessionPhase::WaitForPing && s.placement.is_some())
    );
    // The host got the keys, a fake IP from the pool's range and the relay's address.
    let sent = &a.requests()[0];
    assert!(is_pool_fake_ip(&sent.rtsp_fake_ip.to_string()));
    assert_eq!(sent.client_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(sent.audio_channels, 2);
    assert_ne!(a.requests()[0].rtsp_fake_ip, b.requests()[0].rtsp_fake_ip);
    assert_eq!(f.relay.allocator().in_use(), 2);
}

#[tokio::test]
async fn a_new_launch_replaces_the_users_session() {
    let a = host("a");
    let f = fixture(vec![(a.clone(), 4)], PoolConfig::default()).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    f.pool.launch(request("alice", 2)).await.unwrap();
    assert_eq!(a.session_count(), 1, "the old session was stopped on the host");
    assert_eq!(f.sessions.list().await.unwrap().len(), 1);
    assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(2)));
    assert_eq!(f.relay.allocator().in_use(), 1, "the old relay ports were freed");
}

#[tokio::test]
async fn failing_hosts_are_skipped_and_full_pools_say_so() {
    let (a, b) = (host("a"), host("b"));
    a.set_behaviour(HostBehaviour::Down);
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!(
        (a.session_count(), b.session_count()),
        (0, 1),
        "the down host was skipped"
    );
    // b is full and a is down: the client gets a message, nothing leaks.
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(f.relay.allocator().in_use(), 1);
    assert_eq!(f.sessions.list().await.unwrap().len(), 1);
    // A refusing host fails the launch with its message.
    b.set_behaviour(HostBehaviour::Refuse);
    a.set_behaviour(HostBehaviour::Refuse);
    f.pool.cancel(&user("alice")).await.unwrap();
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
    assert_eq!(f.relay.allocator().in_use(), 0);
}

#[tokio::test]
async fn unknown_apps_are_refused() {
    let f = fixture(vec![(host("a"), 1)], PoolConfig::default()).await;
    let error = f.pool.launch(request("alice", 9)).await.unwrap_err();
    assert!(matches!(error, LaunchError::UnknownApp(id) if id == app(9)));
    assert!(f.apps.get(app(1)).await.unwrap().is_some());
}

#[tokio::test]
async fn cancel_frees_everything_at_once() {
    let a = host("a");
    let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    f.pool.cancel(&user("alice")).await.unwrap();
    assert_eq!(
        f.pool.current_app(&user("alice")).await,
        None,
        "FREE as soon as cancel returns"
    );
    assert_eq!(a.session_count(), 0);
    assert!(f.sessions.list().await.unwrap().is_empty());
    assert_eq!(f.relay.allocator().in_use(), 0);
    // Cancelling with nothing running succeeds.
    f.pool.cancel(&user("alice")).await.unwrap();
}

#[tokio::test]
async fn sessions_the_host_ends_are_ended() {
    let a = host("a");
    let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    let id = a.session_ids()[0].clone();
    a.end_session(&id);
    let pool = f.pool.clone();
    eventually("the pool ends the session", || {
        idle(&pool) && f.relay.allocator().in_use() == 0
    })
    .await;
    assert!(f.sessions.list().await.unwrap().is_empty());
    assert_eq!(f.pool.current_app(&user("alice")).await, None);
}

#[tokio::test]
async fn resume_rekeys_on_the_same_host() {
    let (a, b) = (
        Arc::new(InMemoryStreamHost::new("a").with_shared_ids()),
        host("b"),
    );
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
    assert!(matches!(
        f.pool.resume(resume_request("alice", 7)).await,
        Err(LaunchError::NotRunning)
    ));
    let launched = f.pool.launch(request("alice", 1)).await.unwrap();
    let resumed = f.pool.resume(resume_request("alice", 7)).await.unwrap();
    assert_eq!(launched.session, resumed.session, "the same direwolf session");
    assert_eq!(
        (a.session_count(), b.session_count()),
        (1, 0),
        "still on the same host"
    );
    assert_eq!(
        a.requests()[0].keys.aes_key,
        AesKey::new([7; 16]),
        "the host has the new keys"
    );
    // The stop event of the replaced host session carries the same (constant) id: it must not
    // end the resumed session.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
    assert_eq!(
        f.sessions
            .get(&resumed.session)
            .await
            .unwrap()
            .unwrap()
            .keys
            .aes_key,
        AesKey::new([7; 16])
    );
    assert_eq!(f.relay.allocator().in_use(), 1);
}

#[tokio::test]
async fn a_restart_restores_live_sessions_and_drops_dead_ones() {
    let a = host("a");
    let sessions = Arc::new(InMemorySessionStore::default());
    let apps = Arc::new(InMemoryAppCatalog::with_apps([(
        App::new(app(1), "Desktop").unwrap(),
        None,
    )]));
    let range = port_range();
    let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), range.clone())).unwrap();
    let pool = start(
        vec![(a.clone(), 4)],
        relay.clone(),
        sessions.clone(),
        apps.clone(),
        PoolConfig::default(),
    )
    .await;
    let kept = pool.launch(request("alice", 1)).await.unwrap();
    pool.launch(request("bob", 1)).await.unwrap();
    // direwolf "crashes": its relay goes away; meanwhile bob's session ends on the host and an
    // orphan appears (a session added but never recorded).
    relay.shutdown();
    drop(pool);
    // The aborted relay tasks close their sockets when they are next polled.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bob_id = a.session_ids()[1].clone();
    a.end_session(&bob_id);
    let orphan = HostSessionRequest {
        rtsp_fake_ip: "198.18.200.1".parse().unwrap(),
        ..a.requests()[0].clone()
    };
    a.insert_session("orphan", orphan);
    // A foreign session (not in direwolf's fake-IP range) must be left alone.
    let foreign = HostSessionRequest {
        rtsp_fake_ip: "10.1.2.3".parse().unwrap(),
        ..a.requests()[0].clone()
    };
    a.insert_session("foreign", foreign);

    let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), range)).unwrap();
    let pool = start(
        vec![(a.clone(), 4)],
        relay.clone(),
        sessions.clone(),
        apps,
        PoolConfig::default(),
    )
    .await;
    assert_eq!(
        pool.current_app(&user("alice")).await,
        Some(app(1)),
        "alice's session is restored"
    );
    assert_eq!(
        pool.current_app(&user("bob")).await,
        None,
        "bob's ended while direwolf was down"
    );
    let stored = sessions.list().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, kept.session);
    let ids: Vec<String> = a.session_ids();
    assert!(
        !ids.contains(&"orphan".to_owned()),
        "the orphan was stopped: {ids:?}"
    );
    assert!(
        ids.contains(&"foreign".to_owned()),
        "foreign sessions are left alone: {ids:?}"
    );
    // The relay listens on the same RTSP port as before.
    let port: u16 = kept.session_url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
        "port {port} is relayed again"
    );
}

#[tokio::test]
async fn a_launch_nobody_waits_for_is_rolled_back() {
    let a = host("a");
    a.set_behaviour(HostBehaviour::Slow(Duration::from_millis(300)));
    let config = PoolConfig {
        launch_deadline: Duration::from_millis(100),
        host_call_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 1)], config).await;
    let error = f.pool.launch(request("alice", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Timeout), "{error:?}");
    let pool = f.pool.clone();
    a.set_behaviour(HostBehaviour::Normal);
    eventually("the late launch is rolled back", || {
        a.session_count() == 0 && idle(&pool) && f.relay.allocator().in_use() == 0
    })
    .await;
    assert!(f.sessions.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_session_created_after_its_add_was_given_up_is_stopped() {
    let (a, b) = (host("a"), host("b"));
    let config = PoolConfig {
        host_call_timeout: Duration::from_millis(100),
        host_lost_after: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0));
    let fake_ip = a.requests()[0].rtsp_fake_ip;
    // The resume re-adds on a, which answers too late, then moves to b with the same address.
    a.set_behaviour(HostBehaviour::Late(Duration::from_millis(300)));
    f.pool.resume(resume_request("alice", 7)).await.unwrap();
    assert_eq!(
        b.requests()[0].rtsp_fake_ip,
        fake_ip,
        "a resume keeps its address"
    );
    let pool = f.pool.clone();
    eventually("a creates the late session and the pool stops it", || {
        a.late_sessions() == 1 && a.session_count() == 0
    })
    .await;
    assert_eq!(b.session_count(), 1, "the resumed session on b is untouched");
    assert_eq!(pool.current_app(&user("alice")).await, Some(app(1)));
    assert_eq!(f.relay.allocator().in_use(), 1);
    // A new launch does not reuse an address the pool still watches for.
    let watched = watched(&pool, 0);
    assert!(
        watched.is_empty(),
        "the stopped session is forgotten: {watched:?}"
    );
    let mut ledger = pool.pack.ledger.lock();
    ledger.note_unanswered(
        0,
        Ipv4Addr::new(198, 18, 0, 250),
        Instant::now() + Duration::from_secs(45),
    );
    ledger.set_next_fake_ip(250);
    let next = ledger.reserve_fake_ip();
    assert_ne!(next, Ipv4Addr::new(198, 18, 0, 250));
    ledger.release_fake_ip(next);
}

/// The fake RTSP addresses the pool watches on host `index`.
fn watched(pool: &WolfPool, index: usize) -> Vec<Ipv4Addr> {
    pool.pack.ledger.lock().unanswered(index, Instant::now())
}

#[tokio::test]
async fn a_late_session_pending_on_a_host_counts_against_its_capacity() {
    let (a, b) = (
        Arc::new(InMemoryStreamHost::new("a").with_shared_ids()),
        host("b"),
    );
    let config = PoolConfig {
        host_call_timeout: Duration::from_millis(100),
        host_lost_after: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
    // a gets sessions/add but does not answer (it creates the session 400 ms later); b is
    // down and never gets it.
    a.set_behaviour(HostBehaviour::NoAnswer(Duration::from_millis(400)));
    b.set_behaviour(HostBehaviour::Down);
    let error = f.pool.launch(request("alice", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(watched(&f.pool, 0).len(), 1, "a's late session is watched for");
    assert!(watched(&f.pool, 1).is_empty(), "b never got the request");
    // a answers quickly again, but its late session is still to come: with capacity 1 it
    // must get no other session (on Wolf the two would share one id).
    a.set_behaviour(HostBehaviour::Normal);
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(a.adds(), 1, "bob was not sent to a");
    assert_eq!(f.relay.allocator().in_use(), 0);
    assert!(f.sessions.list().await.unwrap().is_empty());
    // The late session shows up and is stopped: a takes launches again.
    let pool = f.pool.clone();
    eventually("a creates the late session and the pool stops it", || {
        a.late_sessions() == 1 && a.session_count() == 0 && watched(&pool, 0).is_empty()
    })
    .await;
    f.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0), "bob runs on a");
    assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(1)));
    // A resume of bob stays on a (its own slot) while b is still down.
    f.pool.resume(resume_request("bob", 7)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0));
}

#[tokio::test]
async fn a_late_session_that_never_comes_holds_its_host_only_for_the_watch_window() {
    let (a, b) = (host("a"), host("b"));
    let window = Duration::from_millis(600);
    let config = PoolConfig {
        launch_deadline: window,
        host_call_timeout: Duration::from_millis(100),
        host_lost_after: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], config).await;
    a.set_behaviour(HostBehaviour::Lost);
    f.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!(
        (a.session_count(), b.session_count()),
        (0, 1),
        "alice fails over to b"
    );
    let given_up = Instant::now();
    a.set_behaviour(HostBehaviour::Normal);
    // b is full and a may still create alice's first attempt.
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("busy"), "{error}");
    assert_eq!(a.adds(), 1);
    // Once the window has passed, a has room again.
    tokio::time::sleep(window.saturating_sub(given_up.elapsed()) + Duration::from_millis(50)).await;
    f.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 1));
    assert!(watched(&f.pool, 0).is_empty());
    // An unreachable host is not watched: the request never reached it.
    f.pool.cancel(&user("bob")).await.unwrap();
    a.set_behaviour(HostBehaviour::Down);
    f.pool.launch(request("carol", 1)).await.unwrap_err();
    assert_eq!(a.adds(), 3);
    assert!(watched(&f.pool, 0).is_empty());
}

#[tokio::test]
async fn pending_late_sessions_and_live_ones_share_a_hosts_capacity() {
    let (a, b) = (host("a"), host("b"));
    let config = PoolConfig {
        host_call_timeout: Duration::from_millis(100),
        host_lost_after: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 2), (b.clone(), 1)], config).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0));
    // carol's launch: b is down, a does not answer (and creates her session much later).
    b.set_behaviour(HostBehaviour::Down);
    a.set_behaviour(HostBehaviour::NoAnswer(Duration::from_secs(30)));
    f.pool.launch(request("carol", 1)).await.unwrap_err();
    a.set_behaviour(HostBehaviour::Normal);
    // alice's resume re-adds in her own slot on a.
    f.pool.resume(resume_request("alice", 7)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0));
    // a (capacity 2) now holds alice and carol's pending session: dave gets no slot there.
    let adds = a.adds();
    let error = f.pool.launch(request("dave", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(a.adds(), adds, "a got no add for dave");
    assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
    assert_eq!(f.relay.allocator().in_use(), 1);
}

#[tokio::test]
async fn a_placement_in_progress_holds_its_hosts_slot_against_a_concurrent_launch() {
    let (a, b) = (host("a"), host("b"));
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
    let gate = a.hold_adds();
    let pool = f.pool.clone();
    let alice = tokio::spawn(async move { pool.launch(request("alice", 1)).await });
    received_adds(&a, 1, "a to get alice's sessions/add").await;
    assert_eq!(held(&f.pool, 0), 1, "alice's placement holds a's only slot");
    // a has not answered yet: bob must go to b, not wait on (and collide with alice on) a.
    let bob = within(
        "bob's launch, which must not go to a",
        f.pool.launch(request("bob", 1)),
    )
    .await
    .unwrap();
    assert_eq!((a.adds(), b.adds()), (1, 1), "bob was not sent to a");
    assert_eq!((a.session_count(), b.session_count()), (0, 1));
    gate.add_permits(1);
    let alice = within("alice's launch", alice)
        .await
        .expect("launch task")
        .unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 1));
    assert_ne!(alice.session_url, bob.session_url);
    assert_eq!(f.pool.current_app(&user("alice")).await, Some(app(1)));
    assert_eq!(f.pool.current_app(&user("bob")).await, Some(app(1)));
    assert_eq!((held(&f.pool, 0), held(&f.pool, 1)), (0, 0), "slots given back");
    assert_eq!(f.relay.allocator().in_use(), 2);
}

#[tokio::test]
async fn a_launch_finding_the_only_slot_taken_by_a_placement_in_progress_is_told_busy() {
    let a = host("a");
    let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
    let gate = a.hold_adds();
    let pool = f.pool.clone();
    let alice = tokio::spawn(async move { pool.launch(request("alice", 1)).await });
    received_adds(&a, 1, "a to get alice's sessions/add").await;
    let error = within("bob's launch", f.pool.launch(request("bob", 1)))
        .await
        .unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("busy"), "{error}");
    assert_eq!(a.adds(), 1, "no second sessions/add on a");
    assert_eq!(f.relay.allocator().in_use(), 0, "bob got no relay ports");
    gate.add_permits(1);
    within("alice's launch", alice)
        .await
        .expect("launch task")
        .unwrap();
    assert_eq!(a.session_count(), 1);
    assert_eq!(
        f.sessions.list().await.unwrap().len(),
        1,
        "only alice's session is stored"
    );
    assert_eq!(f.pool.current_app(&user("bob")).await, None);
    assert_eq!(held(&f.pool, 0), 0);
}

#[tokio::test]
async fn a_resume_keeps_its_hosts_slot_while_it_re_adds_there() {
    let (a, b) = (
        Arc::new(InMemoryStreamHost::new("a").with_shared_ids()),
        host("b"),
    );
    let f = fixture(vec![(a.clone(), 1), (b.clone(), 1)], PoolConfig::default()).await;
    f.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!((a.session_count(), b.session_count()), (1, 0));
    let gate = a.hold_adds();
    let pool = f.pool.clone();
    let resume = tokio::spawn(async move { pool.resume(resume_request("alice", 7)).await });
    received_adds(&a, 2, "a to get the resume's sessions/add").await;
    assert_eq!(a.session_count(), 0, "the old host session was stopped");
    // alice's session is not live while it is re-added, but its slot on a is held: bob must
    // go to b (on a he would get the same client-less session id as alice).
    within(
        "bob's launch, which must not go to a",
        f.pool.launch(request("bob", 1)),
    )
    .await
    .unwrap();
    assert_eq!((a.adds(), b.adds()), (2, 1), "bob was not sent to a");
    gate.add_permits(1);
    within("alice's resume", resume)
        .await
        .expect("resume task")
        .unwrap();
    assert_eq!(
        (a.session_count(), b.session_count()),
        (1, 1),
        "alice stays on a, bob runs on b"
    );
    assert_eq!(a.requests()[0].keys.aes_key, AesKey::new([7; 16]));
    assert_eq!((held(&f.pool, 0), held(&f.pool, 1)), (0, 0));
    assert_eq!(f.relay.allocator().in_use(), 2);
}

#[tokio::test]
async fn a_launch_the_client_gave_up_on_holds_the_slot_until_rolled_back() {
    let a = host("a");
    let f = fixture(vec![(a.clone(), 1)], PoolConfig::default()).await;
    let gate = a.hold_adds();
    {
        let launch = f.pool.launch(request("alice", 1));
        tokio::pin!(launch);
        let mut calls = a.add_calls();
        tokio::select! {
            biased;
            outcome = &mut launch => panic!("the launch ended while its add was blocked: {outcome:?}"),
            seen = within("a to get alice's sessions/add", calls.wait_for(|&n| n >= 1)) => {
                seen.expect("the sender lives in the host");
            }
        }
        // The client gives up: its launch future is dropped here.
    }
    // The add is still in flight and may yet succeed: a stays taken.
    assert_eq!(held(&f.pool, 0), 1);
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(a.adds(), 1);
    // a answers: the launch completes, nobody takes the outcome, and it is rolled back.
    gate.add_permits(1);
    let pool = f.pool.clone();
    eventually(
        "the abandoned launch is rolled back and its slot given back",
        || {
            a.adds() == 1
                && a.session_count() == 0
                && idle(&pool)
                && f.relay.allocator().in_use() == 0
                && held(&pool, 0) == 0
        },
    )
    .await;
    assert!(f.sessions.list().await.unwrap().is_empty());
    a.release_adds();
    f.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!(a.session_count(), 1, "bob runs on a");
}

#[tokio::test]
async fn a_placement_dropped_mid_add_gives_its_slot_back_to_a_watched_late_session() {
    let a = host("a");
    let config = PoolConfig {
        host_lost_after: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let f = fixture(vec![(a.clone(), 1)], config).await;
    let _gate = a.hold_adds();
    let pack = f.pool.pack.clone();
    {
        // The placement's own future (the detached launch task's work), dropped mid-await,
        // as when its task is aborted.
        let launch = pack.launch(request("alice", 1));
        tokio::pin!(launch);
        let mut calls = a.add_calls();
        tokio::select! {
            biased;
            outcome = &mut launch => panic!("the launch ended while its add was blocked: {outcome:?}"),
            seen = within("a to get alice's sessions/add", calls.wait_for(|&n| n >= 1)) => {
                seen.expect("the sender lives in the host");
            }
        }
        assert_eq!(held(&f.pool, 0), 1);
        assert_eq!(f.pool.pack.ledger.lock().reserved_count(), 1);
    }
    assert_eq!(held(&f.pool, 0), 0, "the dropped placement's slot is given back");
    assert!(f.pool.pack.ledger.lock().reserved_count() == 0, "its address too");
    // The add had been sent: a may still create the session, which is watched for and
    // counts against a's capacity meanwhile.
    let late = watched(&f.pool, 0);
    assert_eq!(late.len(), 1, "{late:?}");
    a.release_adds();
    let error = f.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(error, LaunchError::Unavailable { .. }), "{error:?}");
    assert_eq!(a.adds(), 1);
    // a creates it late: the pool stops it, and a has room again.
    a.insert_session(
        "late",
        HostSessionRequest {
            client_ip: "127.0.0.1".parse().unwrap(),
            keys: request("alice", 1).keys,
            rtsp_fake_ip: late[0],
            mode: VideoMode::DEFAULT,
            audio_channels: 2,
            host_app_id: None,
        },
    );
    let pool = f.pool.clone();
    eventually("the late session is stopped and no longer watched", || {
        a.session_count() == 0 && watched(&pool, 0).is_empty()
    })
    .await;
    f.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!(a.session_count(), 1, "bob runs on a");
    assert_eq!(held(&f.pool, 0), 0);
}

#[test]
fn fake_ips_and_urls() {
    assert!(is_pool_fake_ip("198.18.0.1"));
    assert!(is_pool_fake_ip("198.19.255.254"));
    assert!(!is_pool_fake_ip("198.20.0.1"));
    assert!(!is_pool_fake_ip("10.0.0.1"));
    assert!(!is_pool_fake_ip("not an ip"));
    assert_eq!(
        session_url("192.0.2.1".parse().unwrap(), 40000),
        "rtsp://192.0.2.1:40000"
    );
    assert_eq!(
        session_url("::ffff:192.0.2.1".parse().unwrap(), 1),
        "rtsp://192.0.2.1:1"
    );
    assert_eq!(
        session_url("2001:db8::1".parse().unwrap(), 1),
        "rtsp://[2001:db8::1]:1"
    );
}

#[tokio::test]
async fn invalid_pools_are_refused() {
    let sessions = Arc::new(InMemorySessionStore::default());
    let apps = Arc::new(InMemoryAppCatalog::default());
    let relay = Relay::new(RelayConfig::new("127.0.0.1".parse().unwrap(), port_range())).unwrap();
    let none = WolfPool::start(
        vec![],
        relay.clone(),
        sessions.clone(),
        apps.clone(),
        PoolConfig::default(),
    );
    assert!(matches!(none.await, Err(Error::Invalid { .. })));
    let a = host("a");
    let hosts = vec![
        PoolHost::new(a.clone(), "127.0.0.1".parse().unwrap(), 1),
        PoolHost::new(a, "127.0.0.1".parse().unwrap(), 1),
    ];
    let twice = WolfPool::start(hosts, relay, sessions, apps, PoolConfig::default());
    assert!(matches!(twice.await, Err(Error::Invalid { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_launcher_suite() {
    let (a, b) = (host("a"), host("b"));
    let f = fixture(vec![(a.clone(), 2), (b.clone(), 2)], PoolConfig::default()).await;
    let mut fixture = LauncherFixture::streaming([app(1), app(2)], app(3));
    fixture.sessions_at_once = 4;
    crate::conformance::launcher(&f.pool, &fixture).await;
    assert_eq!(
        (a.session_count(), b.session_count()),
        (0, 0),
        "the suite ends what it starts"
    );
    assert_eq!(f.relay.allocator().in_use(), 0);
}
