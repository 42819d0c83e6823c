//! Unit tests of the pairing state machine and of phase 1.

use std::sync::atomic::{AtomicU8, Ordering};

use direwolf_core::ServerIdentity;

use super::*;
use crate::crypto::tests::{
    VECTOR_C_CLIENT_CERT, VECTOR_C_CLIENT_KEY, VECTOR_C_SERVER_CERT, VECTOR_C_SERVER_KEY, unhex,
};
use crate::crypto::{ServerSigner, aes_ecb_decrypt};

fn vector_c_identity() -> Arc<LoadedIdentity> {
    Arc::new(
        LoadedIdentity::new(ServerIdentity {
            cert_pem: VECTOR_C_SERVER_CERT.into(),
            key_pem: VECTOR_C_SERVER_KEY.into(),
            unique_id: "u".into(),
        })
        .unwrap(),
    )
}

/// Returns 0x20..0x2F (SS), then 0x30..0x3F (SC), then 0x40.., as in vector C
/// (`docs/protocol/moonlight-http.md` § Test vectors).
fn fixed_randoms() -> RandomSource {
    let next = AtomicU8::new(0x20);
    Arc::new(move || {
        let start = next.fetch_add(0x10, Ordering::SeqCst);
        std::array::from_fn(|i| start + i as u8)
    })
}

fn key() -> PairingKey {
    PairingKey::new("192.0.2.7".parse().unwrap(), Some("0123456789ABCDEF"))
}

fn manager() -> PairingManager {
    PairingManager::with_random(vector_c_identity(), PairingLimits::default(), fixed_randoms())
}

fn cert_hex() -> String {
    hex::encode(VECTOR_C_CLIENT_CERT)
}

const SALT: &str = "000102030405060708090a0b0c0d0e0f";

fn joined(s: &str) -> String {
    s.split_whitespace().collect()
}

/// Vector C (`docs/protocol/moonlight-http.md` § Test vectors), driven through the server-side
/// state machine.
#[test]
fn vector_c_full_transcript() {
    let m = manager();
    let held = m
        .begin(key(), Some(SALT), Some(&cert_hex()), Some("roth"))
        .unwrap();
    assert!(cert_hex().starts_with("2d2d2d2d2d424547494e2043455254494649434154452d2d2d2d2d0a4d494943"));
    assert_eq!(cert_hex().len(), 2026);
    let pin: Pin = "1234".parse().unwrap();
    let plaincert = m.pin_entered(&key(), held.generation, &pin, None).unwrap();
    assert_eq!(plaincert, hex::encode_upper(VECTOR_C_SERVER_CERT));
    assert_eq!(plaincert.len(), 1994);

    let response = m
        .client_challenge(&key(), "5febcdc985b2baddd65925da162380eb")
        .unwrap();
    assert_eq!(
        response,
        "3EE87A2413F22E93E02382FDA5DA3F7819C309004B42AED78ADC6EFD23C5E9E858F1C991A85A76C2526EB7CF9453B7E7"
    );
    let secret = m
        .server_challenge_response(
            &key(),
            "826FB47369E86620BC0CE0852C2ECF028C1AB22330054ECF1FE728E3393DA614",
        )
        .unwrap();
    let expected_secret = joined(
        "202122232425262728292A2B2C2D2E2FBCCD3B2B780BF062A80F29357FC8A050F900D1EF1C30ACAB773471EFEAE6427E7A13835CA6CF63B8EE1EB36F514FB684
         36A8EF5B35BE77C350AA1D5F2660D93E91D260EBF5667B242F111012720973298203094E17F0C89E9D883D2106E94642B30F0014E9A7D13ED9FB4E093F9AEA30
         A4B1F9C7074F6BAE5A7E360ECE637DAD1B2834CB406B3834E96822AF471FE1E320E5FC143B2C5C135714A0E7099E231261990F1DD0046BF14793EE0DF8B9B671
         FA1F5F0F1AB5FFE6BE87B86EB21B9B44766FA1A64EDAF642B7FEB632210BDD18FB6F94EEA63149DA13E2C47E091381A066BE66C8A1524083F3D95F0BC1ECC01B
         4F2EE897E7100F5BCCC93E05559BB4A3",
    );
    assert_eq!(secret, expected_secret);
    assert_eq!(secret.len(), 544);
    let client_secret = joined(
        "404142434445464748494A4B4C4D4E4F2EFFD77A1527DFCDB459B97C1EBA8FB0D81BED7AEDC6085B26183F5299295D86FB00381BF0B1DDEA5BD402AB23051E61
         C9921F7B080EC4D83AB2E40158EB4DA369A15196FC8E4CA18455C2A4BAF7501674BD1366751E3A4681DC1BC3DC71F3E0F4995F50D265B4D90607FB5E75EB6205
         DC1D8B18B97A8DE6DD4ACEE01AAA3D0E414F8D4F03675AA66C8BFB8C421160ED8A7554184E2FD21D66DB6D91589030986C3A050A044A5D860DC2A6D9DB78194E
         2F9D6ED2682D0096D3B347447B8BAFE87EE153EF2C5DAC07442D8C6CC03D68835D6796794997099F3161FDB12CEB572EB01E26984A59EF0D02E089B56C459B15
         668B17F6D1DEBB155FCC01CF30621319",
    );
    match m
        .client_pairing_secret(&key(), &client_secret.to_ascii_lowercase())
        .unwrap()
    {
        Phase4::Paired(p) => {
            assert_eq!(
                p.fingerprint.as_str(),
                "47108458673331c7b447447a2b316bf23e3d067c93139a2be299081bf3a566e0"
            );
            assert_eq!(p.user, UserName::default_user());
            assert_eq!(p.cert_pem, VECTOR_C_CLIENT_CERT);
            assert_eq!(p.device_name.as_deref(), Some("roth"));
        }
        Phase4::Mismatch => panic!("vector C must pair"),
    }
    assert_eq!(m.in_flight(), 0);
    // Phase 4 removed the entry.
    assert_eq!(
        m.client_challenge(&key(), "5febcdc985b2baddd65925da162380eb"),
        Err(PairReject::no_pairing())
    );
}

/// A client-side run of the protocol against the manager, with a chosen PIN on each side.
fn run(m: &PairingManager, server_pin: &str, client_pin: &str, user: Option<&str>) -> Phase4 {
    let held = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    m.pin_entered(
        &key(),
        held.generation,
        &server_pin.parse().unwrap(),
        user.map(|u| u.parse().unwrap()),
    )
    .unwrap();
    let k = derive_key(&unhex(SALT), client_pin).unwrap();
    let c = [7u8; 16];
    let resp = m
        .client_challenge(&key(), &hex::encode(aes_ecb_encrypt(&k, &c).unwrap()))
        .unwrap();
    let resp = aes_ecb_decrypt(&k, &unhex(&resp)).unwrap();
    let sc = &resp[32..48];
    let client = CertificateInfo::from_pem(VECTOR_C_CLIENT_CERT).unwrap();
    let cs = [9u8; 16];
    let ch = sha256(&[sc, client.signature(), &cs]);
    m.server_challenge_response(&key(), &hex::encode(aes_ecb_encrypt(&k, &ch).unwrap()))
        .unwrap();
    let signer = ServerSigner::from_pem(VECTOR_C_CLIENT_KEY).unwrap();
    let mut secret = cs.to_vec();
    secret.extend(signer.sign(&cs).unwrap());
    m.client_pairing_secret(&key(), &hex::encode(secret)).unwrap()
}

#[test]
fn wrong_pin_is_a_mismatch_and_counted() {
    let m = PairingManager::new(
        vector_c_identity(),
        PairingLimits {
            max_failures_per_ip: 2,
            ..Default::default()
        },
    );
    assert!(
        matches!(run(&m, "1234", "1234", Some("alice")), Phase4::Paired(p) if p.user.as_str() == "alice")
    );
    assert_eq!(run(&m, "1234", "4321", None), Phase4::Mismatch);
    assert_eq!(run(&m, "0000", "1111", None), Phase4::Mismatch);
    let refused = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap_err();
    assert_eq!(refused.status, 429);
    // The count is per network (/24): a neighbour address is refused too, another network not.
    let neighbour = PairingKey::new("192.0.2.8".parse().unwrap(), Some("0123456789ABCDEF"));
    assert_eq!(
        m.begin(neighbour, Some(SALT), Some(&cert_hex()), None)
            .unwrap_err()
            .status,
        429
    );
    let other = PairingKey::new("198.51.100.8".parse().unwrap(), Some("0123456789ABCDEF"));
    assert!(m.begin(other, Some(SALT), Some(&cert_hex()), None).is_ok());
}

#[test]
fn phase_1_refuses_certificates_https_would_refuse() {
    let m = manager();
    let v1 = hex::encode(include_str!("../../tests/data/v1_client_cert.pem"));
    let refused = m.begin(key(), Some(SALT), Some(&v1), None).unwrap_err();
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.message,
        "Invalid clientcert: an X.509 v1 or v2 certificate; HTTPS needs X.509 v3"
    );
    let small = hex::encode(include_str!("../../tests/data/rsa1024_client_cert.pem"));
    let refused = m.begin(key(), Some(SALT), Some(&small), None).unwrap_err();
    assert!(refused.message.contains("1024 bits"), "{}", refused.message);
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn a_flood_from_one_address_leaves_room_for_others() {
    let m = manager();
    let flooder: IpAddr = "192.0.2.7".parse().unwrap();
    let mut held = Vec::new();
    for i in 0..64 {
        let k = PairingKey::new(flooder, Some(&format!("{i:016X}")));
        let h = m.begin(k.clone(), Some(SALT), Some(&cert_hex()), None).unwrap();
        let secret = PairSecret::generate();
        assert!(m.attach_secret(&k, h.generation, &secret));
        held.push((k, h, secret));
    }
    let share = PairingLimits::default().max_held_per_source;
    assert_eq!(m.in_flight(), share, "one address holds only its share");
    for (_, h, _) in &mut held[..64 - share] {
        assert_eq!(h.superseded.try_recv(), Ok(EVICTED));
    }
    // Each admission past the share handed back the broker entry it evicted.
    assert_eq!(held[share].1.evicted, vec![held[0].2.clone()]);
    let newcomer = PairingKey::new("198.51.100.1".parse().unwrap(), Some("0123456789ABCDEF"));
    let admitted = m
        .begin(newcomer.clone(), Some(SALT), Some(&cert_hex()), None)
        .unwrap();
    assert!(
        admitted.evicted.is_empty(),
        "a newcomer from elsewhere evicts nobody"
    );
    assert!(m.attach_secret(&newcomer, admitted.generation, &PairSecret::generate()));
    // An evicted request can no longer attach a broker entry.
    assert!(!m.attach_secret(&held[0].0, held[0].1.generation, &PairSecret::generate()));
}

#[test]
fn when_all_room_is_taken_the_busiest_network_makes_way() {
    let m = PairingManager::new(
        vector_c_identity(),
        PairingLimits {
            max_held: 4,
            max_held_per_source: 3,
            ..Default::default()
        },
    );
    let begin = |ip: &str, id: &str| {
        let k = PairingKey::new(ip.parse().unwrap(), Some(id));
        m.begin(k, Some(SALT), Some(&cert_hex()), None).unwrap()
    };
    let mut busy_oldest = begin("192.0.2.1", "a");
    let _busy = begin("192.0.2.2", "b");
    let mut quiet = begin("198.51.100.1", "c");
    let _busy2 = begin("192.0.2.3", "d");
    let _newcomer = begin("203.0.113.1", "e");
    assert_eq!(m.in_flight(), 4);
    assert_eq!(busy_oldest.superseded.try_recv(), Ok(EVICTED));
    assert!(
        quiet.superseded.try_recv().is_err(),
        "the quiet network keeps its request"
    );
}

#[test]
fn bad_phase1_inputs() {
    let m = manager();
    let bad = |salt: Option<&str>, cert: Option<&str>| m.begin(key(), salt, cert, None).unwrap_err().message;
    let cert = cert_hex();
    assert_eq!(bad(None, Some(&cert)), "Missing salt parameter");
    assert_eq!(bad(Some(SALT), None), "Missing clientcert parameter");
    assert_eq!(bad(Some("0011"), Some(&cert)), "Salt too short");
    assert_eq!(bad(Some("zz"), Some(&cert)), "Invalid salt: not a hex string");
    assert_eq!(bad(Some(&"00".repeat(65)), Some(&cert)), "Salt too long");
    assert!(bad(Some(SALT), Some("abc")).starts_with("Invalid clientcert"));
    assert!(bad(Some(SALT), Some(&hex::encode("not pem"))).starts_with("Invalid clientcert"));
    assert!(bad(Some(SALT), Some("ff")).starts_with("Invalid clientcert"));
    // Legacy 20-byte salt and upper-case hex are fine.
    assert!(
        m.begin(
            key(),
            Some(&format!("{SALT}31323334").to_uppercase()),
            Some(&cert.to_uppercase()),
            None
        )
        .is_ok()
    );
}

#[test]
fn phase_order_is_enforced() {
    let m = manager();
    assert_eq!(
        m.client_challenge(&key(), &"00".repeat(16)),
        Err(PairReject::no_pairing())
    );
    let held = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    // While phase 1 is held, a phase 2 is out of order but does not kill the held entry.
    let err = m.client_challenge(&key(), &"00".repeat(16)).unwrap_err();
    assert_eq!(err.message, "Out of order call to clientchallenge");
    m.pin_entered(&key(), held.generation, &"1234".parse().unwrap(), None)
        .unwrap();
    let err = m.server_challenge_response(&key(), &"00".repeat(32)).unwrap_err();
    assert_eq!(err.message, "Out of order call to serverchallengeresp");
    // The out-of-order call dropped the entry.
    assert_eq!(m.in_flight(), 0);
    assert_eq!(
        m.client_challenge(&key(), &"00".repeat(16)),
        Err(PairReject::no_pairing())
    );
    // Malformed fields.
    assert_eq!(
        m.client_challenge(&key(), "xyz").unwrap_err().message,
        "Invalid clientchallenge: not a hex string"
    );
    assert_eq!(
        m.client_challenge(&key(), "00").unwrap_err().message,
        "Invalid clientchallenge: expected 16 bytes"
    );
    assert_eq!(
        m.client_pairing_secret(&key(), &"00".repeat(16))
            .unwrap_err()
            .message,
        "Client pairing secret too short"
    );
}

#[test]
fn supersede_and_unpair() {
    let m = manager();
    let mut first = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    // /unpair leaves a held phase 1 alone.
    assert!(!m.unpair(&key()));
    assert_eq!(m.in_flight(), 1);
    let second = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    assert!(
        first.superseded.try_recv().is_ok(),
        "the first attempt is told it was superseded"
    );
    let pin: Pin = "1234".parse().unwrap();
    assert_eq!(
        m.pin_entered(&key(), first.generation, &pin, None)
            .unwrap_err()
            .message,
        SUPERSEDED
    );
    // Abandoning the old generation does not remove the new entry.
    m.abandon_held(&key(), first.generation);
    assert_eq!(m.in_flight(), 1);
    m.pin_entered(&key(), second.generation, &pin, None).unwrap();
    // Now the entry is past phase 1: /unpair abandons it.
    assert!(m.unpair(&key()));
    assert_eq!(m.in_flight(), 0);
    let third = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    m.abandon_held(&key(), third.generation);
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn in_flight_entries_are_bounded() {
    let m = PairingManager::new(
        vector_c_identity(),
        PairingLimits {
            max_in_flight: 2,
            ..Default::default()
        },
    );
    for i in 0..2 {
        let k = PairingKey::new(IpAddr::from([192, 0, 2, i]), None);
        m.begin(k, Some(SALT), Some(&cert_hex()), None).unwrap();
    }
    let k = PairingKey::new(IpAddr::from([192, 0, 2, 9]), None);
    assert_eq!(
        m.begin(k, Some(SALT), Some(&cert_hex()), None)
            .unwrap_err()
            .status,
        503
    );
    // Replacing an existing key is still possible.
    let k = PairingKey::new(IpAddr::from([192, 0, 2, 0]), None);
    assert!(m.begin(k, Some(SALT), Some(&cert_hex()), None).is_ok());
    let long = PairingKey::new(IpAddr::from([192, 0, 2, 0]), Some(&"é".repeat(100)));
    assert!(long.unique_id.len() <= PairingKey::MAX_UNIQUE_ID);
}

#[test]
fn expired_handshakes_are_gone() {
    let m = PairingManager::new(
        vector_c_identity(),
        PairingLimits {
            handshake_ttl: Duration::from_millis(1),
            ..Default::default()
        },
    );
    let held = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    m.pin_entered(&key(), held.generation, &"1234".parse().unwrap(), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        m.client_challenge(&key(), &"00".repeat(16)),
        Err(PairReject::no_pairing())
    );
}

#[test]
fn reject_xml() {
    assert_eq!(
        PairReject::bad_request(SUPERSEDED).to_xml().render(),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"400\" status_message=\"Superseded by a newer pairing attempt\"><paired>0</paired></root>"
    );
    assert_eq!(
        PairReject::no_pairing().to_xml().render(),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"400\" status_message=\"No pairing in progress\"><paired>0</paired></root>"
    );
    assert_eq!(
        PairReject::bad_request(PIN_TIMED_OUT).to_xml().render(),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"400\" status_message=\"PIN entry timed out\"><paired>0</paired></root>"
    );
}

mod phase1 {
    use direwolf_core::{InMemoryPinBroker, PairSecret, PinBroker, PinSubmission};

    use super::*;

    /// A [`Phase1`] on `m` with PINs from `broker`.
    fn phase1(m: &Arc<PairingManager>, broker: &InMemoryPinBroker) -> Arc<Phase1> {
        Arc::new(Phase1::new(
            m.clone(),
            Arc::new(broker.clone()),
            Duration::from_secs(20),
            "bob".parse().unwrap(),
            47989,
        ))
    }

    /// Runs phase 1 for `key()` on a task of its own.
    fn spawn_run(phase1: &Arc<Phase1>) -> tokio::task::JoinHandle<Result<XmlReply, PairReject>> {
        let phase1 = phase1.clone();
        tokio::spawn(async move {
            let cert = cert_hex();
            let request = Phase1Request {
                key: key(),
                salt: Some(SALT),
                client_cert: Some(&cert),
                device_name: Some("roth"),
                pin_page_host: "192.0.2.1".parse().unwrap(),
            };
            phase1.run(request).await
        })
    }

    /// The secret of the one pending PIN entry, once there is one.
    async fn pending_secret(broker: &InMemoryPinBroker) -> PairSecret {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(p) = broker.pending().await.unwrap().first() {
                    return p.secret.clone();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("phase 1 opens a PIN entry")
    }

    /// Waits until the broker has no entry left (closing runs on a task of its own).
    async fn broker_emptied(broker: &InMemoryPinBroker, secret: &PairSecret) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !matches!(
                broker.wait(secret, Duration::ZERO).await,
                Err(direwolf_core::PinError::UnknownSecret)
            ) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the broker entry is closed");
    }

    /// Runs phase 1 for `key` on a task of its own and waits until its PIN entry is open.
    async fn spawn_held(
        phase1: &Arc<Phase1>,
        broker: &InMemoryPinBroker,
        key: PairingKey,
    ) -> tokio::task::JoinHandle<Result<XmlReply, PairReject>> {
        let ip = key.ip();
        let before: Vec<PairSecret> = broker
            .pending()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.secret)
            .collect();
        let phase1 = phase1.clone();
        let run = tokio::spawn(async move {
            let cert = cert_hex();
            let request = Phase1Request {
                key,
                salt: Some(SALT),
                client_cert: Some(&cert),
                device_name: None,
                pin_page_host: "192.0.2.1".parse().unwrap(),
            };
            phase1.run(request).await
        });
        // Opened: a new entry from `ip`.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let pending = broker.pending().await.unwrap();
                if pending
                    .iter()
                    .any(|p| p.client_ip == ip && !before.contains(&p.secret))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("phase 1 opens a PIN entry");
        run
    }

    #[tokio::test]
    async fn a_flood_from_one_address_cannot_fill_the_pin_broker() {
        // A broker with room for 4, as many held phase 1s in all, 2 per network.
        let m = Arc::new(PairingManager::new(
            vector_c_identity(),
            PairingLimits {
                max_held: 4,
                max_held_per_source: 2,
                ..Default::default()
            },
        ));
        let broker = InMemoryPinBroker::new(4);
        let phase1 = phase1(&m, &broker);
        let flooder: IpAddr = "192.0.2.7".parse().unwrap();
        let mut flood = Vec::new();
        for i in 0..10 {
            let k = PairingKey::new(flooder, Some(&format!("{i:016X}")));
            flood.push(spawn_held(&phase1, &broker, k).await);
        }
        // Each newer request made the oldest of its network give way, PIN entry included.
        for run in flood.drain(..8) {
            let refused = run.await.unwrap().unwrap_err();
            assert_eq!((refused.status, refused.message.as_str()), (503, EVICTED));
        }
        // Two other networks still get in, and the broker has room for them.
        for ip in ["198.51.100.1", "203.0.113.1"] {
            let k = PairingKey::new(ip.parse().unwrap(), Some("0123456789ABCDEF"));
            flood.push(spawn_held(&phase1, &broker, k).await);
        }
        let pending = broker.pending().await.unwrap();
        assert_eq!(pending.len(), 4, "{pending:?}");
        assert_eq!(pending.iter().filter(|p| p.client_ip == flooder).count(), 2);
        for run in flood {
            run.abort();
        }
    }

    #[tokio::test]
    async fn the_pin_releases_the_held_request() {
        let m = Arc::new(manager());
        let broker = InMemoryPinBroker::default();
        let run = spawn_run(&phase1(&m, &broker));
        let secret = pending_secret(&broker).await;
        let pending = broker.pending().await.unwrap();
        assert_eq!(pending[0].client_ip, key().ip());
        assert_eq!(pending[0].device_name.as_deref(), Some("roth"));
        let submission = PinSubmission {
            pin: "1234".parse().unwrap(),
            user: None,
        };
        broker.submit(&secret, submission).await.unwrap();
        let reply = run.await.unwrap().unwrap().render();
        let plaincert = hex::encode_upper(VECTOR_C_SERVER_CERT);
        assert!(reply.ends_with(&format!(
            "<paired>1</paired><plaincert>{plaincert}</plaincert></root>"
        )));
        // The entry waits for phase 2, for the server's default user; the PIN entry is gone.
        assert_eq!(m.user_of(&key()).map(|u| u.to_string()), Some("bob".into()));
        broker_emptied(&broker, &secret).await;
    }

    #[tokio::test]
    async fn a_dropped_request_leaves_nothing_behind() {
        let m = Arc::new(manager());
        let broker = InMemoryPinBroker::default();
        let run = spawn_run(&phase1(&m, &broker));
        let secret = pending_secret(&broker).await;
        assert_eq!(m.in_flight(), 1);
        // The client closes the connection: hyper drops the request's future.
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        assert_eq!(m.in_flight(), 0);
        broker_emptied(&broker, &secret).await;
    }

    #[tokio::test]
    async fn a_newer_attempt_supersedes_the_held_one() {
        let m = Arc::new(manager());
        let broker = InMemoryPinBroker::default();
        let phase1 = phase1(&m, &broker);
        let first = spawn_run(&phase1);
        let first_secret = pending_secret(&broker).await;
        let second = spawn_run(&phase1);
        assert_eq!(
            first.await.unwrap().unwrap_err(),
            PairReject::bad_request(SUPERSEDED)
        );
        broker_emptied(&broker, &first_secret).await;
        let second_secret = pending_secret(&broker).await;
        assert_ne!(second_secret, first_secret);
        assert_eq!(m.in_flight(), 1);
        second.abort();
    }

    #[tokio::test]
    async fn a_broker_without_room_refuses_with_503() {
        let m = Arc::new(manager());
        let broker = InMemoryPinBroker::new(0);
        let refused = spawn_run(&phase1(&m, &broker)).await.unwrap().unwrap_err();
        assert_eq!(refused.status, 503);
        assert_eq!(m.in_flight(), 0);
    }
}

#[test]
fn the_pin_secret_outlives_phase_1_until_the_handshake_ends() {
    let m = PairingManager::new(vector_c_identity(), PairingLimits::default());
    let held = m.begin(key(), Some(SALT), Some(&cert_hex()), None).unwrap();
    let secret = direwolf_core::PairSecret::generate();
    assert!(m.attach_secret(&key(), held.generation, &secret));
    assert_eq!(m.pin_secret_of(&key()), None, "no PIN yet");
    m.pin_entered(&key(), held.generation, &"1234".parse().unwrap(), None)
        .unwrap();
    assert_eq!(m.pin_secret_of(&key()), Some(secret));
    assert!(m.unpair(&key()));
    assert_eq!(m.pin_secret_of(&key()), None);
}
