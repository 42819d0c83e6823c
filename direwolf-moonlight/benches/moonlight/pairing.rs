//! Complete pairings against the bare cost of the RSA operations they need.
//!
//! A pairing here is what a client and the server do for one: phase 1 (the PIN typed as soon as
//! the server holds the request), phases 2–4 over HTTP, phase 5 over HTTPS with the client
//! certificate; client and server in this process. The client is as lean as a real one: its key,
//! certificate and TLS configuration are loaded once, it runs on a runtime of its own (not the
//! server's), and the PIN is typed when the broker opens the entry (no polling).
//!
//! Its RSA operations are 4 private-key operations (server phase 3, client phase 4, the server's
//! and the client's TLS CertificateVerify in phase 5) and 4 verifications of those. The bare
//! cost is those 8 operations done directly with ring (the fastest implementation in the tree,
//! which the TLS handshake uses), keys parsed beforehand. Rounds of pairings and of bare sets
//! alternate; both wall time and this process's CPU time are reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use direwolf_core::{
    InMemoryPinBroker, PairSecret, PendingPin, PendingPinRequest, PinBroker, PinError, PinSubmission,
};
use nix::sys::resource::{UsageWho, getrusage};
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey};
use rustls::pki_types::{PrivateKeyDer, ServerName, pem::PemObject};
use tokio::runtime::Runtime;
use tokio::sync::{Mutex, mpsc};
use tokio_rustls::TlsConnector;

use crate::support::*;

/// An [`InMemoryPinBroker`] that reports each entry's secret as it opens.
#[derive(Debug)]
pub struct ReportingBroker {
    inner: InMemoryPinBroker,
    opened: mpsc::UnboundedSender<PairSecret>,
}

#[async_trait]
impl PinBroker for ReportingBroker {
    async fn open(&self, pending: PendingPinRequest) -> direwolf_core::Result<PairSecret> {
        let secret = self.inner.open(pending).await?;
        let _ = self.opened.send(secret.clone());
        Ok(secret)
    }

    async fn wait(&self, secret: &PairSecret, timeout: Duration) -> Result<PinSubmission, PinError> {
        self.inner.wait(secret, timeout).await
    }

    async fn submit(&self, secret: &PairSecret, submission: PinSubmission) -> Result<(), PinError> {
        self.inner.submit(secret, submission).await
    }

    async fn close(&self, secret: &PairSecret) {
        self.inner.close(secret).await
    }

    async fn pending(&self) -> direwolf_core::Result<Vec<PendingPin>> {
        self.inner.pending().await
    }
}

/// A server to pair with and a client loaded once.
pub struct Pairer {
    pub harness: Harness,
    opened: Mutex<mpsc::UnboundedReceiver<PairSecret>>,
    client: Client,
    pairing: ClientPairing,
    tls: TlsConnector,
}

impl Pairer {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let broker = Arc::new(ReportingBroker {
            inner: InMemoryPinBroker::default(),
            opened: tx,
        });
        let harness = Harness::start_with(|b| b.with_pin_broker(broker)).await;
        let client = Client::serial_zero();
        Pairer {
            harness,
            opened: Mutex::new(rx),
            pairing: ClientPairing::new(client.clone(), "1234"),
            tls: TlsConnector::from(client_config(Some(&client))),
            client,
        }
    }

    /// One complete pairing; returns when phase 5 answered `paired` 1.
    pub async fn pair(&self) {
        let h = &self.harness;
        let phase1 = {
            let (addr, path) = (h.http, phase1_path(&self.client));
            tokio::spawn(async move { request(connect(addr).await, "GET", &path, None).await })
        };
        let secret = within("a pending PIN entry", self.opened.lock().await.recv())
            .await
            .expect("the broker reports");
        let body = format!(r#"{{"pin":"1234","secret":"{}"}}"#, secret.as_str());
        assert_eq!(h.post_pin(&body).await.status, 200);
        let phase1 = phase1.await.expect("phase 1");
        assert_eq!(phase1.element("paired").as_deref(), Some("1"));
        let (pin_ok, phase4) = self.pairing.phases_2_to_4(h, SERVER_CERT).await;
        assert!(pin_ok);
        assert_eq!(phase4.element("paired").as_deref(), Some("1"));
        let tcp = connect(h.https).await;
        let name = ServerName::try_from("localhost").expect("a server name");
        let tls = self.tls.connect(name, tcp).await.expect("the TLS handshake");
        let r = request(
            tls,
            "GET",
            "/pair?uniqueid=0123456789ABCDEF&phrase=pairchallenge",
            None,
        )
        .await;
        assert_eq!(r.element("paired").as_deref(), Some("1"));
    }
}

/// The RSA operations of one pairing, done directly with ring.
pub struct BareRsa {
    keys: [RsaKeyPair; 2],
    random: SystemRandom,
}

impl BareRsa {
    /// The server's and the client's key pairs.
    pub fn new(client: &Client) -> Self {
        let load = |pem: &str| match PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("a PEM key") {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("an RSA key"),
            _ => panic!("the test keys are PKCS#8"),
        };
        BareRsa {
            keys: [load(SERVER_KEY), load(&client.key_pem)],
            random: SystemRandom::new(),
        }
    }

    /// 4 signatures (2 with each key) and their 4 verifications.
    pub fn run(&self) {
        for round in 0..2u8 {
            for key in &self.keys {
                let message = [round; 16];
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &self.random, &message, &mut signature)
                    .expect("signing");
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
                    .verify(&message, &signature)
                    .expect("a valid signature");
            }
        }
    }
}

fn process_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

/// The client's own runtime on the calling thread, apart from the server's (a real client is
/// another machine: sharing the server's runtime would add thread hand-offs between client and
/// server tasks that no server pays).
pub fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client's runtime")
}

/// Wall and CPU time of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (start, cpu) = (Instant::now(), process_cpu());
    f();
    (start.elapsed(), process_cpu() - cpu)
}

/// Runs the comparison and prints its figures.
pub fn figures(rt: &Runtime) {
    let pairer = rt.block_on(Pairer::start());
    let client_rt = client_runtime();
    let bare = BareRsa::new(&pairer.client);
    client_rt.block_on(pairer.pair());
    bare.run();
    let (rounds, per_round) = (10, 10);
    let (mut pairing, mut rsa) = ((Duration::ZERO, Duration::ZERO), (Duration::ZERO, Duration::ZERO));
    let add = |total: &mut (Duration, Duration), (wall, cpu): (Duration, Duration)| {
        total.0 += wall;
        total.1 += cpu;
    };
    for _ in 0..rounds {
        add(
            &mut pairing,
            timed(|| {
                client_rt.block_on(async {
                    for _ in 0..per_round {
                        pairer.pair().await;
                    }
                })
            }),
        );
        add(&mut rsa, timed(|| (0..per_round).for_each(|_| bare.run())));
    }
    let n = (rounds * per_round) as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(n);
    println!(
        "== complete pairings (phase 1 with immediate PIN, phases 2-5 over sockets) vs the same RSA operations \
         with ring (4 signs + 4 verifies), {n} each, interleaved"
    );
    println!(
        "   pairings:      {:8.1} /s   {:.3} ms each   CPU (client + server) {:.3} ms each",
        1e3 / ms(pairing.0),
        ms(pairing.0),
        ms(pairing.1)
    );
    println!(
        "   bare RSA sets: {:8.1} /s   {:.3} ms each   CPU {:.3} ms each",
        1e3 / ms(rsa.0),
        ms(rsa.0),
        ms(rsa.1)
    );
    println!(
        "   ratio (pairings/s / bare RSA sets/s): {:.3} by wall time, {:.3} by CPU time",
        ms(rsa.0) / ms(pairing.0),
        ms(rsa.1) / ms(pairing.1)
    );
    rt.block_on(pairer.harness.shutdown());
}
