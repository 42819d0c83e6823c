//! The store suites: one function per trait of [`crate::store`].

use std::fmt::Debug;

use futures::future::join_all;
use rand::Rng;

use super::{CONCURRENCY, name, ok, run_tag};
use crate::error::Error;
use crate::ids::{AesKey, AppId, Fingerprint, RiKeyId, SessionId, UserName};
use crate::model::{
    App, AppAsset, Pairing, ServerIdentity, Session, SessionPhase, StreamKeys, StreamPlacement, StreamPorts,
    User, VideoMode, unix_now,
};
use crate::store::{AppCatalog, IdentityStore, PairingStore, SessionStore, SessionStoreExt, UserStore};

/// Standard base64 with padding (enough for the PEM armour of test certificates).
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A pairing with a random certificate-like blob whose fingerprint is its SHA-256.
fn sample_pairing(user: UserName, device_name: Option<&str>) -> Pairing {
    let mut der = vec![0u8; 600];
    rand::thread_rng().fill(der.as_mut_slice());
    let body = base64(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Pairing {
        fingerprint: Fingerprint::of_der(&der),
        cert_pem: pem,
        user,
        device_name: device_name.map(str::to_owned),
        paired_at: unix_now(),
    }
}

/// Panics unless `items` is strictly increasing by `key` (sorted, no duplicates).
fn assert_strictly_sorted<T, K: Ord + Debug>(items: &[T], key: impl Fn(&T) -> K, what: &str) {
    for pair in items.windows(2) {
        let (a, b) = (key(&pair[0]), key(&pair[1]));
        assert!(
            a < b,
            "{what} must be in strictly increasing key order, but {a:?} came before {b:?}"
        );
    }
}

/// Checks [`PairingStore`]: get after put, idempotent upsert, replace, delete reports existence,
/// fingerprint order, concurrent writers, and last-writer-wins on one key.
pub async fn pairing_store(store: &dyn PairingStore) {
    let tag = run_tag();
    let user = name(format!("c{tag}-a"));
    let other_user = name(format!("c{tag}-b"));
    let a2 = pairing_round_trip(store, &user, &other_user).await;
    let c = pairings_listed_and_deleted(store, &a2, &user, &other_user).await;
    let many = pairings_written_concurrently(store, &user).await;
    let base = pairing_written_by_racing_puts(store, &user).await;
    for p in [&a2, &c, &base].into_iter().chain(&many) {
        assert!(
            ok(store.delete(&p.fingerprint).await, "PairingStore::delete"),
            "cleanup delete must find {p:?}"
        );
    }
}

/// Get, put, idempotent upsert and replace of one pairing; returns it as replaced.
async fn pairing_round_trip(store: &dyn PairingStore, user: &UserName, other_user: &UserName) -> Pairing {
    let a = sample_pairing(user.clone(), Some("Sam’s 📱 Deck «ünïcode»"));
    assert_eq!(
        ok(store.get(&a.fingerprint).await, "PairingStore::get"),
        None,
        "unknown pairing must be None"
    );
    assert!(
        !ok(store.delete(&a.fingerprint).await, "PairingStore::delete"),
        "deleting an unknown pairing must return false"
    );

    ok(store.put(a.clone()).await, "PairingStore::put");
    assert_eq!(
        ok(store.get(&a.fingerprint).await, "PairingStore::get"),
        Some(a.clone()),
        "get after put must return the pairing exactly as put"
    );

    // Idempotent upsert: the same pairing twice is one pairing.
    ok(store.put(a.clone()).await, "PairingStore::put (again)");
    let listed = ok(store.list().await, "PairingStore::list");
    assert_eq!(
        listed.iter().filter(|p| p.fingerprint == a.fingerprint).count(),
        1,
        "putting the same pairing twice must leave exactly one"
    );

    // Upsert replaces.
    let a2 = Pairing {
        user: other_user.clone(),
        device_name: None,
        paired_at: a.paired_at + 1,
        ..a.clone()
    };
    ok(store.put(a2.clone()).await, "PairingStore::put (replace)");
    assert_eq!(
        ok(store.get(&a.fingerprint).await, "PairingStore::get"),
        Some(a2.clone()),
        "put must replace the pairing with the same fingerprint"
    );

    a2
}

/// List order and delete, with two more pairings; returns the one left.
async fn pairings_listed_and_deleted(
    store: &dyn PairingStore,
    a2: &Pairing,
    user: &UserName,
    other_user: &UserName,
) -> Pairing {
    let b = sample_pairing(user.clone(), None);
    let c = sample_pairing(other_user.clone(), Some("roth"));
    ok(store.put(b.clone()).await, "PairingStore::put");
    ok(store.put(c.clone()).await, "PairingStore::put");
    let listed = ok(store.list().await, "PairingStore::list");
    assert_strictly_sorted(&listed, |p| p.fingerprint.clone(), "PairingStore::list");
    for expected in [a2, &b, &c] {
        let found: Vec<&Pairing> = listed
            .iter()
            .filter(|p| p.fingerprint == expected.fingerprint)
            .collect();
        assert_eq!(
            found,
            vec![expected],
            "list must hold every pairing put, exactly once and intact"
        );
    }

    assert!(
        ok(store.delete(&b.fingerprint).await, "PairingStore::delete"),
        "delete of a pairing must return true"
    );
    assert!(
        !ok(store.delete(&b.fingerprint).await, "PairingStore::delete"),
        "a second delete of the same pairing must return false"
    );
    assert_eq!(
        ok(store.get(&b.fingerprint).await, "PairingStore::get"),
        None,
        "get after delete must be None"
    );
    assert!(
        !ok(store.list().await, "PairingStore::list")
            .iter()
            .any(|p| p.fingerprint == b.fingerprint),
        "list must not hold a deleted pairing"
    );

    c
}

/// Concurrent writers on distinct keys: every write lands.
async fn pairings_written_concurrently(store: &dyn PairingStore, user: &UserName) -> Vec<Pairing> {
    let many: Vec<Pairing> = (0..CONCURRENCY)
        .map(|_| sample_pairing(user.clone(), Some("many")))
        .collect();
    for result in join_all(many.iter().map(|p| store.put(p.clone()))).await {
        ok(result, "PairingStore::put (concurrent)");
    }
    let listed = ok(store.list().await, "PairingStore::list");
    for p in &many {
        assert_eq!(
            ok(store.get(&p.fingerprint).await, "PairingStore::get").as_ref(),
            Some(p),
            "every concurrent put must be visible to get"
        );
        assert!(listed.contains(p), "every concurrent put must be listed");
    }

    many
}

/// Concurrent writers on one key: the result is one of the values written, intact.
async fn pairing_written_by_racing_puts(store: &dyn PairingStore, user: &UserName) -> Pairing {
    let base = sample_pairing(user.clone(), None);
    let variants: Vec<Pairing> = (0..CONCURRENCY)
        .map(|i| Pairing {
            device_name: Some(format!("writer {i}")),
            ..base.clone()
        })
        .collect();
    for result in join_all(variants.iter().map(|p| store.put(p.clone()))).await {
        ok(result, "PairingStore::put (same key, concurrent)");
    }
    let winner = ok(store.get(&base.fingerprint).await, "PairingStore::get")
        .unwrap_or_else(|| panic!("a pairing written by {CONCURRENCY} concurrent puts is missing"));
    assert!(
        variants.contains(&winner),
        "concurrent puts of one key must leave one of the written values"
    );

    base
}

/// Checks [`UserStore`]: get after put, idempotent upsert, replace, delete reports existence,
/// name order, concurrent writers.
pub async fn user_store(store: &dyn UserStore) {
    let tag = run_tag();
    let alice = User {
        name: name(format!("c{tag}-alice")),
        display_name: Some("Alice Ærøskøbing 🎮".into()),
        apps: Some(vec![
            AppId::new(7).expect("app id"),
            AppId::new(2_147_483_647).expect("app id"),
        ]),
        ..User::new(name(format!("c{tag}-alice")))
    };
    let bob = User::new(name(format!("c{tag}-bob")));

    assert_eq!(
        ok(store.get(&alice.name).await, "UserStore::get"),
        None,
        "unknown user must be None"
    );
    assert!(
        !ok(store.delete(&alice.name).await, "UserStore::delete"),
        "deleting an unknown user must return false"
    );

    ok(store.put(alice.clone()).await, "UserStore::put");
    ok(store.put(alice.clone()).await, "UserStore::put (again)");
    assert_eq!(
        ok(store.get(&alice.name).await, "UserStore::get"),
        Some(alice.clone()),
        "get after put must return the user exactly as put"
    );
    let renamed = User {
        display_name: Some("爱丽丝".into()),
        apps: None,
        ..alice.clone()
    };
    ok(store.put(renamed.clone()).await, "UserStore::put (replace)");
    assert_eq!(
        ok(store.get(&alice.name).await, "UserStore::get"),
        Some(renamed.clone()),
        "put must replace the user with the same name"
    );

    ok(store.put(bob.clone()).await, "UserStore::put");
    let listed = ok(store.list().await, "UserStore::list");
    assert_strictly_sorted(&listed, |u| u.name.clone(), "UserStore::list");
    for expected in [&renamed, &bob] {
        let found: Vec<&User> = listed.iter().filter(|u| u.name == expected.name).collect();
        assert_eq!(
            found,
            vec![expected],
            "list must hold every user put, exactly once and intact"
        );
    }

    assert!(
        ok(store.delete(&bob.name).await, "UserStore::delete"),
        "delete of a user must return true"
    );
    assert!(
        !ok(store.delete(&bob.name).await, "UserStore::delete"),
        "a second delete must return false"
    );
    assert_eq!(
        ok(store.get(&bob.name).await, "UserStore::get"),
        None,
        "get after delete must be None"
    );

    let many = users_written_concurrently(store, &tag).await;
    for u in std::iter::once(&renamed).chain(&many) {
        assert!(
            ok(store.delete(&u.name).await, "UserStore::delete"),
            "cleanup delete must find {:?}",
            u.name
        );
    }
}

/// Concurrent writers on distinct users: every write lands.
async fn users_written_concurrently(store: &dyn UserStore, tag: &str) -> Vec<User> {
    let many: Vec<User> = (0..CONCURRENCY)
        .map(|i| User::new(name(format!("c{tag}-u{i}"))))
        .collect();
    for result in join_all(many.iter().map(|u| store.put(u.clone()))).await {
        ok(result, "UserStore::put (concurrent)");
    }
    let listed = ok(store.list().await, "UserStore::list");
    for u in &many {
        assert!(
            listed.contains(u),
            "every concurrent put must be listed ({:?} missing)",
            u.name
        );
    }

    many
}

/// `len` bytes starting with the PNG signature, then pseudo-random (incompressible) content.
fn png_like(len: usize, seed: u64) -> AppAsset {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut state = seed | 1;
    while bytes.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    AppAsset::png(bytes).expect("the bytes start with the PNG signature")
}

/// Checks [`AppCatalog`]: get/asset after put, art replaced and removed by put, 1 MiB art, unicode
/// titles, delete (of the app and its art), id order with unique ids, concurrent writers.
pub async fn app_catalog(store: &dyn AppCatalog) {
    // Random ids in the upper half of the id space, consecutive so order is checkable.
    let first = rand::thread_rng().gen_range(AppId::MAX / 2..AppId::MAX - 2 * CONCURRENCY as u32);
    let apps = TestApps { first };
    let one_renamed = app_round_trip(store, &apps).await;
    apps_listed_and_deleted(store, &apps, &one_renamed).await;
    let many = apps_written_concurrently(store, &apps).await;
    for app in std::iter::once(&one_renamed).chain(many.iter().map(|(app, _)| app)) {
        assert!(
            ok(store.delete(app.id).await, "AppCatalog::delete"),
            "cleanup delete must find {:?}",
            app.id
        );
    }
}

/// Consecutive app ids and titles of one run of the app suite.
struct TestApps {
    first: u32,
}

impl TestApps {
    fn id(&self, n: u32) -> AppId {
        AppId::new(self.first + n).expect("the id is in range")
    }

    fn title(&self, t: &str) -> String {
        format!("{t} {}", self.first)
    }
}

/// Get, put with art, idempotent upsert, and a replace that removes the art; returns the app
/// as replaced.
async fn app_round_trip(store: &dyn AppCatalog, apps: &TestApps) -> App {
    let (first, id, title) = (apps.first, |n| apps.id(n), |t: &str| apps.title(t));
    let one = App::new(id(0), title("Ωmega 游戏 🎮 Ünïcødé"))
        .expect("valid title")
        .with_hdr(true);
    assert_eq!(
        ok(store.get(one.id).await, "AppCatalog::get"),
        None,
        "unknown app must be None"
    );
    assert_eq!(
        ok(store.asset(one.id).await, "AppCatalog::asset"),
        None,
        "unknown app has no asset"
    );
    assert!(
        !ok(store.delete(one.id).await, "AppCatalog::delete"),
        "deleting an unknown app must return false"
    );

    let small = png_like(100, u64::from(first));
    ok(
        store.put(one.clone(), Some(small.clone())).await,
        "AppCatalog::put",
    );
    ok(
        store.put(one.clone(), Some(small.clone())).await,
        "AppCatalog::put (again)",
    );
    assert_eq!(
        ok(store.get(one.id).await, "AppCatalog::get"),
        Some(one.clone()),
        "get after put"
    );
    assert_eq!(
        ok(store.asset(one.id).await, "AppCatalog::asset"),
        Some(small.clone()),
        "asset after put"
    );

    // put with None removes the art; the app stays.
    let one_renamed = App::new(one.id, title("Steam Big Picture")).expect("valid title");
    ok(
        store.put(one_renamed.clone(), None).await,
        "AppCatalog::put (no art)",
    );
    assert_eq!(
        ok(store.get(one.id).await, "AppCatalog::get"),
        Some(one_renamed.clone()),
        "put must replace"
    );
    assert_eq!(
        ok(store.asset(one.id).await, "AppCatalog::asset"),
        None,
        "put with None must remove the art"
    );

    one_renamed
}

/// 1 MiB art, list order, and delete (art included).
async fn apps_listed_and_deleted(store: &dyn AppCatalog, apps: &TestApps, one_renamed: &App) {
    let (first, id, title) = (apps.first, |n| apps.id(n), |t: &str| apps.title(t));
    // Large art, 1 MiB.
    let two = App::new(id(1), title("Desktop")).expect("valid title");
    let large = png_like(1024 * 1024, u64::from(first) + 1);
    ok(
        store.put(two.clone(), Some(large.clone())).await,
        "AppCatalog::put (1 MiB art)",
    );
    let got = ok(store.asset(two.id).await, "AppCatalog::asset").expect("1 MiB art must be stored");
    assert_eq!(
        got.content_type, "image/png",
        "the art's content type must be kept"
    );
    assert!(
        got.bytes == large.bytes,
        "1 MiB art must come back byte for byte (got {} bytes)",
        got.bytes.len()
    );

    let listed = ok(store.list().await, "AppCatalog::list");
    assert_strictly_sorted(&listed, |a| a.id, "AppCatalog::list (ids unique, in order)");
    for expected in [one_renamed, &two] {
        let found: Vec<&App> = listed.iter().filter(|a| a.id == expected.id).collect();
        assert_eq!(
            found,
            vec![expected],
            "list must hold every app put, exactly once and intact"
        );
    }

    assert!(
        ok(store.delete(two.id).await, "AppCatalog::delete"),
        "delete of an app must return true"
    );
    assert!(
        !ok(store.delete(two.id).await, "AppCatalog::delete"),
        "a second delete must return false"
    );
    assert_eq!(
        ok(store.get(two.id).await, "AppCatalog::get"),
        None,
        "get after delete must be None"
    );
    assert_eq!(
        ok(store.asset(two.id).await, "AppCatalog::asset"),
        None,
        "delete must remove the art too"
    );
}

/// Concurrent writers on distinct apps: every app and its art land.
async fn apps_written_concurrently(store: &dyn AppCatalog, apps: &TestApps) -> Vec<(App, AppAsset)> {
    let (id, title) = (|n| apps.id(n), |t: &str| apps.title(t));
    let many: Vec<(App, AppAsset)> = (0..CONCURRENCY as u32)
        .map(|n| {
            let app = App::new(id(2 + n), title(&format!("Game №{n}"))).expect("valid title");
            (app, png_like(4096, u64::from(n)))
        })
        .collect();
    for result in join_all(
        many.iter()
            .map(|(app, art)| store.put(app.clone(), Some(art.clone()))),
    )
    .await
    {
        ok(result, "AppCatalog::put (concurrent)");
    }
    let listed = ok(store.list().await, "AppCatalog::list");
    for (app, art) in &many {
        assert!(
            listed.contains(app),
            "every concurrent put must be listed ({:?} missing)",
            app.id
        );
        assert_eq!(
            ok(store.asset(app.id).await, "AppCatalog::asset").as_ref(),
            Some(art),
            "concurrent art"
        );
    }

    many
}

fn sample_session(id: &str, user: &UserName) -> Session {
    let id: SessionId = id
        .parse()
        .unwrap_or_else(|e| panic!("test session id {id:?} is invalid: {e}"));
    let mut key = [0u8; 16];
    rand::thread_rng().fill(&mut key);
    Session {
        id,
        user: user.clone(),
        pairing: Fingerprint::of_der(user.as_str().as_bytes()),
        app: AppId::new(1).expect("1 is a valid app id"),
        client_ip: "192.0.2.7".parse().expect("a valid address"),
        mode: VideoMode::DEFAULT,
        surround_audio_info: crate::model::STEREO_SURROUND_AUDIO_INFO,
        keys: StreamKeys {
            aes_key: AesKey::new(key),
            aes_iv: RiKeyId::from_bits(rand::thread_rng().r#gen()),
        },
        phase: SessionPhase::Pending,
        placement: None,
        created_at: unix_now(),
    }
}

/// Checks [`SessionStore`]: create/get, `AlreadyExists` on a taken id (exactly one of several
/// concurrent creates wins), update of an existing session, `NotFound` on updating a missing
/// one, id order, `for_user`, delete returning the session.
pub async fn session_store(store: &dyn SessionStore) {
    let tag = run_tag();
    let user = name(format!("c{tag}-u"));
    let other = name(format!("c{tag}-v"));
    let s1 = sample_session(&format!("c{tag}-s1"), &user);
    let s1_streaming = session_round_trip(store, &s1).await;
    let (s0, s2) = sessions_listed(store, &tag, [&user, &other], &s1_streaming).await;
    let winner = session_created_by_racing_creates(store, &tag, &user).await;
    assert_eq!(
        ok(store.delete(&s1.id).await, "SessionStore::delete"),
        Some(s1_streaming.clone()),
        "delete must return the session as last stored"
    );
    assert_eq!(
        ok(store.delete(&s1.id).await, "SessionStore::delete"),
        None,
        "a second delete must return None"
    );
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        None,
        "get after delete must be None"
    );
    for id in [&s0.id, &s2.id, &winner.id] {
        assert!(
            ok(store.delete(id).await, "SessionStore::delete").is_some(),
            "cleanup delete must find {id:?}"
        );
    }
}

/// Get, delete and update of a missing session, create, `AlreadyExists`, update; returns the
/// session as updated.
async fn session_round_trip(store: &dyn SessionStore, s1: &Session) -> Session {
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        None,
        "unknown session must be None"
    );
    assert_eq!(
        ok(store.delete(&s1.id).await, "SessionStore::delete"),
        None,
        "deleting an unknown session"
    );
    match store.update(s1.clone()).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("update of a missing session must be NotFound, got {other:?}"),
    }
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        None,
        "a failed update must not create"
    );

    ok(store.create(s1.clone()).await, "SessionStore::create");
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        Some(s1.clone()),
        "get after create"
    );
    let clash = Session {
        app: AppId::new(2).expect("valid id"),
        ..s1.clone()
    };
    match store.create(clash).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("create with a taken id must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        Some(s1.clone()),
        "a failed create must not write"
    );

    let s1_streaming = Session {
        phase: SessionPhase::Streaming,
        placement: Some(StreamPlacement {
            session_url: "rtsp://[2001:db8::1]:48010".into(),
            host: "wolf-α".into(),
            host_session_id: "1234567890".into(),
            ports: Some(StreamPorts::WOLF_DEFAULT),
        }),
        ..s1.clone()
    };
    ok(store.update(s1_streaming.clone()).await, "SessionStore::update");
    assert_eq!(
        ok(store.get(&s1.id).await, "SessionStore::get"),
        Some(s1_streaming.clone()),
        "get after update must return the updated session exactly"
    );

    s1_streaming
}

/// Two more sessions: id order and `for_user`; returns them.
async fn sessions_listed(
    store: &dyn SessionStore,
    tag: &str,
    [user, other]: [&UserName; 2],
    s1_streaming: &Session,
) -> (Session, Session) {
    let s2 = sample_session(&format!("c{tag}-s2"), other);
    let s0 = sample_session(&format!("c{tag}-s0"), user);
    ok(store.create(s2.clone()).await, "SessionStore::create");
    ok(store.create(s0.clone()).await, "SessionStore::create");
    let listed = ok(store.list().await, "SessionStore::list");
    assert_strictly_sorted(&listed, |s| s.id.clone(), "SessionStore::list");
    for expected in [&s0, s1_streaming, &s2] {
        let found: Vec<&Session> = listed.iter().filter(|s| s.id == expected.id).collect();
        assert_eq!(
            found,
            vec![expected],
            "list must hold every session created, exactly once and intact"
        );
    }
    let mine = ok(store.for_user(user).await, "SessionStoreExt::for_user");
    assert_eq!(
        mine,
        vec![s0.clone(), s1_streaming.clone()],
        "for_user must give the user's sessions in id order"
    );

    (s0, s2)
}

/// Several concurrent creates of one id: exactly one wins, the others are `AlreadyExists`;
/// returns the winner.
async fn session_created_by_racing_creates(store: &dyn SessionStore, tag: &str, user: &UserName) -> Session {
    let contested: Vec<Session> = (0..CONCURRENCY)
        .map(|_| sample_session(&format!("c{tag}-race"), user))
        .collect();
    let results = join_all(contested.iter().map(|s| store.create(s.clone()))).await;
    let mut winners = Vec::new();
    for (session, result) in contested.iter().zip(results) {
        match result {
            Ok(()) => winners.push(session),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("a losing concurrent create must be AlreadyExists, got {e} ({e:?})"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {CONCURRENCY} concurrent creates of one id must succeed"
    );
    assert_eq!(
        ok(store.get(&winners[0].id).await, "SessionStore::get").as_ref(),
        Some(winners[0]),
        "the stored session must be the winner's"
    );

    winners[0].clone()
}

fn sample_identity(n: usize) -> ServerIdentity {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill(&mut bytes);
    ServerIdentity {
        cert_pem: format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64(&bytes)
        ),
        key_pem: format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64(&bytes)
        ),
        unique_id: format!(
            "{:08x}-0000-4000-8000-{n:012x}",
            u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        ),
    }
}

/// Checks [`IdentityStore`]: `create_if_absent` stores the first identity and returns the stored
/// one ever after; several concurrent creators all get the same identity, which `load` returns.
/// On a store that already holds an identity it checks that nothing replaces it.
pub async fn identity_store(store: &dyn IdentityStore) {
    let before = ok(store.load().await, "IdentityStore::load");
    let candidates: Vec<ServerIdentity> = (0..CONCURRENCY).map(sample_identity).collect();
    let results = join_all(candidates.iter().map(|i| store.create_if_absent(i.clone()))).await;
    let returned: Vec<ServerIdentity> = results
        .into_iter()
        .map(|r| ok(r, "IdentityStore::create_if_absent (concurrent)"))
        .collect();
    let stored = returned[0].clone();
    assert!(
        returned.iter().all(|i| *i == stored),
        "every concurrent create_if_absent must return the same identity"
    );
    match &before {
        Some(existing) => assert_eq!(
            &stored, existing,
            "create_if_absent must not replace an existing identity"
        ),
        None => assert!(
            candidates.contains(&stored),
            "the stored identity must be one of those offered"
        ),
    }
    assert_eq!(
        ok(store.load().await, "IdentityStore::load"),
        Some(stored.clone()),
        "load must return it"
    );

    let later = ok(
        store.create_if_absent(sample_identity(CONCURRENCY)).await,
        "IdentityStore::create_if_absent",
    );
    assert_eq!(
        later, stored,
        "a later create_if_absent must return the stored identity"
    );
    assert_eq!(
        ok(store.load().await, "IdentityStore::load"),
        Some(stored),
        "the identity must not change"
    );
}
