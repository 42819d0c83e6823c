//! Leader election on the in-process API-server emulator, with a 2 s lease (renew deadline
//! 1.2 s, retry 200 ms: short, yet with room for a loaded test machine): two candidates elect exactly one leader; a crashed leader is replaced
//! after the lease duration; a leader cut off from the API server steps down before anyone can
//! take over; a released Lease is taken over at once; expiry goes by the observer's clock, not
//! the holder's `renewTime`; injected 409, 429, 500 and dropped connections never make two
//! leaders.
#![cfg(feature = "emulator")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use direwolf_k8s::emulator::{ApiServerEmulator, FaultRule};
use direwolf_k8s::leader::{LeaderElector, Leadership, LeaseTiming};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);
/// Room for scheduling delays on a loaded machine in the bounds below.
const SLACK: Duration = Duration::from_millis(300);
const NS: &str = "default";
const LEASE: &str = "direwolf-controller";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

fn timing() -> LeaseTiming {
    LeaseTiming {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1200),
        retry_period: Duration::from_millis(200),
    }
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("direwolf_k8s=debug")
        .with_test_writer()
        .try_init();
}

fn elect(client: kube::Client, identity: &str) -> Leadership {
    LeaderElector::new(client, NS, LEASE, identity, timing())
        .expect("a valid elector")
        .spawn()
}

async fn emulator() -> ApiServerEmulator {
    support::within(WAIT, "emulator start", ApiServerEmulator::start())
        .await
        .expect("emulator starts")
}

async fn lease(client: &kube::Client) -> LeaseSpec {
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    support::within(WAIT, "get the lease", api.get(LEASE))
        .await
        .expect("the lease exists")
        .spec
        .expect("the lease has a spec")
}

/// Waits until `leadership` leads (a timeout means no election happened).
async fn leads(what: &str, leadership: &Leadership) -> Instant {
    let mut rx = leadership.subscribe();
    support::within(WAIT, what, rx.wait_for(|leading| *leading))
        .await
        .expect("the elector runs");
    Instant::now()
}

/// One change of a candidate's leading flag: when, whose, to what.
type Change = (Instant, &'static str, bool);

/// Waits until `leadership` no longer leads (a timeout means it never stepped down).
async fn steps_down(what: &str, leadership: &Leadership) {
    let mut rx = leadership.subscribe();
    let _ = support::within(WAIT, what, rx.wait_for(|leading| !*leading)).await;
}

/// Every change of every candidate's leading flag, in the order seen.
#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<Vec<Change>>>);

impl Timeline {
    fn track(&self, who: &'static str, leadership: &Leadership) {
        let mut rx = leadership.subscribe();
        let log = self.0.clone();
        log.lock().push((Instant::now(), who, *rx.borrow_and_update()));
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let leading = *rx.borrow_and_update();
                log.lock().push((Instant::now(), who, leading));
            }
        });
    }

    /// The most candidates that led at the same time.
    fn most_leaders(&self) -> usize {
        let mut leading = std::collections::BTreeMap::new();
        let mut most = 0;
        for (_, who, value) in self.0.lock().iter() {
            leading.insert(*who, *value);
            most = most.max(leading.values().filter(|v| **v).count());
        }
        most
    }

    /// When `who` first turned `value` after `after`.
    fn first(&self, who: &str, value: bool, after: Instant) -> Option<Instant> {
        self.0
            .lock()
            .iter()
            .find(|(at, w, v)| *at >= after && *w == who && *v == value)
            .map(|(at, _, _)| *at)
    }

    /// How many times any candidate began to lead.
    fn terms(&self) -> usize {
        self.0.lock().iter().filter(|(_, _, leading)| *leading).count()
    }

    fn changes(&self, who: &str) -> usize {
        self.0.lock().iter().filter(|(_, w, _)| *w == who).count()
    }
}

#[tokio::test]
async fn two_candidates_elect_exactly_one_leader() {
    logs();
    let emulator = emulator().await;
    let timeline = Timeline::default();
    let a = elect(emulator.client(), "a");
    let b = elect(emulator.client(), "b");
    timeline.track("a", &a);
    timeline.track("b", &b);
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    support::within(WAIT, "one of two leads", async {
        tokio::select! {
            _ = ra.wait_for(|l| *l) => {}
            _ = rb.wait_for(|l| *l) => {}
        }
    })
    .await;
    let first = lease(&emulator.client()).await;
    // Several renewals, past a lease duration.
    tokio::time::sleep(timing().lease_duration + SLACK).await;
    assert_eq!(timeline.most_leaders(), 1);
    assert!(a.is_leading() != b.is_leading(), "exactly one leads");
    let leader = if a.is_leading() { "a" } else { "b" };
    let (follower_changes, leader_changes) = if leader == "a" {
        (timeline.changes("b"), timeline.changes("a"))
    } else {
        (timeline.changes("a"), timeline.changes("b"))
    };
    assert_eq!(leader_changes, 2, "the leader led once and kept leading");
    assert_eq!(follower_changes, 1, "the follower never led");

    let now = lease(&emulator.client()).await;
    assert_eq!(now.holder_identity.as_deref(), Some(leader));
    assert_eq!(now.lease_duration_seconds, Some(2));
    assert_eq!(now.lease_transitions, Some(0), "a created lease starts at 0");
    assert_eq!(now.acquire_time, first.acquire_time, "renewals keep acquireTime");
    assert!(now.renew_time > first.renew_time, "renewals advance renewTime");
    a.release().await;
    b.release().await;
}

#[tokio::test]
async fn an_aborted_leader_is_replaced_after_the_lease_duration() {
    logs();
    let emulator = emulator().await;
    let timeline = Timeline::default();
    let a = elect(emulator.client(), "a");
    leads("a leads alone", &a).await;
    let acquired = lease(&emulator.client()).await.acquire_time;
    let b = elect(emulator.client(), "b");
    timeline.track("a", &a);
    timeline.track("b", &b);
    // b sees a renewing for longer than a lease duration and keeps out.
    tokio::time::sleep(timing().lease_duration + SLACK).await;
    assert!(!b.is_leading(), "b waits while a renews");

    let crashed = Instant::now();
    a.abort();
    let took_over = leads("b takes over", &b).await;
    let after = took_over - crashed;
    // a's last renewal was at most a retry period (and a request) before the crash; b waits a
    // whole lease duration after it saw that renewal, which it saw within a jittered retry
    // period, and takes over at its next try.
    let t = timing();
    assert!(
        after >= t.lease_duration - t.retry_period - SLACK / 3,
        "b took over too early: {after:?}"
    );
    assert!(
        after <= t.lease_duration + t.retry_period * 3 + SLACK,
        "b took over too late: {after:?}"
    );
    assert_eq!(timeline.most_leaders(), 1);

    let now = lease(&emulator.client()).await;
    assert_eq!(now.holder_identity.as_deref(), Some("b"));
    assert_eq!(now.lease_transitions, Some(1));
    assert_ne!(now.acquire_time, acquired, "a new holder sets acquireTime");
    b.release().await;
}

#[tokio::test]
async fn a_released_lease_is_taken_over_at_once() {
    logs();
    let emulator = emulator().await;
    let a = elect(emulator.client(), "a");
    leads("a leads alone", &a).await;
    let b = elect(emulator.client(), "b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leading());
    let mut a_leading = a.subscribe();

    let released = Instant::now();
    support::within(WAIT, "a releases", a.release()).await;
    assert!(!*a_leading.borrow_and_update(), "a stepped down before releasing");
    let took_over = leads("b takes over", &b).await;
    let after = took_over - released;
    // b's next try, not a lease duration.
    let t = timing();
    assert!(after < t.retry_period * 2 + SLACK, "b took over after {after:?}");
    let now = lease(&emulator.client()).await;
    assert_eq!(now.holder_identity.as_deref(), Some("b"));
    assert_eq!(now.lease_transitions, Some(1));
    b.release().await;
    let now = lease(&emulator.client()).await;
    assert_eq!(now.holder_identity.as_deref(), Some(""), "released");
    assert_eq!(now.lease_transitions, Some(1), "a release keeps the count");
}

/// The lease duration the ghost holder promised, longer than ours: its promise counts.
const GHOST_SECS: i32 = 3;

async fn ghost_lease(client: &kube::Client, renewed: Timestamp) {
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let mut lease = Lease::default();
    lease.metadata.name = Some(LEASE.into());
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("ghost".into()),
        lease_duration_seconds: Some(GHOST_SECS),
        acquire_time: Some(MicroTime(renewed)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(4),
        ..LeaseSpec::default()
    });
    support::within(WAIT, "create", api.create(&PostParams::default(), &lease))
        .await
        .expect("the ghost's lease");
}

/// A holder's `renewTime` an hour in the past (or the future) says nothing about our clock: a
/// candidate waits the record's lease duration after it first saw the record, neither less nor
/// forever.
#[tokio::test]
async fn expiry_goes_by_the_observers_clock_not_the_renew_time() {
    logs();
    for skew in [SignedDuration::from_hours(-1), SignedDuration::from_hours(1)] {
        let emulator = emulator().await;
        let renewed = Timestamp::now().checked_add(skew).expect("in range");
        ghost_lease(&emulator.client(), renewed).await;
        let started = Instant::now();
        let a = elect(emulator.client(), "a");
        let after = leads("a takes over from the ghost", &a).await - started;
        let promised = Duration::from_secs(GHOST_SECS as u64);
        assert!(after >= promised, "{skew}: took over after {after:?}");
        assert!(
            after < promised + timing().retry_period * 2 + SLACK,
            "{skew}: took over after {after:?}"
        );
        let now = lease(&emulator.client()).await;
        assert_eq!(now.holder_identity.as_deref(), Some("a"));
        assert_eq!(now.lease_transitions, Some(5));
        a.release().await;
    }
}

/// A TCP forwarder that can be cut: while cut, open connections freeze (no byte passes, no
/// close) and new ones hang, as across a network partition.
struct Cable {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cable {
    async fn to(target: SocketAddr) -> Cable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    if *cut.borrow() {
                        let _ = cut.wait_for(|c| !*c).await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let was_cut = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        r = cut.wait_for(|c| *c) => r.is_ok(),
                    };
                    if was_cut {
                        // Hold both ends, silent, until the cable is mended.
                        let _ = cut.wait_for(|c| !*c).await;
                    }
                });
            }
        });
        Cable { addr, cut, task }
    }

    fn client(&self) -> kube::Client {
        let uri = format!("http://{}", self.addr).parse().expect("a URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("a client")
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The safety property: a leader that cannot renew says `false` before any other candidate
/// can take the Lease over, so two leaders never overlap.
#[tokio::test]
async fn a_cut_off_leader_steps_down_before_anyone_takes_over() {
    logs();
    let emulator = emulator().await;
    let target: SocketAddr = emulator
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let cable = Cable::to(target).await;
    let timeline = Timeline::default();
    let a = elect(cable.client(), "a");
    leads("a leads alone", &a).await;
    let b = elect(emulator.client(), "b");
    timeline.track("a", &a);
    timeline.track("b", &b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leading());

    let cut = Instant::now();
    cable.cut.send_replace(true);
    leads("b takes over", &b).await;
    steps_down("a steps down", &a).await;
    let a_down = timeline.first("a", false, cut).expect("a stepped down");
    let b_up = timeline.first("b", true, cut).expect("b leads");
    // a's last accepted renewal was sent before the cut: it steps down within the renew
    // deadline of it; b waits the lease duration after it saw that renewal.
    let t = timing();
    assert!(
        a_down - cut <= t.renew_deadline + SLACK,
        "a stepped down {:?} after the cut, past its renew deadline",
        a_down - cut
    );
    assert!(
        b_up >= a_down + (t.lease_duration - t.renew_deadline) - SLACK,
        "b led {:?} after a stepped down: less than the margin",
        b_up.saturating_duration_since(a_down)
    );
    assert_eq!(timeline.most_leaders(), 1);

    // Mended: a sees b's lease and stays a follower.
    cable.cut.send_replace(false);
    tokio::time::sleep(t.lease_duration).await;
    assert!(b.is_leading() && !a.is_leading());
    assert_eq!(timeline.most_leaders(), 1);
    assert_eq!(lease(&emulator.client()).await.lease_transitions, Some(1));
    a.release().await;
    b.release().await;
}

/// A Lease deleted by hand while its leader is cut off: the others wait a lease duration after
/// they found it missing (the leader may re-create it at its next renewal), never less.
#[tokio::test]
async fn a_deleted_lease_is_not_grabbed_from_a_leader() {
    logs();
    let emulator = emulator().await;
    let target: SocketAddr = emulator
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let cable = Cable::to(target).await;
    let timeline = Timeline::default();
    let a = elect(cable.client(), "a");
    leads("a leads alone", &a).await;
    let b = elect(emulator.client(), "b");
    timeline.track("a", &a);
    timeline.track("b", &b);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cut = Instant::now();
    cable.cut.send_replace(true);
    let api: Api<Lease> = Api::namespaced(emulator.client(), NS);
    support::within(WAIT, "delete the lease", api.delete(LEASE, &Default::default()))
        .await
        .expect("deleted");
    leads("b creates the lease in the end", &b).await;
    steps_down("a steps down", &a).await;
    let a_down = timeline.first("a", false, cut).expect("a stepped down");
    let b_up = timeline.first("b", true, cut).expect("b leads");
    assert!(b_up > a_down, "b led {:?} before a stepped down", a_down - b_up);
    assert!(
        b_up - cut >= timing().lease_duration,
        "b created the lease after {:?}",
        b_up - cut
    );
    assert_eq!(timeline.most_leaders(), 1);
    assert_eq!(
        lease(&emulator.client()).await.holder_identity.as_deref(),
        Some("b")
    );

    // Mended, a leads again after b released, re-creating nothing twice.
    cable.cut.send_replace(false);
    b.release().await;
    leads("a takes over after the release", &a).await;
    a.release().await;
}

#[tokio::test]
async fn conflicts_and_server_errors_never_make_two_leaders() {
    logs();
    let emulator = emulator().await;
    let timeline = Timeline::default();
    let a = elect(emulator.client(), "a");
    let b = elect(emulator.client(), "b");
    timeline.track("a", &a);
    timeline.track("b", &b);
    // Some of these outlast the renew deadline (six 500s in a row, a hanging update), so the
    // leader steps down and the Lease changes hands under faults.
    for round in 0..14 {
        let rule = match round % 7 {
            0 => FaultRule::status(409).with_verb("update").times(3),
            1 => FaultRule::status(500).with_verb("get").times(3),
            2 => FaultRule::status(500).with_verb("update").times(6),
            3 => FaultRule::refuse().times(4),
            4 => FaultRule::status(429).with_verb("update"),
            5 => FaultRule::delay(timing().renew_deadline + SLACK).with_verb("update"),
            _ => FaultRule::status(409).with_verb("create").times(2),
        };
        emulator.inject(rule.with_path_prefix(LEASES));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let injected = emulator.requests().iter().filter(|r| r.injected).count();
    assert!(injected >= 20, "only {injected} faults applied");
    emulator.clear_faults();
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    support::within(WAIT, "one leads once the faults stop", async {
        tokio::select! {
            _ = ra.wait_for(|l| *l) => {}
            _ = rb.wait_for(|l| *l) => {}
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.is_leading() != b.is_leading(), "exactly one leads");
    assert_eq!(timeline.most_leaders(), 1, "two leaders at once");
    eprintln!("{injected} faults, {} terms of leadership", timeline.terms());
    let holder = lease(&emulator.client()).await.holder_identity;
    assert_eq!(holder.as_deref(), Some(if a.is_leading() { "a" } else { "b" }));
    a.release().await;
    b.release().await;
}

#[test]
fn invalid_timings_and_identities_are_refused() {
    let client = || {
        let uri = "http://127.0.0.1:1".parse().expect("a URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("a client")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = runtime.enter();
    let bad = [
        LeaseTiming {
            lease_duration: Duration::from_millis(1500),
            ..timing()
        },
        LeaseTiming {
            renew_deadline: timing().lease_duration,
            ..timing()
        },
        LeaseTiming {
            retry_period: timing().renew_deadline.mul_f64(1.0 / 1.2),
            ..timing()
        },
        LeaseTiming {
            retry_period: Duration::ZERO,
            ..timing()
        },
    ];
    for timing in bad {
        let err = LeaderElector::new(client(), NS, LEASE, "a", timing).expect_err("refused");
        assert!(err.to_string().contains("timing"), "{err}");
    }
    assert!(LeaderElector::new(client(), NS, LEASE, "", timing()).is_err());
    assert!(LeaderElector::new(client(), NS, "", "a", timing()).is_err());
    assert!(LeaderElector::new(client(), NS, LEASE, "a", LeaseTiming::default()).is_ok());
}
