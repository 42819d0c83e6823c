//! The Wolf pool end to end in one process: [`WolfPool`] over two [`WolfHost`]s talking to two
//! fake Wolfs (API on unix sockets, streaming side on 127.0.0.1 ephemeral ports), the real relay,
//! and a small RTSP/ping client standing in for Moonlight. Covers failover at launch (Wolf down,
//! Wolf closing the connection on `sessions/add`, Wolf refusing the session, Wolf answering
//! `sessions/add` after the pool gave up, Wolf dying right after `sessions/add`, every Wolf slow,
//! a Wolf whose late session is pending getting no other session, two concurrent launches and a
//! Wolf of capacity 1 with a placement in progress) and checks that nothing leaks
//! (relay sessions, leased ports, stored sessions, Wolf sessions).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use direwolf_core::memory::{InMemoryAppCatalog, InMemorySessionStore};
use direwolf_core::model::{App, LaunchRequest, StreamKeys, VideoMode};
use direwolf_core::pack::WolfHost;
use direwolf_core::pack::{PoolConfig, PoolHost, WolfPool};
use direwolf_core::relay::{Relay, RelayConfig, WolfPorts};
use direwolf_core::{AesKey, AppId, Fingerprint, LaunchError, Launcher, RiKeyId, SessionStore};
use direwolf_wolf_client::fake::stream::StreamConfig;
use direwolf_wolf_client::fake::{Failure, FakeWolf};
use direwolf_wolf_client::{EventItem, WolfEvent};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Pack {
    _dir: tempfile::TempDir,
    wolves: Vec<FakeWolf>,
    pool: WolfPool,
    sessions: Arc<InMemorySessionStore>,
}

/// Two fake Wolfs ("a" first) and a pool over them. Wolf "b" also has a Wolf app "steam".
async fn pack(host_apps: HashMap<AppId, String>) -> Pack {
    pack_with(host_apps, |_| {}).await
}

/// [`pack`] with the pool configuration adjusted by `tune`.
async fn pack_with(host_apps: HashMap<AppId, String>, tune: impl FnOnce(&mut PoolConfig)) -> Pack {
    let dir = tempfile::tempdir().unwrap();
    let mut wolves = Vec::new();
    let mut hosts = Vec::new();
    for name in ["a", "b"] {
        let wolf = FakeWolf::builder()
            .unix(dir.path().join(format!("{name}.sock")))
            .stream(StreamConfig::ephemeral(LOCAL))
            .start()
            .await
            .unwrap();
        wolf.add_app(FakeWolf::sample_app("1", "Desktop"));
        if name == "b" {
            wolf.add_app(FakeWolf::sample_app("steam", "Steam"));
        }
        let ports = wolf.stream_ports().unwrap();
        let client = wolf
            .client_builder()
            .with_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut host = PoolHost::new(Arc::new(WolfHost::new(name, client)), LOCAL, 1);
        host.rtsp_port = ports.rtsp.port();
        host.udp_ports = WolfPorts {
            video: ports.video.port(),
            audio: ports.audio.port(),
            control: ports.control.port(),
        };
        hosts.push(host);
        wolves.push(wolf);
    }
    // A port range per test process, so parallel test binaries rarely meet (the relay skips
    // sets another program holds anyway).
    let base = 20_000 + (std::process::id() % 4000) as u16 * 8;
    let relay = Relay::new(RelayConfig::new(LOCAL, base..=base + 63)).unwrap();
    let sessions = Arc::new(InMemorySessionStore::default());
    let apps = Arc::new(InMemoryAppCatalog::with_apps([
        (App::new(AppId::new(1).unwrap(), "Desktop").unwrap(), None),
        (App::new(AppId::new(2).unwrap(), "Steam").unwrap(), None),
    ]));
    let mut config = PoolConfig {
        host_call_timeout: Duration::from_secs(2),
        host_lost_after: Duration::from_millis(600),
        host_apps,
        ..PoolConfig::default()
    };
    tune(&mut config);
    let pool = WolfPool::start(hosts, relay, sessions.clone(), apps, config)
        .await
        .unwrap();
    Pack {
        _dir: dir,
        wolves,
        pool,
        sessions,
    }
}

fn request(user: &str, app: u32) -> LaunchRequest {
    LaunchRequest {
        user: user.parse().unwrap(),
        pairing: Fingerprint::of_der(user.as_bytes()),
        app: AppId::new(app).unwrap(),
        client_ip: LOCAL,
        server_ip: LOCAL,
        mode: VideoMode::DEFAULT,
        surround_audio_info: 196_610,
        keys: StreamKeys {
            aes_key: AesKey::new([7; 16]),
            aes_iv: RiKeyId::from_bits(42),
        },
        hdr: false,
        host_audio: false,
        gamepads: 0,
    }
}

async fn rtsp(port: u16, request: &str) -> String {
    let addr = SocketAddr::new(LOCAL, port);
    let mut s = timeout(T, TcpStream::connect(addr))
        .await
        .expect("connecting to the relay's RTSP port timed out")
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the relay did not close the RTSP connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn header<'a>(resp: &'a str, name: &str) -> &'a str {
    resp.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {resp:?}"))
}

/// What Moonlight does after `/launch`, trimmed: OPTIONS and the audio SETUP through the relay
/// (with `Host: 0.0.0.0`, the low-bitrate case), then a ping from a fresh socket; returns the
/// number of RTP packets received back.
async fn stream_through(url: &str) -> usize {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let r = rtsp(
        port,
        "OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nCSeq: 1\r\nHost: 0.0.0.0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 200 OK"), "{r}");
    let setup = rtsp(
        port,
        "SETUP streamid=audio/0/0 RTSP/1.0\r\nCSeq: 2\r\nHost: 0.0.0.0\r\n\r\n",
    )
    .await;
    assert!(setup.starts_with("RTSP/1.0 200 OK"), "{setup}");
    let audio: u16 = header(&setup, "Transport")
        .strip_prefix("server_port=")
        .unwrap()
        .parse()
        .unwrap();
    let mut ping = header(&setup, "X-SS-Ping-Payload").as_bytes().to_vec();
    ping.extend_from_slice(&1u32.to_be_bytes());
    let sock = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    sock.send_to(&ping, (LOCAL, audio)).await.unwrap();
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while let Ok(Ok((n, from))) = timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        assert_eq!(
            from.port(),
            audio,
            "RTP must come back from the public port pinged"
        );
        assert!(n >= 12 && buf[0] == 0x80, "not RTP");
        got += 1;
    }
    got
}

async fn assert_no_leaks(p: &Pack) {
    let relay = p.pool.relay();
    assert_eq!(relay.session_count(), 0, "relay sessions left open");
    assert_eq!(relay.allocator().in_use(), 0, "relay ports still leased");
    assert!(
        p.sessions.list().await.unwrap().is_empty(),
        "stored sessions left"
    );
    for w in &p.wolves {
        assert!(w.sessions().is_empty(), "a Wolf still runs a session");
    }
}

#[tokio::test]
async fn a_stream_reaches_its_wolf_through_the_relay_and_a_down_wolf_is_skipped() {
    let p = pack(HashMap::new()).await;
    let alice = request("alice", 1);
    let out = p.pool.launch(alice.clone()).await.unwrap();
    assert_eq!(
        p.wolves[0].sessions().len(),
        1,
        "the first launch goes to the first idle Wolf"
    );
    assert_eq!(
        stream_through(&out.session_url).await,
        3,
        "3 RTP packets per ping"
    );
    let rec = &p.wolves[0].stream_report().sessions[0];
    assert_eq!(rec.audio_pings, 1);
    assert!(
        p.wolves[1].stream_report().sessions.is_empty(),
        "the other Wolf saw nothing"
    );

    // Wolf "a" is busy (capacity 1); Wolf "b" goes down: bob cannot be placed, and nothing leaks.
    p.wolves[1].stop().await;
    let err = p.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(err, LaunchError::Unavailable { .. }), "{err:?}");
    assert_eq!(p.pool.relay().session_count(), 1, "only alice's relay is open");

    // Alice ends; Wolf "a" goes down and "b" comes back: the next launch skips "a".
    p.pool.cancel(&alice.user).await.unwrap();
    p.wolves[0].stop().await;
    p.wolves[1].restart().await.unwrap();
    let out = p.pool.launch(request("carol", 1)).await.unwrap();
    assert_eq!(p.wolves[1].sessions().len(), 1, "placed on the Wolf that is up");
    assert_eq!(stream_through(&out.session_url).await, 3);
    assert_eq!(p.wolves[1].stream_report().sessions[0].audio_pings, 1);
    p.pool.cancel(&"carol".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn a_wolf_crashing_on_sessions_add_is_skipped() {
    let p = pack(HashMap::new()).await;
    p.wolves[0].set_failure_on("/api/v1/sessions/add", Failure::CloseWithoutResponse);
    let out = p.pool.launch(request("alice", 1)).await.unwrap();
    assert!(p.wolves[0].sessions().is_empty());
    assert_eq!(
        p.wolves[1].sessions().len(),
        1,
        "the launch must fail over to the next Wolf"
    );
    assert_eq!(stream_through(&out.session_url).await, 3);
    // Whatever the order of tries: with "b" full, a second user only has "a", which fails.
    let err = p.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(err, LaunchError::Unavailable { .. }), "{err:?}");
    assert!(p.wolves[0].sessions().is_empty());
    assert_eq!(
        p.pool.relay().session_count(),
        1,
        "bob's failed launch must not leave a relay"
    );
    p.pool.cancel(&"alice".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn a_wolf_refusing_the_session_is_skipped_and_all_refusing_leaks_nothing() {
    // App 2 runs the Wolf app "steam", which only Wolf "b" has: "a" answers 500 Invalid app_id.
    let p = pack(HashMap::from([(AppId::new(2).unwrap(), "steam".to_owned())])).await;
    let out = p.pool.launch(request("alice", 2)).await.unwrap();
    assert!(p.wolves[0].sessions().is_empty());
    let placed = p.wolves[1].sessions();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].app_id.as_str(), "steam");
    assert_eq!(stream_through(&out.session_url).await, 3);
    let err = p.pool.launch(request("bob", 2)).await.unwrap_err();
    assert!(!matches!(err, LaunchError::Timeout), "{err:?}");
    assert!(p.wolves[0].sessions().is_empty(), "Wolf a refuses the app");
    assert_eq!(p.pool.relay().session_count(), 1);
    p.pool.cancel(&"alice".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;

    // Neither can: "a" refuses, "b" answers garbage (a 200 whose body is not JSON: taken as no
    // answer, the session may exist). A clear error, nothing left behind.
    p.wolves[1].set_failure_on("/api/v1/sessions/add", Failure::Garbage);
    let err = p.pool.launch(request("bob", 2)).await.unwrap_err();
    assert!(!matches!(err, LaunchError::Timeout), "{err:?}");
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn a_wolf_that_dies_and_stays_dead_loses_its_session() {
    let p = pack(HashMap::new()).await;
    let alice = request("alice", 1);
    let out = p.pool.launch(alice.clone()).await.unwrap();
    assert_eq!(stream_through(&out.session_url).await, 3);
    assert_eq!(
        p.pool.current_app(&alice.user).await,
        Some(AppId::new(1).unwrap())
    );
    p.wolves[0].stop().await;
    let ended = async {
        while p.pool.current_app(&alice.user).await.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(Duration::from_secs(5), ended)
        .await
        .expect("the session of a Wolf unreachable for host_lost_after (0.6 s) must end within 5 s");
    assert_eq!(p.pool.relay().session_count(), 0, "its relay must be closed");
    assert_eq!(p.pool.relay().allocator().in_use(), 0);
    assert!(p.sessions.list().await.unwrap().is_empty());
    // The other Wolf still takes launches.
    p.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!(p.wolves[1].sessions().len(), 1);
}

/// Follows `wolf`'s events from a client of its own (besides the pool's): the record of what
/// happened on that Wolf, whatever the timing.
async fn wolf_events(wolf: &FakeWolf) -> tokio::sync::mpsc::UnboundedReceiver<WolfEvent> {
    let before = wolf.subscribers();
    let mut stream = wolf.client().unwrap().events();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if let Ok(EventItem::Event(event)) = item
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });
    wolf.wait_for_subscribers(before + 1, T)
        .await
        .expect("the test's event stream did not connect within 10 s");
    rx
}

/// Waits for the next event `pick` accepts and returns what it picked.
async fn next_event<R>(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<WolfEvent>,
    what: &str,
    mut pick: impl FnMut(&WolfEvent) -> Option<R>,
) -> R {
    let found = async {
        while let Some(event) = events.recv().await {
            if let Some(r) = pick(&event) {
                return r;
            }
        }
        panic!("the event stream ended before {what}");
    };
    timeout(T, found)
        .await
        .unwrap_or_else(|_| panic!("timed out (10 s) waiting until {what}"))
}

/// Waits until the Wolf creates a session (`StreamSession`) and then stops it again
/// (`StopStreamEvent`); returns the session's fake RTSP address.
async fn created_then_stopped(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<WolfEvent>,
    wolf: &str,
) -> String {
    let fake_ip = next_event(
        events,
        &format!("Wolf {wolf} creates its late session"),
        |e| match e {
            WolfEvent::StreamSession(s) => Some(s.rtsp_fake_ip.clone().unwrap_or_default()),
            _ => None,
        },
    )
    .await;
    next_event(
        events,
        &format!("the pool stops Wolf {wolf}'s late session"),
        |e| matches!(e, WolfEvent::StopStream(_)).then_some(()),
    )
    .await;
    fake_ip
}

#[tokio::test]
async fn a_slow_wolf_is_skipped_and_its_late_session_is_stopped() {
    let p = pack(HashMap::new()).await;
    let mut a_events = wolf_events(&p.wolves[0]).await;
    // Wolf "a" answers sessions/add after 3 s, past the pool's 2 s host_call_timeout; it then
    // creates the session all the same (a Wolf handler runs to its end once the request is read).
    p.wolves[0].set_failure_on("/api/v1/sessions/add", Failure::Slow(Duration::from_secs(3)));
    let out = p.pool.launch(request("alice", 1)).await.unwrap();
    assert_eq!(p.wolves[1].sessions().len(), 1, "the launch fails over to b");
    assert_eq!(stream_through(&out.session_url).await, 3);
    // The late session must not be orphaned: it would hold Wolf "a" (and, having Wolf's constant
    // client-less id, make the next session there impossible to stop).
    let fake_ip = created_then_stopped(&mut a_events, "a").await;
    assert!(fake_ip.starts_with("198.1"), "{fake_ip}");
    assert!(p.wolves[0].sessions().is_empty(), "a still runs a session");
    assert_eq!(p.pool.relay().session_count(), 1, "only alice's relay is open");
    assert_eq!(
        p.pool.current_app(&"alice".parse().unwrap()).await,
        Some(AppId::new(1).unwrap()),
        "alice's session on b is untouched"
    );
    assert_eq!(p.wolves[1].sessions().len(), 1);
    p.pool.cancel(&"alice".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn a_wolf_crashing_right_after_sessions_add_loses_the_session_and_the_user_moves_on() {
    // The pool does nothing on the host after sessions/add, so "crashing mid-launch" is a Wolf
    // whose API dies right after answering, before the client's RTSP.
    let p = pack(HashMap::new()).await;
    p.wolves[0].set_failure_on("/api/v1/sessions/add", Failure::CrashAfterAnswer);
    let alice = request("alice", 1);
    p.pool.launch(alice.clone()).await.unwrap();
    assert_eq!(p.wolves[0].sessions().len(), 1, "placed on a, which then died");
    let ended = async {
        while p.pool.current_app(&alice.user).await.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(Duration::from_secs(5), ended)
        .await
        .expect("the session of a Wolf dead for host_lost_after (0.6 s) must end within 5 s");
    assert_eq!(p.pool.relay().session_count(), 0, "its relay must be closed");
    assert_eq!(p.pool.relay().allocator().in_use(), 0, "its ports must be free");
    assert!(p.sessions.list().await.unwrap().is_empty(), "no stored session");

    // The user's next launch goes to the Wolf that is up, and streams.
    let out = p.pool.launch(alice.clone()).await.unwrap();
    assert_eq!(p.wolves[1].sessions().len(), 1);
    assert_eq!(stream_through(&out.session_url).await, 3);

    // Wolf "a" comes back still holding the old session (it was only hung): the pool stops it.
    p.wolves[0].clear_failures();
    p.wolves[0].restart().await.unwrap();
    let stopped = async {
        while !p.wolves[0].sessions().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, stopped)
        .await
        .expect("the pool must stop the session a Wolf kept while unreachable within 10 s");
    assert_eq!(
        p.wolves[1].sessions().len(),
        1,
        "alice's new session is untouched"
    );
    p.pool.cancel(&alice.user).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn all_wolves_slow_fail_the_launch_in_time_and_leave_nothing() {
    // Moonlight waits 60 s for /launch (ios, the shortest; docs/protocol/moonlight-http.md
    // § Client timeouts).
    assert!(PoolConfig::default().launch_deadline < Duration::from_secs(55));
    let deadline = Duration::from_secs(3);
    let p = pack_with(HashMap::new(), |c| c.launch_deadline = deadline).await;
    let mut events = Vec::new();
    for wolf in &p.wolves {
        events.push(wolf_events(wolf).await);
        wolf.set_failure_on("/api/v1/sessions/add", Failure::Slow(Duration::from_secs(3)));
    }
    let started = std::time::Instant::now();
    let err = p.pool.launch(request("alice", 1)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, LaunchError::Timeout), "{err:?}");
    assert!(!err.to_string().is_empty());
    assert!(
        took < deadline + Duration::from_secs(1),
        "the client must get its answer at the launch deadline, got it after {took:?}"
    );
    // Both Wolfs create their session late (a at 3 s, b at 5 s): the pool stops both.
    for (wolf, events) in ["a", "b"].into_iter().zip(&mut events) {
        created_then_stopped(events, wolf).await;
    }
    assert_eq!(p.pool.current_app(&"alice".parse().unwrap()).await, None);
    assert_no_leaks(&p).await;

    // Both Wolfs take sessions again (no leftover blocks them).
    for wolf in &p.wolves {
        wolf.clear_failures();
    }
    let out = p.pool.launch(request("bob", 1)).await.unwrap();
    assert_eq!(stream_through(&out.session_url).await, 3);
    p.pool.cancel(&"bob".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn a_wolf_that_did_not_answer_gets_no_other_session_until_its_late_one_is_stopped() {
    let p = pack(HashMap::new()).await;
    let mut a_events = wolf_events(&p.wolves[0]).await;
    // Wolf "b" is down (connection refused: it never gets a request); Wolf "a" answers
    // sessions/add after 3 s, past the 2 s timeouts, and creates the session then.
    p.wolves[1].stop().await;
    p.wolves[0].set_failure_on("/api/v1/sessions/add", Failure::Slow(Duration::from_secs(3)));
    let err = p.pool.launch(request("alice", 1)).await.unwrap_err();
    assert!(matches!(err, LaunchError::Unavailable { .. }), "{err:?}");
    // Wolf "a" is quick again, but alice's session is still to come there: a session placed
    // on "a" now would share Wolf's client-less session id with it.
    p.wolves[0].clear_failures();
    let err = p.pool.launch(request("bob", 1)).await.unwrap_err();
    assert!(matches!(err, LaunchError::Unavailable { .. }), "{err:?}");
    assert!(p.wolves[0].sessions().is_empty(), "bob must not be placed on a");
    assert_eq!(p.pool.relay().session_count(), 0);
    // The late session appears and the pool stops it; then "a" takes launches again.
    let fake_ip = created_then_stopped(&mut a_events, "a").await;
    assert!(fake_ip.starts_with("198.1"), "{fake_ip}");
    let placed = async {
        loop {
            match p.pool.launch(request("bob", 1)).await {
                Ok(out) => return out,
                Err(LaunchError::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("{err:?}"),
            }
        }
    };
    let out = timeout(T, placed)
        .await
        .expect("Wolf a must take launches again within 10 s of its late session being stopped");
    let sessions = p.wolves[0].sessions();
    assert_eq!(sessions.len(), 1);
    assert_ne!(sessions[0].rtsp_fake_ip.as_deref(), Some(fake_ip.as_str()));
    assert_eq!(stream_through(&out.session_url).await, 3);
    p.pool.cancel(&"bob".parse().unwrap()).await.unwrap();
    assert_no_leaks(&p).await;
}

#[tokio::test]
async fn two_concurrent_launches_never_share_a_wolf_of_capacity_one() {
    let p = pack(HashMap::new()).await;
    // Wolf "a" answers sessions/add after 1.5 s (inside the 2 s timeouts): alice's placement is
    // in progress there meanwhile.
    p.wolves[0].set_failure_on("/api/v1/sessions/add", Failure::Slow(Duration::from_millis(1500)));
    let served = p.wolves[0].requests_served();
    let pool = p.pool.clone();
    let alice = tokio::spawn(async move { pool.launch(request("alice", 1)).await });
    // The fake Wolf has no hook on a request's arrival: poll its request count.
    let add_read = async {
        while p.wolves[0].requests_served() == served {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(T, add_read)
        .await
        .expect("Wolf a must read alice's sessions/add within 10 s");
    // bob launches while alice's add is unanswered: a's only slot is taken, so bob goes to b
    // (on a, the two client-less sessions would share one Wolf session id).
    let bob = timeout(T, p.pool.launch(request("bob", 1)))
        .await
        .expect("bob's launch must not wait for Wolf a")
        .unwrap();
    assert_eq!(p.wolves[1].sessions().len(), 1, "bob runs on b");
    let alice = timeout(T, alice)
        .await
        .expect("alice's launch must end within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.wolves[0].sessions().len(), p.wolves[1].sessions().len()),
        (1, 1),
        "one session per Wolf"
    );
    assert_eq!(stream_through(&alice.session_url).await, 3);
    assert_eq!(stream_through(&bob.session_url).await, 3);
    assert_eq!(
        p.wolves[0].stream_report().sessions.len(),
        1,
        "alice streamed from a"
    );
    assert_eq!(
        p.wolves[1].stream_report().sessions.len(),
        1,
        "bob streamed from b"
    );
    p.wolves[0].clear_failures();
    for user in ["alice", "bob"] {
        p.pool.cancel(&user.parse().unwrap()).await.unwrap();
    }
    assert_no_leaks(&p).await;
}
